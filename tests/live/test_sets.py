"""Set files: the examples load, and broken files are rejected with their line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from sao_live.live.sets import SetError, load_set, with_bpm

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
