"""The crash journal and merging under stress: kill -9 between indexing and export, a burst of
identical requests."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

from sao_live.testing.daemon import DaemonProcess

QUIET = dict(audio_device="none", midi_in="none")  # export only: no audio device, no MIDI port


def test_kill_9_between_indexing_and_export_still_exports_and_answers(tmp_path, tiny_t5):
    daemon = DaemonProcess(tmp_path, tiny_t5, QUIET).start()
    client = daemon.client()
    try:
        # A long clip to FLAC: the export takes long enough for the kill to land before it is done.
        client.send("/sao/gen", "X", "exported after a crash", 11.5, "seed", 5, "steps", 2, "export", "flac")
        client.wait_for("/sao/queued", lambda a: a[0] == "X")
        index = sqlite3.connect(f"file:{daemon.cache_dir / 'index.sqlite3'}?mode=ro", uri=True, timeout=10)
        deadline = time.monotonic() + 60
        while not index.execute("SELECT COUNT(*) FROM clips").fetchone()[0]:
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.001)
        daemon.kill()
        index.close()
        assert list(daemon.export_dir.glob("*.flac")) == [], "the kill must land before the export is done"
        assert client.of("/sao/done", "X") == []

        daemon.start()
        kind, args = client.wait_reply("X", timeout=60)
        assert kind == "/sao/done", args
        exported = daemon.export_dir / os.path.basename(args[1])
        assert args[1] == str(exported) and exported.suffix == ".flac" and exported.stat().st_size > 0
        assert list(daemon.export_dir.glob("*.flac")) == [exported]
        assert "Traceback" not in daemon.log()
    finally:
        client.close()
        code = daemon.stop()
    assert code == 0, daemon.log()
    info = subprocess.run(
        [sys.executable, "-m", "sao_live.cli", "cache", "info", "--cache-dir", str(daemon.cache_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, XDG_CONFIG_HOME=str(daemon.root / "xdg-config")),
    )
    assert "interrupted jobs: 0" in info.stdout, info.stdout + info.stderr


def test_a_burst_of_identical_requests_is_bounded_and_each_answered_once(tmp_path, tiny_t5):
    daemon = DaemonProcess(tmp_path, tiny_t5, QUIET).start()
    client = daemon.client()
    count = 6000
    try:
        for i in range(count):
            client.send("/sao/gen", i, "burst", 2.0, "seed", 7, "steps", 60, "export", 0)
            if i % 500 == 499:
                time.sleep(0.05)  # pacing (about 10,000 datagrams/s at most), not synchronisation
        asked = time.monotonic()
        client.send("/sao/status")
        client.wait_for("/sao/status", timeout=30)
        assert time.monotonic() - asked < 5, "status waited behind the burst"

        def finals() -> list[tuple]:
            return client.of("/sao/done") + client.of("/sao/error")

        deadline = time.monotonic() + 120
        while len(finals()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # room for a second answer to any of them
        answers = sorted(a[0] for a in finals())
        assert answers == list(range(count)), f"{len(answers)} final answers to {count} requests"
        errors = client.of("/sao/error")
        assert {e[1] for e in errors} == {"busy"}
        assert "64 requesters already wait" in errors[0][2]
        assert {d[3] for d in client.of("/sao/done")} == {7}
    finally:
        client.close()
        code = daemon.stop()
    assert code == 0, daemon.log()
    assert daemon.log().count(": 'burst', 2 s, seed 7") == 1, "the clip must be made once"
