"""`sao-live cache ls|info|clear|verify`: look at and tidy the clip cache."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("cache", help="list, check or clear the clip cache")
    p.add_argument("action", choices=("ls", "info", "clear", "verify"))
    p.add_argument(
        "--fix",
        action="store_true",
        help="verify: drop bad clips (made again when asked), delete the cache's own leftovers, "
        "move other files to the cache's stray/ folder",
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="default: the one in the settings")
    p.add_argument("--config", type=Path, default=None, help="settings file (TOML)")
    return p


def run(args) -> int:
    from ..daemon.settings import Settings
    from ..daemon.store import STRAY, ClipStore

    settings = Settings.load(args.config, cache_dir=args.cache_dir)
    store = ClipStore(settings.cache_dir, settings.cache_max_mb * 2**20).open()
    try:
        if args.action == "ls":
            for c in store.clips():
                used = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.last_used))
                print(
                    f"{c.key[:12]}  {c.seconds:6.2f} s  seed {c.seed:<10d} {c.bytes / 1024:8.0f} KB  {used}  "
                    f"{c.request.get('prompt', '')!r}"
                )
        elif args.action == "info":
            count, size = store.stats()
            limit = f"{settings.cache_max_mb} MB" if settings.cache_max_mb else "none"
            print(f"folder: {store.root}\nclips: {count}\nsize: {size / 2**20:.1f} MB (limit {limit})")
            print(f"interrupted jobs: {len(store.journal())}")
            stray = store.root / STRAY
            if stray.is_dir():
                print(f"moved aside (not made by the cache): {sum(1 for _ in stray.rglob('*'))} entries in {stray}")
        elif args.action == "clear":
            print(f"removed {store.clear()} clips from {store.root} (other files are left alone)")
        else:
            problems = store.verify(fix=args.fix)
            for what, problem in problems:
                print(f"{what}: {problem}")
            count = store.stats()[0]
            print(f"{len(problems)} problems, {count} clips {'kept' if args.fix else 'indexed'}")
            return 1 if problems and not args.fix else 0
    finally:
        store.close()
    return 0
