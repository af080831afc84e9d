"""The live side of the daemon: player, tempo, MIDI and the loaded set, fed by the clip store.

Flow stays one-directional: a trigger (OSC, MIDI, a set) asks the ClipService for clips;
finished clips come here (`clip_done`, `load_set`), are prepared for the device once (read +
soxr, on this module's thread), sent to the audio process once and kept as Takes; a hit sends
a play to the audio process, whose mixer starts the voice at its next period.
Nothing here waits on the worker, and the player never calls back up the chain.

Pads keep a pool of ready takes (seeds). A pad with variations > 1 plays the next take of its
pool and asks for a new one in the background (priority refill); when the pool is empty it
plays the take it played last (the nearest ready one) and says so (`/sao/fallback`). A pad
with one variation always plays its one take.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from ..request import RequestError
from .mixer import LOOP, MODES
from .player import LAUNCH_MARGIN, NoAudioDevice, Player, Take
from .sets import LiveSet, Pad, SetError, load_set
from .tempo import UNITS, Tempo

if TYPE_CHECKING:
    from ..daemon.daemon import Daemon
    from ..daemon.scheduler import Requester
    from ..daemon.store import Clip

log = logging.getLogger(__name__)
MAX_ID_TAKES = 64  # takes kept for /sao/play <id>, most recent
STALL_SECONDS = 2.0  # a stream that asks for no audio this long is dead (its server went away): restart
STAGE_PARAMS = ("quantize", "tempo_source", "master_db", "bank", "velocity_curve")


@dataclass
class PadState:
    pad: Pad
    pool: collections.deque = field(default_factory=collections.deque)  # ready, unplayed takes
    last: Take | None = None
    next_seed: int = 0
    refilling: int = 0


class Stage:
    def __init__(self, daemon: Daemon):
        self.d = daemon
        s = daemon.settings
        self.player: Player | None = None
        self.audio_note = "not started"
        self.midi = None
        self.set: LiveSet | None = None
        self.bank = 0
        self.pads: dict[tuple[int, int], PadState] = {}
        self.by_id: collections.OrderedDict = collections.OrderedDict()  # request id -> Take
        self.quantize = s.quantize
        self.velocity_curve = s.velocity_curve
        self.tempo = Tempo(s.bpm, 48000, self._frame_clock, s.tempo_source if s.tempo_source != "link" else "fixed")
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sao-prepare")
        self._loading = False
        self.stolen = 0  # voices cut short because every voice was busy (as last reported)
        self._frame_seen = (0, time.monotonic())  # the player's frame clock, and when it last moved

    # ------------------------------------------------------------ lifecycle

    def start_audio(self) -> None:
        s = self.d.settings
        if s.audio_device == "none":
            self.audio_note = "disabled (audio_device = none), export only"
        else:
            try:
                self.player = self._open_player(s.master_db)
                self.tempo.rate = self.player.rate
                self.audio_note = self.player.device_name
            except NoAudioDevice as err:
                self.audio_note = f"{err}; export only"  # the reason says what is missing
        log.info("audio: %s", self.audio_note)

    def _open_player(self, master_db: float) -> Player:
        s = self.d.settings
        return Player.open(s.audio_device, s.voices, master_db, s.audio_blocksize, nice=s.audio_nice)

    def start_midi(self, loop) -> None:
        from .midi import MidiError, MidiIn

        s = self.d.settings
        if s.midi_in == "none":
            return
        try:
            self.midi = MidiIn.open(s.midi_in, s.midi_api, loop, self.on_midi, nice=s.audio_nice)
            log.info("MIDI in: %s", self.midi.name)
        except MidiError as err:
            log.warning("no MIDI input: %s", err)

    async def start_link(self) -> None:
        try:
            await self.tempo.start_link(asyncio.get_running_loop())
        except ImportError:
            log.warning("tempo_source link needs the optional aalink package (pip install sao-live[link]); fixed tempo")

    async def watch(self, interval: float = 0.1) -> None:
        """The player's and tempo's control side: follows the audio process and Link's tempo."""
        while True:
            await asyncio.sleep(interval)
            self.check_player()
            bpm = self.tempo.poll_link()
            if bpm is not None:
                self.d.service.params.values["bpm"] = round(bpm, 2)
                self.d.announce("/sao/tempo", round(bpm, 2), "link")

    def check_player(self) -> None:
        """Sends the player's pending messages, reports stolen voices and an audio process that died."""
        p = self.player
        if p is None or p.process is None:
            return
        if not p.alive:
            self.player = None
            self.audio_note = f"the audio process stopped (exit code {p.process.exitcode}); restarting it"
            log.error("audio: %s", self.audio_note)
            self.d.spawn(self._restart_audio(p))
            return
        frame, now = p.frame, time.monotonic()
        if frame != self._frame_seen[0]:
            self._frame_seen = (frame, now)
        elif now - self._frame_seen[1] > STALL_SECONDS:
            log.error("audio: the stream has played nothing for %.0f s (did the audio server stop?); restarting it",
                      now - self._frame_seen[1])  # fmt: skip
            self._frame_seen = (frame, now)
            p.process.kill()  # seen as dead on the next look, and restarted
            return
        p.poll()
        if p.stolen > self.stolen:
            log.warning("%d voice(s) stolen: all %d voices were busy", p.stolen - self.stolen, p.voices)
            self.stolen = p.stolen

    async def _restart_audio(self, old: Player) -> None:
        """A new audio process, with every kept take loaded into it; retries with a growing pause."""
        delay = 0.5
        while self.player is None:
            await asyncio.sleep(delay)
            try:
                player = await self.d.in_thread(self._open_player, old.master_db)
            except NoAudioDevice as err:
                delay = min(2 * delay, 30.0)
                self.audio_note = f"{err}; trying again in {delay:.0f} s"
                log.warning("audio: %s", self.audio_note)
                continue
            self.player, self.audio_note = player, player.device_name
            self._frame_seen = (player.frame, time.monotonic())
            self.tempo.rate, self.tempo.anchor = player.rate, 0.0  # the new process's frame clock starts at 0
            await self._move_takes(player, old.rate)
            log.info("audio: restarted on %s", player.device_name)

    async def _move_takes(self, player: Player, old_rate: int) -> None:
        """Loads every take the pads and ids keep into `player` (from the clip files), then swaps them in."""
        takes = {id(t): t for t in self._kept_takes() if t.player != player.serial}
        moved: dict[int, Take | None] = {}
        loop = asyncio.get_running_loop()
        for key, take in takes.items():
            loop_seconds = take.loop_frames / old_rate if take.loop_frames else None
            path = self.d.store.clip_path(take.key)
            try:
                prepare = partial(player.prepare, path, take.seed, take.key, loop_seconds)
                moved[key] = await loop.run_in_executor(self._pool, prepare)
            except Exception as err:  # noqa: BLE001 - a clip that is gone stays gone; the others move
                log.warning("audio restart: take %s (seed %d) not reloaded: %s", take.key[:12], take.seed, err)
                moved[key] = None
        # one synchronous swap (no await), so hits and refills in between see a consistent state
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

    def _kept_takes(self) -> list[Take]:
        kept = [t for state in self.pads.values() for t in (*state.pool, state.last) if t is not None]
        return kept + list(self.by_id.values())

    def close(self) -> None:
        if self.midi is not None:
            self.midi.close()
        self.tempo.close()
        if self.player is not None:
            self.player.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _frame_clock(self) -> tuple[int, float]:
        return (self.player.frame if self.player else 0), time.monotonic()

    def status(self) -> tuple:
        p = self.player
        return (int(p is not None), p.voices_playing() if p else 0, p.underruns if p else 0, p.errors if p else 0,
                round(self.tempo.bpm, 3), self.set.name if self.set else "", self.bank, self.stolen)  # fmt: skip

    # ------------------------------------------------------------ clips by request id

    async def _prepare(self, clip: Clip, loop_seconds: float | None = None) -> Take:
        if self.player is None:
            return Take(0, int(clip.seed), clip.key)
        p = self.player
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, lambda: p.prepare(clip.path, int(clip.seed), clip.key, loop_seconds)
        )

    def clip_done(self, r: Requester, clip: Clip) -> None:
        """A clip delivered to an OSC requester: kept for /sao/play, played now when asked."""
        if self.player is not None:
            self.d.spawn(self._keep(r, clip))

    async def _keep(self, r: Requester, clip: Clip) -> None:
        request = clip.request or {}
        bars, bpm = request.get("bars"), request.get("bpm")
        take = await self._prepare(clip, bars * 240.0 / bpm if bars else None)
        self.by_id[r.id] = take
        self.by_id.move_to_end(r.id)
        while len(self.by_id) > MAX_ID_TAKES:
            self.by_id.popitem(last=False)
        if r.play:
            mode = LOOP if r.play == 2 else MODES["oneshot"]
            quantize = ("bar" if self.quantize == "off" else self.quantize) if r.play == 2 else self.quantize
            voice = self.player.play(take, 1.0, mode, 0, f"id:{r.id}", self._start_frame(quantize))
            self.d.send((r.host, r.port), "/sao/playing", r.id, voice, take.seed, 0)

    def _start_frame(self, quantize: str | None) -> int:
        q = quantize or self.quantize
        if q == "off" or self.player is None:
            return 0
        return self.tempo.next_boundary(self.player.frame + LAUNCH_MARGIN, q)

    def play_id(self, rid, gain: float) -> tuple[int, Take]:
        self._need_audio()
        take = self.by_id.get(rid)
        if take is None:
            raise RequestError("unknown_id", f"no finished clip under id {rid!r}; /sao/gen or /sao/trigger it first")
        mode = LOOP if take.loop_frames else MODES["oneshot"]
        return self.player.play(take, gain, mode, 0, f"id:{rid}", self._start_frame(None)), take

    def stop(self, target) -> int:
        self._need_audio()
        if target == "all":
            return self.player.stop(None)
        if isinstance(target, str) and target.startswith("pad") and target[3:].isdigit():
            pad = self._pad(int(target[3:]))
            return self.player.stop(self._tag(pad))
        return self.player.stop(f"id:{target}")

    def _need_audio(self) -> None:
        if self.player is None:
            raise RequestError("no_audio", f"nothing can play: {self.audio_note}")

    # ------------------------------------------------------------ pads

    def _pad(self, index: int) -> Pad:
        if self.set is None:
            raise RequestError("no_set", "no set is loaded; /sao/load <path> or sao-live serve --set FILE")
        bank = self.set.banks[self.bank]
        if not 1 <= index <= len(bank):
            raise RequestError("unknown_pad", f"pad must be in [1, {len(bank)}] in bank {self.bank}, got {index!r}")
        return bank[index - 1]

    @staticmethod
    def _tag(pad: Pad) -> str:
        return f"pad:{pad.bank}:{pad.index}"

    def velocity_gain(self, velocity: float) -> float:
        """Velocity 0..1 -> gain: a power curve (velocity_curve 1 is linear, 2 is softer at low velocities)."""
        return float(min(1.0, max(0.0, velocity)) ** self.velocity_curve)

    def hit(self, index: int, velocity: float = 1.0, gain: float | None = None) -> tuple[int, Take, bool]:
        """Plays pad `index` (1-based, current bank); returns (voice, take, nearest)."""
        pad = self._pad(index)
        self._need_audio()
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
            self.d.spawn(self._refill(state))
        g = pad.gain * (self.velocity_gain(velocity) if gain is None else gain)
        start = self._start_frame(pad.quantize or ("bar" if pad.mode == "loop" and self.quantize != "off" else None))
        voice = self.player.play(take, g, MODES[pad.mode], pad.choke, self._tag(pad), start)
        if nearest:
            self.d.announce("/sao/fallback", pad.name, take.seed)
        return voice, take, nearest

    def release(self, index: int) -> None:
        pad = self._pad(index)
        if pad.mode == "gate" and self.player is not None:
            self.player.stop(self._tag(pad), gate_only=True)

    async def _refill(self, state: PadState) -> None:
        state.refilling += 1
        seed, state.next_seed = state.next_seed, state.next_seed + 1
        try:
            clip = await self.d.service.obtain(state.pad.request(seed, self._bpm(), priority=2))
            state.pool.append(await self._prepare(clip, self._loop_seconds(state.pad)))
        except Exception as err:  # noqa: BLE001 - a refill that fails leaves the pool as it is
            log.warning("refilling %s failed: %s", state.pad.name, err)
        finally:
            state.refilling -= 1

    def _bpm(self) -> float:
        return round(self.set.bpm if self.set and self.tempo.source == "fixed" else self.tempo.bpm, 3)

    def _loop_seconds(self, pad: Pad) -> float | None:
        return pad.bars * 240.0 / self._bpm() if pad.bars else None

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
            self.d.spawn(self._refill(state))

    # ------------------------------------------------------------ sets

    async def load_set(self, path, progress=None) -> LiveSet:
        """Reads, checks and pre-renders a set, then makes it the running one (SetError: the old one stays)."""
        if self._loading:
            raise SetError("a set is already loading; wait for /sao/loaded")
        self._loading = True
        try:
            live = await asyncio.get_running_loop().run_in_executor(self._pool, load_set, path)
            bpm = live.bpm if self.tempo.source == "fixed" else self.tempo.bpm
            model = self.d.service.model
            work = []
            for pad in live.pads:
                for seed in pad.seeds:
                    try:
                        pad.request(seed, bpm).resolved(model, self.d.service.params.values)
                    except RequestError as err:
                        raise SetError(f"{live.path}: bank {pad.bank} {pad.name} (note {pad.note}): {err}") from None
                    work.append((pad, seed))
            states = {(p.bank, p.index): PadState(p, next_seed=p.seeds[-1] + 1) for p in live.pads}
            total = len(work)
            self.d.announce("/sao/render", live.name, 0, total)
            if progress:
                progress(0, total)

            async def one(pad: Pad, seed: int):
                clip = await self.d.service.obtain(pad.request(seed, bpm))
                loop_seconds = pad.bars * 240.0 / bpm if pad.bars else None
                return pad, await self._prepare(clip, loop_seconds)

            for ready, next_done in enumerate(asyncio.as_completed([one(p, s) for p, s in work]), 1):
                try:
                    pad, take = await next_done
                except RequestError as err:
                    raise SetError(f"{live.path}: pre-rendering failed: {err} ({err.code})") from None
                state = states[(pad.bank, pad.index)]
                state.pool.append(take)
                self.d.announce("/sao/render", live.name, ready, total)
                if progress:
                    progress(ready, total)
            for state in states.values():  # seed order, so a pool plays its seeds in the order written
                order = {s: i for i, s in enumerate(state.pad.seeds)}
                state.pool = collections.deque(sorted(state.pool, key=lambda t: order.get(t.seed, 0)))
                state.last = state.pool[0]
                if state.pad.variations == 1:
                    state.pool.clear()
            if self.player is not None:
                self.player.stop(None)
            self.set, self.pads, self.bank = live, states, 0
            if self.tempo.source == "fixed":
                self.tempo.set_bpm(live.bpm)
                self.d.service.params.values["bpm"] = live.bpm
            self.quantize = live.quantize
            self.d.announce("/sao/loaded", live.name, len(live.pads), len(live.banks))
            log.info("set %r loaded: %d pads in %d banks, %d takes", live.name, len(live.pads), len(live.banks), total)
            return live
        finally:
            self._loading = False

    # ------------------------------------------------------------ parameters (/sao/set, /sao/get)

    def get_param(self, name: str):
        if name == "master_db":
            return self.player.master_db if self.player else self.d.settings.master_db
        if name == "tempo_source":
            return self.tempo.source
        return getattr(self, name)

    def set_param(self, name: str, value) -> None:
        if name == "quantize" and value in UNITS:
            self.quantize = value
        elif name == "tempo_source" and value in ("fixed", "midi"):
            self.tempo.source = value
        elif name == "tempo_source" and value == "link":
            self.d.spawn(self.start_link())
        elif name == "bank":
            self.set_bank(value)
        elif name == "velocity_curve" and isinstance(value, (int, float)) and 0.1 <= value <= 4:
            self.velocity_curve = float(value)
        elif name == "master_db" and isinstance(value, (int, float)) and -60 <= value <= 6:
            self._need_audio()
            self.player.set_master_db(float(value))
        else:
            expected = {"quantize": "off, beat or bar", "tempo_source": "fixed, midi or link",
                        "velocity_curve": "a number in [0.1, 4]", "master_db": "a number in [-60, 6]"}  # fmt: skip
            raise RequestError("bad_value", f"/sao/set/{name} must be {expected.get(name, '?')}, got {value!r}")

    # ------------------------------------------------------------ MIDI (on the loop)

    def on_midi(self, msg) -> None:
        try:
            handler = _MIDI.get(msg.type)
            if handler is not None:
                handler(self, msg)
        except RequestError as err:
            log.info("MIDI %s: %s", msg, err)
        except Exception:
            log.exception("MIDI message %s", msg)

    def _pad_for_note(self, note: int) -> Pad | None:
        if self.set is None:
            return None
        for pad in self.set.banks[self.bank]:
            if pad.note == note:
                return pad
        return None

    def _note_on(self, msg) -> None:
        if msg.velocity == 0:
            return self._note_off(msg)
        pad = self._pad_for_note(msg.note)
        if pad is not None:
            self.last_pad = pad.index
            self.hit(pad.index, msg.velocity / 127.0)

    def _note_off(self, msg) -> None:
        pad = self._pad_for_note(msg.note)
        if pad is not None:
            self.release(pad.index)

    def _program(self, msg) -> None:
        if self.set is not None and msg.program < len(self.set.banks):
            self.set_bank(msg.program)
            self.d.announce("/sao/value", "bank", self.bank)

    def _control(self, msg) -> None:
        if self.set is None or msg.value == 0:
            return
        action = dict(self.set.cc).get(msg.control)
        last = getattr(self, "last_pad", None)
        if action == "stop_all" and self.player is not None:
            self.player.stop(None)
        elif action == "regenerate" and last:
            self.regenerate(last)
        elif action == "next_variation" and last:
            state = self.pads.get((self.bank, last))
            if state and state.pool:
                state.pool.popleft()
                self.d.spawn(self._refill(state))

    def _clock(self, msg) -> None:
        bpm = self.tempo.midi_tick()
        if bpm is not None and self.tempo.source == "midi" and abs(bpm - self.d.service.params["bpm"]) > 0.5:
            self.d.service.params.values["bpm"] = round(bpm, 2)
            self.d.announce("/sao/tempo", round(bpm, 2), "midi")


_MIDI = {
    "note_on": Stage._note_on,
    "note_off": Stage._note_off,
    "program_change": Stage._program,
    "control_change": Stage._control,
    "clock": Stage._clock,
    "start": lambda self, msg: self.tempo.midi_start(),
    "continue": lambda self, msg: self.tempo.midi_start(),
    "stop": lambda self, msg: self.tempo.midi_stop(),
}
