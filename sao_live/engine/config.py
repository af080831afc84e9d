"""Typed views of the official `model_config.json`.

Every module size comes from here, never from constants. Each component reads its own
section through one `from_json` classmethod; anything the two published configs do not
use is rejected with a message rather than silently ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelConfigError


def _need(section: dict, key: str, where: str) -> Any:
    if key not in section:
        raise ModelConfigError(f"model_config.json: {where} has no {key!r}")
    return section[key]


@dataclass(frozen=True)
class OobleckConfig:
    """Encoder or decoder of the Oobleck VAE."""

    audio_channels: int  # in_channels (encoder) or out_channels (decoder)
    channels: int
    c_mults: tuple[int, ...]
    strides: tuple[int, ...]
    latent_dim: int  # encoder: 2 x latent (mean and scale); decoder: latent
    final_tanh: bool = False

    @classmethod
    def from_json(cls, section: dict, kind: str) -> OobleckConfig:
        if section.get("type") != "oobleck":
            raise ModelConfigError(f"only the oobleck {kind} is supported, got {section.get('type')!r}")
        c = section["config"]
        if not c.get("use_snake", False):
            raise ModelConfigError(f"the {kind} must use SnakeBeta (use_snake true)")
        if c.get("antialias_activation") or c.get("use_nearest_upsample"):
            raise ModelConfigError(f"{kind}: antialias/nearest-upsample variants are not supported")
        where = f"pretransform {kind}"
        return cls(
            audio_channels=c.get("in_channels" if kind == "encoder" else "out_channels", 2),
            channels=_need(c, "channels", where),
            c_mults=tuple(_need(c, "c_mults", where)),
            strides=tuple(_need(c, "strides", where)),
            latent_dim=_need(c, "latent_dim", where),
            final_tanh=c.get("final_tanh", kind == "decoder"),
        )


@dataclass(frozen=True)
class AutoencoderConfig:
    encoder: OobleckConfig
    decoder: OobleckConfig
    latent_dim: int
    downsampling_ratio: int
    audio_channels: int
    model_half: bool

    @classmethod
    def from_json(cls, section: dict) -> AutoencoderConfig:
        if section.get("type") != "autoencoder":
            raise ModelConfigError(f"pretransform must be an autoencoder, got {section.get('type')!r}")
        if section.get("scale", 1.0) != 1.0 or section.get("chunked", False):
            raise ModelConfigError("pretransform scale != 1 or chunked decoding is not supported")
        c = section["config"]
        if c.get("bottleneck", {}).get("type") != "vae":
            raise ModelConfigError(f"only the vae bottleneck is supported, got {c.get('bottleneck')!r}")
        return cls(
            encoder=OobleckConfig.from_json(c["encoder"], "encoder"),
            decoder=OobleckConfig.from_json(c["decoder"], "decoder"),
            latent_dim=_need(c, "latent_dim", "pretransform"),
            downsampling_ratio=_need(c, "downsampling_ratio", "pretransform"),
            audio_channels=c.get("io_channels", 2),
            model_half=bool(section.get("model_half", False)),
        )


@dataclass(frozen=True)
class NumberConfig:
    id: str
    min_val: float
    max_val: float


@dataclass(frozen=True)
class ConditioningConfig:
    """The T5 prompt conditioner and the number conditioners."""

    cond_dim: int
    prompt_id: str
    t5_model_name: str
    max_length: int
    numbers: tuple[NumberConfig, ...]

    @classmethod
    def from_json(cls, section: dict) -> ConditioningConfig:
        prompt = None
        numbers = []
        for entry in section["configs"]:
            kind, cid, c = entry["type"], entry["id"], entry.get("config", {})
            if kind == "t5" and prompt is None:
                if c.get("project_out") or c.get("enable_grad"):
                    raise ModelConfigError("t5 conditioner: project_out/enable_grad not supported")
                prompt = (cid, c.get("t5_model_name", "t5-base"), c.get("max_length", 128))
            elif kind == "number":
                numbers.append(NumberConfig(cid, float(c.get("min_val", 0)), float(c.get("max_val", 1))))
            else:
                raise ModelConfigError(f"conditioner {cid!r} of type {kind!r} is not supported")
        if prompt is None:
            raise ModelConfigError("model_config.json: no t5 prompt conditioner")
        return cls(section["cond_dim"], prompt[0], prompt[1], prompt[2], tuple(numbers))


@dataclass(frozen=True)
class DiTConfig:
    """The diffusion transformer."""

    io_channels: int
    embed_dim: int
    depth: int
    num_heads: int
    cond_token_dim: int
    global_cond_dim: int
    project_cond_tokens: bool
    qk_norm: bool

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def cond_embed_dim(self) -> int:
        """Width of cross-attention tokens after `to_cond_embed` (Dc)."""
        return self.embed_dim if self.project_cond_tokens else self.cond_token_dim

    @property
    def rotary_dim(self) -> int:
        """The reference rotates max(head_dim // 2, 32) dims of each head."""
        return max(self.head_dim // 2, 32)

    @classmethod
    def from_json(cls, section: dict) -> DiTConfig:
        if section.get("type") != "dit":
            raise ModelConfigError(f"only the dit diffusion model is supported, got {section.get('type')!r}")
        c = section["config"]
        if c.get("transformer_type", "continuous_transformer") != "continuous_transformer":
            raise ModelConfigError(f"transformer_type {c['transformer_type']!r} is not supported")
        unsupported = {"patch_size": 1, "input_concat_dim": 0, "prepend_cond_dim": 0}
        for key, default in unsupported.items():
            if c.get(key, default) != default:
                raise ModelConfigError(f"dit option {key}={c[key]!r} is not supported")
        if c.get("global_cond_type", "prepend") != "prepend":
            raise ModelConfigError("only global_cond_type 'prepend' is supported")
        qk_norm = c.get("attn_kwargs", {}).get("qk_norm", "none")
        if qk_norm not in ("none", "ln"):
            raise ModelConfigError(f"qk_norm {qk_norm!r} is not supported (none or ln)")
        cfg = cls(
            io_channels=c["io_channels"],
            embed_dim=c["embed_dim"],
            depth=c["depth"],
            num_heads=c["num_heads"],
            cond_token_dim=c.get("cond_token_dim", 0),
            global_cond_dim=c.get("global_cond_dim", 0),
            project_cond_tokens=c.get("project_cond_tokens", True),
            qk_norm=qk_norm == "ln",
        )
        if cfg.embed_dim % cfg.num_heads or cfg.cond_embed_dim % cfg.head_dim:
            raise ModelConfigError("dit: embed_dim and cross-token width must be multiples of the head dim")
        return cfg


@dataclass(frozen=True)
class ModelConfig:
    """A whole `diffusion_cond` model: conditioning, DiT, VAE and sampling facts."""

    sample_size: int
    sample_rate: int
    objective: str  # "v" or "rf" (rectified_flow and rf_denoiser sample alike)
    cross_attention_ids: tuple[str, ...]
    global_ids: tuple[str, ...]
    conditioning: ConditioningConfig
    dit: DiTConfig
    autoencoder: AutoencoderConfig
    raw: dict

    @property
    def latent_frames(self) -> int:
        return self.sample_size // self.autoencoder.downsampling_ratio

    @property
    def window_seconds(self) -> float:
        return self.sample_size / self.sample_rate

    @classmethod
    def from_dict(cls, raw: dict) -> ModelConfig:
        try:
            if raw.get("model_type") != "diffusion_cond":
                raise ModelConfigError(f"model_type must be 'diffusion_cond', got {raw.get('model_type')!r}")
            m = raw["model"]
            objective = m["diffusion"].get("diffusion_objective", "v")
            if objective not in ("v", "rectified_flow", "rf_denoiser"):
                raise ModelConfigError(f"diffusion_objective {objective!r} is not supported")
            cfg = cls(
                sample_size=raw["sample_size"],
                sample_rate=raw["sample_rate"],
                objective="v" if objective == "v" else "rf",
                cross_attention_ids=tuple(m["diffusion"].get("cross_attention_cond_ids", ())),
                global_ids=tuple(m["diffusion"].get("global_cond_ids", ())),
                conditioning=ConditioningConfig.from_json(m["conditioning"]),
                dit=DiTConfig.from_json(m["diffusion"]),
                autoencoder=AutoencoderConfig.from_json(m["pretransform"]),
                raw=raw,
            )
        except KeyError as e:
            raise ModelConfigError(f"model_config.json is missing the field {e.args[0]!r}") from None
        cfg._check_ids()
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelConfigError(f"no model config at {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelConfigError(f"{path} is not valid JSON: {e}") from None
        return cls.from_dict(raw)

    def _check_ids(self) -> None:
        known = {self.conditioning.prompt_id} | {n.id for n in self.conditioning.numbers}
        for cid in self.cross_attention_ids + self.global_ids:
            if cid not in known:
                raise ModelConfigError(f"conditioning id {cid!r} is used by the dit but not defined")
        if any(cid == self.conditioning.prompt_id for cid in self.global_ids):
            raise ModelConfigError("the prompt cannot be a global conditioning input")
        cross = self.conditioning.cond_dim
        if self.cross_attention_ids and self.dit.cond_token_dim != cross:
            raise ModelConfigError(f"dit cond_token_dim {self.dit.cond_token_dim} != cond_dim {cross}")
        if self.dit.global_cond_dim != cross * len(self.global_ids):
            raise ModelConfigError(
                f"dit global_cond_dim {self.dit.global_cond_dim} != cond_dim x {len(self.global_ids)} global ids"
            )
