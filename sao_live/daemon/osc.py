"""The `/sao/...` dispatcher: one table from address to handler.

`OscServer` is an asyncio datagram protocol that parses each datagram itself (so garbage
gets an `/sao/error` instead of silence), handles every message of a bundle at once
whatever its timetag, and calls the handler registered for the address. A handler parses
the atoms (ints and floats interchangeable, prompts split over several atoms, TouchOSC's
trailing 1/0), hands a validated value to the controller, and returns; it never waits. Any
`SaoLiveError` it raises becomes `/sao/error <id> <code> <message>` to the sender.
The table of what each address takes and answers is `protocol.PROTOCOL`.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import SaoLiveError
from ..live.sets import with_bpm
from ..ranges import RANGES, in_range
from ..request import RequestError, is_number, parse_osc
from . import oscwire, protocol
from .controller import Context, Controller
from .guard import AllowList, RateLimitedLog
from .replies import Replies

log = logging.getLogger(__name__)
MAX_MESSAGES = 64  # handled per datagram (a bundle's others are refused): bounds what one datagram causes
MAX_ADDRESS = 64  # characters; every address of the protocol is far shorter
MAX_DIGITS = 3  # in a pad number
INFO_PAGE = 4  # protocol rows per /sao/info reply


def _norm_id(value) -> int | str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Pd sends every number as a float
    if (is_number(value) and isinstance(value, int) and -(2**31) <= value < 2**31) or (
        isinstance(value, str) and 0 < len(value) <= 64
    ):
        return value
    raise RequestError("bad_id", f"the id must be an int32 or a string of 1-64 characters, got {str(value)[:80]!r}")


def _take_id(ctx: Context, atoms: tuple) -> tuple:
    if not atoms:
        raise RequestError("bad_args", f"{ctx.address} needs an <id> first, got no arguments")
    ctx.id = _norm_id(atoms[0])
    return atoms[1:]


# ---------------------------------------------------------------- handlers


def _request(c: Controller, ctx: Context, atoms: tuple, trigger: bool) -> None:
    rest = _take_id(ctx, atoms)
    request, flag = parse_osc(list(rest), c.bpm)
    if flag == 0:
        return  # TouchOSC's release of the button that sent the press
    c.submit(ctx, request, trigger)


def gen(c: Controller, ctx: Context, atoms: tuple) -> None:
    _request(c, ctx, atoms, trigger=False)


def trigger(c: Controller, ctx: Context, atoms: tuple) -> None:
    _request(c, ctx, atoms, trigger=True)


def cancel(c: Controller, ctx: Context, atoms: tuple) -> None:
    if len(atoms) != 1:
        raise RequestError("bad_args", f"/sao/cancel takes one <id> or all, got {list(atoms)!r}"[:300])
    if atoms[0] == "all":
        ctx.id = "all"
        c.cancel(ctx, None)
    else:
        ctx.id = _norm_id(atoms[0])
        c.cancel(ctx, ctx.id)


def status(c: Controller, ctx: Context, atoms: tuple) -> None:
    c.status(ctx)


def pool(c: Controller, ctx: Context, atoms: tuple) -> None:
    c.pool(ctx)


def ping(c: Controller, ctx: Context, atoms: tuple) -> None:
    c.reply(ctx, "/sao/pong", *atoms)


def _whole(value, lo: int, hi: int) -> int | None:
    """`value` as an int if it is a whole number in [lo, hi] (Pd sends every number as a float), else None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        return None
    return value


def hello(c: Controller, ctx: Context, atoms: tuple) -> None:
    port = _whole(atoms[0], 0, 65535) if len(atoms) == 1 else None
    if port is None:
        raise RequestError("bad_port", f"/sao/hello takes one port in [0, 65535], got {list(atoms)!r}"[:300])
    c.hello(ctx, port)


def set_param(c: Controller, ctx: Context, atoms: tuple) -> None:
    name = ctx.address[len("/sao/set/") :]
    if len(atoms) != 1:
        raise RequestError("bad_value", f"/sao/set/{name} takes one value, got {list(atoms)!r}"[:300])
    c.set_param(name, atoms[0])
    get_param(c, ctx, ())


def get_param(c: Controller, ctx: Context, atoms: tuple) -> None:
    name = ctx.address[len("/sao/get/") :]
    c.reply(ctx, "/sao/value", name, c.get_param(name))


def info(c: Controller, ctx: Context, atoms: tuple) -> None:
    pages = -(-len(protocol.PROTOCOL) // INFO_PAGE)
    page = _whole(atoms[0], 0, pages - 1) if len(atoms) == 1 else 0 if not atoms else None
    if page is None:
        raise RequestError("bad_args", f"/sao/info takes [page] in [0, {pages - 1}], got {list(atoms)!r}"[:300])
    for row in protocol.PROTOCOL[page * INFO_PAGE : (page + 1) * INFO_PAGE]:
        c.reply(ctx, "/sao/info", row.address, row.arguments, row.replies, row.errors)
    c.reply(ctx, "/sao/info/end", protocol.VERSION, len(protocol.PROTOCOL), page, pages)


def _gain(value, name: str = "gain", code: str = "bad_gain") -> float:
    if not in_range(name, value):
        lo, hi = RANGES[name]
        raise RequestError(code, f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _target(value):
    """`pad<n>` stays a string; anything else is a request id."""
    if isinstance(value, str) and value.startswith("pad") and value[3:].isdigit() and len(value) <= 3 + MAX_DIGITS:
        return value
    return _norm_id(value)


def play(c: Controller, ctx: Context, atoms: tuple) -> None:
    if not 1 <= len(atoms) <= 2:
        raise RequestError("bad_args", f"/sao/play takes <id|pad<n>> [gain], got {list(atoms)!r}"[:300])
    ctx.id = _target(atoms[0])
    gain = _gain(atoms[1]) if len(atoms) == 2 else 1.0
    c.play(
        ctx.id, gain, lambda voice, take, nearest: c.reply(ctx, "/sao/playing", ctx.id, voice, take.seed, int(nearest))
    )


def stop(c: Controller, ctx: Context, atoms: tuple) -> None:
    if len(atoms) != 1:
        raise RequestError("bad_args", f"/sao/stop takes one <id>, pad<n> or all, got {list(atoms)!r}"[:300])
    ctx.id = "all" if atoms[0] == "all" else _target(atoms[0])
    c.reply(ctx, "/sao/stopped", ctx.id, c.stop(ctx.id))


def pad(c: Controller, ctx: Context, atoms: tuple) -> None:
    number = ctx.address[len("/sao/pad/") :]
    if not number.isdigit() or len(number) > MAX_DIGITS:
        raise RequestError("unknown_pad", f"/sao/pad/<n> takes a pad number, got {number[:20]!r}")
    ctx.id = f"pad{number}"
    if len(atoms) > 2:
        raise RequestError("bad_args", f"/sao/pad/<n> takes [velocity] [1|0], got {list(atoms)!r}"[:300])
    velocity = atoms[0] if atoms else 1.0
    if len(atoms) == 2 and atoms[1] == 0:
        velocity = 0  # TouchOSC's release
    velocity = _gain(velocity, "velocity", "bad_velocity")
    if velocity == 0:
        c.release(int(number))
        return
    voice, take, nearest = c.hit(int(number), velocity if velocity <= 1 else velocity / 127.0)
    c.reply(ctx, "/sao/playing", ctx.id, voice, take.seed, int(nearest))


def loop(c: Controller, ctx: Context, atoms: tuple) -> None:
    rest = list(_take_id(ctx, atoms))
    words = []
    while rest and isinstance(rest[0], str):
        words.append(rest.pop(0))
    if not rest:
        raise RequestError("bad_bars", f"/sao/loop needs <prompt...> <bars> [bpm], got {list(atoms)!r}"[:300])
    bars = rest.pop(0)
    bpm = rest.pop(0) if rest and is_number(rest[0]) and not (len(rest) == 1 and rest[0] in (0, 1)) else None
    bpm = c.bpm if bpm is None else bpm
    if not in_range("bpm", bpm):
        lo, hi = RANGES["bpm"]
        raise RequestError("bad_bpm", f"bpm must be a number in [{lo:g}, {hi:g}], got {bpm!r}")
    prompt = with_bpm(" ".join(words), bpm) if "".join(words).strip() else ""
    request, flag = parse_osc([prompt, 0, "bars", bars, "bpm", bpm, *rest], c.bpm)
    if flag == 0:
        return
    c.need_audio()
    c.submit(ctx, request, trigger=True, play=2)


def bank(c: Controller, ctx: Context, atoms: tuple) -> None:
    if len(atoms) != 1:
        raise RequestError("bad_value", f"/sao/bank takes one bank number, got {list(atoms)!r}"[:300])
    c.reply(ctx, "/sao/value", "bank", c.set_bank(atoms[0]))


def load(c: Controller, ctx: Context, atoms: tuple) -> None:
    if len(atoms) != 1 or not isinstance(atoms[0], str):
        raise RequestError(
            "bad_args", f"/sao/load takes one set name (a file in the sets folder), got {list(atoms)!r}"[:300]
        )
    ctx.id = atoms[0][:64]
    c.load(ctx, atoms[0])  # a name that is not a plain file name: SetError bad_set_name, answered below


HANDLERS = {
    "/sao/gen": gen,
    "/sao/trigger": trigger,
    "/sao/cancel": cancel,
    "/sao/status": status,
    "/sao/pool": pool,
    "/sao/ping": ping,
    "/sao/hello": hello,
    "/sao/info": info,
    "/sao/loop": loop,
    "/sao/play": play,
    "/sao/stop": stop,
    "/sao/bank": bank,
    "/sao/load": load,
}
PREFIX_HANDLERS = {"/sao/set/": set_param, "/sao/get/": get_param, "/sao/pad/": pad}
PREFIX_ARGS = {"/sao/set/": "<param>", "/sao/get/": "<param>", "/sao/pad/": "<n>"}  # as the protocol table writes them


def handler_for(address: str):
    if address in HANDLERS:
        return HANDLERS[address]
    for prefix, handler in PREFIX_HANDLERS.items():
        if address.startswith(prefix) and len(address) > len(prefix):
            return handler
    return None


# ---------------------------------------------------------------- transport


class OscServer(asyncio.DatagramProtocol):
    """Datagrams in, parsed and dispatched to the handlers; answers go out through `Replies`."""

    def __init__(self, controller: Controller, replies: Replies, allow: AllowList | None = None):
        self.controller = controller
        self.replies = replies
        self.allow = allow or AllowList([])
        self.transport: asyncio.DatagramTransport | None = None
        self.bad = RateLimitedLog(log)
        self.refused = 0  # datagrams from senders outside the allow-list (dropped unanswered)

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.replies.transport = transport

    def error_received(self, exc) -> None:  # e.g. ICMP port unreachable for a reply nobody listens to
        log.debug("OSC socket: %s", exc)

    def datagram_received(self, data: bytes, addr) -> None:
        host, port = addr[0], addr[1]
        if not self.allow.allows(host):
            self.refused += 1
            self.bad.warning("datagram from %s:%d dropped: not in the allow-list (%d so far)", host, port, self.refused)
            return
        try:
            messages = oscwire.decode(data)
        except oscwire.OscError as err:
            self.reject(Context(host, port, "?"), err)
            return
        if len(messages) > MAX_MESSAGES:
            msg = f"a datagram holds at most {MAX_MESSAGES} messages; the first {MAX_MESSAGES} of {len(messages)} ran"
            self.reject(Context(host, port, "#bundle"), RequestError("too_many", msg))
        for address, atoms in messages[:MAX_MESSAGES]:
            try:
                self.dispatch(Context(host, port, address), atoms)
            except Exception:  # a bug in the error path itself: keep serving the other messages
                self.bad.warning("message to %s from %s:%d", address[:80], host, port, exc_info=True)

    def dispatch(self, ctx: Context, atoms: tuple) -> None:
        handler = handler_for(ctx.address) if len(ctx.address) <= MAX_ADDRESS else None
        try:
            if handler is None:
                raise RequestError("unknown_address", f"no handler for {ctx.address[:80]!r}; /sao/info lists them")
            handler(self.controller, ctx, atoms)
        except SaoLiveError as err:
            self.reject(ctx, err)
        except Exception as err:  # a bug: answer, log it, keep serving
            self.bad.warning("handler for %s failed", ctx.address[:80], exc_info=True)
            self.reject(ctx, RequestError("internal", f"internal error: {type(err).__name__}: {str(err)[:200]}"))

    def reject(self, ctx: Context, err: SaoLiveError) -> None:
        message = str(err)[:300]
        self.bad.warning("%s from %s:%d rejected: %s (%s)", ctx.address[:80], ctx.host, ctx.port, message, err.code)
        self.replies.reply(ctx.host, ctx.port, "/sao/error", ctx.id, err.code, message)
