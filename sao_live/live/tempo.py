"""Tempo sources and quantised launch: fixed bpm, MIDI clock, or Ableton Link (aalink, optional).

A `Tempo` maps the mixer's frame clock to beats: `beat(frame)` and `next_boundary(frame,
unit)` give the frame of the next beat (unit 1) or bar (unit 4, 4/4) at which a quantised
voice starts. Fixed: the beat grid starts where the tempo was set. MIDI clock (24 ppqn): the
tempo is the mean of the last 24 tick intervals, Start puts beat 0 on the tick, and the grid
follows the ticks. Link: the session's beat at a host time, converted to frames through the
monotonic clock and the mixer's frame counter. Every method runs on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time

from ..musical_time import QUANTIZE_UNITS, TEMPO_SOURCES
from ..ranges import in_range

log = logging.getLogger(__name__)
PPQN = 24


def _no_player_clock() -> tuple[int, float]:
    return 0, time.monotonic()


class Tempo:
    """The one owner of the tempo: every reader of bpm (requests with bars, loop lengths, pad
    refills, /sao/get/bpm, quantised launch) asks this object."""

    def __init__(self, bpm: float, rate: int = 48000, frame_clock=_no_player_clock, source: str = "fixed"):
        """`frame_clock()` returns (frame, monotonic seconds) of the mixer's clock now (the audio
        supervisor sets it and `rate` once a player runs)."""
        self.bpm = float(bpm)
        self.rate = rate
        self.frame_clock = frame_clock
        self.source = source
        self.anchor = 0.0  # frame of beat 0
        self.running = True
        self._ticks: collections.deque = collections.deque(maxlen=PPQN + 1)
        self._tick_count = 0
        self.link = None
        self._clock_bpm: float | None = None  # MIDI clock's measured tempo, for the beat grid

    def frames_per_beat(self) -> float:
        bpm = self._clock_bpm if self.source == "midi" and self._clock_bpm else self.bpm
        return self.rate * 60.0 / bpm

    def set_bpm(self, bpm: float) -> None:
        """A new tempo (a fixed tempo's beat position stays continuous); the clock or Link
        source, if one runs, sets it again on its next change."""
        frame, _ = self.frame_clock()
        beat = self.beat(frame)
        self.bpm = float(bpm)
        if self.source == "fixed":
            self.anchor = frame - beat * self.frames_per_beat()

    def beat(self, frame: float) -> float:
        if self.source == "link" and self.link is not None:
            now_frame, now = self.frame_clock()
            return self._link_beat(now + (frame - now_frame) / self.rate)
        return (frame - self.anchor) / self.frames_per_beat()

    def next_boundary(self, frame: int, quantize: str) -> int:
        """The first frame at or after `frame` on the beat/bar grid; `frame` itself when off."""
        unit = QUANTIZE_UNITS[quantize]
        if not unit or not self.running:
            return frame
        beat = self.beat(frame)
        target = math.ceil(beat / unit - 1e-9) * unit
        return int(round(frame + (target - beat) * self.frames_per_beat()))

    async def use_source(self, source: str) -> None:
        """Follows `source` (TEMPO_SOURCES) from now on; link joins a Link session first (fixed
        when the optional aalink package is missing)."""
        if source not in TEMPO_SOURCES:
            raise ValueError(f"tempo source must be one of {', '.join(TEMPO_SOURCES)}, got {source!r}")
        if source == "link" and self.link is None:
            try:
                await self.start_link(asyncio.get_running_loop())
            except ImportError:
                log.warning(
                    "tempo_source link needs the optional aalink package (pip install sao-live[link]); fixed tempo"
                )
                source = "fixed"
        self.source = source

    # ------------------------------------------------------------ MIDI clock

    def midi_tick(self, at: float | None = None) -> float | None:
        """One clock message, received at monotonic time `at` (now when None); returns the new bpm when
        it moved by more than 0.5 (measured over up to a beat)."""
        now = time.monotonic() if at is None else at
        frame, t = self.frame_clock()
        self._ticks.append(now)
        self._tick_count += 1
        if len(self._ticks) < 2:
            return None
        span = self._ticks[-1] - self._ticks[0]
        bpm = 60.0 * (len(self._ticks) - 1) / (PPQN * span) if span > 0 else self.bpm
        if self.source != "midi" or not in_range("bpm", bpm):
            return None
        self._clock_bpm = bpm  # the grid follows the clock exactly...
        tick_frame = frame + (now - t) * self.rate
        self.anchor = tick_frame - (self._tick_count - 1) / PPQN * self.frames_per_beat()
        # ...while the bpm everyone reads moves only by more than 0.5, so loops keep hitting the cache
        if abs(bpm - self.bpm) > 0.5:
            self.bpm = round(bpm, 2)
            return self.bpm
        return None

    def midi_start(self) -> None:
        self._ticks.clear()
        self._tick_count = 0
        self.running = True

    def midi_stop(self) -> None:
        self.running = self.source != "midi"

    # ------------------------------------------------------------ Ableton Link

    async def start_link(self, loop) -> None:
        """Joins a Link session (aalink); ImportError when the `link` extra is not installed."""
        from aalink import Link

        self.link = Link(self.bpm, loop)
        self.link.quantum = 4
        self.link.enabled = True
        log.info("Ableton Link enabled at %.1f bpm", self.bpm)

    def _link_beat(self, at: float) -> float:
        # aalink reports the session's beat now; earlier or later frames follow the tempo
        self.bpm = float(self.link.tempo)
        return float(self.link.beat) + (at - time.monotonic()) * self.bpm / 60.0

    def poll_link(self) -> float | None:
        """The Link session's tempo when it changed (called by the daemon's tempo task)."""
        if self.link is None:
            return None
        bpm = float(self.link.tempo)
        if abs(bpm - self.bpm) > 1e-3:
            self.bpm = bpm
            return bpm
        return None

    def close(self) -> None:
        if self.link is not None:
            self.link.enabled = False
            self.link = None
