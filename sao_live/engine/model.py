"""The whole checkpoint as one module tree: `model.`, `conditioner.`, `pretransform.`.

Mirrors the reference's ConditionedDiffusionModelWrapper so that `state_dict()` has
exactly the published key names; everything that is not a stored tensor lives elsewhere.
"""

from __future__ import annotations

import torch
from torch import nn

from .conditioners import MultiConditioner
from .config import ModelConfig
from .dit import DiTWrapper, LayerNorm, RotaryEmbedding
from .loading import check_sizes, load_matching
from .oobleck import Pretransform, fold_weight_norm


class StableAudioModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.model = DiTWrapper(cfg.dit)
        self.conditioner = MultiConditioner(cfg.conditioning)
        self.pretransform = Pretransform(cfg.autoencoder)

    @classmethod
    def from_state_dict(cls, cfg: ModelConfig, state: dict[str, torch.Tensor], source: str) -> StableAudioModel:
        """Builds on the meta device (no random init) and takes the file's tensors."""
        check_sizes(cfg, {k: tuple(v.shape) for k, v in state.items()}, source)  # before building anything
        with torch.device("meta"):
            model = cls(cfg)
        load_matching(model, state, source)
        model.reset_derived_buffers()
        return model.eval().requires_grad_(False)

    @torch.no_grad()
    def reset_derived_buffers(self) -> None:
        """Recomputes the buffers a file need not hold: norm betas (zeros) and RoPE inv_freq."""
        for m in self.modules():
            if isinstance(m, LayerNorm) and m.beta.is_meta:
                m.beta = torch.zeros_like(m.gamma, device=m.gamma.device)
            elif isinstance(m, RotaryEmbedding) and m.inv_freq.is_meta:
                fresh = RotaryEmbedding(2 * m.inv_freq.shape[0])
                m.inv_freq = fresh.inv_freq

    def fold_weight_norm(self) -> None:
        fold_weight_norm(self.pretransform)
