"""The value ranges sao-live accepts, in one table, and the checks that apply them: OSC, set
files, settings, the CLI and the engine all check against these, so a value valid in one place
is valid in all."""

from __future__ import annotations

import math
import random
from typing import Any

from .errors import RequestError

SEED_MAX = 2**31 - 1  # seeds travel as OSC int32
PICKED_SEED_MAX = 2**24 - 1  # seeds the daemon picks survive float32 clients (Pd) exactly

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


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(value: Any, name: str, code: str, lo: float, hi: float, *, integer: bool = False, lo_open: bool = False):
    """A finite number in [lo, hi] (or (lo, hi]); numeric strings are read, integers must be whole."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RequestError(code, f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(code, f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise RequestError(code, f"{name} must be a finite number, got {value!r}")
    if integer:
        if value != int(value):
            raise RequestError(code, f"{name} must be a whole number, got {value!r}")
        value = int(value)
    inside = (lo < value if lo_open else lo <= value) and value <= hi
    if not inside:
        bracket = "(" if lo_open else "["
        raise RequestError(code, f"{name} must be in {bracket}{lo:g}, {hi:g}], got {value!r}")
    return value


def check_seed(value: Any, random_ok: bool = True) -> int | None:
    """A seed as given: a whole number in [0, SEED_MAX], or -1 (when `random_ok`): None, pick one."""
    seed = _num(value, "seed", "bad_seed", -math.inf, math.inf, integer=True)
    if random_ok and seed == -1:
        return None
    if not 0 <= seed <= SEED_MAX:
        also = " or -1 (random)" if random_ok else ""
        raise RequestError("bad_seed", f"seed must be in [0, {SEED_MAX}]{also}, got {seed}")
    return seed


def pick_seed() -> int:
    """A random seed, small enough to survive float32 clients (Pd) exactly."""
    return random.randint(0, PICKED_SEED_MAX)


def check_seconds(value: Any, window: float, model: str, length: str = "") -> float:
    """A clip length: a finite number in (0, window] of `model`. `length` says how it was asked for."""
    seconds = float(_num(value, "seconds", "bad_seconds", -math.inf, math.inf))
    if not 0 < seconds <= window + 1e-9:
        raise RequestError(
            "bad_seconds", f"seconds must be in (0, {window:.2f}] for {model}, got {length or f'{seconds:g}'}"
        )
    return seconds
