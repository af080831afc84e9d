"""`sao-live bench`: per-stage speed on this machine, as JSON.

Stages: loading, text encoding (T5 + numbers), one DiT step (batch 1, and the CFG batch
of 2), VAE decode of the frames a clip of --seconds needs, and end to end. Each figure
is the median of --repeat runs after one warm-up run, which is reported on its own.
The JSON goes to stdout; what is being done, and each run's time, go to stderr as it happens.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

from .generate import add_model_arguments


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="time each stage of generation on this machine (JSON)")
    p.add_argument("--seconds", type=float, default=None, help="clip length (default: the whole window)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-warmup", action="store_true", help="time the first run too (as a cold start would)")
    p.add_argument("--frames", type=int, default=None, help="latent frames for the DiT stages (default: the window)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--stages", default="text,dit,dit_cfg,decode,end_to_end", help="comma-separated subset")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    add_model_arguments(p, "random-small", "random-small: Small's size, random weights")
    return p


def _say(text: str) -> None:
    """A status line on stderr: a random model at full size takes minutes to build and time."""
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(name: str, fn, repeat: int, warmup: bool = True) -> dict:
    _say(f"timing {name}: {'a warm-up run, then ' if warmup else ''}{repeat} timed")
    start = time.perf_counter()
    if warmup:
        fn()
        _say(f"  {name} warm-up: {time.perf_counter() - start:.3f} s")
    warmup_s = time.perf_counter() - start
    runs = []
    for i in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
        _say(f"  {name} run {i + 1}/{repeat}: {runs[-1]:.3f} s")
    return {"median_s": round(statistics.median(runs), 4), "warmup_s": round(warmup_s, 4), "runs_s": runs}


def run(args) -> int:
    import torch

    from ..engine.arithmetic import cpu_features
    from ..engine.pipeline import RANDOM_MODELS, load_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    made = " (random weights, made now: at a published size this takes a while)" if args.model in RANDOM_MODELS else ""
    _say(f"loading {args.model}{made}")
    pipe = load_pipeline(args.model, args.text_encoder, args.device, args.numerics, args.int8, args.arithmetic)
    _say(f"loaded in {time.perf_counter() - start:.1f} s; arithmetic: {pipe.arithmetic.describe()}")
    report = {
        "model": str(args.model),
        "numerics": args.numerics,
        "int8": pipe.int8,
        "arithmetic": pipe.arithmetic.as_dict(),
        "cpu": cpu_features().describe(),
        "device": str(pipe.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_s": round(time.perf_counter() - start, 3),
    }
    cfg = pipe.cfg
    seconds = args.seconds or cfg.window_seconds
    frames = args.frames or cfg.latent_frames
    decode_frames = frames if args.numerics == "reference" else min(frames, pipe.decode_frames(seconds))
    report.update(seconds=seconds, window_frames=frames, decode_frames=decode_frames)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, cfg.dit.io_channels, frames, generator=gen).to(pipe.device)
    t = torch.full((1,), 0.5, device=pipe.device)
    cond = pipe.conditioning(["warm arpeggios on house beats 120BPM with drums effect"], [seconds])
    stages = set(args.stages.split(","))
    timings = {}
    if "text" in stages:
        prompts = iter(f"prompt number {i} for timing" for i in range(10_000))  # defeat the prompt cache
        timings["text"] = _timed(
            "text", lambda: pipe.conditioning([next(prompts)], [seconds]), args.repeat, not args.no_warmup
        )
    if "dit" in stages:
        timings["dit"] = _timed("dit", lambda: pipe.dit(x, t, cond, 1.0), args.repeat, not args.no_warmup)
    if "dit_cfg" in stages:
        timings["dit_cfg"] = _timed("dit_cfg", lambda: pipe.dit(x, t, cond, 7.0), args.repeat, not args.no_warmup)
    if "decode" in stages:
        z = torch.randn(1, cfg.dit.io_channels, decode_frames, generator=gen).to(pipe.device)
        timings["decode"] = _timed("decode", lambda: pipe.decode(z), args.repeat, not args.no_warmup)
    if "end_to_end" in stages:
        timings["end_to_end"] = _timed(
            "end_to_end",
            lambda: pipe.generate("warm arpeggios on house beats 120BPM", seconds=seconds, seed=1, steps=args.steps),
            args.repeat,
            not args.no_warmup,
        )
    _say("done")
    report["stages"] = timings
    report["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0
