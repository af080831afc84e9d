"""Musical time in one place: bars and beats to seconds and frames, launch grids, tempo sources.

All of sao-live counts in 4/4: a bar is four beats, so `bars` at `bpm` last bars * 240 / bpm
seconds.
"""

from __future__ import annotations

BEATS_PER_BAR = 4
QUANTIZE_UNITS = {"off": 0, "beat": 1, "bar": BEATS_PER_BAR}  # launch grid: beats between launch points
TEMPO_SOURCES = ("fixed", "midi", "link")  # a fixed bpm, MIDI clock, Ableton Link


def bars_to_seconds(bars: float, bpm: float) -> float:
    return bars * BEATS_PER_BAR * 60.0 / bpm  # the same float as bars * 240.0 / bpm (x4 is exact)


def loop_frames(bars: float, bpm: float, rate: int) -> int:
    """The exact loop length in samples: bars of 4/4 at `bpm`."""
    return round(bars_to_seconds(bars, bpm) * rate)
