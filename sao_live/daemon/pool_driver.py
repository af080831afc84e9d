"""The pool process: the daemon's Ray driver, beside the model worker (docs/cluster.md).

It speaks the worker's pipe protocol (worker.py), so the clip service runs jobs on the pool's
actors as it runs them on the worker. Control -> pool: `("job", job_id, params, path, actor)`,
`("cancel", job_id)`, `("stop",)`. Pool -> control: `("connected", address)`, `("fatal", code,
message)` (no cluster: the process then ends), `("actor", row)` whenever an actor changes state,
and for jobs `("progress", job_id, done, total)`, `("done", job_id, info)` once the clip file is
written here (atomically, as the worker writes it), `("error", job_id, code, message)`,
`("cancelled", job_id)`. A job whose actor is lost is reported by the actor's `lost` row.

Ray lives in this process only: `ray.init` takes SIGTERM over, and a driver that loses its
cluster's head for long ends itself; the control process (OSC, the player) only sees this
process end, and starts another.

A watcher thread looks at the cluster's nodes every WATCH_INTERVAL seconds: a node that joins
gets actors (one per GPU, else one per `cpus_per_actor` cores), an actor whose node left is
lost, and one that died on a live node is replaced (after a pause that grows while a node keeps
failing). Each job runs on a thread that long-polls its actor's progress.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .pool_actor import ModelActor
from .worker import write_clip

log = logging.getLogger(__name__)
WATCH_INTERVAL = 1.0  # seconds between looks at the cluster's nodes
LOST_AFTER = 30.0  # seconds the cluster may stay unreachable before this process ends (and is restarted)
REPLACE_AFTER = 5.0  # seconds before a lost actor is replaced on its node (if the node is still there)
MAX_PAUSE = 300.0  # seconds between attempts on a node whose actors keep failing, at most
KEPT_ENDED = 64
MODEL_KEYS = ("window_seconds", "sample_rate", "objective")  # must match the daemon's model


@dataclass
class Actor:
    name: str
    node_id: str
    node: str
    handle: object
    state: str = "loading"  # loading, ready, lost, failed, refused
    device: str = ""
    probe_s: float = 0.0
    probe_work: float = 0.0
    message: str = ""
    jobs: set = field(default_factory=set)

    def row(self) -> dict:
        keys = ("name", "node_id", "node", "state", "device", "probe_s", "probe_work", "message")
        return {k: getattr(self, k) for k in keys}


class RayPool:
    def __init__(self, spec: dict, send):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        self.affinity = NodeAffinitySchedulingStrategy
        self.spec = spec
        self.send = send
        # The daemon's own sao_live travels with the job: every actor runs the code the daemon runs (a node
        # needs Python with Ray and sao-live's dependencies, not the same sao-live install).
        code = dict(py_modules=[str(Path(__file__).resolve().parents[1])], excludes=["__pycache__"])
        ray.init(address=spec["address"], namespace="sao-live", runtime_env=code, log_to_driver=False,
                 logging_level=logging.WARNING)  # fmt: skip
        self.remote = ray.remote(ModelActor)
        self.actors: dict[str, Actor] = {}
        self.closing = False
        self.lock = threading.Lock()
        self._ended: dict[str, dict] = {}  # the rows of the last KEPT_ENDED actors that ended
        self._counts: dict[str, int] = {}  # node id -> actors made there (names are never reused)
        self._failures: dict[str, int] = {}  # node id -> failed actors in a row
        self._retry_at: dict[str, float] = {}

    # ------------------------------------------------------------ nodes and actors

    def watch(self) -> None:
        """Keeps the actors in step with the cluster's nodes; ends the process if the cluster stays unreachable."""
        last_seen = time.monotonic()
        while not self.closing:
            try:
                self.scan()
                last_seen = time.monotonic()
            except Exception as err:  # the cluster is out of reach (a client's ConnectionError, a dead head)
                log.warning("cannot see the cluster: %s: %s", type(err).__name__, err)
                if time.monotonic() - last_seen > LOST_AFTER:
                    log.error("the cluster has been out of reach for %.0f s: the pool process ends", LOST_AFTER)
                    os._exit(3)
            time.sleep(WATCH_INTERVAL)

    def scan(self) -> None:
        nodes = {n["NodeID"]: n for n in self.ray.nodes() if n["Alive"]}
        with self.lock:
            for actor in list(self.actors.values()):
                if actor.node_id not in nodes and actor.state in ("loading", "ready"):
                    self._lose(actor, "its node left the cluster")
            for node_id, node in nodes.items():
                slots = self._plan(node["Resources"])
                live = [a for a in self.actors.values() if a.node_id == node_id and a.state in ("loading", "ready")]
                if len(slots) > len(live) and time.monotonic() >= self._retry_at.get(node_id, 0.0):
                    for slot in slots[len(live) :]:
                        self._create(node, slot)

    def _plan(self, resources: dict) -> list[dict]:
        """The actors a node holds: one per GPU, else one per `cpus_per_actor` cores (0: one for all of them)."""
        gpus = int(resources.get("GPU", 0))
        if gpus:
            return [dict(num_gpus=1, num_cpus=0, threads=0)] * gpus
        cpus = int(resources.get("CPU", 0))
        per = self.spec["cpus_per_actor"] or cpus
        if per < 1 or cpus < per:
            return []
        return [dict(num_gpus=0, num_cpus=per, threads=per)] * (cpus // per)

    def _create(self, node: dict, slot: dict) -> None:
        node_id = node["NodeID"]
        self._counts[node_id] = count = self._counts.get(node_id, 0) + 1
        label = f"{node.get('NodeManagerAddress', '?')}/{node_id[:8]}"
        handle = self.remote.options(
            num_cpus=slot["num_cpus"],
            num_gpus=slot["num_gpus"],
            max_concurrency=4,  # generate, progress, cancel side by side
            max_restarts=0,  # a dead actor is replaced by the watcher, with a fresh name
            scheduling_strategy=self.affinity(node_id, soft=False),
        ).remote(dict(self.spec["actor"], threads=slot["threads"]))
        actor = Actor(f"{label}#{count}", node_id, label, handle)
        self.actors[actor.name] = actor
        self.send(("actor", actor.row()))
        threading.Thread(target=self._load, args=(actor,), name=f"load-{actor.name}", daemon=True).start()

    def _load(self, actor: Actor) -> None:
        try:
            answer = self.ray.get(actor.handle.load.remote(), timeout=self.spec["ready_timeout"])
        except Exception as err:
            answer = ("fatal", "actor_failed", f"{type(err).__name__}: {_first_line(err)}")
        with self.lock:
            if actor.state != "loading":
                return  # lost while it loaded
            if answer[0] == "fatal":
                self._fail(actor, "failed", f"{answer[2]} ({answer[1]})")
                return
            info = answer[1]
            expected = self.spec["expect"]
            wrong = [k for k in MODEL_KEYS if info["model"][k] != expected[k]]
            if wrong:
                found = ", ".join(f"{k} {info['model'][k]} (the daemon's: {expected[k]})" for k in wrong)
                self._fail(actor, "refused", f"another model than the daemon's: {found}")
                return
            actor.state, actor.device = "ready", info["device"]
            actor.probe_s, actor.probe_work = info["probe_s"], info["probe_work"]
            self._failures.pop(actor.node_id, None)
            log.info("actor %s ready on %s (%s, %d threads), probe %.2f s", actor.name, info["host"],
                     actor.device, info["threads"], actor.probe_s)  # fmt: skip
            self.send(("actor", actor.row()))

    def _fail(self, actor: Actor, state: str, message: str) -> None:
        """An actor that could not serve: its node is tried again after a pause that doubles (lock held)."""
        failures = self._failures[actor.node_id] = self._failures.get(actor.node_id, 0) + 1
        pause = min(MAX_PAUSE, 5.0 * 2 ** (failures - 1))
        self._retry_at[actor.node_id] = time.monotonic() + pause
        log.error("actor %s %s: %s; trying its node again in %.0f s", actor.name, state, message, pause)
        self._end(actor, state, message)

    def _lose(self, actor: Actor, why: str) -> None:
        """An actor that died or whose node left: its jobs are retried by the daemon (lock held)."""
        log.warning("actor %s lost: %s", actor.name, why)
        self._retry_at[actor.node_id] = time.monotonic() + REPLACE_AFTER  # a node that is going down goes first
        self._end(actor, "lost", why)

    def _end(self, actor: Actor, state: str, message: str) -> None:
        actor.state, actor.message = state, message
        with contextlib.suppress(Exception):
            self.ray.kill(actor.handle, no_restart=True)  # one only unreachable for a while never comes back
        self.send(("actor", actor.row()))
        del self.actors[actor.name]
        self._ended[actor.name] = actor.row()  # for a job the daemon sends it before it hears of the end
        while len(self._ended) > KEPT_ENDED:
            self._ended.pop(next(iter(self._ended)))

    # ------------------------------------------------------------ jobs

    def run(self, job_id: int, params: dict, path: str, name: str) -> None:
        with self.lock:
            actor = self.actors.get(name)
            if actor is None or actor.state != "ready":  # it ended before the daemon heard of it
                row = actor.row() if actor else self._ended.get(name)
                self.send(("actor", row) if row else ("error", job_id, "internal", f"no actor {name}"))
                return  # its end, sent again, has the daemon retry the job elsewhere
            actor.jobs.add(job_id)
        thread = threading.Thread(target=self._run, args=(actor, job_id, params, path), name=f"job-{job_id}")
        thread.daemon = True
        thread.start()

    def _run(self, actor: Actor, job_id: int, params: dict, path: str) -> None:
        ray = self.ray
        try:
            result = actor.handle.generate.remote(job_id, params)
            seen = 0
            while True:
                done, total, over = ray.get(actor.handle.progress.remote(job_id, seen))
                if done > seen:
                    self.send(("progress", job_id, done, total))
                    seen = done
                if over:
                    break
            answer = ray.get(result)
        except Exception as err:  # the actor, its node or the cluster is gone
            with self.lock:
                if actor.state in ("loading", "ready"):
                    self._lose(actor, f"{type(err).__name__}: {_first_line(err)}")
            return
        finally:
            actor.jobs.discard(job_id)
        if answer[0] == "done":
            _, audio, sample_rate, seed, timings = answer
            try:
                info = write_clip(path, audio, sample_rate, seed)
            except Exception as err:  # CacheWriteError: the disk is full
                self.send(("error", job_id, getattr(err, "code", "cache_failed"), str(err)))
                return
            self.send(("done", job_id, dict(info, made_on=actor.name, timing=timings)))
        elif answer[0] == "error":
            self.send(("error", job_id, answer[1], answer[2]))
        else:
            self.send(("cancelled", job_id))

    def cancel(self, job_id: int) -> None:
        with self.lock:
            actor = next((a for a in self.actors.values() if job_id in a.jobs), None)
        if actor is not None:
            with contextlib.suppress(Exception):
                actor.handle.cancel.remote(job_id)

    def close(self) -> None:
        self.closing = True
        with contextlib.suppress(Exception):
            self.ray.shutdown()  # its actors end with this driver


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [""])[0][:300]


def pool_main(conn, spec: dict) -> None:
    """The pool process: connect to the cluster, then run jobs on its actors until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when the pool stops (as the worker)
    logging.basicConfig(level=spec.get("log_level", logging.INFO), format="%(asctime)s %(name)s[pool]: %(message)s")
    lock = threading.Lock()

    def send(msg) -> None:
        with lock:  # job threads, the watcher and the loader threads all report
            conn.send(msg)

    os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"  # a ray call after the cluster is gone must not start a new one
    where = spec["address"] or os.environ.get("RAY_ADDRESS") or "the local Ray runtime (joined, or started)"
    try:
        pool = RayPool(spec, send)
        pool.scan()  # before `connected`: the daemon then knows every actor of the first plan (render waits)
    except ImportError:
        send(("fatal", "no_ray", "the model pool needs Ray: pip install -e '.[cluster]' (docs/cluster.md)"))
        return
    except Exception as err:
        log.error("cannot reach the Ray cluster:\n%s", traceback.format_exc())
        send(("fatal", "pool_unreachable", f"cannot reach {where}: {type(err).__name__}: {_first_line(err)}"))
        return
    send(("connected", where))
    threading.Thread(target=pool.watch, name="pool-watch", daemon=True).start()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break  # the daemon is gone: nobody to work for
        if msg[0] == "job":
            pool.run(*msg[1:])
        elif msg[0] == "cancel":
            pool.cancel(msg[1])
        elif msg[0] == "stop":
            break
    pool.close()
