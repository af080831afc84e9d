"""The model worker's keeper: starts it, waits for its model, pings it, restarts it.

The worker process (worker.py) owns the pipeline; this side runs on the event loop. A worker
that dies or stops answering pings is restarted after a pause that grows with each failure in
a row; its running job is retried once, then reported (ClipService.worker_died).
`/sao/ready 0` goes out while it is down and `/sao/ready 1` when it is back.
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
        self.stopping = False  # set at shutdown: an exit then is expected
        self.failures = 0  # deaths since the worker was last ready
        self.loops: list[asyncio.Task] = []  # restarts, cancelled at shutdown
        self._ready: asyncio.Future | None = None
        self._last_pong = 0.0
        # what the clip service hears (set by ClipService.listen)
        self.on_job_message: Callable[[tuple], None] = _ignore
        self.on_died: Callable[[], None] = _ignore
        self.on_back: Callable[[], None] = _ignore

    @property
    def ready(self) -> bool:
        return self.worker is not None and self.worker.ready

    @property
    def pid(self) -> int:
        return (self.worker.pid if self.worker else None) or 0

    def send(self, msg: tuple) -> None:
        if self.worker is not None:
            self.worker.send(msg)

    def start(self) -> None:
        s = self.settings
        spec = dict(
            model=s.model,
            text_encoder=s.text_encoder,
            device=s.device,
            numerics=s.numerics,
            int8=s.int8,
            nice=s.worker_nice,
            threads=s.worker_threads,
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
            self.failures = 0
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
            return
        self.failures += 1
        log.warning("worker %s exited with code %s; restarting it", worker.pid, code)
        if was_ready:
            self.replies.announce("/sao/ready", 0, self.settings.model)
        self.on_died()
        self.loops.append(self.runtime.spawn(self._restart()))

    async def _restart(self) -> None:
        await asyncio.sleep(min(30.0, 0.25 * 2**self.failures))
        if self.stopping:
            return
        self.start()
        try:
            await self.wait_ready(self.settings.ready_timeout, asyncio.Event())
        except StartupError as err:
            log.error("the restarted worker did not come up: %s", err)
            self.worker.kill()  # its exit restarts it again, after a longer pause
            return
        log.info("worker %d ready again", self.worker.pid)
        self.replies.announce("/sao/ready", 1, self.settings.model)
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
