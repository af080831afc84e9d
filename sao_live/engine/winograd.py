"""Winograd's minimal filtering for the decoder's dilated 7-tap convolutions (channels last).

Computing m outputs of a K-tap convolution takes m*K products per channel pair; Winograd's
F(m, K) takes m + K - 1: the m + K - 1 inputs are transformed (B^T), each transformed row meets
its transformed weights (G W) in one GEMM per point, and the products are transformed back
(A^T). F(4, 7) does 10 GEMMs where the direct sum does 28. A dilation d runs the same on d
interleaved sequences at once: d consecutive rows are one row of d*C values.

It rounds more than the direct sum: 5e-6 of the output's peak per convolution in fp32 against
3e-7, with the points below (the best of a search over small fractions); docs/engine.md gives
what that makes of the decoded audio.
"""

from __future__ import annotations

import torch

OUTPUTS = 4  # m: outputs per block
POINTS = (0.0, 2.0, -2.0, 0.5, -0.5, 0.75, -0.75, 4 / 3, -4 / 3)  # and infinity: m + K - 1 in all


def matrices(m: int, k: int, points) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A^T (m, a), G (a, k), B^T (a, a) in float64, a = m + k - 1, from a - 1 points and infinity.

    Toom-Cook: convolution evaluates both polynomials at the points and interpolates; the
    correlation a convolution layer computes is its transpose."""
    a = m + k - 1
    assert len(points) == a - 1, f"F({m}, {k}) needs {a - 1} finite points"
    p = torch.tensor(points, dtype=torch.float64)

    def vandermonde(n: int) -> torch.Tensor:  # evaluates a polynomial of n coefficients
        v = torch.zeros(a, n, dtype=torch.float64)
        v[:-1] = p[:, None] ** torch.arange(n, dtype=torch.float64)
        v[-1, -1] = 1.0  # infinity: the leading coefficient
        return v

    return vandermonde(m).t(), vandermonde(k), torch.linalg.inv(vandermonde(a)).t()


class WinogradConv:
    """A K-tap, dilation-d Conv1d with C_in == C_out as F(OUTPUTS, K) on (T, C) row tiles."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int):
        c_out, c_in, k = weight.shape  # (C_out, C_in, K), fp32
        self.m, self.k, self.d, self.c = OUTPUTS, k, dilation, c_in
        self.a = self.m + k - 1
        at, g, bt = matrices(self.m, k, POINTS)
        taps = weight.double().permute(2, 1, 0)  # (K, C_in, C_out)
        self.u = torch.einsum("ak,kio->aio", g, taps).float().contiguous()  # (a, C_in, C_out)
        self.at, self.bt = at.float(), bt.float()
        self.bias = bias

    def rows_computed(self, n: int) -> int:
        """Outputs one call computes for n wanted: whole blocks of m*d rows."""
        block = self.m * self.d
        return -(-n // block) * block

    def tile(self, rows: torch.Tensor, n: int, out: torch.Tensor) -> torch.Tensor:
        """Output rows (n, C) from rows_computed(n) + (K-1)*d input rows (the convolution's
        zero padding included); the outputs past n are computed and dropped."""
        m, a, d, c = self.m, self.a, self.d, self.c
        blocks = self.rows_computed(n) // (m * d)
        # Block b reads rows b*m*d .. b*m*d + a*d: a rows of d*C values, overlapping the next.
        x = rows.as_strided((blocks, a, d * c), (m * d * c, d * c, 1))
        v = torch.einsum("ai,bic->abc", self.bt, x)  # (a, blocks, d*C)
        products = torch.bmm(v.view(a, blocks * d, c), self.u)  # (a, blocks*d, C)
        y = torch.matmul(self.at, products.view(a, blocks, d * c).transpose(0, 1))  # (blocks, m, d*C)
        y = y.view(blocks * m * d, c)[:n]
        return out.copy_(y) if self.bias is None else torch.add(y, self.bias, out=out)
