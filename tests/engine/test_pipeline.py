"""Generation behaviour on tiny models: lengths, seeds, progress, bad input, fast-mode transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sao_live import StableAudioPipeline
from sao_live.engine.pipeline import DECODE_MARGIN_FRAMES
from sao_live.errors import Cancelled, InvalidRequestError
from sao_live.request import PICKED_SEED_MAX

from ..conftest import GOLDEN


def snr_db(ref: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10((ref**2).sum() / ((ref - other) ** 2).sum()))


@pytest.fixture(scope="module")
def golden_small():
    """The well-scaled tiny Small model of the goldens, in each numeric mode."""

    def make(numerics="fast", int8=None):
        return StableAudioPipeline.from_pretrained(
            GOLDEN / "small", GOLDEN / "t5", device="cpu", numerics=numerics, int8=int8
        )

    return make


def test_audio_is_trimmed_float32_and_seeded(tiny_pipeline):
    result = tiny_pipeline.generate("punchy 808 kick drum", seconds=1.25, seed=11, steps=4)
    assert result.audio.dtype == np.float32
    assert result.audio.shape == (2, round(1.25 * 44100))
    assert result.seed == 11 and result.sample_rate == 44100
    again = tiny_pipeline.generate("punchy 808 kick drum", seconds=1.25, seed=11, steps=4)
    other = tiny_pipeline.generate("punchy 808 kick drum", seconds=1.25, seed=12, steps=4)
    assert np.array_equal(result.audio, again.audio)
    assert not np.allclose(result.audio, other.audio)


def test_a_seed_is_picked_and_reported_when_none_is_given(tiny_pipeline):
    first = tiny_pipeline.generate("snare", seconds=0.5, steps=2)
    replay = tiny_pipeline.generate("snare", seconds=0.5, steps=2, seed=first.seed)
    assert 0 <= first.seed <= PICKED_SEED_MAX and np.array_equal(first.audio, replay.audio)
    assert 0 <= tiny_pipeline.generate("snare", seconds=0.5, steps=2, seed=-1).seed <= PICKED_SEED_MAX


@pytest.mark.parametrize("seed", [-5, 2**31, 2**32])
def test_seeds_outside_the_range_are_refused(tiny_pipeline, seed):
    with pytest.raises(InvalidRequestError, match=rf"seed must be in \[0, 2147483647\] or -1 \(random\), got {seed}$"):
        tiny_pipeline.generate("snare", seconds=0.5, steps=2, seed=seed)


def test_default_length_is_the_window(tiny_pipeline):
    result = tiny_pipeline.generate("pad", steps=2, seed=1)
    assert result.audio.shape[1] == tiny_pipeline.cfg.sample_size


def test_progress_reports_every_step_and_cancel_stops(tiny_pipeline):
    seen = []
    tiny_pipeline.generate("hat", seconds=0.5, steps=5, seed=1, progress=lambda d, n: seen.append((d, n)))
    assert seen == [(i, 5) for i in range(1, 6)]

    def stop_at_two(done, total):
        if done == 2:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        tiny_pipeline.generate("hat", seconds=0.5, steps=5, seed=1, progress=stop_at_two)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(seconds=float("nan")), "seconds must be a finite number, got nan"),
        (dict(seconds=0), "seconds must be in (0, 2.97] for this model, got 0"),
        (dict(seconds=-1.0), "seconds must be in (0, 2.97] for this model, got -1"),
        (dict(seconds=30.0), "seconds must be in (0, 2.97] for this model, got 30"),
        (dict(steps=0), "steps must be an integer in [1, 1000]"),
        (dict(steps=2.5), "steps must be an integer"),
        (dict(cfg_scale=float("inf")), "cfg_scale must be in [0, 50]"),
        (dict(sampler="dpmpp-3m-sde"), "sampler must be one of ['dpmpp', 'euler', 'pingpong']"),
        (dict(sample_size=1000), "sample_size must be a positive multiple of 2048"),
        (dict(init_audio=(np.full((2, 100), np.nan), 44100)), "init_audio must be finite"),
    ],
)
def test_bad_arguments_say_what_was_expected(tiny_pipeline, kwargs, message):
    with pytest.raises(InvalidRequestError) as info:
        tiny_pipeline.generate("kick", **{"seconds": 0.5, **kwargs})
    assert message in str(info.value)


@pytest.mark.parametrize("prompt", ["", "   ", None, 42])
def test_prompt_must_be_text(tiny_pipeline, prompt):
    with pytest.raises(InvalidRequestError, match="prompt must be a non-empty string"):
        tiny_pipeline.generate(prompt, seconds=0.5)


def test_init_audio_mono_and_other_rates(tiny_pipeline):
    t = np.arange(48000) / 48000
    mono = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = tiny_pipeline.generate("bass", seconds=1.0, seed=2, steps=4, init_audio=(mono, 48000), init_noise_level=0.3)
    plain = tiny_pipeline.generate("bass", seconds=1.0, seed=2, steps=4)
    assert out.audio.shape == (2, 44100) and np.isfinite(out.audio).all()
    assert not np.allclose(out.audio, plain.audio)


def test_decoder_receptive_field_is_inside_the_margin(tiny_pipeline):
    """Changing latent frame k moves no output sample more than the margin away from it."""
    decoder = tiny_pipeline.model.pretransform.model.decoder  # the plain one
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(1, tiny_pipeline.cfg.dit.io_channels, 48, generator=gen)
    bumped = z.clone()
    bumped[:, :, 24] += 1.0
    with torch.no_grad():
        diff = (decoder(bumped) - decoder(z)).abs().amax(dim=1)[0]
    changed = torch.nonzero(diff > 0).flatten()
    reach_frames = max(24 * 2048 - int(changed.min()), int(changed.max()) - 25 * 2048) / 2048
    assert 0 < reach_frames < DECODE_MARGIN_FRAMES


def test_partial_decode_equals_full_decode(golden_small):
    """Fast mode decodes only the frames a clip needs: the kept audio equals the full decode."""
    pipe = golden_small("fast")
    latents = torch.randn(1, pipe.cfg.dit.io_channels, 64, generator=torch.Generator().manual_seed(1))
    keep = round(0.6 * 44100)
    needed = math.ceil(keep / 2048) + DECODE_MARGIN_FRAMES
    assert needed < 64
    full = pipe.decode(latents)[0, :, :keep]
    part = pipe.decode(latents[:, :, :needed])[0, :, :keep]
    err = float((full - part).abs().max() / full.abs().max())
    assert err <= 1e-5, err


def test_tiled_decoder_matches_the_plain_one(golden_small):
    pipe = golden_small("reference")
    latents = torch.randn(1, pipe.cfg.dit.io_channels, 40, generator=torch.Generator().manual_seed(2))
    tiled = pipe.decode(latents)
    with torch.no_grad():
        plain = pipe.model.pretransform.model.decoder(latents)
    # Only the summation order differs; the bound is the parity tolerance against the reference.
    assert float((tiled - plain).abs().max() / plain.abs().max()) <= 1e-4


def test_skipping_the_null_branch_cross_attention_is_exact(golden_small):
    pipe = golden_small("reference")
    cond = pipe.conditioning(["kick drum"], [0.5])
    x = torch.randn(1, pipe.cfg.dit.io_channels, 32, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0.7])
    full = pipe.dit(x, t, cond, cfg_scale=4.0)
    pipe.model.model.skip_null_cross = True
    try:
        skipped = pipe.dit(x, t, cond, cfg_scale=4.0)
    finally:
        pipe.model.model.skip_null_cross = False
    assert float((full - skipped).abs().max() / full.abs().max()) <= 1e-6


def test_fast_mode_stays_close_to_reference(golden_small):
    """fp32 fast mode (T5 fp32, prompt cache, partial decode) against reference numerics, same seed."""
    ref = golden_small("reference").generate("warm arpeggios", seconds=1.5, seed=4).audio
    fast = golden_small("fast", int8=False).generate("warm arpeggios", seconds=1.5, seed=4).audio
    assert snr_db(ref, fast) >= 30


def test_int8_dit_error_per_call(golden_small):
    """One int8 DiT call against the fp32 one: a few percent, reported in docs/engine.md."""
    fp32, int8 = golden_small("fast", int8=False), golden_small("fast", int8=True)
    assert int8.int8 and not fp32.int8
    cond = fp32.conditioning(["kick drum"], [0.5])
    x = torch.randn(1, fp32.cfg.dit.io_channels, 32, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([0.5])
    a, b = fp32.dit(x, t, cond), int8.dit(x, t, cond)
    rel = float((a - b).norm() / a.norm())
    assert 0 < rel < 0.1, rel


def test_text_cache_returns_the_same_embedding(golden_small):
    pipe = golden_small("fast")
    first = pipe.text_encoder(["dark techno"])[0]
    again = pipe.text_encoder(["dark techno", "kick"])[0]
    assert torch.equal(first[0], again[0])
    assert len(pipe.text_encoder._cache) == 2


def test_v_model_defaults_and_samplers(tiny_t5):
    from sao_live.engine.config import ModelConfig
    from sao_live.engine.tiny import tiny_config_path

    pipe = StableAudioPipeline.from_config(ModelConfig.from_file(tiny_config_path("1.0")), tiny_t5, device="cpu")
    assert pipe.cfg.objective == "v"
    steps = []
    pipe.generate("pad", seconds=0.5, seed=1, progress=lambda d, n: steps.append(n))
    assert steps[-1] == 100  # model-card default for SAO 1.0
    audio = {}
    for sampler in ("dpmpp-3m-sde", "dpmpp-2m-sde", "dpmpp-2m"):

        def run(seed, negative="noise", s=sampler):
            return pipe.generate("pad", seconds=0.5, seed=seed, steps=6, sampler=s, negative_prompt=negative).audio

        audio[sampler] = run(1)
        assert audio[sampler].shape == (2, 22050) and np.isfinite(audio[sampler]).all()
        assert np.array_equal(run(1), audio[sampler])  # the SDE noise comes from the seed alone
        assert not np.allclose(run(2), audio[sampler])
        assert not np.allclose(run(1, negative=""), audio[sampler])  # the negative prompt is used
    # Each name runs its own sampler (the formulas are checked in test_sampling.py and against goldens).
    a, b, c = audio.values()
    assert not (np.allclose(a, b) or np.allclose(a, c) or np.allclose(b, c))
