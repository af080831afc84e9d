"""`sao-live render FILE` as a subprocess: every take of a set lands in the cache, with progress shown."""

from __future__ import annotations

import os
import subprocess
import sys

SET = """name = "render-set"
model = "tiny-random"
bpm = 100
[defaults]
seconds = 0.5
steps = 2
[[banks]]
[[banks.pads]]
prompt = "kick"
[[banks.pads]]
prompt = "groove"
bars = 1
mode = "loop"
[[banks.pads]]
prompt = "hat"
variations = 2
"""


def sao_live(tmp_path, *args, timeout=180):
    env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
               XDG_CACHE_HOME=str(tmp_path / "xdg-cache"))  # fmt: skip
    return subprocess.run([sys.executable, "-m", "sao_live.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip


def test_render_puts_every_take_in_the_cache(tmp_path, tiny_t5):
    set_file = tmp_path / "show.toml"
    set_file.write_text(SET)
    cache = tmp_path / "cache"
    done = sao_live(tmp_path, "render", str(set_file), "--text-encoder", str(tiny_t5), "--device", "cpu",
                    "--cache-dir", str(cache))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rendering render-set: 0/4 takes" in done.stdout and "rendering render-set: 4/4 takes\n" in done.stdout
    assert f"every pad is in the cache ({cache})" in done.stderr
    listed = sao_live(tmp_path, "cache", "ls", "--cache-dir", str(cache))
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    prompts = sorted(row.rsplit("  ", 1)[-1] for row in rows)
    assert prompts == ["'groove 100 BPM'", "'hat'", "'hat'", "'kick'"], rows  # 2 variations of hat, none twice
    seconds = sorted(float(row.split()[1]) for row in rows)
    assert seconds[-1] == 2.4  # 1 bar at 100 bpm
    seeds = [row.split("seed")[1].split()[0] for row in rows if row.endswith("'hat'")]
    assert len(set(seeds)) == 2


def test_render_rejects_a_broken_set_with_its_line(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text(SET.replace('mode = "loop"', 'mode = "lop"'))
    line = next(i for i, t in enumerate(broken.read_text().splitlines(), 1) if '"lop"' in t)
    done = sao_live(tmp_path, "render", str(broken), "--cache-dir", str(tmp_path / "cache"), timeout=60)
    assert done.returncode == 2
    assert f"{broken}:{line}: banks[0].pads[1].mode: must be oneshot | loop | gate, got 'lop'" in done.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.wav"))
