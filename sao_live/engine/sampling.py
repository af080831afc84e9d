"""Noise schedules and samplers, one short function each.

Two families, as in stable-audio-tools:
- rectified flow (SAO Small): `model(x, t) -> v`, the velocity eps - x0, t in [0, 1];
  samplers pingpong, euler and dpmpp (flow DPM-Solver++ 2M);
- v-objective (SAO 1.0): `denoiser(x, sigma) -> x0`, the VDenoiser of k-diffusion;
  samplers dpmpp-3m-sde, dpmpp-2m-sde and deterministic dpmpp-2m (Lu et al. 2022,
  "DPM-Solver++"; the 3M SDE variant is k-diffusion's).

Randomness arrives only through `generator` (or, for the SDE samplers, a Brownian-tree
seed drawn from it). `callback(info)` is called after every step; raising `Cancelled`
from it stops sampling.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from ..errors import InvalidRequestError

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict], None] | None


def _randn(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _report(callback: Callback, i: int, n: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
    if callback is not None:
        callback({"i": i, "steps": n, "x": x, "denoised": denoised})


# ---------------------------------------------------------------- schedules


def get_sigmas_rf(n: int, sigma_max: float = 1.0) -> torch.Tensor:
    """Rectified-flow times t: sigmoid(-linspace(logsnr_max, 2, n + 1)), ends forced to sigma_max and 0."""
    sigma_max = min(sigma_max, 1.0)
    logsnr_max = -6.0 if sigma_max >= 1 else math.log((1 - sigma_max) / sigma_max + 1e-6)
    t = torch.sigmoid(-torch.linspace(logsnr_max, 2, n + 1))
    t[0] = sigma_max
    t[-1] = 0
    return t


def get_sigmas_polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    """k-diffusion's polyexponential schedule (geometric for rho = 1), with a trailing 0."""
    ramp = torch.linspace(1, 0, n) ** rho
    sigmas = torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min))
    return torch.cat((sigmas, sigmas.new_zeros([1])))


# ---------------------------------------------------------------- rectified flow


@torch.no_grad()
def sample_pingpong(model: Model, x, sigmas, *, callback: Callback = None, generator=None):
    """Denoise fully, then re-noise to the next time with fresh noise (the ARC/SAO Small sampler)."""
    ones = x.new_ones([x.shape[0]])
    n = len(sigmas) - 1
    for i in range(n):
        denoised = x - sigmas[i] * model(x, sigmas[i] * ones)
        # One draw per step, the last one included (multiplied by 0), as the reference.
        x = (1 - sigmas[i + 1]) * denoised + sigmas[i + 1] * _randn(x, generator)
        _report(callback, i, n, x, denoised)
    return x


@torch.no_grad()
def sample_euler(model: Model, x, sigmas, *, callback: Callback = None, generator=None):
    """Euler steps along the predicted velocity."""
    ones = x.new_ones([x.shape[0]])
    n = len(sigmas) - 1
    for i in range(n):
        v = model(x, sigmas[i] * ones)
        x = x + (sigmas[i + 1] - sigmas[i]) * v
        _report(callback, i, n, x, x - sigmas[i + 1] * v)
    return x


@torch.no_grad()
def sample_flow_dpmpp(model: Model, x, sigmas, *, callback: Callback = None, generator=None):
    """DPM-Solver++(2M) in the flow parameterisation, lambda(t) = log((1 - t) / t)."""
    ones = x.new_ones([x.shape[0]])
    n = len(sigmas) - 1
    lam = torch.log((1 - sigmas) / sigmas)
    old_denoised = None
    for i in range(n):
        t, t_next = sigmas[i], sigmas[i + 1]
        denoised = x - t * model(x, t * ones)
        h = lam[i + 1] - lam[i]
        if old_denoised is None or t_next == 0:
            d = denoised
        else:
            r = (lam[i] - lam[i - 1]) / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (t_next / t) * x - (1 - t_next) * torch.expm1(-h) * d
        old_denoised = denoised
        _report(callback, i, n, x, denoised)
    return x


# ---------------------------------------------------------------- v-objective


class BrownianNoise:
    """Standard-normal increments of a torchsde Brownian tree over [sigma_min, sigma_max].

    Reproduces k-diffusion's BrownianTreeNoiseSampler: the same tree, seeded with `seed`,
    queried between consecutive sigmas and scaled by 1/sqrt(|delta sigma|).
    """

    def __init__(self, x: torch.Tensor, sigma_min, sigma_max, seed: int):
        import torchsde  # only the SDE samplers need it

        self.tree = torchsde.BrownianTree(
            torch.as_tensor(sigma_min), torch.zeros_like(x), torch.as_tensor(sigma_max), entropy=seed
        )

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        sigma, sigma_next = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        lo, hi, sign = (sigma, sigma_next, 1) if sigma < sigma_next else (sigma_next, sigma, -1)
        with warnings.catch_warnings():
            # fp32 sigmas sit a rounding step outside the tree's float64 ends; torchsde warns
            # and clamps, as it does under the reference.
            warnings.simplefilter("ignore", UserWarning)
            w = self.tree(lo, hi)
        return w * sign / (sigma_next - sigma).abs().sqrt()


def _tree_seed(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**63 - 1, [], generator=generator).item())


@torch.no_grad()
def sample_dpmpp_3m_sde(denoiser: Model, x, sigmas, *, callback: Callback = None, generator=None, noise=None):
    """DPM-Solver++(3M) SDE, eta 1 (k-diffusion's sample_dpmpp_3m_sde)."""
    if noise is None:
        positive = sigmas[sigmas > 0]
        noise = BrownianNoise(x, positive.min(), sigmas.max(), _tree_seed(generator))
    ones = x.new_ones([x.shape[0]])
    n = len(sigmas) - 1
    denoised_1 = denoised_2 = h_1 = h_2 = None
    for i in range(n):
        denoised = denoiser(x, sigmas[i] * ones)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = sigmas[i].log() - sigmas[i + 1].log()
            h_eta = 2 * h
            x = torch.exp(-h_eta) * x + (-torch.expm1(-h_eta)) * denoised
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = torch.expm1(-h_eta) / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None:
                d = (denoised - denoised_1) / (h_1 / h)
                phi_2 = torch.expm1(-h_eta) / h_eta + 1
                x = x + phi_2 * d
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-torch.expm1(-2 * h)).sqrt()
            denoised_1, denoised_2 = denoised, denoised_1
            h_1, h_2 = h, h_1
        _report(callback, i, n, x, denoised)
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(denoiser: Model, x, sigmas, *, callback: Callback = None, generator=None, noise=None):
    """DPM-Solver++(2M) SDE, midpoint solver, eta 1 (the reference's default v sampler)."""
    if noise is None:
        positive = sigmas[sigmas > 0]
        noise = BrownianNoise(x, positive.min(), sigmas.max(), _tree_seed(generator))
    ones = x.new_ones([x.shape[0]])
    n = len(sigmas) - 1
    old_denoised = h_last = None
    for i in range(n):
        denoised = denoiser(x, sigmas[i] * ones)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = sigmas[i].log() - sigmas[i + 1].log()
            x = sigmas[i + 1] / sigmas[i] * torch.exp(-h) * x + (-torch.expm1(-2 * h)) * denoised
            if old_denoised is not None:
                r = h_last / h
                x = x + 0.5 * (-torch.expm1(-2 * h)) * (1 / r) * (denoised - old_denoised)
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-torch.expm1(-2 * h)).sqrt()
            h_last = h
        old_denoised = denoised
        _report(callback, i, n, x, denoised)
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Model, x, sigmas, *, callback: Callback = None, generator=None):
    """Deterministic DPM-Solver++(2M) (k-diffusion's sample_dpmpp_2m)."""
    ones = x.new_ones([x.shape[0]])
    n = len(sigmas) - 1
    t = -sigmas.log()  # t(sigma) = -log(sigma); inf at sigma = 0
    old_denoised = None
    for i in range(n):
        denoised = denoiser(x, sigmas[i] * ones)
        h = t[i + 1] - t[i]
        if old_denoised is None or sigmas[i + 1] == 0:
            d = denoised
        else:
            r = (t[i] - t[i - 1]) / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (torch.exp(-t[i + 1]) / torch.exp(-t[i])) * x - torch.expm1(-h) * d
        old_denoised = denoised
        _report(callback, i, n, x, denoised)
    return x


RF_SAMPLERS = {"pingpong": sample_pingpong, "euler": sample_euler, "dpmpp": sample_flow_dpmpp}
V_SAMPLERS = {
    "dpmpp-3m-sde": sample_dpmpp_3m_sde,
    "dpmpp-2m-sde": sample_dpmpp_2m_sde,
    "dpmpp-2m": sample_dpmpp_2m,
}


def get_sampler(objective: str, name: str):
    """The sampler function for a model objective ("rf" or "v"); the error lists the known ones."""
    table = RF_SAMPLERS if objective == "rf" else V_SAMPLERS
    if name not in table:
        kind = "rectified-flow" if objective == "rf" else "v-objective"
        raise InvalidRequestError(f"sampler must be one of {sorted(table)} for this {kind} model, got {name!r}")
    return table[name]
