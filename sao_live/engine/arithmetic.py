"""The arithmetic fast mode uses on this CPU, chosen once at load.

CPUs differ in what is fast: on an AVX2 CPU without native bf16 a bf16 product is many times
slower than fp32 and int8 is about twice as fast; an AVX-512 CPU with bf16 and VNNI runs
bf16 3-4x and int8 5x faster than fp32. The choice reads the CPU's features (torch's
dispatch level and the flags the OS reports) and, where more than one kind could win, times
one product of the DiT's shape in each (a few milliseconds apiece).

Two parts are chosen:
- the DiT's linear layers: int8 (`quantize.py`), bf16, or fp32;
- the decoder's products (`tiled.py`): `winograd` (fp32, the 7-tap convolutions by Winograd's
  algorithm, `winograd.py`: a quarter less time, 72 dB from the direct sums), plain `fp32`, or
  `bf16` with SnakeBeta kept in fp32. A kind that moves the audio is only offered where the
  decoded audio stays above `DECODER_MIN_SNR_DB` against fp32: Winograd does, everywhere; bf16
  (which would also need native bf16) does not (docs/engine.md), so it runs only when asked for.

Every choice is overridable (`parse_override`) and `Arithmetic.key` names what changes the
audio, for cache keys. torch is imported where it is used, so the daemon's control process can
check an override (`parse_override`) without loading it.
"""

from __future__ import annotations

import functools
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DIT_KINDS = ("int8", "bf16", "fp32")
DECODER_KINDS = ("winograd", "fp32", "bf16")
DECODER_MIN_SNR_DB = 35.0
# Decoded audio with bf16 products (SnakeBeta fp32) against fp32 at the published Small size,
# random weights (BENCHMARKS.md): below DECODER_MIN_SNR_DB, so fast mode does not offer it.
DECODER_BF16_SNR_DB = 19.0
# The same measurement for Winograd's 7-tap convolutions (fp32): above the bar, so fast mode's
# default decoder on every CPU.
DECODER_WINOGRAD_SNR_DB = 72.0
# A lower precision must beat the best more precise kind by this factor to be chosen.
MIN_GAIN = 1.2

_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 (Linux), aarch64 (Linux), "bf16" (macOS hw.optional)
_INT8_DOT_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8", "i8mm", "asimddp"}


@dataclass(frozen=True)
class CpuFeatures:
    """What matters about this CPU: torch's dispatch level and the OS's feature flags."""

    capability: str  # torch.backends.cpu.get_cpu_capability(): DEFAULT, AVX2, AVX512, NEON, SVE256, ...
    flags: frozenset[str] = frozenset()
    name: str = ""

    @property
    def native_bf16(self) -> bool:
        return bool(self.flags & _BF16_FLAGS)

    @property
    def int8_dot(self) -> bool:
        """Int8 dot products summed in 32 bits (VNNI and the like)."""
        return bool(self.flags & _INT8_DOT_FLAGS)

    def describe(self) -> str:
        shown = sorted(f for f in self.flags if f.startswith(("avx", "amx", "fma", "f16c")) or f in _BF16_FLAGS)
        shown += sorted(self.flags & _INT8_DOT_FLAGS - set(shown))
        name = f"{self.name}; " if self.name else ""
        return f"{name}torch {self.capability}; {' '.join(shown) or 'no flags read'}"


def _linux_cpuinfo() -> tuple[frozenset[str], str]:
    flags: set[str] = set()
    name = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset(), ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:  # x86 "flags", aarch64 "Features"
            flags.update(value.split())
        elif key == "model name" and not name:
            name = value.strip()
    return frozenset(flags), name


_MACOS_FLAGS = {"bf16": "hw.optional.arm.FEAT_BF16", "i8mm": "hw.optional.arm.FEAT_I8MM"}


def _macos_sysctl() -> tuple[frozenset[str], str]:
    def sysctl(key: str) -> str:
        out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""

    flags = frozenset(flag for flag, key in _MACOS_FLAGS.items() if sysctl(key) == "1")
    return flags, sysctl("machdep.cpu.brand_string")


@functools.cache
def cpu_features() -> CpuFeatures:
    """This machine's features (Linux: /proc/cpuinfo; macOS: sysctl; elsewhere torch's level only)."""
    import torch

    system = platform.system()
    flags, name = frozenset(), ""
    try:
        if system == "Linux":
            flags, name = _linux_cpuinfo()
        elif system == "Darwin":
            flags, name = _macos_sysctl()
    except (OSError, subprocess.SubprocessError):
        pass
    return CpuFeatures(torch.backends.cpu.get_cpu_capability(), flags, name or platform.processor())


@dataclass(frozen=True)
class Arithmetic:
    dit: str = "fp32"  # one of DIT_KINDS
    decoder: str = "fp32"  # one of DECODER_KINDS
    int8_weight_bits: int = 0  # 7 or 8 when dit is int8 (quantize.py)
    why: str = ""
    calibration: dict[str, float] = field(default_factory=dict)  # seconds per product, by kind

    @property
    def key(self) -> str:
        """What moves the audio away from fp32, for cache keys; '' when nothing does."""
        parts = []
        if self.dit == "int8":
            parts.append(f"int8w{self.int8_weight_bits}")
        elif self.dit == "bf16":
            parts.append("bf16dit")
        if self.decoder == "bf16":
            parts.append("bf16dec")
        elif self.decoder == "winograd":
            parts.append("winodec")
        return "+".join(parts)

    def describe(self) -> str:
        dit = f"int8 ({self.int8_weight_bits}-bit weights)" if self.dit == "int8" else self.dit
        decoder = {"bf16": "bf16 products, SnakeBeta fp32", "winograd": "fp32, 7-tap convolutions by Winograd"}
        decoder = decoder.get(self.decoder, self.decoder)
        return f"DiT {dit}, decoder {decoder}" + (f" ({self.why})" if self.why else "")

    def as_dict(self) -> dict:
        return dict(dit=self.dit, decoder=self.decoder, int8_weight_bits=self.int8_weight_bits, why=self.why,
                    calibration_s={k: round(v, 5) for k, v in self.calibration.items()})  # fmt: skip


def parse_override(text: str | None) -> dict[str, str]:
    """'auto', '' or None -> {}; 'dit=bf16,decoder=fp32' -> {'dit': 'bf16', 'decoder': 'fp32'}."""
    if text is None or text.strip() in ("", "auto"):
        return {}
    kinds = {"dit": DIT_KINDS, "decoder": DECODER_KINDS}
    chosen: dict[str, str] = {}
    for item in text.split(","):
        part, _, kind = (s.strip() for s in item.partition("="))
        if part not in kinds or kind not in kinds[part] + ("auto",):
            raise ValueError(
                f"arithmetic must be 'auto' or like 'dit=int8,decoder=fp32' (dit: {', '.join(DIT_KINDS)}; "
                f"decoder: {', '.join(DECODER_KINDS)}; either may be auto), got {text!r}"
            )
        if kind != "auto":
            chosen[part] = kind
    return chosen


def time_products(kinds: list[str], rows: int = 257, width: int = 1024, repeat: int = 3) -> dict[str, float]:
    """Seconds for one (rows x width) @ (width x 4 width) product in each kind, best of `repeat`:
    the shape of the DiT's feed-forward for Small (rows = its tokens)."""
    import torch
    from torch import nn

    from . import quantize

    gen = torch.Generator().manual_seed(0)
    layer = nn.Linear(width, 4 * width)
    x = torch.randn(rows, width, generator=gen)
    runs: dict[str, Callable[[], object]] = {}
    for kind in kinds:
        if kind == "fp32":
            runs[kind] = functools.partial(layer, x)
        elif kind == "bf16":
            runs[kind] = functools.partial(quantize.Bf16Linear(layer), x)
        elif kind == "int8":
            runs[kind] = functools.partial(quantize.DynamicInt8Linear(layer, quantize.weight_bits()), x)
    best = {}
    with torch.no_grad():
        for kind, run in runs.items():
            run()  # first call: kernel selection, packing
            best[kind] = min(_seconds(run) for _ in range(repeat))
    return best


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def choose(
    features: CpuFeatures,
    int8_bits: int | None,
    int8: bool | None = None,
    override: dict[str, str] | None = None,
    timer: Callable[[list[str]], dict[str, float]] = time_products,
) -> Arithmetic:
    """Fast mode's arithmetic on a CPU with `features`.

    `int8_bits`: the int8 kernels' weight bits on this CPU (`quantize.weight_bits()`), None
    where there are none. `int8` True/False forces the DiT to int8/fp32, as `--int8`/`--no-int8`
    always did; `override` forces either part (`parse_override`); `timer` times candidates."""
    int8_available = int8_bits is not None
    override = dict(override or {})
    if int8 is not None:
        wanted = "int8" if int8 else "fp32"
        if override.get("dit", wanted) != wanted:
            raise ValueError(f"int8={int8} and arithmetic dit={override['dit']} contradict each other")
        override["dit"] = wanted
    if override.get("dit") == "int8" and not int8_available:
        raise ValueError("int8 needs oneDNN's int8 kernels, which this PyTorch build lacks (x86 builds have them)")

    calibration: dict[str, float] = {}
    why = []
    dit = override.get("dit")
    if dit:
        why.append(f"DiT {dit} as asked")
    else:
        candidates = ["fp32"] + (["bf16"] if features.native_bf16 else []) + (["int8"] if int8_available else [])
        if candidates == ["fp32", "int8"]:
            dit = "int8"  # no native bf16: int8 is the only faster kind, by 2x or more
            why.append("no native bf16, int8 kernels")
        elif len(candidates) == 1:
            dit = "fp32"
            why.append("no faster kind on this CPU")
        else:
            calibration = timer(candidates)
            dit = _fastest(candidates, calibration)
            why.append(f"DiT {dit} fastest in a timed product")
    decoder = override.get("decoder")
    if decoder:
        why.append(f"decoder {decoder} as asked")
    elif features.native_bf16 and DECODER_BF16_SNR_DB >= DECODER_MIN_SNR_DB:
        decoder = "bf16"
    elif DECODER_WINOGRAD_SNR_DB >= DECODER_MIN_SNR_DB:
        decoder = "winograd"  # fewer products, same precision per product: faster on any CPU
    else:
        decoder = "fp32"
    return Arithmetic(dit, decoder, int8_bits if dit == "int8" else 0, "; ".join(why), calibration)


def _fastest(candidates: list[str], seconds: dict[str, float]) -> str:
    """Candidates from most to least precise; a less precise one must win by MIN_GAIN."""
    chosen = candidates[0]
    for kind in candidates[1:]:
        if seconds[kind] * MIN_GAIN < seconds[chosen]:
            chosen = kind
    return chosen


def for_this_cpu(int8: bool | None = None, override: str | None = None) -> Arithmetic:
    """`choose` with this machine's features and timings."""
    from . import quantize

    bits = quantize.weight_bits() if quantize.available() else None
    return choose(cpu_features(), bits, int8, parse_override(override))
