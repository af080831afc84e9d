"""Schedules and samplers against float64 re-implementations of their published equations.

Each sampler runs on a simple analytic model (a smooth velocity for rectified flow, the exact
denoiser of Gaussian data for the v samplers) and is compared step by step, through its
callback, with the same update written out here in numpy float64. The schedules have unequal
steps, so the multistep ratios (r, r0, r1) differ from 1 and a mistake in them shows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sao_live.engine import sampling
from sao_live.errors import InvalidRequestError

SHAPE = (2, 3, 5)  # batch, channels, frames
MU = np.linspace(-0.8, 0.9, 15).reshape(1, 3, 5)  # the Gaussian data's mean
S2 = 0.25  # and variance


def velocity(x, t):
    """A smooth velocity field v(x, t) for the rectified-flow samplers (t has one value per batch item)."""
    t = t.reshape(-1, 1, 1)
    return np.tanh(x) * (1 + t) - 0.5 * MU if isinstance(x, np.ndarray) else torch.tanh(x) * (1 + t) - 0.5 * _t(MU)


def gaussian_denoiser(x, sigma):
    """E[x0 | x0 + sigma * eps = x] for x0 ~ N(MU, S2): the exact denoiser of Gaussian data."""
    s2 = sigma.reshape(-1, 1, 1) ** 2
    mu = MU if isinstance(x, np.ndarray) else _t(MU)
    return (S2 * x + s2 * mu) / (S2 + s2)


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def _np(a) -> np.ndarray:
    return np.asarray(a.detach() if isinstance(a, torch.Tensor) else a, dtype=np.float64)


def run(sampler, model, x0, sigmas, **kwargs):
    """The sampler's x and denoised after every step, as float64 arrays."""
    steps = []
    out = sampler(model, _t(x0), _t(sigmas), callback=lambda d: steps.append(d), **kwargs)
    assert [(d["i"], d["steps"]) for d in steps] == [(i, len(sigmas) - 1) for i in range(len(sigmas) - 1)]
    assert torch.equal(out, steps[-1]["x"])
    return [(_np(d["x"]), _np(d["denoised"])) for d in steps]


def assert_close(ours, ref):
    """float32 against float64: a few float32 roundings per step."""
    assert len(ours) == len(ref)
    for i, ((x, den), (rx, rden)) in enumerate(zip(ours, ref, strict=True)):
        scale = max(1.0, np.abs(rx).max())
        assert np.abs(x - rx).max() <= 2e-5 * scale, f"x after step {i}"
        assert np.abs(den - rden).max() <= 2e-5 * max(1.0, np.abs(rden).max()), f"denoised at step {i}"


def start(scale=1.0, seed=0):
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32) * scale


# Rectified flow: t runs from 1 (noise) to 0 (data); rf schedules start at 1, these do not all.
RF_SCHEDULES = {
    "uneven": [0.9, 0.7, 0.45, 0.3, 0.12, 0.0],
    "from one": [1.0, 0.8, 0.5, 0.2, 0.05, 0.0],
}
# v objective: sigmas of k-diffusion's VE form, polyexponential with rho = 2.5 (unequal steps in log sigma).
V_SIGMAS = [10.0, 4.0, 1.9, 0.8, 0.35, 0.12, 0.05, 0.0]


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize(("n", "sigma_max"), [(6, 1.0), (6, 1.5), (9, 0.8)])
def test_rf_schedule(n, sigma_max):
    top = min(sigma_max, 1.0)
    logsnr_max = -6.0 if top >= 1 else np.log((1 - top) / top + 1e-6)
    expected = 1 / (1 + np.exp(np.linspace(logsnr_max, 2, n + 1)))  # sigmoid(-logsnr)
    expected[0], expected[-1] = top, 0.0
    got = sampling.get_sigmas_rf(n, sigma_max)
    assert got.shape == (n + 1,)
    np.testing.assert_allclose(_np(got), expected, rtol=2e-6, atol=0)


@pytest.mark.parametrize("rho", [1.0, 2.5])
def test_polyexponential_schedule(rho):
    ramp = np.linspace(1, 0, 7) ** rho
    expected = np.exp(ramp * (np.log(80.0) - np.log(0.03)) + np.log(0.03))
    got = sampling.get_sigmas_polyexponential(7, 0.03, 80.0, rho)
    np.testing.assert_allclose(_np(got), [*expected, 0.0], rtol=2e-6, atol=0)
    assert got[0] == pytest.approx(80.0) and got[-2] == pytest.approx(0.03) and got[-1] == 0
    if rho == 1.0:  # the default: geometric
        assert torch.equal(sampling.get_sigmas_polyexponential(7, 0.03, 80.0), got)


# ---------------------------------------------------------------- rectified flow


@pytest.mark.parametrize("schedule", RF_SCHEDULES)
def test_euler(schedule):
    t = np.array(RF_SCHEDULES[schedule])
    x, ref = start().astype(np.float64), []
    for i in range(len(t) - 1):
        v = velocity(x, np.full(2, t[i]))
        x = x + (t[i + 1] - t[i]) * v
        ref.append((x, x - t[i + 1] * v))
    assert_close(run(sampling.sample_euler, velocity, start(), t), ref)


@pytest.mark.parametrize("schedule", RF_SCHEDULES)
def test_pingpong_draws_one_noise_per_step(schedule):
    t = np.array(RF_SCHEDULES[schedule])
    draws = torch.Generator().manual_seed(5)
    x, ref = start().astype(np.float64), []
    for i in range(len(t) - 1):
        denoised = x - t[i] * velocity(x, np.full(2, t[i]))
        x = (1 - t[i + 1]) * denoised + t[i + 1] * _np(torch.randn(SHAPE, generator=draws))
        ref.append((x, denoised))
    generator = torch.Generator().manual_seed(5)
    assert_close(run(sampling.sample_pingpong, velocity, start(), t, generator=generator), ref)
    # The last step draws too (its noise is multiplied by 0): the generator is where the reference leaves it.
    assert torch.equal(torch.randn(3, generator=generator), torch.randn(3, generator=draws))


@pytest.mark.parametrize("schedule", RF_SCHEDULES)
def test_flow_dpmpp_2m(schedule):
    # DPM-Solver++(2M) with alpha = 1 - t, sigma = t, lambda = log(alpha / sigma).
    t = np.array(RF_SCHEDULES[schedule])
    with np.errstate(divide="ignore"):
        lam = np.log((1 - t) / t)  # -inf at t = 1, inf at t = 0
    x, ref, old = start().astype(np.float64), [], None
    for i in range(len(t) - 1):
        denoised = x - t[i] * velocity(x, np.full(2, t[i]))
        h = lam[i + 1] - lam[i]
        if old is None or t[i + 1] == 0:
            d = denoised
        else:
            r = (lam[i] - lam[i - 1]) / h
            d = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * old
        x = t[i + 1] / t[i] * x - (1 - t[i + 1]) * np.expm1(-h) * d
        old = denoised
        ref.append((x, denoised))
    assert_close(run(sampling.sample_flow_dpmpp, velocity, start(), t), ref)


# ---------------------------------------------------------------- v objective


class FixedNoise:
    """Known standard-normal increments, one per call, recording which sigmas asked."""

    def __init__(self, seed=3):
        self.draws = [np.random.default_rng(seed + i).standard_normal(SHAPE) for i in range(len(V_SIGMAS))]
        self.asked: list[tuple[float, float]] = []

    def __call__(self, sigma, sigma_next):
        self.asked.append((float(sigma), float(sigma_next)))
        return _t(self.draws[len(self.asked) - 1])


def _asked_between_steps(noise: FixedNoise, sigmas) -> None:
    f32 = np.float32(sigmas).tolist()  # the sampler's own float32 sigmas
    pairs = [(a, b) for a, b in zip(f32[:-1], f32[1:], strict=True) if b > 0]
    assert noise.asked == pairs  # every step but the last, from sigma_i to sigma_i+1


def test_dpmpp_2m():
    s = np.array(V_SIGMAS)
    with np.errstate(divide="ignore"):
        t = -np.log(s)
    x, ref, old = start(s[0]).astype(np.float64), [], None
    for i in range(len(s) - 1):
        denoised = gaussian_denoiser(x, np.full(2, s[i]))
        h = t[i + 1] - t[i]
        if old is None or s[i + 1] == 0:
            d = denoised
        else:
            r = (t[i] - t[i - 1]) / h
            d = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * old
        x = s[i + 1] / s[i] * x - np.expm1(-h) * d
        old = denoised
        ref.append((x, denoised))
    assert_close(run(sampling.sample_dpmpp_2m, gaussian_denoiser, start(s[0]), s), ref)


def test_dpmpp_2m_sde():
    # eta = 1, midpoint second-order correction.
    s, noise, draws = np.array(V_SIGMAS), FixedNoise(), FixedNoise().draws
    x, ref, old, h_last, k = start(s[0]).astype(np.float64), [], None, None, 0
    for i in range(len(s) - 1):
        denoised = gaussian_denoiser(x, np.full(2, s[i]))
        if s[i + 1] == 0:
            x = denoised
        else:
            h = np.log(s[i]) - np.log(s[i + 1])
            x = s[i + 1] / s[i] * np.exp(-h) * x - np.expm1(-2 * h) * denoised
            if old is not None:
                r = h_last / h
                x = x - 0.5 * np.expm1(-2 * h) / r * (denoised - old)
            x = x + draws[k] * s[i + 1] * np.sqrt(-np.expm1(-2 * h))
            h_last, k = h, k + 1
        old = denoised
        ref.append((x, denoised))
    assert_close(run(sampling.sample_dpmpp_2m_sde, gaussian_denoiser, start(s[0]), s, noise=noise), ref)
    _asked_between_steps(noise, s)


def test_dpmpp_3m_sde():
    # eta = 1: h_eta = 2h; third order once two earlier steps are known, second order after one.
    s, noise, draws = np.array(V_SIGMAS), FixedNoise(), FixedNoise().draws
    x, ref, k = start(s[0]).astype(np.float64), [], 0
    d_1 = d_2 = h_1 = h_2 = None
    for i in range(len(s) - 1):
        denoised = gaussian_denoiser(x, np.full(2, s[i]))
        if s[i + 1] == 0:
            x = denoised
        else:
            h = np.log(s[i]) - np.log(s[i + 1])
            h_eta = 2 * h
            x = np.exp(-h_eta) * x - np.expm1(-h_eta) * denoised
            phi_2 = np.expm1(-h_eta) / h_eta + 1
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0, d1_1 = (denoised - d_1) / r0, (d_1 - d_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
            elif h_1 is not None:
                x = x + phi_2 * (denoised - d_1) / (h_1 / h)
            x = x + draws[k] * s[i + 1] * np.sqrt(-np.expm1(-2 * h))
            d_1, d_2, h_1, h_2, k = denoised, d_1, h, h_1, k + 1
        ref.append((x, denoised))
    assert_close(run(sampling.sample_dpmpp_3m_sde, gaussian_denoiser, start(s[0]), s, noise=noise), ref)
    _asked_between_steps(noise, s)


# ---------------------------------------------------------------- Brownian noise


def test_brownian_increments_are_standard_normal_and_add_up():
    x = torch.zeros(4, 8, 512)
    noise = sampling.BrownianNoise(x, 0.05, 10.0, seed=1)
    a, b, c = torch.tensor(0.3), torch.tensor(1.2), torch.tensor(4.0)
    w = noise(c, b)
    assert w.shape == x.shape
    assert abs(float(w.mean())) < 0.05 and abs(float(w.std()) - 1) < 0.05  # 16384 samples of N(0, 1)
    assert torch.allclose(noise(b, c), -w)  # the same increment, walked the other way
    # W(c) - W(a) = (W(c) - W(b)) + (W(b) - W(a)); each increment is scaled by 1/sqrt(its length).
    whole = noise(c, a) * (c - a).sqrt()
    parts = noise(c, b) * (c - b).sqrt() + noise(b, a) * (b - a).sqrt()
    assert torch.allclose(whole, parts, atol=1e-4)
    assert torch.equal(sampling.BrownianNoise(x, 0.05, 10.0, seed=1)(c, b), w)
    assert torch.allclose(noise(4.0, 1.2), w)  # plain floats are sigmas too
    assert not torch.allclose(sampling.BrownianNoise(x, 0.05, 10.0, seed=2)(c, b), w)


@pytest.mark.parametrize("name", ["dpmpp-3m-sde", "dpmpp-2m-sde"])
def test_sde_samplers_read_a_tree_seeded_from_the_generator(name):
    """Without `noise`, the tree spans the schedule's positive sigmas and its seed comes from the generator."""
    sampler = sampling.get_sampler("v", name)
    s, x = _t(V_SIGMAS), _t(start(V_SIGMAS[0]))
    seed = int(torch.randint(0, 2**63 - 1, [], generator=torch.Generator().manual_seed(9)))
    tree = sampling.BrownianNoise(x, s[-2], s[0], seed)
    own = sampler(gaussian_denoiser, x, s, generator=torch.Generator().manual_seed(9))
    assert torch.equal(own, sampler(gaussian_denoiser, x, s, noise=tree))
    other = sampler(gaussian_denoiser, x, s, generator=torch.Generator().manual_seed(10))
    assert not torch.allclose(own, other)


# ---------------------------------------------------------------- the tables


def test_get_sampler_by_objective():
    for name in ("pingpong", "euler", "dpmpp"):
        assert sampling.get_sampler("rf", name) is getattr(sampling, sampling.RF_SAMPLERS[name].__name__)
    assert sampling.get_sampler("rf", "dpmpp") is sampling.sample_flow_dpmpp
    assert sampling.get_sampler("v", "dpmpp-2m") is sampling.sample_dpmpp_2m
    assert sampling.get_sampler("v", "dpmpp-2m-sde") is sampling.sample_dpmpp_2m_sde
    assert sampling.get_sampler("v", "dpmpp-3m-sde") is sampling.sample_dpmpp_3m_sde
    with pytest.raises(InvalidRequestError, match=r"\['dpmpp', 'euler', 'pingpong'\] for this rectified-flow model"):
        sampling.get_sampler("rf", "dpmpp-2m")
    with pytest.raises(InvalidRequestError, match="for this v-objective model, got 'euler'"):
        sampling.get_sampler("v", "euler")
