"""The arithmetic chosen per CPU (engine/arithmetic.py) and the kernels it chooses from (quantize.py)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from sao_live.engine import arithmetic, quantize
from sao_live.engine.arithmetic import Arithmetic, CpuFeatures, choose, parse_override

AVX2_ZEN3 = CpuFeatures("AVX2", frozenset({"sse4_2", "avx", "avx2", "fma", "f16c"}), "AMD EPYC")
AVX512_BF16_VNNI = CpuFeatures(
    "AVX512", frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}), "AMD EPYC 9004"
)
# One product of the DiT's shape on the AVX-512 EPYC, in the ratios measured there per DiT step.
EPYC_SECONDS = {"fp32": 0.95, "bf16": 0.34, "int8": 0.18}


def no_timing(kinds):
    raise AssertionError(f"no calibration expected, asked to time {kinds}")


def test_avx2_without_bf16_gets_the_int8_dit_and_the_winograd_decoder_without_timing():
    chosen = choose(AVX2_ZEN3, int8_bits=7, timer=no_timing)
    assert (chosen.dit, chosen.decoder, chosen.int8_weight_bits) == ("int8", "winograd", 7)
    assert chosen.key == "int8w7+winodec"  # Winograd rounds differently: its clips are its own
    assert "Winograd" in chosen.describe()
    assert "int8" in chosen.describe() and "7-bit" in chosen.describe()


def test_avx512_with_bf16_and_vnni_times_every_kind_and_takes_the_fastest():
    asked = []

    def timer(kinds):
        asked.append(list(kinds))
        return {k: EPYC_SECONDS[k] for k in kinds}

    chosen = choose(AVX512_BF16_VNNI, int8_bits=8, timer=timer)
    assert asked == [["fp32", "bf16", "int8"]]
    assert (chosen.dit, chosen.int8_weight_bits) == ("int8", 8)
    # bf16 decoding stays below the bar (docs/engine.md), so the decoder keeps fp32 there too.
    assert chosen.decoder == "winograd" and chosen.key == "int8w8+winodec"
    assert chosen.calibration == EPYC_SECONDS


def test_a_less_precise_kind_must_win_clearly():
    slow_int8 = {"fp32": 0.95, "bf16": 0.34, "int8": 0.30}  # int8 only 13% faster than bf16
    chosen = choose(AVX512_BF16_VNNI, int8_bits=8, timer=lambda kinds: {k: slow_int8[k] for k in kinds})
    assert chosen.dit == "bf16" and chosen.key == "bf16dit+winodec"
    flat = {"fp32": 0.30, "bf16": 0.28, "int8": 0.27}
    assert choose(AVX512_BF16_VNNI, int8_bits=8, timer=lambda kinds: {k: flat[k] for k in kinds}).dit == "fp32"


def test_no_faster_kind_means_fp32_everywhere():
    plain = CpuFeatures("DEFAULT")
    chosen = choose(plain, int8_bits=None, timer=no_timing)
    assert (chosen.dit, chosen.decoder, chosen.key) == ("fp32", "winograd", "winodec")
    direct = choose(plain, int8_bits=None, override={"decoder": "fp32"}, timer=no_timing)
    assert (direct.dit, direct.decoder, direct.key) == ("fp32", "fp32", "")


def test_int8_flag_and_override_force_the_choice():
    assert choose(AVX2_ZEN3, 7, int8=False, timer=no_timing).dit == "fp32"
    assert choose(AVX512_BF16_VNNI, 8, int8=True, timer=no_timing).dit == "int8"
    forced = choose(AVX2_ZEN3, 7, override={"dit": "bf16", "decoder": "bf16"}, timer=no_timing)
    assert (forced.dit, forced.decoder, forced.key) == ("bf16", "bf16", "bf16dit+bf16dec")
    assert "as asked" in forced.why
    with pytest.raises(ValueError, match="contradict"):
        choose(AVX2_ZEN3, 7, int8=True, override={"dit": "fp32"})
    with pytest.raises(ValueError, match="int8 needs oneDNN"):
        choose(CpuFeatures("NEON"), None, int8=True)


def test_parse_override():
    assert parse_override(None) == parse_override("auto") == parse_override("") == {}
    assert parse_override("dit=bf16, decoder=fp32") == {"dit": "bf16", "decoder": "fp32"}
    assert parse_override("dit=auto,decoder=bf16") == {"decoder": "bf16"}
    assert parse_override("decoder=winograd") == {"decoder": "winograd"}
    for bad in ("int8", "dit=int4", "decoder=int8", "dac=fp32", "dit"):
        with pytest.raises(ValueError, match="dit=int8,decoder=fp32"):
            parse_override(bad)


def test_features_of_this_machine_and_the_real_choice():
    features = arithmetic.cpu_features()
    assert features.capability == torch.backends.cpu.get_cpu_capability()
    assert features.capability in features.describe()
    chosen = arithmetic.for_this_cpu()
    assert chosen.dit in arithmetic.DIT_KINDS and chosen.decoder == "winograd"
    if quantize.available() and not features.native_bf16:  # this project's machines: AVX2, no bf16
        assert (chosen.dit, chosen.int8_weight_bits) == ("int8", quantize.weight_bits())


def test_calibration_on_this_machine_times_each_kind():
    kinds = ["fp32"] + (["int8"] if quantize.available() else [])
    seconds = arithmetic.time_products(kinds, repeat=2)
    assert sorted(seconds) == sorted(kinds)
    assert all(math.isfinite(s) and s > 0 for s in seconds.values())


def test_arithmetic_key_names_everything_that_moves_the_audio():
    assert Arithmetic().key == ""
    assert Arithmetic("int8", "fp32", 8).key == "int8w8"
    assert Arithmetic("fp32", "bf16").key == "bf16dec"


# ---------------------------------------------------------------- the kernels


needs_int8 = pytest.mark.skipif(not quantize.available(), reason="oneDNN int8 kernels are x86-only")


@needs_int8
def test_int8_linear_is_exact_on_the_worst_case_values():
    """Integer weights at the largest 7/8-bit value and inputs at +-127 quantise exactly; the
    product must then be exact too: a saturating kernel would lose the large pair sums."""
    bits = quantize.weight_bits()
    top = (1 << (bits - 1)) - 1
    k, n = 256, 16
    layer = nn.Linear(k, n, bias=True).requires_grad_(False)
    with torch.no_grad():
        layer.weight.fill_(top)
        layer.weight[1::2] *= -1
        layer.bias.copy_(torch.arange(n, dtype=torch.float32))
    x = torch.full((3, k), 127.0)
    x[1] = -127.0
    x[2, ::2] = -127.0
    q = quantize.DynamicInt8Linear(layer, bits)
    expected = x.double() @ layer.weight.double().t() + layer.bias.double()
    assert torch.equal(q(x).double(), expected)


@needs_int8
def test_saturation_check_agrees_with_the_weight_bits():
    assert quantize.weight_bits() == (7 if quantize.sums_saturate() else 8)


@needs_int8
def test_int8_linear_error_and_no_deprecated_api():
    gen = torch.Generator().manual_seed(0)
    layer = nn.Linear(512, 256).requires_grad_(False)
    x = torch.randn(2, 33, 512, generator=gen)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q = quantize.DynamicInt8Linear(layer, quantize.weight_bits())
        y = q(x)
    assert caught == [], [str(w.message) for w in caught]
    ref = layer(x)
    assert y.shape == ref.shape and y.dtype == torch.float32
    rel = float((y - ref).norm() / ref.norm())
    assert 0 < rel < 0.03, rel  # per-row activations, per-channel 7-8 bit weights: ~1%


def test_bf16_linear_rounds_only_the_product():
    gen = torch.Generator().manual_seed(0)
    layer = nn.Linear(256, 128).requires_grad_(False)
    x = torch.randn(40, 256, generator=gen)
    y = quantize.Bf16Linear(layer)(x)
    ref = layer(x)
    rel = float((y - ref).norm() / ref.norm())
    assert y.dtype == torch.float32 and 0 < rel < 1e-2, rel
