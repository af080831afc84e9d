"""Loop post-processing: an exact length in samples and an equal-power crossfade across the seam.

The worker generates a little more than the loop (`XFADE_SECONDS` past its end, when the model's
window leaves room), then `cut_loop` folds that tail into the head: the first X samples become
head * sin + tail * cos (equal power), so the last sample of the loop runs on into what the model
played right after it, and the loop repeats without a click.
"""

from __future__ import annotations

import numpy as np

XFADE_SECONDS = 0.02


def cut_loop(audio: np.ndarray, frames: int, xfade: int) -> np.ndarray:
    """audio (channels, samples >= frames) -> (channels, frames) with the seam crossfaded over
    min(xfade, samples - frames) samples."""
    channels, total = audio.shape
    if total < frames:
        audio = np.concatenate([audio, np.zeros((channels, frames - total), audio.dtype)], axis=1)
    x = max(0, min(xfade, audio.shape[1] - frames, frames))
    out = np.array(audio[:, :frames], dtype=np.float32)
    if x:
        t = (np.arange(x, dtype=np.float64) + 0.5) / x * (np.pi / 2)
        out[:, :x] = audio[:, :x] * np.sin(t) + audio[:, frames : frames + x] * np.cos(t)
    return out
