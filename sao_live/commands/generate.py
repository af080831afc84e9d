"""`sao-live generate`: one clip to a file, with a progress bar."""

from __future__ import annotations

import argparse
import os
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
    p.add_argument(
        "--arithmetic",
        default=None,
        help="force fast mode's arithmetic on a CPU, e.g. dit=fp32 or dit=bf16,decoder=bf16 "
        "(dit: int8, bf16, fp32; decoder: fp32, bf16; default auto: chosen for the CPU, see docs/engine.md)",
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
    p.add_argument(
        "-o", "--output", type=Path, default=None, help="a .wav, .flac, .ogg or .mp3 file (default: clip.<format>)"
    )
    p.add_argument(
        "--format", choices=("wav", "flac", "ogg", "mp3"), default=None, help="default: from the -o name, else wav"
    )
    p.add_argument("--bit-depth", choices=("16", "24", "32f"), default=None, help="wav, flac: default 24")
    add_model_arguments(p)
    return p


def output_and_format(output: Path | None, fmt: str | None) -> tuple[Path, str]:
    """The file to write and its format: --format, else the name's extension, else wav.

    InvalidRequestError for a folder, a missing or read-only folder, an extension this
    machine cannot write, or an extension that contradicts --format.
    """
    from ..audio import file_formats

    if output is None:
        fmt = fmt or "wav"
        output = Path(f"clip.{fmt}")
    ext = output.suffix.lower().lstrip(".")
    if output.is_dir():
        raise InvalidRequestError(f"-o {output} is a folder; give a file name, e.g. -o {output / 'clip.wav'}")
    if not output.parent.is_dir():
        raise InvalidRequestError(f"the output folder {output.parent} does not exist")
    if not os.access(output.parent, os.W_OK):
        raise InvalidRequestError(f"the output folder {output.parent.absolute()} is not writable")
    if ext and ext not in file_formats():
        raise InvalidRequestError(
            f"-o {output}: cannot write .{ext} files here; the name should end in "
            + ", ".join(f".{f}" for f in file_formats())
        )
    if ext and fmt and ext != fmt:
        raise InvalidRequestError(f"-o {output} ends in .{ext} but --format is {fmt}: make them agree")
    return output, fmt or ext or "wav"


def run(args) -> int:
    import soundfile as sf
    from tqdm import tqdm

    from ..audio import subtype_for, write_audio
    from ..engine.pipeline import load_pipeline

    # Everything that can be checked is checked before loading a model and generating.
    output, fmt = output_and_format(args.output, args.format)
    subtype_for(fmt, args.bit_depth)
    init = None
    if args.init_audio is not None:
        if not args.init_audio.is_file():
            raise InvalidRequestError(f"--init-audio {args.init_audio.absolute()}: no such file")
        try:
            data, rate = sf.read(args.init_audio, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, OSError) as err:
            raise InvalidRequestError(f"cannot read --init-audio {args.init_audio}: {err}") from None
        init = (data.T, rate)

    started = time.perf_counter()
    pipe = load_pipeline(args.model, args.text_encoder, args.device, args.numerics, args.int8, args.arithmetic)
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
    write_audio(output, result.audio, result.sample_rate, fmt, args.bit_depth)
    done = time.perf_counter()
    seconds = result.audio.shape[1] / result.sample_rate
    print(f"wrote {output} ({seconds:.2f} s, seed {result.seed})")
    print(f"time: load {loaded - started:.1f} s, generate {done - loaded:.1f} s")
    return 0
