"""The diffusion transformer of Stable Audio Open (docs/engine.md, model notes).

Follows stable-audio-tools `models/dit.py` and `models/transformer.py`; attribute paths
are the checkpoint's keys under `model.model.`, so official files load with strict=True.

Dimension letters: B batch, C latent channels (io), T latent frames, S = T + 1 tokens
(the global token is prepended), N cross-attention tokens, E embed dim, H heads,
Hk cross-attention key/value heads, D head dim, R rotated dims per head.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import DiTConfig


class LayerNorm(nn.Module):
    """LayerNorm with a learned gain and a zero bias buffer (stored, never learned)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta, eps=1e-5)


class RotaryEmbedding(nn.Module):
    """Partial rotate-half RoPE, base 10000."""

    def __init__(self, dim: int):
        super().__init__()
        inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
        self.register_buffer("inv_freq", inv_freq)

    def table(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the angles for positions 0..length-1, each (S, R) in fp32."""
        positions = torch.arange(length, device=device, dtype=torch.float32)
        freqs = torch.outer(positions, self.inv_freq.float())
        freqs = torch.cat((freqs, freqs), dim=-1)
        return freqs.cos(), freqs.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates the first R dims of every head of x (B, H, S, D), in fp32."""
    r = cos.shape[-1]
    dtype = x.dtype
    x = x.float()
    rot, rest = x[..., :r], x[..., r:]
    half1, half2 = rot.chunk(2, dim=-1)
    rotated = torch.cat((-half2, half1), dim=-1)
    rot = rot * cos + rotated * sin
    return torch.cat((rot, rest), dim=-1).to(dtype)


class Attention(nn.Module):
    """Self- or cross-attention, no masks, SDPA; GQA when the context has fewer heads."""

    def __init__(self, dim: int, head_dim: int, context_dim: int | None, qk_norm: bool):
        super().__init__()
        self.head_dim = head_dim
        self.heads = dim // head_dim
        self.cross = context_dim is not None
        if self.cross:
            self.kv_heads = context_dim // head_dim
            self.to_q = nn.Linear(dim, dim, bias=False)
            self.to_kv = nn.Linear(context_dim, 2 * context_dim, bias=False)
        else:
            self.kv_heads = self.heads
            self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        if qk_norm:
            self.q_norm = nn.LayerNorm(head_dim, eps=1e-6)
            self.k_norm = nn.LayerNorm(head_dim, eps=1e-6)
        else:
            self.q_norm = self.k_norm = None

    def _heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, heads, self.head_dim).transpose(1, 2)  # (B, H, S, D)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        b, s, e = x.shape  # (B, S, E)
        if self.cross:
            q = self._heads(self.to_q(x), self.heads)
            k, v = self.to_kv(context).chunk(2, dim=-1)  # each (B, N, Hk*D)
            k, v = self._heads(k, self.kv_heads), self._heads(v, self.kv_heads)
        else:
            q, k, v = (self._heads(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        if self.q_norm is not None:
            q = self.q_norm(q).to(v.dtype)
            k = self.k_norm(k).to(v.dtype)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if self.kv_heads != self.heads:
            # GQA: kv head j serves the consecutive q heads j*g .. j*g+g-1.
            group = self.heads // self.kv_heads
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, S, D)
        return self.to_out(out.transpose(1, 2).reshape(b, s, e))


class GLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)  # value first, gate second
        return value * F.silu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        # Indices 1 and 3 are Identity in the reference; keeping them keeps the key names.
        self.ff = nn.Sequential(GLU(dim, 4 * dim), nn.Identity(), nn.Linear(4 * dim, dim), nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff(x)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        e, d = cfg.embed_dim, cfg.head_dim
        self.pre_norm = LayerNorm(e)
        self.self_attn = Attention(e, d, None, cfg.qk_norm)
        self.cross_attend_norm = LayerNorm(e)
        self.cross_attn = Attention(e, d, cfg.cond_embed_dim, cfg.qk_norm)
        self.ff_norm = LayerNorm(e)
        self.ff = FeedForward(e)

    def forward(self, h, context, rotary, skip_cross_from: int | None = None):
        h = h + self.self_attn(self.pre_norm(h), rotary=rotary)
        if skip_cross_from is None:
            h = h + self.cross_attn(self.cross_attend_norm(h), context)
        else:
            # Fast path: the CFG null branch (rows skip_cross_from:) has all-zero context,
            # so its cross-attention output is exactly zero (docs/engine.md).
            n = skip_cross_from
            cond = self.cross_attn(self.cross_attend_norm(h[:n]), context[:n])
            h = torch.cat((h[:n] + cond, h[n:]))
        return h + self.ff(self.ff_norm(h))


class ContinuousTransformer(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.project_in = nn.Linear(cfg.io_channels, cfg.embed_dim, bias=False)
        self.project_out = nn.Linear(cfg.embed_dim, cfg.io_channels, bias=False)
        self.rotary_pos_emb = RotaryEmbedding(cfg.rotary_dim)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.depth))


class FourierFeatures(nn.Module):
    """Timestep features: [cos, sin] of 2*pi*t*w."""

    def __init__(self, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features // 2, 1))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * t[:, None] @ self.weight.T  # (B, 128)
        return torch.cat((f.cos(), f.sin()), dim=-1)  # (B, 256)


def _mlp(dim_in: int, dim: int, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, dim, bias=bias), nn.SiLU(), nn.Linear(dim, dim, bias=bias))


class DiffusionTransformer(nn.Module):
    """One network evaluation F(x, t, cross tokens, global vector)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        e, io = cfg.embed_dim, cfg.io_channels
        self.timestep_features = FourierFeatures(256)
        self.to_timestep_embed = _mlp(256, e, bias=True)
        self.to_cond_embed = _mlp(cfg.cond_token_dim, cfg.cond_embed_dim, bias=False)
        # The second Linear of to_cond_embed is Dc -> Dc; _mlp builds exactly that.
        self.to_global_embed = _mlp(cfg.global_cond_dim, e, bias=False)
        self.preprocess_conv = nn.Conv1d(io, io, 1, bias=False)
        self.postprocess_conv = nn.Conv1d(io, io, 1, bias=False)
        self.transformer = ContinuousTransformer(cfg)
        self._rotary: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def rotary_table(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE cos/sin for `length` positions, built once per length and reused."""
        cached = self._rotary
        if cached is None or cached[0] != length or cached[1].device != device:
            cos, sin = self.transformer.rotary_pos_emb.table(length, device)
            self._rotary = cached = (length, cos, sin)
        return cached[1], cached[2]

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cross: torch.Tensor,
        global_cond: torch.Tensor,
        null_cross_from: int | None = None,
    ) -> torch.Tensor:
        """x (B, C, T), t (B,), cross (B, N, cond_token_dim), global_cond (B, G) -> (B, C, T).

        `null_cross_from`: rows from this index on have all-zero cross tokens and skip
        cross-attention (exact; used by fast mode for the CFG null branch).
        """
        dtype = x.dtype
        context = self.to_cond_embed(cross.to(dtype))  # (B, N, Dc)
        token = self.to_global_embed(global_cond.to(dtype))  # (B, E)
        token = token + self.to_timestep_embed(self.timestep_features(t.to(dtype)))

        x = x + self.preprocess_conv(x)
        h = self.transformer.project_in(x.transpose(1, 2))  # (B, T, E)
        h = torch.cat((token[:, None], h), dim=1)  # (B, S, E), global token at position 0
        rotary = self.rotary_table(h.shape[1], h.device)
        for layer in self.transformer.layers:
            h = layer(h, context, rotary, null_cross_from)
        out = self.transformer.project_out(h).transpose(1, 2)[:, :, 1:]  # (B, C, T)
        return out + self.postprocess_conv(out)


class DiTWrapper(nn.Module):
    """Classifier-free guidance around the DiT, as the reference's DiTWrapper does."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.model = DiffusionTransformer(cfg)
        self.skip_null_cross = False  # fast mode sets this (exact, see TransformerBlock)
        self.dtype = torch.float32

    def half_precision_(self, dtype: torch.dtype) -> None:
        """Runs the DiT in bf16/fp16 (fast mode on GPUs); inputs and outputs stay fp32."""
        self.model.to(dtype)
        self.dtype = dtype

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cross: torch.Tensor,
        global_cond: torch.Tensor,
        cfg_scale: float = 1.0,
        negative_cross: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Guided output u + (c - u) * cfg_scale; one batch of 2B when cfg_scale != 1."""
        if self.dtype != x.dtype:  # half-precision fast mode on a GPU: the sampler stays fp32
            out = self.forward(x.to(self.dtype), t, cross, global_cond, cfg_scale, negative_cross)
            return out.to(x.dtype)
        if cfg_scale == 1.0:
            return self.model(x, t, cross, global_cond)
        b = x.shape[0]
        null = torch.zeros_like(cross) if negative_cross is None else negative_cross
        skip = b if (self.skip_null_cross and negative_cross is None) else None
        out = self.model(
            torch.cat((x, x)),
            torch.cat((t, t)),
            torch.cat((cross, null)),
            torch.cat((global_cond, global_cond)),
            null_cross_from=skip,
        )
        cond, uncond = out[:b], out[b:]
        return uncond + (cond - uncond) * cfg_scale
