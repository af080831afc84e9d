"""OSC datagrams: captured bytes from real clients decode; garbage raises OscError with a quote."""

from __future__ import annotations

import struct
import time

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from sao_live.daemon.oscwire import OscError, decode, encode, encode_bundle

# Captured from liblo 0.31: oscsend 127.0.0.1 PORT /sao/gen isfsi 1 "kick drum" 0.75 seed 42
OSCSEND_GEN_KICK_DRUM = (
    b"/sao/gen\x00\x00\x00\x00,isfsi\x00\x00\x00\x00\x00\x01kick drum\x00\x00\x00?@\x00\x00"
    b"seed\x00\x00\x00\x00\x00\x00\x00*"
)
# oscsend 127.0.0.1 PORT /sao/trigger isssf 7 warm arpeggios on 1.5 (a prompt split over atoms)
OSCSEND_TRIGGER_SPLIT_PROMPT = (
    b"/sao/trigger\x00\x00\x00\x00,isssf\x00\x00\x00\x00\x00\x07warm\x00\x00\x00\x00"
    b"arpeggios\x00\x00\x00on\x00\x00?\xc0\x00\x00"
)
# Pure Data 0.53: [oscformat sao gen] <- "3 kick 808 punchy 0.5" (every number a float)
PD_GEN_FLOATS = (
    b"/sao/gen\x00\x00\x00\x00,fsfsf\x00\x00@@\x00\x00kick\x00\x00\x00\x00DJ\x00\x00punchy\x00\x00?\x00\x00\x00"
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (OSCSEND_GEN_KICK_DRUM, ("/sao/gen", (1, "kick drum", 0.75, "seed", 42))),
        (OSCSEND_TRIGGER_SPLIT_PROMPT, ("/sao/trigger", (7, "warm", "arpeggios", "on", 1.5))),
        (PD_GEN_FLOATS, ("/sao/gen", (3.0, "kick", 808.0, "punchy", 0.5))),
    ],
)
def test_captured_datagrams_decode(data, expected):
    assert decode(data) == [expected]


def test_every_supported_type_tag_matches_python_osc():
    b = OscMessageBuilder("/t")
    for value, tag in [(1, "i"), (2.5, "f"), ("s", "s"), (b"\x01\x02\x03", "b"), (2**40, "h"), (0.1, "d"),
                       (True, "T"), (False, "F"), (None, "N")]:  # fmt: skip
        b.add_arg(value, tag)
    data = b.build().dgram
    ((address, args),) = decode(data)
    assert address == "/t"
    assert list(args) == list(OscMessage(data).params)


def test_bundles_are_flattened_whatever_the_timetag():
    bundle = OscBundleBuilder(IMMEDIATELY)
    inner = OscBundleBuilder(time.time() + 3600)  # an hour ahead: still handled now
    inner.add_content(OscMessageBuilder("/b").build())
    bundle.add_content(OscMessageBuilder("/a").build())
    bundle.add_content(inner.build())
    assert decode(bundle.build().dgram) == [("/a", ()), ("/b", ())]


def test_encode_is_read_by_python_osc():
    data = encode("/sao/done", 1, "/tmp/a b.wav", 0.5, 2**31 + 5, True, None, b"xy")
    m = OscMessage(data)
    assert m.address == "/sao/done"
    assert m.params == [1, "/tmp/a b.wav", 0.5, 2**31 + 5, True, None, b"xy"]
    assert decode(encode_bundle([data])) == [("/sao/done", tuple(m.params))]


def _nested(depth: int) -> bytes:
    data = encode("/x")
    for _ in range(depth):
        data = encode_bundle([data])
    return data


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b"", "positive multiple of 4"),
        (b"abc", "positive multiple of 4"),
        (b"hello world!", "must start with '/'"),
        (b"/sao", "must end with a NUL"),
        (b"/sao/gen\x00\x00\x00\x00isf\x00", "must start with a comma"),
        (b"/sao/gen\x00\x00\x00\x00,i\x00\x00", "run past the end"),
        (b"/sao/gen\x00\x00\x00\x00,s\x00\x00abcd", "must end with a NUL"),
        (b"/sao/gen\x00\x00\x00\x00,[i]\x00\x00\x00\x00", "'[' is not supported"),
        (b"/sao/gen\x00\x00\x00\x00,b\x00\x00" + struct.pack(">i", 1000), "blob of 1000 bytes"),
        (b"/s\xff\x00,\x00\x00\x00", "must be ASCII"),
        (b"#bundle\x00\x00\x00\x00\x00", "too short for its timetag"),
        (b"#bundle\x00" + bytes(8) + struct.pack(">i", 64) + b"/abc", "does not fit"),
        (b"#bundle\x00" + bytes(8) + struct.pack(">i", -4) + b"/abc", "does not fit"),
        (_nested(6), "nest at most 4 deep"),
    ],
)
def test_garbage_raises_oscerror_quoting_it(data, phrase):
    with pytest.raises(OscError) as err:
        decode(data)
    assert phrase in str(err.value)
    assert err.value.code == "bad_osc"


def test_encode_refuses_what_osc_cannot_carry():
    with pytest.raises(TypeError, match="cannot send dict"):
        encode("/x", {})
