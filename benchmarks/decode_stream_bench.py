"""Streamed decoding at the published Small size (random weights): the push schedule's cost.

For each schedule of latent frames fed to the tiled decoder at a time, over the whole window
(256 frames, 11.9 s): seconds to the first audio out, to the last, and the whole decode's time
(one push) in the same round. Medians of --rounds. The daemon uses `STREAM_PUSHES` then
`STREAM_PUSH` frames (sao_live/engine/pipeline.py).

Run: python benchmarks/decode_stream_bench.py [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sao_live.engine.config import ModelConfig  # noqa: E402
from sao_live.engine.oobleck import OobleckDecoder, fold_weight_norm  # noqa: E402
from sao_live.engine.pipeline import STREAM_PUSH, STREAM_PUSHES  # noqa: E402
from sao_live.engine.tiled import TiledDecoder  # noqa: E402
from sao_live.engine.tiny import randomize_  # noqa: E402

FRAMES = 256


def schedule(first: tuple[int, ...], then: int) -> list[int]:
    pushes = list(first)
    while sum(pushes) < FRAMES:
        pushes.append(then)
    pushes[-1] -= sum(pushes) - FRAMES
    return pushes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ModelConfig.from_file(Path(__file__).resolve().parents[1] / "sao_live/configs/sao-small.json")
    plain = OobleckDecoder(cfg.autoencoder.decoder).eval().requires_grad_(False)
    randomize_(plain, seed=0)
    fold_weight_norm(plain)
    decoder = TiledDecoder(plain)
    z = torch.randn(cfg.autoencoder.decoder.latent_dim, FRAMES, generator=torch.Generator().manual_seed(0))
    schedules = {
        "whole (one push)": [FRAMES],
        f"daemon: {'+'.join(map(str, STREAM_PUSHES))} then {STREAM_PUSH}": schedule(STREAM_PUSHES, STREAM_PUSH),
        "8+8+16+32 then 64": schedule((8, 8, 16, 32), 64),
        "16+16+32 then 128": schedule((16, 16, 32), 128),
        "32 then 32": schedule((32,), 32),
    }
    decoder(z[None, :, :32])  # warm-up
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in schedules}
    for _ in range(args.rounds):
        for name, pushes in schedules.items():
            start = time.perf_counter()
            first = None
            for _audio in decoder.stream(z, pushes):
                first = first or time.perf_counter() - start
            times[name].append((first, time.perf_counter() - start))
    whole = statistics.median(t for _, t in times["whole (one push)"])
    print(f"torch threads {torch.get_num_threads()}, {FRAMES} frames = 11.9 s of audio, medians of {args.rounds}")
    print("| schedule | first audio s | all audio s | vs one push |")
    print("|---|---|---|---|")
    for name, xs in times.items():
        first, total = statistics.median(f for f, _ in xs), statistics.median(t for _, t in xs)
        print(f"| {name} | {first:.2f} | {total:.2f} | {total / whole:.2f}x |")


if __name__ == "__main__":
    main()
