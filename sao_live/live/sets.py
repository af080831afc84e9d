"""Set files (TOML): a live set's banks of pads, read once and checked with line numbers.

The schema is in docs/sets.md. `load_set(path)` returns a frozen `LiveSet` or raises
`SetError` whose message reads `FILE:LINE: where: what was expected, got what`, so a broken
file can be fixed before the show; the daemon keeps the running set when that happens.
tomllib reports syntax errors with their line; for values, `_Lines` maps every key and
table of the file to its line by reading the text alongside.

A set loaded over OSC comes from the daemon's sets folder, by name (`set_file`), and its
errors go back to a client that may not own the file: `SetError.public` is the message
without anything read from the file (no values, no unknown key names), and the full one goes
to the log. Any set file is read with `read_set_text`: a regular file (never a FIFO or a
device, which could block or never end), at most `MAX_SET_BYTES`, UTF-8.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import stat
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import SaoLiveError
from ..musical_time import QUANTIZE_UNITS, TEMPO_SOURCES
from ..ranges import describe, in_range
from ..request import PICKED_SEED_MAX, Request, RequestError, is_number
from .mixer import MODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)
CC_ACTIONS = ("regenerate", "next_variation", "stop_all")
PAD_KEYS = {
    "note",
    "prompt",
    "negative",
    "seconds",
    "bars",
    "mode",
    "choke",
    "gain",
    "seed",
    "seeds",
    "variations",
    "quantize",
    "steps",
    "cfg",
    "sampler",
    "append_bpm",
}
DEFAULT_KEYS = PAD_KEYS - {"note", "prompt", "seed", "seeds"}
TOP_KEYS = {"name", "model", "bpm", "export_dir", "quantize", "tempo_source", "defaults", "cc", "banks"}
SCHEMA_KEYS = TOP_KEYS | PAD_KEYS | {"pads"}  # the key names an error may show to any client
FIRST_NOTE = 36
MAX_PADS = 16
MAX_BANKS = 128  # program change 0-127 picks the bank
MAX_VARIATIONS = 16
MAX_SET_BYTES = 1 << 20  # a set is a few KB; the limit keeps a wrong file from filling the memory
SET_NAME = re.compile(r"\w[\w .-]{0,99}")
NAME_RULE = (
    "a set name is 1-100 letters, digits, spaces, '-', '_' or '.', starts with a letter or digit "
    "and has no '..' (e.g. live-set or live-set.toml)"
)


class SetError(SaoLiveError, ValueError):
    """`str(err)`: the whole reason, values from the file included (the log, the local command line).
    `public`: the same without anything read from the file, for an OSC client."""

    code = "bad_set"

    def __init__(self, message: str, public: str | None = None, code: str | None = None):
        super().__init__(message)
        self.public = message if public is None else public
        if code is not None:
            self.code = code


@dataclass(frozen=True)
class Pad:
    bank: int  # 0-based
    index: int  # 1-based within the bank (what /sao/pad/<n> names)
    note: int
    prompt: str
    seeds: tuple[int, ...]  # the initial pool; refills continue after the last
    variations: int
    mode: str = "oneshot"
    choke: int = 0
    gain: float = 1.0
    negative: str = ""
    seconds: float | None = None
    bars: float | None = None
    quantize: str | None = None  # None: the set's
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    append_bpm: bool = True

    @property
    def name(self) -> str:
        return f"pad{self.index}"

    def request(self, seed: int, bpm: float, priority: int = 1) -> Request:
        """The Request for one take; loops get their exact bars at `bpm` and "<bpm> BPM" in the prompt."""
        prompt, bars, seconds = self.prompt, None, self.seconds
        if self.bars is not None:
            bars, seconds = self.bars, 1.0
            if self.append_bpm:
                prompt = with_bpm(prompt, bpm)
        return Request(
            prompt=prompt,
            seconds=seconds,
            seed=seed,
            negative=self.negative,
            steps=self.steps,
            cfg=self.cfg,
            sampler=self.sampler,
            bars=bars,
            bpm=bpm if bars else None,
            priority=priority,
            export="none",
        )


def with_bpm(prompt: str, bpm: float) -> str:
    """`prompt` with "<bpm> BPM" appended unless it already names a tempo."""
    if re.search(r"\d\s*bpm\b", prompt, re.IGNORECASE):
        return prompt
    return f"{prompt} {bpm:g} BPM"


@dataclass(frozen=True)
class LiveSet:
    name: str
    path: Path
    bpm: float
    banks: tuple[tuple[Pad, ...], ...]
    model: str | None = None
    export_dir: Path | None = None
    quantize: str = "off"
    tempo_source: str = "fixed"
    cc: tuple[tuple[int, str], ...] = ()

    @property
    def pads(self) -> list[Pad]:
        return [p for bank in self.banks for p in bank]


class _Lines:
    """Line numbers of the keys and array-of-tables headers of a TOML text (the layouts sets use)."""

    def __init__(self, text: str):
        self.keys: dict[tuple, int] = {}
        table: tuple = ()
        bank = pad = -1
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if m := re.match(r"\[\[\s*([\w.]+)\s*\]\]", line):
                name = m.group(1)
                if name == "banks":
                    bank, pad = bank + 1, -1
                    table = ("banks", bank)
                elif name == "banks.pads":
                    pad += 1
                    table = ("banks", max(bank, 0), "pads", pad)
                else:
                    table = (name,)
                self.keys.setdefault(table, n)
            elif m := re.match(r"\[\s*([\w.]+)\s*\]", line):
                table = tuple(m.group(1).split("."))
                self.keys.setdefault(table, n)
            elif m := re.match(r"""(["']?)([\w-]+)\1\s*=""", line):
                self.keys.setdefault((*table, m.group(2)), n)

    def of(self, *path) -> int:
        while path:
            if path in self.keys:
                return self.keys[path]
            path = path[:-1]
        return 1


def set_file(sets_dir: str | Path, name: str) -> Path:
    """The file of set `name` in `sets_dir` (`live-set` and `live-set.toml` name the same one).

    SetError `bad_set_name` for a name that is not a plain file name: nothing outside the folder."""
    if not isinstance(name, str) or not SET_NAME.fullmatch(name) or ".." in name:
        shown = repr(name)[:80] if isinstance(name, str) else type(name).__name__
        raise SetError(f"{NAME_RULE}; got {shown}", code="bad_set_name")
    return Path(sets_dir).expanduser() / (name if name.endswith(".toml") else f"{name}.toml")


def read_set_text(path: Path, shown: str) -> str:
    """The text of a set file: a regular file (checked before it is opened, and again once open,
    without blocking), of at most MAX_SET_BYTES, in UTF-8. `shown` names it in `SetError.public`."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SetError(
            f"set file {path} does not exist", f"there is no set {shown} in the sets folder {path.parent}", "no_file"
        ) from None
    except (OSError, ValueError) as err:  # ValueError: a NUL in a path given on the command line
        raise SetError(f"cannot read set file {path}: {err}", f"cannot read {shown}: {_reason(err)}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SetError(f"{path} is not a regular file", f"{shown} is not a regular file")
    if info.st_size > MAX_SET_BYTES:
        raise SetError(
            *[f"{p} has {info.st_size} bytes; a set file has at most {MAX_SET_BYTES}" for p in (path, shown)]
        )
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        with os.fdopen(os.open(path, flags), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped for a FIFO since the stat
                raise SetError(f"{path} is not a regular file", f"{shown} is not a regular file")
            data = f.read(MAX_SET_BYTES + 1)
    except OSError as err:
        raise SetError(f"cannot read set file {path}: {err}", f"cannot read {shown}: {_reason(err)}") from None
    if len(data) > MAX_SET_BYTES:
        raise SetError(
            *[f"{p} has more than {MAX_SET_BYTES} bytes; a set file has at most that" for p in (path, shown)]
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SetError(*[f"{p} is not UTF-8 text (a bad byte at offset {err.start})" for p in (path, shown)]) from None


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or type(err).__name__


def load_set(path: str | Path, shown: str | None = None) -> LiveSet:
    """Reads and checks a set file; `SetError` names the file (`shown` in its public message), line and reason."""
    path = Path(path).expanduser()
    shown = shown or str(path)
    text = read_set_text(path, shown)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+), column (\d+)", str(err))
        line, column = m.groups() if m else (1, 1)
        raise SetError(
            f"{path}:{line}: not valid TOML: {err}", f"{shown}:{line}: not valid TOML (column {column})"
        ) from None
    try:
        return parse_set(data, path, _Lines(text), shown)
    except SetError:
        raise
    except Exception as err:  # a check this module missed: still a clear answer, and the traceback for a fix
        log.exception("set file %s", path)
        raise SetError(
            f"{path}: cannot use this set: {type(err).__name__}: {err}", f"{shown}: cannot use this set"
        ) from None


def parse_set(data: dict, path: Path, lines: _Lines, shown: str | None = None) -> LiveSet:
    """Checks a set's TOML `data` (from `path`): every value of a wrong type or out of range is a SetError."""
    shown = shown or str(path)

    def fail(where: tuple, expected: str, *got, public: str | None = None):
        line = lines.of(*where)
        message = f"{path}:{line}: {_label(where)}{expected}"
        public = f"{shown}:{line}: {_label(where, SCHEMA_KEYS)}{expected if public is None else public}"
        if got:
            message += f", got {repr(got[0])[:80]}"
            public += _kind(got[0])
        raise SetError(message, public)

    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        fail((unknown[0],), f"unknown key; a set has {', '.join(sorted(TOP_KEYS))}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        fail(("name",), "must be a non-empty string", name)
    bpm = _check(data.get("bpm", 120.0), ("bpm",), fail, lambda v: in_range("bpm", v), describe("bpm"))
    quantize = _check(
        data.get("quantize", "off"), ("quantize",), fail, _one_of(QUANTIZE_UNITS), " | ".join(QUANTIZE_UNITS)
    )
    tempo = _check(
        data.get("tempo_source", "fixed"), ("tempo_source",), fail, _one_of(TEMPO_SOURCES), " | ".join(TEMPO_SOURCES)
    )
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        fail(("model",), "must be a model folder, hub id or tiny-random", model)
    export_dir = data.get("export_dir")
    if export_dir is not None and (not isinstance(export_dir, str) or not export_dir):
        fail(("export_dir",), "must be a folder path", export_dir)
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        fail(("defaults",), "must be a table", defaults)
    for key in defaults:
        if key not in DEFAULT_KEYS:
            fail(("defaults", key), f"unknown key; defaults may set {', '.join(sorted(DEFAULT_KEYS))}")
    cc_data = data.get("cc", {})
    if not isinstance(cc_data, dict):
        fail(("cc",), "must be a table of <controller 0-119> = action", cc_data)
    cc = []
    for key, action in cc_data.items():
        if not (key.isascii() and key.isdigit() and 0 <= int(key) <= 119):
            fail(("cc", key), "must be a controller number in [0, 119]", key)
        _check(action, ("cc", key), fail, _one_of(CC_ACTIONS), f"an action: {' | '.join(CC_ACTIONS)}")
        cc.append((int(key), action))
    banks_data = data.get("banks")
    if not isinstance(banks_data, list) or not banks_data:
        fail(("banks",), "a set needs at least one [[banks]] with [[banks.pads]]")
    if len(banks_data) > MAX_BANKS:
        fail(("banks",), f"a set has at most {MAX_BANKS} banks, got {len(banks_data)}")
    banks = []
    for b, bank in enumerate(banks_data):
        if not isinstance(bank, dict):
            fail(("banks", b), "must be a table ([[banks]])", bank)
        extra = sorted(set(bank) - {"name", "pads"})
        if extra:
            fail(("banks", b, extra[0]), "unknown key; a bank has name and pads")
        if not isinstance(bank.get("name", ""), str):
            fail(("banks", b, "name"), "must be a string", bank["name"])
        pads_data = bank.get("pads")
        if pads_data is not None and not isinstance(pads_data, list):
            fail(("banks", b, "pads"), "must be an array of tables ([[banks.pads]])", pads_data)
        if not pads_data:
            fail(("banks", b), "a bank needs at least one [[banks.pads]]")
        if len(pads_data) > MAX_PADS:
            fail(("banks", b), f"a bank holds at most {MAX_PADS} pads, got {len(pads_data)}")
        pads = []
        for i, p in enumerate(pads_data):
            if not isinstance(p, dict):
                fail(("banks", b, "pads", i), "must be a table ([[banks.pads]])", p)
            pads.append(_pad(b, i, p, defaults, bpm, fail, set_name=name))
        notes = [p.note for p in pads]
        for p in pads:
            if notes.count(p.note) > 1:
                fail(
                    ("banks", b, "pads", p.index - 1, "note"),
                    f"note {p.note} is used by two pads of this bank",
                    public="two pads of this bank have this note",
                )
        banks.append(tuple(pads))
    return LiveSet(
        name=name,
        path=path,
        bpm=float(bpm),
        banks=tuple(banks),
        model=model,
        export_dir=Path(export_dir).expanduser() if export_dir else None,
        quantize=quantize,
        tempo_source=tempo,
        cc=tuple(cc),
    )


def _label(where: tuple, known: set | None = None) -> str:
    """("banks", 0, "pads", 2, "mode") -> "banks[0].pads[2].mode: "; with `known`, other names are left out."""
    parts = [p for p in where if isinstance(p, int) or known is None or p in known]
    label = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in parts).replace(".[", "[")
    return f"{label}: " if label else ""


def _kind(value) -> str:
    """What kind of value arrived, for a public message (which never shows the value itself)."""
    for types, kind in (
        (bool, "true or false"),
        (dict, "a table"),
        (list, "an array"),
        ((datetime.date, datetime.time), "a date or time"),
    ):
        if isinstance(value, types):
            return f", got {kind}"
    return ""


def value_free(message: str) -> str:
    """A RequestError's message without the value it quotes (they end in ", got <value>")."""
    return message.split(", got ", 1)[0]


def _whole(lo: int, hi: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _one_of(choices):
    return lambda v: isinstance(v, str) and v in choices


def _check(value, where, fail, ok, expected: str):
    if not ok(value):
        fail(where, f"must be {expected}", value)
    return value


def _pad(b: int, i: int, own: dict, defaults: dict, bpm: float, fail, set_name: str) -> Pad:
    where = ("banks", b, "pads", i)
    d = {**defaults, **own}

    def at(key: str) -> tuple:  # where a key's value is written: the pad, else [defaults]
        return (*where, key) if key in own else ("defaults", key) if key in defaults else where

    for key in own:
        if key not in PAD_KEYS:
            fail((*where, key), f"unknown key; a pad has {', '.join(sorted(PAD_KEYS))}")
    note = _check(d.get("note", FIRST_NOTE + i), at("note"), fail, _whole(0, 127), "a MIDI note 0-127")
    if "prompt" not in d:
        fail(where, "a pad needs a prompt")
    for key in ("prompt", "negative", "sampler"):
        if key in d and not isinstance(d[key], str):
            fail(at(key), "must be a string", d[key])
    mode = _check(d.get("mode", "oneshot"), at("mode"), fail, _one_of(MODES), " | ".join(MODES))
    choke = _check(d.get("choke", 0), at("choke"), fail, _whole(0, 64), "a group 0-64 (0: none)")
    gain = _check(d.get("gain", 1.0), at("gain"), fail, lambda v: in_range("gain", v), describe("gain"))
    variations = _check(
        d.get("variations", 1), at("variations"), fail, _whole(1, MAX_VARIATIONS), f"a whole number 1-{MAX_VARIATIONS}"
    )
    quantize = d.get("quantize")
    if quantize is not None:
        _check(quantize, at("quantize"), fail, _one_of(QUANTIZE_UNITS), " | ".join(QUANTIZE_UNITS))
    append_bpm = _check(
        d.get("append_bpm", True), at("append_bpm"), fail, lambda v: isinstance(v, bool), "true or false"
    )
    if "bars" in own and "seconds" in own:
        fail((*where, "bars"), "give seconds or bars, not both")
    seconds, bars = d.get("seconds"), d.get("bars")
    if "bars" in own:
        seconds = None
    elif "seconds" in own:
        bars = None
    if seconds is None and bars is None:
        fail(where, "a pad needs seconds or bars (here or in [defaults])")
    if seconds is not None:  # the upper bound is the model's window, checked when a take is rendered
        _check(seconds, at("seconds"), fail, lambda v: is_number(v) and v > 0, "a number of seconds > 0")
    if bars is not None:
        _check(bars, at("bars"), fail, lambda v: is_number(v) and 0 < v <= 256, "a number of bars in (0, 256]")
    if "seeds" in own and "seed" in own:
        fail((*where, "seeds"), "give seed or seeds, not both")
    if "seeds" in d:
        seeds = d["seeds"]
        whole = _whole(0, 2**63)
        if not isinstance(seeds, list) or not 1 <= len(seeds) <= MAX_VARIATIONS or not all(map(whole, seeds)):
            fail(at("seeds"), f"must be a list of 1-{MAX_VARIATIONS} whole numbers", seeds)
        variations = max(variations, len(seeds))
        seeds = list(seeds)
    else:
        base = d.get("seed")
        if base is None:  # the same pad gets the same seeds every time: render once, play later from the cache
            base = zlib.crc32(f"{set_name}|{b}|{i}|{d['prompt']}".encode()) % (PICKED_SEED_MAX - 64)
        elif not isinstance(base, int) or isinstance(base, bool):
            fail(at("seed"), "must be a whole number", base)
        seeds = [base]
    seeds += [seeds[-1] + k for k in range(1, variations - len(seeds) + 1)]
    pad = Pad(
        bank=b,
        index=i + 1,
        note=note,
        prompt=d["prompt"],
        seeds=tuple(seeds),
        variations=variations,
        mode=mode,
        choke=choke,
        gain=float(gain),
        negative=d.get("negative", ""),
        seconds=seconds,
        bars=bars,
        quantize=quantize,
        steps=d.get("steps"),
        cfg=d.get("cfg"),
        sampler=d.get("sampler"),
        append_bpm=append_bpm,
    )
    try:
        for seed in pad.seeds:
            pad.request(seed, bpm)
    except RequestError as err:
        field = err.code.removeprefix("bad_").removesuffix("_prompt")
        key = {"empty": "prompt", "prompt_too_long": "prompt"}.get(field, field)
        fail(at(key) if key in d else where, str(err), public=value_free(str(err)))
    return pad
