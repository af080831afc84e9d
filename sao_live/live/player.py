"""The player: the control side of the audio output, and clips made ready for it.

`Player.open(device)` starts the audio process (`audio_process.py`: the sounddevice stream
and the Mixer, away from this process's GIL) and waits for its stream to run; when there is
no device it raises `NoAudioDevice` and the daemon carries on without sound (export only).
`prepare` turns a clip file into what the callback plays: float32 (frames, channels) at the
device rate, resampled once with soxr (loops cyclically, so the seam stays smooth, and to
their exact length in device frames), and sends it to the audio process once. It reads
files, so it runs on a worker thread, never in the callback. Plays and stops are small
messages; the state the callback publishes each period (frame, underruns, voices) is read
from shared memory.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
import multiprocessing
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SaoLiveError
from . import audio_process

log = logging.getLogger(__name__)
LOOP_PAD = 256  # frames of context on each side of a loop when resampling it cyclically
CHUNK_BYTES = 256 * 1024  # clips travel in chunks so a play never waits behind a long clip
LAUNCH_MARGIN = audio_process.MAX_BLOCK // 8  # frames ahead of now a quantised start must be


class NoAudioDevice(SaoLiveError, RuntimeError):
    code = "no_audio"


@dataclass(frozen=True, eq=False)
class Take:
    """One playable clip, held by audio process `player` under `clip` (0: none), and where it came from."""

    clip: int
    seed: int
    key: str
    loop_frames: int = 0  # 0: not a loop
    player: int = 0  # the serial of the Player that holds it


def read_clip(path: str | Path, rate: int, channels: int, loop_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """A clip file as float32 (frames, channels) at `rate` (soxr, high quality), and its loop length (0: none)."""
    import soundfile as sf

    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (frames, channels)
    return resample_clip(fit_channels(audio, channels), sr, rate, loop_seconds)


def fit_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """(frames, n) -> (frames, channels): mono is copied to every channel, extra channels dropped."""
    if audio.shape[1] < channels:
        audio = np.repeat(audio[:, :1], channels, axis=1)
    return audio[:, :channels]


def resample_clip(audio: np.ndarray, sr: int, rate: int, loop_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """(frames, channels) at `sr` -> float32 at `rate`, and the loop length in frames (0: not a loop).
    A loop is resampled cyclically, so its seam stays smooth, to its exact length in frames."""
    import soxr

    loop_frames = 0
    if loop_seconds:
        # The context, a whole number of frames at both rates: the loop's first frame is then its first
        # sample, on the same grid as the clip resampled from its start (a streamed first pass).
        step = sr // math.gcd(sr, rate)
        n = min(len(audio), -(-LOOP_PAD // step) * step)
        ring = np.concatenate([audio[-n:], audio, audio[:n]])  # the loop's neighbours on both sides
        out = soxr.resample(ring, sr, rate, quality="HQ") if sr != rate else ring
        loop_frames = round(loop_seconds * rate)
        start = round(n * rate / sr)
        audio = out[start : start + loop_frames]
        if len(audio) < loop_frames:
            audio = np.concatenate([audio, out[: loop_frames - len(audio)]])
    elif sr != rate:
        audio = soxr.resample(audio, sr, rate, quality="HQ")
    return np.ascontiguousarray(audio, dtype=np.float32), loop_frames


class Player:
    """The control side of the audio process. Create with `Player.open`; `close` stops it.

    Clips go to the audio process once (`load` / `prepare` return a Take that names them) and
    are freed there when the Take is dropped; plays and stops are small messages after that.
    """

    _serials = itertools.count(1)

    def __init__(self, voices: int = 32, master_db: float = -6.0):
        self.serial = next(Player._serials)  # a Take plays only on the Player (process) that holds it
        self.voices = voices
        self.master_db = master_db
        self.device_name = ""
        self.rate = 0
        self.channels = 2
        self.latency = 0.0
        self.process = None
        self._conn = None
        self._status: np.ndarray | None = None
        self._send_lock = threading.Lock()  # one message (or one chunk) on the pipe at a time
        self._freed: collections.deque = collections.deque()  # clip ids whose Takes are gone, not yet sent
        self._clip_ids = itertools.count(1)
        self._tags = [""] * voices
        self._next_voice = 0

    @classmethod
    def open(
        cls,
        device: str | int | None,
        voices: int = 32,
        master_db: float = -6.0,
        blocksize: int = 0,
        nice: int = 0,
        timeout: float = 30.0,
    ) -> Player:
        """Starts the audio process and its stream; `NoAudioDevice` when there is no device or it cannot start."""
        self = cls(voices, master_db)
        ctx = multiprocessing.get_context("spawn")
        raw = ctx.RawArray("q", audio_process.status_size(voices))
        self._status = np.frombuffer(raw, dtype=np.int64)
        self._conn, child = ctx.Pipe()
        args = (child, raw, device, voices, master_db, blocksize, nice, logging.getLogger().level)
        self.process = ctx.Process(target=audio_process.main, args=args, name="sao-live-audio", daemon=True)
        self.process.start()
        child.close()
        try:
            if self._conn.poll(timeout):
                reply = self._conn.recv()
            else:
                reply = ("error", f"the audio process did not start within {timeout:.0f} s")
        except (EOFError, OSError):
            reply = ("error", f"the audio process stopped while opening the device (exit code {self.process.exitcode})")
        if reply[0] != "ready":
            self.close()
            raise NoAudioDevice(reply[1])
        _, self.rate, self.channels, self.device_name, self.latency = reply
        log.info(
            "audio: %s at %d Hz, %d channels, latency %.1f ms (process %d)",
            self.device_name,
            self.rate,
            self.channels,
            1000 * self.latency,
            self.process.pid,
        )
        return self

    # ------------------------------------------------------------ clips

    def prepare(self, path: str | Path, seed: int = 0, key: str = "", loop_seconds: float | None = None) -> Take:
        """Reads a clip file, resamples it to the device rate and sends it to the audio process."""
        audio, loop_frames = read_clip(path, self.rate, self.channels, loop_seconds)
        return self.load(audio, seed, key, loop_frames)

    def load(self, audio: np.ndarray, seed: int = 0, key: str = "", loop_frames: int = 0) -> Take:
        """Sends float32 (frames, channels) audio at the device rate to the audio process."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        take = self._new_take(audio.shape[0], audio.shape[1], False, seed, key, loop_frames)
        self._write(take, 0, audio)
        return take

    def open_stream(self, frames: int, seed: int = 0, key: str = "", loop_frames: int = 0) -> Take:
        """A take whose audio arrives later, in order (`write`); it may play before it is all there."""
        return self._new_take(frames, self.channels, True, seed, key, loop_frames)

    def write(self, take: Take, frame: int, audio: np.ndarray) -> None:
        """Sends float32 (frames, channels) audio into a streamed take from `frame` on, in chunks."""
        self._write(take, frame, np.ascontiguousarray(audio, dtype=np.float32))

    def _write(self, take: Take, frame: int, audio: np.ndarray) -> None:
        data = memoryview(audio).cast("B")
        start = frame * 4 * audio.shape[1]
        for offset in range(0, len(data), CHUNK_BYTES):
            self._send(("data", take.clip, start + offset), data[offset : offset + CHUNK_BYTES])

    def then(self, old: Take, new: Take) -> None:
        """A voice playing `old` (a streamed loop) goes on with `new` when it next wraps."""
        self._send(("then", old.clip, new.clip))

    def _new_take(self, frames: int, channels: int, streamed: bool, seed: int, key: str, loop_frames: int) -> Take:
        clip_id = next(self._clip_ids)
        self._send(("clip", clip_id, frames, channels, streamed))
        take = Take(clip_id, seed, key, loop_frames, self.serial)
        weakref.finalize(take, self._freed.append, clip_id)  # sent with the next message: never from a finalizer
        return take

    # ------------------------------------------------------------ commands

    def play(self, take: Take, gain: float, mode: int, choke: int, tag: str, start: int = 0) -> int:
        """Starts a voice (at absolute frame `start`, or now); returns the voice number."""
        if not take.clip or take.player != self.serial:
            raise NoAudioDevice("this take is not loaded in the running audio process (yet)")
        v = self._pick_voice()
        self._tags[v] = tag
        self._send(("play", v, take.clip, float(gain), mode, choke, tag, int(start), take.loop_frames))
        return v

    def _pick_voice(self) -> int:
        """A free voice, else the oldest (round robin)."""
        active = self._status[audio_process.ACTIVE :]
        for i in range(self.voices):
            v = (self._next_voice + i) % self.voices
            if not active[v]:
                self._next_voice = (v + 1) % self.voices
                return v
        v = self._next_voice
        self._next_voice = (v + 1) % self.voices
        return v

    def stop(self, tag: str | None, gate_only: bool = False) -> int:
        """Fades out the voices tagged `tag` (None: all); returns how many were playing."""
        active = self._status[audio_process.ACTIVE :]
        count = sum(1 for v in range(self.voices) if active[v] and (tag is None or self._tags[v] == tag))
        self._send(("stop", tag, gate_only))
        return count

    def set_master_db(self, db: float) -> None:
        self.master_db = float(db)
        self._send(("master", self.master_db))

    def poll(self) -> None:
        """Sends what is pending (freed clips); the stage calls it a few times a second."""
        if self._freed:
            self._send(None)

    def _send(self, msg: tuple | None, data: memoryview | None = None) -> None:
        if not self.alive:
            code = self.process.exitcode if self.process is not None else "closed"
            raise NoAudioDevice(f"the audio process has stopped (exit code {code})")
        with self._send_lock:
            try:
                while self._freed:
                    self._conn.send(("free", self._freed.popleft()))
                if msg is not None:
                    self._conn.send(msg)
                if data is not None:
                    self._conn.send_bytes(data)
            except OSError as err:
                raise NoAudioDevice(f"the audio process has stopped: {err}") from None

    # ------------------------------------------------------------ state (written by the callback each period)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    @property
    def frame(self) -> int:
        return int(self._status[audio_process.FRAME])

    @property
    def underruns(self) -> int:
        return int(self._status[audio_process.UNDERRUNS])

    @property
    def errors(self) -> int:
        return int(self._status[audio_process.ERRORS])

    @property
    def stolen(self) -> int:
        return int(self._status[audio_process.STOLEN])

    @property
    def starved(self) -> int:
        """Streamed voices faded out because their audio stopped arriving."""
        return int(self._status[audio_process.STARVED])

    @property
    def realtime(self) -> bool | None:
        """Whether the stream's callback runs with realtime scheduling; None before its first call."""
        value = int(self._status[audio_process.REALTIME])
        return None if value == 0 else value == 2

    def voices_playing(self) -> int:
        return int(self._status[audio_process.PLAYING])

    def clips_held(self) -> int:
        """Clips the audio process holds (freed ones included until their last voice has ended)."""
        return int(self._status[audio_process.HELD])

    def close(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(OSError, ValueError), self._send_lock:
            self._conn.send(("close",))
        self.process.join(5)
        if self.process.is_alive():
            log.warning("the audio process did not stop; terminating it")
            self.process.terminate()
            self.process.join(5)
        self._conn.close()
        self.process = None
