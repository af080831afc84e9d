"""Daemon-test helpers that only tests use; the daemon process and OSC clients are in `sao_live.testing.daemon`."""

from __future__ import annotations

import struct

LONG_STEPS = 1000  # a job that stays running until the test cancels or kills it (never awaited)
SHORT_LONG_STEPS = 60  # a job still running a moment after its first progress, that tests wait to finish


def riff_chunks(path) -> dict[bytes, bytes]:
    """The RIFF chunks of a WAV file, read with struct (not with the library that wrote them)."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8, "RIFF size must cover the whole file"
    chunks, pos = {}, 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks[cid] = data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)
    assert pos == len(data)
    return chunks
