"""Ask a running sao-live daemon for one clip over OSC and print where it landed.

    python examples/osc_client.py "punchy kick drum" --seconds 1 --seed 42
    python examples/osc_client.py "deep techno loop" --bars 2 --bpm 128 --trigger

It sends `/sao/hello 0` (replies to this script's own socket), then `/sao/gen` (or
`/sao/trigger`), prints the queue position and progress, and prints the clip's path from
`/sao/done`. Exit status: 0 done, 1 `/sao/error`, 3 no answer in time. Only python-osc is
needed (installed with sao-live); the protocol is docs/osc.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket


def message(address: str, *args) -> bytes:
    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(a)
    return builder.build().dgram


def replies(sock: socket.socket, deadline: float):
    """(address, args) of every OSC message arriving before `deadline` (monotonic seconds)."""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return
        except ConnectionRefusedError:  # nothing listens on the daemon's port (yet)
            continue
        for timed in OscPacket(data).messages:
            yield timed.message.address, tuple(timed.message.params)


class Progress:
    """Progress on one line rewritten in place in a terminal; one line per update into a pipe or
    a log, where carriage returns would run the updates together."""

    def __init__(self, stream=sys.stdout):
        self.stream, self.open = stream, False
        self.tty = stream.isatty()

    def show(self, fraction: float) -> None:
        text = f"{fraction * 100:5.1f} %"
        if self.tty:
            print(f"\r{text}", end="", file=self.stream, flush=True)
            self.open = True
        else:
            print(text, file=self.stream, flush=True)

    def end(self) -> None:
        """Ends the progress line, so that what follows starts on a line of its own."""
        if self.open:
            print(file=self.stream, flush=True)
            self.open = False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("prompt", help='e.g. "warm arpeggios on house beats 120BPM"')
    p.add_argument("--seconds", type=float, default=4.0, help="clip length (default 4)")
    p.add_argument("--bars", type=float, default=None, help="a loop of this many 4/4 bars instead of --seconds")
    p.add_argument("--bpm", type=float, default=None, help="tempo for --bars (default: the daemon's)")
    p.add_argument("--seed", type=int, default=-1, help="-1 (default): the daemon picks one and reports it")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    p.add_argument("--trigger", action="store_true", help="send /sao/trigger: answer from the cache when possible")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("SAO_OSC_PORT", 9321)), help="daemon's OSC port")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the clip (default 300)")
    args = p.parse_args(argv)

    request_id = int(time.time() * 1000) % 2**31
    extra: list = ["seed", args.seed]
    if args.steps is not None:
        extra += ["steps", args.steps]
    seconds = args.seconds
    if args.bars is not None:
        seconds = 0.0  # the daemon computes it from bars and bpm
        extra += ["bars", args.bars] + (["bpm", args.bpm] if args.bpm is not None else [])
    address = "/sao/trigger" if args.trigger else "/sao/gen"

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("", 0))
        target = (args.host, args.port)
        sock.sendto(message("/sao/hello", 0), target)  # replies to this socket, not to port 9322
        for addr, atoms in replies(sock, time.monotonic() + 5.0):
            if addr == "/sao/ready":
                if atoms[0] != 1:
                    print(f"the daemon is not ready yet (model {atoms[1]!r} loading): the request will wait")
                break
        else:
            print(f"no answer from a sao-live daemon at {args.host}:{args.port} (is `sao-live serve` running?)")
            return 3
        sock.sendto(message(address, request_id, args.prompt, float(seconds), *extra), target)
        progress = Progress()
        for addr, atoms in replies(sock, time.monotonic() + args.timeout):
            if not atoms or atoms[0] != request_id:
                continue
            if addr == "/sao/queued":
                print(f"queued at position {atoms[1]}")
            elif addr == "/sao/progress":
                progress.show(atoms[1])
            elif addr == "/sao/done":
                progress.end()
                _, path, secs, seed, cached = atoms[:5]
                print(f"done: {secs:g} s, seed {seed}{' (from the cache)' if cached else ''}")
                print(path)
                return 0
            elif addr == "/sao/error":
                progress.end()
                print(f"error {atoms[1]}: {atoms[2]}", file=sys.stderr)
                return 1
    progress.end()
    print(f"no /sao/done within {args.timeout:g} s", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
