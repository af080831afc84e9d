"""Writing clips to disk: WAV or FLAC (16/24-bit or 32-bit float), Ogg Vorbis or MP3, atomically."""

from __future__ import annotations

import os
import secrets
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
LOSSY = {"ogg": "VORBIS", "mp3": "MPEG_LAYER_III"}  # no bit depth; mp3 only where libsndfile has it (>= 1.1)


def file_formats() -> tuple[str, ...]:
    """The formats this machine's libsndfile can write: wav, flac, and ogg and mp3 where it has them."""
    have = sf.available_formats()
    return ("wav", "flac") + tuple(f for f in LOSSY if f.upper() in have)


def subtype_for(fmt: str, bit_depth: str | None) -> str:
    """The libsndfile subtype for a format and bit depth (None: 24-bit, or the lossy codec);
    InvalidRequestError for a pair that cannot be."""
    if fmt in LOSSY:
        if fmt not in file_formats():
            raise InvalidRequestError(f"this libsndfile cannot write {fmt}; it writes {', '.join(file_formats())}")
        if bit_depth is not None:
            raise InvalidRequestError(f"{fmt} is lossy and has no bit depth: leave out --bit-depth (got {bit_depth})")
        return LOSSY[fmt]
    bit_depth = bit_depth or "24"
    if (fmt, bit_depth) not in SUBTYPES:
        known = ", ".join(f"{f}/{b}" for f, b in SUBTYPES)
        raise InvalidRequestError(f"format/bit depth must be one of {known}, got {fmt}/{bit_depth}")
    return SUBTYPES[(fmt, bit_depth)]


def create_temporary(folder: Path, prefix: str, suffix: str, mode: int | None = None) -> tuple[int, Path]:
    """A new file `folder/<prefix><random><suffix>`, open for reading and writing: (fd, path).

    Unlike mkstemp's (always 0600), its mode is 0666 less the umask, like any file the user
    saves; `mode` gives exact permission bits instead (the cache's clips are private).
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = Path(folder) / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(path, flags, 0o666)
        except FileExistsError:
            continue
        try:
            if mode is not None:
                os.chmod(path, mode)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return fd, path
    raise FileExistsError(f"no free temporary name like {prefix}*{suffix} in {folder}")


def write_audio(
    path: str | Path,
    audio: np.ndarray,
    sample_rate: int,
    fmt: str = "wav",
    bit_depth: str | None = "24",
    mode: int | None = None,
) -> Path:
    """Writes float audio (channels, samples) to `path` through a temporary file and a rename.

    Integer formats clip to [-1, 1]; 32-bit float keeps the values as they are.
    A reader never sees a half-written file, and a failure leaves nothing behind. A write the
    file system refuses (a full disk) raises its OSError, not soundfile's bare AssertionError.
    The file's mode follows the umask, or is `mode` when given.
    """
    path = Path(path)
    subtype = subtype_for(fmt, bit_depth)
    frames = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).T)  # (samples, channels)
    if subtype != "FLOAT":
        frames = np.clip(frames, -1.0, 1.0)
    fd, tmp = create_temporary(path.parent, f".{path.name}.", ".part", mode)
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:  # unbuffered: a seek cannot fail on a pending flush
            out = _KeepsWriteErrors(f)
            try:
                sf.write(out, frames, sample_rate, subtype=subtype, format=fmt.upper())
            except Exception:
                if out.error is not None:
                    raise out.error from None
                raise
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


class _KeepsWriteErrors:
    """An unbuffered file that writes all it is given, or keeps its first error and reports a
    short write: soundfile's write callback would swallow the error (a full disk then surfaces
    as a bare AssertionError), so `write_audio` raises the kept one."""

    def __init__(self, file):
        self._file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        written = 0
        try:
            while self.error is None and written < len(view):
                written += self._file.write(view[written:])  # a full disk first gives a short write
        except OSError as err:
            self.error = err
        return written

    def __getattr__(self, name: str):
        return getattr(self._file, name)
