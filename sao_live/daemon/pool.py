"""A model pool on a Ray cluster, the daemon's side: the pool process, its actors, which one runs a job.

With `--pool ray` (or `ray://HOST:PORT`) the daemon starts, once the local worker has loaded the
model, a pool process (pool_driver.py) that connects to a Ray cluster and loads the model on its
nodes as actors (docs/cluster.md). The clip service asks `free_actor` for a slot (the fastest
free actor: the fewest seconds per step and second of audio, first from a probe clip, then from
its jobs) and `start`s a job there; the pool's messages come back to the service as the worker's
do. A lost actor's jobs are retried elsewhere (`on_slot_died`). While no actor is ready the local
worker serves, and the daemon says so in its log and with `/sao/ready 1 <model> local`
(`/sao/ready 1 <model> pool` once actors are back). A pool process that ends (its cluster out of
reach) is started again after a pause that doubles, up to MAX_PAUSE.

Nothing here imports ray: without the extra, the package and the daemon work as before.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..request import ModelInfo
from ..runtime import Runtime
from .replies import Replies
from .settings import Settings
from .worker import Worker
from .workers import WorkerSupervisor

log = logging.getLogger(__name__)
MAX_PAUSE = 60.0  # seconds between starts of the pool process, at most
SETTLE_TRIES = 3  # failed starts of the pool process before a pre-render gives up waiting for it
KEPT_ENDED = 16  # lost or failed actors still listed by /sao/pool
COST_WEIGHT = 0.3  # how much a job moves an actor's cost (a running mean)
RAY_MISSING = "--pool needs Ray, an optional extra: pip install -e '.[cluster]' (docs/cluster.md)"


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def _ignore(*_args) -> None:
    pass


@dataclass
class PoolActor:
    name: str
    node: str
    node_id: str
    state: str = "loading"  # loading, ready, lost, failed, refused
    device: str = ""
    jobs: int = 0  # clips made
    seconds: float = 0.0  # their wall time, from start to the file written here
    cost: float = 0.0  # seconds per step and second of audio: the probe's, then a running mean of its jobs
    message: str = ""

    @property
    def mean_seconds(self) -> float:
        return self.seconds / self.jobs if self.jobs else 0.0


class PoolSupervisor:
    def __init__(self, settings: Settings, replies: Replies, runtime: Runtime, workers: WorkerSupervisor):
        self.settings = settings
        self.replies = replies
        self.runtime = runtime
        self.workers = workers
        self.process: Worker | None = None
        self.actors: dict[str, PoolActor] = {}
        self.connected = False
        self.problem = ""  # why the pool process last failed to connect
        self.stopping = False
        self.announcing = False  # from the daemon's own /sao/ready 1 on
        self.loops: list[asyncio.Task] = []
        self._model: ModelInfo | None = None
        self._failed_starts = 0
        self._jobs: dict[int, tuple[str, float, float]] = {}  # job id -> (actor, start, steps x seconds)
        self._announced: tuple = ()
        # what the clip service hears (set by ClipService)
        self.on_job_message: Callable[[tuple], None] = _ignore
        self.on_slot_died: Callable[[str, str], None] = _ignore
        self.on_change: Callable[[], None] = _ignore
        workers.on_ready = self._worker_ready

    # ------------------------------------------------------------ slots

    @property
    def serving(self) -> bool:
        """Whether the pool has an actor that takes jobs (else the local worker serves)."""
        return any(a.state == "ready" for a in self.actors.values())

    def free_actor(self, busy: set) -> str | None:
        """The fastest ready actor not in `busy`."""
        free = [a for a in self.actors.values() if a.state == "ready" and a.name not in busy]
        return min(free, key=lambda a: a.cost).name if free else None

    def start(self, name: str, job_id: int, params: dict, path: str) -> None:
        work = params["steps"] * params.get("loop_seconds", params["seconds"])
        self._jobs[job_id] = (name, time.monotonic(), work)
        self.process.send(("job", job_id, params, path, name))

    def cancel(self, job_id: int) -> None:
        if job_id in self._jobs:
            self.process.send(("cancel", job_id))

    # ------------------------------------------------------------ the pool process

    def launch(self, model: ModelInfo) -> None:
        """Starts the pool process for the daemon's loaded `model` (its actors must load the same one)."""
        self._model = model
        s = self.settings
        address = s.pool if s.pool.startswith("ray://") else None  # `ray`: RAY_ADDRESS, a local runtime, or a new one
        actor = dict(
            model=s.pool_model or s.model,
            text_encoder=s.pool_text_encoder or s.text_encoder,
            device=None,  # each node its own: cuda when it has a GPU
            numerics=s.numerics,
            int8=s.int8,
            nice=s.worker_nice,  # as the local worker's
        )
        spec = dict(
            address=address,
            model=actor["model"],
            actor=actor,
            cpus_per_actor=s.pool_cpus_per_actor,
            ready_timeout=s.ready_timeout,
            expect={k: getattr(model, k) for k in ("window_seconds", "sample_rate", "objective")},
            log_level=logging.getLogger().level,
        )
        from .pool_driver import pool_main

        self.connected = False
        self.process = Worker(spec, self._on_event, asyncio.get_running_loop(), target=pool_main, name="pool")
        self.process.start()

    def _on_event(self, process: Worker, msg: tuple) -> None:
        if process is not self.process:
            return
        kind = msg[0]
        if kind == "connected":
            self.connected, self.problem, self._failed_starts = True, "", 0
            log.info("the pool is connected to %s", msg[1])
        elif kind == "fatal":
            self.problem = msg[2]
            log.error("the pool cannot start: %s", msg[2])
        elif kind == "actor":
            self._actor(msg[1])
        elif kind == "exit":
            self._exited(msg[1])
        else:
            if kind in ("done", "error", "cancelled"):
                self._finished(msg)
            self.on_job_message(msg)

    def _actor(self, row: dict) -> None:
        actor = self.actors.get(row["name"])
        if actor is None:
            actor = self.actors[row["name"]] = PoolActor(row["name"], row["node"], row["node_id"])
        was = actor.state
        actor.state, actor.device, actor.message = row["state"], row["device"], row["message"]
        if actor.state == "ready" and was != "ready":
            actor.cost = row["probe_s"] / max(row["probe_work"], 1e-9)
        if was in ("loading", "ready") and actor.state not in ("loading", "ready"):
            self.on_slot_died(actor.name, f"pool actor {actor.name} was {actor.state} ({actor.message})")
        self._changed()

    def _finished(self, msg: tuple) -> None:
        name, started, work = self._jobs.pop(msg[1], (None, 0.0, 0.0))
        actor = self.actors.get(name)
        if actor is None or msg[0] != "done":
            return
        took = time.monotonic() - started
        actor.jobs += 1
        actor.seconds += took
        actor.cost += COST_WEIGHT * (took / max(work, 1e-9) - actor.cost)

    def _exited(self, code) -> None:
        self.connected = False
        for actor in self.actors.values():
            if actor.state in ("loading", "ready"):
                actor.state, actor.message = "lost", "the pool process ended"
                self.on_slot_died(actor.name, f"pool actor {actor.name} was lost (the pool process ended)")
        self._jobs.clear()
        self._changed()
        if self.stopping:
            return
        pause = min(MAX_PAUSE, 2.0**self._failed_starts)
        self._failed_starts += 1
        log.warning("the pool process exited with code %s; starting it again in %.0f s", code, pause)
        self.loops.append(self.runtime.spawn(self._relaunch(pause)))

    async def _relaunch(self, pause: float) -> None:
        await asyncio.sleep(pause)
        if not self.stopping:
            self.launch(self._model)

    async def settle(self, timeout: float) -> None:
        """Waits until the pool has connected and every actor it planned has loaded (or failed), or it
        failed to connect SETTLE_TRIES times, or `timeout`: a pre-render then fans out over every actor
        from its start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.connected and not any(a.state == "loading" for a in self.actors.values()):
                return
            if self._failed_starts >= SETTLE_TRIES:
                log.warning("the pool did not connect (%s): going on with the local worker", self.problem)
                return
            await asyncio.sleep(0.2)
        log.warning("the pool did not settle within %.0f s: going on with the actors ready now", timeout)

    async def stop(self) -> None:
        self.stopping = True
        self.announcing = False
        for task in self.loops:
            task.cancel()
        if self.process is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.process.stop, 10.0)

    # ------------------------------------------------------------ what the daemon says

    def serving_now(self) -> str:
        """pool (an actor is ready), local (the local worker serves) or none."""
        if self.serving:
            return "pool"
        return "local" if self.workers.ready else "none"

    def ready_atoms(self) -> tuple:
        """`/sao/ready`'s atoms with a pool: <ready 0|1> <model> <pool|local|none>."""
        serving = self.serving_now()
        return (int(serving != "none"), self.settings.model, serving)

    def announce_ready(self) -> None:
        """The daemon is ready (startup): from now on each change of who serves is announced."""
        self.announcing = True
        self._announced = self.ready_atoms()
        self.replies.announce("/sao/ready", *self._announced)

    def _worker_ready(self, _ready: int) -> None:
        self._changed()

    def _changed(self) -> None:
        ended = [a for a in self.actors.values() if a.state not in ("loading", "ready")]
        for old in ended[:-KEPT_ENDED]:
            del self.actors[old.name]
        self.on_change()
        atoms = self.ready_atoms()
        if not self.announcing or atoms == self._announced:
            return
        if atoms[2] == "pool" and self._announced[2:] != ("pool",):
            ready = sum(a.state == "ready" for a in self.actors.values())
            log.info("the pool serves: %d actor%s ready", ready, "s" * (ready != 1))
        elif atoms[2] == "local":
            log.warning("no pool actor is ready: the local worker serves")
        elif atoms[2] == "none":
            log.warning("no pool actor is ready and the local worker is down")
        self._announced = atoms
        self.replies.announce("/sao/ready", *atoms)

    def rows(self) -> list[tuple]:
        """(name, node, device, state, jobs, mean seconds per clip) per actor, for `/sao/pool`."""
        busy = {name for name, _, _ in self._jobs.values()}
        return [
            (a.name, a.node, a.device, _shown(a, busy), a.jobs, round(a.mean_seconds, 3)) for a in self.actors.values()
        ]

    def status(self) -> tuple:
        """(serving, actors ready, actors busy), as `/sao/status` ends with a pool."""
        states = [row[3] for row in self.rows()]
        return (self.serving_now(), sum(s in ("idle", "busy") for s in states), states.count("busy"))


def _shown(actor: PoolActor, busy: set) -> str:
    """An actor's state as /sao/pool shows it: loading, idle, busy, lost, failed or refused."""
    if actor.state != "ready":
        return actor.state
    return "busy" if actor.name in busy else "idle"
