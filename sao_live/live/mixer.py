"""The mixer the audio callback runs: preallocated voices summed into the output, in place.

Everything here is sized when the stream opens (`Mixer(channels, max_block, voices)`); the
callback (`render`) only slices and writes into those arrays with `out=`. Commands arrive in
a `collections.deque` (append and popleft are atomic under the GIL: no lock to wait on); what
the control plane wants to know is in plain counters (`frame`, `underruns`, `stolen`, ...).

Voices: one-shot (plays to the end), loop (wraps, the clip's seam is already crossfaded),
gate (plays until released, then fades). A streamed clip is still arriving while it plays: its
`filled` counter says how many frames are there; a voice that would reach their end
fades out over what is there (counted in `starved`), and a streamed loop's first pass hands
over, at its first wrap, to the finished loop (`Then`), whose seam is crossfaded. Stopping or
choking a voice fades it linearly over `fade` samples (10 ms) instead of cutting it. Headroom
policy: the sum is multiplied by the master gain (default -6 dB), then a block-wise peak
limiter ramps its gain down when a block would exceed the ceiling (-1 dBFS) and recovers over
~100 ms; a final clip catches the rest.
Slicing a numpy array makes a small view object; that is the only allocation per block.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

ONESHOT, LOOP, GATE = 0, 1, 2
MODES = {"oneshot": ONESHOT, "loop": LOOP, "gate": GATE}


@dataclass(frozen=True)
class Play:
    """Start `clip` (float32 (frames, channels) at the device rate) as voice `voice`."""

    voice: int
    clip: np.ndarray
    gain: float
    mode: int
    choke: int  # 0: no choke group
    tag: str  # what /sao/stop and note-offs find it by: "id:<id>" or "pad:<n>"
    start: int  # absolute frame to start at (0 or past: now)
    loop_frames: int = 0  # loop length (<= clip frames); 0: the whole clip
    filled: np.ndarray | None = None  # a streamed clip: frames written so far, in filled[0]


@dataclass(frozen=True)
class Then:
    """When the voice playing `old` wraps, it goes on with `new` (a streamed loop, finished)."""

    old: np.ndarray
    new: np.ndarray


@dataclass(frozen=True)
class Stop:
    """Fade out every voice whose tag is `tag` (None: all), or only gate voices when `gate_only`."""

    tag: str | None
    gate_only: bool = False


class Mixer:
    def __init__(
        self,
        channels: int,
        max_block: int,
        voices: int = 32,
        sample_rate: int = 48000,
        master_db: float = -6.0,
        ceiling_db: float = -1.0,
        fade_ms: float = 10.0,
    ):
        self.channels, self.max_block, self.voices = channels, max_block, voices
        self.sample_rate = sample_rate
        self.master_db = master_db
        self.master = 10 ** (master_db / 20)
        self.ceiling = 10 ** (ceiling_db / 20)
        self.fade = max(1, round(sample_rate * fade_ms / 1000))
        self.release = 1.0 - np.exp(-max_block / (0.1 * sample_rate))  # limiter recovery per block
        self.commands: collections.deque = collections.deque()
        self.frame = 0  # frames rendered so far (the mixer's clock)
        self.errors = 0
        self.underruns = 0
        self.limiting = 0  # blocks in which the limiter reduced the gain
        self.stolen = 0  # voices cut short by a new one because every voice was busy
        self.starved = 0  # streamed voices faded out because their audio stopped arriving
        # per-voice state, in plain lists (scalars) and one clip reference each
        self.clip: list[np.ndarray | None] = [None] * voices
        self.pos = [0] * voices
        self.length = [0] * voices
        self.gain = [0.0] * voices
        self.mode = [0] * voices
        self.choke = [0] * voices
        self.tag = [""] * voices
        self.start = [0] * voices
        self.level = [1.0] * voices  # envelope level, 1 while playing, falling while fading
        self.fading = [False] * voices
        self.active = [False] * voices
        self.filled: list[np.ndarray | None] = [None] * voices
        self.then: list[np.ndarray | None] = [None] * voices
        self._limit = 1.0
        # scratch, allocated once
        self._mix = np.zeros((max_block, channels), np.float32)
        self._tmp = np.zeros((max_block, channels), np.float32)
        self._env = np.zeros(max_block, np.float32)
        self._ramp = np.arange(1, max_block + 1, dtype=np.float32)
        self._peak = np.zeros(max_block, np.float32)

    # ------------------------------------------------------------ the control plane's side

    def post(self, command) -> None:
        self.commands.append(command)

    def set_master_db(self, db: float) -> None:
        self.master_db, self.master = db, 10 ** (db / 20)  # one float the callback reads per block

    def voices_playing(self) -> int:
        return sum(self.active)

    # ------------------------------------------------------------ the callback's side

    def render(self, out: np.ndarray, frames: int) -> None:
        """Fills `out[:frames]` with the mix; never raises (errors play silence and are counted)."""
        try:
            self._drain()
            mix = self._mix[:frames]
            mix.fill(0.0)
            for v in range(self.voices):
                if self.active[v]:
                    self._voice(v, mix, frames)
            self._master(mix, frames)
            out[:frames] = mix
        except Exception:  # noqa: BLE001 - the callback must never die
            self.errors += 1
            out.fill(0.0)
        self.frame += frames

    def _drain(self) -> None:
        while self.commands:
            cmd = self.commands.popleft()
            if isinstance(cmd, Play):
                self._start(cmd)
            elif isinstance(cmd, Then):
                for v in range(self.voices):
                    if self.active[v] and self.clip[v] is cmd.old:
                        self.then[v] = cmd.new
            else:
                for v in range(self.voices):
                    hit = self.active[v] and (cmd.tag is None or self.tag[v] == cmd.tag)
                    if hit and (not cmd.gate_only or self.mode[v] == GATE):
                        self.fading[v] = True

    def _start(self, cmd: Play) -> None:
        if cmd.choke:
            for v in range(self.voices):
                if self.active[v] and self.choke[v] == cmd.choke:
                    self.fading[v] = True
        v = cmd.voice
        if self.active[v]:
            self.stolen += 1
        self.clip[v] = cmd.clip
        self.length[v] = cmd.loop_frames or cmd.clip.shape[0]
        self.pos[v] = 0
        self.gain[v] = cmd.gain
        self.mode[v] = cmd.mode
        self.choke[v] = cmd.choke
        self.tag[v] = cmd.tag
        self.start[v] = cmd.start
        self.level[v] = 1.0
        self.fading[v] = False
        self.filled[v] = cmd.filled
        self.then[v] = None
        self.active[v] = True

    def _voice(self, v: int, mix: np.ndarray, frames: int) -> None:
        offset = self.start[v] - self.frame
        if offset >= frames:
            return  # launches in a later block
        offset = max(offset, 0)
        clip, length, mode = self.clip[v], self.length[v], self.mode[v]
        n = frames - offset
        have = self._filled(v, n)
        done = 0
        while done < n:  # loops wrap inside the block; one-shots stop at their end
            pos = self.pos[v]
            if pos >= length:
                if mode == LOOP:
                    self.pos[v] = pos = 0
                    if self.then[v] is not None:  # the finished loop takes over at the seam
                        clip, self.clip[v], self.then[v], self.filled[v] = self.then[v], self.then[v], None, None
                        have = length
                else:
                    self._end(v)
                    break
            k = min(n - done, length - pos, have - pos)
            if k <= 0:  # nothing more has arrived (the fade could not finish): stop here
                self._end(v)
                break
            self._add(v, clip[pos : pos + k], mix[offset + done : offset + done + k], k)
            self.pos[v] = pos + k
            done += k
            if not self.active[v]:
                break
        if self.active[v] and mode != LOOP and self.pos[v] >= length:
            self._end(v)
        self.start[v] = min(self.start[v], self.frame)  # started: later blocks begin at offset 0

    def _filled(self, v: int, n: int) -> int:
        """How far voice v may play: its length, or for a streamed clip the frames there so far."""
        held = self.filled[v]
        if held is None:
            return self.length[v]
        have = int(held[0])
        if have >= self.length[v]:
            return self.length[v]
        if not self.fading[v] and self.pos[v] + n + self.fade > have:
            self.fading[v] = True  # its audio stopped arriving: fade out over what is there
            self.starved += 1
        return have

    def _add(self, v: int, src: np.ndarray, dst: np.ndarray, k: int) -> None:
        tmp = self._tmp[:k]
        np.multiply(src, self.gain[v], out=tmp)
        if self.fading[v]:
            env = self._env[:k]
            np.multiply(self._ramp[:k], -1.0 / self.fade, out=env)
            env += self.level[v]
            np.maximum(env, 0.0, out=env)
            tmp *= env[:, None]
            self.level[v] = float(env[k - 1])
            if self.level[v] <= 0.0:
                self._end(v)
        dst += tmp

    def _end(self, v: int) -> None:
        self.active[v] = False
        self.clip[v] = None
        self.filled[v] = None
        self.then[v] = None

    def _master(self, mix: np.ndarray, frames: int) -> None:
        mix *= self.master
        peak = self._peak[:frames]
        np.max(np.abs(mix, out=self._tmp[:frames]), axis=1, out=peak)
        top = float(peak.max()) if frames else 0.0
        target = min(1.0, self.ceiling / top) if top > 0 else 1.0
        start = self._limit
        end = target if target < start else start + (1.0 - start) * self.release
        if start < 1.0 or end < 1.0:
            self.limiting += end < 1.0
            env = self._env[:frames]
            np.multiply(self._ramp[:frames], (end - start) / frames, out=env)
            env += start
            mix *= env[:, None]
        self._limit = end
        np.clip(mix, -self.ceiling, self.ceiling, out=mix)
