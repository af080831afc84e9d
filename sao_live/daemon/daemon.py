"""`sao-live serve`: the daemon's lifecycle, in the shape of uvicorn's Server (STYLE §8).

`serve()` reads top to bottom: signal handlers that only set flags, `startup()`, the main
loop, `shutdown()`. Startup: the OSC socket is bound (a port clash fails at once;
`/sao/startup` goes out, and until the model is loaded requests are answered `not_ready`), the
worker process starts loading the model (the slow part), the clip store is opened and
tidied; once the model is loaded, interrupted jobs are resumed and `/sao/ready 1 <model>` is
announced. The main loop only waits for a signal: the work happens in tracked tasks (the job
feeder, the worker heartbeat) and in the OSC handlers. Shutdown goes in reverse: stop taking
requests, tell queued requesters, let the running job finish (`shutdown_timeout`, or at
once on a second signal) or cancel it, stop the worker, announce `/sao/ready 0`, close the
socket and the store. A worker that dies or stops answering is restarted; its job is
retried once, then reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from ..errors import SaoLiveError
from ..live.sets import SetError
from ..live.stage import Stage
from ..request import ModelInfo
from .osc import Context, OscServer
from .preflight import PreflightError, check_folder, port_problem
from .service import ClipService
from .settings import Settings
from .store import ClipStore
from .worker import Worker

log = logging.getLogger(__name__)


class StartupError(SaoLiveError, RuntimeError):
    code = "startup_failed"


class Daemon:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = ClipStore(settings.cache_dir, settings.cache_max_mb * 2**20)
        self.tasks: set[asyncio.Task] = set()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="sao-store")
        self._exports = ThreadPoolExecutor(1, thread_name_prefix="sao-export")
        self.worker: Worker | None = None
        self.server: OscServer | None = None
        self._stopping = False
        self._loops: list[asyncio.Task] = []  # long-lived tasks, cancelled (not awaited) at shutdown
        self._failures = 0  # worker deaths since it was last ready

    # ------------------------------------------------------------ helpers for the parts

    def spawn(self, coro) -> asyncio.Task:
        """Runs `coro` as a tracked task; an exception in it is logged, never lost."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", exc_info=task.exception())

    async def io(self, fn, *args):
        """Runs a store call on the IO thread (one at a time, in order)."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def io_nowait(self, fn, *args) -> None:
        self._io.submit(fn, *args).add_done_callback(self._io_done)

    @staticmethod
    def _io_done(future) -> None:
        if future.exception() is not None:
            log.error("store call failed", exc_info=future.exception())

    async def in_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._exports, partial(fn, *args))

    @property
    def worker_ready(self) -> bool:
        return self.worker is not None and self.worker.ready

    # ------------------------------------------------------------ replies (see OscServer)

    def reply_target(self, host: str, port: int) -> tuple[str, int]:
        return self.server.target(host, port)

    def send(self, target: tuple[str, int], address: str, *args) -> None:
        if self.server is not None and target[0]:  # host "": an internal requester (a set's pre-render)
            self.server.send(target, address, *args)

    def reply(self, ctx: Context, address: str, *args) -> None:
        self.send(self.reply_target(ctx.host, ctx.port), address, *args)

    def announce(self, address: str, *args) -> None:
        if self.server is not None:
            self.server.announce(address, *args)

    # ------------------------------------------------------------ lifecycle

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        self._force_exit = asyncio.Event()  # a second signal: stop waiting for the running job
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except NotImplementedError:  # Windows: a plain handler that hands over to the loop
                signal.signal(sig, lambda s, _frame: loop.call_soon_threadsafe(self._on_signal, s))
        try:
            await self.startup()
            await self._exit.wait()
        except StartupError:
            if not self._exit.is_set():
                raise
            log.info("stopped during startup")
        finally:
            await self.shutdown()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(sig)

    def _on_signal(self, sig) -> None:
        if self._exit.is_set():
            self._force_exit.set()
            log.warning("second %s: not waiting for the running job", signal.Signals(sig).name)
        else:
            log.info("%s: shutting down", signal.Signals(sig).name)
        self._exit.set()

    async def startup(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        self.service = ClipService(self)
        self.live = Stage(self)
        try:  # before the worker: a port clash is reported at once, not after a model load
            _, self.server = await loop.create_datagram_endpoint(
                lambda: OscServer(self, s.reply_port), local_addr=(s.host, s.osc_port)
            )
        except OSError as err:
            raise StartupError(port_problem(s.host, s.osc_port, err)) from None
        self._start_worker()
        with contextlib.suppress(OSError):  # room for bursts (the kernel caps it at net.core.rmem_max)
            self.server.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.announce("/sao/startup")
        log.info("listening for OSC on %s:%d, replies to port %d", s.host, s.osc_port, s.reply_port)
        await self.in_thread(self.live.start_audio)  # PortAudio scans its devices: off the loop
        self.live.start_midi(loop)
        if s.tempo_source == "link":
            await self.live.start_link()
        await self.io(self.store.open)
        await self.io(self.store.recover)
        if s.export_dir is not None:
            try:
                check_folder(s.export_dir, "export_dir")
            except PreflightError as err:
                raise StartupError(str(err)) from None
            await self.io(_remove_export_partials, s.export_dir)
        info = await self._wait_ready(s.ready_timeout)
        self.service.model = info
        self.service.resume(await self.io(self.store.journal))
        self._loops += [self.spawn(self.service.run()), self.spawn(self._heartbeat()), self.spawn(self.live.watch())]
        if s.set_file is not None:
            log.info("pre-rendering the set %s before ready", s.set_file)
            try:
                await self.live.load_set(s.set_file, _log_progress)
            except SetError as err:
                raise StartupError(str(err)) from None
        log.info("ready: %s (window %.2f s)", info.name, info.window_seconds)
        self.announce("/sao/ready", 1, s.model)

    def _start_worker(self) -> None:
        s = self.settings
        spec = dict(model=s.model, text_encoder=s.text_encoder, device=s.device, numerics=s.numerics, int8=s.int8,
                    nice=s.worker_nice, threads=s.worker_threads, log_level=logging.getLogger().level)  # fmt: skip
        self._ready = asyncio.get_running_loop().create_future()
        self._last_pong = time.monotonic()
        self.worker = Worker(spec, self._on_worker_event, asyncio.get_running_loop())
        self.worker.start()

    async def _wait_ready(self, timeout: float) -> ModelInfo:
        exit_wait = asyncio.ensure_future(self._exit.wait())
        try:
            done, _ = await asyncio.wait({self._ready, exit_wait}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exit_wait.cancel()
        if self._ready not in done:
            raise StartupError("stopped while the model was loading" if self._exit.is_set() else
                               f"the model did not load within {timeout:.0f} s (ready_timeout)")  # fmt: skip
        return self._ready.result()

    def _on_worker_event(self, worker: Worker, msg: tuple) -> None:
        if worker is not self.worker:
            return  # from a worker that was replaced
        kind = msg[0]
        if kind == "pong":
            self._last_pong = time.monotonic()
        elif kind == "ready":
            worker.ready = True
            self._failures = 0
            self._last_pong = time.monotonic()  # the heartbeat starts now (loading has ready_timeout)
            if not self._ready.done():
                self._ready.set_result(ModelInfo.from_dict(msg[1]))
        elif kind == "fatal":
            if not self._ready.done():
                self._ready.set_exception(StartupError(f"{msg[2]} ({msg[1]})"))
        elif kind == "exit":
            self._worker_exited(worker, msg[1])
        else:
            self.service.on_worker(msg)

    def _worker_exited(self, worker: Worker, code) -> None:
        was_ready = worker.ready
        worker.ready = False
        if self._exit.is_set() or self._stopping:
            return
        if not self._ready.done():
            self._ready.set_exception(StartupError(f"the worker exited with code {code} while loading the model"))
            return
        self._failures += 1
        log.warning("worker %s exited with code %s; restarting it", worker.pid, code)
        if was_ready:
            self.announce("/sao/ready", 0, self.settings.model)
        self.service.worker_died()
        self._loops.append(self.spawn(self._restart()))  # cancelled at once by a shutdown

    async def _restart(self) -> None:
        await asyncio.sleep(min(30.0, 0.25 * 2**self._failures))
        if self._exit.is_set():
            return
        self._start_worker()
        try:
            await self._wait_ready(self.settings.ready_timeout)
        except StartupError as err:
            log.error("the restarted worker did not come up: %s", err)
            self.worker.kill()  # its exit restarts it again, after a longer pause
            return
        log.info("worker %d ready again", self.worker.pid)
        self.announce("/sao/ready", 1, self.settings.model)
        self.service.wake.set()

    async def _heartbeat(self) -> None:
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

    async def shutdown(self) -> None:
        s = self.settings
        self._stopping = True
        service = getattr(self, "service", None)
        if service is not None:
            service.accepting = False
            for job in service.sched.drain():
                for r in job.requesters:
                    service.error(r, "shutdown", "the daemon stopped before this request was made")
                self.io_nowait(self.store.journal_drop, job.key)
            if service.sched.running is not None:
                await self._finish_running(service, s.shutdown_timeout)
        for task in self._loops:
            task.cancel()
        if self.tasks:  # replies being delivered, clips being indexed and exported
            await asyncio.wait(list(self.tasks), timeout=5.0)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if getattr(self, "live", None) is not None:
            self.live.close()
        if self.worker is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.worker.stop, 5.0)
        self.announce("/sao/ready", 0, s.model)
        if self.server is not None and self.server.transport is not None:
            self.server.transport.close()
        self._exports.shutdown(wait=True)
        await self.io(self.store.close)
        self._io.shutdown(wait=True)
        log.info("stopped")

    async def _finish_running(self, service: ClipService, timeout: float) -> None:
        log.info("waiting up to %g s for the running job to finish (again: stop now)", timeout)
        waits = [asyncio.ensure_future(service.idle.wait()), asyncio.ensure_future(self._force_exit.wait())]
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if service.sched.running is not None:
            log.info("cancelling the running job")
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
    asyncio.run(Daemon(settings).serve())
