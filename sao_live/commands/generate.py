"""`sao-live generate`: one clip to a file, with a progress bar."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import InvalidRequestError
from ..request import RequestError, check_seed


def add_model_arguments(p: argparse.ArgumentParser, model: str | None = "model", said: str = "./model") -> None:
    """--model, --text-encoder, --device, --numerics: shared by every command that loads a model.

    `model` is the command's default model and `said` how its help names it."""
    p.add_argument(
        "--model",
        default=model,
        help=f"model folder, hub repo id (stabilityai/stable-audio-open-small), or tiny-random (default: {said})",
    )
    p.add_argument("--text-encoder", default=None, help="T5 encoder folder or hub id (default google-t5/t5-base)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--numerics", choices=("fast", "reference"), default="fast", help="default: fast")
    p.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="int8 DiT linears (fast mode on CPU; on by default there, see docs/engine.md)",
    )


def seed_argument(text: str) -> int | None:
    """--seed checked as OSC checks it, before a model loads; None: pick one."""
    try:
        return check_seed(text)
    except RequestError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("generate", help="generate one clip to a file")
    p.add_argument("prompt", help='e.g. "warm arpeggios on house beats 120BPM with drums effect"')
    p.add_argument("--seconds", type=float, default=None, help="clip length (default: the model's window)")
    p.add_argument("--seed", type=seed_argument, default=None, help="0 to 2147483647; default or -1: random, printed")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale")
    p.add_argument("--negative", default=None, help="negative prompt")
    p.add_argument("--sampler", default=None, help="pingpong|euler|dpmpp (Small); dpmpp-3m-sde|dpmpp-2m-sde|dpmpp-2m")
    p.add_argument("--init-audio", type=Path, default=None, help="audio file to start from (audio-to-audio)")
    p.add_argument("--init-noise-level", type=float, default=None)
    p.add_argument("-o", "--output", type=Path, default=None, help="default: clip.<format>")
    p.add_argument("--format", choices=("wav", "flac"), default="wav")
    p.add_argument("--bit-depth", choices=("16", "24", "32f"), default="24")
    add_model_arguments(p)
    return p


def run(args) -> int:
    import soundfile as sf
    from tqdm import tqdm

    from ..audio import subtype_for, write_audio
    from ..engine.pipeline import load_pipeline

    subtype_for(args.format, args.bit_depth)  # fail before loading a model
    output = args.output or Path(f"clip.{args.format}")
    if not output.parent.is_dir():
        raise InvalidRequestError(f"the output folder {output.parent} does not exist")
    init = None
    if args.init_audio is not None:
        try:
            data, rate = sf.read(args.init_audio, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, OSError) as err:
            raise InvalidRequestError(f"cannot read --init-audio {args.init_audio}: {err}") from None
        init = (data.T, rate)

    started = time.perf_counter()
    pipe = load_pipeline(args.model, args.text_encoder, args.device, args.numerics, args.int8)
    loaded = time.perf_counter()
    bars = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="step", desc="generating", file=sys.stderr))
        bars[0].update(done - bars[0].n)

    result = pipe.generate(
        args.prompt,
        seconds=args.seconds,
        seed=args.seed,
        steps=args.steps,
        cfg_scale=args.cfg,
        sampler=args.sampler,
        negative_prompt=args.negative,
        init_audio=init,
        init_noise_level=args.init_noise_level,
        progress=progress,
    )
    for bar in bars:
        bar.close()
    write_audio(output, result.audio, result.sample_rate, args.format, args.bit_depth)
    done = time.perf_counter()
    seconds = result.audio.shape[1] / result.sample_rate
    print(f"wrote {output} ({seconds:.2f} s, seed {result.seed})")
    print(f"time: load {loaded - started:.1f} s, generate {done - loaded:.1f} s")
    return 0
