"""`sao-live serve`: the daemon (OSC in, clips to the cache and the DAW's folder)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .generate import add_model_arguments


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve",
        help="run the daemon: generate clips on OSC requests, cache them, export them for the DAW",
        description="Settings come from the defaults, then config.toml (the user config folder, or --config), "
        "then these flags.",
    )
    add_model_arguments(p)
    p.set_defaults(model=None, numerics=None)  # unset flags leave the config file's values alone
    p.add_argument("--host", default=None, help="OSC listen address (default 127.0.0.1; 0.0.0.0 for the network)")
    p.add_argument("--osc-port", type=int, default=None, help="OSC listen port (default 9321)")
    p.add_argument("--reply-port", type=int, default=None, help="port replies go to on the sender's host (9322)")
    p.add_argument("--export-dir", type=Path, default=None, help="folder the DAW watches (default: no export)")
    p.add_argument("--cache-dir", type=Path, default=None, help="clip cache folder (default: the user cache)")
    p.add_argument("--cache-max-mb", type=int, default=None, help="cache size limit in MB (default 2048)")
    p.add_argument("--config", type=Path, default=None, help="settings file (TOML)")
    return p


def run(args) -> int:
    from ..daemon.daemon import run as run_daemon
    from ..daemon.settings import Settings

    settings = Settings.load(
        args.config,
        model=args.model,
        text_encoder=args.text_encoder,
        device=args.device,
        numerics=args.numerics,
        host=args.host,
        osc_port=args.osc_port,
        reply_port=args.reply_port,
        export_dir=args.export_dir,
        cache_dir=args.cache_dir,
        cache_max_mb=args.cache_max_mb,
    )
    print("sao-live serve, settings:\n" + settings.describe(), flush=True)
    run_daemon(settings)
    return 0
