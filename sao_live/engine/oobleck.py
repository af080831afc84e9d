"""The Oobleck VAE: encoder, decoder and the VAE bottleneck.

Follows stable-audio-tools `models/autoencoders.py`, `models/blocks.py` and
`models/bottleneck.py`. Attribute paths are the checkpoint keys under
`pretransform.model.`. Weight norm is stored as `weight_g`/`weight_v`; `fold_weight_norm`
turns it into a plain `weight` once, after loading (W = g * v / ||v||, exact up to rounding).

Dimension letters: B batch, C channels, T time (latent frames or samples).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import AutoencoderConfig, OobleckConfig


class SnakeBeta(nn.Module):
    """y = x + 1/(exp(beta) + 1e-9) * sin(exp(alpha) * x)^2, per channel, log-scale params."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.exp()[None, :, None]  # (1, C, 1)
        inv_beta = 1.0 / (self.beta.exp()[None, :, None] + 1e-9)
        return x + inv_beta * torch.sin(x * alpha).pow(2)


class _WeightNormed(nn.Module):
    """Holds weight_g / weight_v as stored; after `fold()` a plain `weight`."""

    transposed = False

    def __init__(self, shape: tuple[int, ...], bias: int | None, stride=1, padding=0, dilation=1):
        super().__init__()
        norm_dim = shape[0]
        self.weight_g = nn.Parameter(torch.ones(norm_dim, 1, 1))
        self.weight_v = nn.Parameter(torch.randn(shape) * 0.02)
        self.bias = nn.Parameter(torch.zeros(bias)) if bias else None
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.register_parameter("weight", None)  # set by fold()

    def effective_weight(self) -> torch.Tensor:
        # The L2 norm runs over all dims but 0 (the input channels for a transposed conv).
        v = self.weight_v
        return self.weight_g * v / v.norm(dim=(1, 2), keepdim=True)

    @torch.no_grad()
    def fold(self) -> None:
        weight = self.effective_weight().detach()
        del self.weight_g, self.weight_v
        self.weight = nn.Parameter(weight, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight if self.weight is not None else self.effective_weight()
        return self.conv(x, w)


class WNConv1d(_WeightNormed):
    def __init__(self, c_in, c_out, kernel, stride=1, padding=0, dilation=1, bias=True):
        super().__init__((c_out, c_in, kernel), c_out if bias else None, stride, padding, dilation)

    def conv(self, x, w):
        return F.conv1d(x, w, self.bias, self.stride, self.padding, self.dilation)


class WNConvTranspose1d(_WeightNormed):
    def __init__(self, c_in, c_out, kernel, stride, padding):
        super().__init__((c_in, c_out, kernel), c_out, stride, padding)

    def conv(self, x, w):
        return F.conv_transpose1d(x, w, self.bias, self.stride, self.padding)


class ResidualUnit(nn.Module):
    """y = x + Conv1(Snake(Conv7_dilated(Snake(x))))."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(channels),
            WNConv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation),
            SnakeBeta(channels),
            WNConv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


def _pad(stride: int) -> int:
    return -(-stride // 2)  # ceil(stride / 2)


class EncoderBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            ResidualUnit(c_in, 1),
            ResidualUnit(c_in, 3),
            ResidualUnit(c_in, 9),
            SnakeBeta(c_in),
            WNConv1d(c_in, c_out, 2 * stride, stride=stride, padding=_pad(stride)),
        )

    def forward(self, x):
        return self.layers(x)


class DecoderBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(c_in),
            WNConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, padding=_pad(stride)),
            ResidualUnit(c_out, 1),
            ResidualUnit(c_out, 3),
            ResidualUnit(c_out, 9),
        )

    def forward(self, x):
        return self.layers(x)


class OobleckEncoder(nn.Module):
    """Audio (B, 2, T*ratio) -> moments (B, 2*latent, T)."""

    def __init__(self, cfg: OobleckConfig):
        super().__init__()
        mults = (1, *cfg.c_mults)
        ch = cfg.channels
        layers = [WNConv1d(cfg.audio_channels, ch * mults[0], 7, padding=3)]
        for i, stride in enumerate(cfg.strides):
            layers.append(EncoderBlock(ch * mults[i], ch * mults[i + 1], stride))
        layers += [SnakeBeta(ch * mults[-1]), WNConv1d(ch * mults[-1], cfg.latent_dim, 3, padding=1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class OobleckDecoder(nn.Module):
    """Latents (B, latent, T) -> audio (B, 2, T*ratio); no tanh, no clipping."""

    def __init__(self, cfg: OobleckConfig):
        super().__init__()
        mults = (1, *cfg.c_mults)
        ch = cfg.channels
        layers = [WNConv1d(cfg.latent_dim, ch * mults[-1], 7, padding=3)]
        for i in range(len(cfg.strides), 0, -1):
            layers.append(DecoderBlock(ch * mults[i], ch * mults[i - 1], cfg.strides[i - 1]))
        layers += [SnakeBeta(ch), WNConv1d(ch, cfg.audio_channels, 7, padding=3, bias=False)]
        layers.append(nn.Tanh() if cfg.final_tanh else nn.Identity())
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


def vae_sample(moments: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """The VAE bottleneck: mean + (softplus(scale) + 1e-4) * noise, noise from `generator`."""
    mean, scale = moments.chunk(2, dim=1)  # each (B, latent, T)
    stdev = F.softplus(scale) + 1e-4
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return noise * stdev + mean


class AudioAutoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = OobleckEncoder(cfg.encoder)
        self.decoder = OobleckDecoder(cfg.decoder)


class Pretransform(nn.Module):
    """`pretransform.model.*` in the checkpoint: the autoencoder, decode/encode at the edges."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.model = AudioAutoencoder(cfg)
        self.fast_decoder = None  # a tiled.TiledDecoder, set on CPU after loading

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.decoder.parameters()).dtype

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent, T) -> audio (B, 2, T*ratio) fp32, one batch item at a time."""
        decoder = self.fast_decoder or self.model.decoder
        out = [decoder(z[None].to(self.dtype)) for z in latents]
        return torch.cat(out).float()

    def encode(self, audio: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Audio (B, 2, samples) -> sampled latents (B, latent, samples/ratio)."""
        moments = self.model.encoder(audio.to(self.dtype))
        return vae_sample(moments, generator).float()


def fold_weight_norm(module: nn.Module) -> None:
    """Replaces every weight_g/weight_v pair under `module` by its effective weight."""
    for m in module.modules():
        if isinstance(m, _WeightNormed) and m.weight is None:
            m.fold()
