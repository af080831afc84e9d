"""A clip's waveform for the page: min and max of each of `WIDTH` slices, made once and kept beside the clip.

The file (`<key>.peaks` in the clip's folder, see `ClipStore.peaks_path`) holds WIDTH pairs of
bytes (min, max), -1..1 mapped to 0..255. It is written to a temporary name and renamed, so a
reader never sees half of it. Runs on a worker thread: it reads the whole clip.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

WIDTH = 200  # slices: enough for a row of the library on a laptop, 400 bytes a clip


def compute(clip_path: Path, width: int = WIDTH) -> bytes:
    import numpy as np  # loaded on the thread that first needs it, off the start-up path
    import soundfile as sf

    data, _ = sf.read(str(clip_path), dtype="float32", always_2d=True)
    if len(data) == 0:
        return bytes([128] * 2 * width)
    lo_all, hi_all = data.min(axis=1), data.max(axis=1)
    edges = np.linspace(0, len(data), width + 1).astype(np.int64)
    starts = np.minimum(edges[:-1], len(data) - 1)
    lo, hi = np.minimum.reduceat(lo_all, starts), np.maximum.reduceat(hi_all, starts)
    pairs = np.stack([lo, hi], axis=1).reshape(-1)
    return np.clip(np.round((np.clip(pairs, -1, 1) + 1) * 127.5), 0, 255).astype(np.uint8).tobytes()


def load_or_make(clip_path: Path, peaks_path: Path) -> bytes:
    """The clip's peaks: read from `peaks_path`, or computed and written there first."""
    try:
        data = peaks_path.read_bytes()
        if len(data) == 2 * WIDTH:
            return data
    except FileNotFoundError:
        pass
    data = compute(clip_path)
    part = peaks_path.with_name(f".{peaks_path.name}.{secrets.token_hex(4)}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(part, peaks_path)
    return data
