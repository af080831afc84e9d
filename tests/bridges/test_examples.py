"""examples/osc_client.py against a real daemon; examples/midi_pads.py into a real JACK MIDI port."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from . import addresses as a


def run_client(daemon, *args, timeout=60, text=True) -> subprocess.CompletedProcess:
    """The client's run; `text=False` keeps its output's bytes (text mode turns each \\r into \\n)."""
    cmd = [sys.executable, str(a.OSC_CLIENT), *args, "--port", str(daemon.osc_port), "--timeout", "50"]
    return subprocess.run(cmd, capture_output=True, text=text, timeout=timeout)


def test_osc_client_prints_the_clip_path(bridge_daemon):
    token = uuid.uuid4().hex[:6]
    out = run_client(bridge_daemon, f"script snare {token}", "--seconds", "0.5", "--seed", "7", "--steps", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    path = Path(out.stdout.strip().splitlines()[-1])
    assert path.name == f"script-snare-{token}_0.5s_s7.wav" and path.is_file()
    assert "queued at position" in out.stdout and "done: 0.5 s, seed 7" in out.stdout
    again = run_client(bridge_daemon, f"script snare {token}", "--seconds", "0.5", "--seed", "7", "--steps", "2",
                       "--trigger")  # fmt: skip
    assert again.returncode == 0 and "(from the cache)" in again.stdout


def test_osc_client_bars_and_errors(bridge_daemon):
    out = run_client(bridge_daemon, "script loop", "--bars", "1", "--bpm", "240", "--seed", "3", "--steps", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert Path(out.stdout.strip().splitlines()[-1]).name == "script-loop_240bpm_1bar_s3.wav"
    bad = run_client(bridge_daemon, "too long", "--seconds", "99")
    assert bad.returncode == 1 and "error bad_seconds" in bad.stderr


README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_first_sound_examples_run_verbatim(bridge_daemon):
    """The example client commands of README's first-sound steps work against the tiny model, and each
    progress update is a line of its own when the output is not a terminal."""
    commands = [line.strip() for line in README.read_text().splitlines()
                if line.strip().startswith("python examples/osc_client.py")]  # fmt: skip
    assert len(commands) == 2, commands
    for command in commands:
        argv = shlex.split(command)
        assert argv[1] == "examples/osc_client.py"
        out = run_client(bridge_daemon, *argv[2:], text=False)
        stdout = out.stdout.decode()
        assert out.returncode == 0, command + "\n" + stdout + out.stderr.decode()
        assert "\r" not in stdout  # a log or a pipe shows carriage-return updates run together
        lines = stdout.rstrip("\n").split("\n")
        progress = [line for line in lines if "%" in line]
        assert progress and all(re.fullmatch(r" *\d+\.\d %", line) for line in progress), lines
        assert lines[-2].startswith("done: ") and Path(lines[-1]).is_file(), lines
    assert re.fullmatch(r"deep-techno-loop_128bpm_2bars_s\d+\.wav", Path(lines[-1]).name), lines


def test_osc_client_progress_rewrites_one_terminal_line_then_ends_it(bridge_daemon):
    main, child = os.openpty()  # a real terminal for the client's stdout
    try:
        cmd = [sys.executable, str(a.OSC_CLIENT), f"tty pad {uuid.uuid4().hex[:6]}", "--seconds", "0.5",
               "--steps", "4", "--port", str(bridge_daemon.osc_port), "--timeout", "50"]  # fmt: skip
        proc = subprocess.run(cmd, stdout=child, stderr=subprocess.PIPE, timeout=60)
        os.close(child)
        child = None
        text = b""
        while chunk := _read(main):
            text += chunk
    finally:
        os.close(main)
        if child is not None:
            os.close(child)
    assert proc.returncode == 0, text + proc.stderr
    out = text.decode()
    # Updates rewrite one line; the line is ended (the terminal shows \n as \r\n) before "done".
    assert re.search(r"(\r *\d+\.\d %){4}\r\ndone: 0\.5 s", out), out


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the other end is closed and everything has been read
        return b""


def test_osc_client_without_a_daemon_says_so(tmp_path):
    from sao_live.testing.daemon import free_port

    cmd = [sys.executable, str(a.OSC_CLIENT), "x", "--port", str(free_port())]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 3 and "is `sao-live serve` running?" in out.stdout


_JACK = shutil.which("jackd") and shutil.which("jack_wait")


@pytest.mark.skipif(not _JACK, reason="needs jackd2 (apt)")
def test_midi_pads_sends_notes_36_to_51(tmp_path):
    mido = pytest.importorskip("mido")
    pytest.importorskip("rtmidi")
    name = f"saoh5-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1",
               MIDO_BACKEND="mido.backends.rtmidi/UNIX_JACK")  # fmt: skip
    jackd = subprocess.Popen(["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        subprocess.run(["jack_wait", "-s", name, "-w", "-t", "10"], env=env, check=True, timeout=15,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        os.environ["JACK_DEFAULT_SERVER"], os.environ["JACK_NO_START_SERVER"] = name, "1"
        port = mido.Backend("mido.backends.rtmidi/UNIX_JACK").open_input("sao-live", virtual=True)
        try:
            cmd = [sys.executable, str(a.MIDI_PADS), "--pads", "1", "2", "16", "--interval", "0.05", "--hold", "0.02"]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stdout + out.stderr
            time.sleep(0.2)
            got = [(m.type, m.note) for m in port.iter_pending()]
        finally:
            port.close()
        assert got == [("note_on", 36), ("note_off", 36), ("note_on", 37), ("note_off", 37),
                       ("note_on", 51), ("note_off", 51)]  # fmt: skip
    finally:
        os.environ.pop("JACK_DEFAULT_SERVER", None)
        os.environ.pop("JACK_NO_START_SERVER", None)
        jackd.terminate()
        jackd.wait(10)


def test_midi_pads_rejects_pads_outside_1_to_16():
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("midi_pads", a.MIDI_PADS)
    mod = module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert [mod.note_for(p) for p in (1, 16)] == [36, 51]
    with pytest.raises(ValueError, match="pad must be in 1..16, got 17"):
        mod.note_for(17)
