"""The value ranges (docs/osc.md's error codes name them) at their edges, and the seed and seconds checks' answers."""

from __future__ import annotations

import math

import pytest

from sao_live.errors import RequestError
from sao_live.ranges import RANGES, SEED_MAX, check_seconds, check_seed, describe, in_range

DOCUMENTED = {
    "bpm": (20, 400),
    "gain": (0, 4),
    "velocity": (0, 127),
    "master_db": (-60, 6),
    "velocity_curve": (0.1, 4),
}


@pytest.mark.parametrize(("name", "edges"), DOCUMENTED.items())
def test_each_range_holds_its_edges_and_nothing_past_them(name, edges):
    lo, hi = edges
    assert RANGES[name] == (lo, hi) and describe(name) == f"a number in [{lo:g}, {hi:g}]"
    assert in_range(name, lo) and in_range(name, hi) and in_range(name, float(lo))
    assert not in_range(name, lo - 1e-6) and not in_range(name, hi + 1e-6)
    assert not in_range(name, math.nan) and not in_range(name, str(lo)) and not in_range(name, None)


def test_a_bool_is_no_number():
    assert in_range("gain", 1) and not in_range("gain", True) and not in_range("velocity", False)


def test_the_seed_checks_answer():
    assert (check_seed(7), check_seed(SEED_MAX), check_seed(-1), check_seed("12")) == (7, SEED_MAX, None, 12)
    with pytest.raises(RequestError, match=r"^seed must be in \[0, 2147483647\] or -1 \(random\), got -2$"):
        check_seed(-2)
    with pytest.raises(RequestError, match=r"^seed must be in \[0, 2147483647\], got -1$"):
        check_seed(-1, random_ok=False)
    with pytest.raises(RequestError, match="^seed must be a number, got 'x'$") as err:
        check_seed("x")
    assert err.value.code == "bad_seed"


def test_the_seconds_check_answers():
    assert check_seconds(47.5, 47.5, "m") == 47.5 and check_seconds("0.5", 47.5, "m") == 0.5
    with pytest.raises(RequestError, match=r"^seconds must be in \(0, 47.50\] for m, got 50$") as err:
        check_seconds(50, 47.5, "m")
    assert err.value.code == "bad_seconds"
    with pytest.raises(RequestError, match=r"got 64 bars at 120 bpm$"):
        check_seconds(128.0, 47.5, "m", "64 bars at 120 bpm")
    with pytest.raises(RequestError, match="^seconds must be a number, got 'long'$") as err:
        check_seconds("long", 47.5, "m")
    assert err.value.code == "bad_seconds"
