"""Export to the folder a DAW watches: names it understands, metadata, never a half file.

Names are `{slug}_{seconds}s_s{seed}.wav` for one-shots and `{slug}_{bpm}bpm_{bars}bars_s{seed}.wav`
for loops (`_1bar_` for one bar). The slug is the prompt in lower-case ASCII words joined by "-", bounded in length,
never a path and never a name Windows reserves. The file is written to a hidden temporary
name in the same folder and then hard-linked to its name, which fails rather than replace a
file that exists (the DAW may hold it): the next free `_2`, `_3`, ... suffix is used instead.
Its mode is that of any file the user saves (0666 less the umask), unlike the cache's private clips.
24-bit WAV by default (16-bit, 32-bit float or 24-bit FLAC on request); the request as JSON in
the comment (WAV LIST/ICMT, FLAC Vorbis comment); for WAV loops an ACID chunk with the tempo
and beat count, which Ableton Live, Bitwig and Reaper read.
"""

from __future__ import annotations

import json
import os
import re
import struct
import unicodedata
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import create_temporary, subtype_for
from ..request import EXPORT_FORMATS, Request

SLUG_MAX = 48
RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
TEMP_PREFIX = ".sao-live-"


def slugify(text: str, max_len: int = SLUG_MAX) -> str:
    """Lower-case ASCII words joined by "-", at most `max_len` characters, never empty or reserved."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    words = re.findall(r"[a-z0-9]+", ascii_text)
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > max_len:
            slug = slug or word[:max_len]
            break
        slug = candidate
    if not slug:
        return "clip"
    return f"{slug}-clip" if slug in RESERVED else slug


def _num(x: float) -> str:
    """12 -> "12", 1.5 -> "1.5", 0.33333 -> "0.333"."""
    return f"{round(x, 3):g}"


def export_name(request: Request, ext: str) -> str:
    slug = slugify(request.prompt)
    if request.bars is not None:
        bars = "bar" if request.bars == 1 else "bars"
        return f"{slug}_{_num(request.bpm)}bpm_{_num(request.bars)}{bars}_s{request.seed}.{ext}"
    return f"{slug}_{_num(request.seconds)}s_s{request.seed}.{ext}"


def acid_chunk(bpm: float, beats: int, one_shot: bool = False) -> bytes:
    """A RIFF 'acid' chunk: flags, root note, two reserved fields, beats, meter 4/4, tempo."""
    flags = 0x01 if one_shot else 0x04  # one-shot, or loop with time-stretch on
    body = struct.pack("<IHHfIHHf", flags, 60, 0x8000, 0.0, beats, 4, 4, float(bpm))
    return b"acid" + struct.pack("<I", len(body)) + body


def append_chunk(path: Path, chunk: bytes) -> None:
    """Appends a chunk to a RIFF/WAVE file and fixes the RIFF size (libsndfile cannot write ACID)."""
    with open(path, "r+b") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError(f"{path} is not a RIFF/WAVE file, got header {head!r}")
        f.seek(0, os.SEEK_END)
        if f.tell() % 2:
            f.write(b"\x00")  # chunks start on even offsets
        f.write(chunk + (b"\x00" if len(chunk) % 2 else b""))
        size = f.tell() - 8
        f.seek(4)
        f.write(struct.pack("<I", size))


def _link_free_name(tmp: Path, folder: Path, name: str) -> Path:
    stem, ext = name.rsplit(".", 1)
    for n in range(1, 10_000):
        dest = folder / (name if n == 1 else f"{stem}_{n}.{ext}")
        try:
            os.link(tmp, dest)  # atomic, and never replaces an existing file
            return dest
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links
            if dest.exists():
                continue
            os.replace(tmp, dest)
            return dest
    raise FileExistsError(f"{folder} already holds 9999 files named like {name}")


def export_clip(source: Path, folder: Path, request: Request, fmt: str = "wav", meta: dict | None = None) -> Path:
    """Writes the clip at `source` to `folder` under its DAW name; returns the new file's path.

    `fmt` is a key of EXPORT_FORMATS (wav: 24-bit, wav16, wav32f, flac: 24-bit).
    `meta` is merged into the JSON comment next to the request.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    container, depth = EXPORT_FORMATS[fmt]
    subtype = subtype_for(container, depth)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    audio, rate = sf.read(source, dtype="float32", always_2d=True)  # (samples, channels)
    if subtype != "FLOAT":
        audio = np.clip(audio, -1.0, 1.0)
    comment = json.dumps({"sao_live": request.to_dict(), **(meta or {})}, sort_keys=True)
    # Mode 0666 less the umask, like any file the user saves (the DAW may run as another user).
    fd, tmp = create_temporary(folder, TEMP_PREFIX, ".part")
    try:
        with (
            os.fdopen(fd, "w+b") as f,
            sf.SoundFile(f, "w", rate, audio.shape[1], subtype, format=container.upper()) as out,
        ):
            out.comment = comment
            out.write(audio)
        if container == "wav" and request.bars is not None:
            append_chunk(tmp, acid_chunk(request.bpm, max(1, round(request.bars * 4))))
        return _link_free_name(tmp, folder, export_name(request, container))
    finally:
        tmp.unlink(missing_ok=True)


def remove_partials(folder: Path) -> int:
    """Deletes temporary files an interrupted export left in `folder`; returns how many."""
    count = 0
    for path in Path(folder).glob(f"{TEMP_PREFIX}*.part"):
        path.unlink(missing_ok=True)
        count += 1
    return count
