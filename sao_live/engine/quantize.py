"""Lower-precision linear layers for the DiT on CPU (fast mode only): int8 and bf16.

Which one a CPU gets is `arithmetic.py`'s choice. For int8, weights are quantised once, per
output channel; activations per call, per row (one scale per token), symmetric. The product
runs in oneDNN's int8 matmul (`torch.ops.onednn.qlinear_pointwise`, the kernel torchao's PT2E
x86 path lowers to under torch.compile); the row scales and the bias are applied to its fp32
output. torch.ao's dynamic quantisation (fbgemm, quantised tensors), which this replaced, is
deprecated; torchao 0.18's eager int8 path (`torch._int_mm`) ran a DiT-sized product about
80x slower than these kernels on an AVX2 CPU (BENCHMARKS.md). Dynamic int8 is the route Arm
and Google took for SAO Small on CPUs. It moves numbers: docs/engine.md and BENCHMARKS.md give
the measured deviation next to the speed.

x86 int8 kernels multiply uint8 by int8. Without VNNI they add pairs of those products in
int16, which saturates when both are large (255 * 127 * 2 > 32767); `sums_saturate()` checks
this once, and weights are then kept to 7 bits (|q| <= 63, so 255 * 63 * 2 < 32767).
Activations are int8 values stored as uint8 with zero point 128, the kernels' fast form.
"""

from __future__ import annotations

import functools

import torch
from torch import nn


def available() -> bool:
    """True where oneDNN's int8 matmul runs (x86 builds of PyTorch)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")


def _qlinear(q: torch.Tensor, zero_point: int, packed, weight_scale, weight_zero_point, bias) -> torch.Tensor:
    """fp32 (rows, out) = (q - zero_point) @ Wq^T * weight_scale (+ bias)."""
    return torch.ops.onednn.qlinear_pointwise(
        q, 1.0, zero_point, packed, weight_scale, weight_zero_point, bias, 1.0, 0, torch.float32, "none", [], ""
    )


@functools.cache
def sums_saturate() -> bool:
    """Whether this CPU's int8 kernel saturates pair sums (x86 without VNNI): one tiny product."""
    k, n = 64, 8
    packed = torch.ops.onednn.qlinear_prepack(torch.full((n, k), 127, dtype=torch.int8), None)
    q = torch.full((1, k), 255, dtype=torch.uint8)
    y = _qlinear(q, 0, packed, torch.ones(n), torch.zeros(n, dtype=torch.long), None)
    return float(y[0, 0]) != 255 * 127 * k


def quantize_rows(w: torch.Tensor, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: w ~ q * scale[:, None] with |q| <= qmax."""
    scale = (w.abs().amax(dim=1) / qmax).clamp(min=1e-12)
    q = torch.round(w / scale[:, None]).clamp_(-qmax, qmax).to(torch.int8)
    return q, scale


def quantize_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric int8, stored as uint8 + 128: x ~ (q - 128) / inv_scale[:, None].

    Float to int8 is a fast conversion and float to uint8 a slow one; flipping the top bit
    turns the int8 value v into the uint8 v + 128."""
    inv_scale = x.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12).reciprocal_().mul_(127)
    q = torch.mul(x, inv_scale).round_().to(torch.int8)
    return q.view(torch.uint8).bitwise_xor_(128), inv_scale


class DynamicInt8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 and x quantised on the fly."""

    def __init__(self, linear: nn.Linear, weight_bits: int = 8):
        super().__init__()
        w = linear.weight.detach().float()
        qweight, self.weight_scale = quantize_rows(w, (1 << (weight_bits - 1)) - 1)
        self.packed = torch.ops.onednn.qlinear_prepack(qweight, None)
        self.weight_zero_point = torch.zeros(w.shape[0], dtype=torch.long)
        self.bias = None if linear.bias is None else linear.bias.detach().float()
        self.in_features, self.out_features = w.shape[1], w.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, inv_scale = quantize_activations(x.reshape(-1, self.in_features).float())
        y = _qlinear(q, 128, self.packed, self.weight_scale, self.weight_zero_point, None)
        y = y.div_(inv_scale) if self.bias is None else torch.addcdiv(self.bias, y, inv_scale, out=y)
        return y.view(*x.shape[:-1], self.out_features)


class Bf16Linear(nn.Module):
    """y = x W^T + b with W stored in bf16; the product in bf16 (fp32 sums), fp32 in and out.

    Only the products change: norms, attention and the residual stream stay fp32."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = linear.weight.detach().to(torch.bfloat16)
        self.bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x.to(torch.bfloat16), self.weight, self.bias).float()


def weight_bits() -> int:
    """8 where the kernel adds in int32 (VNNI, AMX), 7 where pair sums would saturate."""
    return 7 if sums_saturate() else 8


def swap_linears_(dit: nn.Module, make) -> int:
    """Replaces every nn.Linear inside the transformer blocks by make(linear); returns how many."""
    swapped = 0
    for block in dit.transformer.layers:
        for parent in block.modules():
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, make(child))
                    swapped += 1
    return swapped


def quantize_dit_(dit: nn.Module, bits: int | None = None) -> int:
    """The DiT's block linears in int8 (DynamicInt8Linear); returns how many."""
    bits = bits or weight_bits()
    return swap_linears_(dit, lambda linear: DynamicInt8Linear(linear, bits))


def bf16_dit_(dit: nn.Module) -> int:
    """The DiT's block linears in bf16 (Bf16Linear); returns how many."""
    return swap_linears_(dit, Bf16Linear)
