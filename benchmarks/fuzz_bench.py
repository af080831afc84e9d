"""Fuzzing the daemon over UDP: 10^5 hostile datagrams from 4 senders, valid requests mixed in.

    HF_HUB_OFFLINE=1 python benchmarks/fuzz_bench.py [--datagrams 100000] [--senders 4] [--rate 500]

Starts `sao-live serve` (tiny model, no audio) and sends, from 4 processes on their own
loopback addresses (127.0.0.10-13, none of which said /sao/hello), a seeded mix of garbage:
random bytes, valid messages with flipped bits, random type tags, the protocol's addresses with
wrong, absurd or NaN values, long addresses and huge numbers, nested bundles. Every 100th
datagram is a valid `/sao/trigger` (10 distinct sounds). The replies go to each sender's host
at the reply port, where each process listens and notes every datagram's time and size.

Then, from fresh addresses (127.0.1.x), single probe datagrams (the worst cases known) measure
the reply bytes each one causes until its last reply.

Reports: crashes (the daemon gone, its worker restarted, `internal` errors), valid requests
lost, control-process memory before and after, the worst amplification factor of one datagram
(reply bytes / datagram bytes), and the highest reply rate any one destination received
(bytes in any 1 s window).
"""

from __future__ import annotations

import argparse
import collections
import math
import multiprocessing
import random
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sao_live.daemon import oscwire  # noqa: E402
from sao_live.testing.daemon import Client, Collector, DaemonProcess  # noqa: E402

ADDRESSES = [
    "/sao/gen",
    "/sao/trigger",
    "/sao/cancel",
    "/sao/status",
    "/sao/ping",
    "/sao/hello",
    "/sao/info",
    "/sao/loop",
    "/sao/play",
    "/sao/stop",
    "/sao/bank",
    "/sao/load",
    "/sao/set/bpm",
    "/sao/get/steps",
    "/sao/pad/1",
    "/sao/set/master_db",
    "/sao/nope",
]
VALUES = [
    0,
    -1,
    1,
    2**31 - 1,
    -(2**31),
    2**40,
    0.0,
    -0.5,
    1e30,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x" * 2000,
    "seed",
    "steps",
    "bars",
    "variations",
    "export",
    "pad1",
    "all",
    "../../etc/passwd",
    b"\x00" * 64,
    True,
    None,
    "\ufffd",
]


def hostile(rng: random.Random) -> bytes:
    kind = rng.choices(range(7), weights=(10, 10, 10, 10, 3, 1, 5))[0]  # long datagrams rarer
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 1500))
    if kind == 1:
        data = bytearray(oscwire.encode("/sao/gen", "f", "a prompt", 1.0, "steps", 2))
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 2:
        tags = "".join(rng.choice("ifsbhdtTFNIcrm[]xS") for _ in range(rng.randrange(0, 12)))
        body = rng.randbytes(rng.randrange(0, 64))
        tag_string = f",{tags}".encode()
        tag_string += b"\x00" * (4 - len(tag_string) % 4)
        return oscwire.encode(rng.choice(ADDRESSES))[:-4] + tag_string + body
    if kind == 3:
        args = [rng.choice(VALUES) for _ in range(rng.randrange(0, 9))]
        return oscwire.encode(rng.choice(ADDRESSES), *args)
    if kind == 4:
        return oscwire.encode("/sao/pad/" + "9" * rng.randrange(10, 5000), 1.0)
    if kind == 5:
        return oscwire.encode("/sao/" + "a" * rng.randrange(70, 60000))
    inner = [oscwire.encode(rng.choice(ADDRESSES), rng.choice(VALUES)) for _ in range(rng.randrange(1, 200))]
    return oscwire.encode_bundle(inner)


def valid(i: int) -> tuple[bytes, str]:
    rid = f"v{i}"
    return oscwire.encode("/sao/trigger", rid, f"fuzz sound {i % 10}", 0.5, "steps", 2, "export", 0), rid


def _sender(index: int, port: int, reply_port: int, count: int, rate: float, start_at: float, drained, out) -> None:
    host = f"127.0.0.{10 + index}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    listener = Collector(reply_port, host=host)  # where the daemon answers this host: it never said hello
    client = Client(port, host=host)  # the valid requests: a client that said hello, on its own socket
    rng = random.Random(index)
    ids = []
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    for i in range(count):
        while time.perf_counter() < t0 + i / rate:
            pass
        if i % 100 == 50:
            data, rid = valid(index * count + i)
            ids.append(rid)
        else:
            data = hostile(rng)
        (client.sock if i % 100 == 50 else sock).sendto(data, ("127.0.0.1", port))
    out.put(("sent", index))
    drained.wait(900)  # the daemon's queue is empty: every answer has been sent
    time.sleep(1.0)
    valid_done = sum(bool(client.of("/sao/done", rid)) for rid in ids)
    valid_errors = [client.of("/sao/error", rid)[0][1] for rid in ids if client.of("/sao/error", rid)]
    codes = [a[1] for c in (client, listener) for a in c.of("/sao/error") if len(a) > 1]
    client.close()
    listener.close()
    out.put(
        dict(
            sent=count,
            valid=len(ids),
            valid_done=valid_done,
            valid_errors=valid_errors,
            received=[listener.datagrams, client.datagrams],
            internal=codes.count("internal"),
        )
    )


def peak_rate(received: list[tuple[float, int]]) -> float:
    """The most bytes in any 1 s window."""
    best, start, total = 0, 0, 0
    for t, size in received:
        total += size
        while received[start][0] < t - 1.0:
            total -= received[start][1]
            start += 1
        best = max(best, total)
    return best


PROBES = {
    "/sao/info (12 bytes, no type tags)": b"/sao/info\x00\x00\x00",
    "bundle of 4061 /sao/info": oscwire.encode_bundle([b"/sao/info\x00\x00\x00"] * 4061),
    "/sao/gen variations 16 steps 300": oscwire.encode(
        "/sao/gen", 1, "probe pad", 0.5, "variations", 16, "steps", 300, "export", 0
    ),
    "/sao/ping with 8 long strings": oscwire.encode("/sao/ping", *["y" * 1000] * 8),
    "/sao/status": oscwire.encode("/sao/status"),
    "/sao/pad/<5000 digits>": oscwire.encode("/sao/pad/" + "9" * 5000),
}


def probe(daemon: DaemonProcess, n: int, data: bytes, settle: float) -> int:
    """Reply bytes that one datagram from a fresh address causes, until `settle` s pass without one."""
    host = f"127.0.1.{n}"
    listener = Collector(daemon.reply_port, host=host)
    sizes = listener.datagrams
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.sendto(data, ("127.0.0.1", daemon.osc_port))
    last = time.monotonic()
    while time.monotonic() - (sizes[-1][0] if sizes else last) < settle:
        time.sleep(0.1)
    sock.close()
    listener.close()
    return sum(size for _, size in sizes)


def socket_drops(port: int) -> int:
    """Datagrams the kernel dropped for the UDP socket bound to `port` (its receive buffer was full)."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            return int(fields[-1])
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datagrams", type=int, default=100_000)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--rate", type=float, default=500.0, help="datagrams a second, all senders together")
    args = p.parse_args()
    from sao_live.engine.tiny import build_tiny_text_encoder

    root = Path(tempfile.mkdtemp(prefix="sao-fuzz-bench-"))
    t5 = build_tiny_text_encoder(root / "t5")
    daemon = DaemonProcess(root / "d", t5, config=dict(audio_device="none", midi_in="none"), export=False).start()
    try:
        with daemon.client() as c:
            worker = daemon.worker_pid(c)
        before = daemon.memory_mb()[0]
        drops_before = socket_drops(daemon.osc_port)
        watcher = daemon.client()  # said hello before the flood
        ctx = multiprocessing.get_context("spawn")
        out, drained = ctx.Queue(), ctx.Event()
        start_at = time.time() + 2.0
        each = args.datagrams // args.senders
        procs = [
            ctx.Process(
                target=_sender,
                args=(i, daemon.osc_port, daemon.reply_port, each, args.rate / args.senders, start_at, drained, out),
                daemon=True,  # a failed run must not leave them waiting
            )
            for i in range(args.senders)
        ]
        for proc in procs:
            proc.start()
        t_sent = time.perf_counter()
        for _ in procs:
            out.get(timeout=900)  # every sender has sent all it had
        with watcher as c:  # the garbage queued real jobs too: wait until all have run
            while True:
                c.send("/sao/status")
                ready, queued, running, *_ = c.wait_for("/sao/status", timeout=120)
                if not queued and not running:
                    break
                time.sleep(1.0)
        drain_s = time.perf_counter() - t_sent
        dropped = socket_drops(daemon.osc_port) - drops_before
        drained.set()
        parts = [out.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join()
        after = daemon.memory_mb()[0]
        amplification = {}
        for n, (name, data) in enumerate(PROBES.items(), 1):
            amplification[name] = (probe(daemon, n, data, settle=3.0), len(data))
        with daemon.client() as c:
            alive = daemon.proc.poll() is None and daemon.worker_pid(c) == worker
    finally:
        code = daemon.stop()
    restarts = daemon.log().count("restarting it")
    valid = sum(x["valid"] for x in parts)
    errors = collections.Counter(code for x in parts for code in x["valid_errors"])
    lost = valid - sum(x["valid_done"] for x in parts) - sum(errors.values())
    internal = sum(x["internal"] for x in parts)
    print(
        f"datagrams sent: {sum(x['sent'] for x in parts):,} from {args.senders} senders, {valid} of them valid; "
        f"the queue was empty {drain_s:.0f} s after the start"
    )
    print(
        f"crashes: {0 if alive and code == 0 and not restarts else 1} (daemon exit code {code}, worker restarts "
        f"{restarts}, `internal` errors {internal})"
    )
    print(f"datagrams the kernel dropped before the daemon read them (its socket buffer was full): {dropped}")
    print(
        f"valid requests lost (no answer at all): {lost}; answered done {valid - lost - sum(errors.values())}, "
        f"error {dict(errors) or 0}"
    )
    print(f"control-process memory: {before:.0f} MB before, {after:.0f} MB after")
    for name, (sent_back, size) in amplification.items():
        print(f"  {name}: {size:,} bytes -> {sent_back:,} reply bytes ({sent_back / size:.1f}x)")
    worst = max(amplification.items(), key=lambda kv: kv[1][0] / kv[1][1])
    print(
        f"worst amplification of one datagram from an unregistered sender: {worst[1][0] / worst[1][1]:.1f}x "
        f"({worst[0]})"
    )
    peak = max(peak_rate(r) for x in parts for r in x["received"])
    print(f"highest reply rate at one destination: {peak / 1024:.0f} KB in 1 s (budget {1024} KB/s, burst 2048 KB)")
    return 0 if alive and not lost and not internal else 1


if __name__ == "__main__":
    sys.exit(main())
