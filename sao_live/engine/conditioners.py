"""Text and number conditioners.

The T5 encoder is not part of the checkpoint: it is loaded separately (google-t5/t5-base
by default) and kept out of the module tree, so state dicts match the published files.
Number conditioners hold the checkpoint keys `conditioner.conditioners.<id>.embedder...`.

Dimension letters: B batch, L text tokens (max_length), C cond_dim.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from .config import ConditioningConfig, ModelConfig


class LearnedPositionalEmbedding(nn.Module):
    """Features [u, sin(2 pi u w), cos(2 pi u w)] of a value u in [0, 1] (257 values)."""

    def __init__(self, dim: int = 256):
        super().__init__()
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u = u[:, None]  # (B, 1)
        freqs = u * self.weights[None] * 2 * math.pi  # left to right, as the reference
        return torch.cat((u, freqs.sin(), freqs.cos()), dim=-1)  # (B, 257)


class NumberEmbedder(nn.Module):
    def __init__(self, out_dim: int):
        super().__init__()
        self.embedding = nn.Sequential(LearnedPositionalEmbedding(256), nn.Linear(257, out_dim))


class NumberConditioner(nn.Module):
    """A number (seconds) clamped to [min, max], scaled to [0, 1], embedded to (B, 1, C)."""

    def __init__(self, out_dim: int, min_val: float, max_val: float):
        super().__init__()
        self.min_val, self.max_val = min_val, max_val
        self.embedder = NumberEmbedder(out_dim)

    def forward(self, values: list[float], device: torch.device) -> torch.Tensor:
        x = torch.tensor([float(v) for v in values], dtype=torch.float32, device=device)
        x = x.clamp(self.min_val, self.max_val)
        u = (x - self.min_val) / (self.max_val - self.min_val)
        dtype = self.embedder.embedding[1].weight.dtype
        return self.embedder.embedding(u.to(dtype))[:, None]  # (B, 1, C)


class TextEncoder:
    """A T5 encoder and its tokenizer, outside the module tree.

    `fp16=True` runs T5 with half weights and activations, as the reference does;
    `cache_size` keeps embeddings of recent prompts (fast mode: a live set repeats prompts).
    """

    def __init__(self, source: str, max_length: int, device: torch.device, fp16: bool, cache_size: int = 0):
        from transformers import AutoTokenizer, T5EncoderModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        model = T5EncoderModel.from_pretrained(source).eval().requires_grad_(False)
        self.model = model.to(device=device, dtype=torch.float16 if fp16 else torch.float32)
        self.max_length = max_length
        self.device = device
        self.dim = model.config.d_model
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and bool mask, each (B, L): padded to max_length, EOS appended."""
        enc = self.tokenizer(
            prompts, truncation=True, max_length=self.max_length, padding="max_length", return_tensors="pt"
        )
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device).bool()

    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenize(prompts)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, L, C)
        # fp16 x fp32 promotes: the embedding handed on is fp32, zero at padded positions.
        return hidden * mask[..., None].float(), mask

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, L, C) fp32 and mask (B, L) bool."""
        if not self.cache_size:
            return self._encode(prompts)
        rows = []
        for p in prompts:
            if p in self._cache:
                self._cache.move_to_end(p)
            else:
                self._cache[p] = tuple(t[0] for t in self._encode([p]))
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            rows.append(self._cache[p])
        return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])


class MultiConditioner(nn.Module):
    """Holds the number conditioners under `conditioners.<id>` (checkpoint layout)."""

    def __init__(self, cfg: ConditioningConfig):
        super().__init__()
        self.cfg = cfg
        self.conditioners = nn.ModuleDict(
            {n.id: NumberConditioner(cfg.cond_dim, n.min_val, n.max_val) for n in cfg.numbers}
        )


def assemble(
    model_cfg: ModelConfig,
    prompt: tuple[torch.Tensor, torch.Tensor],
    numbers: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross tokens (B, N, C) and the global vector (B, G), in the config's id order."""
    parts = {model_cfg.conditioning.prompt_id: prompt[0], **numbers}
    cross = torch.cat([parts[i] for i in model_cfg.cross_attention_ids], dim=1)
    global_cond = torch.cat([parts[i] for i in model_cfg.global_ids], dim=-1)[:, 0]
    return cross, global_cond
