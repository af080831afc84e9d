"""`sao-live serve`: the daemon's wiring and lifecycle, in the shape of uvicorn's Server.

`__init__` builds every part and hands each only what it uses (docs/architecture.md):
the runtime (tasks and threads), the replies (OSC out), the event bus, the one Tempo, the
clip store, the worker supervisor (and with `--pool` the pool supervisor), the clip service,
the live stage, the controller the OSC handlers act on, and the web page's server
(`sao_live.web`, acting on the same controller). `serve()` reads top to bottom: signal handlers that only set flags,
`startup()`, the main loop, `shutdown()`.

Startup: the OSC socket is bound (a port clash fails at once; `/sao/startup` goes out, and
until the model is loaded requests are answered `not_ready`), the worker starts loading the
model (the slow part), audio and MIDI open, the clip store is opened and
tidied, the web page is served; once the model is loaded, the pool (if any) starts loading it on its
nodes, interrupted jobs are resumed and `/sao/ready 1 <model>` is announced. The main loop only
waits for a signal: the work happens in tracked tasks (the job
feeder, the worker heartbeat, the stage's watch) and in the OSC handlers. Shutdown goes in
reverse: stop taking requests, tell queued requesters, let the running jobs finish
(`shutdown_timeout`, or at once on a second signal) or cancel them, stop the worker (and the pool), announce
`/sao/ready 0`, close the socket and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket

from ..events import EventBus
from ..live.sets import SetError
from ..live.stage import Stage
from ..live.tempo import Tempo
from ..runtime import Runtime
from .controller import Controller
from .guard import AllowList
from .osc import OscServer
from .pool import PoolSupervisor
from .preflight import PreflightError, check_folder, port_problem
from .replies import Replies
from .service import ClipService
from .settings import Settings
from .store import ClipStore
from .worker import threads_beside
from .workers import StartupError, WorkerSupervisor

log = logging.getLogger(__name__)

__all__ = ["Daemon", "StartupError", "run"]


class Daemon:
    def __init__(self, settings: Settings):
        s = settings
        self.settings = settings
        self.should_exit = asyncio.Event()  # set by the first SIGINT/SIGTERM (or by a caller)
        self.force_exit = asyncio.Event()  # a second signal: stop waiting for the running job
        self.runtime = Runtime()
        self.replies = Replies(s.reply_port, s.reply_rate_kb * 1024)
        self.bus = EventBus()
        self.tempo = Tempo(s.bpm)
        self.store = ClipStore(s.cache_dir, s.cache_max_mb * 2**20)
        self.workers = WorkerSupervisor(s, self.replies, self.runtime)
        self.pool = PoolSupervisor(s, self.replies, self.runtime, self.workers) if s.pool else None
        self.service = ClipService(s, self.store, self.workers, self.runtime, self.bus, self.tempo, self.pool)
        self.stage = Stage(
            self.runtime, self.replies, self.tempo, self.service.obtain, self.service.resolve, self.store.clip_path, s
        )
        self.controller = Controller(self.service, self.stage, self.replies, self.workers, self.runtime, s.model)
        self.osc = OscServer(self.controller, self.replies, AllowList.for_settings(s.host, s.allow))
        self.bus.subscribe(self.replies.osc_events)
        self.stage.subscribe(self.bus)
        self.web = None
        if s.web:  # aiohttp loads only when the page is served
            from ..web.server import WebServer

            self.web = WebServer(self.controller, self.bus, self.store, self.runtime, s)
        self._loops: list[asyncio.Task] = []  # long-lived tasks, cancelled (not awaited) at shutdown

    # ------------------------------------------------------------ lifecycle

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except NotImplementedError:  # Windows: a plain handler that hands over to the loop
                signal.signal(sig, lambda s, _frame: loop.call_soon_threadsafe(self._on_signal, s))
        try:
            await self.startup()
            await self.should_exit.wait()
        except StartupError:
            if not self.should_exit.is_set():
                raise
            log.info("stopped during startup")
        finally:
            await self.shutdown()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(sig)

    def _on_signal(self, sig) -> None:
        if self.should_exit.is_set():
            self.force_exit.set()
            log.warning("second %s: not waiting for the running job", signal.Signals(sig).name)
        else:
            log.info("%s: shutting down", signal.Signals(sig).name)
        self.workers.stopping = True  # a worker that exits from now on is not restarted
        if self.pool is not None:
            self.pool.stopping = True
        self.should_exit.set()

    async def choose_worker_threads(self, wait: float = 5.0) -> None:
        """Every core for the worker, one fewer beside a player whose callback is not realtime
        (worker.threads_beside); known after the stream's first callback."""
        player = self.stage.audio.player
        deadline = asyncio.get_running_loop().time() + wait
        while player is not None and player.realtime is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        realtime = None if player is None else bool(player.realtime)
        threads = threads_beside(realtime)
        self.workers.set_threads(threads)
        beside = {None: "no player", True: "a realtime audio callback", False: "an audio callback at normal priority"}
        log.info("worker: %d torch threads (%s)", threads, beside[realtime])

    async def startup(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        try:  # before the worker: a port clash is reported at once, not after a model load
            await loop.create_datagram_endpoint(lambda: self.osc, local_addr=(s.host, s.osc_port))
        except OSError as err:
            raise StartupError(port_problem(s.host, s.osc_port, err)) from None
        self.workers.start()
        with contextlib.suppress(OSError):  # room for bursts (the kernel caps it at net.core.rmem_max)
            self.osc.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.replies.announce("/sao/startup")
        log.info("listening for OSC on %s:%d, replies to port %d", s.host, s.osc_port, s.reply_port)
        log.info("accepting OSC from %s; anything else is dropped unanswered", self.osc.allow.describe())
        await self.stage.start()
        if not s.worker_threads:
            self._loops.append(self.runtime.spawn(self.choose_worker_threads()))
        await self.runtime.io(self.store.open)
        await self.runtime.io(self.store.recover)
        if self.web is not None:  # up while the model loads: the page shows it loading
            try:
                await self.web.start()
            except OSError as err:
                raise StartupError(port_problem(s.host, s.http_port, err, "the web page", "--http-port")) from None
            log.info("web page: %s", self.web.url)
        if s.export_dir is not None:
            try:
                check_folder(s.export_dir, "export_dir")
            except PreflightError as err:
                raise StartupError(str(err)) from None
            await self.runtime.io(_remove_export_partials, s.export_dir)
        info = await self.workers.wait_ready(s.ready_timeout, self.should_exit)
        self.service.model = info
        if self.pool is not None:  # its actors load while the local worker already serves
            self.pool.launch(info)
        self.service.resume(await self.runtime.io(self.store.journal))
        spawn = self.runtime.spawn
        self._loops += [spawn(self.service.run()), spawn(self.workers.heartbeat()), spawn(self.stage.watch())]
        if s.set_file is not None:
            log.info("pre-rendering the set %s before ready", s.set_file)
            await self.load_set(s.set_file, _log_progress)
        log.info("ready: %s (window %.2f s)", info.name, info.window_seconds)
        if self.pool is not None:
            self.pool.announce_ready()  # /sao/ready 1 <model> <pool|local>
        else:
            self.replies.announce("/sao/ready", 1, s.model)

    async def load_set(self, path, progress=None) -> None:
        """Pre-renders and loads a set (StartupError if it cannot be); with a pool, over all its actors."""
        if self.pool is not None:
            await self.pool.settle(self.settings.ready_timeout)
        try:
            await self.stage.pads.load_set(path, progress)
        except SetError as err:
            raise StartupError(str(err)) from None

    async def shutdown(self) -> None:
        s = self.settings
        self.workers.stopping = True
        self.service.refuse_queued("shutdown", "the daemon stopped before this request was made")
        if self.service.sched.running:
            await self._finish_running(s.shutdown_timeout)
        for task in self._loops:
            task.cancel()
        await self.runtime.drain(5.0)  # replies being delivered, clips being indexed and exported
        if self.web is not None:
            await self.web.close()
        self.stage.close()
        await self.workers.stop()
        if self.pool is not None:
            await self.pool.stop()
        self.replies.announce("/sao/ready", 0, s.model, *(("none",) if self.pool is not None else ()))
        if self.osc.transport is not None:
            self.osc.transport.close()
        self.runtime.close_threads()
        await self.runtime.io(self.store.close)
        self.runtime.close_io()
        log.info("stopped")

    async def _finish_running(self, timeout: float) -> None:
        service = self.service
        log.info("waiting up to %g s for the running jobs to finish (again: stop now)", timeout)
        waits = [asyncio.ensure_future(service.idle.wait()), asyncio.ensure_future(self.force_exit.wait())]
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if service.sched.running:
            log.info("cancelling the running jobs")
            service.stop_running("shutdown", "the daemon stopped before this request was made")
            try:
                await asyncio.wait_for(service.idle.wait(), 5.0)
            except asyncio.TimeoutError:
                log.warning("the worker did not stop the job within 5 s")


def _log_progress(ready: int, total: int) -> None:
    log.info("pre-rendered %d/%d takes", ready, total)


def _remove_export_partials(folder) -> int:
    from .export import remove_partials  # numpy and soundfile load off the start-up path

    return remove_partials(folder)


def run(settings: Settings) -> None:
    """Runs the daemon until SIGINT/SIGTERM."""

    async def main() -> None:
        await Daemon(settings).serve()

    asyncio.run(main())
