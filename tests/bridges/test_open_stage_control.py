"""The Open Stage Control session file: the loader's structure, known widget types, 16 pads, the controls."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from . import addresses as a
from . import oscforms as forms

# src/client/widgets/index.mjs of open-stage-control 1.x: every widget type its session loader knows
WIDGET_TYPES = {"button", "switch", "dropdown", "menu", "input", "textarea", "file", "panel", "folder", "root",
                "tab", "modal", "clone", "fragment", "matrix", "keyboard", "patchbay", "patchbaynode", "image",
                "svg", "html", "frame", "plot", "eq", "visualizer", "led", "text", "xy", "rgb", "multixy", "canvas",
                "fader", "knob", "encoder", "range", "script", "variable"}  # fmt: skip
BUTTON_MODES = {"toggle", "push", "momentary", "tap"}  # src/client/widgets/basics/button.mjs


@pytest.fixture(scope="module")
def session():
    return json.loads(a.OSC_LAYOUT.read_text())


def test_session_envelope(session):
    assert session["type"] == "session" and session["createdWith"] == "Open Stage Control"
    assert session["version"].count(".") == 2
    assert session["content"]["type"] == "root" and session["content"]["id"] == "root"


def test_widgets_are_known_and_ids_unique(session):
    widgets = a.osc_widgets()
    ids = [w["id"] for w in widgets]
    assert len(ids) == len(set(ids))
    for w in widgets:
        assert w["type"] in WIDGET_TYPES, w
        for key in ("top", "left", "width", "height"):
            assert isinstance(w.get(key, 0), int | float), (w["id"], key)
        if w["type"] == "button":
            assert w["mode"] in BUTTON_MODES, w
        if "preArgs" in w:
            assert isinstance(w["preArgs"], list | str)


def test_sixteen_pads_press_and_release(session):
    pads = [w for w in a.osc_widgets() if w["id"].startswith("pad_")]
    assert sorted(w["address"] for w in pads) == sorted(f"/sao/pad/{n}" for n in range(1, 17))
    for w in pads:
        assert (w["type"], w["mode"], w["on"], w["off"]) == ("button", "push", 1, 0)
        assert not w.get("bypass")


def test_generation_controls_are_local(session):
    by_id = {w["id"]: w for w in a.osc_widgets()}
    assert by_id["prompt"]["type"] == "input" and by_id["prompt"]["bypass"] is True
    assert by_id["seconds"]["bypass"] is True and by_id["seed"]["bypass"] is True
    assert (by_id["stop"]["address"], by_id["stop"]["preArgs"]) == ("/sao/stop", ["all"])


# ---------------------------------------------------------------- what the session sends
# The widgets and their scripts run in Node (osc_session.js stands in for Open Stage Control's GUI).

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")


def session_after(*actions, layout=a.OSC_LAYOUT) -> dict:
    """{"sent": [...], "values": {id: value}} once the actions ran."""
    out = subprocess.run([NODE, str(Path(__file__).with_name("osc_session.js")), str(layout), json.dumps(actions)],
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return json.loads(out.stdout)


def run(*actions, layout=a.OSC_LAYOUT) -> list[tuple[str, list]]:
    return [(m["address"], m["args"]) for m in session_after(*actions, layout=layout)["sent"]]


def _only(sent, address):
    assert [m[0] for m in sent] == [address], sent
    return forms.check(*sent[0])


@needs_node
@pytest.mark.parametrize("address", ["/sao/gen", "/sao/trigger"])
def test_a_request_carries_prompt_seconds_and_seed_where_the_protocol_puts_them(address):
    sent = run({"id": "prompt", "value": "dusty tape loop"}, {"id": "seconds", "value": 6.5},
               {"id": "seed", "value": "42"}, {"id": address.rsplit("/", 1)[1], "tap": True})  # fmt: skip
    bound = _only(sent, address)
    assert bound == {"id": bound["id"], "prompt": ["dusty tape loop"], "seconds": 6.5, "seed": 42}


@needs_node
@pytest.mark.parametrize("seconds", [None, -5, 0, 1e9])  # None: the knob's default; others clamp to its range
def test_every_seconds_the_knob_allows_is_accepted(seconds):
    actions = [] if seconds is None else [{"id": "seconds", "value": seconds}]
    bound = _only(run(*actions, {"id": "gen", "tap": True}), "/sao/gen")  # check(): the daemon's parser accepts it
    assert bound["seconds"] > 0


@needs_node
def test_the_request_id_increments():
    sent = run(*[{"id": name, "tap": True} for name in ("gen", "gen", "trigger")])
    ids = [forms.check(*m)["id"] for m in sent]
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2], ids


@needs_node
def test_stop_and_cancel_address_every_voice_and_request():
    assert _only(run({"id": "stop", "press": True}), "/sao/stop") == {"all": True}
    assert _only(run({"id": "cancel", "press": True}), "/sao/cancel") == {"all": True}


@needs_node
def test_a_pad_sends_a_press_then_a_release():
    sent = run({"id": "pad_3", "press": True}, {"id": "pad_3", "release": True})
    assert [m[0] for m in sent] == ["/sao/pad/3", "/sao/pad/3"]
    press, release = (forms.check(*m) for m in sent)
    assert press.get("velocity", 1) > 0 and release.get("velocity") == 0  # the table: 0 is a release


@needs_node
def test_every_message_any_widget_sends_fits_the_protocol():
    actions = []
    for w in a.osc_widgets():
        if w["type"] == "button":
            actions += [{"id": w["id"], "press": True}, {"id": w["id"], "release": True}]
        elif w["type"] in ("knob", "fader") and "range" in w:
            actions += [{"id": w["id"], "value": w["range"][k]} for k in ("min", "max")] + [{"id": "gen", "tap": True}]
    sent = run(*actions)
    assert {m[0] for m in sent} >= {"/sao/gen", "/sao/trigger", "/sao/stop", "/sao/cancel", "/sao/pad/16"}
    for address, args in sent:
        forms.check(address, args)


@needs_node
@pytest.mark.parametrize("first_sound", [4.1, -1.0])  # -1: the clip was not played while it decoded
def test_timing_shows_each_figure_after_its_label(first_sound):
    args, by_name = forms.sample_reply("/sao/timing", first_sound=first_sound)
    after = session_after({"receive": "/sao/timing", "args": args})
    line = after["values"]["timing"]
    assert forms.timing_shown(line) == pytest.approx(forms.timing_expected(by_name), abs=0.006), line
    assert after["sent"] == []  # showing sends nothing to the daemon


@needs_node
def test_an_interruption_is_shown():
    args, by_name = forms.sample_reply("/sao/interrupted")
    values = session_after({"receive": "/sao/interrupted", "args": args})["values"]
    assert values["interrupted"] == [by_name["id"], by_name["reason"]]
