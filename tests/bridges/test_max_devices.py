"""The Max for Live devices: the committed .amxd files are what tools/build_amxd.py makes of their .maxpat
sources, the container is well formed, the Live objects are there, and the devices' logic (run through
maxsim: Live cannot run here) talks to Live and the daemon the way the PROTOCOL table says."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from . import addresses as a
from . import maxsim
from . import oscforms as forms
from .test_max_messages import LIVE, make

MAX = a.ROOT / "bridges" / "max"
spec = importlib.util.spec_from_file_location("build_amxd", a.ROOT / "tools" / "build_amxd.py")
build_amxd = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_amxd)

DEVICE, PADS = a.MAX_DEVICE, a.MAX_PADS
KINDS = {"sao-live.amxd": "audio effect", "sao-live-pads.amxd": "MIDI effect"}


@pytest.mark.parametrize("name", sorted(build_amxd.DEVICES))
def test_the_committed_device_is_what_its_source_builds(name):
    assert (MAX / name).read_bytes() == build_amxd.build(name), "run: python tools/build_amxd.py"


@pytest.mark.parametrize("name", sorted(build_amxd.DEVICES))
def test_the_container(name):
    data = (MAX / name).read_bytes()
    chunks = build_amxd.chunks(data)  # lengths must add up to the file
    assert [tag for tag, _ in chunks] == [b"ampf", b"meta", b"ptch"]
    (_, kind), (_, meta), (_, ptch) = chunks
    assert build_amxd.TYPES[kind] == KINDS[name] and meta == bytes(4)
    assert ptch.endswith(b"\0") and b"\0" not in ptch[:-1]
    source = MAX / build_amxd.DEVICES[name][0]
    assert json.loads(ptch[:-1]) == json.loads(source.read_text())


def test_the_chunk_reader_rejects_a_truncated_file():
    data = (MAX / "sao-live.amxd").read_bytes()
    with pytest.raises(ValueError):
        build_amxd.chunks(data[:-10])


def _boxes(path):
    return [b["box"] for b in maxsim.patcher_of(path)["boxes"]]


def _texts(path):
    return [b.get("text", "") for b in _boxes(path)]


def _lines(path):
    return {(tuple(x["patchline"]["source"]), tuple(x["patchline"]["destination"])) for x in
            maxsim.patcher_of(path)["lines"]}  # fmt: skip


def _id(path, text):
    return next(b["id"] for b in _boxes(path) if b.get("text") == text)


@pytest.mark.parametrize("path", [DEVICE, PADS])
def test_controls_are_saved_with_the_live_set_and_laid_out_for_the_device_strip(path):
    patcher = maxsim.patcher_of(path)
    assert patcher["openinpresentation"] == 1
    controls = [b for b in _boxes(path) if b["maxclass"] in ("live.numbox", "live.text", "live.slider")]
    assert controls
    for b in controls:
        valueof = b["saved_attribute_attributes"]["valueof"]
        assert b["parameter_enable"] == 1 and valueof["parameter_longname"], b["id"]
        assert patcher["parameters"][b["id"]][0] == valueof["parameter_longname"]
    for b in _boxes(path):
        if b.get("presentation"):
            x, y, w, h = b["presentation_rect"]
            assert y >= 0 and y + h <= 169, f"{b['id']} is outside Live's 169 px device strip"
    shown = {b["id"] for b in _boxes(path) if b.get("presentation")}
    assert {b["id"] for b in controls} <= shown


def test_the_audio_device_passes_audio_through_and_uses_live():
    texts = _texts(DEVICE)
    assert {"live.thisdevice", "live.observer tempo", "live.path", "live.object"} <= set(texts)
    assert {"path live_set", "path live_set view highlighted_clip_slot"} <= set(texts)
    assert "loadbang" not in texts  # live.thisdevice: Live's objects are ready only then
    pin, pout = _id(DEVICE, "plugin~"), _id(DEVICE, "plugout~")
    assert {((pin, 0), (pout, 0)), ((pin, 1), (pout, 1))} <= _lines(DEVICE)
    classes = {b["maxclass"] for b in _boxes(DEVICE)}
    assert {"live.numbox", "live.text", "live.slider", "waveform~"} <= classes


def test_the_device_follows_lives_tempo():
    sim = make(DEVICE)
    assert ("/sao/set/bpm", [LIVE["live_set"]["tempo"]]) in sim.sent  # on start-up
    sim.sent.clear()
    sim.observe("tempo", 133.0)
    assert [forms.check(*m) for m in sim.sent] == [{"value": 133.0}] and sim.sent[0][0] == "/sao/set/bpm"
    assert sim.shown("bpm") == 133.0


def _done(sim):
    args, by_name = forms.sample_reply("/sao/done")
    sim.receive("/sao/done", *args)
    return by_name["path"]


def test_to_slot_creates_an_audio_clip_of_the_last_clip_in_the_highlighted_slot():
    sim = make(DEVICE)
    path = _done(sim)
    sim.click("to slot")
    slot = LIVE["live_set view highlighted_clip_slot"]["id"]
    assert sim.live_calls == [[slot, "create_audio_clip", path]]
    assert sim.shown("error") == []


@pytest.mark.parametrize(
    ("where", "prop", "value", "says"),
    [
        ("live_set view highlighted_clip_slot", "has_clip", 1, "not empty"),
        ("live_set view selected_track", "has_audio_input", 0, "not on an audio track"),
        (None, None, None, "no clip yet"),
    ],
)
def test_to_slot_says_why_it_cannot(where, prop, value, says):
    live = {k: dict(v) for k, v in LIVE.items()}
    if where:
        live[where][prop] = value
    sim = make(DEVICE, live)
    if where:
        _done(sim)
    sim.click("to slot")
    assert sim.live_calls == []
    assert says in " ".join(map(str, sim.shown("error")))


# ---------------------------------------------------------------- the pads device


def _pad_offset() -> int:
    """The table's `/sao/pad/<n>`: "like MIDI note 35+n"."""
    row = forms.row("/sao/pad/1")
    return int(re.search(r"MIDI note (\d+)\+n", row.meaning)[1])


def _pads(path=PADS):
    sim = maxsim.Sim(maxsim.patcher_of(path))
    sim.load()
    sim.sent.clear()
    return sim


def test_notes_press_and_release_pads():
    sim = _pads()
    first = _pad_offset() + 1
    sim.midi(0x90, first, 100, 0x90, first + 15, 127, 0x80, first, 64, 0x90, first + 15, 0)
    assert [m[0] for m in sim.sent] == ["/sao/pad/1", "/sao/pad/16", "/sao/pad/1", "/sao/pad/16"]
    velocities = [forms.check(*m).get("velocity") for m in sim.sent]
    assert velocities[0] > 0 and velocities[1] > velocities[0] and velocities[2:] == [0, 0]  # 0: a release


def test_notes_outside_the_sixteen_pads_send_nothing_and_all_midi_passes_through():
    sim = _pads()
    first = _pad_offset() + 1
    data = [0x90, first - 1, 100, 0x90, first + 16, 100, 0xB0, 7, 100]
    sim.midi(*data)
    assert sim.sent == [] and sim.midi_out == data


def test_the_base_note_moves_the_pads():
    sim = _pads()
    sim.set("base note", 48)
    sim.midi(0x90, 48, 90, 0x90, 48 + 3, 90, 0x90, _pad_offset() + 1, 90)
    assert [m[0] for m in sim.sent] == ["/sao/pad/1", "/sao/pad/4"]


def test_a_midi_velocity_of_1_is_a_quiet_hit_not_a_full_one():
    # the table reads velocity 0..1 as a fraction: MIDI's 1 must not arrive as 1
    sim = _pads()
    sim.midi(0x90, _pad_offset() + 1, 1)
    assert 0 < forms.check(*sim.sent[0])["velocity"] < 2 / 127


def test_a_full_midi_velocity_is_a_full_hit():
    # the table reads velocity 0..1 as a fraction of a full hit: 127 must arrive as 1, not past it
    sim = _pads()
    sim.midi(0x90, _pad_offset() + 1, 127, 0x90, _pad_offset() + 2, 64)
    assert [forms.check(*m)["velocity"] for m in sim.sent] == [1.0, pytest.approx(64 / 127, abs=1e-6)]


def test_a_program_change_switches_the_bank():
    sim = _pads()
    sim.midi(0xC0, 3)
    assert [m[0] for m in sim.sent] == ["/sao/bank"] and forms.check(*sim.sent[0]) == {"n": 3}


def test_the_pads_device_sends_only_what_the_protocol_serves():
    sim = _pads()
    for note in range(128):
        sim.midi(0x90, note, 100, 0x80, note, 0)
    sim.midi(0xC0, 0, 0xC0, 127)
    assert len(sim.sent) == 2 * 16 + 2
    for address, args in sim.sent:
        forms.check(address, args)
    assert {b.name for b in sim.boxes.values()} >= {"midiin", "midiout", "live.numbox", "udpsend"}
