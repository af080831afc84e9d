"""Model pool benchmarks: a daemon with `--pool ray` on a Ray cluster on this machine (testing.cluster).

    HF_HUB_OFFLINE=1 python benchmarks/pool_bench.py [--jobs 20] [--actors 3] [--small-clips 3] [--nice 0]
        [--only tiny|small]

The cluster starts with its head only (no CPUs: no actor, so the daemon's local worker serves),
then gets worker nodes of one CPU each, one actor per node with one torch thread; the local
worker also has one thread (`worker_threads` 0 on 2 cores). Both run at `--nice` (the daemon's
`worker_nice`, 0 here by default: on a shared machine other work at nice 0 would otherwise take
most of the CPU from them). Each part runs the local worker first, then the pool, in the same daemon:
  1. dispatch: `--jobs` tiny clips one after another (0.5 s, 2 steps), request -> /sao/done,
     on the local worker and on one actor; the difference of the medians is the pool's overhead
     per job (Ray calls, the audio through the object store, the file written by the pool process);
  2. throughput: a 32-take set (`/sao/load`, 2 banks of 16 pads, tiny model, 4 s takes of 25
     steps) pre-rendered by the local worker, then by 1, 2, ... `--actors` actors (a node added
     each round, new prompts each round): seconds, takes a second, speed-up over one actor;
  3. Small at its published size (random weights): `--small-clips` 2 s clips (8 steps) on the
     local worker and on one actor, seconds per clip, and the peak memory of the worker process
     and of the actor's process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sao_live.testing.cluster import LocalCluster  # noqa: E402
from sao_live.testing.daemon import Client, DaemonProcess  # noqa: E402

TAKE = dict(seconds=4.0, steps=25)


def set_text(name: str) -> str:
    """A set of 2 banks of 16 pads, one take each, every prompt new."""
    bank = "[[banks]]\n" + "".join(f"[[banks.pads]]\nprompt = '{name} pad {{b}}.{p}'\n" for p in range(16))
    banks = "".join(bank.replace("{b}", str(b)) for b in range(2))
    return f"name = '{name}'\n[defaults]\nseconds = {TAKE['seconds']}\nsteps = {TAKE['steps']}\n{banks}"


def pool(client: Client) -> tuple[tuple, list[tuple]]:
    mark = client.mark()
    client.send("/sao/pool")
    final = client.wait_for("/sao/pool", since=mark, timeout=10)
    return final, [a for address, a in client.messages[mark:] if address == "/sao/pool/actor"]


def wait_actors(client: Client, count: int, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while pool(client)[0][1] != count or pool(client)[0][2] != 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {count} idle actors: {pool(client)}")
        time.sleep(0.5)


def clips(client: Client, tag: str, count: int, *request) -> tuple[list[float], set]:
    """Request -> /sao/done seconds of `count` clips one after another, and where they were made."""
    took, where = [], set()
    for i in range(count):
        t0 = time.perf_counter()
        kind, args = client.request("/sao/gen", f"{tag}{i}", f"{tag} clip {i}", *request, timeout=600)
        took.append(time.perf_counter() - t0)
        if kind != "/sao/done":
            raise RuntimeError(f"{kind} {args}")
        where.add(args[5])
    return took, where


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (those that ended are left out)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def peak_mb(pid: int) -> float:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmHWM"].split()[0]) / 1024


def _is_resource_tracker(pid: int) -> bool:
    return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()


def actor_pids() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"ModelActor" in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


NICE = [0]  # --nice


def start_daemon(root: Path, cluster: LocalCluster, model: str, text_encoder: Path | None) -> tuple:
    config = dict(audio_device="none", midi_in="none", pool="ray", pool_cpus_per_actor=1, sets_dir=str(root / "sets"),
                  worker_nice=NICE[0])  # fmt: skip
    daemon = DaemonProcess(root, text_encoder, config=config, export=False, model=model,
                           env=dict(RAY_ADDRESS=cluster.address))  # fmt: skip
    (root / "sets").mkdir(parents=True, exist_ok=True)
    daemon.start(timeout=300)
    return daemon, daemon.client()


def dispatch_and_throughput(root: Path, jobs: int, actors: int, text_encoder: Path) -> dict:
    results: dict = {}
    cluster = LocalCluster(nodes=0)
    daemon, client = start_daemon(root / "tiny", cluster, "tiny-random", text_encoder)
    try:
        request = (0.5, "steps", 2)
        local, where = clips(client, "warm", 2, *request)  # the first clip warms the worker up
        local, where = clips(client, "local", jobs, *request)
        assert where == {"local"}, where
        ms = [t * 1000 for t in local]
        results["dispatch_local_ms"] = dict(median=statistics.median(ms), min=min(ms), n=len(ms))
        print(f"tiny 0.5 s clip, 2 steps, local worker: median {statistics.median(ms):.0f} ms (min {min(ms):.0f})")

        rounds = {}
        for n in range(0, actors + 1):
            if n:
                cluster.add_node(cpus=1)
                wait_actors(client, n)
            if n == 1:
                clips(client, "pwarm", 2, *request)
                pooled, where = clips(client, "pool", jobs, *request)
                assert "local" not in where, where
                ms = [t * 1000 for t in pooled]
                results["dispatch_pool_ms"] = dict(median=statistics.median(ms), min=min(ms), n=len(ms))
                overhead = statistics.median(ms) - results["dispatch_local_ms"]["median"]
                results["dispatch_overhead_ms"] = overhead
                print(f"same on one pool actor: median {statistics.median(ms):.0f} ms (min {min(ms):.0f}): "
                      f"{overhead:+.0f} ms a job")  # fmt: skip
            name = f"set{n}"
            (root / "tiny" / "sets" / f"{name}.toml").write_text(set_text(name))
            ours, actors = [daemon.proc.pid, *daemon.children()], actor_pids()
            cpu0, actor_cpu0, load = cpu_seconds(ours), cpu_seconds(actors), os.getloadavg()[0]
            t0 = time.perf_counter()
            client.send("/sao/load", name)
            loaded = client.wait_for("/sao/loaded", lambda a, name=name: a[0] == name, timeout=1800)
            took = time.perf_counter() - t0
            actor_cores = (cpu_seconds(actors) - actor_cpu0) / took
            cores = (cpu_seconds(ours) - cpu0) / took + actor_cores  # the daemon, its worker and pool, the actors
            final, rows = pool(client)
            rounds[n] = dict(seconds=took, takes_per_s=32 / took, pads=loaded[1], jobs={r[0]: r[4] for r in rows},
                             cores=cores, actor_cores=actor_cores, load_before=load)  # fmt: skip
            label = "local worker" if n == 0 else f"{n} actor{'s' * (n > 1)}"
            print(f"32-take set, {label}: {took:.1f} s, {32 / took:.2f} takes/s; cores busy with it {cores:.2f} "
                  f"(actors {actor_cores:.2f}); load average before {load:.1f}")  # fmt: skip
        for n in rounds:
            rounds[n]["speedup_vs_1_actor"] = rounds[1]["seconds"] / rounds[n]["seconds"] if 1 in rounds else None
        results["throughput"] = rounds
    finally:
        client.close()
        daemon.stop()
        cluster.shutdown()
    return results


def small_model(root: Path, count: int) -> dict:
    from sao_live.engine.tiny import random_t5_base_folder

    encoder = random_t5_base_folder()  # written once, read by the worker and the actor alike
    cluster = LocalCluster(nodes=0)
    daemon, client = start_daemon(root / "small", cluster, "random-small", encoder)
    results: dict = {}
    try:
        request = (2.0, "steps", 8)
        clips(client, "warm", 1, *request)
        local, _ = clips(client, "local", count, *request)
        worker_pid = daemon.worker_pid(client)
        results["local"] = dict(seconds=statistics.median(local), all=local, peak_mb=peak_mb(worker_pid))
        print(f"Small 2 s clip, 8 steps, local worker: {statistics.median(local):.2f} s a clip, "
              f"worker peak {results['local']['peak_mb']:.0f} MB")  # fmt: skip
        cluster.add_node(cpus=1)
        wait_actors(client, 1)
        clips(client, "pwarm", 1, *request)
        pooled, where = clips(client, "pool", count, *request)
        assert "local" not in where, where
        (pid,) = actor_pids()
        results["actor"] = dict(seconds=statistics.median(pooled), all=pooled, peak_mb=peak_mb(pid))
        print(f"same on one pool actor: {statistics.median(pooled):.2f} s a clip, "
              f"actor process peak {results['actor']['peak_mb']:.0f} MB")  # fmt: skip
        results["control_peak_mb"] = daemon.memory_mb()[1]
        (pool_pid,) = [pid for pid in daemon.children() if pid != worker_pid and not _is_resource_tracker(pid)]
        results["pool_process_peak_mb"] = peak_mb(pool_pid)
        print(f"control process peak {results['control_peak_mb']:.0f} MB, pool process (the Ray driver) peak "
              f"{results['pool_process_peak_mb']:.0f} MB")  # fmt: skip
    finally:
        client.close()
        daemon.stop()
        cluster.shutdown()
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20, help="clips per side for the dispatch overhead")
    p.add_argument("--actors", type=int, default=3, help="pre-render the set with up to this many actors")
    p.add_argument("--small-clips", type=int, default=3, help="Small clips per side (0: skip)")
    p.add_argument("--nice", type=int, default=0, help="worker_nice of the local worker and the actors")
    p.add_argument("--only", choices=("tiny", "small"), default=None, help="run parts 1-2 (tiny) or 3 (small) only")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    NICE[0] = args.nice
    from sao_live.engine.tiny import build_tiny_text_encoder

    root = Path(tempfile.mkdtemp(prefix="sao-pool-bench-"))
    results = {}
    if args.only != "small":
        results = dispatch_and_throughput(root, args.jobs, args.actors, build_tiny_text_encoder(root / "t5"))
    if args.small_clips and args.only != "tiny":
        results["small"] = small_model(root, args.small_clips)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
