"""What a hostile or careless sender can make the daemon do over the network: senders outside
the allow-list get nothing, forged sources cannot turn the daemon into an amplifier, oversized
addresses and numbers are refused plainly, and a sender cancels only its own requests.

Everything goes through a real daemon over real UDP. Another sender is another loopback address
(127.0.0.77): the kernel delivers its datagrams with that source, as a forged one would arrive.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sao_live.daemon import oscwire
from sao_live.testing.daemon import Collector, DaemonProcess

from ..needs import need

ROOT = Path(__file__).resolve().parents[2]


def test_senders_outside_the_allow_list_get_no_answer(tmp_path, tiny_t5):
    """In a network namespace of its own, lo carries two more subnets: 10.9.9.0/24 (the daemon
    listens on 10.9.9.1) and 10.8.8.0/24 (another subnet of the same machine)."""
    need("the allow-list test", tools=["unshare", "ip"])
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        need("the allow-list test", problems=["permission for unshare -rn (user namespaces)"])
    script = (
        "ip link set lo up && ip addr add 10.9.9.1/24 dev lo && ip addr add 10.8.8.1/24 dev lo && "
        f'exec "{sys.executable}" -m tests.daemon.allow_session "{tmp_path}" "{tiny_t5}"'
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(["unshare", "-rn", "sh", "-c", script], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    default, allow = result["default"], result["allow"]
    assert default["code"] == allow["code"] == 0, default["log"] + allow["log"]
    answered = {"own": ["/sao/ready", "/sao/pong"], "reply_port": ["/sao/pong"]}
    silent = {"own": [], "reply_port": []}
    # No --allow: the listening address's subnet and loopback are answered; another subnet is not.
    assert default["10.9.9.5"] == answered and default["127.0.0.1"] == answered, default
    assert default["10.8.8.7"] == silent, default
    assert (
        "not in the allow-list" in default["log"]
        and "accepting OSC from 127.0.0.0/8, ::1/128, 10.9.9.0/24" in (default["log"])
    )
    # --allow replaces the default: 10.8.8.0/24 is answered now, and 10.9.9.0/24 no longer.
    assert allow["10.8.8.7"] == answered and allow["127.0.0.1"] == answered, allow
    assert allow["10.9.9.5"] == silent, allow


def test_a_bad_allow_entry_stops_serve_at_once(tmp_path):
    cmd = [sys.executable, "-m", "sao_live.cli", "serve", "--model", "tiny-random", "--cache-dir", str(tmp_path),
           "--allow", "192.168.1.0/24,no-such-host.invalid"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "'no-such-host.invalid' is neither an address, a network" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, tiny_t5):
    """A daemon with a small reply budget (16 KB/s, 32 KB burst), so its limit shows quickly."""
    config = dict(audio_device="none", midi_in="none", reply_rate_kb=16)
    daemon = DaemonProcess(tmp_path_factory.mktemp("guarded"), tiny_t5, config=config, export=False).start()
    yield daemon
    assert daemon.stop() == 0, daemon.log()


def forged(daemon: DaemonProcess, source: str) -> tuple[socket.socket, Collector]:
    """A raw socket sending from `source`, and a victim listening where the daemon answers it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    return sock, Collector(daemon.reply_port, host=source)


def received_bytes(victim: Collector) -> int:
    return sum(len(oscwire.encode(address, *args)) for address, args in victim.messages)


def test_one_bundle_cannot_make_thousands_of_replies(guarded):
    sock, victim = forged(guarded, "127.0.0.77")
    info = b"/sao/info\x00\x00\x00"  # 12 bytes: OSC 1.0 allows a message without type tags
    bundle = oscwire.encode_bundle([info] * 4061)
    assert len(bundle) == 64992  # about the largest UDP payload
    try:
        sock.sendto(bundle, ("127.0.0.1", guarded.osc_port))
        time.sleep(2.0)
        errors = [a for addr, a in victim.messages if addr == "/sao/error"]
        ends = [a for addr, a in victim.messages if addr == "/sao/info/end"]
        assert [e[1] for e in errors] == ["too_many"] and "first 64 of 4061" in errors[0][2]
        assert len(ends) <= 64 and len(victim.messages) <= 64 * 5 + 1
        assert received_bytes(victim) < 2 * len(bundle)  # once 15 MB, 236x the bundle
    finally:
        sock.close()
        victim.close()


def test_a_flood_of_forged_requests_is_held_to_the_reply_budget(guarded):
    sock, victim = forged(guarded, "127.0.0.78")
    info = b"/sao/info\x00\x00\x00"
    try:
        t0 = time.monotonic()
        for _ in range(3000):  # each one alone would be answered with 5 messages, ~1.2 KB
            sock.sendto(info, ("127.0.0.1", guarded.osc_port))
        time.sleep(1.0)
        elapsed = time.monotonic() - t0
        budget = 32 * 1024 + 16 * 1024 * elapsed  # the burst, then the rate
        assert received_bytes(victim) <= budget, (received_bytes(victim), budget)
        assert received_bytes(victim) > 16 * 1024  # the budget is spent, not everything refused
    finally:
        sock.close()
        victim.close()
    assert "over reply_rate_kb: dropped" in guarded.log()
    with guarded.client() as other:  # another host's budget is its own: normal service
        other.send("/sao/ping", 1)
        assert other.wait_for("/sao/pong", timeout=5) == (1,)


def test_progress_of_a_long_job_is_sent_at_most_once_per_5_percent(guarded):
    with guarded.client() as c:
        kind, args = c.request("/sao/gen", "p", "many steps", 0.25, "steps", 200, "export", 0, timeout=120)
        assert kind == "/sao/done", args
        fractions = [a[1] for a in c.of("/sao/progress", "p")]
    assert 15 <= len(fractions) <= 21 and fractions[-1] == 1.0  # not 200
    steps = [b - a for a, b in zip(fractions[:-2], fractions[1:-1], strict=True)]  # the last one: whatever is left
    assert all(step >= 0.05 - 1e-6 for step in steps), fractions


def test_huge_numbers_and_long_addresses_are_refused_plainly(guarded):
    digits = "9" * 5000
    with guarded.client() as c:
        c.send(f"/sao/pad/{digits}")
        _, err = c.wait_reply("")
        assert err[1] == "unknown_address" and len(err[2]) < 300  # no address is that long; was `internal`
        c.send(f"/sao/pad/{digits[:40]}")
        _, err = c.wait_reply("")
        assert err[1] == "unknown_pad" and "got '9999" in err[2]
        c.send("/sao/play", f"pad{digits}")
        _, err = c.wait_reply("")
        assert err[1] == "bad_id" and len(err[2]) < 300
        c.send("/sao/" + "x" * 60000)
        _, err = c.wait_reply("")
        assert err[1] == "unknown_address" and len(err[2]) < 300
        c.send("/sao/ping", "alive")
        assert c.wait_for("/sao/pong") == ("alive",)
    log_before = len(guarded.log())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(1000):
            sock.sendto(oscwire.encode("/sao/pad/" + "9" * 60000), ("127.0.0.1", guarded.osc_port))
        time.sleep(1.0)
    finally:
        sock.close()
    assert len(guarded.log()) - log_before < 100_000  # was 57 MB: lines are cut and rate-limited


def test_a_char_argument_that_is_no_character_is_still_answered(guarded):
    with guarded.client() as c:
        for code in (0xD800, 0, 0x10FFFF + 7):
            tags = b",c\x00\x00"
            c.send_raw(b"/sao/gen\x00\x00\x00\x00" + tags + struct.pack(">I", code))  # the id is that char
            kind, err = c.wait_reply("\ufffd")
            assert kind == "/sao/error" and err[1] == "missing_prompt", err  # an id and no prompt


def test_a_sender_cancels_only_its_own_requests(guarded):
    with guarded.client() as owner, guarded.client() as other:
        owner.send("/sao/gen", "mine", "a long pad", 2.0, "steps", 1000, "export", 0)
        owner.wait_for("/sao/progress", lambda a: a[0] == "mine", timeout=60)
        other.send("/sao/cancel", "mine")
        assert other.wait_reply("mine")[1][1] == "unknown_id"
        other.send("/sao/cancel", "all")
        assert other.wait_for("/sao/cancelled") == ("all", 0)
        assert owner.of("/sao/error", "mine") == []  # still running
        owner.send("/sao/cancel", "all")
        assert owner.wait_for("/sao/cancelled") == ("all", 1)
        assert owner.wait_reply("mine")[1][1] == "cancelled"
