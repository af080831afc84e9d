"""The audio process: the output stream and its mixer, alone in a process of their own.

Why a process: the sounddevice callback is Python, so it needs the GIL every period (5.3 ms
at 256 frames / 48 kHz). Inside the daemon's control process the GIL is shared with the OSC
loop, clip preparation (soundfile, soxr) and the clip store; whenever one of them kept it
past a period, JACK gave up on our client for that cycle (an xrun). Here the callback's only
neighbour is one thread that reads commands from a pipe and hands them to the mixer.

Messages from the control process, in order on one pipe (`Player` sends them):
  ("clip", clip_id, frames, channels, streamed)   a clip arrives; its float32 audio follows as
  ("data", clip_id, byte_offset) + bytes     chunks, so a long clip never holds up a play; a
                                             streamed clip may play while its chunks arrive
  ("then", old_clip_id, new_clip_id)         a voice playing old goes on with new at its wrap
  ("free", clip_id)                          the control side dropped it
  ("play", voice, clip_id, gain, mode, choke, tag, start, loop_frames)
  ("stop", tag, gate_only)   ("master", db)   ("close",)
One message goes back: ("ready", rate, channels, device name, latency) or ("error", text).
Everything else the control side reads from `status`, a shared int64 array the callback
writes each period (layout below). The process ends on "close" or when the pipe closes
(the daemon exited, even by kill -9).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time

import numpy as np

from .mixer import Mixer, Play, Stop, Then
from .priority import raise_priority

log = logging.getLogger(__name__)

# status fields (HELD: clips this process holds, written by the reader; REALTIME: 0 before the first
# callback, then 2 if the callback's thread has realtime scheduling, else 1); voices' active flags from ACTIVE on
FRAME, UNDERRUNS, ERRORS, STOLEN, PLAYING, HELD, STARVED, REALTIME, ACTIVE = range(9)
MAX_BLOCK = 8192  # the largest period the mixer is sized for
RETIRE_GRACE = 1.0  # seconds a freed clip is kept after its last voice ended (a play may still be queued)


def callback_is_realtime() -> bool:
    """Whether the calling thread (the stream's callback) has realtime scheduling: with JACK, when
    the server runs realtime. macOS and Windows run audio callbacks in time-critical threads."""
    if not hasattr(os, "sched_getscheduler"):
        return True
    return os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR)


def status_size(voices: int) -> int:
    return ACTIVE + voices


def find_device(spec: str | int | None):
    """The sounddevice output device for `spec`: an index, or a substring of a name or host API.

    Returns (index, info) or (None, error text)."""
    import sounddevice as sd

    devices = sd.query_devices()
    apis = sd.query_hostapis()
    outputs = [(i, d) for i, d in enumerate(devices) if d["max_output_channels"] > 0]
    if not outputs:
        return None, "no audio output device on this machine"
    if spec is None or spec == "":
        try:
            index = sd.default.device[1]
        except Exception:  # noqa: BLE001
            index = -1
        if index is None or index < 0:
            index = outputs[0][0]
        return index, devices[index]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        i = int(spec)
        if i < len(devices) and devices[i]["max_output_channels"] > 0:
            return i, devices[i]
        return None, f"audio_device must be an output device index, got {spec!r}; see sao-live devices"
    low = spec.lower()
    for i, d in outputs:
        if low in d["name"].lower() or low in apis[d["hostapi"]]["name"].lower():
            return i, d
    names = ", ".join(f"{i}: {d['name']}" for i, d in outputs)
    return None, f"audio_device {spec!r} matches no output device; outputs: {names}"


class AudioProcess:
    """What runs in the audio process: the stream's callback and the command reader."""

    def __init__(self, conn, status, voices: int, master_db: float):
        self.conn = conn
        self.status = np.frombuffer(status, dtype=np.int64)  # shared with the control process
        self.voices = voices
        self.master_db = master_db
        self.mixer: Mixer | None = None
        self.clips: dict[int, np.ndarray] = {}
        self.filled: dict[int, np.ndarray] = {}  # streamed clips: frames written so far, in [0]
        self.retired: list[tuple[np.ndarray, float]] = []  # freed clips, with when they were last heard

    def callback(self, outdata, frames, time_info, status) -> None:
        m = self.mixer
        if status.output_underflow:
            m.underruns += 1
        if frames > m.max_block:  # never seen; silence rather than a crash
            outdata.fill(0.0)
            m.errors += 1
        else:
            m.render(outdata, frames)
        s = self.status
        s[FRAME], s[UNDERRUNS], s[ERRORS], s[STOLEN], s[STARVED] = m.frame, m.underruns, m.errors, m.stolen, m.starved
        playing = 0
        for v in range(m.voices):
            active = m.active[v]
            s[ACTIVE + v] = active
            playing += active
        s[PLAYING] = playing
        if not s[REALTIME]:
            s[REALTIME] = 2 if callback_is_realtime() else 1

    def open(self, device, blocksize: int) -> tuple:
        try:
            import sounddevice as sd
        except OSError as err:  # libportaudio missing
            return ("error", f"PortAudio is not available: {err}")
        index, info = find_device(device)
        if index is None:
            return ("error", info)
        name = f"{info['name']} ({sd.query_hostapis(info['hostapi'])['name']})"
        rate = int(info["default_samplerate"])
        channels = min(2, int(info["max_output_channels"]))
        self.mixer = Mixer(channels, MAX_BLOCK, self.voices, rate, self.master_db)
        try:
            self.stream = sd.OutputStream(
                device=index,
                samplerate=rate,
                channels=channels,
                dtype="float32",
                blocksize=blocksize,
                latency="low",
                callback=self.callback,
            )
            self.stream.start()
        except Exception as err:  # noqa: BLE001 - PortAudio's errors are plain exceptions
            return ("error", f"cannot start audio on {name}: {err}")
        return ("ready", rate, channels, name, float(self.stream.latency))

    def serve(self) -> None:
        """Reads commands until "close" or until the control process goes away."""
        swept = time.monotonic()
        while True:
            if time.monotonic() - swept > 0.25:
                self._sweep()
                swept = time.monotonic()
            self.status[HELD] = len(self.clips) + len(self.retired)
            try:
                if not self.conn.poll(0.25):
                    continue
                msg = self.conn.recv()
            except (EOFError, OSError):
                return
            kind = msg[0]
            if kind == "close":
                return
            try:
                self._handle(kind, msg)
            except (EOFError, OSError):
                return
            except Exception:  # noqa: BLE001 - a bad command must not stop the sound
                log.exception("audio process: command %r failed", kind)

    def _handle(self, kind: str, msg: tuple) -> None:
        m = self.mixer
        if kind == "play":
            _, voice, clip_id, gain, mode, choke, tag, start, loop_frames = msg
            filled = self.filled.get(clip_id)
            m.post(Play(voice, self.clips[clip_id], gain, mode, choke, tag, start, loop_frames, filled))
        elif kind == "then":
            m.post(Then(self.clips[msg[1]], self.clips[msg[2]]))
        elif kind == "stop":
            m.post(Stop(msg[1], msg[2]))
        elif kind == "master":
            m.set_master_db(msg[1])
        elif kind == "clip":
            _, clip_id, frames, channels, streamed = msg
            self.clips[clip_id] = np.zeros((frames, channels), np.float32)
            if streamed:
                self.filled[clip_id] = np.zeros(1, np.int64)
        elif kind == "data":
            _, clip_id, offset = msg
            clip = self.clips[clip_id]
            size = self.conn.recv_bytes_into(memoryview(clip).cast("B"), offset)
            if clip_id in self.filled:  # chunks arrive in order: the frames up to here are in
                self.filled[clip_id][0] = (offset + size) // (4 * clip.shape[1])
        elif kind == "free":
            self.filled.pop(msg[1], None)
            clip = self.clips.pop(msg[1], None)
            if clip is not None:
                self.retired.append((clip, time.monotonic()))
        else:
            log.warning("audio process: unknown command %r", kind)

    def _sweep(self) -> None:
        """Lets go of freed clips no voice plays any more, here rather than in the callback."""
        if not self.retired:
            return
        now = time.monotonic()
        keep = []
        for clip, heard in self.retired:
            if any(c is clip for c in self.mixer.clip):
                keep.append((clip, now))
            elif now - heard < RETIRE_GRACE:
                keep.append((clip, heard))
        self.retired = keep


def main(conn, status, device, voices: int, master_db: float, blocksize: int, nice: int, log_level: int) -> None:
    """The audio process's entry point (spawned by `Player.open`)."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s audio: %(message)s", stream=sys.stderr)
    raise_priority(nice, "the audio process")  # before the stream: its threads inherit it
    # The reader thread hands the GIL back within 1 ms when the callback asks for it.
    sys.setswitchinterval(0.001)
    proc = AudioProcess(conn, status, voices, master_db)
    reply = proc.open(device, blocksize)
    conn.send(reply)
    if reply[0] != "ready":
        return
    # A full garbage collection walks every object in the process (numpy, sounddevice, ...):
    # ~5 ms here, a whole period, and it can start inside the callback. Freezing what exists
    # now leaves the collector only the few objects made later.
    gc.collect()
    gc.freeze()
    try:
        proc.serve()
    finally:
        proc.stream.stop()
        proc.stream.close()
