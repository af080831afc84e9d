"""The Request: what every trigger asks for, validated once at the edge (docs/architecture.md).

A Request is a frozen value: prompt, negative prompt, length (seconds, or bars at a bpm),
seed, sampler settings, and what to do with the clip (priority, variations, export).
`parse_osc` builds one from OSC atoms, `Request.from_dict` from JSON; both go
through `__post_init__`, which rejects bad values with a `RequestError` whose `code` is
stable (it travels in `/sao/error <id> <code> <message>`). `resolved(model, defaults)`
fills in the model's defaults and checks what depends on the model (window, samplers),
after which `cache_key` is a deterministic hash over everything that changes the audio.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .errors import RequestError
from .musical_time import bars_to_seconds
from .ranges import (  # noqa: F401 - SEED_MAX, PICKED_SEED_MAX, is_number and the checks are part of this module's API
    PICKED_SEED_MAX,
    RANGES,
    SEED_MAX,
    _num,
    check_seconds,
    check_seed,
    is_number,
    pick_seed,
)

POST_VERSION = 1  # bump when post-processing changes the audio of an unchanged request
PRIORITIES = {"now": 0, "prerender": 1, "refill": 2}
EXPORT_FORMATS = {"wav": ("wav", "24"), "wav16": ("wav", "16"), "wav32f": ("wav", "32f"), "flac": ("flac", "24")}
KEYS = ("seed", "steps", "cfg", "negative", "sampler", "bpm", "bars", "variations", "priority", "export")
MAX_PROMPT_CHARS = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class ModelInfo:
    """What the control plane knows about the loaded model (sent by the worker when ready)."""

    name: str
    fingerprint: str
    window_seconds: float
    sample_rate: int
    objective: str  # "rf" (Small) or "v" (1.0)
    steps: int  # model-card defaults
    cfg: float
    sampler: str
    samplers: tuple[str, ...]

    @classmethod
    def from_dict(cls, d: dict) -> ModelInfo:
        return cls(**{**d, "samplers": tuple(d["samplers"])})


def _text(value: Any, name: str, code: str, limit: int) -> str:
    if not isinstance(value, str):
        raise RequestError(code, f"{name} must be a string, got {value!r}")
    if len(value) > limit:
        raise RequestError("prompt_too_long", f"{name} must be at most {limit} characters, got {len(value)}")
    return " ".join(_CONTROL.sub(" ", value).split())


def _priority(value: Any) -> int:
    if isinstance(value, str) and value in PRIORITIES:
        return PRIORITIES[value]
    if is_number(value) and value in (0, 1, 2):
        return int(value)
    raise RequestError("bad_priority", f"priority must be one of now, prerender, refill (or 0, 1, 2), got {value!r}")


def _export(value: Any) -> str | None:
    """None: the daemon's default; "none": no export; otherwise a key of EXPORT_FORMATS."""
    if value is None or value == "none" or (isinstance(value, str) and value in EXPORT_FORMATS):
        return value
    if isinstance(value, bool) or (is_number(value) and value in (0, 1)):
        return "default" if value else "none"
    if value == "default":
        return value
    raise RequestError("bad_export", f"export must be 0, 1 or one of {', '.join(EXPORT_FORMATS)}, got {value!r}")


@dataclass(eq=False)
class Requester:
    """Who waits for a request's clip: the reply address and the id to echo, and what they want done."""

    host: str  # "" for the daemon's own requests (a set's pre-render)
    port: int
    id: int | str
    priority: int = 0
    export: str | None = None  # an EXPORT_FORMATS key, or None for no export
    play: int = 0  # when done: 0 only reply, 1 play once (/sao/trigger), 2 play looped (/sao/loop)


@dataclass(frozen=True)
class Request:
    """One clip to make. Lengths in seconds; bars assume 4/4 (seconds = bars * 4 * 60 / bpm)."""

    prompt: str
    seconds: float
    seed: int
    negative: str = ""
    steps: int | None = None  # None until `resolved`: the model's (or the daemon's) default
    cfg: float | None = None
    sampler: str | None = None
    bars: float | None = None
    bpm: float | None = None
    variations: int = 1
    priority: int = 0  # 0 play now, 1 pre-render, 2 background refill
    export: str | None = None
    picked_seed: bool = field(default=False, compare=False)  # True when the daemon chose the seed

    def __post_init__(self):
        put = object.__setattr__
        prompt = _text(self.prompt, "prompt", "bad_prompt", MAX_PROMPT_CHARS)
        if not prompt:
            raise RequestError("empty_prompt", f"prompt must not be empty, got {self.prompt!r}")
        put(self, "prompt", prompt)
        put(self, "negative", _text(self.negative, "negative", "bad_negative", MAX_PROMPT_CHARS))
        if self.bars is not None or self.bpm is not None:
            if self.bars is None or self.bpm is None:
                raise RequestError("bad_bars", "bars and bpm go together: give both, or neither")
            put(self, "bars", float(_num(self.bars, "bars", "bad_bars", 0, 256, lo_open=True)))
            put(self, "bpm", round(float(_num(self.bpm, "bpm", "bad_bpm", *RANGES["bpm"])), 3))
            put(self, "seconds", bars_to_seconds(self.bars, self.bpm))
        # Rounded to 0.1 ms so float32 atoms (0.1 -> 0.10000000149) give the same clip as their decimal.
        # The range depends on the model: `resolved` checks it.
        put(self, "seconds", round(float(_num(self.seconds, "seconds", "bad_seconds", -math.inf, math.inf)), 4))
        put(self, "seed", check_seed(self.seed, random_ok=False))
        if self.steps is not None:
            put(self, "steps", _num(self.steps, "steps", "bad_steps", 1, 1000, integer=True))
        if self.cfg is not None:
            put(self, "cfg", round(float(_num(self.cfg, "cfg", "bad_cfg", 0, 50)), 4))
        if self.sampler is not None and not isinstance(self.sampler, str):
            raise RequestError("bad_sampler", f"sampler must be a name, got {self.sampler!r}")
        put(self, "variations", _num(self.variations, "variations", "bad_variations", 1, 16, integer=True))
        put(self, "priority", _priority(self.priority))
        put(self, "export", _export(self.export))

    # ------------------------------------------------------------ construction

    @classmethod
    def create(cls, prompt: str, seconds: float, seed: Any = None, **options) -> Request:
        """A Request with the seed picked (and recorded) when none, or -1, is given."""
        seed = None if seed is None else check_seed(seed)
        picked = seed is None
        if picked:
            seed = pick_seed()
        for name in ("negative", "sampler"):
            if name in options and not isinstance(options[name], str):
                raise RequestError(f"bad_{name}", f"{name} must be a string, got {options[name]!r}")
        return cls(prompt=prompt, seconds=seconds, seed=seed, picked_seed=picked, **options)

    @classmethod
    def from_dict(cls, d: dict) -> Request:
        unknown = set(d) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise RequestError("unknown_key", f"unknown request fields {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    # ------------------------------------------------------------ model-dependent

    def resolved(self, model: ModelInfo, defaults: dict | None = None) -> Request:
        """Fills steps/cfg/sampler from `defaults` or the model card, and checks the window."""
        defaults = defaults or {}
        steps = self.steps if self.steps is not None else defaults.get("steps") or model.steps
        cfg = self.cfg if self.cfg is not None else defaults.get("cfg")
        cfg = model.cfg if cfg is None else cfg
        sampler = self.sampler or defaults.get("sampler") or model.sampler
        if sampler not in model.samplers:
            raise RequestError("bad_sampler", f"sampler must be one of {', '.join(model.samplers)}, got {sampler!r}")
        length = f"{self.bars:g} bars at {self.bpm:g} bpm = {self.seconds:g} s" if self.bars else ""
        check_seconds(self.seconds, model.window_seconds, model.name, length)
        return replace(self, steps=steps, cfg=cfg, sampler=sampler)

    def variation(self, i: int) -> Request:
        """The i-th variation: the same request with seed + i."""
        return replace(self, seed=(self.seed + i) % (SEED_MAX + 1), variations=1)

    def _audio_fields(self, fingerprint: str, with_seed: bool) -> dict:
        if self.steps is None or self.cfg is None or self.sampler is None:
            raise ValueError("cache keys need a resolved request (call .resolved(model) first)")
        d = dict(
            v=POST_VERSION,
            model=fingerprint,
            prompt=self.prompt,
            negative=self.negative,
            seconds=self.seconds,
            steps=self.steps,
            cfg=self.cfg,
            sampler=self.sampler,
            post="loop" if self.bars is not None else "oneshot",
        )
        if with_seed:
            d["seed"] = self.seed
        return d

    def cache_key(self, fingerprint: str) -> str:
        """A hash over everything that changes the audio: model, text, length, seed, sampling, post-processing."""
        blob = json.dumps(self._audio_fields(fingerprint, True), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def family_key(self, fingerprint: str) -> str:
        """The cache key without the seed: every variation of the same sound shares it."""
        blob = json.dumps(self._audio_fields(fingerprint, False), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def trailing_flag(atoms: list) -> int | None:
    """TouchOSC's press (1) / release (0) flag when `atoms` ends with one, else None."""
    if atoms and (is_number(atoms[-1]) or isinstance(atoms[-1], bool)) and atoms[-1] in (0, 1):
        return int(atoms[-1])
    return None


def parse_osc(atoms: list, bpm: float = 120.0) -> tuple[Request, int | None]:
    """`<prompt atoms...> <seconds> [key value ...] [1|0]` -> (Request, press/release flag or None).

    The id is already taken off. The prompt is the string atoms before the first number (Max
    sends a message box's words as separate atoms; a number inside a prompt must travel inside
    one string). The first number is the length in seconds; with `bars` (and `bpm`, default
    `bpm`) it may be 0. A trailing 1 or 0 after the pairs is TouchOSC's press/release flag.
    """
    words = []
    for atom in atoms:
        if not isinstance(atom, str):
            break
        words.append(atom)
    i = len(words)
    if not words:
        raise RequestError("missing_prompt", f"expected <id> <prompt> <seconds> [key value ...], got {atoms!r}")
    if not "".join(words).strip():
        raise RequestError("empty_prompt", f"prompt must not be empty, got {' '.join(words)!r}")
    if i == len(atoms):
        raise RequestError("missing_seconds", f"expected a number of seconds after the prompt {' '.join(words)!r}")
    if not is_number(atoms[i]):
        raise RequestError("bad_seconds", f"seconds must be a number, got {atoms[i]!r}")
    rest = list(atoms[i + 1 :])
    flag = trailing_flag(rest) if len(rest) % 2 == 1 else None
    if flag is not None:
        rest = rest[:-1]
    if len(rest) % 2 == 1:
        last = rest[-1]
        if isinstance(last, str) and last in KEYS:
            raise RequestError("missing_value", f"key {last!r} has no value")
        raise RequestError("bad_args", f"expected key value pairs after the seconds, got {rest!r}")
    options: dict[str, Any] = {}
    for key, value in zip(rest[::2], rest[1::2], strict=True):
        if not isinstance(key, str) or key not in KEYS:
            raise RequestError("unknown_key", f"unknown key {key!r}; known keys: {', '.join(KEYS)}")
        options[key] = value
    seconds = atoms[i]
    if "bars" in options:
        options.setdefault("bpm", bpm)
        if seconds == 0:
            seconds = 1.0  # replaced by bars_to_seconds(bars, bpm)
    return Request.create(" ".join(words), seconds, **options), flag
