"""Set files (TOML): a live set's banks of pads, read once and checked with line numbers.

The schema is in docs/sets.md. `load_set(path)` returns a frozen `LiveSet` or raises
`SetError` whose message reads `FILE:LINE: where: what was expected, got what`, so a broken
file can be fixed before the show; the daemon keeps the running set when that happens.
tomllib reports syntax errors with their line; for values, `_Lines` maps every key and
table of the file to its line by reading the text alongside.
"""

from __future__ import annotations

import re
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
FIRST_NOTE = 36
MAX_PADS = 16


class SetError(SaoLiveError, ValueError):
    code = "bad_set"


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


def load_set(path: str | Path) -> LiveSet:
    """Reads and checks a set file; `SetError` names the file, line and reason."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        err = SetError(f"set file {path} does not exist")
        err.code = "no_file"
        raise err from None
    except (OSError, UnicodeDecodeError) as err:
        raise SetError(f"cannot read set file {path}: {err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+)", str(err))
        raise SetError(f"{path}:{m.group(1) if m else 1}: not valid TOML: {err}") from None
    return parse_set(data, path, _Lines(text))


def parse_set(data: dict, path: Path, lines: _Lines) -> LiveSet:
    def fail(where: tuple, message: str):
        label = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in where).replace(".[", "[")
        raise SetError(f"{path}:{lines.of(*where)}: {label}: {message}")

    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        fail((unknown[0],), f"unknown key; a set has {', '.join(sorted(TOP_KEYS))}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        fail(("name",), f"must be a non-empty string, got {name!r}")
    bpm = _check(data.get("bpm", 120.0), ("bpm",), fail, lambda v: in_range("bpm", v), describe("bpm"))
    quantize = _check(
        data.get("quantize", "off"), ("quantize",), fail, lambda v: v in QUANTIZE_UNITS, " | ".join(QUANTIZE_UNITS)
    )
    tempo = _check(
        data.get("tempo_source", "fixed"),
        ("tempo_source",),
        fail,
        lambda v: v in TEMPO_SOURCES,
        " | ".join(TEMPO_SOURCES),
    )
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        fail(("model",), f"must be a model folder, hub id or tiny-random, got {model!r}")
    export_dir = data.get("export_dir")
    if export_dir is not None and (not isinstance(export_dir, str) or not export_dir):
        fail(("export_dir",), f"must be a folder path, got {export_dir!r}")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        fail(("defaults",), "must be a table")
    for key in defaults:
        if key not in DEFAULT_KEYS:
            fail(("defaults", key), f"unknown key; defaults may set {', '.join(sorted(DEFAULT_KEYS))}")
    cc = []
    for key, action in (data.get("cc") or {}).items():
        if not key.isdigit() or not 0 <= int(key) <= 119:
            fail(("cc", key), f"must be a controller number in [0, 119], got {key!r}")
        if action not in CC_ACTIONS:
            fail(("cc", key), f"action must be one of {', '.join(CC_ACTIONS)}, got {action!r}")
        cc.append((int(key), action))
    banks_data = data.get("banks")
    if not isinstance(banks_data, list) or not banks_data:
        fail(("banks",), "a set needs at least one [[banks]] with [[banks.pads]]")
    banks = []
    for b, bank in enumerate(banks_data):
        pads_data = bank.get("pads")
        if not isinstance(pads_data, list) or not pads_data:
            fail(("banks", b), "a bank needs at least one [[banks.pads]]")
        if len(pads_data) > MAX_PADS:
            fail(("banks", b), f"a bank holds at most {MAX_PADS} pads, got {len(pads_data)}")
        extra = sorted(set(bank) - {"name", "pads"})
        if extra:
            fail(("banks", b, extra[0]), "unknown key; a bank has name and pads")
        pads = [_pad(b, i, {**defaults, **p}, p, bpm, fail, set_name=name) for i, p in enumerate(pads_data)]
        notes = [p.note for p in pads]
        for p in pads:
            if notes.count(p.note) > 1:
                fail(("banks", b, "pads", p.index - 1, "note"), f"note {p.note} is used by two pads of this bank")
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


def _whole(lo: int, hi: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _check(value, where, fail, ok, expected: str):
    if not ok(value):
        fail(where, f"must be {expected}, got {value!r}")
    return value


def _pad(b: int, i: int, d: dict, own: dict, bpm: float, fail, set_name: str) -> Pad:
    where = ("banks", b, "pads", i)
    for key in own:
        if key not in PAD_KEYS:
            fail((*where, key), f"unknown key; a pad has {', '.join(sorted(PAD_KEYS))}")
    note = _check(d.get("note", FIRST_NOTE + i), (*where, "note"), fail, _whole(0, 127), "a MIDI note 0-127")
    if "prompt" not in d:
        fail(where, "a pad needs a prompt")
    mode = _check(d.get("mode", "oneshot"), (*where, "mode"), fail, lambda v: v in MODES, " | ".join(MODES))
    choke = _check(d.get("choke", 0), (*where, "choke"), fail, _whole(0, 64), "a group 0-64 (0: none)")
    gain = _check(d.get("gain", 1.0), (*where, "gain"), fail, lambda v: in_range("gain", v), describe("gain"))
    variations = _check(d.get("variations", 1), (*where, "variations"), fail, _whole(1, 16), "a whole number 1-16")
    quantize = d.get("quantize")
    if quantize is not None:
        _check(quantize, (*where, "quantize"), fail, lambda v: v in QUANTIZE_UNITS, " | ".join(QUANTIZE_UNITS))
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
        _check(
            seconds,
            (*where, "seconds") if "seconds" in own else where,
            fail,
            lambda v: is_number(v) and v > 0,
            "a number of seconds > 0",
        )
    if "seeds" in own and "seed" in own:
        fail((*where, "seeds"), "give seed or seeds, not both")
    if "seeds" in d:
        seeds = d["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
            fail((*where, "seeds"), f"must be a list of whole numbers, got {seeds!r}")
        variations = max(variations, len(seeds))
        seeds = list(seeds)
    else:
        base = d.get("seed")
        if base is None:  # the same pad gets the same seeds every time: render once, play later from the cache
            base = zlib.crc32(f"{set_name}|{b}|{i}|{d['prompt']}".encode()) % (PICKED_SEED_MAX - 64)
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
        append_bpm=bool(d.get("append_bpm", True)),
    )
    try:
        for seed in pad.seeds:
            pad.request(seed, bpm)
    except RequestError as err:
        field = err.code.removeprefix("bad_").removesuffix("_prompt")
        key = {"empty": "prompt", "prompt_too_long": "prompt"}.get(field, field)
        fail((*where, key if key in own else ""), str(err))
    return pad
