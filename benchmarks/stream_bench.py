"""Sound before the clip is finished: from an uncached trigger to its first recorded sample.

Two daemons in turn, the same model and requests: one streaming (the default), one with
`--no-stream` (the clip plays once finished). Each plays into a private JACK server (dummy
backend, 48 kHz, 256-frame periods) and a JACK client records it. For each length, --runs
uncached `/sao/trigger` requests (a new prompt each): seconds from the trigger to the first
recorded sample and to `/sao/done`, and the daemon's `/sao/timing` (text, DiT, decode). Medians;
the ratio of the streamed first sample to the non-streamed `/sao/done` of the same length. For
the longest clip the recording is compared with the cached file (after alignment), and the
daemon's underruns and starved voices are read before and after.

Run: HF_HUB_OFFLINE=1 python benchmarks/stream_bench.py --model random-small [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sao_live.testing.daemon import DaemonProcess  # noqa: E402
from sao_live.testing.jack import RATE, JackServer, Recorder, late_clients  # noqa: E402

CASES = [("one-shot 11.88 s (the window)", ("/sao/trigger", 11.88)), ("one-shot 2 s", ("/sao/trigger", 2.0)),
         ("one-shot 1 s", ("/sao/trigger", 1.0)), ("loop 2 bars at 120 BPM", ("/sao/loop", 2))]  # fmt: skip


def player_counters(client) -> tuple[int, int]:
    client.send("/sao/status")
    status = client.wait_for("/sao/status", timeout=30)
    return status[8], status[13]  # underruns, stolen (starved voices are in the daemon's log)


def one(client, rec: Recorder, address: str, value: float, rid: str, prompt: str) -> dict:
    client.send("/sao/stop", "all")
    mark = rec.silence(timeout=60)
    since = client.mark()
    sent = time.monotonic()
    if address == "/sao/loop":
        client.send(address, rid, prompt, value, 120, "export", 0)
    else:
        client.send(address, rid, prompt, value, "export", 0)
    addr, args = client.wait_reply(rid, ("/sao/playing", "/sao/error"), timeout=600, since=since)
    assert addr == "/sao/playing", args
    first = rec.seconds_to_sound(mark, sent, timeout=60)
    addr, done = client.wait_reply(rid, timeout=600, since=since)
    done_at = time.monotonic()
    assert addr == "/sao/done", done
    timing = client.wait_reply(rid, ("/sao/timing",), timeout=30, since=since)[1]
    return dict(first=first, done=done_at - sent, path=done[1], mark=mark, timing=timing[1:])


def exactness(rec: Recorder, mark: int, path: str) -> tuple[float, list]:
    """Largest difference between the recording and the cached file (resampled as the player does)."""
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    ref = soxr.resample(audio, sr, RATE, quality="HQ")
    start = rec.sound(mark, timeout=10)
    got = rec.wait(len(ref) + RATE, max(mark, start - RATE // 10), timeout=60)
    corr = np.correlate(got[: RATE // 2, 0], ref[: RATE // 4, 0], "valid")
    lag = int(np.argmax(corr))
    skipped = rec.skipped(max(mark, start - RATE // 10), len(got))
    return float(np.abs(got[lag : lag + len(ref)] - ref).max()), skipped


def run(root: Path, args, stream: bool) -> dict:
    from sao_live.engine.tiny import build_tiny_text_encoder

    t5 = None if args.model != "tiny-random" else build_tiny_text_encoder(root / "t5")
    config = dict(audio_device="JACK", midi_api="UNIX_JACK", master_db=0.0, stream=stream, quantize="off")
    config["worker_threads"] = args.worker_threads
    daemon = DaemonProcess(root / ("streamed" if stream else "whole"), t5, config=config, model=args.model)
    results: dict = {name: [] for name, _ in CASES}
    try:
        t0 = time.monotonic()
        daemon.start(timeout=900)
        print(f"{'streaming' if stream else '--no-stream'} daemon ready in {time.monotonic() - t0:.0f} s", flush=True)
        rec = Recorder(seconds=60 * len(CASES) * args.runs + 120)
        rec.connect("PortAudio")
        client = daemon.client()
        under0, _ = player_counters(client)
        late0 = late_clients(args.jack_log)
        for r in range(args.runs):
            for name, (address, value) in CASES:
                rid = f"{'s' if stream else 'w'}{r}-{name}"
                out = one(client, rec, address, value, rid, f"bench {rid} {time.time_ns()}")
                if name == CASES[0][0] and r == args.runs - 1:
                    out["diff"], out["skipped"] = exactness(rec, out["mark"], out["path"])
                results[name].append(out)
                print(f"  {rid}: first sample {out['first']:.2f} s, done {out['done']:.2f} s, timing {out['timing']}")
        under1, _ = player_counters(client)
        results["underruns"] = under1 - under0
        results["late"] = dict(late_clients(args.jack_log) - late0) or "none"
        client.close()
        rec.close()
    finally:
        daemon.stop(timeout=60)
    starved = daemon.log().count("audio stopped arriving")
    results["starved"] = starved
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--model", default="random-small", help="random-small (published size, random weights) or tiny-random"
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--worker-threads", type=int, default=0, help="torch threads in the worker (0: the daemon's choice)"
    )
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sao-live-stream-"))
    args.jack_log = Path(os.environ.setdefault("SAO_JACK_LOG", str(root / "jackd.log")))
    server = JackServer(f"saostream{os.getpid()}", sync=False)
    try:
        streamed = run(root, args, stream=True)
        whole = run(root, args, stream=False)
    finally:
        server.stop()
    med = statistics.median
    print(f"\nmodel {args.model}, medians of {args.runs} runs; seconds from the trigger")
    print(
        "| request | streamed: first sample | streamed: done | not streamed: first sample | not streamed: done "
        "| ratio (streamed first sample / not streamed done) | decode s | DiT s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, _ in CASES:
        s, w = streamed[name], whole[name]
        first, done = med([x["first"] for x in s]), med([x["done"] for x in w])
        print(f"| {name} | {first:.2f} | {med([x['done'] for x in s]):.2f} | {med([x['first'] for x in w]):.2f} "
              f"| {done:.2f} | **{first / done:.2f}x** | {med([x['timing'][3] for x in s]):.2f} "
              f"| {med([x['timing'][2] for x in s]):.2f} |")  # fmt: skip
    last = streamed[CASES[0][0]][-1]
    print(
        f"\nstreamed {CASES[0][0]}: recording vs cached file, largest difference {last['diff']:.2e} "
        f"(periods the recorder missed: {len(last['skipped'])}); underruns while streaming "
        f"{streamed['underruns']}, not streaming {whole['underruns']}; streamed voices faded out early "
        f"{streamed['starved']}; jackd's late-client reports while streaming {streamed['late']}, "
        f"not streaming {whole['late']}"
    )


if __name__ == "__main__":
    main()
