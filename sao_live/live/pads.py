"""The pad bank: the loaded set, its pads' pools of ready takes, and takes kept by request id.

Pads keep a pool of ready takes (seeds). A pad with variations > 1 plays the next take of its
pool and asks for a new one in the background (priority refill); when the pool is empty it
plays the take it played last (the nearest ready one) and says so (`/sao/fallback`). A pad
with one variation always plays its one take.

Clips come in through `obtain(request)` (a future for the clip, from the clip service) and the
event bus (`on_event`: a finished clip for `/sao/play <id>`, played at once for a trigger or a
loop; a client's clip that is still decoding arrives as a stream and starts as soon as it can
play to its end, `streamed.py`). Loop lengths and the prompt's tempo follow the one Tempo. A set's pre-render asks for
a few takes at a time (`ahead`, a small part of the queue), and cancels the futures of what it
asked for when it fails or a newer `/sao/load` replaces it (the service then drops the jobs).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..events import ClipReady, Event, Streaming
from ..musical_time import bars_to_seconds
from ..request import Request, RequestError
from ..runtime import Runtime
from .audio_supervisor import AudioSupervisor
from .mixer import LOOP, MODES
from .player import Take
from .sets import LiveSet, Pad, SetError, load_set, value_free
from .streamed import StreamedPlay
from .tempo import Tempo

log = logging.getLogger(__name__)
MAX_ID_TAKES = 64  # takes kept for /sao/play <id>, most recent
PRERENDER_AHEAD = 8  # at most this many of a set's takes are asked for at once


@dataclass
class PadState:
    pad: Pad
    pool: collections.deque = field(default_factory=collections.deque)  # ready, unplayed takes
    last: Take | None = None
    next_seed: int = 0
    refilling: int = 0
    refills: set = field(default_factory=set)  # its refill tasks, cancelled when another set replaces this one


class _Loading:
    """A set being loaded: its pre-render takes in flight, and whether a newer load replaced it."""

    def __init__(self, shown: str, replaceable: bool):
        self.shown = shown
        self.replaceable = replaceable
        self.takes: set[asyncio.Future] = set()
        self.replaced_by: str | None = None

    def give_way(self, newer: str) -> None:
        self.replaced_by = newer
        self.cancel_takes()

    def check(self) -> None:
        if self.replaced_by is not None:
            message = f"loading {self.shown} stopped: /sao/load {self.replaced_by} replaced it before it was ready"
            raise SetError(message, code="cancelled")

    def cancel_takes(self) -> None:
        """Cancels the takes not made yet: the clip service lets go of their queued jobs."""
        for task in self.takes:
            if not task.cancel() and not task.cancelled():
                task.exception()  # a failure after the first: already answered, not a lost error
        self.takes = set()


@dataclass(frozen=True)
class _Id:
    """A request id to tag a voice with, when no requester is at hand (`/sao/play <id>`)."""

    id: object


class PadBank:
    def __init__(
        self,
        runtime: Runtime,
        replies,
        tempo: Tempo,
        audio: AudioSupervisor,
        obtain: Callable[[Request], asyncio.Future],
        resolve: Callable[[Request], Request],
        quantize: str = "off",
        velocity_curve: float = 1.5,
        queue_size: int = 256,
    ):
        self.runtime = runtime
        self.replies = replies  # send(target, address, *args) and announce(address, *args)
        self.tempo = tempo
        self.audio = audio
        self.obtain = obtain  # the clip service's: a future for a request's clip
        self.resolve = resolve  # checks a request against the loaded model (RequestError if it cannot be made)
        self.quantize = quantize
        self.velocity_curve = velocity_curve
        self.set: LiveSet | None = None
        self.bank = 0
        self.pads: dict[tuple[int, int], PadState] = {}
        self.by_id: collections.OrderedDict = collections.OrderedDict()  # request id -> Take
        self.streaming: dict = {}  # request id -> StreamedPlay, while its clip decodes
        self.interrupted: collections.OrderedDict = collections.OrderedDict()  # ids whose streamed voice faded
        self._loading: _Loading | None = None
        # A set's takes asked for at once: enough to keep the worker busy, a small part of the queue.
        self.ahead = max(1, min(PRERENDER_AHEAD, queue_size // 4))
        audio.holders.append(self)

    # ------------------------------------------------------------ clips by request id

    def on_event(self, event: Event) -> None:
        """The bus subscriber: a client's finished clip is kept for /sao/play, played now when asked."""
        if not event.requester.host or self.audio.player is None:
            return
        if isinstance(event, Streaming):
            self._stream(event)
        elif isinstance(event, ClipReady):
            self.runtime.spawn(self._keep(event))

    def _stream(self, event: Streaming) -> None:
        r, stream = event.requester, event.stream
        # A trigger or loop plays it; after a streamed voice of this id faded out (its worker died),
        # the retried clip is only kept: the moment has passed.
        start = self._starter(r, r.play, 1.0) if r.play and r.id not in self.interrupted else None
        try:
            played = StreamedPlay(stream, self.audio, self.runtime, stream.seed, start, self._interrupter(r))
        except Exception as err:  # noqa: BLE001 - the audio process went away: the finished clip still comes
            log.warning("request %r cannot stream: %s", r.id, err)
            return
        self.streaming[r.id] = played
        played.done.add_done_callback(lambda done: done.result() is None and self._forget(r.id, played))

    def _forget(self, rid, played: StreamedPlay) -> None:
        if self.streaming.get(rid) is played:
            del self.streaming[rid]

    def _starter(self, r, play: int, gain: float, started: Callable | None = None) -> Callable[[Take], int]:
        """What starts request `r`'s take: once (play 1) or looped (2), and says so to whoever asked."""

        def start(take: Take) -> int:
            player = self.audio.need()
            mode = LOOP if play == 2 or take.loop_frames else MODES["oneshot"]
            quantize = ("bar" if self.quantize == "off" else self.quantize) if play == 2 else self.quantize
            voice = player.play(take, gain, mode, 0, f"id:{r.id}", self.audio.start_frame(quantize))
            if started is not None:
                started(voice, take, False)
            else:
                self.replies.send((r.host, r.port), "/sao/playing", r.id, voice, take.seed, 0)
            return voice

        return start

    def _interrupter(self, r) -> Callable[[str], None]:
        def interrupted(reason: str) -> None:
            self.interrupted[r.id] = True
            while len(self.interrupted) > MAX_ID_TAKES:
                self.interrupted.popitem(last=False)
            if self.audio.player is not None:
                self.audio.player.stop(f"id:{r.id}")  # a 10 ms fade over audio that is there
            log.warning("request %r: its streamed voice faded out: %s", r.id, reason)
            self.replies.send((r.host, r.port), "/sao/interrupted", r.id, reason[:300])

        return interrupted

    async def _keep(self, event: ClipReady) -> None:
        r, clip = event.requester, event.clip
        streamed = self.streaming.get(r.id)
        if streamed is not None and streamed.stream.key == clip.key:
            take = await streamed.done  # the streamed take itself: the same samples as the file
            self._forget(r.id, streamed)
            if take is not None:
                self._keep_take(r.id, take)
                return
        request = clip.request or {}
        bars, bpm = request.get("bars"), request.get("bpm")
        take = await self.audio.prepare(clip, bars_to_seconds(bars, bpm) if bars else None)
        self._keep_take(r.id, take)
        if r.play and self.audio.player is not None and r.id not in self.interrupted:
            self._starter(r, r.play, 1.0)(take)

    def _keep_take(self, rid, take: Take) -> None:
        self.by_id[rid] = take
        self.by_id.move_to_end(rid)
        while len(self.by_id) > MAX_ID_TAKES:
            self.by_id.popitem(last=False)

    def play_id(self, rid, gain: float, started: Callable[[int, Take, bool], None]) -> None:
        """Plays request `rid`'s clip; `started(voice, take, nearest)` is called when it starts: at
        once for a finished clip, or when one still decoding can play to its end."""
        player = self.audio.need()
        take = self.by_id.get(rid)
        if take is None:
            streamed = self.streaming.get(rid)
            if streamed is not None and streamed.voice is None:
                streamed.want_play(self._starter(_Id(rid), 1, gain, started))
                return
            raise RequestError("unknown_id", f"no finished clip under id {rid!r}; /sao/gen or /sao/trigger it first")
        mode = LOOP if take.loop_frames else MODES["oneshot"]
        started(player.play(take, gain, mode, 0, f"id:{rid}", self.audio.start_frame(self.quantize)), take, False)

    async def play_clip(self, clip) -> int:
        """Plays a clip of the cache once (the web page's library); its voice. Stopped as `clip:<key>`."""
        self.audio.need()
        take = await self.audio.prepare(clip)
        player = self.audio.need()  # the audio process may have gone meanwhile
        return player.play(take, 1.0, MODES["oneshot"], 0, f"clip:{clip.key}", self.audio.start_frame(self.quantize))

    def stop_clip(self, key: str) -> int:
        """Stops the voices `play_clip` started for this clip; returns how many."""
        return self.audio.need().stop(f"clip:{key}")

    def stop(self, target) -> int:
        """Stops `all`, a pad (`pad<n>`) or a request id's voices; returns how many."""
        player = self.audio.need()
        if target == "all":
            return player.stop(None)
        if isinstance(target, str) and target.startswith("pad") and target[3:].isdigit():
            return player.stop(self._tag(self._pad(int(target[3:]))))
        return player.stop(f"id:{target}")

    # ------------------------------------------------------------ pads

    def _pad(self, index: int) -> Pad:
        if self.set is None:
            raise RequestError("no_set", "no set is loaded; /sao/load <name> or sao-live serve --set FILE")
        bank = self.set.banks[self.bank]
        if not 1 <= index <= len(bank):
            raise RequestError("unknown_pad", f"pad must be in [1, {len(bank)}] in bank {self.bank}, got {index!r}")
        return bank[index - 1]

    def pad_for_note(self, note: int) -> Pad | None:
        if self.set is None:
            return None
        return next((pad for pad in self.set.banks[self.bank] if pad.note == note), None)

    @staticmethod
    def _tag(pad: Pad) -> str:
        return f"pad:{pad.bank}:{pad.index}"

    def velocity_gain(self, velocity: float) -> float:
        """Velocity 0..1 -> gain: a power curve (velocity_curve 1 is linear, 2 is softer at low velocities)."""
        return float(min(1.0, max(0.0, velocity)) ** self.velocity_curve)

    def hit(self, index: int, velocity: float = 1.0, gain: float | None = None) -> tuple[int, Take, bool]:
        """Plays pad `index` (1-based, current bank); returns (voice, take, nearest)."""
        pad = self._pad(index)
        player = self.audio.need()
        state = self.pads[(pad.bank, pad.index)]
        nearest = False
        if pad.variations == 1 or not state.pool:
            take = state.last
            nearest = pad.variations > 1
            if take is None:
                raise RequestError("not_rendered", f"{pad.name} ({pad.prompt[:40]!r}) has no ready take yet")
        else:
            take = state.pool.popleft()
            state.last = take
        if pad.variations > 1 and len(state.pool) + state.refilling < pad.variations:
            self._start_refill(state)
        g = pad.gain * (self.velocity_gain(velocity) if gain is None else gain)
        quantize = pad.quantize or ("bar" if pad.mode == "loop" and self.quantize != "off" else self.quantize)
        voice = player.play(take, g, MODES[pad.mode], pad.choke, self._tag(pad), self.audio.start_frame(quantize))
        if nearest:
            self.replies.announce("/sao/fallback", pad.name, take.seed)
        return voice, take, nearest

    def release(self, index: int) -> None:
        pad = self._pad(index)
        if pad.mode == "gate" and self.audio.player is not None:
            self.audio.player.stop(self._tag(pad), gate_only=True)

    def _loop_seconds(self, pad: Pad, bpm: float) -> float | None:
        return bars_to_seconds(pad.bars, bpm) if pad.bars else None

    def _start_refill(self, state: PadState) -> None:
        task = self.runtime.spawn(self._refill(state))
        state.refills.add(task)
        task.add_done_callback(state.refills.discard)

    async def _refill(self, state: PadState) -> None:
        state.refilling += 1
        seed, state.next_seed = state.next_seed, state.next_seed + 1
        bpm = round(self.tempo.bpm, 3)  # the tempo now: a loop refilled after a change fits the new one
        try:
            clip = await self.obtain(state.pad.request(seed, bpm, priority=2))
            state.pool.append(await self.audio.prepare(clip, self._loop_seconds(state.pad, bpm)))
        except Exception as err:  # noqa: BLE001 - a refill that fails leaves the pool as it is
            log.warning("refilling %s failed: %s", state.pad.name, err)
        finally:
            state.refilling -= 1

    def set_bank(self, bank) -> int:
        if self.set is None:
            raise RequestError("no_set", "no set is loaded")
        if isinstance(bank, float) and bank.is_integer():
            bank = int(bank)
        if not isinstance(bank, int) or isinstance(bank, bool) or not 0 <= bank < len(self.set.banks):
            raise RequestError("bad_value", f"bank must be in [0, {len(self.set.banks) - 1}], got {bank!r}")
        self.bank = bank
        return bank

    def regenerate(self, index: int) -> None:
        """New seeds for a pad's whole pool (its current take keeps playing until they are ready)."""
        pad = self._pad(index)
        state = self.pads[(pad.bank, pad.index)]
        state.pool.clear()
        for _ in range(state.pad.variations):
            self._start_refill(state)

    def next_variation(self, index: int) -> None:
        """Drops the pad's next take (so the one after plays) and asks for a new one."""
        state = self.pads.get((self.bank, index))
        if state and state.pool:
            state.pool.popleft()
            self._start_refill(state)

    def stop_all(self) -> None:
        if self.audio.player is not None:
            self.audio.player.stop(None)

    # ------------------------------------------------------------ sets

    async def load_set(self, path, progress=None, *, shown: str | None = None, replaceable: bool = False) -> LiveSet:
        """Reads, checks and pre-renders a set, then makes it the running one (SetError: the old one stays).

        `shown` names the file in `SetError.public` (an OSC client's answer). A load that is
        `replaceable` (one asked for over OSC) gives way to the next replaceable one: it ends with
        SetError `cancelled` and its takes not made yet are cancelled. The set's tempo source
        applies from then on; with a fixed tempo its bpm becomes the tempo."""
        shown = shown or str(path)
        old = self._loading
        if old is not None:
            if not (old.replaceable and replaceable):
                raise SetError(f"the set {old.shown} is still loading; wait for /sao/loaded")
            old.give_way(shown)
        load = self._loading = _Loading(shown, replaceable)
        try:
            bpm_now = round(self.tempo.bpm, 3)
            live, bpm, work = await self.runtime.in_thread(self._read, path, shown, bpm_now)
            load.check()
            states = {(p.bank, p.index): PadState(p, next_seed=p.seeds[-1] + 1) for p in live.pads}
            total = len(work)
            self.replies.announce("/sao/render", live.name, 0, total)
            if progress:
                progress(0, total)

            def ready(pad: Pad, take: Take, count: int) -> None:
                states[(pad.bank, pad.index)].pool.append(take)
                self.replies.announce("/sao/render", live.name, count, total)
                if progress:
                    progress(count, total)

            await self._prerender(load, work, bpm, ready)
            for state in states.values():  # seed order, so a pool plays its seeds in the order written
                order = {s: i for i, s in enumerate(state.pad.seeds)}
                state.pool = collections.deque(sorted(state.pool, key=lambda t: order.get(t.seed, 0)))
                state.last = state.pool[0]
                if state.pad.variations == 1:
                    state.pool.clear()
            self.stop_all()
            for state in self.pads.values():  # the old set's refills: nobody will play them
                for task in state.refills:
                    task.cancel()
            self.set, self.pads, self.bank = live, states, 0
            await self.tempo.use_source(live.tempo_source)
            if live.tempo_source == "fixed":
                self.tempo.set_bpm(live.bpm)
            self.quantize = live.quantize
            self.replies.announce("/sao/loaded", live.name, len(live.pads), len(live.banks))
            log.info("set %r loaded: %d pads in %d banks, %d takes", live.name, len(live.pads), len(live.banks), total)
            return live
        finally:
            load.cancel_takes()
            if self._loading is load:
                self._loading = None

    def _read(self, path, shown: str, bpm_now: float) -> tuple[LiveSet, float, list[tuple[Pad, int]]]:
        """On the file thread: the set, its bpm and every (pad, seed) to render, each checked against the model."""
        live = load_set(path, shown)
        bpm = live.bpm if live.tempo_source == "fixed" else bpm_now
        work = []
        for pad in live.pads:
            for seed in pad.seeds:
                try:
                    self.resolve(pad.request(seed, bpm))
                except RequestError as err:
                    where = f"bank {pad.bank} {pad.name} (note {pad.note})"
                    raise SetError(
                        f"{live.path}: {where}: {err}", f"{shown}: {where}: {value_free(str(err))}"
                    ) from None
                work.append((pad, seed))
        return live, bpm, work

    async def _prerender(self, load: _Loading, work: list, bpm: float, ready: Callable) -> None:
        """Asks for every take, at most `self.ahead` at a time, so the queue keeps room for clients
        however large the set; `ready(pad, take, count)` for each as it arrives."""
        todo, count = iter(work), 0

        async def one(pad: Pad, seed: int) -> tuple[Pad, Take]:
            clip = await self.obtain(pad.request(seed, bpm))
            return pad, await self.audio.prepare(clip, self._loop_seconds(pad, bpm))

        while True:
            while len(load.takes) < self.ahead and (item := next(todo, None)) is not None:
                load.takes.add(asyncio.ensure_future(one(*item)))
            if not load.takes:
                return
            done, load.takes = await asyncio.wait(load.takes, return_when=asyncio.FIRST_COMPLETED)
            failed = [task.exception() for task in done if not task.cancelled() and task.exception() is not None]
            load.check()  # replaced: its takes were cancelled
            if failed:
                err = failed[0]
                if not isinstance(err, RequestError):
                    raise err
                public = f"{load.shown}: pre-rendering failed: {value_free(str(err))} ({err.code})"
                raise SetError(f"{load.shown}: pre-rendering failed: {err} ({err.code})", public)
            for task in done:
                count += 1
                ready(*task.result(), count)

    # ------------------------------------------------------------ the audio supervisor's side

    def kept_takes(self) -> list[Take]:
        kept = [t for state in self.pads.values() for t in (*state.pool, state.last) if t is not None]
        return kept + list(self.by_id.values())

    def replace_takes(self, moved: dict[int, Take | None]) -> None:
        """After an audio restart: each kept take by its reloaded copy (None: its clip is gone)."""
        for state in self.pads.values():
            state.pool = collections.deque(t for t in (moved.get(id(t), t) for t in state.pool) if t is not None)
            if state.last is not None:
                state.last = moved.get(id(state.last), state.last)
        for rid, take in list(self.by_id.items()):
            new = moved.get(id(take), take)
            if new is None:
                del self.by_id[rid]
            else:
                self.by_id[rid] = new
