"""What each bridge file sends and listens for, read from the file itself, and the protocol's vocabulary."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from sao_live.daemon import protocol

ROOT = Path(__file__).resolve().parents[2]
MAX_PATCH = ROOT / "bridges" / "max" / "sao-live.maxpat"
MAX_DEVICE = ROOT / "bridges" / "max" / "sao-live-device.maxpat"  # the source of sao-live.amxd
MAX_PADS = ROOT / "bridges" / "max" / "sao-live-pads.maxpat"  # the source of sao-live-pads.amxd
PD_PATCH = ROOT / "bridges" / "pd" / "sao-live.pd"
OSC_LAYOUT = ROOT / "bridges" / "open-stage-control" / "sao-live.json"
OSC_CLIENT = ROOT / "examples" / "osc_client.py"
MIDI_PADS = ROOT / "examples" / "midi_pads.py"


def _pattern(address: str) -> re.Pattern:
    # "/sao/pad/<n>" -> one path segment in place of <n>
    return re.compile("".join("[^/]+" if p.startswith("<") else re.escape(p) for p in re.split(r"(<[^>]+>)", address)))


def takes(row_address: str, address: str) -> bool:
    """True when the row written `row_address` (e.g. /sao/pad/<n>) takes `address`."""
    return bool(_pattern(row_address).fullmatch(address))


def served(address: str) -> bool:
    """True when some row of protocol.PROTOCOL takes `address`."""
    rows = [r.address for r in protocol.PROTOCOL if r.address.startswith("/")]
    return any(_pattern(a).fullmatch(address) for a in rows)


def replies() -> set[str]:
    """Every address the daemon may send: the replies column and the announcements."""
    text = " ".join(r.replies for r in protocol.PROTOCOL) + " " + " ".join(m for m, _ in protocol.ANNOUNCEMENTS)
    text += " /sao/error"  # the (any other) row: every bad message is answered with it
    return set(re.findall(r"/sao/[a-z/_]+[a-z]", text))


# ---------------------------------------------------------------- Max


def max_boxes(path: Path = MAX_PATCH) -> list[dict]:
    return [b["box"] for b in json.loads(path.read_text())["patcher"]["boxes"]]


def max_sent(path: Path = MAX_PATCH) -> set[str]:
    """Addresses in message boxes, [prepend ...] and [sprintf ...] (a `set /sao/x` counts as /sao/x)."""
    out = set()
    for b in max_boxes(path):
        words = b.get("text", "").split()
        if b["maxclass"] == "message" and words:
            words = words[1:] if words[0] == "set" else words
            out |= {words[0]} if words and words[0].startswith("/sao/") else set()
        elif b["maxclass"] == "newobj" and words[:1] in (["prepend"], ["sprintf"]) and words[1].startswith("/sao/"):
            out.add(re.sub(r"%l?[dif]", "1", words[1]))
    return out


def max_heard(path: Path = MAX_PATCH) -> set[str]:
    heard = set()
    for b in max_boxes(path):
        words = b.get("text", "").split()
        if b["maxclass"] == "newobj" and words[:1] == ["route"]:
            heard |= {w for w in words[1:] if w.startswith("/sao/")}
    return heard


# ---------------------------------------------------------------- Pd


def pd_lines(path: Path = PD_PATCH) -> list[str]:
    """The patch's records (`#X obj ...`), one per `;`, with the escapes left in."""
    return [r.strip().replace("\n", " ") for r in re.split(r"(?<!\\);", path.read_text()) if r.strip()]


def pd_sent(path: Path = PD_PATCH) -> set[str]:
    """[oscformat a b] sends /a/b; a message `set a b ...` into it switches it to /a/b/..."""
    out = set()
    for rec in pd_lines(path):
        words = rec.split()
        if words[:2] == ["#X", "obj"] and words[4:5] == ["oscformat"]:
            out.add("/" + "/".join(words[5:]))
        if words[:2] == ["#X", "msg"] and words[4:5] == ["set"] and words[5:6] == ["sao"]:
            out.add("/" + "/".join(w.replace("\\$1", "1") for w in words[5:]))
    return out


def pd_heard(path: Path = PD_PATCH) -> set[str]:
    """What follows [route sao]: its [route done progress ...] names the replies handled."""
    for rec in pd_lines(path):
        words = rec.split()
        if words[:2] == ["#X", "obj"] and words[4:5] == ["route"] and "done" in words:
            return {"/sao/" + w for w in words[5:]}
    return set()


# ---------------------------------------------------------------- Open Stage Control


def osc_widgets(path: Path = OSC_LAYOUT) -> list[dict]:
    def walk(w):
        yield w
        for child in w.get("widgets", []) + w.get("tabs", []):
            yield from walk(child)

    return list(walk(json.loads(path.read_text())["content"]))


RECEIVERS = {"text", "led", "variable"}  # widget types that only show what arrives


def osc_sent(path: Path = OSC_LAYOUT) -> set[str]:
    out = set()
    for w in osc_widgets(path):
        if w["type"] not in RECEIVERS and not w.get("bypass") and w["type"] not in ("root", "tab", "panel"):
            out.add(w["address"])
        out |= set(re.findall(r"send\(\s*'([^']+)'", w.get("onValue", "")))
    return out


def osc_heard(path: Path = OSC_LAYOUT) -> set[str]:
    return {w["address"] for w in osc_widgets(path) if w["type"] in RECEIVERS and "address" in w}


# ---------------------------------------------------------------- Python examples


def _sao_constants(node) -> set[str]:
    return {
        n.value
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and re.fullmatch(r"/sao/[a-z/_0-9]+", n.value)
    }


def python_heard(path: Path) -> set[str]:
    """/sao/ strings a script compares replies with (`addr == "/sao/done"`)."""
    tree = ast.parse(path.read_text())
    return set().union(*(_sao_constants(n) for n in ast.walk(tree) if isinstance(n, ast.Compare)))


def python_sent(path: Path) -> set[str]:
    """Every other /sao/ string in a script: the addresses it sends."""
    return _sao_constants(ast.parse(path.read_text())) - python_heard(path)
