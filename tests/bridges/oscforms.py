"""What a message's arguments mean, read from the PROTOCOL table's arguments column.

`bind("/sao/gen", [7, "warm", "pad", 4.0, "seed", 3])` gives
`{"id": 7, "prompt": ["warm", "pad"], "seconds": 4.0, "seed": 3}`: the names and their order are the
table's, so a bridge that swaps two arguments binds them to the wrong names. `check` also hands the
arguments to the daemon's own parsers, which judge the values (seconds > 0, a whole seed, ...).
"""

from __future__ import annotations

import re

from sao_live.daemon import osc, protocol
from sao_live.request import parse_osc

from . import addresses


class Mismatch(AssertionError):
    pass


def row(address: str) -> protocol.Row:
    rows = [r for r in protocol.PROTOCOL if r.address.startswith("/") and addresses.takes(r.address, address)]
    if not rows:
        raise Mismatch(f"no PROTOCOL row takes {address}")
    return rows[0]


def forms(address: str) -> tuple[list[list[str]], list[str]]:
    """The alternatives of the arguments column (each a list of tokens) and the keys of `[key value ...]`."""
    text = row(address).arguments
    head, _, keys = text.partition("; keys:")
    head = re.sub(r"\([^)]*\)", "", head)  # "(e.g. `pad3`, ...)" gives examples, not forms
    alternatives = [seg.split() for seg in re.findall(r"`([^`]*)`", head)]
    return alternatives or [[]], [k.split()[0] for k in keys.split(",") if k.strip()]


def _match(tokens: list[str], atoms: list, keys: list[str]) -> dict | None:
    """The first binding of `atoms` to `tokens` (backtracking; `...` names take as many words as they can)."""
    if not tokens:
        return {} if not atoms else None
    tok, rest = tokens[0], tokens[1:]
    tries: list[tuple[dict, int]] = []  # (bound, atoms used)
    if m := re.fullmatch(r"<(\w+)\.\.\.>", tok):  # one or more words
        words = 0
        while words < len(atoms) and isinstance(atoms[words], str):
            words += 1
        tries = [({m[1]: list(atoms[:n])}, n) for n in range(words, 0, -1)]
    elif m := re.fullmatch(r"<(\w+)>", tok):
        tries = [({m[1]: atoms[0]}, 1)] if atoms else []
    elif tok == "[1|0]":
        tries = [({"flag": atoms[0]}, 1)] if atoms and atoms[0] in (0, 1) and atoms[0] is not True else []
        tries.append(({}, 0))
    elif tok == "[key" and rest[:2] == ["value", "...]"]:
        rest = rest[2:]
        n, pairs = 0, {}
        while n + 1 < len(atoms) and atoms[n] in keys:
            pairs[atoms[n]] = atoms[n + 1]
            n += 2
        tries = [(dict(list(pairs.items())[: k // 2]), k) for k in range(n, -1, -2)]
    elif m := re.fullmatch(r"\[(\w+)\]", tok):
        tries = ([({m[1]: atoms[0]}, 1)] if atoms else []) + [({}, 0)]
    elif tok == "[atoms" and rest[:1] == ["...]"]:
        return {"atoms": list(atoms)} if rest == ["...]"] else None
    elif m := re.fullmatch(r"(\w+)<(\w+)>", tok):  # pad<n>
        ok = atoms and isinstance(atoms[0], str) and re.fullmatch(rf"{m[1]}\d+", atoms[0])
        tries = [({m[1]: int(atoms[0][len(m[1]) :])}, 1)] if ok else []
    else:  # a literal word: all
        tries = [({tok: True}, 1)] if atoms and atoms[0] == tok else []
    for bound, used in tries:
        more = _match(rest, atoms[used:], keys)
        if more is not None:
            return {**bound, **more}
    return None


def bind(address: str, args: list) -> dict:
    """The arguments by the table's names, from the first form they fit; Mismatch when none fits."""
    alternatives, keys = forms(address)
    # a literal form (`all`) before one that takes any atom (`<id>`): "all" is not an id
    for tokens in sorted(alternatives, key=lambda t: sum(bool(re.fullmatch(r"<\w+>", w)) for w in t)):
        bound = _match(tokens, list(args), keys)
        if bound is not None:
            return bound
    raise Mismatch(f"{address} {args!r} fits none of {row(address).arguments!r}")


def check(address: str, args: list) -> dict:
    """bind(), then the daemon's own parsing of the values: a request must be one the daemon accepts."""
    bound = bind(address, args)
    try:
        if address in ("/sao/gen", "/sao/trigger"):
            osc._norm_id(args[0])
            parse_osc(list(args[1:]))
        elif "id" in bound:
            osc._norm_id(bound["id"])
        if "velocity" in bound:
            osc._gain(bound["velocity"], "velocity", "bad_velocity")
        if "gain" in bound:
            osc._gain(bound["gain"])
    except Exception as err:  # RequestError: the daemon would answer /sao/error
        raise Mismatch(f"the daemon rejects {address} {args!r}: {err}") from err
    return bound


def reply(address: str) -> list[str]:
    """The argument names of a reply as the table writes it: `/sao/done <id> <path> ...` -> ["id", "path", ...]."""
    texts = [seg for r in protocol.PROTOCOL for seg in re.findall(r"`([^`]*)`", r.replies + " " + r.meaning)]
    found = []
    for seg in texts + [m for m, _ in protocol.ANNOUNCEMENTS]:
        head, _, rest = seg.partition(" ")
        if head == address:
            found.append([name.split()[0] for name in re.findall(r"<((?:[^<>]|<[^<>]*>)*)>", rest)])
    if not found:
        raise Mismatch(f"the daemon never sends {address}")
    return max(found, key=len)  # the general form, not a special case such as `/sao/error <id> cancelled ...`


# Made-up values for the arguments of a reply, by the table's names (inputs of the tests, not expectations);
# the timing figures differ from each other, so a figure shown in another's place is noticed.
SAMPLES = {"id": 7, "path": "/tmp/sao-live/clip 7.wav", "seconds": 4.0, "seed": 1234, "cached": 0, "0..1": 0.25,
           "code": "bad_seconds", "message": "seconds must be in (0, 3600]", "position": 2, "reason": "cancelled",
           "queue": 0.03, "text": 0.12, "dit": 2.6, "decode": 6.9, "first_sound": 4.1, "rtf": 1.25}  # fmt: skip


def sample_reply(address: str, **values) -> tuple[list, dict]:
    """A reply the daemon could send (SAMPLES, or `values` by name), as its arguments and by name."""
    by_name = {n: values.get(n, SAMPLES[n]) for n in reply(address)}
    return list(by_name.values()), by_name


# The line every bridge shows for /sao/timing, each figure after its label:
# "queue 0.03 s | text 0.12 s | DiT 2.60 s | decode 6.90 s | first sound 4.10 s | 1.25x real time",
# with "not streamed" in place of the first sound when it is -1.
_NUMBER = r"(-?\d+(?:\.\d+)?)"
TIMING_LINE = re.compile(
    rf"queue {_NUMBER} s \| text {_NUMBER} s \| DiT {_NUMBER} s \| decode {_NUMBER} s \| "
    rf"(?:first sound {_NUMBER} s|not streamed) \| {_NUMBER}x real time"
)


def timing_shown(line: str) -> dict:
    """The figures of a timing line by the reply's names (first_sound None: "not streamed")."""
    m = TIMING_LINE.fullmatch(line)
    if not m:
        raise Mismatch(f"not a timing line: {line!r}")
    names = ["queue", "text", "dit", "decode", "first_sound", "rtf"]
    return {n: None if v is None else float(v) for n, v in zip(names, m.groups(), strict=True)}


def timing_expected(by_name: dict) -> dict:
    """What a timing line shows for a /sao/timing reply: each figure to 2 decimals, -1 as "not streamed"."""
    figures = {n: round(v, 2) for n, v in by_name.items() if n != "id"}
    return {**figures, "first_sound": None if by_name["first_sound"] < 0 else figures["first_sound"]}
