"""Musical time: 4/4 bars to seconds and frames, the launch grids and the tempo sources by name."""

from __future__ import annotations

import pytest

from sao_live.musical_time import BEATS_PER_BAR, QUANTIZE_UNITS, TEMPO_SOURCES, bars_to_seconds, loop_frames


def test_a_bar_is_four_beats():
    assert BEATS_PER_BAR == 4
    assert bars_to_seconds(1, 120) == 2.0 and bars_to_seconds(2, 60) == 8.0 and bars_to_seconds(0.5, 240) == 0.5


@pytest.mark.parametrize(("bars", "bpm"), [(1, 90), (3, 133.333), (0.25, 97.5), (7, 400), (256, 20)])
def test_bars_to_seconds_is_the_same_float_as_bars_times_240_over_bpm(bars, bpm):
    # request.py, the worker and the pads all derive loop lengths from it: one rounding, not several
    assert bars_to_seconds(bars, bpm) == bars * 240.0 / bpm


@pytest.mark.parametrize(
    ("bars", "bpm", "rate", "frames"),
    [
        (1, 120, 48000, 96000),
        (1, 120, 44100, 88200),
        (2, 90, 48000, 256000),
        (1, 110, 44100, 96218),  # 96218.18: rounded down
        (1, 130, 44100, 81415),  # 81415.38
        (1, 70, 44100, 151200),
        (3, 133, 48000, 259850),  # 259849.62: rounded up
    ],
)
def test_loop_frames_is_the_loop_length_rounded_to_a_sample(bars, bpm, rate, frames):
    assert loop_frames(bars, bpm, rate) == frames and isinstance(loop_frames(bars, bpm, rate), int)


def test_launch_grids_count_beats_between_launch_points():
    # the words /sao/set quantize, set files and --quantize accept, and what each means
    assert QUANTIZE_UNITS == {"off": 0, "beat": 1, "bar": BEATS_PER_BAR}


def test_tempo_sources_by_name():
    assert TEMPO_SOURCES == ("fixed", "midi", "link")
