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
        (b"/a\x01\x00,\x00\x00\x00", "must be printable"),
        (b"/x\x00\x00,b\x00\x00" + struct.pack(">i", 8) + b"abcd", "blob of 8 bytes"),  # 4 bytes short
        (encode_bundle([]) + struct.pack(">i", 12) + b"/abc\x00\x00\x00\x00", "does not fit"),  # 4 bytes short
        # A bundle element need not be a multiple of 4: this message's last string lacks its padding.
        (encode_bundle([]) + struct.pack(">i", 11) + b"/x\x00\x00,s\x00\x00ab\x00" + b"\x00", "run past the end"),
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


def _padded(raw: bytes) -> bytes:
    """An OSC string: the bytes, a NUL, then NULs up to a multiple of 4 (written out from OSC 1.0)."""
    return raw + b"\x00" * (4 - len(raw) % 4)


@pytest.mark.parametrize("length", range(9))  # every length mod 4, twice
def test_strings_of_every_length_are_padded_to_four_bytes(length):
    text = "abcdefgh"[:length]
    data = encode("/x", text, 7)
    assert data == b"/x\x00\x00" + b",si\x00" + _padded(text.encode()) + struct.pack(">i", 7)
    assert decode(data) == [("/x", (text, 7))]
    address = "/" + "a" * length  # the address string too
    assert decode(_padded(address.encode()) + b",i\x00\x00" + struct.pack(">i", 7)) == [(address, (7,))]


@pytest.mark.parametrize("size", range(6))
def test_blobs_of_every_size_including_empty(size):
    blob = bytes(range(1, size + 1))
    data = encode("/x", blob, 7)
    assert data == b"/x\x00\x00,bi\x00" + struct.pack(">i", size) + blob + bytes(-size % 4) + struct.pack(">i", 7)
    assert decode(data) == [("/x", (blob, 7))]


@pytest.mark.parametrize(
    ("value", "tag", "body"),
    [
        (0, b"i", struct.pack(">i", 0)),
        (2**31 - 1, b"i", struct.pack(">i", 2**31 - 1)),
        (-(2**31), b"i", struct.pack(">i", -(2**31))),
        (2**31, b"h", struct.pack(">q", 2**31)),
        (-(2**31) - 1, b"h", struct.pack(">q", -(2**31) - 1)),
        (0.5, b"f", struct.pack(">f", 0.5)),
        (True, b"T", b""),
        (False, b"F", b""),
        (None, b"N", b""),
    ],
)
def test_encode_writes_the_narrowest_osc_type(value, tag, body):
    # int32 whenever it fits: Pd and Max read "i" but not always "h".
    assert encode("/x", value) == b"/x\x00\x00," + tag + b"\x00\x00" + body
    assert decode(encode("/x", value)) == [("/x", (value,))]


def test_the_other_type_tags_decode():
    data = (
        b"/x\x00\x00" + _padded(b",tSIcrmdhF")
        + struct.pack(">Q", 2**32 + 1)  # t: timetag
        + _padded(b"sym")  # S: symbol
        + struct.pack(">I", ord("A"))  # c: char
        + struct.pack(">I", 0x11223344)  # r: RGBA
        + bytes([0, 0x90, 60, 127])  # m: MIDI port, status, data
        + struct.pack(">d", 0.1)
        + struct.pack(">q", -5)
    )  # fmt: skip
    assert decode(data) == [("/x", (2**32 + 1, "sym", None, "A", 0x11223344, 0x00903C7F, 0.1, -5, False))]


def test_a_message_without_type_tags_has_no_arguments():
    assert decode(b"/sao/ping\x00\x00\x00") == [("/sao/ping", ())]
    assert decode(b"/abc\x00\x00\x00\x00") == [("/abc", ())]


@pytest.mark.parametrize(("depth", "ok"), [(4, True), (5, False)])
def test_bundles_nest_at_most_four_deep(depth, ok):
    if ok:
        assert decode(_nested(depth)) == [("/x", ())]
    else:
        with pytest.raises(OscError, match="nest at most 4 deep"):
            decode(_nested(depth))


def test_bundle_edges():
    assert decode(encode_bundle([])) == []  # just the header and the timetag
    assert decode(encode_bundle([encode("/a", 1), encode("/b", "x")])) == [("/a", (1,)), ("/b", ("x",))]
    with pytest.raises(OscError, match="element of 0 bytes"):
        decode(encode_bundle([]) + struct.pack(">i", 0))
    inner = encode_bundle([]) + b"\x00\x00"  # 18 bytes: its element size is cut short
    with pytest.raises(OscError, match="cut short at byte 16"):
        decode(encode_bundle([]) + struct.pack(">i", len(inner)) + inner + b"\x00\x00")
    assert encode_bundle([], timetag=7)[8:16] == struct.pack(">Q", 7)


def test_garbage_is_quoted_up_to_40_bytes():
    with pytest.raises(OscError) as err:
        decode(b"x" * 40)
    assert str(err.value).endswith(repr(b"x" * 40))  # all of it, nothing left to elide
    with pytest.raises(OscError) as err:
        decode(b"y" * 44)
    assert str(err.value).endswith(repr(b"y" * 40) + "...")
    with pytest.raises(OscError) as err:  # 41 bytes of address: one past the quote
        decode(b"/" + b"a" * 39 + b"\xff\x00\x00\x00")
    assert str(err.value).endswith(repr(b"/" + b"a" * 39) + "...")


def test_a_blob_may_end_the_datagram_exactly():
    assert decode(b"/x\x00\x00,b\x00\x00" + struct.pack(">i", 4) + b"abcd") == [("/x", (b"abcd",))]


def test_strings_that_are_not_utf8_are_replaced_not_refused():
    assert decode(b"/x\x00\x00,s\x00\x00a\xffb\x00") == [("/x", ("a\ufffdb",))]


@pytest.mark.parametrize(
    ("code", "char"),
    [
        (0x41, "A"),
        (0xFF000041, "A"),  # OSC's char is 32 bits; a character needs 21 of them
        (0xD7FF, "\ud7ff"),
        (0xE000, "\ue000"),
        (0x10FFFF, "\U0010ffff"),
        (0, "\ufffd"),  # NUL would end a string
        (0xD800, "\ufffd"),  # surrogates are no characters
        (0xDFFF, "\ufffd"),
        (0x110000, "\ufffd"),  # past Unicode
        (0x1FFFFF, "\ufffd"),
    ],
)
def test_an_osc_char_that_is_no_character_arrives_as_the_replacement_character(code, char):
    assert decode(b"/x\x00\x00,c\x00\x00" + struct.pack(">I", code)) == [("/x", (char,))]


def test_every_string_encodes_nul_and_lone_surrogates_replaced():
    # a NUL would end the string early; a lone surrogate (from a decoded path) has no UTF-8
    assert decode(encode("/x", "a\x00b", "c\ud800d")) == [("/x", ("a\ufffdb", "c?d"))]


def test_bundles_say_immediately_by_default():
    assert encode_bundle([])[8:16] == struct.pack(">Q", 1)  # OSC's "now"
