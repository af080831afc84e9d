"""The model worker's keeper: starts it, waits for its model, pings it, restarts it.

The worker process (worker.py) owns the pipeline; this side runs on the event loop. A worker
that dies or stops answering pings is restarted, and a replacement that dies while it loads
(or does not load within `ready_timeout`) is replaced in turn, after a pause that doubles with
each failure in a row (up to 30 s), for as long as the daemon runs. The dead worker's job is
retried once, then reported (ClipService.worker_died). After DOWN_AFTER failed restarts in a
row the worker is `down`: the clip service answers everyone waiting, and refuses new work,
with `worker_unavailable` until a restart succeeds. `/sao/ready 0` goes out when the worker
dies and `/sao/ready 1` when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..errors import SaoLiveError
from ..request import ModelInfo
from ..runtime import Runtime
from .replies import Replies
from .settings import Settings
from .worker import Worker

log = logging.getLogger(__name__)
DOWN_AFTER = 3  # failed restarts in a row before waiting requesters are told the worker is down
MAX_PAUSE = 30.0  # seconds between restart attempts, at most


class StartupError(SaoLiveError, RuntimeError):
    code = "startup_failed"


def _ignore(*_args) -> None:
    pass


class WorkerSupervisor:
    def __init__(self, settings: Settings, replies: Replies, runtime: Runtime):
        self.settings = settings
        self.replies = replies
        self.runtime = runtime
        self.worker: Worker | None = None
        self.threads = settings.worker_threads  # 0 until the daemon chooses (set_threads): every core
        self.stopping = False  # set at shutdown: an exit then is expected
        self.failed_restarts = 0  # replacements that did not come up since the worker was last ready
        self.loops: list[asyncio.Task] = []  # restarts, cancelled at shutdown
        self._ready: asyncio.Future | None = None
        self._last_pong = 0.0
        # what the clip service hears (set by ClipService.listen)
        self.on_job_message: Callable[[tuple], None] = _ignore
        self.on_died: Callable[[], None] = _ignore
        self.on_down: Callable[[], None] = _ignore
        self.on_back: Callable[[], None] = _ignore
        self.on_ready: Callable[[int], None] = self.announce_ready  # a model pool says it its own way

    @property
    def ready(self) -> bool:
        return self.worker is not None and self.worker.ready

    @property
    def down(self) -> bool:
        """The worker failed to come back DOWN_AFTER times in a row (the restarts go on)."""
        return self.failed_restarts >= DOWN_AFTER

    @property
    def pid(self) -> int:
        return (self.worker.pid if self.worker else None) or 0

    def announce_ready(self, ready: int) -> None:
        self.replies.announce("/sao/ready", ready, self.settings.model)

    def send(self, msg: tuple) -> None:
        if self.worker is not None:
            self.worker.send(msg)

    def set_threads(self, threads: int) -> None:
        """Torch threads for the jobs from now on, and for a worker that replaces this one."""
        self.threads = threads
        self.send(("threads", threads))

    def start(self) -> None:
        s = self.settings
        spec = dict(
            model=s.model,
            text_encoder=s.text_encoder,
            device=s.device,
            numerics=s.numerics,
            int8=s.int8,
            arithmetic=s.arithmetic,
            nice=s.worker_nice,
            threads=self.threads,
            log_level=logging.getLogger().level,
        )
        self._ready = asyncio.get_running_loop().create_future()
        self._last_pong = time.monotonic()
        self.worker = Worker(spec, self._on_event, asyncio.get_running_loop())
        self.worker.start()

    async def wait_ready(self, timeout: float, stop: asyncio.Event) -> ModelInfo:
        """The loaded model's info; StartupError on a failed load, a timeout or `stop`."""
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait({self._ready, stop_wait}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
        if self._ready not in done:
            self._ready.cancel()  # a worker given up on: its exit is nobody's news
            raise StartupError(
                "stopped while the model was loading"
                if stop.is_set()
                else f"the model did not load within {timeout:.0f} s (ready_timeout)"
            )
        return self._ready.result()

    def _on_event(self, worker: Worker, msg: tuple) -> None:
        if worker is not self.worker:
            return  # from a worker that was replaced
        kind = msg[0]
        if kind == "pong":
            self._last_pong = time.monotonic()
        elif kind == "ready":
            worker.ready = True
            self._last_pong = time.monotonic()  # the heartbeat starts now (loading has ready_timeout)
            if not self._ready.done():
                self._ready.set_result(ModelInfo.from_dict(msg[1]))
        elif kind == "fatal":
            if not self._ready.done():
                self._ready.set_exception(StartupError(f"{msg[2]} ({msg[1]})"))
        elif kind == "exit":
            self._exited(worker, msg[1])
        else:
            self.on_job_message(msg)

    def _exited(self, worker: Worker, code) -> None:
        was_ready = worker.ready
        worker.ready = False
        if self.stopping:
            return
        if not self._ready.done():
            self._ready.set_exception(StartupError(f"the worker exited with code {code} while loading the model"))
        if not was_ready:
            return  # it was loading: whoever waits for it (start-up, or the restart loop) hears it
        log.warning("worker %s exited with code %s; restarting it", worker.pid, code)
        self.on_ready(0)
        self.on_died()
        self.loops.append(self.runtime.spawn(self._restart()))

    async def _restart(self) -> None:
        """Starts workers until one is ready, pausing longer after each failure; never gives up."""
        while True:
            await asyncio.sleep(min(MAX_PAUSE, 0.5 * 2**self.failed_restarts))
            if self.stopping:
                return
            self.start()
            try:
                await self.wait_ready(self.settings.ready_timeout, asyncio.Event())
                break
            except StartupError as err:
                self.worker.kill()  # one that did not load in time; a dead one is gone already
                self.failed_restarts += 1
                log.error(
                    "the restarted worker did not come up (%d in a row): %s; trying again in %g s",
                    self.failed_restarts,
                    err,
                    min(MAX_PAUSE, 0.5 * 2**self.failed_restarts),
                )
                if self.failed_restarts == DOWN_AFTER:
                    log.error("the worker is down: waiting requests are answered worker_unavailable")
                    self.on_down()
        log.info("worker %d ready again", self.worker.pid)
        self.failed_restarts = 0
        self.on_ready(1)
        self.on_back()

    async def heartbeat(self) -> None:
        """Pings the worker; one silent for heartbeat_timeout is killed (and so restarted)."""
        s = self.settings
        while True:
            await asyncio.sleep(s.heartbeat_interval)
            worker = self.worker
            if worker is None or not worker.ready or not worker.process.is_alive():
                continue
            if time.monotonic() - self._last_pong > s.heartbeat_timeout:
                log.error("worker %d silent for %.0f s: killing it", worker.pid, s.heartbeat_timeout)
                self._last_pong = time.monotonic()
                worker.kill()
            else:
                worker.send(("ping", time.monotonic()))

    async def stop(self) -> None:
        self.stopping = True
        for task in self.loops:
            task.cancel()
        if self.worker is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.worker.stop, 5.0)
