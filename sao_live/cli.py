"""The `sao-live` command: one subcommand per module in `sao_live.commands`.

Each command module defines `add_parser(subparsers)` and `run(args) -> int`, so a new
command is one new file plus one name in COMMANDS. Errors of sao-live's own kind end the
program with their message and exit code 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import SaoLiveError

COMMANDS = ("serve", "generate", "render", "send", "cache", "devices", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sao-live", description="Play Stable Audio Open live.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"sao_live.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"sao_live.commands.{name}":
                continue  # a command not built yet
            raise
        command = module.add_parser(sub)
        command.set_defaults(run=module.run)
        # also after the command (`sao-live serve -v`); SUPPRESS keeps an earlier -v when absent here
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s: %(message)s"
    )
    try:
        return args.run(args) or 0
    except SaoLiveError as err:
        print(f"sao-live {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
