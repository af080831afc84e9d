"""A private JACK server on its dummy backend, and a JACK client that records what the daemon plays.

The server is jackd2 (`-d dummy`, no sound card needed); the recorder is the JACK-Client
package (a library others wrote), with input ports connected to PortAudio's outputs. Its
process callback copies each period into one preallocated buffer and notes the period's
JACK frame time; tests mark a position, act, and wait for frames after the mark.

The test server runs in jackd's default (asynchronous) mode, as a live setup does. There the
next cycle starts on time even when a client is still busy; on a loaded machine the recorder
(non-realtime Python) can run late and miss or repeat a period, and its copy is then shifted
from there on although the player played every frame right. The recorder notes each period's
JACK frame time, so `skipped` tells such a gap in the recording apart from a fault of the
player, and a test can record again when, and only when, the recorder itself lost data.
(Synchronous mode, `-S`, was tried: a stalled client then stops the whole server clock, and
the daemon's watchdog rightly restarts its audio process.) Each period's `time.monotonic()`
is noted too, for latency measurements.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import threading
import time

import numpy as np

__all__ = ["PERIOD", "RATE", "JackServer", "Recorder", "late_clients", "onset"]

RATE = 48000
PERIOD = 256


def late_clients(log) -> collections.Counter:
    """How often a server's log (SAO_JACK_LOG) reported each client late ("client = NAME was not finished")."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return collections.Counter(re.findall(r"client = (.+?) was not finished", text))


class JackServer:
    def __init__(self, name: str, sync: bool = False):
        self.name = name
        os.environ["JACK_DEFAULT_SERVER"] = name  # every client of this session follows it
        os.environ["JACK_NO_START_SERVER"] = "1"
        # Tests run jackd without realtime scheduling (it works anywhere); SAO_JACK_REALTIME=1 asks
        # for SCHED_FIFO as a real setup would (root or rtprio limits needed), for the benchmarks.
        realtime = ["--realtime"] if os.environ.get("SAO_JACK_REALTIME") == "1" else ["--no-realtime"]
        mode = ["--sync"] if sync else []
        cmd = ["jackd", "-n", name, *realtime, *mode, "-d", "dummy", "-r", str(RATE), "-p", str(PERIOD)]
        # SAO_JACK_LOG=FILE keeps the server's messages (its xrun reports name the late client).
        log = os.environ.get("SAO_JACK_LOG")
        sink = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - the server owns it
        self.proc = subprocess.Popen(cmd, stdout=sink, stderr=sink)
        subprocess.run(["jack_wait", "-s", name, "-w", "-t", "10"], check=True, capture_output=True, timeout=15)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Recorder:
    """Records `channels` JACK inputs into a preallocated buffer of `seconds`."""

    def __init__(self, seconds: float = 120.0, channels: int = 2, name: str = "sao-test-rec"):
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.rate = self.client.samplerate
        self.buf = np.zeros((int(seconds * self.rate), channels), np.float32)
        self.n = 0
        self.period = self.client.blocksize
        self.frame_times = np.zeros(len(self.buf) // self.period + 1, np.int64)  # JACK's, per recorded period
        self.clock_times = np.zeros(len(self.buf) // self.period + 1)  # time.monotonic(), per recorded period
        self.cond = threading.Condition()
        self.ports = [self.client.inports.register(f"in_{i + 1}") for i in range(channels)]
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        self.frame_times[self.n // self.period] = self.client.last_frame_time
        self.clock_times[self.n // self.period] = time.monotonic()
        end = min(self.n + frames, len(self.buf))
        k = end - self.n
        for c, port in enumerate(self.ports):
            self.buf[self.n : end, c] = port.get_array()[:k]
        self.n = end
        with self.cond:
            self.cond.notify_all()

    def connect(self, source_prefix: str = "PortAudio", timeout: float = 10.0) -> list[str]:
        """Connects the first output ports whose name starts with `source_prefix` (waits for them)."""
        deadline = time.monotonic() + timeout
        while True:
            outs = [
                p.name for p in self.client.get_ports(is_output=True, is_audio=True) if p.name.startswith(source_prefix)
            ]
            if outs or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert outs, f"no JACK output port named {source_prefix}*: {[p.name for p in self.client.get_ports()]}"
        for src, dst in zip(outs, self.ports, strict=False):
            self.client.connect(src, dst)
        return outs

    def mark(self) -> int:
        return self.n

    def wait(self, frames_after: int, mark: int, timeout: float = 20.0) -> np.ndarray:
        """The recording from `mark` for `frames_after` frames, once that much has arrived."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.n < mark + frames_after:
                left = deadline - time.monotonic()
                assert left > 0, f"recorded only {self.n - mark} of {frames_after} frames"
                self.cond.wait(left)
        return self.buf[mark : mark + frames_after].copy()

    def sound(self, mark: int, threshold: float = 1e-4, timeout: float = 20.0) -> int:
        """The first recorded frame after `mark` whose level passes `threshold`, once it has arrived."""
        deadline = time.monotonic() + timeout
        seen = mark
        while True:
            n = self.n
            hit = onset(self.buf[seen:n], threshold)
            if hit is not None:
                return seen + hit
            seen = n
            left = deadline - time.monotonic()
            assert left > 0, f"no sound in the {n - mark} frames recorded since the mark"
            with self.cond:
                self.cond.wait(min(left, 0.1))

    def silence(self, frames: int = 4800, threshold: float = 1e-4, timeout: float = 20.0) -> int:
        """Waits until the last `frames` recorded are all below `threshold`; returns the position after them."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.n
            if n >= frames and onset(self.buf[n - frames : n], threshold) is None:
                return n
            left = deadline - time.monotonic()
            assert left > 0, "the output did not fall silent"
            with self.cond:
                self.cond.wait(min(left, 0.1))

    def seconds_to_sound(self, mark: int, sent: float, timeout: float = 2.0, threshold: float = 1e-4) -> float:
        """Seconds from `sent` (time.monotonic()) to the first sounding frame recorded after `mark`:
        when that frame's period reached the recorder, plus its place in the period."""
        frame = self.sound(mark, threshold, timeout)
        return float(self.clock_times[frame // self.period] - sent + (frame % self.period) / self.rate)

    def skipped(self, start: int, frames: int) -> list[int]:
        """JACK frame times where the recording of `frames` from `start` misses or repeats a period."""
        times = self.frame_times[start // self.period : (start + frames - 1) // self.period + 1]
        steps = np.diff(times) % 2**32  # JACK's frame time is 32 bits and wraps
        return [int(t) for t, step in zip(times[1:], steps, strict=True) if step != self.period]

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def onset(x: np.ndarray, threshold: float = 1e-4) -> int | None:
    """Index of the first frame whose absolute value passes `threshold`."""
    hits = np.flatnonzero(np.abs(x).max(axis=1) > threshold)
    return int(hits[0]) if len(hits) else None
