"""Tiny random models for tests and offline smoke runs (no download).

The hub is out of reach in tests and CI, so a tiny T5 encoder with its own small
tokenizer is written to a folder that the real loaders then read, exactly as they
read google-t5/t5-base. The tiny model configs live in `sao_live/configs/tiny-*.json`:
they keep every structural choice of the published configs (conditioning ids, qk-norm,
GQA cross-attention in the 1.0 shape, the VAE strides) at toy widths.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# A small vocabulary of whole words and pieces, enough to tokenise typical prompts
# into several ids; anything else falls back to the unknown id.
_WORDS = [
    "warm",
    "arpeggios",
    "on",
    "house",
    "beats",
    "bpm",
    "with",
    "drums",
    "effect",
    "kick",
    "snare",
    "hat",
    "hi",
    "clap",
    "bass",
    "synth",
    "pad",
    "lead",
    "piano",
    "guitar",
    "strings",
    "ambient",
    "techno",
    "trap",
    "drum",
    "and",
    "loop",
    "one",
    "shot",
    "dark",
    "bright",
    "soft",
    "hard",
    "deep",
    "punchy",
    "reverb",
    "delay",
    "vinyl",
    "noise",
    "808",
    "909",
    "120",
    "128",
    "140",
    "90",
    "100",
    "a",
    "the",
    "of",
    "in",
    "low",
    "high",
    "fast",
    "slow",
    "melody",
    "chord",
    "chords",
    "texture",
    "rhythm",
]
_PIECES = list("abcdefghijklmnopqrstuvwxyz0123456789")

TINY_T5 = dict(d_model=64, d_kv=32, d_ff=128, num_layers=2, num_heads=2)


def _build_tokenizer(folder: Path) -> None:
    """Writes a Unigram/Metaspace tokenizer shaped like T5's (pad 0, eos 1, unk 2)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + w, -2.0 - 0.01 * i) for i, w in enumerate(_WORDS)]
    vocab += [("\u2581", -8.0)] + [(p, -9.0) for p in _PIECES]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "T5Tokenizer",
        "model_max_length": 512,
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "extra_ids": 0,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"})
    )


def build_tiny_text_encoder(folder: str | Path, seed: int = 0) -> Path:
    """Writes a tiny random T5 encoder and its tokenizer to `folder` (created if needed).

    The folder loads with `AutoTokenizer.from_pretrained` and
    `T5EncoderModel.from_pretrained`, like a local copy of google-t5/t5-base.
    """
    from transformers import T5Config, T5EncoderModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _build_tokenizer(folder)
    vocab_size = 3 + len(_WORDS) + 1 + len(_PIECES)
    config = T5Config(
        vocab_size=vocab_size,
        relative_attention_num_buckets=32,
        feed_forward_proj="relu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        **TINY_T5,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Writing model shards" bar for one tiny file
    torch.manual_seed(seed)
    T5EncoderModel(config).save_pretrained(folder)
    return folder


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Fills every parameter with small random values that keep activations O(1).

    Constructors zero-initialise output layers, SnakeBeta and qk-norm biases, which makes a
    random model's output degenerate; this gives every path something to compute.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        r = torch.randn(p.shape, generator=gen)
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("alpha", "beta"):  # SnakeBeta log-scale parameters
            value = 0.1 * r
        elif leaf == "gamma" or name.endswith("norm.weight") or leaf == "weight_g":
            value = 1 + 0.1 * r
        elif leaf == "bias":
            value = (0.1 if "norm" in name else 0.02) * r
        elif leaf == "weights" or name.endswith("timestep_features.weight"):
            value = r  # learned Fourier frequencies
        else:
            fan_in = max(1, p[0].numel())
            value = r / fan_in**0.5
        p.copy_(value.to(p.dtype))


# The RMS level unit-normal latents decode to on a random model. Sampled latents run a
# little larger, so generated clips land near -30 dBFS RMS (peaks near -12 dBFS).
QUIET_DBFS = -33.0


@torch.no_grad()
def quiet_decoder_(model: torch.nn.Module, dbfs: float = QUIET_DBFS, seed: int = 0) -> float:
    """Scales the VAE decoder's output layer so that unit-normal latents decode at `dbfs` RMS.

    Random weights decode to RMS ~50 (+34 dBFS): clipped to full-scale noise when written or
    played. Scaling only the last convolution keeps every path computing and makes a random
    model safe to listen to. Returns the gain applied.
    """
    from .oobleck import WNConv1d

    decoder = model.pretransform.model.decoder
    last = [m for m in decoder.modules() if isinstance(m, WNConv1d)][-1]
    first = next(m for m in decoder.modules() if isinstance(m, WNConv1d))
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(1, first.weight_v.shape[1], 8, generator=gen)  # 8 frames: cheap even at full size
    rms = float(decoder(z).pow(2).mean().sqrt())
    gain = 10 ** (dbfs / 20) / max(rms, 1e-12)
    last.weight_g.mul_(gain)
    if last.bias is not None:
        last.bias.mul_(gain)
    return gain


def tiny_config_path(variant: str = "small") -> Path:
    """The packaged tiny config shaped like SAO Small ("small") or SAO 1.0 ("1.0")."""
    if variant not in ("small", "1.0"):
        raise ValueError(f"tiny variant must be 'small' or '1.0', got {variant!r}")
    return Path(__file__).resolve().parent.parent / "configs" / f"tiny-{variant}.json"


def tiny_text_encoder_folder() -> Path:
    """A tiny T5 in the user cache, written on first use."""
    from platformdirs import user_cache_dir

    folder = Path(user_cache_dir("sao-live")) / "tiny-t5"
    if not (folder / "model.safetensors").is_file() or not (folder / "tokenizer.json").is_file():
        log.info("writing a tiny random T5 text encoder to %s (once)", folder)
        build_tiny_text_encoder(folder)
    return folder


def random_t5_base_folder() -> Path:
    """A random encoder at t5-base's size (for benchmarks at published sizes), cached."""
    from platformdirs import user_cache_dir

    folder = Path(user_cache_dir("sao-live")) / "random-t5-base"
    if not (folder / "model.safetensors").is_file():
        log.info("writing a random T5 text encoder of t5-base's size to %s (once)", folder)
        build_tiny_text_encoder(folder)  # tokenizer, then replace the model with a t5-base-sized one
        from transformers import T5Config, T5EncoderModel

        torch.manual_seed(0)
        config = T5Config(
            vocab_size=32128,
            d_model=768,
            d_kv=64,
            d_ff=3072,
            num_layers=12,
            num_heads=12,
            relative_attention_num_buckets=32,
            feed_forward_proj="relu",
        )
        T5EncoderModel(config).save_pretrained(folder)
    return folder
