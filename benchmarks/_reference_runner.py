#!/usr/bin/env python
"""Reference half of benchmarks/compare_reference.py: times stable-audio-tools 0.0.19 on CPU.

Runs inside the reference venv (tools/setup_reference_venv.sh), never in sao_live's:

    .refvenv/bin/python benchmarks/_reference_runner.py \\
        --config sao_live/configs/sao-small.json --weights model.safetensors \\
        --t5 T5_FOLDER --stages load,t5,dit,vae,e2e

Prints one JSON object on stdout (progress and the reference's own prints go to stderr).
Everything runs fp32 except the T5 encoder, which the reference always runs in fp16 (the
`t5` stage reports that; `--t5-fp32` also times it cast to fp32). The VAE runs fp32 even where
the config says model_half (our CPU rule). Timings are medians over --repeats (after one
warm-up run for the forward stages unless --no-warmup).

Stages:
  load  build the reference model (T5 from the folder) and load_state_dict(strict) from --weights
        (without --weights: the reference's own random init, and load_s covers building only)
  t5    the T5 conditioner on one prompt (tokenize + encode + mask), as the reference runs it
  dit   one DiT forward: batch 1 without CFG and with CFG (cfg_scale 7: internal batch 2)
  vae   pretransform.decode of (1, io, --vae-frames) latents
  e2e   generate_diffusion_cond, batch 1, sample_size from the config (or --sample-size),
        pingpong 8 steps cfg 1 for rf models (sampler/steps/cfg settable)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import _reference as R  # noqa: E402

STAGES = ("load", "t5", "dit", "vae", "e2e")
PROMPT = "warm arpeggios on house beats 120BPM with drums effect"


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeats: int, warmup: bool) -> dict:
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs_s": times}


def main() -> None:
    ap = argparse.ArgumentParser(description="time the reference (stable-audio-tools) on CPU")
    ap.add_argument("--config", type=Path, required=True, help="model_config.json")
    ap.add_argument("--weights", type=Path, help="model.safetensors (published layout)")
    ap.add_argument("--t5", type=Path, required=True, help="local T5 folder (save_pretrained)")
    ap.add_argument("--stages", default="load,t5,dit,vae,e2e")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--frames", type=int, help="DiT latent frames (default sample_size // 2048)")
    ap.add_argument("--vae-frames", type=int, help="VAE decode latent frames (default as --frames)")
    ap.add_argument("--sample-size", type=int, help="e2e sample_size (default from config)")
    ap.add_argument("--sampler", help="e2e sampler_type (default pingpong / dpmpp-3m-sde)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--cfg-scale", type=float, default=1.0)
    ap.add_argument("--seconds-total", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--t5-fp32", action="store_true", help="also time the T5 encoder in fp32")
    args = ap.parse_args()

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        ap.error(f"unknown stages {sorted(unknown)}; known: {','.join(STAGES)}")

    with contextlib.redirect_stdout(sys.stderr):  # the reference prints about flash_attn
        R.import_reference()
    import torch
    from safetensors.torch import load_file

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    warm = not args.no_warmup

    config = json.loads(args.config.read_text())
    result: dict = {
        "impl": "reference",
        "config": str(args.config),
        "weights": str(args.weights) if args.weights else None,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dtype": "float32 (T5 float16, as the reference runs it)",
        "repeats": args.repeats,
        "stages": {},
    }
    rss0 = rss_mb()

    # ---- load (always needed; timed as a stage when asked)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        model = R.build_reference_model(config, args.t5, vae_fp32=True)
        t_build = time.perf_counter() - t0
        if args.weights:
            t1 = time.perf_counter()
            state = load_file(str(args.weights))
            model.load_state_dict(state, strict=True)
            del state
            t_weights = time.perf_counter() - t1
        else:
            t_weights = None
    load_s = time.perf_counter() - t0
    if "load" in stages:
        result["stages"]["load"] = {
            "load_s": load_s,
            "build_s": t_build,
            "state_dict_s": t_weights,
            "rss_mb": rss_mb(),
            "rss_before_mb": rss0,
        }
    log(f"loaded in {load_s:.1f} s, RSS {rss_mb():.0f} MB")

    io = model.io_channels
    ratio = model.pretransform.downsampling_ratio
    sample_size = args.sample_size or config["sample_size"]
    frames = args.frames or sample_size // ratio
    vae_frames = args.vae_frames or frames
    meta = {"prompt": PROMPT, "seconds_total": args.seconds_total}
    if "seconds_start" in model.conditioner.conditioners:
        meta["seconds_start"] = 0.0

    # ---- T5
    if "t5" in stages:
        t5c = R.t5_conditioner(model)
        r = timed(lambda: t5c([PROMPT], "cpu"), args.repeats, warm)
        r["dtype"] = str(t5c.model.dtype).replace("torch.", "")
        entry = {"as_run": r}
        if args.t5_fp32:
            orig = t5c.model
            t5c.__dict__["model"] = orig.float()
            entry["fp32"] = timed(lambda: t5c([PROMPT], "cpu"), args.repeats, warm)
            t5c.__dict__["model"] = orig.half()
        entry["rss_mb"] = rss_mb()
        result["stages"]["t5"] = entry
        log(f"t5: {r['median_s']:.3f} s")

    # ---- DiT forward
    if "dit" in stages:
        cond = model.conditioner([meta], "cpu")
        inputs = model.get_conditioning_inputs(cond)
        g = torch.Generator().manual_seed(0)
        x = torch.randn([1, io, frames], generator=g)
        t = torch.tensor([0.5])
        entry = {"frames": frames}
        for name, cfg in (("batch1", 1.0), ("cfg_batch2", 7.0)):
            entry[name] = timed(
                lambda cfg=cfg: model.model(x, t, **inputs, cfg_scale=cfg, batch_cfg=True, rescale_cfg=True),
                args.repeats,
                warm,
            )
            log(f"dit {name}: {entry[name]['median_s']:.3f} s")
        entry["rss_mb"] = rss_mb()
        result["stages"]["dit"] = entry

    # ---- VAE decode
    if "vae" in stages:
        g = torch.Generator().manual_seed(1)
        z = torch.randn([1, io, vae_frames], generator=g)
        r = timed(lambda: model.pretransform.decode(z), args.repeats, warm)
        r.update(frames=vae_frames, samples=vae_frames * ratio, rss_mb=rss_mb())
        result["stages"]["vae"] = r
        log(f"vae decode {vae_frames} frames: {r['median_s']:.3f} s")

    # ---- end to end
    if "e2e" in stages:
        from stable_audio_tools.inference.generation import generate_diffusion_cond

        rf = model.diffusion_objective in ("rectified_flow", "rf_denoiser")
        sampler = args.sampler or ("pingpong" if rf else "dpmpp-3m-sde")
        kwargs = dict(
            steps=args.steps,
            cfg_scale=args.cfg_scale,
            conditioning=[meta],
            batch_size=1,
            sample_size=sample_size,
            seed=args.seed,
            device="cpu",
            sampler_type=sampler,
        )
        if not rf:
            kwargs.update(sigma_min=0.3, sigma_max=500.0, rho=1.0)

        def run():
            with contextlib.redirect_stdout(sys.stderr):  # it prints the seed
                return generate_diffusion_cond(model, **kwargs)

        r = timed(run, args.repeats, warmup=False)
        r.update(kwargs={k: v for k, v in kwargs.items()}, rss_mb=rss_mb())
        result["stages"]["e2e"] = r
        log(f"e2e: {r['median_s']:.2f} s")

    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
