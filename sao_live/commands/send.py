"""`sao-live send`: an OSC client for scripts, e.g. `sao-live send --wait /sao/gen 1 "kick drum" 0.75`.

Arguments are typed like oscsend's (`-t ifs`), or guessed: whole numbers are ints, other
numbers floats, the rest strings. With `--wait` the replies are printed one per line until
the final one (done, error, pong, ...); the command then exits 0, or 1 after an
`/sao/error`, or 3 when nothing final arrived within `--timeout`. When nothing answers for a
moment it says so, and whether anything listens on the port at all (on this machine); without
`--wait`, a message to a port of this machine that nothing listens on is not sent (exit 3).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("send", help="send one OSC message to the daemon and print its replies")
    p.add_argument("address", help="e.g. /sao/gen")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the message's arguments")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9321, help="the daemon's OSC port")
    p.add_argument("-t", "--types", default=None, help="type tags, one per argument: i (int), f (float), s (string)")
    p.add_argument("-w", "--wait", action="store_true", help="print replies until the final one")
    p.add_argument("--count", type=int, default=1, help="with --wait: how many final replies (e.g. variations)")
    p.add_argument("--timeout", type=float, default=30.0, help="with --wait: seconds (default 30)")
    p.add_argument(
        "--listen",
        type=int,
        default=None,
        help="receive replies on this port instead of asking the daemon (/sao/hello 0) to answer to the sending socket",
    )
    return p


def _atoms(args: list[str], types: str | None) -> list:
    if types is None:
        out = []
        for a in args:
            for kind in (int, float):
                try:
                    out.append(kind(a))
                    break
                except ValueError:
                    continue
            else:
                out.append(a)
        return out
    if len(types) != len(args) or set(types) - set("ifs"):
        raise SystemExit(f"sao-live send: --types needs one of i, f, s per argument ({len(args)}), got {types!r}")
    return [{"i": int, "f": float, "s": str}[t](a) for t, a in zip(types, args, strict=True)]


def _show(address: str, args: tuple) -> str:
    return " ".join([address] + [a if isinstance(a, str) and a and " " not in a else json.dumps(a) for a in args])


SILENT_SECONDS = 1.5  # how long --wait waits in silence before saying that nothing answers


def port_is_free(host: str, port: int) -> bool:
    """True when `host` is this machine and nothing holds UDP `port` there (no daemon can be
    listening); False when something does, or when `host` is another machine (cannot tell)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:  # in use, or not an address of this machine
            return False
    return True


def nobody(host: str, port: int) -> str:
    return f"nothing listens on {host}:{port}: start the daemon with `sao-live serve`, or give its port with --port"


def silence(host: str, port: int) -> str:
    """What it may mean that nothing answered yet."""
    if port_is_free(host, port):
        return nobody(host, port)
    if host in ("127.0.0.1", "localhost", "::1"):
        return f"no answer yet from {host}:{port}, though something holds that port (a daemon still starting?)"
    return f"no answer yet from {host}:{port}: is `sao-live serve --host 0.0.0.0` running there, and the port open?"


def run(args) -> int:
    from ..daemon import oscwire
    from ..daemon.protocol import FINAL_REPLIES

    message = oscwire.encode(args.address, *_atoms(args.args, args.types))
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind(("", args.listen or 0))
        target = (args.host, args.port)
        deadline = time.monotonic() + args.timeout

        def replies(until: float):
            while (left := until - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    return
                except ConnectionRefusedError:  # nothing listens (yet) on the daemon's port
                    continue
                try:
                    yield from oscwire.decode(data)
                except oscwire.OscError as err:
                    print(f"(unreadable reply: {err})", file=sys.stderr)

        if not args.wait and port_is_free(args.host, args.port):
            print(f"sao-live send: {nobody(args.host, args.port)}; the message was not sent", file=sys.stderr)
            return 3
        if args.wait and args.listen is None:
            # Replies to this socket; repeated, since a daemon that is starting may not listen yet.
            told = False
            while not any(address == "/sao/ready" for address, _ in replies(min(deadline, time.monotonic() + 0.5))):
                if time.monotonic() >= deadline:
                    print(
                        f"sao-live send: no answer from {args.host}:{args.port} within {args.timeout:g} s",
                        file=sys.stderr,
                    )
                    return 3
                if not told and time.monotonic() > deadline - args.timeout + SILENT_SECONDS:
                    told = True
                    print(
                        f"sao-live send: {silence(args.host, args.port)} (still waiting, {args.timeout:g} s in all)",
                        file=sys.stderr,
                        flush=True,
                    )
                sock.sendto(oscwire.encode("/sao/hello", 0), target)
        sock.sendto(message, target)
        if not args.wait:
            return 0
        finals, failed = 0, False
        for address, atoms in replies(deadline):
            print(_show(address, atoms), flush=True)
            if address in FINAL_REPLIES:
                finals += 1
                failed = failed or address == "/sao/error"
                if finals >= args.count:
                    return 1 if failed else 0
        print(f"sao-live send: {finals} of {args.count} final replies within {args.timeout:g} s", file=sys.stderr)
        return 3
