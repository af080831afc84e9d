"""Live benchmarks through a private JACK server (dummy backend, 48 kHz, 256-frame periods).

1. `/sao/play` and MIDI note-on of a ready clip to its first sample in the recorded output
   (median over N hits; target: one period + 5 ms).
2. Underruns over 60 s of 16 looping voices while the worker generates on the same CPU.
3. A 16-pad set of 1-bar loops pre-rendered with the tiny model: time, every pad ready,
   no take rendered twice.

Run: HF_HUB_OFFLINE=1 python benchmarks/live_bench.py [--seconds 60] [--hits 30] [--worker-threads N]
(SAO_JACK_REALTIME=1 runs jackd with realtime scheduling, as a live setup does.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sao_live.testing.daemon import DaemonProcess  # noqa: E402
from sao_live.testing.jack import PERIOD, RATE, JackServer, Recorder, late_clients  # noqa: E402

LOOPS = "name = 'bench-loops'\nbpm = 120\n[defaults]\nbars = 1\nmode = 'loop'\nsteps = 2\n[[banks]]\n" + "".join(
    f"[[banks.pads]]\nprompt = 'loop number {i}'\n" for i in range(16)
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--hits", type=int, default=30)
    ap.add_argument(
        "--model",
        default=None,
        help="model for the daemon (default: the tiny one); a published-size folder makes the worker's load realistic",
    )
    ap.add_argument("--text-encoder", default=None, help="text encoder for --model")
    ap.add_argument("--idle", action="store_true", help="underrun baseline: the voices play, the worker rests")
    ap.add_argument(
        "--worker-threads", type=int, default=0, help="torch threads in the worker (0: the default, every core)"
    )
    args = ap.parse_args()
    from sao_live.engine.tiny import build_tiny_text_encoder

    root = Path(tempfile.mkdtemp(prefix="sao-live-bench-"))
    t5 = build_tiny_text_encoder(root / "t5")
    jack_log = Path(os.environ.setdefault("SAO_JACK_LOG", str(root / "jackd.log")))
    server = JackServer(f"saobench{os.getpid()}", sync=False)  # jackd's default mode, as a live setup runs it
    (root / "sets").mkdir()
    (root / "sets" / "loops.toml").write_text(LOOPS)
    config = dict(audio_device="JACK", midi_api="UNIX_JACK", master_db=-24.0, sets_dir=str(root / "sets"))
    config["worker_threads"] = args.worker_threads
    if args.model:
        daemon = DaemonProcess(root / "d", args.text_encoder or t5, config=config, model=args.model)
    else:
        daemon = DaemonProcess(root / "d", t5, config=config)
    try:
        t0 = time.monotonic()
        daemon.start(timeout=180)
        print(f"daemon ready in {time.monotonic() - t0:.1f} s")
        rec = Recorder(seconds=args.seconds + 120)
        rec.connect("PortAudio")
        c = daemon.client()
        # 3. the 16-pad loop set
        c.send("/sao/status")
        clips0 = c.wait_for("/sao/status")[3]
        t0 = time.monotonic()
        c.send("/sao/load", "loops")
        loaded = c.wait_for("/sao/loaded", timeout=600)
        took = time.monotonic() - t0
        c.send("/sao/status")
        clips1 = c.wait_for("/sao/status")[3]
        renders = c.of("/sao/render")
        print(
            f"16-pad 1-bar loop set: pre-rendered in {took:.1f} s; loaded {loaded}; new clips in the cache "
            f"{clips1 - clips0} (16 expected: none duplicated); progress messages {len(renders)}"
        )
        # 1. latency of /sao/play and MIDI note-on
        import mido

        lat = {"osc": [], "midi": []}
        out = mido.Backend("mido.backends.rtmidi/UNIX_JACK").open_output(
            [n for n in mido.Backend("mido.backends.rtmidi/UNIX_JACK").get_output_names() if "sao-live" in n][0]
        )
        for _ in range(args.hits):
            for kind in ("osc", "midi"):
                c.send("/sao/stop", "all")
                time.sleep(0.05)
                mark = rec.n
                sent = time.monotonic()
                if kind == "osc":
                    c.send("/sao/play", "pad1", 1.0)
                else:
                    out.send(mido.Message("note_on", note=36, velocity=127))
                lat[kind].append(rec.seconds_to_sound(mark, sent))
        out.close()
        for kind, xs in lat.items():
            print(
                f"{kind} hit -> first sample: median {1000 * statistics.median(xs):.2f} ms, "
                f"p90 {1000 * sorted(xs)[int(0.9 * len(xs))]:.2f} ms (period {1000 * PERIOD / RATE:.2f} ms, "
                f"target < {1000 * PERIOD / RATE + 5:.2f} ms)"
            )
        # 2. underruns with 16 voices while generating. The recorder goes first: it is a Python
        # JACK client too, and a late period of its own is an xrun that our player would count.
        rec.close()
        c.send("/sao/stop", "all")
        c.send("/sao/set/master_db", -30.0)
        for n in range(1, 17):
            c.send(f"/sao/pad/{n}", 1.0)
        c.send("/sao/status")
        st0 = c.wait_for("/sao/status")
        late0 = late_clients(jack_log)
        t_end = time.monotonic() + args.seconds
        jobs, job_seconds = 0, []
        while args.idle and time.monotonic() < t_end:
            time.sleep(0.1)
        while time.monotonic() < t_end:
            started = time.monotonic()
            c.send("/sao/gen", f"g{jobs}", "background job", 2.9, "steps", 8, "export", 0)
            c.wait_reply(f"g{jobs}", timeout=120)
            job_seconds.append(time.monotonic() - started)
            jobs += 1
        c.send("/sao/status")
        st1 = c.wait_for("/sao/status")
        print(
            f"{args.seconds:.0f} s, {st1[7]} voices playing, {jobs} clips generated meanwhile: "
            f"underruns {st1[8] - st0[8]}, callback errors {st1[9] - st0[9]}"
        )
        if job_seconds:
            print(f"seconds per clip while the voices played: median {statistics.median(job_seconds):.2f}")
        late = late_clients(jack_log) - late0
        print(f"jackd's late-client reports meanwhile: {dict(late) or 'none'} (log: {jack_log})")
        c.close()
    finally:
        daemon.stop()
        server.stop()


if __name__ == "__main__":
    main()
