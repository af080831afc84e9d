"""What each arithmetic costs and gains on this CPU: the DiT's linears, the decoder's products.

    python benchmarks/arithmetic_bench.py dit [--rounds 3]
    python benchmarks/arithmetic_bench.py decoder [--frames 32] [--models small,tiny-small,tiny-1.0]
    python benchmarks/arithmetic_bench.py deviation
    python benchmarks/arithmetic_bench.py calibrate

`dit`: one DiT call at the published Small size (random weights, 256 frames, batch 1) in each
kind this CPU can run (fp32, int8, and bf16 where the CPU has native bf16, or with --bf16):
seconds (best of --rounds, kinds interleaved) and the relative L2 difference from fp32.
`decoder`: the tiled decoder with bf16 products (SnakeBeta fp32), and with SnakeBeta in bf16
too, against the fp32 decode of the same random latents: SNR of the audio and seconds.
`deviation`: on the tiny golden models (tests/golden), a clip in fast mode with the fp32 DiT and
with the int8 DiT against reference numerics (same prompt and seed): audio SNR; and one int8
DiT call against the fp32 one: relative L2.
`calibrate`: the features read and the timed products `arithmetic.py` chooses from.
Everything is random weights (`tiny.randomize_`): speed does not depend on the values, and the
deviations are what random weights give (trained weights were not available to measure).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sao_live.engine import arithmetic, quantize  # noqa: E402
from sao_live.engine.config import ModelConfig  # noqa: E402
from sao_live.engine.dit import DiTWrapper  # noqa: E402
from sao_live.engine.oobleck import OobleckDecoder, fold_weight_norm  # noqa: E402
from sao_live.engine.tiled import TiledDecoder  # noqa: E402
from sao_live.engine.tiny import randomize_  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "sao_live" / "configs"
GOLDEN = REPO / "tests" / "golden"
CONFIG_FILES = {"small": "sao-small.json", "tiny-small": "tiny-small.json", "tiny-1.0": "tiny-1.0.json"}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def config(name: str) -> ModelConfig:
    return ModelConfig.from_dict(json.loads((CONFIGS / CONFIG_FILES[name]).read_text()))


def snr_db(ref: torch.Tensor, other: torch.Tensor) -> float:
    noise = float((ref.double() - other.double()).pow(2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float(ref.double().pow(2).sum()) / noise)


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@torch.no_grad()
def bench_dit(rounds: int, with_bf16: bool) -> dict:
    cfg = config("small")
    fp32 = DiTWrapper(cfg.dit).eval().requires_grad_(False)
    randomize_(fp32, 0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, cfg.dit.io_channels, cfg.latent_frames, generator=gen)
    t = torch.full((1,), 0.5)
    cross = torch.randn(1, 64, cfg.dit.cond_token_dim, generator=gen)
    global_cond = torch.randn(1, cfg.dit.global_cond_dim, generator=gen)
    kinds = {"fp32": fp32}
    if quantize.available():
        kinds["int8"] = copy.deepcopy(fp32)
        start = time.perf_counter()
        quantize.quantize_dit_(kinds["int8"].model)
        say(f"int8 weights packed in {time.perf_counter() - start:.1f} s")
    if with_bf16 or arithmetic.cpu_features().native_bf16:
        kinds["bf16"] = copy.deepcopy(fp32)
        quantize.bf16_dit_(kinds["bf16"].model)
    ref = fp32(x, t, cross, global_cond)
    result = {}
    for kind, model in kinds.items():
        out = model(x, t, cross, global_cond)  # also the warm-up
        result[kind] = {"rel_l2_vs_fp32": float((out - ref).norm() / ref.norm()), "runs_s": []}
    for r in range(rounds):
        for kind, model in kinds.items():
            result[kind]["runs_s"].append(seconds(lambda m=model: m(x, t, cross, global_cond)))
        say(f"round {r + 1}: " + ", ".join(f"{k} {v['runs_s'][-1]:.3f} s" for k, v in result.items()))
    for entry in result.values():
        entry["best_s"] = min(entry["runs_s"])
    return {"frames": cfg.latent_frames, "int8_weight_bits": quantize.weight_bits(), "kinds": result}


@torch.no_grad()
def bench_decoder(models: list[str], frames: int) -> dict:
    out = {}
    for name in models:
        cfg = config(name)
        decoder = OobleckDecoder(cfg.autoencoder.decoder).eval().requires_grad_(False)
        randomize_(decoder, 0)
        fold_weight_norm(decoder)
        z = torch.randn(1, cfg.autoencoder.decoder.latent_dim, frames, generator=torch.Generator().manual_seed(1))
        fp32 = TiledDecoder(decoder)
        variants = {
            "fp32": fp32,
            "bf16 products, SnakeBeta fp32": TiledDecoder(decoder, torch.bfloat16),
            "bf16 products, SnakeBeta bf16": TiledDecoder(decoder, torch.bfloat16, torch.bfloat16),
            "fp32 products, SnakeBeta bf16": TiledDecoder(decoder, torch.float32, torch.bfloat16),
            # How much the network amplifies one bf16 rounding: only the latents rounded.
            "fp32, latents rounded to bf16": lambda z, fp32=fp32: fp32(z.bfloat16().float()),
        }
        ref = None
        rows = {}
        for label, tiled in variants.items():
            start = time.perf_counter()
            audio = tiled(z)
            took = time.perf_counter() - start
            ref = audio if ref is None else ref
            rows[label] = {"snr_db": round(snr_db(ref, audio), 2), "seconds": round(took, 3)}
            say(f"{name} {frames} frames, {label}: SNR {rows[label]['snr_db']} dB, {took:.2f} s")
        plain = decoder(z)
        rows["plain decoder fp32 (oracle)"] = {"snr_db": round(snr_db(ref, plain), 2)}
        out[name] = {"frames": frames, "variants": rows}
    return out


@torch.no_grad()
def bench_deviation() -> dict:
    from sao_live.engine.pipeline import StableAudioPipeline

    out = {}
    for name, steps in (("small", None), ("sao1", 20)):

        def load(numerics, int8=None, name=name):
            return StableAudioPipeline.from_pretrained(GOLDEN / name, GOLDEN / "t5", "cpu", numerics, int8)

        pipes = {"reference": load("reference"), "fast, fp32 DiT": load("fast", False), "fast, int8 DiT": load("fast")}
        clips = {k: p.generate("warm arpeggios", seconds=1.5, seed=4, steps=steps).audio for k, p in pipes.items()}
        ref = torch.from_numpy(clips.pop("reference"))
        row = {f"{k}: audio SNR vs reference dB": round(snr_db(ref, torch.from_numpy(v)), 2) for k, v in clips.items()}
        fp32, int8 = pipes["fast, fp32 DiT"], pipes["fast, int8 DiT"]
        cond = fp32.conditioning(["kick drum"], [0.5])
        x = torch.randn(1, fp32.cfg.dit.io_channels, 32, generator=torch.Generator().manual_seed(5))
        a, b = fp32.dit(x, torch.tensor([0.5]), cond), int8.dit(x, torch.tensor([0.5]), cond)
        row["int8 DiT call: rel L2 vs fp32"] = round(float((a - b).norm() / a.norm()), 4)
        row["arithmetic"] = int8.arithmetic.describe()
        say(f"{name}: {row}")
        out[name] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=("dit", "decoder", "deviation", "calibrate"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="time the bf16 DiT even without native bf16 (slow)")
    ap.add_argument("--frames", type=int, default=32, help="latent frames for the decoder")
    ap.add_argument("--models", default="small,tiny-small,tiny-1.0")
    args = ap.parse_args()
    features = arithmetic.cpu_features()
    report = {
        "cpu": features.describe(),
        "native_bf16": features.native_bf16,
        "int8_dot": features.int8_dot,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if args.part == "dit":
        report["dit"] = bench_dit(args.rounds, args.bf16)
    elif args.part == "decoder":
        report["decoder"] = bench_decoder(args.models.split(","), args.frames)
    elif args.part == "deviation":
        report["deviation"] = bench_deviation()
    else:
        kinds = ["fp32", "int8"] + (["bf16"] if features.native_bf16 or args.bf16 else [])
        report["products_s"] = arithmetic.time_products(kinds)
        report["choice"] = arithmetic.for_this_cpu().as_dict()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
