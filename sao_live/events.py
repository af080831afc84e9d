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

from .request import Requester

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
    """Delivered: `path` is the exported file, or the cached one without export."""

    requester: Requester
    clip: Clip
    path: Path
    cached: bool
    made_on: str | None = None  # with a model pool: "local" or the actor that made it ("" when cached)


@dataclass(frozen=True)
class Failed:
    requester: Requester
    code: str
    message: str


@dataclass(frozen=True)
class Cancelled:
    requester: Requester
    message: str


Event = Queued | Progress | ClipReady | Done | Failed | Cancelled


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
