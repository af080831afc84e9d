"""Daemon benchmarks: start-up, cached-trigger latency, sustained request rate, memory.

    python benchmarks/daemon_bench.py [--model tiny-random] [--rate 2000] [--clients 4] [--duration 5]

Starts `sao-live serve` as a subprocess on free ports with a fresh cache in a temporary folder,
then measures, over real UDP on 127.0.0.1:
  1. start -> /sao/ready (process launch to the announcement; model load included);
  2. /sao/trigger of a cached clip -> /sao/done round trip, median and p99, idle and while the
     worker generates a long clip;
  3. `--rate` cached triggers a second for `--duration` s from `--clients` client processes,
     each paced on its own clock: how many were answered (none may be lost);
  4. the control process's resident memory (VmRSS, and its peak VmHWM) after all that.
Targets: median < 5 ms, p99 < 20 ms, also while generating; 2,000/s with none lost;
ready < 5 s with the tiny model; control process < 150 MB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sao_live.daemon.oscwire import decode, encode  # noqa: E402


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_socket(daemon_port: int) -> socket.socket:
    """A socket the daemon answers to (`/sao/hello 0`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    sock.sendto(encode("/sao/hello", 0), ("127.0.0.1", daemon_port))
    while decode(sock.recv(65536))[0][0] != "/sao/ready":
        pass
    return sock


def wait_for(sock: socket.socket, address: str, id=None, timeout: float = 60.0) -> tuple:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        for addr, args in decode(data):
            if addr == address and (id is None or args[0] == id):
                return args
            if addr == "/sao/error" and args[0] == id:
                raise RuntimeError(f"/sao/error {args}")
    raise TimeoutError(f"no {address} for {id!r}")


def trigger_latencies(port: int, count: int, request: tuple) -> list[float]:
    sock = client_socket(port)
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        sock.sendto(encode("/sao/trigger", i, *request), ("127.0.0.1", port))
        wait_for(sock, "/sao/done", i, timeout=10)
        out.append((time.perf_counter() - t0) * 1000)
    sock.close()
    return out


def _load_client(port: int, rate: float, duration: float, request: tuple, start_at: float, queue) -> None:
    """One client process: `rate` triggers a second, paced on the clock; counts the /sao/done replies."""
    sock = client_socket(port)
    sock.setblocking(False)
    total = int(rate * duration)
    answered: set[int] = set()
    errors = 0

    def drain() -> None:
        nonlocal errors
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            for addr, args in decode(data):
                if addr == "/sao/done":
                    answered.add(args[0])
                elif addr == "/sao/error":
                    errors += 1

    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        while (now := time.perf_counter()) < due:
            drain()
            if due - now > 0.002:
                time.sleep(0.001)
        sock.sendto(encode("/sao/trigger", i, *request), ("127.0.0.1", port))
    send_time = time.perf_counter() - t0
    deadline = time.perf_counter() + 10
    while len(answered) < total and time.perf_counter() < deadline:
        drain()
        time.sleep(0.005)
    queue.put(dict(sent=total, answered=len(answered), errors=errors, send_seconds=send_time))
    sock.close()


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny-random")
    p.add_argument("--text-encoder", default=None)
    p.add_argument("--rate", type=float, default=2000.0, help="requests a second, all clients together")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--latency-count", type=int, default=1000)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="sao-daemon-bench-"))
    port, reply_port = free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "sao_live.cli",
        "serve",
        "--model",
        args.model,
        "--osc-port",
        str(port),
        "--reply-port",
        str(reply_port),
        "--cache-dir",
        str(root / "cache"),
    ]
    if args.text_encoder:
        cmd += ["--text-encoder", args.text_encoder]
    env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_CONFIG_HOME=str(root / "config"))
    ready_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ready_sock.bind(("127.0.0.1", reply_port))
    t0 = time.perf_counter()
    with open(root / "daemon.log", "w") as log:
        daemon = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    results: dict = {"model": args.model}
    try:
        wait_for(ready_sock, "/sao/ready", 1, timeout=120)
        results["ready_s"] = time.perf_counter() - t0
        ready_sock.close()
        print(f"start -> /sao/ready: {results['ready_s']:.2f} s")

        sock = client_socket(port)
        request = ("bench kick", 0.5, "seed", 1, "export", 0)
        sock.sendto(encode("/sao/gen", "warm", *request), ("127.0.0.1", port))
        wait_for(sock, "/sao/done", "warm", timeout=120)

        idle = trigger_latencies(port, args.latency_count, request)
        results["trigger_idle_ms"] = dict(median=statistics.median(idle), p99=pct(idle, 0.99), n=len(idle))
        print(f"cached trigger -> done, idle: median {statistics.median(idle):.2f} ms, p99 {pct(idle, 0.99):.2f} ms")

        sock.sendto(encode("/sao/gen", "long", "bench long pad", 2.9, "steps", 1000, "export", 0), ("127.0.0.1", port))
        wait_for(sock, "/sao/progress", "long", timeout=60)
        busy = trigger_latencies(port, args.latency_count, request)
        sock.sendto(encode("/sao/status"), ("127.0.0.1", port))
        still_running = wait_for(sock, "/sao/status", timeout=10)[2] == 1
        sock.sendto(encode("/sao/cancel", "long"), ("127.0.0.1", port))
        results["trigger_generating_ms"] = dict(
            median=statistics.median(busy),
            p99=pct(busy, 0.99),
            n=len(busy),
            worker_still_generating_at_end=still_running,
        )
        print(
            f"cached trigger -> done, while generating: median {statistics.median(busy):.2f} ms, "
            f"p99 {pct(busy, 0.99):.2f} ms (worker still generating at the end: {still_running})"
        )

        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        start_at = time.time() + 2.0
        procs = [
            ctx.Process(
                target=_load_client, args=(port, args.rate / args.clients, args.duration, request, start_at, queue)
            )
            for _ in range(args.clients)
        ]
        for proc in procs:
            proc.start()
        parts = [queue.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join()
        sent, answered = sum(x["sent"] for x in parts), sum(x["answered"] for x in parts)
        send_s = max(x["send_seconds"] for x in parts)
        results["load"] = dict(
            clients=args.clients,
            rate=args.rate,
            duration=args.duration,
            sent=sent,
            answered=answered,
            lost=sent - answered,
            errors=sum(x["errors"] for x in parts),
            achieved_rate=sent / send_s,
        )
        print(
            f"load: {sent} triggers from {args.clients} clients at {sent / send_s:.0f}/s: {answered} answered, "
            f"{sent - answered} lost, {results['load']['errors']} errors"
        )

        rss, peak = rss_mb(daemon.pid)
        results["control_rss_mb"] = dict(now=rss, peak=peak)
        print(f"control process memory: {rss:.0f} MB now, {peak:.0f} MB peak (the worker is a separate process)")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
