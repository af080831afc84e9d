"""Tempo: the beat grid of a fixed tempo, quantised launch frames, MIDI clock on tick times we choose,
and Ableton Link against a real second Link peer (both in a network namespace of their own)."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from sao_live.live.tempo import PPQN, Tempo

from ..needs import need
from . import private_network

RATE = 48000


class Clock:
    """The mixer's frame clock, moved by hand: (frame, monotonic seconds); the time is now unless set."""

    def __init__(self, frame=0, at=None):
        self.frame, self.at = frame, at

    def __call__(self):
        return self.frame, time.monotonic() if self.at is None else self.at


def test_fixed_tempo_grid():
    tempo = Tempo(120, RATE, Clock())
    assert tempo.frames_per_beat() == 24000 and tempo.beat(36000) == 1.5
    assert [tempo.next_boundary(f, "beat") for f in (0, 1, 24000, 24001)] == [0, 24000, 24000, 48000]
    assert [tempo.next_boundary(f, "bar") for f in (0, 1, 96000, 96001)] == [0, 96000, 96000, 192000]
    assert tempo.next_boundary(12345, "off") == 12345


def test_without_a_player_the_grid_starts_at_frame_0_at_48_khz():
    tempo = Tempo(120)  # the daemon's Tempo before an audio device runs
    assert (tempo.source, tempo.rate, tempo.frames_per_beat(), tempo.beat(0)) == ("fixed", 48000, 24000, 0.0)
    tempo.set_bpm(60)  # the frame clock stands at 0: beat 0 stays there
    assert tempo.beat(0) == 0.0 and tempo.beat(48000) == 1.0


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


# ---------------------------------------------------------------- MIDI clock, on tick times we choose

T0 = 1000.0  # the monotonic time at which the frame clock below reads frame F0
F0 = 5 * RATE


def _midi(bpm: float = 100.0) -> Tempo:
    return Tempo(bpm, RATE, Clock(F0, T0), source="midi")


def _frame_at(t: float) -> float:
    return F0 + (t - T0) * RATE


def _times(start: float, bpm: float, count: int) -> list[float]:
    return [start + i * 60.0 / (bpm * PPQN) for i in range(count)]


def test_the_clock_grid_follows_the_mean_of_the_last_24_intervals():
    tempo = _midi(100.0)
    assert tempo.frames_per_beat() == RATE * 60 / 100  # no tick yet: the set tempo
    times = _times(T0, 120.0, 30)
    times += _times(times[-1] + 60.0 / (150.0 * PPQN), 150.0, 30)  # the clock speeds up
    assert tempo.midi_tick(times[0]) is None and tempo.frames_per_beat() == RATE * 60 / 100  # one tick: no tempo
    for n in range(2, len(times) + 1):
        tempo.midi_tick(times[n - 1])
        window = times[max(0, n - 1 - PPQN) : n]
        clock_bpm = 60.0 * (len(window) - 1) / (PPQN * (window[-1] - window[0]))
        assert tempo.frames_per_beat() == pytest.approx(RATE * 60 / clock_bpm, rel=1e-12), n
        # beat 0 is the first tick; every tick is 1/24 beat further, at the frame it arrived
        assert tempo.beat(_frame_at(times[n - 1])) == pytest.approx((n - 1) / PPQN, abs=1e-9), n


@pytest.mark.parametrize(
    ("clock_bpm", "told"),
    [(121.0, 121.0), (119.0, 119.0), (133.33333, 133.33), (120.4, None), (120.5, None)],
)
def test_the_bpm_everyone_reads_moves_only_by_more_than_half_a_bpm(clock_bpm, told):
    tempo = _midi(120.0)
    returned = [tempo.midi_tick(t) for t in _times(0.0, clock_bpm, PPQN + 1)]
    assert returned == [None, told] + [None] * (PPQN - 1)  # told once, rounded to 0.01
    assert tempo.bpm == (told or 120.0)
    assert tempo.frames_per_beat() == pytest.approx(RATE * 60 / clock_bpm, rel=1e-9)  # the grid: the clock's own


@pytest.mark.parametrize(("clock_bpm", "followed"), [(20.0, True), (400.0, True), (19.99, False), (400.01, False)])
def test_the_clock_is_followed_inside_20_to_400_bpm(clock_bpm, followed):
    tempo = _midi(100.0)
    tempo.midi_tick(0.0)
    told = tempo.midi_tick(60.0 / (clock_bpm * PPQN))
    if followed:
        assert told == pytest.approx(clock_bpm) and tempo.bpm == told
        assert tempo.frames_per_beat() == pytest.approx(RATE * 60 / clock_bpm)
        assert tempo.beat(_frame_at(60.0 / (clock_bpm * PPQN))) == pytest.approx(1 / PPQN)
    else:  # a broken clock (or a stray tick) moves nothing
        assert told is None and tempo.bpm == 100.0 and tempo.frames_per_beat() == RATE * 60 / 100
        assert tempo.anchor == 0.0


def test_two_ticks_at_the_same_instant_change_nothing():
    tempo = _midi(100.0)
    assert [tempo.midi_tick(T0), tempo.midi_tick(T0)] == [None, None]
    assert tempo.bpm == 100.0 and tempo.frames_per_beat() == RATE * 60 / 100


def test_start_measures_afresh_and_makes_the_next_tick_beat_0():
    tempo = _midi(120.0)
    for t in _times(T0, 120.0, 10):
        tempo.midi_tick(t)
    tempo.midi_stop()
    tempo.midi_start()  # two seconds later: the pause is no tick interval
    restart = _times(T0 + 2.0, 120.0, 2)
    tempo.midi_tick(restart[0])
    assert tempo.midi_tick(restart[1]) is None and tempo.frames_per_beat() == pytest.approx(24000)
    assert tempo.beat(_frame_at(restart[0])) == pytest.approx(0.0, abs=1e-9)
    assert tempo.beat(_frame_at(restart[1])) == pytest.approx(1 / PPQN, abs=1e-9)


def test_midi_clock_in_real_time():
    # what the MIDI router does: no tick time given, the tick is now
    clock = Clock(RATE)
    tempo = Tempo(100, RATE, clock, source="midi")
    times = []
    for _ in range(PPQN + 1):
        times.append(time.monotonic())
        tempo.midi_tick()
        time.sleep(0.02)
    expected = 60.0 / (times[-1] - times[0])
    assert tempo.bpm == pytest.approx(expected, rel=0.02)
    assert tempo.beat(RATE) == pytest.approx(1.0, abs=0.02)  # the last tick (the 25th) is beat 1, at the clock's now


def test_midi_clock_changes_nothing_under_another_source():
    tempo = Tempo(100, RATE, Clock(), source="fixed")
    assert [tempo.midi_tick(t) for t in _times(T0, 120.0, PPQN + 1)] == [None] * (PPQN + 1)
    assert tempo.bpm == 100.0 and tempo.anchor == 0.0


# ---------------------------------------------------------------- sources, and Ableton Link


def test_sources_by_name_and_link_missing(monkeypatch):
    # No real part can stand in for an uninstalled aalink: a None in sys.modules makes its import fail
    # the way a missing package does.
    monkeypatch.setitem(sys.modules, "aalink", None)
    tempo = Tempo(120, RATE, Clock())
    with pytest.raises(ValueError, match="tempo source must be one of fixed, midi, link, got 'ableton'"):
        asyncio.run(tempo.use_source("ableton"))
    for source, now in [("midi", "midi"), ("link", "fixed"), ("fixed", "fixed"), ("midi", "midi")]:
        asyncio.run(tempo.use_source(source))
        assert (tempo.source, tempo.link) == (now, None), source
    assert tempo.poll_link() is None
    tempo.close()
    assert tempo.link is None


def test_link_source_before_its_session_uses_the_fixed_grid():
    tempo = Tempo(120, RATE, Clock(), source="link")  # no session joined yet
    assert tempo.beat(36000) == 1.5 and tempo.next_boundary(1, "bar") == 96000


def _link_session() -> dict:
    """A Tempo joins a peer's session; the peer moves its tempo by half a bpm, then forces the session's
    beat to 10.3 and moves the tempo again. Link lines a peer's count up with the session's modulo that peer's quantum,
    near where its own count was: 10.3 beats away, only a quantum of 4 puts our bar lines on the
    peer's. Returns what the Tempo reads, each beside the peer's value at the same moment."""
    from aalink import Link

    async def main() -> dict:
        out: dict = {}
        loop = asyncio.get_running_loop()
        peer = Link(60.0, loop)
        peer.quantum, peer.enabled = 4, True
        start = time.monotonic()  # the mixer's frame clock: frame 0 now, running at RATE
        tempo = Tempo(60, RATE, lambda: (round((time.monotonic() - start) * RATE), time.monotonic()))
        await tempo.use_source("link")
        deadline = time.monotonic() + 10
        while not (tempo.link.num_peers and peer.num_peers) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        out["source"], out["peers"], out["same_tempo"] = tempo.source, peer.num_peers, tempo.poll_link()
        peer.tempo = 60.5  # a peer moves the session's tempo by half a bpm: told once
        polled = None
        while polled is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            polled = tempo.poll_link()
        out["moved"], out["bpm"], out["then"] = polled, tempo.bpm, tempo.poll_link()
        peer.quantum = 1000  # forcing the beat keeps its phase over the quantum: 1000 makes it 10.3 itself
        peer.force_beat(10.3)
        peer.quantum, peer.tempo = 4, 61.0  # 4/4 bars; the new tempo travels with the forced beat
        while abs(tempo.link.tempo - 61.0) > 1e-3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        frame = tempo.frame_clock()[0]
        out["beat"], out["peer_beat"] = tempo.beat(frame), peer.beat
        out["a_second_later"] = tempo.beat(frame + RATE) - tempo.beat(frame)
        out["in_two_seconds"], out["peer_now"] = tempo.beat(frame + 2 * RATE), peer.beat
        bar, beat = tempo.next_boundary(frame, "bar"), tempo.next_boundary(frame, "beat")
        out["bar"], out["beat_unit"] = (bar - frame, tempo.beat(bar)), (beat - frame, tempo.beat(beat))
        out["bpm_read_with_the_beat"] = tempo.bpm  # no poll since the change
        link = tempo.link
        await tempo.use_source("fixed")  # the session stays joined, the fixed grid counts again
        out["fixed"] = (tempo.link is link, tempo.beat(0), tempo.beat(RATE))
        await tempo.use_source("link")  # no second session
        out["rejoined_same"] = tempo.link is link
        tempo.close()
        while peer.num_peers and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        out["after_close"] = (tempo.link, peer.num_peers, tempo.poll_link())
        peer.enabled = False
        return out

    return asyncio.run(main())


def _bars_apart(a: float, b: float) -> float:
    """How far a and b are from lying a whole number of bars (4 beats) apart, in beats."""
    off = (a - b) % 4
    return min(off, 4 - off)


def test_a_link_peer_sets_the_tempo_and_the_bar_lines():
    need("the Link test (pip install sao-live[link])", tools=["ip"], modules=["aalink"])
    if not private_network.can_unshare():
        need("the Link test", problems=["a network namespace of its own (unshare: root or user namespaces)"])
    out = private_network.run(_link_session)
    assert out["source"] == "link" and out["peers"] == 1 and out["same_tempo"] is None
    assert out["moved"] == pytest.approx(60.5, abs=1e-3) and out["bpm"] == out["moved"] and out["then"] is None
    assert _bars_apart(out["beat"], out["peer_beat"]) < 0.01  # our bars start where the peer's do
    # beats follow the session's tempo now, before the daemon's next poll, and so does the bpm
    assert out["a_second_later"] == pytest.approx(61 / 60, abs=1e-4)
    assert out["bpm_read_with_the_beat"] == pytest.approx(61, abs=1e-3)
    assert _bars_apart(out["in_two_seconds"], out["peer_now"] + 2 * 61 / 60) < 0.01
    (bar_in, bar_beat), (beat_in, beat_beat) = out["bar"], out["beat_unit"]
    assert 0 <= bar_in <= 4 * RATE and _bars_apart(bar_beat, 0) < 1e-3  # the next bar line
    assert 0 <= beat_in <= RATE and abs(beat_beat - round(beat_beat)) < 1e-3 and beat_in <= bar_in
    assert out["fixed"] == (True, 0.0, pytest.approx(61 / 60)) and out["rejoined_same"]
    assert out["after_close"] == (None, 0, None)
