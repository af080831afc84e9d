#!/usr/bin/env python
"""Makes the golden test data in tests/golden/ from the reference (stable-audio-tools 0.0.19).

Run inside the reference venv (tools/setup_reference_venv.sh), from anywhere:

    .refvenv/bin/python tools/make_golden.py [--out tests/golden] [--skip-published]

It only *calls* the reference. What it writes:

- t5/                    tiny random T5 encoder + tokenizer (sao_live.engine.tiny, seed 0)
- small/, sao1/          for tiny-small.json / tiny-1.0.json:
    model.safetensors    reference state_dict (published layout) after a seeded re-init; every
                         parameter is rounded to fp16 precision before any reference computation
                         and stored as fp16 (exact); buffers (norm betas, inv_freq) stay fp32
    model_config.json    the config it was built from
    golden.safetensors   fp32 tensors (ids and masks int64), names listed in golden.json; every
                         full generation keeps its latent, only one per model its decoded audio.
                         T5 runs twice: in fp16 as the reference runs it (cond.prompt, cond.cross)
                         and in fp32 (cond.prompt.fp32, cond.cross.fp32). fp16 results differ
                         between CPU kernels by about one fp16 rounding, so every later stage
                         (all full generations) is made with the fp32 T5 and compared tightly
    golden.json          every setting used, so a test can replay each tensor
- published_keys.json    key -> shape of the reference state_dict for the published configs

Deterministic: every random draw comes from a fixed seed; re-running rewrites the same files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO))

import _reference as R  # noqa: E402

R.import_reference()

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402

from sao_live.engine.tiny import build_tiny_text_encoder  # noqa: E402

PROMPTS = ["warm arpeggios on house beats 120BPM with drums effect", "kick"]
NEGATIVES = ["drums", "noise"]
SECONDS_TOTAL = [0.5, 300.0]  # 300 > Small's max_val 256: tests clamping
SECONDS_START = [0.0, 2.0]
DIT_T = [0.3, 0.85]
GEN_PROMPT = PROMPTS[0]
GEN_NEGATIVE = "noise"
GEN_SECONDS_TOTAL = 0.6
GEN_SEED = 42
GEN_SAMPLE_SIZE = 32768
SAMPLE_RATE = 44100
ENCODE_SEED = 1234
RHO = 2.5  # the polyexponential schedule's rho for the v-sampler goldens that need unequal steps
T5_SEED = 0
REINIT_SEED = {"small": 1000, "sao1": 1001}
INPUT_SEED = {"small": 2000, "sao1": 2001}
VARIANTS = {"small": "tiny-small.json", "sao1": "tiny-1.0.json"}
# The one generation per model whose decoded audio is stored (the rest keep only their latents:
# the VAE decode is checked by vae.audio and by this one end to end).
GEN_AUDIO_KEPT = {"small": "pingpong", "sao1": "dpmpp-3m-sde"}
WEIGHTS_STORED_AS = (
    "float16 (values rounded to fp16 before any reference computation; the reference computes in "
    "fp32 with these exactly representable values, so casting back to fp32 is exact). Parameters "
    "only: the buffers (norm betas, rotary inv_freq) are stored as fp32"
)
PUBLISHED = {
    "sao-small": ("sao-small.json", 497_239_458),
    "sao-1.0": ("sao-1.0.json", 1_213_448_210),
}

# Re-init scales (documented in golden.json): weights ~ randn/sqrt(fan_in) times a factor;
# the last layer of every residual branch is scaled down so activations stay O(1).
SCALES = {
    "residual_branch_out_gain": 0.5,
    "vae_decoder_out_conv_gain": 0.15,
    "bias_std": 0.02,
    "norm_gamma": "1 + 0.1*randn",
    "qk_norm_bias_std": 0.1,
    "snake_log_param_std": 0.1,
    "fourier_and_number_weights_std": 1.0,
    "weight_norm": "v = W, g = ||W|| * (1 + 0.1*randn), W ~ randn/sqrt(fan_in) (fan_in of a "
    "ConvTranspose = in_channels*kernel/stride)",
}


# --------------------------------------------------------------------------- re-initialisation


def _fan_in(mod: nn.Module, shape) -> float:
    if isinstance(mod, nn.ConvTranspose1d):
        return shape[0] * shape[2] / mod.stride[0]
    if isinstance(mod, nn.Conv1d):
        return shape[1] * shape[2]
    if isinstance(mod, nn.Linear):
        return shape[1]
    raise TypeError(type(mod))


def _gains(model: nn.Module) -> dict[int, float]:
    """Extra weight gains by module id: the last layer of each residual branch (its output is
    added to a skip path) and the VAE decoder's output conv (keeps the audio about unit std)."""
    from stable_audio_tools.models.autoencoders import ResidualUnit
    from stable_audio_tools.models.transformer import Attention, FeedForward

    res = SCALES["residual_branch_out_gain"]
    out: dict[int, float] = {}
    for mod in model.modules():
        if isinstance(mod, ResidualUnit):
            out[id(mod.layers[-1])] = res
        elif isinstance(mod, Attention):
            out[id(mod.to_out)] = res
        elif isinstance(mod, FeedForward):
            out[id(mod.ff[-1])] = res
    dit = model.model.model
    out[id(dit.preprocess_conv)] = res
    out[id(dit.postprocess_conv)] = res
    last_conv = [m for m in model.pretransform.model.decoder.modules() if isinstance(m, nn.Conv1d)][-1]
    out[id(last_conv)] = SCALES["vae_decoder_out_conv_gain"]
    return out


@torch.no_grad()
def reinit_(model: nn.Module, seed: int) -> None:
    """Re-initialises every parameter (weight-norm g and v included) with seeded random values.
    Buffers (norm betas, rotary inv_freq) are left alone."""
    gen = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    gains = _gains(model)

    def gain_of(mod):
        return gains.get(id(mod), 1.0)

    done: set[int] = set()
    for name, mod in model.named_modules():
        own = dict(mod.named_parameters(recurse=False))
        if not own:
            continue
        cls = type(mod).__name__
        if "weight_v" in own:  # torch weight_norm, dim=0
            v, g = own["weight_v"], own["weight_g"]
            w = randn(v.shape) / math.sqrt(_fan_in(mod, v.shape)) * gain_of(mod)
            v.copy_(w)
            norm = w.flatten(1).norm(dim=1).view(g.shape)
            g.copy_(norm * (1 + 0.1 * randn(g.shape)))
            if own.get("bias") is not None:
                own["bias"].copy_(SCALES["bias_std"] * randn(own["bias"].shape))
        elif isinstance(mod, (nn.Linear, nn.Conv1d, nn.ConvTranspose1d)):
            w = own["weight"]
            w.copy_(randn(w.shape) / math.sqrt(_fan_in(mod, w.shape)) * gain_of(mod))
            if own.get("bias") is not None:
                own["bias"].copy_(SCALES["bias_std"] * randn(own["bias"].shape))
        elif isinstance(mod, nn.LayerNorm):  # qk-norm
            own["weight"].copy_(1 + 0.1 * randn(own["weight"].shape))
            if own.get("bias") is not None:
                own["bias"].copy_(SCALES["qk_norm_bias_std"] * randn(own["bias"].shape))
        elif cls == "LayerNorm":  # the transformer's own LayerNorm: gamma param, beta buffer
            own["gamma"].copy_(1 + 0.1 * randn(own["gamma"].shape))
        elif cls == "SnakeBeta":
            for k in ("alpha", "beta"):
                own[k].copy_(SCALES["snake_log_param_std"] * randn(own[k].shape))
        elif cls in ("FourierFeatures", "LearnedPositionalEmbedding"):
            for p in own.values():
                p.copy_(randn(p.shape))
        else:
            raise TypeError(f"don't know how to re-init {name} ({cls}): {list(own)}")
        done.update(id(p) for p in own.values())
    missed = [n for n, p in model.named_parameters() if id(p) not in done]
    assert not missed, missed


@torch.no_grad()
def round_params_to_fp16_(model: nn.Module) -> None:
    """Rounds every floating-point parameter to fp16 precision in place (kept fp32), so the
    reference computes with weights that fp16 storage holds exactly."""
    for name, p in model.named_parameters():
        if p.is_floating_point():
            assert p.dtype == torch.float32, f"{name}: {p.dtype}"
            p.copy_(p.half().float())
            assert torch.isfinite(p).all(), f"{name}: overflows fp16"


def stored_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """model.state_dict() as written: parameters fp16 (exact, see round_params_to_fp16_),
    buffers fp32."""
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    out = {}
    for k, v in model.state_dict().items():
        if k in params and v.is_floating_point():
            h = v.detach().half().contiguous().clone()
            assert torch.equal(h.float(), v.float()), f"{k}: not exactly representable in fp16"
            out[k] = h
        else:
            out[k] = f32(v)
    return out


# --------------------------------------------------------------------------- helpers


def f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous().clone()


def i64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.int64).contiguous().clone()


def check_sane(name: str, t: torch.Tensor, lo: float = 1e-3, hi: float = 1e3) -> None:
    t = t.float()
    assert torch.isfinite(t).all(), f"{name}: non-finite values"
    std = t.std().item()
    assert lo < std < hi, f"{name}: degenerate std {std:g}"


def test_signal() -> torch.Tensor:
    """(1, 2, 32768) deterministic stereo test signal: sines + a little seeded noise, ~0.5 peak."""
    n = GEN_SAMPLE_SIZE
    t = torch.arange(n, dtype=torch.float64) / SAMPLE_RATE
    left = 0.25 * torch.sin(2 * math.pi * 220.0 * t) + 0.15 * torch.sin(2 * math.pi * 1375.0 * t)
    right = 0.25 * torch.sin(2 * math.pi * 330.0 * t + 0.5) + 0.1 * torch.sin(2 * math.pi * 3100.0 * t)
    x = torch.stack([left, right]).to(torch.float32)[None]
    g = torch.Generator().manual_seed(7)
    return x + 0.02 * torch.randn(x.shape, generator=g)


def metadata(kind: str, prompts, seconds_total, seconds_start):
    out = []
    for i, p in enumerate(prompts):
        d = {"prompt": p, "seconds_total": seconds_total[i]}
        if kind == "sao1":
            d["seconds_start"] = seconds_start[i]
        out.append(d)
    return out


class Capture:
    """Records the kwargs of the T5 encoder call made inside the reference's conditioner."""

    def __init__(self, t5_model):
        self.calls = []
        self.handle = t5_model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _mod, args, kwargs):
        self.calls.append({k: v.clone() for k, v in kwargs.items() if torch.is_tensor(v)})

    def close(self):
        self.handle.remove()


# --------------------------------------------------------------------------- per-config goldens


def make_variant(kind: str, cfg_path: Path, out_dir: Path, t5_dir: Path) -> dict:
    from stable_audio_tools.inference.generation import generate_diffusion_cond

    config = json.loads(cfg_path.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    model = R.build_reference_model(config, t5_dir, vae_fp32=True)
    reinit_(model, REINIT_SEED[kind])
    round_params_to_fp16_(model)
    model.eval()
    t5c = R.t5_conditioner(model)
    io = model.io_channels
    frames = GEN_SAMPLE_SIZE // model.pretransform.downsampling_ratio
    tensors: dict[str, torch.Tensor] = {}
    info: dict = {
        "config": f"sao_live/configs/{cfg_path.name}",
        "diffusion_objective": model.diffusion_objective,
        "vae_dtype": "float32",
        "vae_dtype_note": "pretransform built, then model_half=False and model.float(): the VAE "
        "runs fp32 on CPU (our CPU rule) even where the config says model_half",
        "t5_dtype": str(t5c.model.dtype).replace("torch.", ""),
        "reinit_seed": REINIT_SEED[kind],
        "reinit_scales": SCALES,
        "weights_stored_as": WEIGHTS_STORED_AS,
        "input_seed": INPUT_SEED[kind],
        "io_channels": io,
        "latent_frames": frames,
        "rng_order": RNG_ORDER,
    }

    with torch.no_grad():
        # ---- conditioning
        meta = metadata(kind, PROMPTS, SECONDS_TOTAL, SECONDS_START)
        cap = Capture(t5c.model)
        cond = model.conditioner(meta, "cpu")
        cap.close()
        assert len(cap.calls) == 1
        tensors["tokens.ids"] = i64(cap.calls[0]["input_ids"])
        tensors["tokens.mask"] = i64(cap.calls[0]["attention_mask"])
        emb, mask = cond["prompt"]
        assert emb.dtype == torch.float32 and mask.dtype == torch.bool
        tensors["cond.prompt"] = f32(emb)
        tensors["cond.prompt_mask"] = i64(mask)
        tensors["cond.seconds_total"] = f32(cond["seconds_total"][0])
        if kind == "sao1":
            tensors["cond.seconds_start"] = f32(cond["seconds_start"][0])
        inputs = model.get_conditioning_inputs(cond)
        tensors["cond.cross"] = f32(inputs["cross_attn_cond"])
        tensors["cond.cross_mask"] = i64(inputs["cross_attn_mask"])
        tensors["cond.global"] = f32(inputs["global_cond"])
        check_sane("cond.prompt", emb)
        info["conditioning"] = {
            "metadata": meta,
            "call": "model.conditioner(metadata, 'cpu') then model.get_conditioning_inputs(...)",
            "t5_max_length": t5c.max_length,
            "tokenizer_call": {
                "truncation": True,
                "max_length": t5c.max_length,
                "padding": "max_length",
                "return_tensors": "pt",
            },
        }

        # ---- DiT forward
        g = torch.Generator().manual_seed(INPUT_SEED[kind])
        x = torch.randn([len(PROMPTS), io, frames], generator=g)
        t = torch.tensor(DIT_T, dtype=torch.float32)
        tensors["dit.x"], tensors["dit.t"] = f32(x), f32(t)
        neg_meta = metadata(kind, NEGATIVES, SECONDS_TOTAL, SECONDS_START)
        neg = model.get_conditioning_inputs(model.conditioner(neg_meta, "cpu"), negative=True)
        tensors["dit.neg_cross"] = f32(neg["negative_cross_attn_cond"])
        tensors["dit.neg_cross_mask"] = f32(neg["negative_cross_attn_mask"])
        common = dict(batch_cfg=True, rescale_cfg=True)
        dit_calls = {
            "dit.out": dict(cfg_scale=1.0),
            "dit.out_cfg": dict(cfg_scale=7.0),
            "dit.out_cfg_neg": dict(cfg_scale=7.0, negative=True),
        }
        for name, kw in dit_calls.items():
            extra = dict(neg) if kw.get("negative") else {}
            out = model.model(x, t, **inputs, **extra, cfg_scale=kw["cfg_scale"], **common)
            check_sane(name, out)
            tensors[name] = f32(out)
        assert not torch.allclose(tensors["dit.out_cfg"], tensors["dit.out_cfg_neg"])
        info["dit"] = {
            "x": "randn([B, io, frames]) from torch.Generator().manual_seed(input_seed)",
            "t": DIT_T,
            "negative_metadata": neg_meta,
            "call": "model.model(x, t, **get_conditioning_inputs(cond), [**get_conditioning_inputs("
            "neg_cond, negative=True)], cfg_scale=s, batch_cfg=True, rescale_cfg=True) "
            "(DiTWrapper kwargs: cross_attn_cond, cross_attn_mask, global_cond, input_concat_cond,"
            " prepend_cond, prepend_cond_mask, negative_cross_attn_cond, negative_cross_attn_mask,"
            " negative_global_cond, negative_input_concat_cond)",
            "calls": {
                k: {"cfg_scale": v["cfg_scale"], "negative": bool(v.get("negative"))} for k, v in dit_calls.items()
            },
            "scale_phi": 0.0,
        }

        # ---- VAE
        pt = model.pretransform
        latent = torch.randn([1, io, frames], generator=g)
        tensors["vae.latent"] = f32(latent)
        audio = pt.decode(latent)
        check_sane("vae.audio", audio)
        tensors["vae.audio"] = f32(audio)
        audio_in = test_signal()
        tensors["vae.audio_in"] = audio_in
        moments = pt.model.encoder(audio_in)
        tensors["vae.moments"] = f32(moments)
        check_sane("vae.moments", moments)
        torch.manual_seed(ENCODE_SEED)
        encoded = pt.encode(audio_in)
        tensors["vae.encoded"] = f32(encoded)
        info["vae"] = {
            "latent": "randn([1, io, frames]) from the same generator as dit.x, right after it",
            "audio": "model.pretransform.decode(latent)",
            "audio_in": "test signal (see make_golden.test_signal), stored",
            "moments": "model.pretransform.model.encoder(audio_in) (before the VAE bottleneck)",
            "encoded": f"torch.manual_seed({ENCODE_SEED}); model.pretransform.encode(audio_in) "
            "(bottleneck: mean, scale = moments.chunk(2, 1); "
            "mean + randn_like(mean) * (softplus(scale) + 1e-4))",
            "iterate_batch": pt.iterate_batch,
        }

        # ---- T5 in fp32: conditioning again, and every full generation from here on. The fp16
        # T5 above is what the reference runs; its results move with the CPU's fp16 kernels.
        t5c.model.float()
        cond32 = model.conditioner(meta, "cpu")
        tensors["cond.prompt.fp32"] = f32(cond32["prompt"][0])
        tensors["cond.cross.fp32"] = f32(model.get_conditioning_inputs(cond32)["cross_attn_cond"])
        info["conditioning"]["fp32_t5"] = (
            "cond.prompt.fp32 and cond.cross.fp32: the same call after the conditioner's T5 was cast "
            "to fp32 (t5.model.float()); every full generation below uses this fp32 T5"
        )

        # ---- full generations
        gens = gen_plan(kind)
        info["generations"] = {}
        for name, call in gens.items():
            kwargs = dict(call)
            if kwargs.pop("init_audio", None) is not None:
                kwargs["init_audio"] = (SAMPLE_RATE, audio_in[0])
            captured = {}
            orig_decode = pt.decode

            def decode_hook(z, _captured=captured, _decode=orig_decode, **kw):
                _captured["latent"] = z.detach().clone()
                return _decode(z, **kw)

            pt.decode = decode_hook
            try:
                with capture_sigmas(captured):
                    out = generate_diffusion_cond(model, **kwargs)
            finally:
                del pt.decode  # back to the class method
            tensors[f"gen.{name}.sigmas"] = f32(captured["sigmas"])
            check_sane(f"gen.{name}", out)
            outputs = [f"gen.{name}.latent", f"gen.{name}.sigmas"]
            if name == GEN_AUDIO_KEPT[kind]:
                outputs.insert(0, f"gen.{name}")
                tensors[f"gen.{name}"] = f32(out)
            tensors[f"gen.{name}.latent"] = f32(captured["latent"])
            replay = dict(call)
            if replay.get("init_audio") is not None:
                replay["init_audio"] = [SAMPLE_RATE, "vae.audio_in[0]"]
            info["generations"][name] = {
                "function": "stable_audio_tools.inference.generation.generate_diffusion_cond",
                "kwargs": replay,
                "outputs": outputs,
                "effective_sigma_max": effective_sigma_max(model, call),
                "t5_dtype": "float32",
            }
            print(f"  gen.{name}: {tuple(out.shape)} std {out.std().item():.4g}")

    # ---- write
    assert GEN_AUDIO_KEPT[kind] in gens
    sd = stored_state_dict(model)
    save_file(sd, str(out_dir / "model.safetensors"))
    shutil.copyfile(cfg_path, out_dir / "model_config.json")
    save_file(tensors, str(out_dir / "golden.safetensors"))
    info["tensors"] = {
        k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in tensors.items()
    }
    info["state_dict_elements"] = sum(v.numel() for v in sd.values())
    info["versions"] = versions()
    (out_dir / "golden.json").write_text(json.dumps(info, indent=2) + "\n")
    for f in ("model.safetensors", "model_config.json", "golden.safetensors", "golden.json"):
        print(f"  wrote {out_dir / f} ({(out_dir / f).stat().st_size:,} bytes)")
    return info


SAMPLER_FUNCTIONS = {
    "stable_audio_tools.inference.sampling": ("sample_discrete_euler", "sample_flow_dpmpp", "sample_flow_pingpong"),
    "k_diffusion.sampling": ("sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde"),
}


@contextlib.contextmanager
def capture_sigmas(captured: dict):
    """Records the schedule the reference's sampler was handed (`captured["sigmas"]`).

    The schedule is exp/sigmoid of fp32 values, so its last bits differ between CPUs; the SDE
    samplers read a Brownian tree at these times, and W moves like sqrt(dt), so one ulp of a
    sigma moves their noise by ~1e-3. The tests check the schedule on its own and replay the
    samplers on these exact sigmas."""
    import importlib

    saved = []
    for module_name, names in SAMPLER_FUNCTIONS.items():
        module = importlib.import_module(module_name)
        for fn_name in names:
            original = getattr(module, fn_name)

            def spy(model_fn, x, *args, _original=original, **kwargs):
                captured["sigmas"] = (kwargs["sigmas"] if "sigmas" in kwargs else args[0]).detach().clone()
                return _original(model_fn, x, *args, **kwargs)

            saved.append((module, fn_name, original))
            setattr(module, fn_name, spy)
    try:
        yield
    finally:
        for module, fn_name, original in saved:
            setattr(module, fn_name, original)


RNG_ORDER = [
    "generate_diffusion_cond: torch.manual_seed(seed), then noise = randn([B, io, frames]) fp32 on the "
    "CPU default generator, before anything else",
    "conditioning and the DiT draw nothing",
    "init_audio: pretransform.encode samples the VAE posterior with randn_like on the same generator "
    "(next draw after the noise)",
    "v SDE samplers (dpmpp-2m-sde, dpmpp-3m-sde): the BrownianTree seed is torch.randint(0, 2**63 - 1, []) "
    "from the same generator, drawn when the sampler starts (after the init-audio draw, if any); "
    "dpmpp-2m draws nothing",
    "pingpong: one randn_like(x) per step on the same generator, the last multiplied by t_next = 0",
    "euler and dpmpp (rf) draw nothing",
]


def effective_sigma_max(model, call: dict) -> float:
    """sigma_max the sampler really uses (init audio overrides it; rf clamps it to 1)."""
    if call.get("init_audio"):
        sigma_max = call["init_noise_level"]
    elif model.diffusion_objective == "v":
        sigma_max = call.get("sigma_max", 100)
    else:
        sigma_max = call.get("sigma_max", 1)
    if model.diffusion_objective != "v":
        sigma_max = min(sigma_max, 1)
    return sigma_max


def gen_plan(kind: str) -> dict:
    base = dict(batch_size=1, sample_size=GEN_SAMPLE_SIZE, seed=GEN_SEED, device="cpu")
    cond = {"prompt": GEN_PROMPT, "seconds_total": GEN_SECONDS_TOTAL}
    neg = {"prompt": GEN_NEGATIVE, "seconds_total": GEN_SECONDS_TOTAL}
    if kind == "sao1":
        cond["seconds_start"] = 0.0
        neg["seconds_start"] = 0.0
        v = dict(base, steps=10, cfg_scale=7.0, sigma_min=0.3, sigma_max=500.0, rho=1.0, conditioning=[cond])
        return {
            "dpmpp-3m-sde": dict(v, sampler_type="dpmpp-3m-sde", negative_conditioning=[neg]),
            "dpmpp-2m-sde": dict(v, sampler_type="dpmpp-2m-sde"),
            "dpmpp-2m": dict(v, sampler_type="dpmpp-2m"),
            # rho != 1 makes the step sizes h unequal, so the multistep ratios (r, r0, r1) matter
            "dpmpp-3m-sde-rho": dict(v, sampler_type="dpmpp-3m-sde", rho=RHO),
            "dpmpp-2m-sde-rho": dict(v, sampler_type="dpmpp-2m-sde", rho=RHO),
            "dpmpp-2m-rho": dict(v, sampler_type="dpmpp-2m", rho=RHO),
            # generate_diffusion_cond overrides sigma_max with init_noise_level: give both the same
            "a2a": dict(v, sampler_type="dpmpp-3m-sde", sigma_max=5.0, init_audio=True, init_noise_level=5.0),
        }
    rf = dict(base, steps=8, cfg_scale=1.0, conditioning=[cond])
    return {
        "pingpong": dict(rf, sampler_type="pingpong"),
        "euler": dict(rf, sampler_type="euler"),
        "dpmpp": dict(rf, sampler_type="dpmpp"),
        "pingpong_cfg_neg": dict(rf, sampler_type="pingpong", cfg_scale=4.0, negative_conditioning=[neg]),
        "a2a": dict(rf, sampler_type="pingpong", init_audio=True, init_noise_level=0.5),
    }


def cpu_description() -> dict:
    """Which CPU made the data (fp16 results, and fp32 ones in the last bits, depend on it)."""
    import platform

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"model": name, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def versions() -> dict:
    import transformers

    return {
        "cpu": cpu_description(),
        "torch": torch.__version__,
        "stable-audio-tools": version("stable-audio-tools"),
        "k-diffusion": version("k-diffusion"),
        "transformers": transformers.__version__,
        "tokenizers": version("tokenizers"),
        "torchsde": version("torchsde"),
        "numpy": version("numpy"),
        "flash_attn": "absent (reference uses F.scaled_dot_product_attention)",
    }


# --------------------------------------------------------------------------- published layout


def published_keys(t5_dir: Path) -> dict:
    result = {}
    for name, (fname, expected) in PUBLISHED.items():
        config = json.loads((REPO / "sao_live" / "configs" / fname).read_text())
        try:
            with torch.device("meta"):
                model = R.build_reference_model(config, t5_dir, vae_fp32=False)
            where = "meta"
        except Exception as exc:  # pragma: no cover - fallback
            print(f"  meta build failed ({exc!r}); building on CPU")
            model = R.build_reference_model(config, t5_dir, vae_fp32=False)
            where = "cpu"
        sd = model.state_dict()
        keys = {k: list(v.shape) for k, v in sd.items()}
        total = sum(v.numel() for v in sd.values())
        assert total == expected, f"{name}: {total} elements, the published model has {expected}"
        params = sum(p.numel() for p in model.parameters())
        result[name] = {
            "config": f"sao_live/configs/{fname}",
            "total_elements": total,
            "parameter_elements": params,
            "buffer_elements": total - params,
            "built_on": where,
            "keys": keys,
        }
        print(f"  {name}: {len(keys)} keys, {total:,} elements (matches the published model)")
        del model, sd
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "golden")
    ap.add_argument("--skip-published", action="store_true", help="don't rebuild published_keys.json")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    t5_dir = out / "t5"
    if t5_dir.exists():
        shutil.rmtree(t5_dir)
    build_tiny_text_encoder(t5_dir, seed=T5_SEED)
    print(f"wrote {t5_dir} (tiny T5, seed {T5_SEED})")

    for kind, fname in VARIANTS.items():
        print(f"{kind}: {fname}")
        make_variant(kind, REPO / "sao_live" / "configs" / fname, out / kind, t5_dir)

    if not args.skip_published:
        print("published_keys.json")
        pk = published_keys(t5_dir)
        pk["_note"] = (
            "reference state_dict key -> shape (T5 not included: the conditioner "
            "keeps it outside the module tree). Includes the buffers "
            "(norm betas, rotary inv_freq). Weight norm as weight_g/weight_v."
        )
        (out / "published_keys.json").write_text(json.dumps(pk, indent=1) + "\n")
        print(f"  wrote {out / 'published_keys.json'}")

    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"total size of {out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
