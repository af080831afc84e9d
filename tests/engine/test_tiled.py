"""The tiled decoder (engine/tiled.py) against the plain one: threads, tiles, bf16 products."""

from __future__ import annotations

import math

import pytest
import torch

from sao_live import StableAudioPipeline
from sao_live.engine.tiled import TiledDecoder

from ..conftest import GOLDEN


def snr_db(ref: torch.Tensor, other: torch.Tensor) -> float:
    noise = float((ref.double() - other.double()).pow(2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float(ref.double().pow(2).sum()) / noise)


@pytest.fixture(scope="module")
def decoder():
    pipe = StableAudioPipeline.from_pretrained(GOLDEN / "small", GOLDEN / "t5", device="cpu", numerics="reference")
    return pipe.model.pretransform.model.decoder


@pytest.fixture(scope="module")
def latents(decoder):
    return torch.randn(1, decoder.layers[0].weight.shape[1], 40, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("threads", [1, 3])
def test_tile_runs_on_any_number_of_threads_match_the_plain_decoder(decoder, latents, threads):
    """With several torch threads each thread decodes its own run of tiles; the numbers stay the
    plain decoder's up to float rounding, and torch's thread count is restored afterwards."""
    with torch.no_grad():
        plain = decoder(latents)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        tiled = TiledDecoder(decoder)(latents)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert tiled.shape == plain.shape
    assert float((tiled - plain).abs().max() / plain.abs().max()) <= 1e-4


def test_bf16_products_move_the_audio_by_bf16_rounding_only(decoder, latents):
    """bf16 products (SnakeBeta fp32) give fp32 audio that differs from the fp32 decode by far more
    than fp32 rounding and far less than a broken decode; SnakeBeta in bf16 too moves it further."""
    fp32 = TiledDecoder(decoder)(latents)
    bf16 = TiledDecoder(decoder, torch.bfloat16)(latents)
    both = TiledDecoder(decoder, torch.bfloat16, torch.bfloat16)(latents)
    assert bf16.dtype == both.dtype == torch.float32 and bf16.shape == fp32.shape
    assert 10 < snr_db(fp32, bf16) < 60, snr_db(fp32, bf16)
    assert 10 < snr_db(fp32, both) < 60, snr_db(fp32, both)
    assert not torch.equal(bf16, both)
    assert 10 < snr_db(fp32, bf16) < 60, snr_db(fp32, bf16)
    assert 10 < snr_db(fp32, both) < 60, snr_db(fp32, both)
    assert not torch.equal(bf16, both)


@pytest.mark.parametrize("dilation", [1, 3, 9])
def test_winograd_convolution_equals_the_direct_sum(dilation):
    """F(4, 7) on channels-last rows: the direct sum's result, with fp32 rounding of a few e-6."""
    from sao_live.engine.winograd import WinogradConv

    gen = torch.Generator().manual_seed(dilation)
    c, n, h = 32, 101, 3 * dilation  # n is not a whole number of blocks
    weight = torch.randn(c, c, 7, generator=gen) / (7 * c) ** 0.5
    bias = torch.randn(c, generator=gen)
    conv = WinogradConv(weight, bias, dilation)
    reach = conv.rows_computed(n)
    assert reach >= n and reach % (4 * dilation) == 0
    rows = torch.randn(reach + 2 * h, c, generator=gen)
    out = conv.tile(rows, n, torch.empty(n, c))
    direct = sum(rows.double()[k * dilation : k * dilation + n] @ weight.double()[:, :, k].t() for k in range(7))
    direct = direct + bias.double()
    err = float((out.double() - direct).abs().max() / direct.abs().max())
    assert 0 < err < 2e-5, err


def test_winograd_decoder_stays_within_rounding_of_the_plain_one(decoder, latents):
    with torch.no_grad():
        plain = decoder(latents)
    direct = TiledDecoder(decoder)(latents)
    winograd = TiledDecoder(decoder, winograd=True)(latents)
    assert not torch.equal(direct, winograd)  # it did run
    assert float((winograd - plain).abs().max() / plain.abs().max()) <= 1e-4
    assert snr_db(plain, winograd) > 85, snr_db(plain, winograd)  # measured 95 dB; direct tiles 107 dB
