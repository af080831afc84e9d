"""Request: OSC atoms in, validated value out, and a cache key over what changes the audio."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from sao_live.request import PICKED_SEED_MAX, ModelInfo, Request, RequestError, parse_osc

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


def test_cache_key_needs_a_resolved_request():
    with pytest.raises(ValueError, match="resolved"):
        Request("kick", 1.0, 5).cache_key("fp")


def test_dict_round_trip():
    r = Request("kick", 1.0, 5, bars=1, bpm=128, priority="prerender", export=1).resolved(SMALL)
    assert Request.from_dict(r.to_dict()) == r
    with pytest.raises(RequestError, match="unknown request fields"):
        Request.from_dict({**r.to_dict(), "volume": 3})
