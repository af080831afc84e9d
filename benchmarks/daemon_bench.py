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
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sao_live.testing.daemon import Client, DaemonProcess  # noqa: E402


def trigger_latencies(client: Client, count: int, request: tuple) -> list[float]:
    out = []
    for i in range(count):
        mark = client.mark()
        t0 = time.perf_counter()
        client.send("/sao/trigger", i, *request)
        address, args = client.wait_reply(i, timeout=10, since=mark)
        out.append((time.perf_counter() - t0) * 1000)
        if address != "/sao/done":
            raise RuntimeError(f"{address} {args}")
    return out


def _load_client(port: int, rate: float, duration: float, request: tuple, start_at: float, queue) -> None:
    """One client process: `rate` triggers a second, paced on the clock; counts the /sao/done replies."""
    client = Client(port)
    total = int(rate * duration)
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        while (now := time.perf_counter()) < due:
            if due - now > 0.002:
                time.sleep(0.001)
        client.send("/sao/trigger", i, *request)
    send_time = time.perf_counter() - t0
    deadline = time.perf_counter() + 10
    while len(answered := {a[0] for a in client.of("/sao/done")}) < total and time.perf_counter() < deadline:
        time.sleep(0.05)
    queue.put(dict(sent=total, answered=len(answered), errors=len(client.of("/sao/error")), send_seconds=send_time))
    client.close()


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
    text_encoder = args.text_encoder
    if text_encoder is None and args.model.startswith("tiny-random"):
        from sao_live.engine.tiny import build_tiny_text_encoder

        text_encoder = build_tiny_text_encoder(root / "t5")  # written before the clock starts
    config = dict(audio_device="none", midi_in="none")
    daemon = DaemonProcess(root / "d", text_encoder, config=config, export=False, model=args.model)
    results: dict = {"model": args.model}
    try:
        daemon.start(timeout=120)
        results["ready_s"] = daemon.ready_after
        print(f"start -> /sao/ready: {results['ready_s']:.2f} s")

        client = daemon.client(thread=False)  # the waits read the socket: no thread hand-off in the timings
        request = ("bench kick", 0.5, "seed", 1, "export", 0)
        address, reply = client.request("/sao/gen", "warm", *request, timeout=120)
        if address != "/sao/done":
            raise RuntimeError(f"the warm-up clip failed: {address} {reply}")

        idle = trigger_latencies(client, args.latency_count, request)
        results["trigger_idle_ms"] = dict(median=statistics.median(idle), p99=pct(idle, 0.99), n=len(idle))
        print(f"cached trigger -> done, idle: median {statistics.median(idle):.2f} ms, p99 {pct(idle, 0.99):.2f} ms")

        client.send("/sao/gen", "long", "bench long pad", 2.9, "steps", 1000, "export", 0)
        client.wait_for("/sao/progress", lambda a: a[0] == "long", timeout=60)
        busy = trigger_latencies(client, args.latency_count, request)
        client.send("/sao/status")
        still_running = client.wait_for("/sao/status", timeout=10)[2] == 1
        client.send("/sao/cancel", "long")
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
        client.close()
        port = daemon.osc_port

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

        rss, peak = daemon.memory_mb()
        results["control_rss_mb"] = dict(now=rss, peak=peak)
        print(f"control process memory: {rss:.0f} MB now, {peak:.0f} MB peak (the worker is a separate process)")
    finally:
        daemon.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
