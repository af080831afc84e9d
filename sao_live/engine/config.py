"""Typed views of the official `model_config.json`.

Every module size comes from here, never from constants. Each component reads its own
section through one `from_json` classmethod; anything the two published configs do not
use is rejected with a message rather than silently ignored. Every size is checked against
SIZE_LIMITS and against the others (embed_dim divisible by num_heads, strides multiplying
to downsampling_ratio, ...) before anything is built, so an absurd value is an error that
names it rather than a hang or an out-of-memory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelConfigError

# Inclusive bounds for every size: several times the published models' (in the comments) so
# that a real variant passes, small enough that nothing absurd is ever allocated.
SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "sample_size": (1, 2**23),  # 524288 (Small), 2097152 (1.0): up to 190 s at 44.1 kHz
    "sample_rate": (1000, 384_000),  # 44100
    "audio_channels": (1, 8),  # 2
    "channels": (1, 1024),  # 128
    "c_mults": (1, 64),  # 1..16, each
    "strides": (1, 32),  # 2..8, each
    "blocks": (1, 8),  # len(c_mults) == len(strides): 5
    "latent_dim": (1, 1024),  # 64 (encoder: 128)
    "downsampling_ratio": (1, 2**16),  # 2048
    "cond_dim": (1, 8192),  # 768
    "max_length": (1, 4096),  # 64, 128
    "io_channels": (1, 1024),  # 64
    "embed_dim": (1, 16384),  # 1024, 1536
    "depth": (1, 256),  # 16, 24
    "num_heads": (1, 256),  # 8, 24
    "cond_token_dim": (0, 8192),  # 768
    "global_cond_dim": (0, 65536),  # 768, 1536
}


def _need(section: dict, key: str, where: str) -> Any:
    if key not in section:
        raise ModelConfigError(f"model_config.json: {where} has no {key!r}")
    return section[key]


def _size(value: Any, key: str, where: str, limit: str | None = None) -> int:
    """`value` if it is an integer within SIZE_LIMITS[limit or key], else ModelConfigError naming it."""
    low, high = SIZE_LIMITS[limit or key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ModelConfigError(
            f"model_config.json: {where} {key} is {value!r}; expected an integer from {low} to {high:,}"
        )
    return value


def _sizes(values: Any, key: str, where: str) -> tuple[int, ...]:
    """A list of sizes (c_mults, strides), each and its length within SIZE_LIMITS."""
    low, high = SIZE_LIMITS["blocks"]
    if not isinstance(values, list) or not low <= len(values) <= high:
        raise ModelConfigError(
            f"model_config.json: {where} {key} is {values!r}; expected a list of {low} to {high} integers"
        )
    return tuple(_size(v, f"{key}[{i}]", where, key) for i, v in enumerate(values))


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
        audio_key = "in_channels" if kind == "encoder" else "out_channels"
        cfg = cls(
            audio_channels=_size(c.get(audio_key, 2), audio_key, where, "audio_channels"),
            channels=_size(_need(c, "channels", where), "channels", where),
            c_mults=_sizes(_need(c, "c_mults", where), "c_mults", where),
            strides=_sizes(_need(c, "strides", where), "strides", where),
            latent_dim=_size(_need(c, "latent_dim", where), "latent_dim", where),
            final_tanh=c.get("final_tanh", kind == "decoder"),
        )
        if len(cfg.c_mults) != len(cfg.strides):
            raise ModelConfigError(
                f"model_config.json: {where} has {len(cfg.c_mults)} c_mults and {len(cfg.strides)} strides; "
                "expected one of each per block"
            )
        return cfg


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
        cfg = cls(
            encoder=OobleckConfig.from_json(c["encoder"], "encoder"),
            decoder=OobleckConfig.from_json(c["decoder"], "decoder"),
            latent_dim=_size(_need(c, "latent_dim", "pretransform"), "latent_dim", "pretransform"),
            downsampling_ratio=_size(
                _need(c, "downsampling_ratio", "pretransform"), "downsampling_ratio", "pretransform"
            ),
            audio_channels=_size(c.get("io_channels", 2), "io_channels", "pretransform", "audio_channels"),
            model_half=bool(section.get("model_half", False)),
        )
        cfg._check_consistent()
        return cfg

    def _check_consistent(self) -> None:
        expected = {
            "encoder latent_dim": (self.encoder.latent_dim, 2 * self.latent_dim, "2 x latent_dim (VAE mean and scale)"),
            "decoder latent_dim": (self.decoder.latent_dim, self.latent_dim, "latent_dim"),
            "encoder in_channels": (self.encoder.audio_channels, self.audio_channels, "io_channels"),
            "decoder out_channels": (self.decoder.audio_channels, self.audio_channels, "io_channels"),
        }
        for kind, part in (("encoder", self.encoder), ("decoder", self.decoder)):
            expected[f"downsampling_ratio (from the {kind})"] = (
                self.downsampling_ratio,
                math.prod(part.strides),
                f"the product of the {kind} strides {list(part.strides)}",
            )
        for key, (value, want, what) in expected.items():
            if value != want:
                raise ModelConfigError(f"model_config.json: pretransform {key} is {value}; expected {want}, {what}")


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
                max_length = _size(c.get("max_length", 128), "max_length", f"conditioner {cid!r}")
                prompt = (cid, c.get("t5_model_name", "t5-base"), max_length)
            elif kind == "number":
                low, high = c.get("min_val", 0), c.get("max_val", 1)
                if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high)) or low >= high:
                    raise ModelConfigError(
                        f"model_config.json: conditioner {cid!r} has min_val {low!r} and max_val {high!r}; "
                        "expected two finite numbers, min_val < max_val"
                    )
                numbers.append(NumberConfig(cid, float(low), float(high)))
            else:
                raise ModelConfigError(f"conditioner {cid!r} of type {kind!r} is not supported")
        if prompt is None:
            raise ModelConfigError("model_config.json: no t5 prompt conditioner")
        cond_dim = _size(section["cond_dim"], "cond_dim", "conditioning")
        return cls(cond_dim, prompt[0], prompt[1], prompt[2], tuple(numbers))


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
        where = "diffusion"
        cfg = cls(
            io_channels=_size(c["io_channels"], "io_channels", where),
            embed_dim=_size(c["embed_dim"], "embed_dim", where),
            depth=_size(c["depth"], "depth", where),
            num_heads=_size(c["num_heads"], "num_heads", where),
            cond_token_dim=_size(c.get("cond_token_dim", 0), "cond_token_dim", where),
            global_cond_dim=_size(c.get("global_cond_dim", 0), "global_cond_dim", where),
            project_cond_tokens=c.get("project_cond_tokens", True),
            qk_norm=qk_norm == "ln",
        )
        cfg._check_heads()
        return cfg

    def _check_heads(self) -> None:
        e, heads = self.embed_dim, self.num_heads
        if e % heads:
            raise ModelConfigError(
                f"model_config.json: diffusion embed_dim {e} is not divisible by num_heads {heads}; "
                "expected embed_dim = num_heads x the head width"
            )
        if self.head_dim < 32 or self.head_dim % 4:
            raise ModelConfigError(
                f"model_config.json: diffusion embed_dim {e} / num_heads {heads} gives heads {self.head_dim} wide; "
                "expected a multiple of 4, at least 32 (rotary embeddings turn max(width / 2, 32) dims of each head)"
            )
        cross = self.cond_embed_dim
        if cross and (cross % self.head_dim or heads % (cross // self.head_dim)):
            raise ModelConfigError(
                f"model_config.json: diffusion cross-attention tokens are {cross} wide (cond_token_dim, or embed_dim "
                f"with project_cond_tokens); expected a multiple of the head width {self.head_dim} whose "
                f"number of heads divides num_heads {heads}"
            )


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
                sample_size=_size(raw["sample_size"], "sample_size", "top level"),
                sample_rate=_size(raw["sample_rate"], "sample_rate", "top level"),
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
        except (AttributeError, TypeError) as e:  # a section that is not an object, a list that is not one
            raise ModelConfigError(f"model_config.json does not have the layout of a model config: {e}") from None
        cfg._check_ids()
        cfg._check_sizes()
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

    def _check_sizes(self) -> None:
        ratio = self.autoencoder.downsampling_ratio
        if self.sample_size % ratio:
            raise ModelConfigError(
                f"model_config.json: sample_size is {self.sample_size}; expected a multiple of the "
                f"pretransform downsampling_ratio {ratio}"
            )
        if self.dit.io_channels != self.autoencoder.latent_dim:
            raise ModelConfigError(
                f"model_config.json: diffusion io_channels is {self.dit.io_channels}; expected the "
                f"pretransform latent_dim {self.autoencoder.latent_dim}"
            )

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
