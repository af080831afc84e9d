"""Dynamic int8 linear layers for the DiT on CPU (fast mode only).

Weights are quantised once, per output channel, to int8; activations are quantised per
call (per tensor) and the product runs in fbgemm's int8 kernels. This is the route Arm
and Google took for SAO Small on CPUs. It moves numbers: docs/engine.md and
BENCHMARKS.md give the measured SNR against reference mode next to the speed.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


class DynamicInt8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 and x quantised on the fly."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        zero_points = torch.zeros(w.shape[0], dtype=torch.long)
        with warnings.catch_warnings():  # torch.ao deprecation notices; the kernels themselves stay
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(w, scales, zero_points, axis=0, dtype=torch.qint8)
            bias = None if linear.bias is None else linear.bias.detach().float()
            self.packed = torch.ops.quantized.linear_prepack(qweight, bias)
        self.out_features = w.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).float().contiguous()  # (rows, in)
        # reduce_range: 7-bit activations, which x86 int8 kernels need to avoid overflow.
        y = torch.ops.quantized.linear_dynamic(flat, self.packed, True)
        return y.view(*x.shape[:-1], self.out_features)


def available() -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines or "x86" in torch.backends.quantized.supported_engines


def quantize_dit_(dit: nn.Module) -> int:
    """Swaps every nn.Linear inside the transformer blocks for DynamicInt8Linear; returns how many."""
    swapped = 0
    for block in dit.transformer.layers:
        for parent in block.modules():
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, DynamicInt8Linear(child))
                    swapped += 1
    return swapped
