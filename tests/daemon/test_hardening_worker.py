"""The worker, the crash journal, merging and the cache disk under stress: a worker that cannot
come back, kill -9 between indexing and export, a burst of identical requests, a full disk."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time

from sao_live.testing.daemon import Client, DaemonProcess

from ..needs import need
from .daemon_helpers import LONG_STEPS

QUIET = dict(audio_device="none", midi_in="none")  # export only: no audio device, no MIDI port


def next_worker(daemon: DaemonProcess, client: Client, old: int, timeout: float = 30.0) -> int:
    """The pid of the worker started after `old` (polled from /sao/status while it loads)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client.send("/sao/status")
        status = client.wait_for("/sao/status", timeout=10)
        ready, pid = status[0], status[5]
        if pid not in (0, old):
            assert ready == 0, "the replacement must still be loading when it is killed"
            return pid
        time.sleep(0.05)
    raise TimeoutError(f"no worker after {old} within {timeout} s:\n{daemon.log()}")


def test_a_worker_that_cannot_come_back_answers_every_requester_and_returns(tmp_path, tiny_t5):
    daemon = DaemonProcess(tmp_path, tiny_t5, QUIET).start()
    client = daemon.client()
    try:
        kept = ("kept kick", 0.5, "seed", 1, "steps", 2, "export", 0)
        assert client.request("/sao/gen", "A", *kept)[0] == "/sao/done"
        pid = daemon.worker_pid(client)
        client.send("/sao/gen", "R", "running at the crash", 2.9, "seed", 2, "steps", LONG_STEPS, "export", 0)
        client.wait_for("/sao/progress", lambda a: a[0] == "R")
        os.kill(pid, signal.SIGKILL)
        client.wait_for("/sao/ready", lambda a: a[0] == 0, timeout=10)
        client.send("/sao/gen", "Q", "queued meanwhile", 0.5, "seed", 3, "steps", 2, "export", 0)
        client.wait_for("/sao/queued", lambda a: a[0] == "Q")
        for _ in range(3):  # every replacement dies while it loads
            pid = next_worker(daemon, client, pid)
            os.kill(pid, signal.SIGKILL)
        for id in ("R", "Q"):  # nobody waits forever
            kind, args = client.wait_reply(id, timeout=30)
            assert (kind, args[1]) == ("/sao/error", "worker_unavailable"), args
            assert "keeps trying" in args[2] and "/sao/ready 1" in args[2]
        kind, args = client.request("/sao/gen", "N", "while it is down", 0.5, "seed", 4, "steps", 2, "export", 0)
        assert (kind, args[1]) == ("/sao/error", "worker_unavailable")  # at once, not queued
        assert client.of("/sao/queued", "N") == []
        assert client.request("/sao/gen", "A2", *kept)[1][4] == 1  # the cache still answers
        client.send("/sao/ping", "alive")
        assert client.wait_for("/sao/pong", timeout=5) == ("alive",)

        client.wait_for("/sao/ready", lambda a: a == (1, "tiny-random"), timeout=120)  # left alone, it returns
        kind, args = client.request("/sao/gen", "B", "after the return", 0.5, "seed", 5, "steps", 2, "export", 0)
        assert kind == "/sao/done" and args[4] == 0
    finally:
        client.close()
        code = daemon.stop()
    assert code == 0, daemon.log()
    assert daemon.log().count("did not come up") == 3


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


def _namespaces_problem() -> list[str]:
    try:
        probe = subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as err:
        return [f"unshare -r -m to run ({err})"]
    return [] if probe.returncode == 0 else [f"user and mount namespaces (unshare -r -m: {probe.stderr.strip()})"]


def test_a_full_cache_disk_is_reported_and_cached_clips_still_come_back(tmp_path, tiny_t5):
    need("a cache on a small tmpfs", tools=("unshare", "mount"), problems=_namespaces_problem())
    cache = tmp_path / "cache"
    cache.mkdir()
    # The daemon runs in a mount namespace of its own, with a 6 MB tmpfs on its cache folder.
    mount = 'mount -t tmpfs -o size=6m tmpfs "$0" && exec "$@"'
    daemon = DaemonProcess(tmp_path, tiny_t5, QUIET, prefix=("unshare", "-r", "-m", "sh", "-c", mount, str(cache)))
    daemon.start()
    client = daemon.client()
    inside = f"/proc/{daemon.proc.pid}/root{cache}"  # the tmpfs, as the daemon sees it
    filler = f"{inside}/filler"
    try:
        kept = ("made before the disk filled", 0.5, "seed", 1, "steps", 2, "export", 0)
        assert client.request("/sao/gen", "A", *kept)[0] == "/sao/done"
        assert os.statvfs(inside).f_blocks * os.statvfs(inside).f_frsize <= 6 << 20, "not the tmpfs"
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(bytes(1 << 16))
            except OSError as err:
                assert err.errno == errno.ENOSPC

        new = ("made on a full disk", 2.0, "seed", 2, "steps", 2, "export", 0)
        kind, args = client.request("/sao/gen", "B", *new, timeout=60)
        assert (kind, args[1]) == ("/sao/error", "cache_failed"), args
        assert f"no space left on the device holding the cache folder {cache}" in args[2]
        kind, args = client.request("/sao/gen", "A2", *kept)
        assert kind == "/sao/done" and args[4] == 1
        client.send("/sao/ping", "alive")
        assert client.wait_for("/sao/pong", timeout=5) == ("alive",)

        os.unlink(filler)  # room again: the same request is made now
        kind, args = client.request("/sao/gen", "B2", *new, timeout=60)
        assert kind == "/sao/done" and args[4] == 0
        assert "AssertionError" not in daemon.log()
    finally:
        client.close()
        code = daemon.stop()
    assert code == 0, daemon.log()
