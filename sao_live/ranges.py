"""The value ranges sao-live accepts, in one table: OSC, set files, settings and the CLI check
against these, so a value valid in one place is valid in all."""

from __future__ import annotations

# name: (lowest, highest), both included
RANGES: dict[str, tuple[float, float]] = {
    "bpm": (20.0, 400.0),
    "gain": (0.0, 4.0),
    "velocity": (0.0, 127.0),  # OSC pads take 0-1 or MIDI's 0-127
    "master_db": (-60.0, 6.0),
    "velocity_curve": (0.1, 4.0),
}


def in_range(name: str, value) -> bool:
    """True for a real number (not a bool) inside RANGES[name]."""
    lo, hi = RANGES[name]
    return isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi


def describe(name: str) -> str:
    lo, hi = RANGES[name]
    return f"a number in [{lo:g}, {hi:g}]"
