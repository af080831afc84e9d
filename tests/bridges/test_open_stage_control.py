"""The Open Stage Control session file: the loader's structure, known widget types, 16 pads, the controls."""

from __future__ import annotations

import json

import pytest

from . import addresses as a

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


def test_generation_controls(session):
    by_id = {w["id"]: w for w in a.osc_widgets()}
    assert by_id["prompt"]["type"] == "input" and by_id["prompt"]["bypass"] is True
    assert by_id["seconds"]["bypass"] is True and by_id["seed"]["bypass"] is True
    for name in ("gen", "trigger"):
        script = by_id[name]["onValue"]
        assert f"send('/sao/{name}', id, String(get('prompt')), get('seconds'), 'seed', seed)" in script
        for ref in ("request_id", "prompt", "seconds", "seed"):
            assert f"get('{ref}')" in script and ref in by_id
    assert (by_id["stop"]["address"], by_id["stop"]["preArgs"]) == ("/sao/stop", ["all"])
