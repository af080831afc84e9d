"""Where the daemon's parts run their work: tracked tasks on the loop, one store thread, one
thread for slow file work (exports, PortAudio's device scan).

Every part that needs to start something in the background gets this object, not the daemon:
`spawn` for coroutines (an exception is logged, never lost), `io` for the clip store (one call
at a time, in order: sqlite wants one writer), `in_thread` for everything else that blocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self) -> None:
        self.tasks: set[asyncio.Task] = set()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="sao-store")
        self._threads = ThreadPoolExecutor(1, thread_name_prefix="sao-export")

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        """Runs `coro` as a tracked task; an exception in it is logged, never lost."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", exc_info=task.exception())

    async def io(self, fn: Callable, *args: Any) -> Any:
        """Runs a store call on the store thread (one at a time, in order)."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def io_nowait(self, fn: Callable, *args: Any) -> None:
        """Queues a store call whose result nobody waits for; a failure is logged."""
        self._io.submit(fn, *args).add_done_callback(self._io_done)

    @staticmethod
    def _io_done(future) -> None:
        if future.exception() is not None:
            log.error("store call failed", exc_info=future.exception())

    async def in_thread(self, fn: Callable, *args: Any) -> Any:
        """Runs a blocking call (an export, a device scan) on the file thread."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, partial(fn, *args))

    async def drain(self, timeout: float) -> None:
        """Lets the tracked tasks finish for up to `timeout` seconds, then cancels the rest."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def close_threads(self) -> None:
        """Waits for the file thread's work; the store thread stays for the store's own close."""
        self._threads.shutdown(wait=True)

    def close_io(self) -> None:
        self._io.shutdown(wait=True)
