"""When a streamed clip may start: never before it can play to its end without running dry."""

from __future__ import annotations

import numpy as np
import pytest

from sao_live.events import ClipStream
from sao_live.live.streamed import LOOP_MARGIN_SECONDS, MARGIN_SECONDS, SAFETY, start_time

SR = 44100


def stream(total_s: float, loop_s: float | None = None) -> ClipStream:
    return ClipStream("k" * 32, 1, SR, round(total_s * SR), loop_s)


def simulate(total_s: float, speed: float, chunk_s: float) -> tuple[float, list[tuple[float, float]]]:
    """Audio decoded at `speed` x real time arrives in chunks of `chunk_s` seconds (decoding began at 0).
    The player plans a start at each arrival and starts then unless the next chunk comes first (as
    StreamedPlay's timer does). Returns (start time, [(arrival time, audio seconds there)])."""
    s, arrivals, plans = stream(total_s), [], []
    while s.decoded < s.total:
        n = min(round(chunk_s * SR), s.total - s.decoded)
        t = (s.decoded + n) / SR / speed
        s.add(np.zeros((2, n), np.float32), t)
        arrivals.append((t, s.decoded / SR))
        plans.append(start_time(s, t))
    for k, (t, _) in enumerate(arrivals):
        following = arrivals[k + 1][0] if k + 1 < len(arrivals) else float("inf")
        if plans[k] is not None and plans[k] < following:
            return max(plans[k], t), arrivals
    raise AssertionError("never started")


@pytest.mark.parametrize("speed", [0.5, 0.9, 1.0, 1.6, 3.0, 20.0])
@pytest.mark.parametrize("total_s", [1.0, 11.9])
@pytest.mark.parametrize("chunk_s", [0.3, 1.5])
def test_a_voice_started_by_the_rule_never_runs_dry(total_s, speed, chunk_s):
    start, arrivals = simulate(total_s, speed, chunk_s)
    there = 0.0  # audio seconds there when each chunk arrives
    for t, audio in arrivals:
        if t > start:  # the playhead must not have reached the end of what was there
            assert t <= start + there - MARGIN_SECONDS + 1e-9, (t, start, there)
        there = audio
    assert start + total_s >= arrivals[-1][0] + MARGIN_SECONDS - 1e-9


def test_slower_decoding_waits_longer():
    starts = [simulate(11.9, speed, 0.5)[0] for speed in (0.8, 1.6, 3.0)]
    assert starts[0] > starts[1] > starts[2]
    assert starts[0] > 11.9 / 0.8 - 11.9  # slower than real time: most of it is decoded before it starts


def test_nothing_to_go_by_before_audio_arrives_and_at_once_when_complete():
    s = stream(2.0)
    assert start_time(s, 10.0) is None
    s.add(np.zeros((2, s.total), np.float32), 1.0)
    assert s.state == "complete" and start_time(s, 10.0) == 10.0


def test_the_rule_in_numbers():
    s = stream(11.9)
    s.add(np.zeros((2, 2 * SR), np.float32), 1.0)  # 2 s of audio decoded in 1 s: 2x real time
    rest = (11.9 - 2.0) / 2.0 * SAFETY
    assert start_time(s, 5.0) == pytest.approx(5.0 + rest + MARGIN_SECONDS - 2.0)
    loop = stream(8.02, loop_s=1.5)
    loop.add(np.zeros((2, 2 * SR), np.float32), 1.0)
    rest = (8.02 - 2.0) / 2.0 * SAFETY  # a loop's first pass (1.5 s) must outlast the rest
    assert start_time(loop, 5.0) == pytest.approx(5.0 + rest + MARGIN_SECONDS + LOOP_MARGIN_SECONDS - 1.5)


def test_a_short_clip_waits_for_the_work_its_last_samples_need():
    """Figures of a 1 s one-shot streamed at Small's size (this machine, 2026-11-30): its last
    push decodes 6 frames and flushes every layer's lag, past the clip's end: 1.25 s of work
    for 0.23 s of audio. Counted in samples the rest looked 2x real time and the voice ran dry;
    counted in the decoder's work it waits until the audio is there."""
    ratio, frames = 2048, 38  # the decoder's upsampling, the frames it decodes for 1 s
    s = stream(1.0)
    s.add(np.zeros((2, 6117), np.float32), 0.345, 6117 / (frames * ratio))
    s.add(np.zeros((2, 33765 - 6117), np.float32), 1.203, 33765 / (frames * ratio))
    arrived, last = 100.0, 100.0 + 2.448 - 1.203  # the last chunk came 1.245 s after the second
    start = start_time(s, arrived)
    assert start + 33765 / SR >= last + MARGIN_SECONDS  # what is there outlasts the wait for the rest
    by_samples = stream(1.0)
    by_samples.add(np.zeros((2, 33765), np.float32), 1.203)  # the old count: work in proportion to samples
    assert start_time(by_samples, arrived) + 33765 / SR < last  # it would have run dry
