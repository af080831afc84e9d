"""Request: OSC atoms in, validated value out, and a cache key over what changes the audio."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from sao_live.audio import write_audio
from sao_live.request import (
    EXPORT_FORMATS,
    PICKED_SEED_MAX,
    SEED_MAX,
    ModelInfo,
    Request,
    Requester,
    RequestError,
    is_number,
    parse_osc,
)

SMALL = ModelInfo("tiny-random", "fp0", 524288 / 44100, 44100, "rf", 8, 1.0, "pingpong", ("pingpong", "euler", "dpmpp"))


def test_atoms_to_request_with_keys():
    r, flag = parse_osc(["kick drum", 0.75, "seed", 42, "steps", 4.0, "cfg", 2, "negative", "noise"])
    assert (r.prompt, r.seconds, r.seed, r.steps, r.cfg, r.negative) == ("kick drum", 0.75, 42, 4, 2.0, "noise")
    assert flag is None and not r.picked_seed


def test_prompt_split_over_atoms_is_joined():
    # Max sends a message box's words one atom each; the first number is the seconds.
    r, _ = parse_osc(["warm", "arpeggios", "on", "house", "beats", 2, "seed", 3])
    assert r.prompt == "warm arpeggios on house beats" and r.seconds == 2.0


def test_whitespace_and_control_characters_are_normalised():
    assert Request("  kick\t\x00 drum\n", 1.0, 0).prompt == "kick drum"


def test_float32_seconds_round_to_their_decimal():
    # 0.1 arrives as the float32 0.10000000149011612 and must make the same clip as 0.1.
    assert Request("kick", 0.10000000149011612, 0).seconds == 0.1


def test_ints_and_floats_are_interchangeable():
    a, _ = parse_osc(["kick", 1, "seed", 7.0, "steps", 4])
    b, _ = parse_osc(["kick", 1.0, "seed", 7, "steps", 4.0])
    assert a == b


@pytest.mark.parametrize(("atoms", "flag"), [(["kick", 1.0, 1.0], 1), (["kick", 1.0, "seed", 3, 0], 0)])
def test_touchosc_trailing_press_release(atoms, flag):
    r, got = parse_osc(atoms)
    assert got == flag and r.prompt == "kick"


def test_missing_seed_is_picked_and_recorded():
    r, _ = parse_osc(["kick", 1.0])
    assert r.picked_seed and 0 <= r.seed <= PICKED_SEED_MAX
    r2, _ = parse_osc(["kick", 1.0, "seed", -1])
    assert r2.picked_seed


def test_bars_and_bpm_give_seconds_in_four_four():
    r, _ = parse_osc(["techno loop", 0, "bars", 1, "bpm", 128])
    assert r.seconds == round(240 / 128, 4) and r.bars == 1 and r.bpm == 128
    r, _ = parse_osc(["techno loop", 0, "bars", 2], bpm=100.0)  # the daemon's bpm
    assert r.seconds == 4.8


@pytest.mark.parametrize(
    ("atoms", "code", "phrase"),
    [
        ([], "missing_prompt", "expected <id> <prompt> <seconds>"),
        ([1.0], "missing_prompt", "expected <id> <prompt>"),
        (["", 1.0], "empty_prompt", "must not be empty"),
        (["  ", 1.0], "empty_prompt", "must not be empty"),
        (["kick"], "missing_seconds", "after the prompt"),
        (["kick", b"\x01"], "bad_seconds", "must be a number"),
        (["kick", math.nan], "bad_seconds", "finite"),
        (["kick", math.inf], "bad_seconds", "finite"),
        (["x" * 1001, 1.0], "prompt_too_long", "got 1001"),
        (["kick", 1.0, "seed", -5], "bad_seed", "seed must be in [0, 2147483647] or -1 (random), got -5"),
        (["kick", 1.0, "seed", 2**31], "bad_seed", "got 2147483648"),
        (["kick", 1.0, "seed", 2.5], "bad_seed", "whole number"),
        (["kick", 1.0, "seed", 2**40], "bad_seed", "got 1099511627776"),
        (["kick", 1.0, "seed", "abc"], "bad_seed", "must be a number, got 'abc'"),
        (["kick", 1.0, "steps", 0], "bad_steps", "[1, 1000]"),
        (["kick", 1.0, "steps", 10**9], "bad_steps", "got 1000000000"),
        (["kick", 1.0, "cfg", 1e6], "bad_cfg", "[0, 50]"),
        (["kick", 1.0, "cfg", math.nan], "bad_cfg", "finite"),
        (["kick", 1.0, "bars", 0], "bad_bars", "(0, 256]"),
        (["kick", 1.0, "bars", 1, "bpm", 5], "bad_bpm", "[20, 400]"),
        (["kick", 1.0, "variations", 100], "bad_variations", "[1, 16]"),
        (["kick", 1.0, "priority", "urgent"], "bad_priority", "'urgent'"),
        (["kick", 1.0, "export", "mp3"], "bad_export", "'mp3'"),
        (["kick", 1.0, "negative", 3], "bad_negative", "must be a string"),
        (["kick", 1.0, "sampler", 3], "bad_sampler", "must be a string"),
        (["kick", 1.0, "bogus", 3], "unknown_key", "unknown key 'bogus'"),
        (["kick", 1.0, "seed"], "missing_value", "'seed' has no value"),
        (["kick", 1.0, 2.0, 3.0], "unknown_key", "unknown key 2.0"),
    ],
)
def test_bad_atoms_raise_a_coded_error(atoms, code, phrase):
    with pytest.raises(RequestError) as err:
        parse_osc(atoms)
    assert err.value.code == code
    assert phrase in str(err.value)


@pytest.mark.parametrize("seconds", [-1.0, 0, 0.00001, 11.9, 100])
def test_every_length_outside_the_window_gets_the_same_message(seconds):
    r, _ = parse_osc(["kick", seconds])
    with pytest.raises(RequestError) as err:
        r.resolved(SMALL)
    assert err.value.code == "bad_seconds"
    assert str(err.value) == f"seconds must be in (0, 11.89] for tiny-random, got {r.seconds:g}"


def test_model_checks_window_and_sampler():
    assert Request("kick", 11.88, 0).resolved(SMALL).seconds == 11.88
    with pytest.raises(RequestError, match=r"\(0, 11.89\] for tiny-random, got 8 bars at 120 bpm = 16 s$"):
        Request("kick", 1.0, 0, bars=8, bpm=120).resolved(SMALL)
    with pytest.raises(RequestError, match="sampler must be one of pingpong, euler, dpmpp, got 'dpmpp-3m-sde'"):
        Request("kick", 1.0, 0, sampler="dpmpp-3m-sde").resolved(SMALL)


def test_resolved_fills_model_defaults_then_daemon_defaults():
    r = Request("kick", 1.0, 0).resolved(SMALL)
    assert (r.steps, r.cfg, r.sampler) == (8, 1.0, "pingpong")
    r = Request("kick", 1.0, 0).resolved(SMALL, {"steps": 3, "cfg": 0.0, "sampler": "euler"})
    assert (r.steps, r.cfg, r.sampler) == (3, 0.0, "euler")


def test_what_the_request_says_wins_over_every_default():
    # Values unlike both the model card's (8, 1.0, pingpong) and the daemon's defaults.
    explicit = Request("kick", 1.0, 0, steps=5, cfg=2.5, sampler="dpmpp")
    for defaults in (None, {"steps": 3, "cfg": 7.0, "sampler": "euler"}):
        r = explicit.resolved(SMALL, defaults)
        assert (r.steps, r.cfg, r.sampler) == (5, 2.5, "dpmpp")
    assert Request("kick", 1.0, 0, cfg=0).resolved(SMALL, {"cfg": 7.0}).cfg == 0.0  # 0 is a value, not "unset"


def _code(make) -> str:
    with pytest.raises(RequestError) as err:
        make()
    return err.value.code


# (field, the last value accepted, the first refused just outside it, code); bars and bpm come together.
BOUNDS = [
    ("steps", 1, 0, "bad_steps"),
    ("steps", 1000, 1001, "bad_steps"),
    ("variations", 1, 0, "bad_variations"),
    ("variations", 16, 17, "bad_variations"),
    ("seed", 0, -1, "bad_seed"),
    ("seed", 2**31 - 1, 2**31, "bad_seed"),
    ("cfg", 0, -0.001, "bad_cfg"),
    ("cfg", 50, 50.001, "bad_cfg"),
    ("bpm", 20, 19.99, "bad_bpm"),
    ("bpm", 400, 400.01, "bad_bpm"),
    ("bars", 256, 256.01, "bad_bars"),
]


@pytest.mark.parametrize(("name", "inside", "outside", "code"), BOUNDS)
def test_each_range_is_closed_where_it_says(name, inside, outside, code):
    base = {"prompt": "kick", "seconds": 1.0, "seed": 0}
    if name in ("bars", "bpm"):
        base.update(bars=1, bpm=120)
    assert getattr(Request.from_dict({**base, name: inside}), name) == inside
    assert _code(lambda: Request.from_dict({**base, name: outside})) == code


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"steps": 2.5}, "bad_steps"),
        ({"variations": 1.5}, "bad_variations"),
        ({"seed": True}, "bad_seed"),
        ({"bars": 1}, "bad_bars"),  # bars without bpm
        ({"bpm": 120}, "bad_bars"),  # bpm without bars
        ({"priority": 7}, "bad_priority"),
        ({"priority": 1.5}, "bad_priority"),
        ({"export": 2}, "bad_export"),
        ({"export": "mp3"}, "bad_export"),
        ({"prompt": 5}, "bad_prompt"),
        ({"prompt": "\t\n"}, "empty_prompt"),
        ({"prompt": "x" * 1001}, "prompt_too_long"),
        ({"negative": "x" * 1001}, "prompt_too_long"),
        ({"sampler": 3}, "bad_sampler"),
        ({"negative": 3}, "bad_negative"),
        ({"volume": 3}, "unknown_key"),
    ],
)
def test_refused_fields_carry_their_code(fields, code):
    assert _code(lambda: Request.from_dict({"prompt": "kick", "seconds": 1.0, "seed": 0, **fields})) == code


def test_whole_numbers_arrive_as_int():
    r = Request("kick", 1.0, 7.0, steps=4.0, variations=2.0)
    assert (r.seed, r.steps, r.variations) == (7, 4, 2)
    assert all(type(v) is int for v in (r.seed, r.steps, r.variations))
    assert Request("kick", "1.5", "3").seconds == 1.5  # numeric strings (from JSON clients) are read


@pytest.mark.parametrize(
    ("given", "priority"), [("now", 0), ("prerender", 1), ("refill", 2), (0, 0), (1, 1), (2, 2), (2.0, 2)]
)
def test_priorities_by_name_or_number(given, priority):
    assert Request("kick", 1.0, 0, priority=given).priority == priority


@pytest.mark.parametrize(
    ("given", "export"),
    [(None, None), (0, "none"), (1, "default"), (False, "none"), (True, "default"), ("none", "none"),
     ("default", "default"), ("flac", "flac"), ("wav16", "wav16")],
)  # fmt: skip
def test_export_flags_and_formats(given, export):
    assert Request("kick", 1.0, 0, export=given).export == export


def test_model_dependent_errors_carry_their_code():
    assert _code(lambda: Request("kick", 1.0, 0, sampler="dpmpp-3m-sde").resolved(SMALL)) == "bad_sampler"
    window = round(SMALL.window_seconds, 4) - 0.0001  # seconds are kept to 0.1 ms
    assert _code(lambda: Request("kick", window + 0.001, 0).resolved(SMALL)) == "bad_seconds"
    assert Request("kick", window, 0).resolved(SMALL).seconds == window  # the whole window is allowed
    assert _code(lambda: parse_osc(["kick", 1.0, "seed", 1, "steps"])) == "missing_value"
    assert _code(lambda: parse_osc(["kick", 1.0, "seed", 1, 5])) == "bad_args"
    assert _code(lambda: parse_osc(["kick", "drum"])) == "missing_seconds"
    assert _code(lambda: parse_osc(["kick", 1.0, "seed", 1, "steps", 2, 3])) == "bad_args"


def test_cache_key_changes_with_everything_that_changes_the_audio():
    base = Request("kick", 1.0, 5).resolved(SMALL)
    key = base.cache_key("fp0")
    assert key == Request("kick", 1.0, 5, steps=8).resolved(SMALL).cache_key("fp0")  # the default, spelled out
    assert key == replace(base, priority=2, export="flac", variations=3).cache_key("fp0")  # what is done with it
    changed = [
        base.cache_key("fp1"),
        replace(base, prompt="snare").cache_key("fp0"),
        replace(base, negative="noise").cache_key("fp0"),
        replace(base, seconds=1.5).cache_key("fp0"),
        replace(base, seed=6).cache_key("fp0"),
        replace(base, steps=9).cache_key("fp0"),
        replace(base, cfg=2.0).cache_key("fp0"),
        replace(base, sampler="euler").cache_key("fp0"),
        replace(base, bars=0.5, bpm=120.0).cache_key("fp0"),  # the same length as a loop
    ]
    assert len({key, *changed}) == len(changed) + 1


def test_family_key_ignores_only_the_seed():
    a = Request("kick", 1.0, 5).resolved(SMALL)
    assert a.family_key("fp") == replace(a, seed=9).family_key("fp")
    assert a.family_key("fp") != replace(a, seconds=2.0).family_key("fp")
    assert a.family_key("fp") != a.family_key("fp2")  # another model's clips are another family
    assert a.family_key("fp") != a.cache_key("fp")


def test_stored_cache_keys_stay_the_same():
    # Pinned on purpose: clips are stored under these keys, so a change here (the fields, their
    # JSON form, the hash or its length) silently invalidates every user's cache. When the audio
    # of an unchanged request really changes, bump POST_VERSION and update the values.
    r = Request("kick drum", 1.5, 42, negative="noise").resolved(SMALL)
    blob = (
        '{"cfg":1.0,"model":"fp0","negative":"noise","post":"oneshot","prompt":"kick drum",'
        '"sampler":"pingpong","seconds":1.5,"seed":42,"steps":8,"v":1}'
    )
    assert r.cache_key("fp0") == hashlib.sha256(blob.encode()).hexdigest()[:32] == "c509f33ca0b77ea65b8c88a050807d5d"
    assert r.family_key("fp0") == "6948c2184b689a516cfca1c66386f192"
    assert replace(r, bars=1.0, bpm=160.0).cache_key("fp0") == "e40e2920b19de0d2b7c171e8552445f4"  # "post": "loop"


def test_cache_key_needs_a_resolved_request():
    with pytest.raises(ValueError, match="resolved"):
        Request("kick", 1.0, 5).cache_key("fp")


def test_dict_round_trip():
    r = Request("kick", 1.0, 5, bars=1, bpm=128, priority="prerender", export=1).resolved(SMALL)
    assert Request.from_dict(r.to_dict()) == r
    with pytest.raises(RequestError, match="unknown request fields"):
        Request.from_dict({**r.to_dict(), "volume": 3})


def test_a_request_error_is_its_message_and_its_code():
    err = RequestError("bad_thing", "what went wrong")
    assert str(err) == "what went wrong" and err.code == "bad_thing"


def test_model_info_from_json():
    d = {**dataclasses.asdict(SMALL), "samplers": list(SMALL.samplers)}  # JSON has lists, not tuples
    info = ModelInfo.from_dict(d)
    assert info == SMALL and isinstance(info.samplers, tuple)


def test_requests_are_values():
    r = Request("kick", 1.0, 0)
    for frozen in (r, SMALL):
        with pytest.raises(dataclasses.FrozenInstanceError):
            frozen.seed = 1
    assert (r.negative, r.variations, r.priority, r.export, r.picked_seed) == ("", 1, 0, None, False)
    picked = Request.create("kick", 1.0)
    assert picked.picked_seed and picked == Request("kick", 1.0, picked.seed)  # who chose the seed is no part of it


def test_picked_seeds_survive_float32_clients():
    state = random.getstate()
    try:
        random.seed(11)
        seeds = [Request.create("kick", 1.0, -1).seed for _ in range(300)]
    finally:
        random.setstate(state)
    assert all(0 <= s <= PICKED_SEED_MAX for s in seeds) and max(seeds) > 2**23  # 24 bits of them
    assert float(np.float32(PICKED_SEED_MAX)) == PICKED_SEED_MAX  # Pd sends every number as a float32


def test_numbers_are_not_bools():
    assert is_number(3) and is_number(2.5) and not is_number(True) and not is_number("3")
    assert _code(lambda: Request("kick", 1.0, 0, priority=True)) == "bad_priority"


def test_values_are_normalised_and_rounded():
    r = Request("kick", 1.00004, 0, negative="  hiss\t\x00 noise ", cfg=2.00004)
    assert (r.seconds, r.negative, r.cfg) == (1.0, "hiss noise", 2.0)
    loop = Request("kick", 1.0, 0, bars="2", bpm=128.0004)
    assert (loop.bars, loop.bpm) == (2.0, 128.0) and isinstance(loop.bars, float)
    assert Request("x" * 1000, 1.0, 0).prompt == "x" * 1000  # the limit itself is allowed


def test_parse_osc_and_the_default_tempo():
    atoms = ["loop", 0, "bars", 1, "seed", 3]
    assert parse_osc(atoms)[0].seconds == 2.0  # 1 bar at the default 120 bpm
    assert parse_osc(atoms, bpm=60.0)[0].seconds == 4.0


def test_variations_step_the_seed_and_wrap():
    r = Request("kick", 1.0, 5, variations=4)
    assert [(v.seed, v.variations) for v in map(r.variation, range(3))] == [(5, 1), (6, 1), (7, 1)]
    assert Request("kick", 1.0, SEED_MAX).variation(2).seed == 1  # wraps within the int32 seeds


@pytest.mark.parametrize("missing", ["steps", "cfg", "sampler"])
def test_cache_key_needs_every_resolved_field(missing):
    r = replace(Request("kick", 1.0, 5).resolved(SMALL), **{missing: None})
    with pytest.raises(ValueError, match="resolved"):
        r.cache_key("fp")


def test_a_word_after_the_pairs_is_not_a_missing_value():
    assert _code(lambda: parse_osc(["kick", 1.0, "seed", 1, "bogus"])) == "bad_args"


@pytest.mark.parametrize(
    ("name", "fmt", "subtype"),
    [("wav", "WAV", "PCM_24"), ("wav16", "WAV", "PCM_16"), ("wav32f", "WAV", "FLOAT"), ("flac", "FLAC", "PCM_24")],
)
def test_export_names_mean_their_file_format(tmp_path, name, fmt, subtype):
    assert Request("kick", 1.0, 0, export=name).export == name
    path = tmp_path / f"x.{EXPORT_FORMATS[name][0]}"
    write_audio(path, np.zeros((2, 64), np.float32), 44100, *EXPORT_FORMATS[name])
    assert (sf.info(path).format, sf.info(path).subtype) == (fmt, subtype)


def test_a_requester_wants_only_an_answer_unless_it_asks_for_more():
    # the daemon's own requests (a set's pre-render) and journal entries from before `play` rely on it
    r = Requester("127.0.0.1", 9322, 1)
    assert (r.priority, r.export, r.play) == (0, None, 0)  # now, no export, no playing
