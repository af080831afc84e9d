"""`sao-live render FILE`: pre-render every pad of a set into the clip cache, for a later show.

It runs the daemon's own parts (worker, scheduler, cache) without sound or MIDI, on a free
local OSC port, so `sao-live serve --set FILE` later finds every take in the cache. With
`--pool` the takes are made side by side on a model pool's actors (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from .generate import add_model_arguments
from .serve import add_pool_argument


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("render", help="pre-render every pad of a set file into the cache")
    p.add_argument("set_file", type=Path, help="the set file (TOML, docs/sets.md)")
    add_model_arguments(p, None, "the set's model, else the settings' (./model)")
    p.set_defaults(numerics=None)
    p.add_argument("--cache-dir", type=Path, default=None, help="clip cache folder (default: the user cache)")
    p.add_argument("--config", type=Path, default=None, help="settings file (TOML)")
    add_pool_argument(p)
    return p


def run(args) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..daemon.daemon import Daemon
    from ..daemon.preflight import check_pool, free_port
    from ..daemon.settings import Settings
    from ..live.sets import load_set

    live = load_set(args.set_file)  # a broken file stops here, with its line
    settings = Settings.load(
        args.config,
        model=args.model or live.model,
        text_encoder=args.text_encoder,
        device=args.device,
        numerics=args.numerics,
        int8=args.int8,
        arithmetic=args.arithmetic,
        cache_dir=args.cache_dir,
        host="127.0.0.1",
        osc_port=free_port(),
        reply_port=free_port(),
        audio_device="none",
        midi_in="none",
        export_dir=None,
        pool=args.pool,
    )
    check_pool(settings)

    # In a terminal a bar, with log lines written above it; elsewhere (a pipe, a log) a line per update.
    tty, bars = sys.stderr.isatty(), []

    def progress(ready: int, total: int) -> None:
        if not tty:
            print(f"rendering {live.name}: {ready}/{total} takes", file=sys.stderr, flush=True)
            return
        if not bars:  # made once the model is loaded: the worker's own output comes before it
            bars.append(tqdm(total=total, desc=f"rendering {live.name}", unit="take", file=sys.stderr))
        bars[0].total = total
        bars[0].update(ready - bars[0].n)

    async def main() -> None:
        d = Daemon(settings)
        try:
            await d.startup()
            await d.load_set(args.set_file, progress)
        finally:
            await d.shutdown()

    with logging_redirect_tqdm() if tty else contextlib.nullcontext():
        try:
            asyncio.run(main())
        finally:
            for bar in bars:
                bar.close()
    print(f"{live.name}: every pad is in the cache ({settings.cache_dir})", file=sys.stderr)
    return 0
