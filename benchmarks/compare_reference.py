#!/usr/bin/env python
"""sao-live against stable-audio-tools on the same random weights, alternating, in one run.

    python benchmarks/compare_reference.py --reference-python .refvenv/bin/python

The reference venv comes from tools/setup_reference_venv.sh. Random weights at the published
sizes are written once (published layout, safetensors) and loaded by both sides. Each
measurement runs in a fresh process, ours and the reference's in turn, --rounds times; the
table shows medians and the ratio reference / ours (above 1: we are faster). Peak RSS is
each process's own. The machine is noisy: compare ratios from the same run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "sao_live" / "configs"
PROMPT_SECONDS = {"full": None, "oneshot": 2.0}


def write_random_model(name: str, folder: Path) -> Path:
    """model_config.json + model.safetensors with random weights at the published size."""
    target = folder / name
    if (target / "model.safetensors").is_file():
        return target
    import torch
    from safetensors.torch import save_file

    from sao_live.engine.config import ModelConfig
    from sao_live.engine.model import StableAudioModel
    from sao_live.engine.tiny import randomize_

    target.mkdir(parents=True, exist_ok=True)
    raw = json.loads((CONFIGS / f"{name}.json").read_text())
    model = StableAudioModel(ModelConfig.from_dict(raw))
    randomize_(model, seed=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(target / "model.safetensors"))
    (target / "model_config.json").write_text(json.dumps(raw, indent=2))
    del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return target


def run_json(cmd: list[str]) -> dict:
    print("  $", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout[out.stdout.index("{") :])


def ours(model: Path, t5: Path, stages: str, numerics: str, int8: bool, seconds=None, frames=None, repeat=1):
    cmd = [sys.executable, "-m", "sao_live.cli", "bench", "--model", str(model), "--text-encoder", str(t5)]
    cmd += ["--device", "cpu", "--numerics", numerics, "--stages", stages, "--repeat", str(repeat)]
    if "end_to_end" in stages:  # as the reference runner: whole generations cold, single stages warmed up
        cmd += ["--no-warmup"]
    cmd += ["--int8" if int8 else "--no-int8"]
    if seconds:
        cmd += ["--seconds", str(seconds)]
    if frames:
        cmd += ["--frames", str(frames)]
    return run_json(cmd)


def reference(python: str, model: Path, t5: Path, stages: str, seconds=None, frames=None, repeat=1):
    cmd = [python, str(REPO / "benchmarks" / "_reference_runner.py"), "--config", str(model / "model_config.json")]
    cmd += ["--weights", str(model / "model.safetensors"), "--t5", str(t5), "--stages", stages]
    cmd += ["--repeats", str(repeat)]
    if seconds:
        cmd += ["--seconds-total", str(seconds)]
    if frames:
        cmd += ["--frames", str(frames)]
    return run_json(cmd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference-python", required=True, help="python of the reference venv")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sao-live-bench"), help="where random weights go")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default="small,oneshot,load,cold,sao1", help="comma-separated scenarios")
    args = ap.parse_args()
    from sao_live.engine.tiny import random_t5_base_folder

    t5 = random_t5_base_folder()
    only = set(args.only.split(","))
    rows: list[tuple[str, str, list[float], list[float], list[float], list[float]]] = []

    def measure(label, ref_fn, ref_key, our_fns):
        for variant, _, _ in our_fns:
            rows.append((label, variant, [], [], [], []))
        for _ in range(args.rounds):
            r = ref_fn()
            for i, (_, fn, key) in enumerate(our_fns):
                o = fn()
                row = rows[len(rows) - len(our_fns) + i]
                row[2].append(ref_key(r))
                row[3].append(key(o))
                row[4].append(r["peak_rss_mb"])
                row[5].append(o["peak_rss_mb"])

    py = args.reference_python
    if only & {"small", "oneshot", "load", "cold"}:
        small = write_random_model("sao-small", args.work)
    if "small" in only:
        print("SAO Small, full window, 8 pingpong steps, cfg 1", file=sys.stderr)
        e2e = lambda r: r["stages"]["e2e"]["median_s"]  # noqa: E731
        mine = lambda o: o["stages"]["end_to_end"]["median_s"]  # noqa: E731
        measure(
            "Small end to end, 11.9 s window",
            lambda: reference(py, small, t5, "e2e", seconds=11.88),
            e2e,
            [
                ("reference numerics", lambda: ours(small, t5, "end_to_end", "reference", False), mine),
                ("fast, fp32 DiT", lambda: ours(small, t5, "end_to_end", "fast", False), mine),
                ("fast, int8 DiT", lambda: ours(small, t5, "end_to_end", "fast", True), mine),
            ],
        )
    if "oneshot" in only:
        print("SAO Small, 2 s one-shot", file=sys.stderr)
        measure(
            "Small 2 s one-shot end to end",
            lambda: reference(py, small, t5, "e2e", seconds=2.0),
            lambda r: r["stages"]["e2e"]["median_s"],
            [
                (
                    "fast, int8 DiT",
                    lambda: ours(small, t5, "end_to_end", "fast", True, seconds=2.0),
                    lambda o: o["stages"]["end_to_end"]["median_s"],
                )
            ],
        )
    if "load" in only:
        print("SAO Small, loading from safetensors", file=sys.stderr)
        measure(
            "Small load (safetensors + T5)",
            lambda: reference(py, small, t5, "load"),
            lambda r: r["stages"]["load"]["load_s"],
            [
                ("reference numerics", lambda: ours(small, t5, "text", "reference", False), lambda o: o["load_s"]),
                ("fast, int8 DiT", lambda: ours(small, t5, "text", "fast", True), lambda o: o["load_s"]),
            ],
        )
    if "cold" in only:
        print("SAO Small, cold start: load from safetensors, then the first full-window clip", file=sys.stderr)
        measure(
            "Small cold start: load + first clip",
            lambda: reference(py, small, t5, "load,e2e", seconds=11.88),
            lambda r: r["stages"]["load"]["load_s"] + r["stages"]["e2e"]["median_s"],
            [
                (
                    "reference numerics",
                    lambda: ours(small, t5, "end_to_end", "reference", False),
                    lambda o: o["load_s"] + o["stages"]["end_to_end"]["median_s"],
                ),
                (
                    "fast, int8 DiT",
                    lambda: ours(small, t5, "end_to_end", "fast", True),
                    lambda o: o["load_s"] + o["stages"]["end_to_end"]["median_s"],
                ),
            ],
        )
    if "sao1" in only:
        sao1 = write_random_model("sao-1.0", args.work)
        print("SAO 1.0, 10 s (215 frames), one DiT step with cfg", file=sys.stderr)
        measure(
            "1.0 DiT step, cfg batch 2, 215 frames",
            lambda: reference(py, sao1, t5, "dit", frames=215),
            lambda r: r["stages"]["dit"]["cfg_batch2"]["median_s"],
            [
                (
                    "reference numerics",
                    lambda: ours(sao1, t5, "dit_cfg", "reference", False, frames=215),
                    lambda o: o["stages"]["dit_cfg"]["median_s"],
                ),
                (
                    "fast, int8 DiT",
                    lambda: ours(sao1, t5, "dit_cfg", "fast", True, frames=215),
                    lambda o: o["stages"]["dit_cfg"]["median_s"],
                ),
            ],
        )

    print("\n| measurement | sao-live mode | reference s | sao-live s | ratio | peak RSS ref / ours (MB) |")
    print("|---|---|---|---|---|---|")
    for label, variant, ref_t, our_t, ref_m, our_m in rows:
        r, o = statistics.median(ref_t), statistics.median(our_t)
        print(
            f"| {label} | {variant} | {r:.2f} | {o:.2f} | {r / o:.2f}x | "
            f"{statistics.median(ref_m):.0f} / {statistics.median(our_m):.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
