"""The Max patch is a valid patcher file of vanilla Max objects, wired the way the README describes."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from . import addresses as a

# maxclass of UI and special boxes, and the object names inside "newobj" boxes, that ship with Max 8/9
# (no externals, no Max for Live-only live.* objects: those are what the M4L steps in bridges/max/README.md add).
UI_CLASSES = {"newobj", "message", "comment", "textedit", "flonum", "number", "button", "toggle", "slider",
              "multislider", "waveform~", "dropfile", "live.drop"} - {"live.drop"}  # fmt: skip
OBJECTS = {"udpsend", "udpreceive", "route", "prepend", "append", "sprintf", "tosymbol", "fromsymbol", "zl",
           "t", "trigger", "counter", "gate", "pack", "pak", "unpack", "i", "f", ">", "+", "change", "metro",
           "transport", "buffer~", "loadbang", "print", "sel", "select", "split"}  # fmt: skip


@pytest.fixture(scope="module")
def patcher():
    return json.loads(a.MAX_PATCH.read_text())["patcher"]


def test_patcher_structure(patcher):
    assert patcher["fileversion"] == 1 and patcher["classnamespace"] == "box"
    assert isinstance(patcher["boxes"], list) and isinstance(patcher["lines"], list)
    assert len(patcher["boxes"]) > 40 and len(patcher["lines"]) > 40
    ids = [b["box"]["id"] for b in patcher["boxes"]]
    assert len(ids) == len(set(ids)), "box ids must be unique"
    for b in patcher["boxes"]:
        box = b["box"]
        assert len(box["patching_rect"]) == 4 and box["numinlets"] >= 0 and box["numoutlets"] >= 0
        assert len(box.get("outlettype", [])) == box["numoutlets"], box


def test_every_line_joins_existing_boxes_at_existing_ports(patcher):
    boxes = {b["box"]["id"]: b["box"] for b in patcher["boxes"]}
    for line in patcher["lines"]:
        (src, outlet), (dst, inlet) = line["patchline"]["source"], line["patchline"]["destination"]
        assert src in boxes and dst in boxes, line
        assert 0 <= outlet < boxes[src]["numoutlets"], (boxes[src].get("text"), outlet)
        assert 0 <= inlet < boxes[dst]["numinlets"], (boxes[dst].get("text"), inlet)


def test_only_vanilla_max_objects(patcher):
    for b in patcher["boxes"]:
        box = b["box"]
        assert box["maxclass"] in UI_CLASSES, f"{box['maxclass']!r} is not a vanilla Max box"
        if box["maxclass"] == "newobj":
            name = box["text"].split()[0]
            assert name in OBJECTS, f"[{box['text']}]: {name!r} is not in the vanilla allow-list"


def _graph(patcher):
    boxes = {b["box"]["id"]: b["box"] for b in patcher["boxes"]}
    edges = defaultdict(set)
    for line in patcher["lines"]:
        edges[line["patchline"]["source"][0]].add(line["patchline"]["destination"][0])
    return boxes, edges


def _reaches(patcher, start_pred, end_pred) -> bool:
    boxes, edges = _graph(patcher)
    todo = [i for i, b in boxes.items() if start_pred(b)]
    seen = set(todo)
    while todo:
        i = todo.pop()
        if end_pred(boxes[i]):
            return True
        for j in edges[i] - seen:
            seen.add(j)
            todo.append(j)
    return False


def _is(text):
    return lambda b: b.get("text", "").startswith(text)


def _cls(maxclass):
    return lambda b: b["maxclass"] == maxclass


@pytest.mark.parametrize(
    ("what", "start", "end"),
    [
        ("the generate button reaches udpsend", lambda b: b["maxclass"] == "button", _is("udpsend")),
        ("the prompt box reaches udpsend", _cls("textedit"), _is("udpsend")),
        ("/sao/progress drives the progress slider", _is("udpreceive"), _cls("slider")),
        ("/sao/done loads the clip into buffer~", _is("udpreceive"), _is("buffer~")),
        ("the transport's tempo is sent (bpm)", _is("transport"), _is("udpsend")),
    ],
)
def test_wiring(patcher, what, start, end):
    assert _reaches(patcher, start, end), what


def test_ports_and_buffer_names(patcher):
    texts = [b["box"].get("text", "") for b in patcher["boxes"]]
    assert "udpsend 127.0.0.1 9321" in texts and "udpreceive 9322" in texts  # the daemon's defaults
    assert "/sao/hello 9322" in texts
    buffers = {t.split()[1] for t in texts if t.startswith("buffer~")}
    waves = {b["box"]["buffername"] for b in patcher["boxes"] if b["box"]["maxclass"] == "waveform~"}
    assert buffers == waves == {"sao-clip"}


def test_bpm_only_travels_with_bars(patcher):
    # the daemon rejects bpm with plain seconds (bad_bars): the seconds branch must not carry it
    texts = [b["box"].get("text", "") for b in patcher["boxes"] if b["box"]["maxclass"] == "message"]
    with_bpm = [t for t in texts if " bpm " in f" {t} "]
    assert with_bpm and all(" bars " in f" {t} " for t in with_bpm), with_bpm
