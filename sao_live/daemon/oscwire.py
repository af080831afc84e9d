"""OSC 1.0 datagrams to and from Python values, parsed here so garbage can be answered.

python-osc drops a datagram it cannot parse without a word, and a client
that sent it deserves an `/sao/error`. `decode` turns one datagram into a list of
`(address, args)` messages (bundles flattened, whatever their timetag) or raises
`OscError` quoting what arrived. `encode` builds a message from Python values. A char (`c`)
that is not a Unicode character (NUL, a surrogate, beyond U+10FFFF) arrives as U+FFFD, and
`encode` replaces what a string cannot carry, so every value read can be echoed back.
Type tags read: i f s S b h d t T F N I c r m. Arrays ([ ]) are refused.
"""

from __future__ import annotations

import struct

from ..errors import SaoLiveError

MAX_BUNDLE_DEPTH = 4
_BUNDLE = b"#bundle\x00"
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_F32 = struct.Struct(">f")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_U64 = struct.Struct(">Q")
# Fixed-size argument types: int32, float32, int64, float64, timetag.
_FIXED = {"i": _I32, "f": _F32, "h": _I64, "d": _F64, "t": _U64}


class OscError(SaoLiveError, ValueError):
    """A datagram that is not valid OSC."""

    code = "bad_osc"


def _quote(data: bytes) -> str:
    return repr(data[:40]) + ("..." if len(data) > 40 else "")


def _string(data: bytes, pos: int, what: str) -> tuple[bytes, int]:
    end = data.find(b"\x00", pos)
    if end < 0:
        raise OscError(f"OSC {what} must end with a NUL byte, got {_quote(data[pos:])}")
    return data[pos:end], (end + 4) & ~3


def _message(data: bytes) -> tuple[str, tuple]:
    if not data.startswith(b"/"):
        raise OscError(f"OSC address must start with '/', got {_quote(data)}")
    raw, pos = _string(data, 0, "address")
    try:
        address = raw.decode("ascii")
    except UnicodeDecodeError:
        raise OscError(f"OSC address must be ASCII, got {_quote(raw)}") from None
    if not address.isprintable():
        raise OscError(f"OSC address must be printable, got {_quote(raw)}")
    if pos >= len(data):
        return address, ()  # an old-style message without a type tag string
    if data[pos : pos + 1] != b",":
        raise OscError(f"OSC type tag string must start with a comma, got {_quote(data[pos:])}")
    tags, pos = _string(data, pos, "type tag string")
    args = []
    for tag in tags[1:].decode("latin-1"):
        try:
            if tag in _FIXED:
                args.append(_FIXED[tag].unpack_from(data, pos)[0])
                pos += _FIXED[tag].size
            elif tag in "sS":
                raw, pos = _string(data, pos, "string")
                args.append(raw.decode("utf-8", "replace"))
            elif tag == "b":
                size = _I32.unpack_from(data, pos)[0]
                if size < 0 or pos + 4 + size > len(data):
                    raise OscError(f"OSC blob of {size} bytes does not fit in the {len(data)}-byte datagram")
                args.append(data[pos + 4 : pos + 4 + size])
                pos += 4 + ((size + 3) & ~3)
            elif tag in "TF":
                args.append(tag == "T")
            elif tag in "NI":
                args.append(None)
            elif tag == "c":
                code = _U32.unpack_from(data, pos)[0] & 0x1FFFFF
                args.append(chr(code) if code < 0x110000 and not 0xD800 <= code < 0xE000 and code else "\ufffd")
                pos += 4
            elif tag in "rm":
                args.append(_U32.unpack_from(data, pos)[0])
                pos += 4
            else:
                raise OscError(f"OSC type tag {tag!r} is not supported (in {tags!r})")
        except struct.error:
            raise OscError(f"OSC arguments {tags!r} run past the end of the {len(data)}-byte datagram") from None
    if pos > len(data):
        raise OscError(f"OSC arguments {tags!r} run past the end of the {len(data)}-byte datagram")
    return address, tuple(args)


def _bundle(data: bytes, depth: int, out: list) -> None:
    if depth > MAX_BUNDLE_DEPTH:
        raise OscError(f"OSC bundles nest at most {MAX_BUNDLE_DEPTH} deep")
    if len(data) < 16:
        raise OscError(f"OSC bundle too short for its timetag: {_quote(data)}")
    pos = 16  # "#bundle\0" + 8-byte timetag, ignored: everything is handled at once
    while pos < len(data):
        if pos + 4 > len(data):
            raise OscError(f"OSC bundle element size cut short at byte {pos}")
        size = _I32.unpack_from(data, pos)[0]
        if size <= 0 or pos + 4 + size > len(data):
            raise OscError(f"OSC bundle element of {size} bytes does not fit in the bundle at byte {pos}")
        element = data[pos + 4 : pos + 4 + size]
        if element.startswith(_BUNDLE):
            _bundle(element, depth + 1, out)
        else:
            out.append(_message(element))
        pos += 4 + size


def decode(data: bytes) -> list[tuple[str, tuple]]:
    """One datagram -> [(address, args), ...]; raises OscError for anything that is not OSC."""
    if len(data) < 4 or len(data) % 4:
        raise OscError(f"an OSC packet is a positive multiple of 4 bytes long, got {len(data)}: {_quote(data)}")
    if data.startswith(_BUNDLE):
        out: list = []
        _bundle(data, 1, out)
        return out
    return [_message(data)]


def _pad(raw: bytes) -> bytes:
    return raw + b"\x00" * (4 - len(raw) % 4)


def encode(address: str, *args) -> bytes:
    """An OSC message from str, int (i, or h beyond int32), float (f), bytes (b), bool (T/F), None (N)."""
    tags = [","]
    body = []
    for a in args:
        if isinstance(a, bool):
            tags.append("T" if a else "F")
        elif isinstance(a, int):
            if -(2**31) <= a < 2**31:
                tags.append("i")
                body.append(_I32.pack(a))
            else:
                tags.append("h")
                body.append(_I64.pack(a))
        elif isinstance(a, float):
            tags.append("f")
            body.append(_F32.pack(a))
        elif isinstance(a, str):  # a NUL would end the string early, a lone surrogate has no UTF-8
            tags.append("s")
            body.append(_pad(a.replace("\x00", "\ufffd").encode("utf-8", "replace")))
        elif isinstance(a, (bytes, bytearray)):
            tags.append("b")
            body.append(_I32.pack(len(a)) + bytes(a) + b"\x00" * (-len(a) % 4))
        elif a is None:
            tags.append("N")
        else:
            raise TypeError(f"cannot send {type(a).__name__} over OSC: {a!r}")
    return _pad(address.encode("ascii")) + _pad("".join(tags).encode("ascii")) + b"".join(body)


def encode_bundle(messages: list[bytes], timetag: int = 1) -> bytes:
    """A bundle of encoded messages (timetag 1 means "immediately")."""
    return _BUNDLE + _U64.pack(timetag) + b"".join(_I32.pack(len(m)) + m for m in messages)
