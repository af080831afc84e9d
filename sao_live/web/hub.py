"""The page's live updates: the event bus and the daemon's state, as JSON over each WebSocket.

Messages (each a JSON object with `type`):

- `hello`: on connect, everything the page shows besides the library (status, queue, pads, sets);
- `queue`: the requests waiting or running, in the order they run (after any change);
- `progress`: one request's fraction of its steps;
- `clip`: a new clip in the cache (a library row, waveform included);
- `done`, `error`, `cancelled`: a request's end (`error` carries the `/sao/error` code and sentence);
- `playing`: a pad or clip the page started on the daemon's player;
- `status`, `pads`: the status line and the pad grid, when they change (looked at every second).

Each client has a bounded outbox: a page too slow to keep up is disconnected, and reconnects to a
fresh `hello`, rather than the daemon buffering without end.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import weakref
from collections.abc import Awaitable, Callable

from aiohttp import WSCloseCode, web

from ..events import WEB, Cancelled, Clip, ClipReady, Done, Event, Failed, Progress, Queued
from ..request import Requester

log = logging.getLogger(__name__)
OUTBOX = 2000  # messages waiting for one page before it is disconnected
TICK = 1.0  # seconds between looks at the status and the pads


def clip_row(clip: Clip, peaks: bytes | None) -> dict:
    """One row of the library."""
    r = clip.request or {}
    return dict(
        key=clip.key, prompt=r.get("prompt", ""), negative=r.get("negative", ""), seconds=round(clip.seconds, 3),
        seed=clip.seed, bars=r.get("bars"), bpm=r.get("bpm"), steps=r.get("steps"), created=clip.created,
        path=str(clip.path), peaks=base64.b64encode(peaks).decode() if peaks else "",
    )  # fmt: skip


def _source(r: Requester) -> str:
    return "web" if r.host == WEB else "osc" if r.host else "daemon"


class Hub:
    def __init__(self, controller, peaks: Callable[[Clip], Awaitable[bytes | None]], spawn):
        self.controller = controller
        self.peaks = peaks  # a clip's peaks, made on a thread
        self.spawn = spawn  # the runtime's tracked tasks
        self.clients: set[web.WebSocketResponse] = set()
        self._outboxes: dict[web.WebSocketResponse, asyncio.Queue] = {}
        self._numbers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Requester -> job number
        self._by_number: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._next = 1
        self._queue_pending = False
        self._last: dict[str, str] = {}  # what the last `status` and `pads` said

    # ------------------------------------------------------------ jobs

    def number(self, r: Requester) -> int:
        n = self._numbers.get(r)
        if n is None:
            n = self._numbers[r] = self._next
            self._by_number[n] = r
            self._next += 1
        return n

    def requester(self, number: int) -> Requester | None:
        return self._by_number.get(number)

    def queue(self) -> list[dict]:
        return [
            dict(
                job=self.number(r),
                id=str(r.id),
                source=_source(r),
                prompt=job.request.prompt,
                seconds=job.request.seconds,
                position=position,
                running=running,
                progress=job.progress if running else 0.0,
            )  # fmt: skip
            for job, r, position, running in self.controller.queue()
        ]

    # ------------------------------------------------------------ the bus

    def on_event(self, event: Event) -> None:
        """The bus subscriber (on the loop, quick): each event as a message, the queue after a change."""
        r = event.requester
        base = dict(job=self.number(r), id=str(r.id), source=_source(r))
        if isinstance(event, Progress):
            self.send_all(dict(type="progress", fraction=round(event.fraction, 3), **base))
            return
        if isinstance(event, ClipReady):
            if not event.cached and self.clients:
                self.spawn(self._new_clip(event.clip))
            return
        if isinstance(event, Done):
            self.send_all(dict(type="done", key=event.clip.key, path=str(event.path), cached=event.cached, **base))
        elif isinstance(event, Failed):
            self.send_all(dict(type="error", code=event.code, message=event.message[:300], **base))
        elif isinstance(event, Cancelled):
            self.send_all(dict(type="cancelled", code="cancelled", message=event.message[:300], **base))
        elif not isinstance(event, Queued):
            return
        self._queue_changed()

    def _queue_changed(self) -> None:
        """One `queue` message per loop turn, however many events changed it (after they all did)."""
        if self._queue_pending or not self.clients:
            return
        self._queue_pending = True

        def send() -> None:
            self._queue_pending = False
            self.send_all(dict(type="queue", jobs=self.queue()))

        asyncio.get_running_loop().call_soon(send)

    async def _new_clip(self, clip: Clip) -> None:
        self.send_all(dict(type="clip", clip=clip_row(clip, await self.peaks(clip))))

    # ------------------------------------------------------------ clients

    def send_all(self, message: dict) -> None:
        if not self.clients:
            return
        text = json.dumps(message)
        for ws in list(self.clients):
            outbox = self._outboxes[ws]
            if outbox.full():
                log.warning("a web page fell %d messages behind: disconnected (it reconnects)", OUTBOX)
                self.clients.discard(ws)
                self.spawn(ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow"))
                continue
            outbox.put_nowait(text)

    async def snapshot(self) -> dict:
        status = await self.controller.status_fields()
        pads = self.controller.pad_grid()
        self._last = dict(status=json.dumps(status), pads=json.dumps(pads))
        sets = self.controller.set_names()
        return dict(type="hello", status=status, queue=self.queue(), pads=pads, sets=sets)

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        """One page's WebSocket: a `hello`, then every message until it closes. It only listens."""
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=4096)
        await ws.prepare(request)
        outbox: asyncio.Queue = asyncio.Queue(OUTBOX)
        outbox.put_nowait(json.dumps(await self.snapshot()))
        self._outboxes[ws] = outbox
        self.clients.add(ws)
        writer = asyncio.ensure_future(self._write(ws, outbox))
        try:
            async for _ in ws:  # the page sends nothing; reading notices the close
                pass
        finally:
            self.clients.discard(ws)
            self._outboxes.pop(ws, None)
            writer.cancel()
        return ws

    @staticmethod
    async def _write(ws: web.WebSocketResponse, outbox: asyncio.Queue) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                await ws.send_str(await outbox.get())

    async def tick(self) -> None:
        """Every second, while a page is open: the status and the pad grid, sent when they changed."""
        while True:
            await asyncio.sleep(TICK)
            if not self.clients:
                continue
            try:
                parts = dict(status=await self.controller.status_fields(), pads=self.controller.pad_grid())
            except Exception:  # noqa: BLE001 - a bug here must not end the updates
                log.exception("web status")
                continue
            for kind, value in parts.items():
                text = json.dumps(value)
                if self._last.get(kind) != text:
                    self._last[kind] = text
                    self.send_all({"type": kind, kind: value})

    async def close(self) -> None:
        for ws in list(self.clients):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"the daemon is stopping")
        self.clients.clear()
