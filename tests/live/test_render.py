"""`sao-live render FILE` as a subprocess: every take of a set lands in the cache, with progress shown."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios

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
    # Not a terminal: a line per update, on stderr with the log.
    assert "\nrendering render-set: 0/4 takes\n" in done.stderr and "\nrendering render-set: 4/4 takes\n" in done.stderr
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


def _screen(raw: str) -> list[str]:
    """The lines a terminal shows for `raw`: \\r returns to the line's start, later text overwrites."""
    lines, col = [""], 0
    for ch in raw:
        if ch == "\n":
            lines.append("")
            col = 0
        elif ch == "\r":
            col = 0
        else:
            line = lines[-1].ljust(col)
            lines[-1] = line[:col] + ch + line[col + 1 :]
            col += 1
    return [line.rstrip() for line in lines]


def test_render_progress_in_a_terminal_keeps_log_lines_whole(tmp_path, tiny_t5):
    """In a terminal the progress bar and the log share the screen: each log line is a line of its own."""
    set_file = tmp_path / "show.toml"
    set_file.write_text(SET)
    main, child = os.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # a 100-column terminal
    env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
               XDG_CACHE_HOME=str(tmp_path / "xdg-cache"))  # fmt: skip
    cmd = [sys.executable, "-m", "sao_live.cli", "render", str(set_file), "--text-encoder", str(tiny_t5),
           "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    try:
        proc = subprocess.Popen(cmd, stdout=child, stderr=child, env=env)
        os.close(child)
        raw = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the command has ended and everything has been read
                break
            if not chunk:
                break
            raw += chunk
        assert proc.wait(180) == 0, raw.decode(errors="replace")
    finally:
        os.close(main)
    screen = _screen(raw.decode(errors="replace"))
    jobs = [line for line in screen if " job " in line]
    assert len(jobs) == 4, screen
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ sao_live\.daemon\.service: job \d", j) for j in jobs), jobs
    assert not [line for line in screen if "rendering" in line and "sao_live" in line], screen
    assert any(line.startswith("rendering render-set: 100%") and "4/4" in line for line in screen), screen
