"""A small evaluator of Max patcher files, for the objects the sao-live patches use.

Max and Live cannot run here, so the tests run the patch's logic instead: messages travel the
patchcords depth-first, one outlet's cords right to left (by the receiving box's position, as Max
orders them), and each object does what Max's reference says it does with the messages these patches
send it. A message is a list of atoms (int, float, str): `["bang"]`, `[3]`, `[1, 2.5]`,
`["/sao/gen", 7, "warm"]`. An object the evaluator does not know fails loudly, so a patch cannot
pass by using something the tests never run.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

BANG = ["bang"]


def atom(word: str):
    """A word of a box's text as Max reads it: 4 int, 4. or 0.5 float, anything else a symbol."""
    if re.fullmatch(r"-?\d+", word):
        return int(word)
    if re.fullmatch(r"-?(\d+\.\d*|\.\d+)(e-?\d+)?", word):
        return float(word)
    return word


def words(text: str) -> list:
    """A box's text as atoms; a double-quoted "two words" is one symbol, as in Max."""
    return [m[1] if m[1] is not None else atom(m[2]) for m in re.finditer(r'"([^"]*)"|(\S+)', text)]


def fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def patcher_of(path: Path) -> dict:
    return json.loads(path.read_text())["patcher"]


class Box:
    def __init__(self, sim: Sim, box: dict):
        self.sim, self.raw, self.id = sim, box, box["id"]
        self.cls = box["maxclass"]
        self.args = words(box.get("text", "")) if self.cls == "newobj" else []
        self.name = self.args[0] if self.cls == "newobj" else self.cls
        self.args = self.args[1:]
        self.state: dict = {}
        self.x, self.y = box["patching_rect"][:2]

    def out(self, outlet: int, msg: list) -> None:
        self.sim.out(self, outlet, msg)

    def __repr__(self):
        return f"[{self.raw.get('text', self.cls)}]"


def _num_types(args: list) -> list:
    return [float if isinstance(a, float) else int if isinstance(a, int) else str for a in args]


def _conv(kind, value):
    if kind is int:
        return int(value) if isinstance(value, int | float) else 0
    if kind is float:
        return float(value) if isinstance(value, int | float) else 0.0
    return value


def _dollar(content: list, msg: list) -> list:
    """$n in a message box: the nth atom of the incoming message (0 when there is none)."""
    out = []
    for a in content:
        if isinstance(a, str) and re.fullmatch(r"\$\d", a):
            n = int(a[1:])
            out.append(msg[n - 1] if msg != BANG and n <= len(msg) else 0)
        else:
            out.append(a)
    return out


def _rest(msg: list) -> list:
    return msg if msg else BANG


class Sim:
    """Load a patcher, then act on it like a user: click(), set(), type(), receive(), and read sent."""

    def __init__(self, patcher: dict, live_paths: dict | None = None):
        self.boxes = {b["box"]["id"]: Box(self, b["box"]) for b in patcher["boxes"]}
        self.cords: dict[tuple[str, int], list[tuple[Box, int]]] = defaultdict(list)
        for line in patcher["lines"]:
            (src, outlet), (dst, inlet) = line["patchline"]["source"], line["patchline"]["destination"]
            self.cords[(src, outlet)].append((self.boxes[dst], inlet))
        for targets in self.cords.values():
            targets.sort(key=lambda t: (-t[0].x, -t[0].y))  # right to left, then bottom to top
        self.sent: list[tuple[str, list]] = []  # what reached [udpsend], as (address, arguments)
        self.printed: list[list] = []
        self.midi_out: list[int] = []
        self.live_calls: list[list] = []  # what reached [live.object]
        # Live's object model for live.path: path -> (id, properties) of the object there
        self.live_paths = live_paths or {}
        self.depth = 0

    # ------------------------------------------------------------ finding boxes

    def find(self, name: str) -> Box:
        """A box by its scripting name (varname), or a live.* object by its parameter's long name."""
        hits = [b for b in self.boxes.values() if name in (b.raw.get("varname"), _longname(b.raw))]
        assert len(hits) == 1, f"{len(hits)} boxes named {name!r}"
        return hits[0]

    def all(self, name: str) -> list[Box]:
        return [b for b in self.boxes.values() if b.name == name]

    # ------------------------------------------------------------ acting

    def load(self) -> None:
        """What happens when the patch opens: in Live, each saved parameter is restored (its object
        sends it on), then live.thisdevice bangs."""
        for b in self.boxes.values():
            vo = b.raw.get("saved_attribute_attributes", {}).get("valueof", {})
            if b.raw.get("parameter_enable") and vo.get("parameter_initial_enable"):
                self.send_to(b, 0, [vo["parameter_initial"][0]])
        for b in self.all("loadbang") + self.all("live.thisdevice"):
            b.out(0, BANG)

    def click(self, name: str) -> None:
        b = self.find(name)
        if b.cls == "live.text" and b.raw.get("mode", 1) == 0:  # a button: 1 on the click
            b.out(0, [1])
        else:
            self.send_to(b, 0, BANG)

    def set(self, name: str, value) -> None:
        """The user sets a number box, slider or dial (its own range and type apply)."""
        self.send_to(self.find(name), 0, [value])

    def type(self, name: str, text: str) -> None:
        """Text typed into a textedit, then Return."""
        b = self.find(name)
        assert b.cls == "textedit", b
        b.state["text"] = text
        b.out(0, ["text", text] if b.raw.get("outputmode", 0) == 1 else ["text", *words(text)])

    def receive(self, address: str, *args) -> None:
        """An OSC message arriving at every [udpreceive]."""
        for b in self.all("udpreceive"):
            b.out(0, [address, *args])

    def midi(self, *data: int) -> None:
        """Raw MIDI bytes arriving at every [midiin] (what Live passes to a MIDI effect)."""
        for byte in data:
            for b in self.all("midiin"):
                b.out(0, [byte])

    def observe(self, prop: str, value) -> None:
        """Live reports a new value of `prop` to the [live.observer] watching it."""
        for b in self.all("live.observer"):
            if b.state.get("property", b.args[0] if b.args else None) == prop and "id" in b.state:
                b.out(0, [value])

    def shown(self, name: str):
        """What a UI box shows now."""
        b = self.find(name)
        return b.state.get("value", b.state.get("content"))

    # ------------------------------------------------------------ running

    def out(self, box: Box, outlet: int, msg: list) -> None:
        assert 0 <= outlet < box.raw["numoutlets"], (box, outlet)
        for dst, inlet in list(self.cords[(box.id, outlet)]):
            self.send_to(dst, inlet, list(msg))

    def send_to(self, box: Box, inlet: int, msg: list) -> None:
        assert 0 <= inlet < max(box.raw["numinlets"], 1), (box, inlet)
        self.depth += 1
        assert self.depth < 200, f"a loop through {box}"
        try:
            handler = OBJECTS.get(box.name) or OBJECTS.get(box.cls)
            assert handler, f"the evaluator does not know {box}"
            handler(box, inlet, msg)
        finally:
            self.depth -= 1


def _longname(raw: dict) -> str | None:
    return raw.get("saved_attribute_attributes", {}).get("valueof", {}).get("parameter_longname")


# ---------------------------------------------------------------- objects

OBJECTS = {}


def obj(*names):
    def put(fn):
        for n in names:
            OBJECTS[n] = fn
        return fn

    return put


@obj("message")
def _message(b, inlet, msg):
    content = b.state.setdefault("content", words(b.raw.get("text", "")))
    if inlet == 1 or msg[:1] == ["set"]:  # set the content, send nothing
        b.state["content"] = msg[1:] if msg[:1] == ["set"] else msg
        return
    for part in _split_commas(_dollar(content, msg)):
        b.out(0, part)


def _split_commas(content):
    parts, cur = [], []
    for a in content:
        if a == ",":
            parts.append(cur)
            cur = []
        else:
            cur.append(a)
    return [p for p in [*parts, cur] if p]


@obj("comment", "panel", "print", "live.comment")
def _print(b, inlet, msg):
    if b.name == "print":
        b.sim.printed.append([*b.args[:1], *msg])


@obj("button", "live.button")
def _button(b, inlet, msg):
    b.out(0, BANG)


@obj("toggle")
def _toggle(b, inlet, msg):
    v = (0 if b.state.get("value") else 1) if msg == BANG else int(msg[0] != 0)
    b.state["value"] = v
    b.out(0, [v])


def _range(b) -> tuple:
    if b.cls.startswith("live."):  # Live's defaults when the saved attributes leave them out
        vo = b.raw["saved_attribute_attributes"]["valueof"]
        return vo.get("parameter_mmin", 0.0), vo.get("parameter_mmax", 127.0)
    return b.raw.get("minimum"), b.raw.get("maximum")


def _kind(b):
    if b.cls == "flonum":
        return float
    if b.cls in ("live.numbox", "live.slider", "live.dial"):
        vo = b.raw["saved_attribute_attributes"]["valueof"]
        return int if vo.get("parameter_type", 0) == 1 else float
    return int


@obj("number", "flonum", "live.numbox", "live.slider", "live.dial", "slider")
def _number(b, inlet, msg):
    if b.cls == "slider":  # the progress bar: shows what it gets, sends it on
        b.state["value"] = msg[0]
        b.out(0, msg)
        return
    setting = msg[:1] == ["set"]
    if msg == BANG:
        value = b.state.get("value", _initial(b))
    else:
        value = msg[1] if setting else msg[0]
        lo, hi = _range(b)
        value = value if lo is None else max(lo, value)
        value = value if hi is None else min(hi, value)
        value = _kind(b)(value)
        b.state["value"] = value
    if not setting:
        b.out(0, [value])


def _initial(b):
    vo = b.raw.get("saved_attribute_attributes", {}).get("valueof", {})
    if vo.get("parameter_initial_enable"):
        return _kind(b)(vo["parameter_initial"][0])
    return _kind(b)(0)


@obj("live.text")
def _live_text(b, inlet, msg):
    if msg[:1] == ["set"]:
        b.state["value"] = msg[1]
        return
    b.state["value"] = msg[0] if msg != BANG else 1
    b.out(0, [b.state["value"]])


@obj("textedit")
def _textedit(b, inlet, msg):
    if msg[:1] == ["set"]:
        b.state["value"] = " ".join(fmt(a) for a in msg[1:])
    elif msg == BANG:
        b.out(0, ["text", b.state.get("value", "")])


@obj("waveform~", "live.drop")
def _waveform(b, inlet, msg):
    if msg[:1] == ["set"]:
        b.state["buffer"] = msg[1]


@obj("buffer~")
def _buffer(b, inlet, msg):
    if msg[:1] in (["replace"], ["read"]):
        b.state["file"] = msg[1]


@obj("loadbang", "live.thisdevice", "udpreceive", "midiin", "plugin~")
def _source(b, inlet, msg):
    pass


@obj("plugout~")
def _plugout(b, inlet, msg):
    pass


@obj("udpsend")
def _udpsend(b, inlet, msg):
    assert msg and isinstance(msg[0], str) and msg != BANG, f"[udpsend] got {msg!r}, not an OSC message"
    b.sim.sent.append((msg[0], msg[1:]))


@obj("midiout")
def _midiout(b, inlet, msg):
    b.sim.midi_out.append(msg[0])


@obj("t", "trigger")
def _trigger(b, inlet, msg):
    for i in reversed(range(len(b.args))):
        kind = b.args[i]
        first = msg[0] if msg != BANG else 0
        out = {
            "b": BANG,
            "i": [int(first) if isinstance(first, int | float) else 0],
            "f": [float(first) if isinstance(first, int | float) else 0.0],
            "s": [first] if isinstance(first, str) else ["symbol", ""],
            "l": msg,
            "a": msg,
        }.get(kind, [kind])  # any other argument is a constant
        b.out(i, out)


@obj("prepend", "append")
def _prepend(b, inlet, msg):
    if msg[:1] == ["set"]:
        b.args = msg[1:]
        return
    msg = [] if msg == BANG else msg[1:] if msg[:1] == ["symbol"] else msg  # a symbol: its word, as for a list
    b.out(0, [*b.args, *msg] if b.name == "prepend" else [*msg, *b.args])


@obj("route", "sel", "select")
def _route(b, inlet, msg):
    first = msg[0]
    for i, arg in enumerate(b.args):
        if first == arg and type(first) is not bool:
            b.out(i, _rest(msg[1:]) if b.name == "route" else BANG)
            return
    b.out(len(b.args), msg)


@obj("pack", "pak")
def _pack(b, inlet, msg):
    kinds = _num_types(b.args)
    stored = b.state.setdefault("stored", [_conv(k, a) for k, a in zip(kinds, b.args, strict=True)])
    if msg == BANG:
        b.out(0, list(stored))
        return
    for i, value in enumerate(msg):
        if inlet + i < len(stored):
            stored[inlet + i] = _conv(kinds[inlet + i], value)
    if inlet == 0 or b.name == "pak":
        b.out(0, list(stored))


@obj("unpack")
def _unpack(b, inlet, msg):
    kinds = _num_types(b.args)
    for i in reversed(range(min(len(msg), len(kinds)))):
        b.out(i, [_conv(kinds[i], msg[i])])


@obj("counter")
def _counter(b, inlet, msg):
    args = b.args
    lo, hi = (0, args[0]) if len(args) == 1 else (args[0], args[1]) if len(args) == 2 else (args[1], args[2])
    if inlet != 0 or msg != BANG:
        raise AssertionError(f"{b}: only bangs in the left inlet are evaluated, got {msg!r} at {inlet}")
    count = b.state.get("count", lo)
    b.out(0, [count])
    b.state["count"] = lo if count + 1 > hi else count + 1


@obj("sprintf")
def _sprintf(b, inlet, msg):
    # Each %-spec has an inlet (a C format: %ld, %.2f, %s, ...); the left one formats. The result is
    # parsed into a list of atoms, or with `symout` first sent as one symbol (`symbol "a b"`).
    symout = b.args[:1] == ["symout"]
    template = " ".join(fmt(a) for a in b.args[symout:])
    specs = re.findall(r"%[-+ #0]*\d*(?:\.\d+)?l?[dsifx]", template)
    stored = b.state.setdefault("stored", [0] * len(specs))
    if msg != BANG:
        for i, v in enumerate(msg[1:] if msg[:1] == ["symbol"] else msg):
            if inlet + i < len(stored):
                stored[inlet + i] = v
        if inlet != 0:
            return
    values = [int(v) if spec[-1] == "d" else v for spec, v in zip(specs, stored, strict=True)]
    text = template.replace("%ld", "%d") % tuple(values)
    b.out(0, ["symbol", text] if symout else words(text))


@obj("tosymbol")
def _tosymbol(b, inlet, msg):
    b.out(0, [" ".join(fmt(a) for a in msg)])


@obj("fromsymbol")
def _fromsymbol(b, inlet, msg):
    b.out(0, words(msg[-1]) if msg[:1] == ["symbol"] else words(str(msg[0])) + msg[1:])


@obj("zl")
def _zl(b, inlet, msg):
    mode = b.args[0]
    if mode == "reg":
        if inlet == 1:
            b.state["stored"] = msg
        elif msg == BANG:
            b.out(0, b.state.get("stored", BANG))
        else:
            b.state["stored"] = msg
            b.out(0, msg)
    elif mode == "join":
        if inlet == 1:
            b.state["stored"] = msg
        else:
            b.out(0, [*([] if msg == BANG else msg), *b.state.get("stored", [])])
    else:
        raise AssertionError(f"{b}: zl {mode} is not evaluated")


@obj("i", "int", "f", "float")
def _store(b, inlet, msg):
    kind = int if b.name in ("i", "int") else float
    if inlet == 1:
        b.state["value"] = kind(msg[0])
    else:
        if msg != BANG:
            b.state["value"] = kind(msg[0])
        b.out(0, [b.state.get("value", kind(b.args[0]) if b.args else kind(0))])


@obj("gate")
def _gate(b, inlet, msg):
    if inlet == 0:
        b.state["open"] = int(msg[0])
    elif b.state.get("open", b.args[1] if len(b.args) > 1 else 0):
        b.out(b.state["open"] - 1, msg)


@obj("split")
def _split(b, inlet, msg):
    lo, hi = b.args
    b.out(0 if lo <= msg[0] <= hi else 1, msg)


@obj(">", "<", "+", "-", "*", "/", "==", ">=")
def _arith(b, inlet, msg):
    right = b.state.get("right", b.args[0] if b.args else 0)
    if inlet == 1:
        b.state["right"] = msg[0]
        return
    left = b.state["left"] = msg[0] if msg != BANG else b.state.get("left", 0)
    if b.name in ("+", "-", "*", "/"):  # an int argument makes an int object: a float in is truncated
        result = {"+": left + right, "-": left - right, "*": left * right, "/": left / right}[b.name]
        b.out(0, [result if isinstance(right, float) else int(result)])
    else:
        ops = {">": left > right, "<": left < right, "==": left == right, ">=": left >= right}
        b.out(0, [int(ops[b.name])])


@obj("change")
def _change(b, inlet, msg):
    if msg[0] != b.state.get("last"):
        b.state["last"] = msg[0]
        b.out(0, msg)


@obj("metro", "transport")
def _clock(b, inlet, msg):
    # [toggle] -> [metro] -> [transport]: the transport reports its tempo (outlet 4) on each bang
    if b.name == "metro" and msg not in ([0], ["stop"]):
        b.out(0, BANG)
    elif b.name == "transport" and msg == BANG:
        b.out(4, [float(b.sim.__dict__.get("tempo", 120.0))])


@obj("midiparse")
def _midiparse(b, inlet, msg):
    # raw bytes in; outlet 0 [pitch velocity] for note on/off, outlet 3 the program number (the data byte)
    byte = int(msg[0])
    if byte >= 0x80:
        b.state["status"], b.state["data"] = byte, []
        return
    status = b.state.get("status", 0)
    data = b.state.setdefault("data", [])
    data.append(byte)
    kind = status & 0xF0
    if kind in (0x80, 0x90) and len(data) == 2:
        b.out(6, [(status & 0x0F) + 1])
        b.out(0, [data[0], data[1] if kind == 0x90 else 0])
        data.clear()
    elif kind == 0xC0:
        b.out(6, [(status & 0x0F) + 1])
        b.out(3, [byte])
        data.clear()
    elif len(data) == 2:
        data.clear()  # other two-byte messages: not used by these patches


@obj("live.path")
def _live_path(b, inlet, msg):
    # "path live_set view highlighted_clip_slot" -> "id N" of the object there (id 0: none)
    if msg[:1] == ["path"]:
        path = " ".join(fmt(a) for a in msg[1:])
        b.out(0, ["id", b.sim.live_paths.get(path, {}).get("id", 0)])


@obj("live.observer", "live.object")
def _live_object(b, inlet, msg):
    if msg[:1] == ["property"]:
        b.state["property"] = msg[1]
        return
    if inlet == 1 or msg[:1] == ["id"]:  # the object to work on
        b.state["id"] = msg[1] if msg[:1] == ["id"] else msg[0]
    obj_id = b.state.get("id", 0)
    props = next((p for p in b.sim.live_paths.values() if p.get("id") == obj_id), {})
    if b.name == "live.observer":  # reports the property's value as soon as it has an object, then each change
        prop = b.state.get("property", b.args[0] if b.args else None)
        if (inlet == 1 or msg[:1] == ["id"]) and prop in props:
            b.out(0, [props[prop]])
        return
    if inlet == 1 or msg[:1] == ["id"]:
        return
    if obj_id:
        if msg[:1] == ["get"]:
            b.out(0, [msg[1], props.get(msg[1], 0)])
        elif msg[:1] == ["call"]:
            b.sim.live_calls.append([obj_id, *msg[1:]])
