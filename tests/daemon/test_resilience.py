"""A gig must not stop: kill -9 of the daemon or its worker, SIGTERM, a full queue, a flood of garbage."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import struct
import subprocess
import sys
import time
import uuid

import pytest

from sao_live.daemon.oscwire import encode_bundle
from sao_live.testing.daemon import DaemonProcess, build, pid_gone

from .daemon_helpers import LONG_STEPS, SHORT_LONG_STEPS


def leftovers(*folders) -> list[str]:
    """Temporary files a write left behind (".part")."""
    return [str(p) for folder in folders if folder and folder.exists() for p in folder.rglob("*.part")]


def cache_cli(daemon: DaemonProcess, *args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sao_live.cli", "cache", *args, "--cache-dir", str(daemon.cache_dir)]
    env = dict(os.environ, XDG_CONFIG_HOME=str(daemon.root / "xdg-config"))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


def test_kill_9_mid_generation_then_restart(tmp_path, tiny_t5):
    daemon = DaemonProcess(tmp_path, tiny_t5).start()
    client = daemon.client()
    try:
        finished = client.request("/sao/gen", "A", "finished kick", 1.0, "seed", 1, "steps", 2, "export", 0)[1]
        exported = client.request("/sao/gen", "E", "finished kick", 1.0, "seed", 1, "steps", 2)[1]
        client.send("/sao/gen", "L", "interrupted pad", 2.9, "seed", 2, "steps", SHORT_LONG_STEPS, "export", 0)
        client.wait_for("/sao/progress", lambda a: a[0] == "L")
        children = daemon.children()
        daemon.kill()  # SIGKILL: no shutdown at all
        assert all(pid_gone(pid) for pid in children), "the worker must not outlive its daemon"
        assert leftovers(daemon.cache_dir, daemon.export_dir) == []

        daemon.start()
        # The interrupted job is resumed, and its requester hears about it at the same address.
        assert client.wait_for("/sao/queued", lambda a: a[0] == "L", timeout=30)
        kind, args = client.wait_reply("L", timeout=60)
        assert kind == "/sao/done" and args[3] == 2 and args[4] == 0
        fresh = daemon.client()
        again = fresh.request("/sao/gen", "A2", "finished kick", 1.0, "seed", 1, "steps", 2, "export", 0)[1]
        assert again[1:] == finished[1:4] + (1,)  # found in the cache after the restart
        assert fresh.request("/sao/gen", "E2", "finished kick", 1.0, "seed", 1, "steps", 2)[1][1] == exported[1]
        verify = cache_cli(daemon, "verify")
        assert verify.returncode == 0 and "0 problems, 2 clips" in verify.stdout, verify.stdout
        fresh.close()
    finally:
        client.close()
        code = daemon.stop()
    assert code == 0, daemon.log()
    assert "interrupted jobs: 0" in cache_cli(daemon, "info").stdout
    assert leftovers(daemon.cache_dir, daemon.export_dir) == []


def test_killed_worker_is_restarted_and_its_job_retried_once(tmp_path, tiny_t5):
    daemon = DaemonProcess(tmp_path, tiny_t5).start()
    client = daemon.client()
    try:
        pid = daemon.worker_pid(client)
        client.send("/sao/gen", "R", "retried", 2.9, "seed", 3, "steps", SHORT_LONG_STEPS, "export", 0)
        client.wait_for("/sao/progress", lambda a: a[0] == "R")
        os.kill(pid, signal.SIGKILL)
        assert client.wait_for("/sao/ready", lambda a: a[0] == 0, timeout=10) == (0, "tiny-random")
        client.send("/sao/ping", "during restart")  # the control plane keeps answering
        assert client.wait_for("/sao/pong", timeout=5) == ("during restart",)
        client.wait_for("/sao/ready", lambda a: a[0] == 1, timeout=60)
        kind, args = client.wait_reply("R", timeout=90)
        assert kind == "/sao/done" and args[4] == 0  # retried on the new worker

        client.send("/sao/gen", "C", "crashes twice", 2.9, "seed", 4, "steps", LONG_STEPS, "export", 0)
        for _ in range(2):
            client.wait_for("/sao/progress", lambda a: a[0] == "C", timeout=60)
            os.kill(daemon.worker_pid(client), signal.SIGKILL)
            client.wait_for("/sao/ready", lambda a: a[0] == 0, timeout=10)
            client.wait_for("/sao/ready", lambda a: a[0] == 1, timeout=60)
        kind, args = client.wait_reply("C", timeout=30)
        assert (kind, args[1]) == ("/sao/error", "worker_crashed")
        assert client.request("/sao/gen", "N", "after crashes", 0.5, "steps", 2, "export", 0)[0] == "/sao/done"

        # SIGTERM waits for the running job (shutdown_timeout, 10 s by default); a second one does not.
        client.send("/sao/gen", "T", "stopped at once", 2.9, "steps", LONG_STEPS, "export", 0)
        client.wait_for("/sao/progress", lambda a: a[0] == "T")
        daemon.proc.send_signal(signal.SIGTERM)
        for i in range(100):  # until a request is refused: the first signal has been handled
            client.send("/sao/gen", f"probe{i}", "probe", 0.5, "export", 0)
            kind, args = client.wait_reply(f"probe{i}", ("/sao/queued", "/sao/error"), timeout=10)
            if args[1] == "shutting_down":
                break
        t0 = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(30) == 0, daemon.log()
        assert time.monotonic() - t0 < 8
        assert client.wait_reply("T")[1][1] == "shutdown"
    finally:
        client.close()
        code = daemon.stop()
    assert code == 0, daemon.log()
    assert "second SIGTERM: not waiting for the running job" in daemon.log()
    assert leftovers(daemon.cache_dir) == []


@pytest.fixture(scope="module")
def small_daemon(tmp_path_factory, tiny_t5):
    """A daemon with a queue of 2, a 1 MB cache (two 1-second clips) and a 5 s heartbeat timeout;
    the last test stops it."""
    config = {"queue_size": 2, "cache_max_mb": 1, "shutdown_timeout": 0.5, "heartbeat_timeout": 5.0}
    daemon = DaemonProcess(tmp_path_factory.mktemp("small"), tiny_t5, config).start()
    yield daemon
    daemon.stop()


def test_full_queue_answers_busy(small_daemon):
    client = small_daemon.client()
    client.send("/sao/gen", "run", "busy long", 2.9, "steps", LONG_STEPS, "export", 0)
    client.wait_for("/sao/progress", lambda a: a[0] == "run")
    for id in ("q1", "q2"):
        client.send("/sao/gen", id, f"busy {id}", 0.5, "steps", 2, "export", 0)
        client.wait_for("/sao/queued", lambda a, i=id: a[0] == i)
    client.send("/sao/gen", "q3", "busy q3", 0.5, "steps", 2, "export", 0)
    kind, args = client.wait_reply("q3")
    assert (kind, args[1]) == ("/sao/error", "busy") and "queue is full" in args[2]
    client.send("/sao/cancel", "all")
    assert client.wait_for("/sao/cancelled") == ("all", 3)
    client.close()


def test_least_recently_used_clips_are_evicted(small_daemon):
    client = small_daemon.client()
    assert cache_cli(small_daemon, "clear").returncode == 0

    def gen(id, seed):
        return client.request("/sao/gen", id, "lru clip", 1.0, "seed", seed, "steps", 2, "export", 0)[1][4]

    assert [gen("a", 1), gen("b", 2)] == [0, 0]
    assert gen("a2", 1) == 1  # a is now more recent than b
    assert gen("c", 3) == 0  # over 1 MB: b, the least recently used, goes
    assert [gen("a3", 1), gen("c2", 3)] == [1, 1]
    assert gen("b2", 2) == 0  # made again
    client.close()


def test_a_hung_worker_is_killed_and_replaced(small_daemon):
    client = small_daemon.client()
    pid = small_daemon.worker_pid(client)
    os.kill(pid, signal.SIGSTOP)  # alive, but it answers nothing any more
    try:
        client.send("/sao/gen", "H", "after the hang", 0.5, "steps", 2, "export", 0)
        assert client.wait_for("/sao/ready", lambda a: a[0] == 0, timeout=20) == (0, "tiny-random")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert pid_gone(pid)
    client.wait_for("/sao/ready", lambda a: a[0] == 1, timeout=60)
    assert small_daemon.worker_pid(client) != pid
    assert client.wait_reply("H", timeout=60)[0] == "/sao/done"  # queued meanwhile, made by the new worker
    assert f"worker {pid} silent for 5 s: killing it" in small_daemon.log()
    assert small_daemon.log().count("silent for") == 1  # and no other worker was taken for hung
    client.close()


def test_sigterm_cancels_the_running_job_and_leaves_a_clean_store(small_daemon):
    client = small_daemon.client()
    client.send("/sao/gen", "S", "stopped", 2.9, "steps", LONG_STEPS, "export", 0)
    client.wait_for("/sao/progress", lambda a: a[0] == "S")
    client.send("/sao/gen", "W", "waiting", 0.5, "steps", 2, "export", 0)
    client.wait_for("/sao/queued", lambda a: a[0] == "W")
    assert small_daemon.stop() == 0
    assert {client.wait_reply(id)[1][1] for id in ("S", "W")} == {"shutdown"}
    assert client.wait_for("/sao/ready", lambda a: a[0] == 0) == (0, "tiny-random")
    assert leftovers(small_daemon.cache_dir) == []
    info = cache_cli(small_daemon, "info")
    assert "interrupted jobs: 0" in info.stdout
    assert "shutting down" in small_daemon.log() and "Traceback" not in small_daemon.log()
    client.close()


def _fuzz_datagrams(rng: random.Random, count: int) -> list[bytes]:
    # Messages to mangle: none that would cancel, re-route or re-tempo what the other tests do, and
    # a request that asks too much (99 s), so that a mangled copy is rarely a job for the worker.
    valid = [build("/sao/gen", 1, "kick", 99.0, "seed", 3, "steps", 1), build("/sao/ping", "p"),
             build("/sao/get/bpm"), build("/sao/status")]  # fmt: skip
    out = []
    for _ in range(count):
        kind = rng.randrange(6)
        if kind == 0:  # noise
            out.append(rng.randbytes(rng.randrange(0, 200)))
        elif kind == 1:  # a valid message, bytes flipped
            data = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            out.append(bytes(data))
        elif kind == 2:  # cut short or padded out
            data = rng.choice(valid)
            out.append(data[: rng.randrange(len(data))] if rng.random() < 0.5 else data + rng.randbytes(4))
        elif kind == 3:  # a known address with random type tags and payload
            tags = "".join(rng.choice("ifsbhdTFNIcrm[]x") for _ in range(rng.randrange(8)))
            head = b"/sao/gen\x00\x00\x00\x00" + (("," + tags).encode() + b"\x00" * (4 - (len(tags) + 1) % 4))
            out.append(head + rng.randbytes(rng.randrange(0, 16) * 4))
        elif kind == 4:  # bundles: wrong sizes, deep nesting
            inner = rng.choice(valid)
            size = rng.choice([len(inner), -1, 0, 10**6, len(inner) + 4])
            bundle = b"#bundle\x00" + bytes(8) + struct.pack(">i", size) + inner
            for _ in range(rng.randrange(0, 7)):
                bundle = encode_bundle([bundle])
            out.append(bundle)
        else:  # absurd values in well-formed messages
            value = rng.choice([float("nan"), float("inf"), -1e30, 2**31 - 1, "x" * rng.randrange(2000, 60000), ""])
            out.append(build("/sao/gen", "f", "kick", 1.0, rng.choice(["seed", "steps", "cfg", "bars"]), value))
    return out


def test_fuzz_while_valid_requests_complete(shared_daemon):
    rng = random.Random(1234)
    garbage = _fuzz_datagrams(rng, 3000)
    fuzzer, worker = shared_daemon.client(), shared_daemon.client()
    tag = uuid.uuid4().hex[:6]
    cached = ("fuzz cached", 0.25, "seed", 1, "steps", 2, "export", 0)
    assert worker.request("/sao/gen", "warm", *cached)[0] == "/sao/done"
    started = time.monotonic()
    for i, data in enumerate(garbage):
        fuzzer.send_raw(data)
        if i % 600 == 0:  # valid requests in between: a few that need the worker, more from the cache
            worker.send("/sao/gen", f"ok{i}", f"fuzz {tag}", 0.25, "seed", i, "steps", 2, "export", 0)
        elif i % 100 == 0:
            worker.send("/sao/trigger", f"ok{i}", *cached)
        if i % 500 == 499:
            time.sleep(0.05)  # pacing (about 10,000 datagrams/s at most), not synchronisation
    sent = time.monotonic() - started
    for i in range(0, len(garbage), 100):
        kind, args = worker.wait_reply(f"ok{i}", timeout=60)
        assert kind == "/sao/done" and args[3] == (i if i % 600 == 0 else 1) and args[4] == int(i % 600 != 0)
    worker.send("/sao/ping", "alive")
    assert worker.wait_for("/sao/pong", timeout=10) == ("alive",)
    fuzzer.send("/sao/ping", "last")
    fuzzer.wait_for("/sao/pong", lambda a: a == ("last",), timeout=10)
    # Each datagram is one message (or none that decodes) and earns exactly one final answer: an
    # error, a pong, a value, a status, or the done of a request a mangling happened to make valid.
    final = ("/sao/error", "/sao/pong", "/sao/value", "/sao/status", "/sao/done")
    deadline = time.monotonic() + 60
    while (answered := sum(len(fuzzer.of(a)) for a in final) - 1) < len(garbage) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling for the done of such a request, made by the worker
    assert answered == len(garbage), f"{answered} answers to {len(garbage)} datagrams"
    errors = fuzzer.of("/sao/error")
    assert {e[1] for e in errors} >= {"bad_osc", "bad_seed", "bad_steps", "bad_cfg"}
    log = shared_daemon.log()
    assert "Traceback" not in log and "internal error" not in log
    assert sent < 30
    fuzzer.close()
    worker.close()
