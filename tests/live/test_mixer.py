"""The mixer alone: sums, chokes with a fade, loops, gates, limiter, streamed clips."""

from __future__ import annotations

import numpy as np

from sao_live.live.mixer import GATE, LOOP, ONESHOT, Mixer, Play, Stop, Then

BLOCK = 256


def run(m: Mixer, blocks: int) -> np.ndarray:
    out = np.zeros((blocks * BLOCK, 2), np.float32)
    for b in range(blocks):
        m.render(out[b * BLOCK : (b + 1) * BLOCK], BLOCK)
    return out


def tone(n: int, f: float = 440.0, amp: float = 0.2) -> np.ndarray:
    x = amp * np.sin(2 * np.pi * f * np.arange(n) / 48000)
    return np.ascontiguousarray(np.stack([x, x], 1), dtype=np.float32)


def test_two_voices_sum_exactly():
    m = Mixer(2, 4096, 32, 48000, master_db=0.0)
    a, b = tone(2000, 440), tone(2000, 660)
    m.post(Play(0, a, 0.5, ONESHOT, 0, "a", 0))
    m.post(Play(1, b, 0.25, ONESHOT, 0, "b", 0))
    out = run(m, 10)
    np.testing.assert_allclose(out[:2000], 0.5 * a + 0.25 * b, atol=1e-6)
    assert not out[2000:].any() and m.voices_playing() == 0 and m.errors == 0


def test_choke_fades_the_other_voice_without_a_jump():
    m = Mixer(2, 4096, 32, 48000, master_db=0.0)
    m.post(Play(0, tone(48000), 1.0, ONESHOT, 1, "open", 0))
    run(m, 4)
    m.post(Play(1, np.zeros((48000, 2), np.float32), 1.0, ONESHOT, 1, "closed", 0))
    out = run(m, 4)
    assert not m.active[0] and m.active[1]
    assert np.abs(out[m.fade :]).max() == 0  # gone after the fade
    assert np.abs(np.diff(out[:, 0])).max() < 0.2 * 2 * np.pi * 440 / 48000 * 1.01  # never steeper than the tone


def test_gate_release_and_loop_wrap_and_quantised_start():
    m = Mixer(2, 4096, 32, 48000, master_db=0.0)
    loop = tone(1000, 480)  # 10 periods: wraps seamlessly
    m.post(Play(0, loop, 1.0, LOOP, 0, "l", 600))
    m.post(Play(1, tone(48000), 1.0, GATE, 0, "g", 0))
    run(m, 2)
    m.post(Stop("g", gate_only=True))
    m.post(Stop("l", gate_only=True))  # not a gate: keeps going
    out = run(m, 20)
    assert m.active[0] and not m.active[1]
    pos = (np.arange(BLOCK * 22) - 600) % 1000
    whole = np.concatenate([np.zeros((512, 2), np.float32), out])
    np.testing.assert_allclose(whole[1000:5000, 0], loop[pos[1000:5000], 0], atol=1e-6)


def test_limiter_keeps_the_sum_under_the_ceiling():
    m = Mixer(2, 4096, 32, 48000, master_db=0.0)
    for v in range(16):
        m.post(Play(v, tone(20000, amp=0.9), 1.0, ONESHOT, 0, "x", 0))
    out = run(m, 40)
    assert np.abs(out).max() <= m.ceiling + 1e-6 and m.limiting > 0


def test_a_streamed_clip_plays_what_has_arrived_and_fades_out_when_it_stops_arriving():
    m = Mixer(2, 4096, 32, 48000, master_db=0.0)
    clip, full = np.zeros((48000, 2), np.float32), tone(48000)
    filled = np.zeros(1, np.int64)
    clip[:4000], filled[0] = full[:4000], 4000  # the first chunk is in
    m.post(Play(0, clip, 1.0, ONESHOT, 0, "s", 0, filled=filled))
    out = run(m, 8)  # 2048 frames: well inside what has arrived
    np.testing.assert_allclose(out, full[:2048], atol=1e-7)
    clip[4000:10000], filled[0] = full[4000:10000], 10000  # the next chunk, in time
    out = run(m, 16)
    np.testing.assert_allclose(out, full[2048:6144], atol=1e-7)
    assert m.starved == 0 and m.active[0]
    out = run(m, 32)  # nothing more arrives: it fades out over what is there, and never reads past it
    assert m.starved == 1 and not m.active[0]
    last = int(np.flatnonzero(np.abs(out).max(axis=1) > 0)[-1])  # its last sound
    assert 6144 + last < 10000  # it stopped before the end of the audio that had arrived
    assert np.abs(out[last - m.fade // 2 : last + 1]).max() < 0.2 * 0.51  # half way through its fade there
    steps = np.abs(np.diff(out[:, 0]))
    assert steps.max() < 0.2 * 2 * np.pi * 440 / 48000 * 1.01 + 0.2 / m.fade  # never a jump: the tone, faded


def test_a_streamed_loop_hands_over_to_the_finished_loop_at_its_first_wrap():
    m = Mixer(2, 4096, 32, 48000, master_db=0.0)
    raw, final = tone(1200, 480, 0.2), tone(1200, 480, 0.1)  # the finished loop: half as loud, to tell
    filled = np.full(1, 1200, np.int64)
    m.post(Play(0, raw, 1.0, LOOP, 0, "l", 0, 1000, filled))
    m.post(Then(raw, final))
    out = run(m, 12)
    np.testing.assert_allclose(out[:1000], raw[:1000], atol=1e-7)  # the first pass: the raw audio
    np.testing.assert_allclose(out[1000:2000], final[:1000], atol=1e-7)  # then the finished loop, looping
    np.testing.assert_allclose(out[2000:3000], final[:1000], atol=1e-7)
