"""Set files: the examples load; broken files are rejected with their line and reason, and what an
OSC client hears of the reason shows nothing read from the file. In process: real files, no daemon."""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import time
from pathlib import Path

import pytest

from sao_live.live.sets import MAX_SET_BYTES, SetError, _Lines, load_set, parse_set, set_file, with_bpm

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sets"

GOOD = """name = "t"
bpm = 100
[defaults]
seconds = 1.0
[[banks]]
[[banks.pads]]
prompt = "kick"
[[banks.pads]]
prompt = "loop"
bars = 2
mode = "loop"
"""


@pytest.mark.parametrize("name", ["one-shots.toml", "loops-120bpm.toml"])
def test_example_sets_load(name):
    live = load_set(EXAMPLES / name)
    assert live.pads and all(p.prompt for p in live.pads)
    seeds = [(p.bank, s) for p in live.pads for s in p.seeds]
    assert len(seeds) == len(set(seeds))


def test_loops_get_bars_at_the_set_tempo_and_bpm_in_the_prompt(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(GOOD)
    live = load_set(f)
    kick, loop = live.banks[0]
    assert (kick.note, loop.note) == (36, 37)
    r = loop.request(loop.seeds[0], live.bpm)
    assert r.prompt == "loop 100 BPM" and r.bars == 2 and r.seconds == pytest.approx(4.8)
    assert with_bpm("house 128 BPM", 120) == "house 128 BPM"


@pytest.mark.parametrize(
    "replace, line, message",
    [
        ('bars = 2\nmode = "loop"', 11, "mode: must be oneshot | loop | gate, got 'loup'"),
        ("bpm = 100", 2, "bpm: must be a number in [20, 400], got 1000"),
        ('prompt = "kick"', 7, "prompt must not be empty"),
        ("[defaults]", 3, "not valid TOML"),
        ('kick"', 8, "seconds: must be a number of seconds > 0, got -1"),
        ("[[banks]]", 8, "seed: seed must be in [0, 2147483647], got -1"),  # -1 (random) is for requests only
    ],
)
def test_a_broken_set_names_its_line(tmp_path, replace, line, message):
    broken = {
        'bars = 2\nmode = "loop"': 'bars = 2\nmode = "loup"',
        "bpm = 100": "bpm = 1000",
        'prompt = "kick"': 'prompt = "  "',
        "[defaults]": "[defaults",
        'kick"': 'kick"\nseconds = -1',
        "[[banks]]": '[[banks]]\n[[banks.pads]]\nprompt = "hat"\nseed = -1',
    }[replace]
    f = tmp_path / "broken.toml"
    f.write_text(GOOD.replace(replace, broken))
    with pytest.raises(SetError) as err:
        load_set(f)
    assert f"{f}:{line}:" in str(err.value)
    assert message in str(err.value)


def test_unknown_pad_key_and_duplicate_notes(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(GOOD.replace('prompt = "kick"', 'prompt = "kick"\nvelocity = 3'))
    with pytest.raises(SetError, match=r":8: banks\[0\].pads\[0\].velocity: unknown key"):
        load_set(f)
    f.write_text(GOOD.replace('prompt = "kick"', 'prompt = "kick"\nnote = 37'))
    with pytest.raises(SetError, match="note 37 is used by two pads"):
        load_set(f)


@pytest.mark.parametrize(
    "replace, broken, line",
    [
        ("bpm = 100", "bpm = 100\ncc = 1", 3),
        (GOOD, "bpm = 100\nbanks = [1]\n", 2),  # the whole file
        (GOOD, "bpm = 100\n[[banks]]\npads = [1]\n", 3),
        (GOOD, 'defaults = "fast"\n[[banks]]\n[[banks.pads]]\nprompt = "x"\nseconds = 1\n', 1),
        (GOOD, 'bpm = 100\n[[banks]]\npads = "kick"\n', 3),
        ("[[banks]]", "[[banks]]\nname = 7", 6),
        ("bpm = 100", "bpm = 100\n[cc]\n20 = 5", 4),
        ("bpm = 100", 'bpm = 100\n[cc]\n20 = ["stop_all"]', 4),
        ("bpm = 100", 'bpm = 100\nquantize = ["bar"]', 3),
        ("bpm = 100", "bpm = 100\ntempo_source = {a = 1}", 3),
        ('mode = "loop"', "mode = []", 11),
        ('mode = "loop"', "mode = {loop = 1}", 11),
        ('mode = "loop"', 'mode = "loop"\nquantize = {}', 12),
        ('prompt = "kick"', "prompt = 3", 7),
        ('prompt = "kick"', 'prompt = "kick"\nnegative = [1]', 8),
        ('prompt = "kick"', 'prompt = "kick"\nsampler = 1', 8),
        ("bars = 2", 'bars = "2"', 10),
        ('prompt = "kick"', 'prompt = "kick"\nseed = "x"\nvariations = 2', 8),
        ('prompt = "kick"', 'prompt = "kick"\nseeds = [true]', 8),
        ('prompt = "kick"', 'prompt = "kick"\nseeds = "1"', 8),
        ('prompt = "kick"', 'prompt = "kick"\nappend_bpm = "no"', 8),
        ('prompt = "kick"', 'prompt = "kick"\nseeds = [' + ", ".join(map(str, range(40))) + "]", 8),
        ("seconds = 1.0", "seconds = 1.0\nmode = 3", 5),  # in [defaults]: its line there
        ("seconds = 1.0", "seconds = [1.0]", 4),
    ],
)
def test_a_value_of_the_wrong_type_is_a_set_error_with_its_line(tmp_path, replace, broken, line):
    f = tmp_path / "broken.toml"
    f.write_text(GOOD.replace(replace, broken, 1))
    with pytest.raises(SetError) as err:
        load_set(f)
    assert str(err.value).startswith(f"{f}:{line}: "), str(err.value)
    assert err.value.code == "bad_set"


ODD_VALUES = [0, -1, 1.5, True, "x", "", [1], ["x", 2], [], {}, {"a": 1}, [{"prompt": 1}], datetime.date(2026, 1, 1)]


def _good_data() -> dict:
    return {
        "name": "t",
        "bpm": 100,
        "quantize": "bar",
        "tempo_source": "fixed",
        "model": "tiny-random",
        "export_dir": "out",
        "defaults": {"seconds": 1.0, "mode": "oneshot", "variations": 2},
        "cc": {"20": "regenerate"},
        "banks": [
            {
                "name": "b",
                "pads": [
                    {"prompt": "kick", "note": 36, "seed": 5, "gain": 1.0, "choke": 1, "steps": 8, "cfg": 3.0},
                    {"prompt": "loop", "bars": 2, "mode": "loop", "seeds": [1, 2], "append_bpm": False},
                    {"prompt": "hat", "negative": "noise", "sampler": "euler", "quantize": "beat"},
                ],
            }
        ],
    }


def _paths(value, path=()):
    """Every (path, value) inside nested tables and arrays, the containers included."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _paths(child, (*path, key))


def test_no_value_of_any_type_anywhere_raises_anything_but_a_set_error():
    """Every key and array element of a good set, replaced by values of every TOML type: parse_set
    answers each with a LiveSet or a SetError, never another exception."""
    parse_set(_good_data(), Path("t.toml"), _Lines(""))
    tried = 0
    for path, _ in list(_paths(_good_data()))[1:]:
        for odd in ODD_VALUES:
            data = _good_data()
            node = data
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = odd
            with contextlib.suppress(SetError):
                parse_set(data, Path("t.toml"), _Lines(""))
            tried += 1
    assert tried > 400


def test_a_public_message_shows_nothing_read_from_the_file(tmp_path):
    """Over OSC the sender may not own the file: the public message names the line and what the
    schema expects, never a value or an unknown key's name; the full message (the log) has both."""
    cases = {
        '[build-system]\nrequires = ["s3cr3t-value"]\n': ("build-system", "s3cr3t-value"),
        GOOD.replace('mode = "loop"', 'mode = "s3cr3t-mode"'): ("s3cr3t-mode",),
        GOOD.replace("bpm = 100", "bpm = 31337"): ("31337",),
        GOOD.replace('prompt = "kick"', 'prompt = "kick"\ns3cr3t_key = 1'): ("s3cr3t_key",),
        GOOD.replace("[defaults]", "[cc]\ns3cr3t = 1\n[defaults]"): ("s3cr3t",),
        GOOD.replace("bpm = 100", 'bpm = 100\npassword = "hunter2"'): ("password", "hunter2"),
        'root = "x"\nroot = "y"\n': ("root",),  # tomllib's own message quotes the key
        GOOD.replace('prompt = "kick"', 'prompt = "kick"\nseed = 123456789012'): ("123456789012",),
    }
    for text, secrets in cases.items():
        f = tmp_path / "leaky.toml"
        f.write_text(text)
        with pytest.raises(SetError) as err:
            load_set(f, shown="leaky.toml")
        public = err.value.public
        assert public.startswith("leaky.toml:") and re.match(r"leaky\.toml:\d+: ", public), public
        assert secrets[0] in str(err.value), (secrets[0], str(err.value))  # the log has it
        for secret in secrets:
            assert secret not in public, (secret, public)


@pytest.mark.parametrize("name", ["live-set", "live-set.toml", "Live Set 2", "drums_v1.2", "Schöne Töne"])
def test_a_set_name_is_a_file_in_the_sets_folder(tmp_path, name):
    path = set_file(tmp_path, name)
    assert path.parent == tmp_path and path.name.endswith(".toml") and path.stem == name.removesuffix(".toml")


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../x", "..", "a/../../b", ".hidden", "a\\b", "x\x00y", "\x00", "", "a..b", "~root", "a" * 101],
)
def test_a_name_that_could_leave_the_sets_folder_is_refused(tmp_path, name):
    with pytest.raises(SetError) as err:
        set_file(tmp_path, name)
    assert err.value.code == "bad_set_name" and "letters, digits" in err.value.public


def test_only_a_small_regular_utf8_file_is_read(tmp_path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(SetError, match="not a regular file"):
        load_set(fifo)
    assert time.monotonic() - started < 1.0
    for device in ("/dev/zero", "/dev/null", tmp_path):
        with pytest.raises(SetError, match="not a regular file"):
            load_set(device)
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * (MAX_SET_BYTES // 10 + 1))
    with pytest.raises(SetError, match=f"a set file has at most {MAX_SET_BYTES}"):
        load_set(big)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(GOOD.replace("kick", "k\xe4ck").encode("latin-1"))
    with pytest.raises(SetError, match="not UTF-8 text"):
        load_set(latin)
    with pytest.raises(SetError) as err:
        load_set(tmp_path / "missing.toml", shown="missing.toml")
    assert err.value.code == "no_file" and str(tmp_path) in err.value.public
