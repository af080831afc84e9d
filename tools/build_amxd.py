"""Writes the Max for Live devices (bridges/max/*.amxd) from their patcher sources (*.maxpat).

    python tools/build_amxd.py          # rewrite the devices
    python tools/build_amxd.py --check  # exit 1 when a device differs from what its source gives

A .amxd is a chunked container: each chunk is a 4-byte tag, a 4-byte little-endian payload length and
the payload. Live reads three: `ampf` (the device type: `aaaa` audio effect, `mmmm` MIDI effect,
`iiii` instrument), `meta` (4 bytes, zeros here) and `ptch` (the patcher JSON, null-terminated). The
JSON is written tab-indented as Max writes it; the same source always gives the same bytes.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

MAX = Path(__file__).resolve().parents[1] / "bridges" / "max"
DEVICES = {  # device -> (source, type)
    "sao-live.amxd": ("sao-live-device.maxpat", b"aaaa"),
    "sao-live-pads.amxd": ("sao-live-pads.maxpat", b"mmmm"),
}
TYPES = {b"aaaa": "audio effect", b"mmmm": "MIDI effect", b"iiii": "instrument"}


def chunk(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack("<I", len(payload)) + payload


def amxd(patcher: dict, kind: bytes) -> bytes:
    assert kind in TYPES, kind
    text = json.dumps(patcher, indent="\t", ensure_ascii=False) + "\n"
    return chunk(b"ampf", kind) + chunk(b"meta", bytes(4)) + chunk(b"ptch", text.encode() + b"\0")


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (tag, payload) chunks of a .amxd; ValueError when a length runs past the end."""
    out, i = [], 0
    while i < len(data):
        tag, (size,) = data[i : i + 4], struct.unpack("<I", data[i + 4 : i + 8])
        if i + 8 + size > len(data):
            raise ValueError(f"chunk {tag!r} at {i} claims {size} bytes, {len(data) - i - 8} left")
        out.append((tag, data[i + 8 : i + 8 + size]))
        i += 8 + size
    return out


def build(name: str) -> bytes:
    source, kind = DEVICES[name]
    return amxd(json.loads((MAX / source).read_text()), kind)


def main(argv: list[str]) -> int:
    stale = []
    for name in DEVICES:
        data, target = build(name), MAX / name
        if "--check" in argv:
            if not target.is_file() or target.read_bytes() != data:
                stale.append(name)
        else:
            target.write_bytes(data)
            print(f"{target}: {len(data)} bytes")
    for name in stale:
        print(f"{MAX / name} is stale: run python tools/build_amxd.py")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
