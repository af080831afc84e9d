"""Targeted mutation testing of the pure modules: does each small change to the code fail a test?

    python tools/mutate.py                 # every module below
    python tools/mutate.py scheduler oscwire --list   # only list the mutants, run nothing

Each mutant is one change found in the module's AST and spliced into its source text: an
arithmetic, comparison or boolean operator swapped, a unary operator dropped, min/max swapped,
a number plus one, a bool flipped, a short string emptied, or a statement replaced by `pass`.
The source files are never written: a forked child serves the mutated text through an import
hook and runs the module's unit tests with pytest -x, so an interrupted run leaves the tree as
it was. The parent imports the heavy
libraries (torch, numpy) once and forks per mutant, which keeps a mutant well under a second.

A mutant is killed when the tests fail (or time out). Survivors are printed as
file:line:col, the change and the source line. Mutants known to be equivalent are listed in
EQUIVALENT with the reason and counted apart; the score is killed / (mutants - equivalent).
Docstrings, f-strings, log and warning calls, annotations and strings with spaces (messages)
are not mutated.
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
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# module -> (source file, its fast unit tests)
MODULES = {
    "scheduler": ("sao_live/daemon/scheduler.py", ["tests/daemon/test_scheduler.py"]),
    "request": ("sao_live/request.py", ["tests/test_request.py"]),
    "oscwire": ("sao_live/daemon/oscwire.py", ["tests/daemon/test_oscwire.py"]),
    "sampling": ("sao_live/engine/sampling.py", ["tests/engine/test_sampling.py"]),
    # test_cache_command runs the CLI in a subprocess, which the import hook does not reach.
    "store": ("sao_live/daemon/store.py", ["tests/daemon/test_store.py", "-k", "not cache_command"]),
    "tempo": ("sao_live/live/tempo.py", ["tests/live/test_tempo.py"]),
    "loops": ("sao_live/live/loops.py", ["tests/live/test_mixer.py", "-k", "cut_loop"]),
}

# (file, stripped source line, change) -> why no test can tell the mutant from the original. An entry
# covers every mutant with that line and change: on the `put(...)` lines below the first of the two
# equal strings (the field set) is killed, the second (the name in the message) is the equivalent one.
_SCHED, _REQ, _OSC, _SAMPLING, _STORE = (
    f"sao_live/{m}.py" for m in ("daemon/scheduler", "request", "daemon/oscwire", "engine/sampling", "daemon/store")
)
_IDENTITY = "jobs and requesters are compared with `is` and never hashed: a generated __eq__ changes nothing"
_NO_FAMILY = "a job without a family is never looked up by family: find_family is asked for 32-hex family keys"
_MESSAGE = "the name only appears in the error message; the code and the check are unchanged"
_DEAD_SECONDS = "dead code: with bars, __post_init__ replaces seconds by bars * 240 / bpm before checking them"
_ONES = "`ones` holds 1s: t * 1 == t / 1"
_JUST_FOUND = "the file was just listed: only another process deleting it meanwhile would tell"
_LOGGED = "only the log line changes: any size other than the one written drops the clip"
_NUL_AT_0 = "find() gives 0 only for a NUL at byte 0, and no string starts there: an address starts with '/'"
EQUIVALENT: dict[tuple[str, str, str], str] = {
    (_SCHED, "@dataclass(eq=False)", "False -> True"): _IDENTITY,
    (
        _SCHED,
        'family: str = ""  # the key without the seed: a seedless trigger may join any job of its family',
        "'' -> 'XX'",
    ): _NO_FAMILY,
    (
        _SCHED,
        'def submit(self, key: str, request: Request, requester: Requester, family: str = "") -> tuple[Job, bool]:',
        "'' -> 'XX'",
    ): _NO_FAMILY,
    (
        _SCHED,
        "def __init__(self, max_queued: int = 256):",
        "256 -> 257",
    ): "the daemon always passes its queue_size setting; the default is never used",
    (
        _REQ,
        "PICKED_SEED_MAX = 2**24 - 1  # seeds the daemon picks survive float32 clients (Pd) exactly",
        "1 -> 2",
    ): "one pickable seed fewer out of 2^24: every pick is still float32-exact, and no test can see the top one",
    (
        _REQ,
        "seed = random.randint(0, PICKED_SEED_MAX)",
        "0 -> 1",
    ): "seed 0 is no longer picked: one value in 2^24, not observable",
    (
        _REQ,
        'raise RequestError(code, f"{name} must be a number, got {value!r}") from None',
        "delete the statement",
    ): "the string falls through to the next check, which raises the same code and message",
    (
        _REQ,
        'for name in ("negative", "sampler"):',
        "'negative' -> ''",
    ): "the constructor then refuses a negative that is not a string, with the same code and message",
    (
        _REQ,
        "if self.seconds > model.window_seconds + 1e-9:",
        "> -> >=",
    ): "seconds are rounded to 0.1 ms, so they never equal the window + 1e-9",
    (_REQ, "return None", "delete the statement"): "falling off the end returns None too",
    (
        _REQ,
        'if not "".join(words).strip():',
        "'' -> 'XX'",
    ): "joining with 'XX' only changes a prompt of several blank words, which the constructor then refuses "
    "with the same code",
    (
        _REQ,
        'raise RequestError("empty_prompt", f"prompt must not be empty, got {\' \'.join(words)!r}")',
        "delete the statement",
    ): "the constructor refuses the same prompts with the same code",
    (
        _REQ,
        'raise RequestError("bad_seconds", f"seconds must be a number, got {atoms[i]!r}")',
        "delete the statement",
    ): "the constructor refuses the same value with the same code and message",
    (
        _REQ,
        "for key, value in zip(rest[::2], rest[1::2], strict=True):",
        "True -> False",
    ): "the pairs were just checked to be even, so both slices have the same length",
    (_REQ, "if seconds == 0:", "== -> !="): _DEAD_SECONDS,
    (_REQ, "if seconds == 0:", "0 -> 1"): _DEAD_SECONDS,
    (_REQ, "seconds = 1.0  # replaced by bars * 240 / bpm", "delete the statement"): _DEAD_SECONDS,
    (_REQ, "seconds = 1.0  # replaced by bars * 240 / bpm", "1.0 -> 2.0"): _DEAD_SECONDS,
    (
        _SAMPLING,
        "Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]",
        "delete the statement",
    ): "a type alias read only in annotations, which are never evaluated",
    (
        _SAMPLING,
        "Callback = Callable[[dict], None] | None",
        "delete the statement",
    ): "a type alias read only in annotations, which are never evaluated",
    (
        _SAMPLING,
        "def get_sigmas_rf(n: int, sigma_max: float = 1.0) -> torch.Tensor:",
        "1.0 -> 2.0",
    ): "sigma_max is clamped to 1 on the next line",
    (_SAMPLING, "denoised = x - sigmas[i] * model(x, sigmas[i] * ones)", "* -> /"): _ONES,
    (_SAMPLING, "v = model(x, sigmas[i] * ones)", "* -> /"): _ONES,
    (_SAMPLING, "denoised = x - t * model(x, t * ones)", "* -> /"): _ONES,
    (_SAMPLING, "denoised = denoiser(x, sigmas[i] * ones)", "* -> /"): _ONES,
    (
        _SAMPLING,
        "lo, hi, sign = (sigma, sigma_next, 1) if sigma < sigma_next else (sigma_next, sigma, -1)",
        "< -> <=",
    ): "they differ only for an empty interval, which divides by zero either way",
    (_SAMPLING, "return w * sign / (sigma_next - sigma).abs().sqrt()", "* -> /"): "sign is 1 or -1: w * s == w / s",
    (
        _SAMPLING,
        "return int(torch.randint(0, 2**63 - 1, [], generator=generator).item())",
        "1 -> 2",
    ): "the tree's seed range is one smaller out of 2^63",
    (_OSC, "if end < 0:", "< -> <="): _NUL_AT_0,
    (_OSC, "if end < 0:", "0 -> 1"): _NUL_AT_0,
    (_OSC, 'raw, pos = _string(data, 0, "address")', "'address' -> ''"): _MESSAGE,
    (_OSC, 'raw, pos = _string(data, pos, "string")', "'string' -> ''"): _MESSAGE,
    (
        _OSC,
        "if size <= 0 or pos + 4 + size > len(data):",
        "0 -> 1",
    ): "a 1-byte element is refused either way: as an element here, or as a message without its NUL",
    (_STORE, "pinned: bool = False", "False -> True"): "clips are always built from index rows, pinned included",
    (_STORE, "@dataclass(frozen=True)", "True -> False"): "nothing assigns to a Clip",
    (_STORE, "while block := f.read(1 << 20):", "1 -> 2"): "the block size does not change the hash",
    (_STORE, "while block := f.read(1 << 20):", "20 -> 21"): "the block size does not change the hash",
    (
        _STORE,
        'self._db = sqlite3.connect(self.root / "index.sqlite3", timeout=10, check_same_thread=False)',
        "10 -> 11",
    ): "the lock timeout matters only while another process writes the index",
    (_STORE, "path.unlink(missing_ok=True)", "True -> False"): _JUST_FOUND,
    (_STORE, "Path(what).unlink(missing_ok=True)", "True -> False"): _JUST_FOUND,
    (_STORE, "if partials or orphans:", "or -> and"): "it only decides whether to log",
    (_STORE, "size = -1", "drop -"): _LOGGED,
    (_STORE, "size = -1", "1 -> 2"): _LOGGED,
    (_STORE, 'problem = "is missing" if size < 0 else f"has {size} bytes instead of {clip.bytes}"', "< -> <="): _LOGGED,
    (_STORE, 'problem = "is missing" if size < 0 else f"has {size} bytes instead of {clip.bytes}"', "0 -> 1"): _LOGGED,
    (_STORE, "return []", "delete the statement"): "the loop below then stops at once and returns [] too",
    (
        _STORE,
        "if total <= self.max_bytes:",
        "<= -> <",
    ): "at the limit the early return is skipped, but the same check at the top of the loop stops it at once",
    (_STORE, "return None", "delete the statement"): "falling off the end returns None too",
    (
        _STORE,
        "self._db.close()",
        "delete the statement",
    ): "the connection is dropped on the next line and closed when collected; only the file handle lives longer",
}
for _line, _name in [
    ('prompt = _text(self.prompt, "prompt", "bad_prompt", MAX_PROMPT_CHARS)', "prompt"),
    ('put(self, "negative", _text(self.negative, "negative", "bad_negative", MAX_PROMPT_CHARS))', "negative"),
    ('put(self, "bars", float(_num(self.bars, "bars", "bad_bars", 0, 256, lo_open=True)))', "bars"),
    ('put(self, "bpm", round(float(_num(self.bpm, "bpm", "bad_bpm", 20, 400)), 3))', "bpm"),
    (
        'put(self, "seconds", round(float(_num(self.seconds, "seconds", "bad_seconds", 0, 3600, lo_open=True)), 4))',
        "seconds",
    ),
    ('put(self, "seed", _num(self.seed, "seed", "bad_seed", 0, SEED_MAX, integer=True))', "seed"),
    ('put(self, "steps", _num(self.steps, "steps", "bad_steps", 1, 1000, integer=True))', "steps"),
    ('put(self, "cfg", round(float(_num(self.cfg, "cfg", "bad_cfg", 0, 50)), 4))', "cfg"),
    (
        'put(self, "variations", _num(self.variations, "variations", "bad_variations", 1, 16, integer=True))',
        "variations",
    ),
]:  # the second of the two equal strings on each line: the name in the message (the first names the field)
    EQUIVALENT[(_REQ, _line, f"{_name!r} -> ''")] = _MESSAGE

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
    text: str  # the whole mutated module

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.file, self.source_line, self.change)


def _variants(node: ast.AST, parent: ast.AST | None):
    """(mutated copy of node, description) for each mutation of this node itself."""
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        new = _BINOPS[type(node.op)]
        yield ast.BinOp(node.left, new(), node.right), f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[new]}"
    elif isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _CMPOPS:
                new = _CMPOPS[type(op)]
                ops = list(node.ops)
                ops[i] = new()
                yield ast.Compare(node.left, ops, node.comparators), f"{_SYMBOL[type(op)]} -> {_SYMBOL[new]}"
    elif isinstance(node, ast.BoolOp):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        yield ast.BoolOp(new(), node.values), f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[new]}"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.Invert)):
        yield node.operand, f"drop {_SYMBOL[type(node.op)]}"
    elif isinstance(node, ast.Name) and node.id in _NAMES and isinstance(node.ctx, ast.Load):
        yield ast.Name(_NAMES[node.id], ast.Load()), f"{node.id} -> {_NAMES[node.id]}"
    elif isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            yield ast.Constant(not v), f"{v} -> {not v}"
        elif isinstance(v, int):
            yield ast.Constant(v + 1), f"{v} -> {v + 1}"
        elif isinstance(v, float):
            yield ast.Constant(v + 1.0), f"{v!r} -> {v + 1.0!r}"
        elif isinstance(v, (str, bytes)) and len(v) <= 40 and not re.search(r"\s", repr(v)[1:-1]):
            new = v[:0] if v else ("XX" if isinstance(v, str) else b"XX")  # emptied: `in "sS"` finds nothing
            yield ast.Constant(new), f"{v!r} -> {new!r}"
    if isinstance(node, _DELETABLE) and not isinstance(parent, ast.ClassDef):
        yield ast.Pass(), "delete the statement"
    if isinstance(node, ast.AugAssign) and type(node.op) in _BINOPS:
        new = _BINOPS[type(node.op)]
        yield ast.AugAssign(node.target, new(), node.value), f"{_SYMBOL[type(node.op)]}= -> {_SYMBOL[new]}="


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
    if isinstance(node, ast.arg) and node.annotation is not None:
        skip.add(id(node.annotation))
    if isinstance(node, ast.AnnAssign):
        skip.add(id(node.annotation))
    if isinstance(node, ast.JoinedStr):
        skip.update(id(c) for c in node.values)
    if isinstance(node, ast.Call) and _quiet(node):
        skip.update(id(a) for a in [*node.args, *node.keywords])
    for child in ast.iter_child_nodes(node):  # a log line on its own is no behaviour to delete
        if isinstance(child, ast.Expr) and isinstance(child.value, ast.Call) and _quiet(child.value):
            skip.add(id(child))
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        skip.add(id(node))
    return skip


def mutants(relpath: str) -> list[Mutant]:
    source = (ROOT / relpath).read_bytes()
    tree = ast.parse(source)
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
                if isinstance(new, ast.stmt):
                    replacement = ast.unparse(new).encode()
                else:
                    replacement = b"(" + ast.unparse(copy.deepcopy(new)).encode() + b")"
                text = source[:begin] + replacement + source[end:]
                if text in seen:
                    continue
                seen.add(text)
                line = lines[node.lineno - 1].decode().strip()
                found.append(Mutant(relpath, node.lineno, node.col_offset, change, line, text.decode()))
        inner = skip | _skipped_children(node)
        for child in ast.iter_child_nodes(node):
            visit(child, node, inner)

    visit(tree, None, set())
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


def run_tests(tests: list[str], serve: _Serve | None, timeout: float) -> tuple[bool, float]:
    """(passed, seconds): the tests in a forked child, with `serve` hooked in; a timeout fails."""
    import pytest

    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 99
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            if serve is not None:
                sys.meta_path.insert(0, serve)
            os.chdir(ROOT)
            code = pytest.main(["-x", "-q", "--assert=plain", "-p", "no:cacheprovider", *tests])
        finally:
            os._exit(int(code))
    deadline = start + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status) == 0, time.monotonic() - start
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return False, time.monotonic() - start
            time.sleep(0.005)
    except BaseException:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        raise


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=list(MODULES), help=f"some of {', '.join(MODULES)}")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--lines", help="only the mutants on these lines, e.g. 26,35 (to re-check a few)")
    args = parser.parse_args()
    unknown = set(args.modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown modules {sorted(unknown)}; known: {', '.join(MODULES)}")

    # Compiled files go to an empty folder: a stale .pyc of a same-size mutant can never be read.
    sys.pycache_prefix = tempfile.mkdtemp(prefix="mutate-pyc-")
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
    for name in args.modules:
        relpath, tests = MODULES[name]
        found = mutants(relpath)
        if args.lines:
            found = [m for m in found if m.line in {int(n) for n in args.lines.split(",")}]
        if args.list:
            for m in found:
                print(f"{m.where}  {m.change}  | {m.source_line}")
            print(f"{name}: {len(found)} mutants")
            continue
        ok, base = run_tests(tests, None, 600)
        if not ok:
            print(f"{name}: the unmutated tests fail ({' '.join(tests)}); fix them first")
            return 2
        module = relpath[:-3].replace("/", ".")
        survivors, equivalent = [], []
        for i, m in enumerate(found, 1):
            passed, _ = run_tests(tests, _Serve(module, str(ROOT / relpath), m.text), max(10.0, 10 * base))
            if passed:
                (equivalent if m.key in EQUIVALENT else survivors).append(m)
            print(f"\r{name}: {i}/{len(found)}, {len(survivors)} surviving", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        counted = len(found) - len(equivalent)
        killed = counted - len(survivors)
        scores.append((name, killed, counted, len(equivalent)))
        for m in survivors:
            print(f"SURVIVED {m.where}  {m.change}  | {m.source_line}")
        for m in equivalent:
            print(f"equivalent {m.where}  {m.change}  | {EQUIVALENT[m.key]}")
    if scores:
        print("\nmodule      killed / behaviour-changing   score   (equivalent)")
        for name, killed, counted, eq in scores:
            print(f"{name:<11} {killed:>6} / {counted:<20} {100 * killed / max(counted, 1):5.1f}%   ({eq})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
