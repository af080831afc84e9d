"""Targeted mutation testing of the pure modules and the bridges: does each small change fail a test?

    python tools/mutate.py                 # every module below, and the bridges
    python tools/mutate.py scheduler bridges --list   # only list the mutants, run nothing

A Python module's mutants are changes found in its AST and spliced into its source text: an
arithmetic, comparison or boolean operator swapped, a unary operator dropped, min/max swapped, a
number plus one, a bool flipped, a short string emptied, or a statement replaced by `pass`.
Docstrings, f-strings, log and warning calls, annotations, strings with spaces (messages) and a
function's closing `return None` are left alone. A forked child serves the mutated text through an
import hook and runs the module's unit tests with pytest -x; the parent imports the heavy libraries
(torch, numpy) once, which keeps a mutant well under a second.

The bridges' mutants are the edits in BRIDGE_EDITS, each a textual change of one bridge file that
changes what it means. They are applied to a copy of the repository's tracked files in a temporary
folder (the Max for Live devices rebuilt from their edited sources, as their author would), where
the bridge tests run against them.

The source tree is never written, so an interrupted run leaves it as it was. A mutant is killed
when the tests fail (or time out). Survivors are printed as file:line:col, the change and the
source line. Mutants known to be equivalent are listed in EQUIVALENT with the reason and counted
apart; the score is killed / (mutants - equivalent).
"""

from __future__ import annotations

import argparse
import ast
import copy
import gc
import importlib.abc
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# module -> (source file, its fast unit tests)
MODULES = {
    "scheduler": ("sao_live/daemon/scheduler.py", ["tests/daemon/test_scheduler.py"]),
    "request": ("sao_live/request.py", ["tests/test_request.py"]),
    "ranges": ("sao_live/ranges.py", ["tests/test_ranges.py", "tests/test_request.py"]),
    "oscwire": ("sao_live/daemon/oscwire.py", ["tests/daemon/test_oscwire.py"]),
    "sampling": ("sao_live/engine/sampling.py", ["tests/engine/test_sampling.py"]),
    "store": ("sao_live/daemon/store.py", ["tests/daemon/test_store.py"]),  # the CLI's tests: test_cache_command.py
    "tempo": ("sao_live/live/tempo.py", ["tests/live/test_tempo.py"]),
    "loops": ("sao_live/live/loops.py", ["tests/live/test_loops.py"]),
    "musical_time": ("sao_live/musical_time.py", ["tests/test_musical_time.py"]),
}
BRIDGES = "bridges"
# Pure Data's test runs the patch in real Pd against a daemon (a minute a run): not here.
BRIDGE_TESTS = ["tests/bridges", "--ignore=tests/bridges/test_pd_patch.py", "--ignore=tests/bridges/test_examples.py"]


def _cord(source: str, outlet: int, destination: str, inlet: int) -> str:
    """A Max patchline as the patcher files spell it."""
    return (f'"source": [\n      "{source}",\n      {outlet}\n     ],\n'
            f'     "destination": [\n      "{destination}",\n      {inlet}\n     ]')  # fmt: skip


_MAX, _DEVICE, _PADS = (f"bridges/max/{name}.maxpat" for name in ("sao-live", "sao-live-device", "sao-live-pads"))
_OSC = "bridges/open-stage-control/sao-live.json"
_KNOB = (
    '"min": 0.1,\n          "max": 11.9\n        },\n        "decimals": 1,\n        "value": 4,\n        "default": 4,'
)
_GEN = (
    "var id = get('request_id') + 1; set('request_id', id); var seed = parseInt(get('seed')); if (isNaN(seed)) "
    "seed = -1; send('/sao/gen', id, String(get('prompt')), get('seconds'), 'seed', seed)"
)  # gen's onValue
# (bridge file, what the edit does, text, its replacement): the text must occur exactly once
BRIDGE_EDITS = [
    (_MAX, "seconds and seed swapped in the request", '"$2 seed $3"', '"$3 seed $2"'),
    (_MAX, "the done and progress outlets swapped", "route /sao/done /sao/progress", "route /sao/progress /sao/done"),
    (_MAX, "default seconds 0", '"pack 0 4. -1 120."', '"pack 0 0. -1 120."'),
    (_MAX, "a request id that never increments", '"counter 1 1000000"', '"counter 1 1"'),
    (_MAX, "the play address misspelt", '"prepend /sao/play"', '"prepend /sao/paly"'),
    (_MAX, "the seed box wired to the seconds inlet", _cord("obj-8", 0, "obj-50", 2), _cord("obj-8", 0, "obj-50", 1)),
    (_MAX, "errors shown from the /sao/ready outlet", _cord("obj-78", 2, "obj-89", 0), _cord("obj-78", 3, "obj-89", 0)),
    (_MAX, "the seed box allows one past the seed range", '"maximum": 2147483647', '"maximum": 2147483648'),
    (_MAX, "hello names a port the patch does not listen on", '"/sao/hello 9322"', '"/sao/hello 9323"'),
    (_MAX, "seconds sent beside bars", '"0 bars $1 bpm $4 seed $3"', '"$2 bars $1 bpm $4 seed $3"'),
    (_DEVICE, "Live's tempo sent to a misspelt address", '"prepend /sao/set/bpm"', '"prepend /sao/set/bmp"'),
    (_DEVICE, "to slot makes a MIDI clip", '"prepend call create_audio_clip"', '"prepend call create_midi_clip"'),
    (_DEVICE, "seconds and seed swapped in the device's request", '"$2 seed $3"', '"$3 seed $2"'),
    (_PADS, "pad 16 unreachable", '"split 1 16"', '"split 1 15"'),
    (_PADS, "velocity scaled by 100, not 127", '"/ 127."', '"/ 100."'),
    (_PADS, "pads counted from the note above the base note", '"- 1"', '"- 0"'),
    (_OSC, "the seconds knob's default and range minimum 0", _KNOB, _KNOB.replace("0.1", "0").replace("4", "0")),
    (_OSC, "gen's request id never increments", _GEN, _GEN.replace(" set('request_id', id);", "")),
    (_OSC, "gen sends the seed under a misspelt key", _GEN, _GEN.replace("'seed', seed", "'sede', seed")),
    (_OSC, "the trigger address misspelt", "send('/sao/trigger'", "send('/sao/triger'"),
    (_OSC, "the progress display listens at a misspelt address", '"address": "/sao/progress"',
     '"address": "/sao/progres"'),
]  # fmt: skip

_IDENTITY = "compared with `is` and never hashed: a generated __eq__ changes nothing"
_NO_FAMILY = "a job without a family is never looked up by family: find_family is asked for 32-hex family keys"
_MESSAGE = "the name only appears in the error message; the code and the check are unchanged"
_DEAD_SECONDS = (
    "dead code: with bars, __post_init__ replaces seconds by bars_to_seconds(bars, bpm) before checking them"
)
_ONES = "`ones` holds 1s: t * 1 == t / 1"
_JUST_FOUND = "the file was just listed: only another process deleting it meanwhile would tell"
_LOGGED = "only the log line changes: any size other than the one written drops the clip"
_NUL_AT_0 = "find() gives 0 only for a NUL at byte 0, and no string starts there: an address starts with '/'"
_BLOCK = "the block size does not change the hash"
_ALIAS = "a type alias read only in annotations, which are never evaluated"
_LOG_ONLY = "it only decides whether to log"
_OPEN_SETS = "open() sets it before anything reads it (every reader needs the index open() makes)"
# file -> [(stripped source line, change, why no test can tell the mutant from the original)]; an entry
# covers every mutant with that line and change
_EQUIVALENT = {
    "sao_live/daemon/scheduler.py": [
        ("@dataclass(eq=False)", "False -> True", _IDENTITY),
        ('family: str = ""  # the key without the seed: a seedless trigger may join any job of its family',
         "'' -> 'XX'", _NO_FAMILY),
        ('def submit(self, key: str, request: Request, requester: Requester, family: str = "") -> tuple[Job, bool]:',
         "'' -> 'XX'", _NO_FAMILY),
        ("def __init__(self, max_queued: int = 256, max_requesters: int = 64):", "256 -> 257",
         "the daemon always passes its queue_size setting; the default is never used"),
        ("def __init__(self, max_queued: int = 256, max_requesters: int = 64):", "64 -> 65",
         "the daemon always passes its requesters_per_job setting; the default is never used"),
    ],
    "sao_live/request.py": [
        ("@dataclass(eq=False)", "False -> True", _IDENTITY),
        ('for name in ("negative", "sampler"):', "'negative' -> ''",
         "the constructor then refuses a negative that is not a string, with the same code and message"),
        ('if not "".join(words).strip():', "'' -> 'XX'",
         "joining with 'XX' only changes a prompt of several blank words, which the constructor then refuses "
         "with the same code"),
        ('raise RequestError("empty_prompt", f"prompt must not be empty, got {\' \'.join(words)!r}")',
         "delete the statement", "the constructor refuses the same prompts with the same code"),
        ('raise RequestError("bad_seconds", f"seconds must be a number, got {atoms[i]!r}")', "delete the statement",
         "the constructor refuses the same value with the same code and message"),
        ("for key, value in zip(rest[::2], rest[1::2], strict=True):", "True -> False",
         "the pairs were just checked to be even, so both slices have the same length"),
        ("if seconds == 0:", "== -> !=", _DEAD_SECONDS),
        ("if seconds == 0:", "0 -> 1", _DEAD_SECONDS),
        ("seconds = 1.0  # replaced by bars_to_seconds(bars, bpm)", "delete the statement", _DEAD_SECONDS),
        ("seconds = 1.0  # replaced by bars_to_seconds(bars, bpm)", "1.0 -> 2.0", _DEAD_SECONDS),
        *((line, "'24' -> ''", "an empty bit depth is 24-bit (audio.subtype_for)") for line in [
            'EXPORT_FORMATS = {"wav": ("wav", "24"), "wav16": ("wav", "16"), "wav32f": ("wav", "32f"), '
            '"flac": ("flac", "24")}']),
        *((line, f"{name!r} -> ''", _MESSAGE) for line, name in [  # the name in the message, not the field's
            ('prompt = _text(self.prompt, "prompt", "bad_prompt", MAX_PROMPT_CHARS)', "prompt"),
            ('put(self, "negative", _text(self.negative, "negative", "bad_negative", MAX_PROMPT_CHARS))', "negative"),
            ('put(self, "bars", float(_num(self.bars, "bars", "bad_bars", 0, 256, lo_open=True)))', "bars"),
            ('put(self, "bpm", round(float(_num(self.bpm, "bpm", "bad_bpm", *RANGES["bpm"])), 3))', "bpm"),
            ('put(self, "seconds", round(float(_num(self.seconds, "seconds", "bad_seconds", -math.inf, math.inf)), 4))',
             "seconds"),
            ('put(self, "steps", _num(self.steps, "steps", "bad_steps", 1, 1000, integer=True))', "steps"),
            ('put(self, "cfg", round(float(_num(self.cfg, "cfg", "bad_cfg", 0, 50)), 4))', "cfg"),
            ('put(self, "variations", _num(self.variations, "variations", "bad_variations", 1, 16, integer=True))',
             "variations"),
        ]),
    ],
    "sao_live/ranges.py": [
        ("PICKED_SEED_MAX = 2**24 - 1  # seeds the daemon picks survive float32 clients (Pd) exactly", "1 -> 2",
         "one pickable seed fewer out of 2^24: every pick is still float32-exact, and no test can see the top one"),
        ("return random.randint(0, PICKED_SEED_MAX)", "0 -> 1", "seed 0 is no longer picked: one value in 2^24"),
        ('raise RequestError(code, f"{name} must be a number, got {value!r}") from None', "delete the statement",
         "the string falls through to the next check, which raises the same code and message"),
    ],
    "sao_live/daemon/oscwire.py": [
        ("if end < 0:", "< -> <=", _NUL_AT_0),
        ("if end < 0:", "0 -> 1", _NUL_AT_0),
        ('raw, pos = _string(data, 0, "address")', "'address' -> ''", _MESSAGE),
        ('raw, pos = _string(data, pos, "string")', "'string' -> ''", _MESSAGE),
        ("if size <= 0 or pos + 4 + size > len(data):", "0 -> 1",
         "a 1-byte element is refused either way: as an element here, or as a message without its NUL"),
    ],
    "sao_live/engine/sampling.py": [
        ("Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]", "delete the statement", _ALIAS),
        ("Callback = Callable[[dict], None] | None", "delete the statement", _ALIAS),
        ("def get_sigmas_rf(n: int, sigma_max: float = 1.0) -> torch.Tensor:", "1.0 -> 2.0",
         "sigma_max is clamped to 1 on the next line"),
        ("denoised = x - sigmas[i] * model(x, sigmas[i] * ones)", "* -> /", _ONES),
        ("v = model(x, sigmas[i] * ones)", "* -> /", _ONES),
        ("denoised = x - t * model(x, t * ones)", "* -> /", _ONES),
        ("denoised = denoiser(x, sigmas[i] * ones)", "* -> /", _ONES),
        ("lo, hi, sign = (sigma, sigma_next, 1) if sigma < sigma_next else (sigma_next, sigma, -1)", "< -> <=",
         "they differ only for an empty interval, which divides by zero either way"),
        ("return w * sign / (sigma_next - sigma).abs().sqrt()", "* -> /", "sign is 1 or -1: w * s == w / s"),
        ("return int(torch.randint(0, 2**63 - 1, [], generator=generator).item())", "1 -> 2",
         "the tree's seed range is one smaller out of 2^63"),
    ],
    "sao_live/daemon/store.py": [
        ("while block := f.read(1 << 20):", "1 -> 2", _BLOCK),
        ("while block := f.read(1 << 20):", "20 -> 21", _BLOCK),
        ('self._db = sqlite3.connect(self.root / "index.sqlite3", timeout=10, check_same_thread=False)', "10 -> 11",
         "the lock timeout matters only while another process writes the index"),
        ("path.unlink(missing_ok=True)", "True -> False", _JUST_FOUND),
        ("size = -1", "drop -", _LOGGED),
        ("size = -1", "1 -> 2", _LOGGED),
        ('problem = "is missing" if size < 0 else f"has {size} bytes instead of {clip.bytes}"', "< -> <=", _LOGGED),
        ('problem = "is missing" if size < 0 else f"has {size} bytes instead of {clip.bytes}"', "0 -> 1", _LOGGED),
        ("return []", "delete the statement", "the loop below then stops at once and returns [] too"),
        ("if total <= self.max_bytes:", "<= -> <",
         "at the limit the early return is skipped, but the same check at the top of the loop stops it at once"),
        ("self._db.close()", "delete the statement",
         "the connection is dropped on the next line and closed when collected; only the file handle lives longer"),
        ("db.close()", "delete the statement", "the connection is closed when collected, on return"),
        ("return False", "delete the statement",
         "a file without sqlite's header: sqlite refuses it below (caught: False); in the except: None, as falsy"),
        ('db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)', "True -> False",
         "this SQLite is built to read file: names as URIs anyway (SQLITE_USE_URI)"),
        ('text = ""', "'' -> 'XX'", "neither text starts with the tag's signature"),
        ("self.owns_files = False", "delete the statement", _OPEN_SETS),
        ("self.owns_files = False", "False -> True", _OPEN_SETS),
        ('if state == "untagged":', "== -> !=", _LOG_ONLY),
        ('if state == "untagged":', "'untagged' -> ''", _LOG_ONLY),
        ("if any(deleted):", "any -> all", _LOG_ONLY),
        ('where, args = "", ()', "'' -> 'XX'", "SQL reads a word after the table name as its alias"),
    ],
    "sao_live/live/tempo.py": [
        ("if abs(bpm - self.bpm) > 1e-3:", "> -> >=",
         "Link carries a tempo as microseconds per beat: no change of it is exactly 0.001 bpm"),
    ],
    "sao_live/live/loops.py": [
        ("if total < frames:", "< -> <=", "a take of exactly the loop's length is padded with zero samples: the same"),
    ],
}  # fmt: skip
EQUIVALENT: dict[tuple[str, str, str], str] = {
    (file, line, change): why for file, rows in _EQUIVALENT.items() for line, change, why in rows
}

_BINOPS = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitOr, ast.LShift: ast.RShift, ast.RShift: ast.LShift,
}  # fmt: skip
_CMPOPS = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}  # fmt: skip
_SYMBOL = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**",
    ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.Lt: "<",
    ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in", ast.NotIn: "not in",
    ast.Is: "is", ast.IsNot: "is not", ast.And: "and", ast.Or: "or", ast.Not: "not", ast.USub: "-",
    ast.Invert: "~",
}  # fmt: skip
_NAMES = {"min": "max", "max": "min", "any": "all", "all": "any"}
_QUIET_CALLS = {"log", "logging", "warnings"}  # their arguments are messages
# Statements a mutant replaces with `pass` (inside functions; a class body's are its fields).
_DELETABLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Delete, ast.Raise, ast.Return, ast.Break,
              ast.Continue)  # fmt: skip


@dataclass
class Mutant:
    file: str
    line: int
    col: int
    change: str
    source_line: str
    text: str  # the whole mutated file

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.file, self.source_line, self.change)


def _swapped(op: ast.AST, table: dict, suffix: str = "") -> tuple[ast.AST, str]:
    new = table[type(op)]
    return new(), f"{_SYMBOL[type(op)]}{suffix} -> {_SYMBOL[new]}{suffix}"


def _variants(node: ast.AST, parent: ast.AST | None):
    """(mutated copy of node, description) for each mutation of this node itself."""
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _BINOPS:
        if isinstance(node, ast.BinOp):
            op, change = _swapped(node.op, _BINOPS)
            yield ast.BinOp(node.left, op, node.right), change
        else:
            op, change = _swapped(node.op, _BINOPS, "=")
            yield ast.AugAssign(node.target, op, node.value), change
    elif isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _CMPOPS:
                ops = list(node.ops)
                ops[i], change = _swapped(op, _CMPOPS)
                yield ast.Compare(node.left, ops, node.comparators), change
    elif isinstance(node, ast.BoolOp):
        op, change = _swapped(node.op, {ast.And: ast.Or, ast.Or: ast.And})
        yield ast.BoolOp(op, node.values), change
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.Invert)):
        yield node.operand, f"drop {_SYMBOL[type(node.op)]}"
    elif isinstance(node, ast.Name) and node.id in _NAMES and isinstance(node.ctx, ast.Load):
        yield ast.Name(_NAMES[node.id], ast.Load()), f"{node.id} -> {_NAMES[node.id]}"
    elif isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            new = not v
        elif isinstance(v, (int, float)):
            new = v + 1
        elif isinstance(v, (str, bytes)) and len(v) <= 40 and not re.search(r"\s", repr(v)[1:-1]):
            new = v[:0] if v else ("XX" if isinstance(v, str) else b"XX")  # emptied: `in "sS"` finds nothing
        else:
            return
        yield ast.Constant(new), f"{v!r} -> {new!r}"
    if isinstance(node, _DELETABLE) and not isinstance(parent, ast.ClassDef) and not _falls_off(node, parent):
        yield ast.Pass(), "delete the statement"


def _falls_off(node: ast.AST, parent: ast.AST | None) -> bool:
    """A `return None` ending a function: without it the function falls off its end, returning None too."""
    returns_none = isinstance(node, ast.Return) and (node.value is None or ast.unparse(node.value) == "None")
    return returns_none and isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)) and parent.body[-1] is node


def _quiet(call: ast.Call) -> bool:
    f = call.func
    return isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in _QUIET_CALLS


def _skipped_children(node: ast.AST) -> set[int]:
    """ids of subtrees never mutated: docstrings, annotations, messages."""
    skip: set[int] = set()
    if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            skip.add(id(first))
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
        skip.add(id(node.returns))
    if isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
        skip.add(id(node.annotation))
    if isinstance(node, ast.JoinedStr):
        skip.update(id(c) for c in node.values)
    if isinstance(node, ast.Call) and _quiet(node):
        skip.update(id(a) for a in [*node.args, *node.keywords])
    for child in ast.iter_child_nodes(node):  # a log line on its own is no behaviour to delete
        if isinstance(child, ast.Expr) and isinstance(child.value, ast.Call) and _quiet(child.value):
            skip.add(id(child))
    return skip


def mutants(relpath: str) -> list[Mutant]:
    source = (ROOT / relpath).read_bytes()
    lines = source.split(b"\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    found: list[Mutant] = []
    seen: set[bytes] = set()

    def visit(node: ast.AST, parent: ast.AST | None, skip: set[int]):
        if id(node) in skip:
            return
        if isinstance(node, (ast.expr, *_DELETABLE)):
            for new, change in _variants(node, parent):
                ast.copy_location(new, node)
                begin = starts[node.lineno - 1] + node.col_offset
                end = starts[node.end_lineno - 1] + node.end_col_offset
                replacement = ast.unparse(copy.deepcopy(new)).encode()
                if not isinstance(new, ast.stmt):
                    replacement = b"(" + replacement + b")"
                text = source[:begin] + replacement + source[end:]
                if text not in seen:
                    seen.add(text)
                    line = lines[node.lineno - 1].decode().strip()
                    found.append(Mutant(relpath, node.lineno, node.col_offset, change, line, text.decode()))
        inner = skip | _skipped_children(node)
        for child in ast.iter_child_nodes(node):
            visit(child, node, inner)

    visit(ast.parse(source), None, set())
    return found


def bridge_mutants() -> list[Mutant]:
    found = []
    for relpath, what, old, new in BRIDGE_EDITS:
        text = (ROOT / relpath).read_text()
        if text.count(old) != 1:
            raise SystemExit(f"bridges: {what!r} expects its text once in {relpath}, found it {text.count(old)} times")
        before = text[: text.index(old)]
        line, col = before.count("\n") + 1, len(before) - before.rfind("\n") - 1
        shown = " ".join(old.split())  # a patchline on one line
        found.append(Mutant(relpath, line, col, what, shown[:100], text.replace(old, new)))
    return found


class _Serve(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports one module from a string instead of its file."""

    def __init__(self, name: str, path: str, text: str):
        self.name, self.path, self.text = name, path, text

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        return importlib.util.spec_from_file_location(fullname, self.path, loader=self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(compile(self.text, self.path, "exec"), module.__dict__)


def run_tests(tests: list[str], timeout: float, serve: _Serve | None = None, cwd: Path = ROOT) -> bool:
    """Whether the tests pass, run by pytest in a forked child in `cwd` (its code imported first),
    with `serve` hooked in; a timeout fails."""
    import pytest

    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 99
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            if serve is not None:
                sys.meta_path.insert(0, serve)
            os.chdir(cwd)
            sys.path.insert(0, str(cwd))
            code = pytest.main(["-x", "-q", "--assert=plain", "-p", "no:cacheprovider", *tests])
        finally:
            os._exit(int(code))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pid = 0
                return os.waitstatus_to_exitcode(status) == 0
            time.sleep(0.005)
        return False
    finally:
        if pid:  # timed out or interrupted
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


Runner = Callable[[Mutant | None, float], bool]  # (mutant or None: the tree as it is, timeout) -> tests pass


def _module_runner(relpath: str, tests: list[str]) -> Runner:
    module = relpath[:-3].replace("/", ".")
    return lambda m, timeout: run_tests(tests, timeout, m and _Serve(module, str(ROOT / relpath), m.text))


def _bridges_runner(copy: Path) -> Runner:
    """Runs the bridge tests in `copy` (of the tracked files) with one bridge file edited."""
    spec = importlib.util.spec_from_file_location("build_amxd", copy / "tools" / "build_amxd.py")
    build_amxd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_amxd)
    devices = [copy / "bridges" / "max" / name for name in build_amxd.DEVICES]

    def run(m: Mutant | None, timeout: float) -> bool:
        if m is None:
            return run_tests(BRIDGE_TESTS, timeout, cwd=copy)
        originals = {path: path.read_bytes() for path in [copy / m.file, *devices]}
        try:
            (copy / m.file).write_text(m.text)
            for path in devices:
                path.write_bytes(build_amxd.build(path.name))
            return run_tests(BRIDGE_TESTS, timeout, cwd=copy)
        finally:
            for path, data in originals.items():
                path.write_bytes(data)

    return run


def _copy_tracked_files(dest: Path) -> Path:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in names.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def main() -> int:
    known = [*MODULES, BRIDGES]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=known, help=f"some of {', '.join(known)}")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--lines", help="only the mutants on these lines, e.g. 26,35 (to re-check a few)")
    args = parser.parse_args()
    if unknown := set(args.modules) - set(known):
        parser.error(f"unknown modules {sorted(unknown)}; known: {', '.join(known)}")

    tmp = Path(tempfile.mkdtemp(prefix="mutate-"))  # compiled files and the bridges' copy; removed at the end
    # Compiled files go to an empty folder: a stale .pyc of a same-size mutant can never be read.
    sys.pycache_prefix = str(tmp / "pyc")
    sys.dont_write_bytecode = True
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # no entry-point scan in every child
    sys.path.insert(0, str(ROOT))
    if not args.list:
        import numpy  # noqa: F401  (loaded once here, shared by every forked child)
        import pytest  # noqa: F401
        import torch
        import torchsde  # noqa: F401

        torch.set_num_threads(1)
        assert not [m for m in sys.modules if m.startswith("sao_live")], "the parent must not import sao_live"
        gc.freeze()  # the children's collector then leaves the parent's pages shared

    scores = []
    try:
        for name in args.modules:
            if name == BRIDGES:
                found = bridge_mutants()
                files = {m.file for m in found}
                run = None if args.list else _bridges_runner(_copy_tracked_files(tmp / "tree"))
            else:
                relpath, tests = MODULES[name]
                found, files, run = mutants(relpath), {relpath}, _module_runner(relpath, tests)
            for key in sorted({k for k in EQUIVALENT if k[0] in files} - {m.key for m in found}):
                print(f"stale EQUIVALENT entry (no such mutant): {key}")
            if args.lines:
                found = [m for m in found if m.line in {int(n) for n in args.lines.split(",")}]
            if args.list:
                for m in found:
                    print(f"{m.where}  {m.change}  | {m.source_line}")
                print(f"{name}: {len(found)} mutants")
                continue
            scores.append((name, *_score(name, found, run)))
    finally:
        shutil.rmtree(tmp)
    if scores:
        print(f"\n{'module':<13} killed / behaviour-changing   score   (equivalent)   minutes")
        for name, killed, counted, eq, seconds in scores:
            score = f"{100 * killed / max(counted, 1):5.1f}%"
            print(f"{name:<13} {killed:>6} / {counted:<20} {score}   {f'({eq})':<12}   {seconds / 60:7.1f}")
    return 0


def _score(name: str, found: list[Mutant], run: Runner) -> tuple[int, int, int, float]:
    """Runs every mutant, prints the survivors and the equivalent ones; (killed, counted, equivalent, seconds)."""
    start = time.monotonic()
    if not run(None, 600):
        raise SystemExit(f"{name}: the unmutated tests fail; fix them first")
    timeout = max(10.0, 10 * (time.monotonic() - start))
    survivors, equivalent = [], []
    for i, m in enumerate(found, 1):
        if run(m, timeout):
            (equivalent if m.key in EQUIVALENT else survivors).append(m)
        print(f"\r{name}: {i}/{len(found)}, {len(survivors)} surviving", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for m in survivors:
        print(f"SURVIVED {m.where}  {m.change}  | {m.source_line}")
    for m in equivalent:
        print(f"equivalent {m.where}  {m.change}  | {EQUIVALENT[m.key]}")
    counted = len(found) - len(equivalent)
    return counted - len(survivors), counted, len(equivalent), time.monotonic() - start


if __name__ == "__main__":
    sys.exit(main())
