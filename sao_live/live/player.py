"""The player: one sounddevice output stream that runs the Mixer, and clips made ready for it.

`Player.open(device)` picks a device by index or by a substring of its name or host API
(`JACK`), at that device's default rate, and starts the stream; when there is no device it
raises `NoAudioDevice` and the daemon carries on without sound (export only). `prepare`
turns a clip file into what the callback plays: float32 (frames, channels) at the device
rate, resampled once with soxr (loops cyclically, so the seam stays smooth, and to their
exact length in device frames). It reads files, so it runs on a worker thread, never in
the callback. Public methods check state and post commands to the mixer's queue.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SaoLiveError
from .mixer import Mixer, Play, Stop

log = logging.getLogger(__name__)
LOOP_PAD = 256  # frames of context on each side of a loop when resampling it cyclically


class NoAudioDevice(SaoLiveError, RuntimeError):
    code = "no_audio"


@dataclass(frozen=True)
class Take:
    """One playable clip: audio at the device rate, and where it came from."""

    audio: np.ndarray  # float32 (frames, channels), C-contiguous
    seed: int
    key: str
    loop_frames: int = 0  # 0: not a loop


def prepare(path: str | Path, rate: int, channels: int, seed: int = 0, key: str = "",
            loop_seconds: float | None = None) -> Take:  # fmt: skip
    """Reads a clip file and resamples it to `rate` (soxr, high quality), once."""
    import soundfile as sf
    import soxr

    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (frames, channels)
    if audio.shape[1] < channels:
        audio = np.repeat(audio[:, :1], channels, axis=1)
    audio = audio[:, :channels]
    loop_frames = 0
    if loop_seconds:
        n = min(len(audio), LOOP_PAD)
        ring = np.concatenate([audio[-n:], audio, audio[:n]])  # the loop's neighbours on both sides
        out = soxr.resample(ring, sr, rate, quality="HQ") if sr != rate else ring
        loop_frames = round(loop_seconds * rate)
        start = round(n * rate / sr)
        audio = out[start : start + loop_frames]
        if len(audio) < loop_frames:
            audio = np.concatenate([audio, out[: loop_frames - len(audio)]])
    elif sr != rate:
        audio = soxr.resample(audio, sr, rate, quality="HQ")
    return Take(np.ascontiguousarray(audio, dtype=np.float32), seed, key, loop_frames)


def find_device(spec: str | int | None):
    """The sounddevice output device for `spec`: an index, or a substring of a name or host API."""
    import sounddevice as sd

    devices = sd.query_devices()
    apis = sd.query_hostapis()
    outputs = [(i, d) for i, d in enumerate(devices) if d["max_output_channels"] > 0]
    if not outputs:
        raise NoAudioDevice("no audio output device on this machine")
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
        raise NoAudioDevice(f"audio_device must be an output device index, got {spec!r}; see sao-live devices")
    low = spec.lower()
    for i, d in outputs:
        if low in d["name"].lower() or low in apis[d["hostapi"]]["name"].lower():
            return i, d
    names = ", ".join(f"{i}: {d['name']}" for i, d in outputs)
    raise NoAudioDevice(f"audio_device {spec!r} matches no output device; outputs: {names}")


class Player:
    """One output stream and its mixer. Create with `Player.open`; `close` stops it."""

    def __init__(self, voices: int = 32, master_db: float = -6.0):
        self.voices = voices
        self.master_db = master_db
        self.mixer: Mixer | None = None
        self.stream = None
        self.device_name = ""
        self.rate = 0
        self.channels = 2
        self.blocksize = 0
        self._next_voice = 0

    @classmethod
    def open(cls, device: str | int | None, voices: int = 32, master_db: float = -6.0,
             blocksize: int = 0) -> Player:  # fmt: skip
        """Opens and starts the stream; `NoAudioDevice` when there is none (or it cannot start)."""
        try:
            import sounddevice as sd
        except OSError as err:  # libportaudio missing
            raise NoAudioDevice(f"PortAudio is not available: {err}") from None
        self = cls(voices, master_db)
        # The callback needs the GIL every period (5 ms at 256 frames / 48 kHz). Python hands the
        # GIL over only every switch interval (5 ms by default), so a busy control thread made the
        # callback miss deadlines; 0.5 ms keeps it on time at a small cost in throughput.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        index, info = find_device(device)
        self.device_name = f"{info['name']} ({sd.query_hostapis(info['hostapi'])['name']})"
        self.rate = int(info["default_samplerate"])
        self.channels = min(2, int(info["max_output_channels"]))
        max_block = 8192
        self.mixer = Mixer(self.channels, max_block, voices, self.rate, master_db)
        try:
            self.stream = sd.OutputStream(device=index, samplerate=self.rate, channels=self.channels,
                                          dtype="float32", blocksize=blocksize, latency="low",
                                          callback=self._callback)  # fmt: skip
            self.stream.start()
        except Exception as err:  # noqa: BLE001 - PortAudio's errors are plain exceptions
            raise NoAudioDevice(f"cannot start audio on {self.device_name}: {err}") from None
        self.blocksize = blocksize
        log.info("audio: %s at %d Hz, %d channels, latency %.1f ms", self.device_name, self.rate, self.channels,
                 1000 * self.stream.latency)  # fmt: skip
        return self

    def _callback(self, outdata, frames, time, status) -> None:
        if status.output_underflow:
            self.mixer.underruns += 1
        if frames > self.mixer.max_block:  # never seen; silence rather than a crash
            outdata.fill(0.0)
            self.mixer.errors += 1
            return
        self.mixer.render(outdata, frames)

    # ------------------------------------------------------------ commands

    def play(self, take: Take, gain: float, mode: int, choke: int, tag: str, start: int = 0) -> int:
        """Starts a voice (at absolute frame `start`, or now); returns the voice number."""
        if self.mixer is None:
            raise NoAudioDevice("the daemon runs without an audio device (export only)")
        v = self._pick_voice()
        self.mixer.post(Play(v, take.audio, float(gain), mode, choke, tag, start, take.loop_frames))
        return v

    def _pick_voice(self) -> int:
        """A free voice, else the oldest (round robin)."""
        m = self.mixer
        for i in range(m.voices):
            v = (self._next_voice + i) % m.voices
            if not m.active[v]:
                self._next_voice = (v + 1) % m.voices
                return v
        v = self._next_voice
        self._next_voice = (v + 1) % m.voices
        return v

    def stop(self, tag: str | None, gate_only: bool = False) -> int:
        """Fades out the voices tagged `tag` (None: all); returns how many were playing."""
        if self.mixer is None:
            raise NoAudioDevice("the daemon runs without an audio device (export only)")
        m = self.mixer
        count = sum(1 for v in range(m.voices) if m.active[v] and (tag is None or m.tag[v] == tag))
        m.post(Stop(tag, gate_only))
        return count

    @property
    def frame(self) -> int:
        return self.mixer.frame if self.mixer else 0

    def close(self) -> None:
        if self.stream is not None:
            try:
                self.stream.stop()
                self.stream.close()
            except Exception as err:  # noqa: BLE001
                log.warning("closing the audio stream: %s", err)
            self.stream = None
