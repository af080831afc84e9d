"""`sao-live serve`: the daemon (OSC in, clips to the cache and the DAW's folder)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..musical_time import QUANTIZE_UNITS, TEMPO_SOURCES
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
    p.add_argument(
        "--allow",
        action="append",
        default=None,
        metavar="HOSTS",
        help="senders accepted besides this machine: addresses, networks (192.168.1.0/24) or host names, "
        "comma-separated or repeated (default: the subnet of the --host address; every local subnet for 0.0.0.0)",
    )
    p.add_argument("--osc-port", type=int, default=None, help="OSC listen port (default 9321)")
    p.add_argument("--reply-port", type=int, default=None, help="port replies go to on the sender's host (9322)")
    p.add_argument("--http-port", type=int, default=None, help="the web page's port (default 9323; docs/web.md)")
    p.add_argument("--no-web", dest="web", action="store_false", default=None, help="serve no web page")
    p.add_argument(
        "--no-stream",
        dest="stream",
        action="store_false",
        default=None,
        help="play a clip only once finished (default: start while it decodes, once it can play to its end)",
    )
    p.add_argument("--export-dir", type=Path, default=None, help="folder the DAW watches (default: no export)")
    p.add_argument("--cache-dir", type=Path, default=None, help="clip cache folder (default: the user cache)")
    p.add_argument("--cache-max-mb", type=int, default=None, help="cache size limit in MB (default 2048)")
    p.add_argument("--config", type=Path, default=None, help="settings file (TOML)")
    add_pool_argument(p)
    add_live_arguments(p)
    return p


def add_pool_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pool",
        default=None,
        metavar="ray|ray://HOST:PORT",
        help="generate on a model pool on a Ray cluster (docs/cluster.md): ray joins or starts a local Ray runtime "
        "(RAY_ADDRESS picks one), ray://HOST:PORT connects to a cluster's head; needs pip install -e '.[cluster]'",
    )


def add_live_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="set_file",
        type=Path,
        default=None,
        help="a set file (TOML) to pre-render and load before ready (docs/sets.md)",
    )
    p.add_argument(
        "--sets-dir",
        type=Path,
        default=None,
        help="the folder /sao/load takes sets from, by name (default: sets in the user data folder)",
    )
    p.add_argument(
        "--audio-device",
        default=None,
        help="output device: index or part of its name or host API (JACK); none: no sound",
    )
    p.add_argument("--midi-in", default=None, help="an existing MIDI input port by name (default: virtual sao-live)")
    p.add_argument("--midi-api", default=None, help="rtmidi API: UNIX_JACK, LINUX_ALSA, MACOSX_CORE, WINDOWS_MM")
    p.add_argument("--quantize", choices=tuple(QUANTIZE_UNITS), default=None, help="launch quantize (default off)")
    p.add_argument("--tempo-source", choices=TEMPO_SOURCES, default=None, help="tempo (default fixed)")


def run(args) -> int:
    from ..daemon.daemon import run as run_daemon
    from ..daemon.preflight import check
    from ..daemon.settings import Settings

    settings = Settings.load(
        args.config,
        model=args.model,
        text_encoder=args.text_encoder,
        device=args.device,
        numerics=args.numerics,
        int8=args.int8,
        arithmetic=args.arithmetic,
        host=args.host,
        allow=tuple(a for flag in args.allow for a in flag.split(",") if a.strip()) if args.allow else None,
        osc_port=args.osc_port,
        reply_port=args.reply_port,
        http_port=args.http_port,
        web=args.web,
        stream=args.stream,
        export_dir=args.export_dir,
        cache_dir=args.cache_dir,
        cache_max_mb=args.cache_max_mb,
        set_file=args.set_file,
        sets_dir=args.sets_dir,
        audio_device=args.audio_device,
        midi_in=args.midi_in,
        midi_api=args.midi_api,
        quantize=args.quantize,
        tempo_source=args.tempo_source,
        pool=args.pool,
    )
    check(settings)  # the model's files, the port, the folders: before anything starts
    print("sao-live serve, settings:\n" + settings.describe(), flush=True)
    run_daemon(settings)
    return 0
