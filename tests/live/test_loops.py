"""cut_loop: an exact loop length, a take shorter than the loop padded with silence, and the seam's
equal-power crossfade sample by sample."""

from __future__ import annotations

import numpy as np
import pytest

from sao_live.live.loops import XFADE_SECONDS, cut_loop
from sao_live.musical_time import loop_frames


def test_cut_loop_is_exact_and_seamless():
    n = loop_frames(1, 120, 44100)
    assert n == 88200
    t = np.arange(n + 882) / 44100
    audio = np.stack([np.sin(2 * np.pi * 101.3 * t)] * 2).astype(np.float32)  # not periodic in the loop
    out = cut_loop(audio, n, 882)
    assert out.shape == (2, n)
    seam = abs(out[0, 0] - out[0, -1])
    assert seam < 2 * 2 * np.pi * 101.3 / 44100  # one sample's step of the sine, not a jump
    assert abs(audio[0, 0] - audio[0, n - 1]) > 0.1  # the uncut loop would click


def _take(frames: int, tail: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(take, its loop part, its tail): two channels of distinct noise, float64 like the engine's."""
    audio = np.random.default_rng(frames + tail).uniform(-1, 1, (2, frames + tail))
    return audio, audio[:, :frames], audio[:, frames:]


def _equal_power(x: int) -> tuple[np.ndarray, np.ndarray]:
    """The weights of head and tail (sin^2 + cos^2 = 1: equal power), sampled at the middle of each sample:
    the loop's first sample is mostly the tail's sound, so it runs on from the loop's last."""
    angle = np.pi / 2 * (np.arange(x) + 0.5) / x
    return np.sin(angle), np.cos(angle)


@pytest.mark.parametrize(("xfade", "tail", "x"), [(8, 8, 8), (8, 20, 8), (8, 3, 3), (500, 300, 100)])
def test_the_seam_is_an_equal_power_crossfade_over_what_is_there(xfade, tail, x):
    # x = the shortest of the asked crossfade, the tail past the loop, and the loop (100 frames) itself
    audio, loop, after = _take(100, tail)
    out = cut_loop(audio, 100, xfade)
    head, fold = _equal_power(x)
    assert out.dtype == np.float32 and out.shape == (2, 100)
    np.testing.assert_allclose(out[:, :x], loop[:, :x] * head + after[:, :x] * fold, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(out[:, x:], loop[:, x:].astype(np.float32))


def test_a_take_without_a_tail_is_only_cut():
    audio, loop, _ = _take(100, 0)
    np.testing.assert_array_equal(cut_loop(audio, 100, 8), loop.astype(np.float32))
    np.testing.assert_array_equal(cut_loop(audio, 60, 0), loop[:, :60].astype(np.float32))  # no crossfade asked


@pytest.mark.parametrize("short", [99, 40, 1])
def test_a_take_shorter_than_the_loop_is_padded_with_silence(short):
    audio, _, _ = _take(short, 0)
    out = cut_loop(audio, 100, 8)
    assert out.shape == (2, 100)
    np.testing.assert_array_equal(out[:, :short], audio.astype(np.float32))  # no tail: nothing to fold
    assert not out[:, short:].any()


def test_the_crossfade_is_short():
    # long enough to hide the seam's click (a few ms), short enough to leave the loop's attack alone
    assert 0.005 <= XFADE_SECONDS <= 0.05
