"""Streamed decoding: audio comes out in time order, chunk by chunk, and joins into the whole decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sao_live import StableAudioPipeline
from sao_live.engine.config import ModelConfig
from sao_live.engine.oobleck import OobleckDecoder, fold_weight_norm
from sao_live.engine.tiled import TiledDecoder
from sao_live.engine.tiny import randomize_

from ..conftest import GOLDEN

CONFIGS = GOLDEN.parent.parent / "sao_live" / "configs"


@pytest.fixture(scope="module")
def golden_pipe():
    return StableAudioPipeline.from_pretrained(GOLDEN / "small", GOLDEN / "t5", device="cpu", numerics="fast")


def rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("pushes", [[48], [1] * 48, [16, 16, 16], [3, 29, 16], [40, 8], [16, 32]])
def test_streamed_decode_joins_into_the_whole_decode(golden_pipe, pushes):
    decoder = golden_pipe.model.pretransform.fast_decoder
    # Fast mode's decoder: Winograd's blocks reach past a push's last rows, into outputs it drops.
    assert all(layer.parts[1].winograd is not None for layer in decoder.layers if layer.kind == "residual")
    z = torch.randn(golden_pipe.cfg.dit.io_channels, 48, generator=torch.Generator().manual_seed(3))
    whole = decoder(z[None])[0].t()  # (samples, channels)
    pieces = list(decoder.stream(z, pushes))
    assert all(p.shape[1] == whole.shape[1] for p in pieces)
    assert rel_error(torch.cat(pieces), whole) <= 1e-4  # summation order only, as the tiled decoder's parity bound
    if pushes == [48]:  # one push is the whole decode itself, tile for tile
        assert torch.equal(torch.cat(pieces), whole)


def test_audio_comes_out_before_the_last_frames_are_in(golden_pipe):
    """The first push yields audio up to its frames less the decoder's reach; the rest follows in order."""
    decoder = golden_pipe.model.pretransform.fast_decoder
    ratio = golden_pipe.cfg.autoencoder.downsampling_ratio
    z = torch.randn(golden_pipe.cfg.dit.io_channels, 48, generator=torch.Generator().manual_seed(4))
    stream = decoder.stream(z, [20, 28])
    first = next(stream)
    assert 5 * ratio <= first.shape[0] < 20 * ratio  # made from 20 frames, held back by the reach
    rest = next(stream)
    assert first.shape[0] + rest.shape[0] == 48 * ratio


def test_generate_hands_out_chunks_that_join_into_its_audio(golden_pipe):
    chunks, done = [], []
    streamed = golden_pipe.generate(
        "a kick drum", seconds=1.5, seed=11, on_audio=lambda chunk, d: (chunks.append(chunk), done.append(d))
    )
    assert len(chunks) >= 2
    # The work done grows with each chunk, and behind the audio: the last samples need frames past the end.
    assert all(0 < a < b <= 1 for a, b in zip(done, done[1:], strict=False))
    so_far = np.cumsum([c.shape[1] for c in chunks]) / round(1.5 * 44100)
    assert all(d < f for d, f in zip(done[:-1], so_far[:-1], strict=True)), (done, so_far)
    assert all(c.dtype == np.float32 and c.shape[0] == 2 for c in chunks)
    assert np.array_equal(np.concatenate(chunks, axis=1), streamed.audio)
    whole = golden_pipe.generate("a kick drum", seconds=1.5, seed=11)
    assert whole.audio.shape == streamed.audio.shape == (2, round(1.5 * 44100))
    assert np.abs(whole.audio - streamed.audio).max() <= 1e-4 * np.abs(whole.audio).max()
    t = streamed.timings
    assert set(t) == {"text", "dit", "decode", "first_audio"}
    assert 0 < t["first_audio"] < t["text"] + t["dit"] + t["decode"]


@pytest.mark.parametrize("winograd", [False, True])
def test_the_published_small_decoder_streams_like_its_whole_decode(winograd):
    """At the published size (random weights) on a short stretch of latents; prints the largest difference."""
    cfg = ModelConfig.from_file(CONFIGS / "sao-small.json").autoencoder.decoder
    plain = OobleckDecoder(cfg).eval().requires_grad_(False)
    randomize_(plain, seed=5)
    fold_weight_norm(plain)
    decoder = TiledDecoder(plain, winograd=winograd)
    z = torch.randn(cfg.latent_dim, 28, generator=torch.Generator().manual_seed(6))
    whole = decoder(z[None])[0].t()
    streamed = torch.cat(list(decoder.stream(z, [16, 4, 8])))
    err = rel_error(streamed, whole)
    print(f"published Small decoder (winograd={winograd}), streamed vs whole: largest difference {err:.2e} of the peak")
    assert err <= 1e-4
