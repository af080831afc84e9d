"""Sound before the clip is finished: a streamed trigger or loop starts while its clip still decodes.

Through the session's JACK dummy server, recorded by a JACK client (real parts). The tiny model
decodes an 11.5 s clip in a few seconds on these machines, so the voice starts while the worker
is still decoding, by the same rule as on a slow machine: when the rest is predicted to arrive
before the decoded audio has played.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import soundfile as sf
import soxr

from sao_live.live.player import read_clip
from sao_live.testing.jack import onset

from .jack_helpers import attempts, best_lag

RATE = 48000
FADE = RATE // 100  # the player's 10 ms fade


def faded_out(rec: np.ndarray, start: int) -> tuple[int, float]:
    """(frame where the sound ends, its level just before the fade), checking that it fades out: its
    last millisecond is below 15% of the level before it, where a cut would end at full level."""
    end = len(rec) - onset(rec[::-1], 1e-6)
    assert start + FADE < end < len(rec) - RATE // 10, (start, end, len(rec))
    level = float(np.abs(rec[end - 4 * FADE : end - FADE]).max())
    assert np.abs(rec[end - FADE // 10 : end]).max() < 0.15 * level  # its last millisecond: near silence
    return end, level


def test_a_streamed_trigger_plays_exactly_the_file_later_cached(live, recorder):
    for n, last in enumerate(attempts(recorder)):
        rid = f"stream-{n}"
        live.send("/sao/stop", "all")
        mark, since = recorder.silence(), live.mark()
        live.send("/sao/trigger", rid, f"a long streamed swell {n}", 8.0, "steps", 2, "export", 0)
        live.wait_reply(rid, ("/sao/playing", "/sao/error"), timeout=120, since=since)
        start = max(mark, recorder.sound(mark) - RATE // 10)
        addr, done = live.wait_reply(rid, timeout=120, since=since)
        assert addr == "/sao/done", done
        audio, sr = sf.read(done[1], dtype="float32", always_2d=True)  # the cached clip (no export)
        ref = soxr.resample(audio, sr, RATE, quality="HQ")
        rec = recorder.wait(len(ref) + RATE // 5, start, timeout=60)
        if not recorder.skipped(start, len(rec)):
            break
        assert not last, "the recorder missed or repeated a period in every attempt"
    timing = live.wait_reply(rid, ("/sao/timing",), timeout=10, since=since)[1]
    assert timing[5] >= 0 and timing[6] > 0, timing  # first_sound: it played from the stream (-1: it did not)
    lag, corr = best_lag(rec, ref)
    assert corr > 0.999, corr
    # Sample for sample what the file holds (master 0 dB, gain 1, below the limiter's ceiling).
    np.testing.assert_allclose(rec[lag : lag + len(ref)], ref, rtol=0, atol=1e-6)
    assert np.abs(rec[lag + len(ref) :]).max() < 1e-6  # and nothing after it


def test_a_cancelled_streamed_request_fades_out_without_a_click(live, recorder):
    live.send("/sao/stop", "all")
    mark, since = recorder.silence(), live.mark()
    live.send("/sao/trigger", "stream-cancel", "a streamed drone to cancel", 11.5, "steps", 2, "export", 0)
    assert live.wait_reply("stream-cancel", ("/sao/playing", "/sao/error"), timeout=120, since=since)[0] == (
        "/sao/playing"
    )
    start = recorder.sound(mark)
    live.send("/sao/cancel", "stream-cancel")
    reason = live.wait_reply("stream-cancel", ("/sao/interrupted",), timeout=30, since=since)[1][1]
    assert "cancel" in reason, reason
    addr, err = live.wait_reply("stream-cancel", timeout=30, since=since)
    assert (addr, err[1]) == ("/sao/error", "cancelled"), (addr, err)
    recorder.wait(RATE // 2, recorder.mark())  # half a second more: the fade is over in 10 ms
    rec = recorder.wait(recorder.mark() - start, start)
    end, _ = faded_out(rec, 0)
    assert np.abs(rec[end:]).max() < 1e-6  # and it stays silent


def test_a_worker_killed_mid_stream_fades_out_and_says_so(live_daemon, live, recorder):
    pid = live_daemon.worker_pid(live)
    live.send("/sao/stop", "all")
    mark, since = recorder.silence(), live.mark()
    live.send("/sao/trigger", "stream-kill", "a streamed pad whose worker dies", 11.5, "steps", 2, "export", 0)
    assert live.wait_reply("stream-kill", ("/sao/playing", "/sao/error"), timeout=120, since=since)[0] == (
        "/sao/playing"
    )
    start = recorder.sound(mark)
    os.kill(pid, signal.SIGKILL)
    reason = live.wait_reply("stream-kill", ("/sao/interrupted",), timeout=30, since=since)[1][1]
    assert "died" in reason, reason
    after = recorder.mark()
    # The job is retried once: one answer, and the retried clip is kept, not started again.
    assert live.wait_reply("stream-kill", timeout=180, since=since)[0] == "/sao/done"
    live.wait_for("/sao/ready", lambda args: args[0] == 1, timeout=120, since=since)
    rec = recorder.wait(recorder.mark() - start, start)
    end, _ = faded_out(rec[: after - start + RATE // 2], 0)
    assert np.abs(rec[end:]).max() < 1e-6  # silence while the retry ran, and after
    assert len(live.of("/sao/done", "stream-kill")) == 1 and not live.of("/sao/error", "stream-kill")


def test_a_loop_started_while_decoding_plays_its_seam_on_the_second_pass(live, recorder):
    seconds = 8.0  # 4 bars at 120 BPM
    loop = round(seconds * RATE)
    for n, last in enumerate(attempts(recorder)):
        rid = f"stream-loop-{n}"
        live.send("/sao/stop", "all")
        mark, since = recorder.silence(), live.mark()
        live.send("/sao/loop", rid, f"a streamed groove {n}", 4, 120, "steps", 2, "export", 0)
        live.wait_reply(rid, ("/sao/playing", "/sao/error"), timeout=120, since=since)
        start = max(mark, recorder.sound(mark) - RATE // 10)
        addr, done = live.wait_reply(rid, timeout=120, since=since)
        assert addr == "/sao/done", done
        final, frames = read_clip(done[1], RATE, 2, seconds)  # the loop as its cache file plays it
        rec = recorder.wait(loop + 2 * RATE, start, timeout=60)
        live.send("/sao/stop", rid)
        if not recorder.skipped(start, len(rec)):
            break
        assert not last, "the recorder missed or repeated a period in every attempt"
    assert frames == loop
    assert live.wait_reply(rid, ("/sao/timing",), timeout=10, since=since)[1][5] >= 0  # it played from the stream
    first = best_lag(rec[:RATE], final[RATE // 4 : RATE // 2])[0] - RATE // 4  # where the first pass began
    assert 0 <= first < RATE // 5, first
    first_pass, second = rec[first : first + loop], rec[first + loop : first + loop + RATE]
    # The second pass is the finished loop, seam crossfaded, from its first frame ...
    np.testing.assert_allclose(second, final[:RATE], rtol=0, atol=1e-5)
    # ... the first pass played the same audio but for the crossfaded head, and for its last
    # milliseconds within the resampler's reach: there the finished loop's resampler reads the next
    # pass (whose head is crossfaded), the stream's the audio that followed (measured: 1.2e-5) ...
    tail = RATE // 500
    body = slice(RATE // 10, loop - tail)
    np.testing.assert_allclose(first_pass[body], final[body], rtol=0, atol=1e-5)
    np.testing.assert_allclose(first_pass[loop - tail :], final[loop - tail : loop], rtol=0, atol=1e-4)
    # ... and the seam between them is no louder than the clip's own steps.
    seam = np.abs(rec[first + loop] - rec[first + loop - 1]).max()
    typical = np.percentile(np.abs(np.diff(first_pass, axis=0)), 99.9)
    assert seam <= typical, (seam, typical)
