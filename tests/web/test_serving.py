"""`sao-live serve` and its page: a busy port stops the start at once, `--no-web` serves nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

from sao_live.testing.daemon import DaemonProcess, free_port


def test_a_busy_http_port_stops_serve_at_once_and_names_a_free_one(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        cmd = [sys.executable, "-m", "sao_live.cli", "serve", "--model", "tiny-random", "--device", "cpu"]
        cmd += ["--osc-port", str(free_port()), "--http-port", str(port), "--cache-dir", str(tmp_path / "cache")]
        env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_CONFIG_HOME=str(tmp_path / "cfg"))
        started = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot listen for the web page on 127.0.0.1:{port}: the port is in use" in done.stderr
    assert "--http-port " in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 20


def test_no_web_serves_no_page(tmp_path, tiny_t5):
    daemon = DaemonProcess(tmp_path, tiny_t5, config=dict(audio_device="none", midi_in="none"), args=("--no-web",))
    daemon.start()
    try:
        try:
            urllib.request.urlopen(daemon.web_url, timeout=5)
            raise AssertionError("a page was served with --no-web")
        except OSError as err:
            assert "Connection refused" in str(err), err
        assert "web page:" not in daemon.log()
        with daemon.client() as osc:  # OSC still works
            assert osc.request("/sao/gen", 1, "no web", 0.25, "steps", 1)[0] == "/sao/done"
    finally:
        assert daemon.stop() == 0
