"""Replies over OSC: where each sender's answers go, and the events turned into messages.

`Replies` owns the routes that `/sao/hello` registers and the socket's sending side (the
`OscServer` hands it the transport once the socket is bound). `send` goes to one target,
`reply` to the sender of a message, `announce` to the local reply port and every client that
said hello. Every reply is charged to its destination host's budget (`guard.ReplyBudget`):
past `reply_rate_kb` a second, replies to that host are dropped. `osc_events` is the event-bus
subscriber that answers requesters: `/sao/queued`, `/sao/progress`, `/sao/done` (and `/sao/timing`
after a generated clip), `/sao/error`.
"""

from __future__ import annotations

import asyncio
import logging
import struct

from ..events import WEB, Cancelled, Done, Event, Failed, Progress, Queued
from . import oscwire
from .guard import ReplyBudget

log = logging.getLogger(__name__)
MAX_ROUTES = 1024  # /sao/hello registrations kept (the oldest go first)


class Replies:
    def __init__(self, reply_port: int, rate_bytes: float = 2**20):
        self.reply_port = reply_port
        self.transport: asyncio.DatagramTransport | None = None
        self.budget = ReplyBudget(rate_bytes, burst=2 * rate_bytes)  # per destination host
        self._routes: dict[tuple[str, int], int] = {}  # (host, source port) -> reply port, from /sao/hello
        self._host_ports: dict[str, int] = {}  # host -> reply port, from its latest /sao/hello

    def target(self, host: str, port: int) -> tuple[str, int]:
        """Where replies to a sender go: its /sao/hello port, else its host's, else the reply port."""
        reply = self._routes.get((host, port))
        if reply is None:
            reply = self._host_ports.get(host, self.reply_port)
        return host, reply

    def register(self, host: str, port: int, reply_port: int) -> None:
        """`/sao/hello <port>`: for this socket, and (unless 0: its own port) for its whole host."""
        for table in (self._routes, self._host_ports):
            if len(table) >= MAX_ROUTES:
                table.pop(next(iter(table)))  # the oldest
        self._routes[(host, port)] = reply_port or port
        if reply_port:
            self._host_ports[host] = reply_port

    def send(self, target: tuple[str, int], address: str, *args) -> None:
        if not target[0] or target[0] == WEB:
            return  # the daemon's own request (a set's pre-render, host "") or the web page's: no OSC answer
        if self.transport is None or self.transport.is_closing():
            return
        try:
            data = oscwire.encode(address, *args)
        except (TypeError, ValueError, struct.error) as err:  # a value OSC cannot carry: a bug, not the client's
            log.error("cannot encode %s %r: %s", address, args, err)
            return
        if not self.budget.take(target[0], len(data)):
            if self.budget.dropped % 1000 == 1:
                log.warning("replies to %s over reply_rate_kb: dropped (%d so far)", target[0], self.budget.dropped)
            return
        try:
            self.transport.sendto(data, target)
        except OSError as err:
            log.debug("reply %s to %s failed: %s", address, target, err)

    def reply(self, host: str, port: int, address: str, *args) -> None:
        """To the sender at (host, source port), wherever it asked for its replies."""
        self.send(self.target(host, port), address, *args)

    def announce(self, address: str, *args) -> None:
        """To the local reply port and every client that said hello."""
        targets = {("127.0.0.1", self.reply_port), *self._host_ports.items()}
        targets.update((host, port) for (host, _), port in self._routes.items())
        for target in targets:
            self.send(target, address, *args)

    def osc_events(self, event: Event) -> None:
        """The bus subscriber that answers each requester (its host and port are already its target)."""
        r = event.requester
        to = (r.host, r.port)
        if isinstance(event, Queued):
            self.send(to, "/sao/queued", r.id, event.position)
        elif isinstance(event, Progress):
            self.send(to, "/sao/progress", r.id, event.fraction)
        elif isinstance(event, Done):
            clip = event.clip
            where = () if event.made_on is None else (event.made_on,)  # said with a model pool only
            self.send(to, "/sao/done", r.id, str(event.path), float(clip.seconds), int(clip.seed), int(event.cached),
                      *where)  # fmt: skip
            if event.timing:  # a generated clip: where its time went
                t = event.timing
                timing = (t["queue"], t["text"], t["dit"], t["decode"], t["first_sound"], t["rtf"])
                self.send(to, "/sao/timing", r.id, *(round(float(v), 4) for v in timing))
        elif isinstance(event, Failed):
            self.send(to, "/sao/error", r.id, event.code, event.message[:300])
        elif isinstance(event, Cancelled):
            self.send(to, "/sao/error", r.id, "cancelled", event.message[:300])
