"""StableAudioPipeline: text + numbers -> DiT sampling -> VAE decode.

Two numeric modes:
- "reference" reproduces stable-audio-tools: T5 in fp16, the reference's RNG draws in its
  order, the full window decoded (the VAE in fp32 on CPU, where fp16 convolutions crawl);
- "fast" may move numbers by an inaudible amount: T5 in fp32 on CPU with a prompt cache,
  the CFG null branch skips cross-attention, only the frames a clip needs are decoded,
  the decoder runs in tiles (`tiled.py`), and on a CPU the DiT's linears and the decoder's
  products use the arithmetic `arithmetic.py` picks for it (int8 DiT linears, `quantize.py`,
  on CPUs without native bf16).
Per-stage entry points (`conditioning`, `dit`, `decode`, `encode_audio`) are public so
tests can compare them with golden tensors and the benchmark can time them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidRequestError, ModelAccessError
from ..ranges import check_seconds, check_seed, pick_seed
from . import quantize, sampling
from .arithmetic import Arithmetic, cpu_features, for_this_cpu, parse_override
from .conditioners import TextEncoder, assemble
from .config import ModelConfig
from .loading import RANDOM_MODELS, read_state_dict, resolve_model_files, text_encoder_source
from .model import StableAudioModel
from .tiled import TiledDecoder

log = logging.getLogger(__name__)

DEFAULT_TEXT_ENCODER = "google-t5/t5-base"
DECODE_MARGIN_FRAMES = 16  # wider than the decoder's receptive field (~10 frames, docs/engine.md)
# Latent frames fed to the streaming decoder at a time: a small first push so sound can start
# early, larger ones later for throughput (BENCHMARKS.md: streamed decoding).
STREAM_PUSHES = (16, 16, 32)
STREAM_PUSH = 64  # every push after those

# Model-card defaults per objective: Small is rf, 1.0 is v.
DEFAULTS = {
    "rf": dict(sampler="pingpong", steps=8, cfg_scale=1.0, sigma_min=None, sigma_max=1.0, rho=None),
    "v": dict(sampler="dpmpp-3m-sde", steps=100, cfg_scale=7.0, sigma_min=0.3, sigma_max=500.0, rho=1.0),
}


@dataclass
class Conditioning:
    """What the DiT sees: cross tokens (B, N, C) and the global vector (B, G)."""

    cross: torch.Tensor
    global_cond: torch.Tensor


@dataclass
class GenerationResult:
    audio: np.ndarray  # float32 (channels, samples), trimmed to the requested seconds
    sample_rate: int
    seed: int
    latents: torch.Tensor  # (1, C, T) as sampled
    # where the time went, in seconds: text (T5 and number conditioning), dit (the sampler's
    # steps), decode, first_audio (from the start of generate to the first decoded chunk)
    timings: dict = field(default_factory=dict)


def best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _load_text_encoder(source: str, cfg: ModelConfig, device, fp16: bool, cache: int) -> TextEncoder:
    source = text_encoder_source(str(source))
    try:
        return TextEncoder(source, cfg.conditioning.max_length, device, fp16=fp16, cache_size=cache)
    except OSError as err:
        raise ModelAccessError(
            f"cannot load the T5 text encoder {source!r}: {err}. Pass --text-encoder with a local folder "
            "holding a T5 encoder and its tokenizer (save_pretrained layout), or make the hub reachable"
        ) from None


class StableAudioPipeline:
    def __init__(
        self,
        model: StableAudioModel,
        text_encoder: TextEncoder,
        device,
        numerics: str = "fast",
        int8: bool | None = None,
        arithmetic: str | None = None,
    ):
        if numerics not in ("fast", "reference"):
            raise ValueError(f"numerics must be 'fast' or 'reference', got {numerics!r}")
        if int8 and numerics == "reference":
            raise ValueError("int8 is a fast-mode option; reference numerics run the DiT in fp32")
        if parse_override(arithmetic) and numerics == "reference":
            raise ValueError("arithmetic is a fast-mode option; reference numerics run in fp32")
        if text_encoder.dim != model.cfg.conditioning.cond_dim:
            raise InvalidRequestError(
                f"the text encoder's width {text_encoder.dim} does not match the model's cond_dim "
                f"{model.cfg.conditioning.cond_dim}: use the text encoder the model was trained with"
            )
        self.cfg = model.cfg
        self.name = "this model"  # what error messages call it; load_pipeline gives the name it was asked by
        self.device = torch.device(device)
        self.numerics = numerics
        self.text_encoder = text_encoder
        self.model = model.to(self.device)
        self.model.fold_weight_norm()
        self.model.model.skip_null_cross = numerics == "fast"
        # What each part computes in (arithmetic.py); all fp32 unless fast mode on a CPU says otherwise.
        self.arithmetic = Arithmetic()
        if self.device.type == "cpu":
            if numerics == "fast":
                self.arithmetic = for_this_cpu(int8, arithmetic)
                log.info("arithmetic on this CPU (%s): %s", cpu_features().describe(), self.arithmetic.describe())
            # The plain decoder's arithmetic in cache-sized tiles: ~3x faster on a CPU. The VAE
            # stays fp32 here even where the config says model_half: fp16 convolutions on a CPU
            # are ~100x slower; bf16 products only where the arithmetic says so.
            dtype = torch.bfloat16 if self.arithmetic.decoder == "bf16" else torch.float32
            decoder = self.model.pretransform.model.decoder
            winograd = self.arithmetic.decoder == "winograd"
            self.model.pretransform.fast_decoder = TiledDecoder(decoder, dtype, winograd=winograd)
            if self.arithmetic.dit == "int8":
                quantize.quantize_dit_(self.model.model.model, self.arithmetic.int8_weight_bits)
            elif self.arithmetic.dit == "bf16":
                quantize.bf16_dit_(self.model.model.model)
        else:
            if int8:
                raise ValueError("int8 runs on the CPU only; on a GPU fast mode uses half precision")
            if parse_override(arithmetic):
                raise ValueError("arithmetic is chosen on CPUs only; on a GPU fast mode uses half precision")
            if self.device.type == "cuda" and (numerics == "fast" or self.cfg.autoencoder.model_half):
                self.model.pretransform.half()  # as the reference runs Small's VAE (model_half)
            if numerics == "fast" and self.device.type == "cuda":
                half = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
                self.model.model.half_precision_(half)
        self.int8 = self.arithmetic.dit == "int8"

    # ------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path = "model",
        text_encoder: str | Path = DEFAULT_TEXT_ENCODER,
        device: str | torch.device | None = None,
        numerics: str = "fast",
        int8: bool | None = None,
        arithmetic: str | None = None,
    ) -> StableAudioPipeline:
        """Loads a local folder or hub repo (`model_config.json` + weights) and its T5 encoder."""
        config_path, weights_path = resolve_model_files(source)
        cfg = ModelConfig.from_file(config_path)
        model = StableAudioModel.from_state_dict(cfg, read_state_dict(weights_path), str(weights_path))
        return cls._assemble(cfg, model, str(text_encoder), device, numerics, int8, arithmetic)

    @classmethod
    def from_config(
        cls,
        cfg: ModelConfig,
        text_encoder: str | Path,
        device=None,
        numerics: str = "fast",
        seed: int = 0,
        int8: bool | None = None,
        arithmetic: str | None = None,
    ) -> StableAudioPipeline:
        """A model with random weights (tests, smoke runs, benchmarks at published sizes)."""
        from .tiny import quiet_decoder_, randomize_

        model = StableAudioModel(cfg).eval().requires_grad_(False)
        randomize_(model, seed)
        quiet_decoder_(model)  # random weights alone make full-scale noise
        return cls._assemble(cfg, model, str(text_encoder), device, numerics, int8, arithmetic)

    @classmethod
    def _assemble(cls, cfg, model, text_encoder, device, numerics, int8, arithmetic=None):
        device = torch.device(device) if device is not None else best_device()
        # The reference runs T5 in fp16; on CPU fp32 is 4x faster, so fast mode uses it there.
        fp16 = numerics == "reference" or device.type != "cpu"
        encoder = _load_text_encoder(text_encoder, cfg, device, fp16, cache=64 if numerics == "fast" else 0)
        return cls(model, encoder, device, numerics, int8, arithmetic)

    # ------------------------------------------------------------ stages

    @torch.no_grad()
    def conditioning(
        self, prompts: list[str], seconds_total: list[float], seconds_start: list[float] | None = None
    ) -> Conditioning:
        """Runs T5 and the number conditioners, assembled as the config says."""
        numbers = {}
        values = {"seconds_total": seconds_total, "seconds_start": seconds_start or [0.0] * len(prompts)}
        for cid, conditioner in self.model.conditioner.conditioners.items():
            if cid not in values:
                raise InvalidRequestError(f"the model needs a value for {cid!r}, which sao-live does not know")
            numbers[cid] = conditioner(values[cid], self.device)
        cross, global_cond = assemble(self.cfg, self.text_encoder(prompts), numbers)
        return Conditioning(cross, global_cond)

    @torch.no_grad()
    def dit(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Conditioning,
        cfg_scale: float = 1.0,
        negative: Conditioning | None = None,
    ) -> torch.Tensor:
        """One guided DiT evaluation: x (B, C, T), t (B,) -> model output (B, C, T)."""
        neg = None if negative is None else negative.cross
        return self.model.model(x, t, cond.cross, cond.global_cond, cfg_scale, neg)

    def decode_frames(self, seconds: float) -> int:
        """Latent frames fast mode decodes for `seconds` of audio: what the clip needs, plus a
        margin beyond the decoder's receptive field."""
        keep = round(seconds * self.cfg.sample_rate)
        return math.ceil(keep / self.cfg.autoencoder.downsampling_ratio) + DECODE_MARGIN_FRAMES

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, C, T) -> audio (B, channels, T * downsampling_ratio) fp32."""
        return self.model.pretransform.decode(latents)

    def decode_stream(self, latents: torch.Tensor, keep: int) -> Iterator[tuple[np.ndarray, float]]:
        """Latents (1, C, T) -> the first `keep` samples of their audio, in time order, as float32
        (channels, n) chunks that join into `decode(latents)[0, :, :keep]` to float rounding; each
        with the fraction of the decoding's work done by then (the decoder's output so far, kept
        or not: the frames past `keep` that the last samples need cost time but give no audio)."""
        decoder = self.model.pretransform.fast_decoder
        if decoder is None:  # the plain decoder (GPU, or no tiled decoder): one chunk
            yield self.decode(latents)[0, :, :keep].cpu().numpy().astype(np.float32, copy=False), 1.0
            return
        out, work = 0, latents.shape[2] * self.cfg.autoencoder.downsampling_ratio
        total, pushes = latents.shape[2], []
        for n in (*STREAM_PUSHES, *[STREAM_PUSH] * math.ceil(total / STREAM_PUSH)):
            pushes.append(min(n, total - sum(pushes)))
        made = 0
        for audio in decoder.stream(latents[0].float(), [n for n in pushes if n]):  # (samples, channels)
            piece = audio[: keep - made].t().numpy().astype(np.float32)
            made += piece.shape[1]
            out += audio.shape[0]
            if piece.shape[1]:
                yield piece, min(1.0, out / work)
            if made >= keep:
                return

    @torch.no_grad()
    def encode_audio(self, audio: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Audio (B, channels, samples) -> latents sampled from the VAE posterior."""
        return self.model.pretransform.encode(audio.to(self.device), generator)

    # ------------------------------------------------------------ generation

    def _prepare_init_audio(self, init_audio, sample_size: int) -> torch.Tensor:
        audio, rate = init_audio
        audio = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        if audio.ndim == 1:
            audio = audio[None]
        if audio.ndim != 2 or not torch.isfinite(audio).all():
            raise InvalidRequestError("init_audio must be finite audio shaped (channels, samples)")
        if rate != self.cfg.sample_rate:
            import soxr  # not bit-identical to the reference's torchaudio resampler

            audio = torch.from_numpy(soxr.resample(audio.T.numpy(), rate, self.cfg.sample_rate).T.copy())
        audio = audio.repeat(2, 1) if audio.shape[0] == 1 else audio[:2]
        audio = audio[:, :sample_size]
        audio = torch.nn.functional.pad(audio, (0, sample_size - audio.shape[1]))
        return audio[None].to(self.device)

    def _check(self, prompt, seconds, steps, cfg_scale, sample_size) -> None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequestError(f"prompt must be a non-empty string, got {prompt!r}")
        check_seconds(seconds, sample_size / self.cfg.sample_rate, self.name)
        if not isinstance(steps, int) or not 1 <= steps <= 1000:
            raise InvalidRequestError(f"steps must be an integer in [1, 1000], got {steps!r}")
        if not isinstance(cfg_scale, (int, float)) or not math.isfinite(cfg_scale) or not 0 <= cfg_scale <= 50:
            raise InvalidRequestError(f"cfg_scale must be in [0, 50], got {cfg_scale!r}")

    def generate(
        self,
        prompt: str,
        seconds: float | None = None,
        seed: int | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        sampler: str | None = None,
        negative_prompt: str | None = None,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        rho: float | None = None,
        sample_size: int | None = None,
        init_audio: tuple[np.ndarray, int] | None = None,
        init_noise_level: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        on_audio: Callable[[np.ndarray, float], None] | None = None,
    ) -> GenerationResult:
        """Generates one clip of `seconds` (default: the whole window) for `prompt`.

        `seed` is in [0, 2147483647]; None or -1 picks one (in `GenerationResult.seed`).

        `init_audio` is (audio (channels, samples) float, sample_rate); `init_noise_level`
        is sigma_max for it (rf: in (0, 1], default 0.1; v: default 1.0).
        `progress(done_steps, total_steps)` is called after every sampler step; raising
        `sao_live.errors.Cancelled` from it stops the generation.
        `on_audio(chunk, done)` (fast mode) gets the decoded audio in time order, as float32
        (channels, n) chunks, while the rest is still decoding; they join into
        `GenerationResult.audio` exactly. `done`: the fraction of the decoding's work finished.
        """
        began = time.perf_counter()
        d = DEFAULTS[self.cfg.objective]
        sample_size = sample_size or self.cfg.sample_size
        seconds = sample_size / self.cfg.sample_rate if seconds is None else seconds
        steps = d["steps"] if steps is None else steps
        cfg_scale = d["cfg_scale"] if cfg_scale is None else cfg_scale
        ratio = self.cfg.autoencoder.downsampling_ratio  # samples per latent frame
        if not isinstance(sample_size, int) or sample_size % ratio or sample_size <= 0:
            raise InvalidRequestError(f"sample_size must be a positive multiple of {ratio}, got {sample_size!r}")
        self._check(prompt, seconds, steps, cfg_scale, sample_size)
        sample = sampling.get_sampler(self.cfg.objective, sampler or d["sampler"])
        seed = None if seed is None else check_seed(seed)  # -1 also asks for a random one
        seed = pick_seed() if seed is None else seed

        # RNG draws in the reference's order: noise, init-audio posterior, tree seed.
        generator = torch.Generator(self.device).manual_seed(seed)
        cpu_generator = generator if self.device.type == "cpu" else torch.Generator().manual_seed(seed)
        frames = sample_size // ratio
        noise = torch.randn([1, self.cfg.dit.io_channels, frames], generator=generator, device=self.device)

        cond = self.conditioning([prompt], [seconds])
        negative = self.conditioning([negative_prompt], [seconds]) if negative_prompt else None
        timings = {"text": time.perf_counter() - began}
        init = None
        if init_audio is not None:
            init = self.encode_audio(self._prepare_init_audio(init_audio, sample_size), generator)

        def velocity(x, t):  # rf: the guided model output is the velocity
            return self.dit(x, t, cond, cfg_scale, negative)

        def denoise(x, sigma):  # v: k-diffusion's VDenoiser, sigma_data = 1
            c_skip = 1 / (sigma**2 + 1)
            c_out = -sigma / (sigma**2 + 1) ** 0.5
            c_in = 1 / (sigma**2 + 1) ** 0.5
            t = sigma.atan() / math.pi * 2
            out = self.dit(x * c_in[:, None, None], t, cond, cfg_scale, negative)
            return out * c_out[:, None, None] + x * c_skip[:, None, None]

        callback = None if progress is None else (lambda info: progress(info["i"] + 1, info["steps"]))
        if self.cfg.objective == "rf":
            level = init_noise_level if init_noise_level is not None else 0.1
            top = min(sigma_max if sigma_max is not None else 1.0, 1.0) if init is None else level
            sigmas = sampling.get_sigmas_rf(steps, top)
            x = noise if init is None else init * (1 - top) + noise * top
            latents = sample(velocity, x, sigmas, callback=callback, generator=generator)
        else:
            top = sigma_max if sigma_max is not None else d["sigma_max"]
            if init is not None:
                top = init_noise_level if init_noise_level is not None else 1.0
            low = sigma_min if sigma_min is not None else d["sigma_min"]
            sigmas = sampling.get_sigmas_polyexponential(steps, low, top, rho or d["rho"]).to(self.device)
            x = noise * sigmas[0] if init is None else init + noise * sigmas[0]
            latents = sample(denoise, x, sigmas, callback=callback, generator=cpu_generator)

        decoding = time.perf_counter()
        timings["dit"] = decoding - began - timings["text"]
        keep = round(seconds * self.cfg.sample_rate)
        if on_audio is not None and self.numerics == "fast":
            pieces = []
            for piece, done in self.decode_stream(latents[:, :, : self.decode_frames(seconds)], keep):
                timings.setdefault("first_audio", time.perf_counter() - began)
                on_audio(piece, done)
                pieces.append(piece)
            audio = np.concatenate(pieces, axis=1)
        else:
            if self.numerics == "fast":
                audio = self.decode(latents[:, :, : self.decode_frames(seconds)])
            else:
                audio = self.decode(latents)
            audio = audio[0, :, :keep].cpu().numpy().astype(np.float32, copy=False)
            if on_audio is not None:
                on_audio(audio, 1.0)
            timings["first_audio"] = time.perf_counter() - began
        timings["decode"] = time.perf_counter() - decoding
        return GenerationResult(audio, self.cfg.sample_rate, seed, latents, timings)


def load_pipeline(
    model: str | Path = "model",
    text_encoder: str | Path | None = None,
    device: str | torch.device | None = None,
    numerics: str = "fast",
    int8: bool | None = None,
    arithmetic: str | None = None,
) -> StableAudioPipeline:
    """A pipeline from a folder, a hub repo id, or one of RANDOM_MODELS (no download).

    `tiny-random` is a toy model shaped like SAO Small, with its 11.9 s window, for smoke runs and tests;
    `random-small` / `random-1.0` are the published sizes with random weights (benchmarks).
    """
    if str(model) in RANDOM_MODELS:
        from .tiny import random_t5_base_folder, tiny_text_encoder_folder

        config_name, encoder_kind, replaced = RANDOM_MODELS[str(model)]
        raw = json.loads((Path(__file__).resolve().parent.parent / "configs" / config_name).read_text())
        cfg = ModelConfig.from_dict({**raw, **replaced})
        if text_encoder is None:
            text_encoder = tiny_text_encoder_folder() if encoder_kind == "tiny" else random_t5_base_folder()
        pipe = StableAudioPipeline.from_config(cfg, text_encoder, device, numerics, int8=int8, arithmetic=arithmetic)
    else:
        encoder = text_encoder or DEFAULT_TEXT_ENCODER
        pipe = StableAudioPipeline.from_pretrained(model, encoder, device, numerics, int8, arithmetic)
    pipe.name = str(model)
    return pipe
