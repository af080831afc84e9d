"""Writing clips to disk: WAV or FLAC, 16/24-bit or 32-bit float, atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import InvalidRequestError

SUBTYPES = {
    ("wav", "16"): "PCM_16",
    ("wav", "24"): "PCM_24",
    ("wav", "32f"): "FLOAT",
    ("flac", "16"): "PCM_16",
    ("flac", "24"): "PCM_24",
}


def subtype_for(fmt: str, bit_depth: str) -> str:
    """The libsndfile subtype for a format and bit depth; ValueError for a pair that cannot be."""
    if (fmt, bit_depth) not in SUBTYPES:
        known = ", ".join(f"{f}/{b}" for f, b in SUBTYPES)
        raise InvalidRequestError(f"format/bit depth must be one of {known}, got {fmt}/{bit_depth}")
    return SUBTYPES[(fmt, bit_depth)]


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, fmt: str = "wav", bit_depth: str = "24") -> Path:
    """Writes float audio (channels, samples) to `path` through a temporary file and a rename.

    Integer formats clip to [-1, 1]; 32-bit float keeps the values as they are.
    A reader never sees a half-written file, and a failure leaves nothing behind.
    """
    path = Path(path)
    subtype = subtype_for(fmt, bit_depth)
    frames = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).T)  # (samples, channels)
    if subtype != "FLOAT":
        frames = np.clip(frames, -1.0, 1.0)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            sf.write(f, frames, sample_rate, subtype=subtype, format=fmt.upper())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
