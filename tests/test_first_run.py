"""A newcomer's first commands, run as real processes: every mistake ends in a message that
names the next step and a non-zero exit code, within seconds, never a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SAO_LIVE = Path(sys.executable).with_name("sao-live")  # the console script pip installed


def sao(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(cwd / "cache"), **(env or {})}
    command = [str(SAO_LIVE)] if SAO_LIVE.exists() else [sys.executable, "-m", "sao_live.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_clean_failure(proc: subprocess.CompletedProcess, *phrases: str, code: int = 2) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr


# ---------------------------------------------------------------- serve: checked before anything starts


def test_serve_without_a_model_names_the_folder_and_the_next_step(tmp_path):
    started = time.monotonic()
    proc = sao("serve", "--osc-port", str(free_udp_port()), cwd=tmp_path)
    assert_clean_failure(proc, f"no model folder at {tmp_path / 'model'}", "--model tiny-random", "model/README.md")
    assert "settings" not in proc.stdout and "listening for OSC" not in proc.stderr  # nothing was started
    assert time.monotonic() - started < 20
    (tmp_path / "model").mkdir()
    proc = sao("serve", "--osc-port", str(free_udp_port()), cwd=tmp_path)
    assert_clean_failure(proc, f"{tmp_path / 'model'} has no model_config.json", "--model tiny-random")


@pytest.mark.parametrize(
    "export_dir, phrase",
    [
        ("/proc/x", "--export-dir /proc/x: cannot write there"),
        ("a-file", "is a file, not a folder"),
    ],
)
def test_serve_refuses_an_export_folder_it_cannot_use(tmp_path, export_dir, phrase):
    (tmp_path / "a-file").write_text("not a folder")
    proc = sao("serve", "--model", "tiny-random", "--osc-port", str(free_udp_port()), "--export-dir", export_dir,
               cwd=tmp_path)  # fmt: skip
    assert_clean_failure(proc, phrase)
    assert "worker started" not in proc.stderr


def test_serve_on_a_busy_port_suggests_another_before_loading(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        started = time.monotonic()
        proc = sao("serve", "--model", "tiny-random", "--osc-port", str(port), cwd=tmp_path)
    assert_clean_failure(proc, f"cannot listen for OSC on 127.0.0.1:{port}: the port is in use", "--osc-port ")
    assert "worker started" not in proc.stderr
    assert time.monotonic() - started < 10


def test_serve_with_a_pool_but_without_ray_says_how_to_get_it(tmp_path):
    """A machine without the cluster extra; Python's own way to make a module unimportable stands in for it."""
    code = "import sys; sys.modules['ray'] = None; from sao_live.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = subprocess.run([sys.executable, "-c", code, "serve", "--model", "tiny-random", "--pool", "ray",
                           "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--pool needs Ray, an optional extra: pip install -e '.[cluster]'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "cache").exists()


def test_serve_starts_quietly_and_prints_the_settings_in_effect(tmp_path):
    """A fresh cache (the tiny T5 is written), no sequencer: no progress bar, no ALSA line; -v after serve."""
    port = free_udp_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    command = [str(SAO_LIVE), "serve", "--model", "tiny-random", "--osc-port", str(port), "--audio-device", "none"]
    proc = subprocess.Popen([*command, "-v"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    lines = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (line := proc.stdout.readline()):
            lines.append(line)
            if "ready: tiny-random" in line:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    out = "".join(lines) + rest
    assert "ready: tiny-random" in out, out[-3000:]
    assert "int8 = auto (on for CPU in fast mode)" in out and "export = off (no --export-dir)" in out
    assert "Using selector" in out  # asyncio's debug line: -v after the command took effect
    assert "ALSA lib" not in out and "Writing model shards" not in out and "Traceback" not in out, out[-3000:]
    assert proc.returncode == 0


# ---------------------------------------------------------------- the hub out of reach


@pytest.fixture
def closed_hub():
    """An HF_ENDPOINT on this machine that refuses connections: a TCP port bound but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


@pytest.mark.parametrize("offline", ["0", "1"])
def test_hub_out_of_reach_fails_fast_with_the_documented_file(tmp_path, closed_hub, offline):
    env = dict(HF_ENDPOINT=closed_hub, HF_HUB_OFFLINE=offline, HF_HOME=str(tmp_path / "hf"))
    started = time.monotonic()
    proc = sao("generate", "kick", "--model", "stabilityai/stable-audio-open-small", cwd=tmp_path, env=env)
    elapsed = time.monotonic() - started
    why = "HF_HUB_OFFLINE is set" if offline == "1" else "no network: cannot reach 127.0.0.1"
    hint = "hf download stabilityai/stable-audio-open-small model_config.json model.ckpt --local-dir model/"
    assert_clean_failure(proc, why, hint, "--model tiny-random")
    assert "Retrying" not in proc.stderr
    assert elapsed < 30  # imports included; the retries alone took 25 s


def test_text_encoder_out_of_reach_fails_fast(tmp_path, closed_hub):
    env = dict(HF_ENDPOINT=closed_hub, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"))
    proc = sao("generate", "kick", "--model", "tiny-random", "--text-encoder", "google-t5/t5-base", cwd=tmp_path,
               env=env)  # fmt: skip
    assert_clean_failure(
        proc, "cannot download the text encoder google-t5/t5-base: no network", "--text-encoder t5-base/"
    )
    assert "Retrying" not in proc.stderr


# ---------------------------------------------------------------- generate: checked before generating


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["-o", "."], "-o . is a folder; give a file name"),
        (["-o", "clip.aiff"], "cannot write .aiff files here; the name should end in .wav, .flac, .ogg"),
        (["-o", "clip.wav", "--format", "flac"], "ends in .wav but --format is flac"),
        (["-o", "clip.ogg", "--bit-depth", "16"], "ogg is lossy and has no bit depth"),
        (["--init-audio", "missing.wav"], "missing.wav: no such file"),
    ],
)
def test_generate_refuses_before_generating(tmp_path, args, phrase):
    proc = sao("generate", "kick", "--model", "tiny-random", "--steps", "2", *args, cwd=tmp_path)
    assert_clean_failure(proc, phrase)
    assert "generating" not in proc.stderr and not (tmp_path / "cache").exists()  # no model was built


def test_generate_writes_the_format_the_name_asks_for(tmp_path):
    import soundfile

    wanted = ["clip.ogg"] + (["clip.mp3"] if "MP3" in soundfile.available_formats() else [])
    for name in wanted:
        proc = sao("generate", "kick", "--model", "tiny-random", "--steps", "2", "--seconds", "1", "-o", name,
                   cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert sf.info(tmp_path / name).format == name.rsplit(".", 1)[1].upper()


# ---------------------------------------------------------------- send without a daemon


def test_send_says_that_nothing_listens_and_exits_non_zero(tmp_path):
    port = free_udp_port()
    started = time.monotonic()
    proc = sao("send", "--wait", "--timeout", "4", "--port", str(port), "/sao/ping", cwd=tmp_path)
    assert_clean_failure(proc, f"nothing listens on 127.0.0.1:{port}: start the daemon with `sao-live serve`",
                         "no answer from", code=3)  # fmt: skip
    assert 4 <= time.monotonic() - started < 15  # it still waited the whole timeout
    proc = sao("send", "--port", str(port), "/sao/ping", cwd=tmp_path)
    assert_clean_failure(proc, "nothing listens on", "not sent", code=3)


def test_send_says_when_something_holds_the_port_but_does_not_answer(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        proc = sao("send", "--wait", "--timeout", "3", "--port", str(port), "/sao/ping", cwd=tmp_path)
    assert_clean_failure(proc, "though something holds that port", code=3)


# ---------------------------------------------------------------- the package


def test_license_is_an_spdx_string():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])
