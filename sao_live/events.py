"""What happened to a request, published once, heard by whoever cares.

`ClipService` publishes an event for each step of a request's life; the OSC replies, the live
stage (and later the web page or remote pools) subscribe. Nothing that publishes knows its
subscribers, so the flow stays one way: trigger -> request -> scheduler -> worker -> clip store
-> events -> player, exporter and replies.

Subscribers are plain callables run on the event loop, in the order they subscribed; they must
return quickly (start a task for anything slow). One that raises is logged and the others
still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .request import Requester

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
# `Requester.host` of a request made on the web page: its events go to the page's WebSocket, not over OSC.
WEB = "web"


@dataclass(frozen=True)
class Clip:
    """A clip in the cache, as its index row holds it."""

    key: str
    family: str
    path: Path
    bytes: int
    sha256: str
    seconds: float
    seed: int
    sample_rate: int
    request: dict
    created: float
    last_used: float
    pinned: bool = False


@dataclass(frozen=True)
class Queued:
    requester: Requester
    position: int  # 0: next


@dataclass(frozen=True)
class Progress:
    requester: Requester
    fraction: float  # of the sampler's steps


@dataclass(frozen=True)
class ClipReady:
    """The clip is in the cache (made now or found there); the export, if any, follows."""

    requester: Requester
    clip: Clip
    cached: bool


@dataclass(frozen=True)
class Done:
    """Delivered: `path` is the exported file, or the cached one without export. `timing`: where a
    generated clip's time went (seconds: queue, text, dit, decode, first_sound when streamed; rtf)."""

    requester: Requester
    clip: Clip
    path: Path
    cached: bool
    made_on: str | None = None  # with a model pool: "local" or the actor that made it ("" when cached)
    timing: dict | None = None


class ClipStream:
    """A clip's audio while the worker decodes it, for a player that starts before it is finished.

    The clip service fills it (`add`, then `finish` or `fail`) and publishes it once per requester
    (`Streaming`); listeners registered with `listen` run on the event loop after every change.
    `audio` holds the raw generated audio (channels, samples) in the order it was decoded; the
    clip file is written from the same samples (a loop's seam is crossfaded in the file only).
    """

    def __init__(self, key: str, seed: int, sample_rate: int, total: int, loop_seconds: float | None):
        self.key, self.seed, self.sample_rate, self.total, self.loop_seconds = (
            key,
            seed,
            sample_rate,
            total,
            loop_seconds,
        )
        self.chunks: list[np.ndarray] = []
        self.decoded = 0  # samples so far
        self.decode_seconds = 0.0  # the worker's decoding time for them
        self.decode_done = 0.0  # the fraction of the decoding's work finished by then
        self.state = "open"  # open, complete (every sample is here), failed
        self.reason = ""
        self.first_sound: float | None = None  # time.monotonic() at which a player started it
        self._listeners: list[Callable[[ClipStream], None]] = []

    def listen(self, listener: Callable[[ClipStream], None]) -> None:
        self._listeners.append(listener)

    def add(self, chunk: np.ndarray, decode_seconds: float, decode_done: float | None = None) -> None:
        """A chunk, the worker's decoding time so far, and the fraction of its work done (default:
        in proportion to the samples, for a decode that makes no audio past the clip's end)."""
        self.chunks.append(chunk)
        self.decoded += chunk.shape[1]
        self.decode_seconds = decode_seconds
        self.decode_done = self.decoded / self.total if decode_done is None else decode_done
        if self.decoded >= self.total:
            self.state = "complete"
        self._tell()

    def fail(self, reason: str) -> None:
        if self.state == "open":
            self.state, self.reason = "failed", reason
            self._tell()

    def _tell(self) -> None:
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:  # one broken listener must not silence the others
                log.exception("stream listener %r failed", listener)


@dataclass(frozen=True)
class Streaming:
    """The clip's audio has started to arrive (a job asked to stream): a player may start it early."""

    requester: Requester
    stream: ClipStream


@dataclass(frozen=True)
class Failed:
    requester: Requester
    code: str
    message: str


@dataclass(frozen=True)
class Cancelled:
    requester: Requester
    message: str


Event = Queued | Progress | Streaming | ClipReady | Done | Failed | Cancelled


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, subscriber: Callable[[Event], None]) -> Callable[[], None]:
        """Adds `subscriber`; returns the call that removes it."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def publish(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:  # one broken subscriber must not silence the others
                log.exception("subscriber %r failed on %s", subscriber, type(event).__name__)
