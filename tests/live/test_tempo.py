"""Tempo: the beat grid of a fixed tempo, quantised launch frames, and MIDI clock, on a clock we set."""

from __future__ import annotations

import time

import pytest

from sao_live.live.tempo import PPQN, Tempo

RATE = 48000


class Clock:
    """The mixer's frame clock, moved by hand: (frame, monotonic seconds)."""

    def __init__(self, frame=0):
        self.frame = frame

    def __call__(self):
        return self.frame, time.monotonic()


def test_fixed_tempo_grid():
    tempo = Tempo(120, RATE, Clock())
    assert tempo.frames_per_beat() == 24000 and tempo.beat(36000) == 1.5
    assert [tempo.next_boundary(f, "beat") for f in (0, 1, 24000, 24001)] == [0, 24000, 24000, 48000]
    assert [tempo.next_boundary(f, "bar") for f in (0, 1, 96000, 96001)] == [0, 96000, 96000, 192000]
    assert tempo.next_boundary(12345, "off") == 12345


def test_a_new_tempo_keeps_the_beat_where_it_is():
    clock = Clock(36000)  # beat 1.5 at 120 bpm
    tempo = Tempo(120, RATE, clock)
    tempo.set_bpm(90)
    assert tempo.bpm == 90.0 and tempo.beat(36000) == pytest.approx(1.5)
    assert tempo.beat(36000 + 32000) == pytest.approx(2.5)  # a beat is 32000 frames at 90 bpm
    assert tempo.next_boundary(36000, "beat") == 36000 + 16000


def test_stopped_midi_clock_launches_at_once():
    tempo = Tempo(120, RATE, Clock(), source="midi")
    tempo.midi_stop()
    assert not tempo.running and tempo.next_boundary(1, "bar") == 1
    tempo.midi_start()
    assert tempo.running and tempo.next_boundary(1, "bar") == 96000
    fixed = Tempo(120, RATE, Clock())
    fixed.midi_stop()  # a clock stop means nothing to a fixed tempo
    assert fixed.running


def _ticks(tempo: Tempo, count: int, interval: float) -> tuple[list, list[float]]:
    returned, times = [], []
    for _ in range(count):
        times.append(time.monotonic())
        returned.append(tempo.midi_tick())
        time.sleep(interval)
    return returned, times


def test_midi_clock_sets_the_tempo_and_the_grid():
    clock = Clock(RATE)
    tempo = Tempo(100, RATE, clock, source="midi")
    returned, times = _ticks(tempo, PPQN + 1, 0.02)
    # The grid follows the clock's mean of up to the last 24 intervals; the bpm everyone reads
    # moves (and is returned, to announce) only when it changes by more than 0.5.
    expected = 60.0 / (PPQN * (times[-1] - times[0]) / PPQN)
    assert returned[0] is None  # one tick says nothing yet
    changes = [bpm for bpm in returned if bpm is not None]
    assert changes and changes[0] == pytest.approx(expected, rel=0.1)
    assert all(abs(a - b) > 0.5 for a, b in zip([100.0, *changes], changes, strict=False))
    assert tempo.bpm == changes[-1] == pytest.approx(expected, rel=0.02)
    # The last tick (the 25th) is 24 ticks after Start: beat 1, at the clock's frame now.
    assert tempo.beat(RATE) == pytest.approx(1.0, abs=0.02)
    tempo.midi_start()  # Start: the next tick is beat 0; the grid moves from the second on
    _ticks(tempo, 2, 0.02)
    assert tempo.beat(RATE) == pytest.approx(1 / PPQN, abs=0.01)


def test_midi_clock_changes_nothing_under_another_source():
    tempo = Tempo(100, RATE, Clock(), source="fixed")
    returned, _ = _ticks(tempo, PPQN + 1, 0.02)
    assert returned == [None] * (PPQN + 1)
    assert tempo.bpm == 100.0 and tempo.anchor == 0.0


def test_poll_link_without_a_session():
    tempo = Tempo(120, RATE, Clock())
    assert tempo.poll_link() is None
    tempo.close()
    assert tempo.link is None
