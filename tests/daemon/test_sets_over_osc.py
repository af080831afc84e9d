"""/sao/load against a real daemon over real UDP: sets come by name from the sets folder only,
what a client hears never shows a file's content, a FIFO or a huge file cannot block or fill
the daemon, every broken set is answered, and pre-rendering feeds the queue as it drains and
cancels what a replaced or failed set asked for.

The daemon runs with a queue of 4 (so a set is easily larger than the queue; pre-render then
asks for one take at a time) and no retries (a killed worker fails its job at once).
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from sao_live.testing.daemon import Collector, DaemonProcess

from ..needs import need
from .daemon_helpers import LONG_STEPS

CONFIG = dict(audio_device="none", midi_in="none", queue_size=4, retries=0, shutdown_timeout=0.5)


def set_text(name: str, pads: list[str], banks: int = 1, variations: int = 1, steps: int = 2) -> str:
    """A set named `name`: `banks` banks of one pad per prompt (a prompt may end in `@<steps>`)."""
    lines = [f'name = "{name}"', "[defaults]", "seconds = 0.3", f"variations = {variations}", f"steps = {steps}"]
    for b in range(banks):
        lines.append("[[banks]]")
        for prompt in pads:
            prompt, _, own_steps = prompt.partition("@")
            lines += ["[[banks.pads]]", f'prompt = "{prompt} bank {b}"']
            lines += [f"steps = {own_steps}"] if own_steps else []
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def sets_daemon(tmp_path_factory, tiny_t5):
    root = tmp_path_factory.mktemp("sets")
    sets = root / "sets"
    sets.mkdir()
    daemon = DaemonProcess(root / "d", tiny_t5, config={**CONFIG, "sets_dir": str(sets)}, export=False).start()
    daemon.sets = sets
    yield daemon
    assert daemon.stop() == 0, daemon.log()


@pytest.fixture
def client(sets_daemon):
    c = sets_daemon.client()
    yield c
    c.close()


def status(client) -> tuple:
    client.send("/sao/status")
    return client.wait_for("/sao/status", timeout=10)


def settled(client, timeout: float = 30.0) -> tuple:
    """/sao/status once nothing is queued or running (the daemon is idle)."""
    deadline = time.monotonic() + timeout
    while True:
        now = status(client)
        if now[1] == 0 and now[2] == 0:
            return now
        assert time.monotonic() < deadline, f"still busy after {timeout} s: {now}"
        time.sleep(0.1)


def load_error(client, name: str, timeout: float = 10.0) -> tuple:
    client.send("/sao/load", name)
    kind, args = client.wait_reply(name, ("/sao/error", "/sao/loaded"), timeout=timeout)
    assert kind == "/sao/error", args
    return args


def test_paths_outside_the_sets_folder_are_refused_without_reading_them(sets_daemon, client):
    for name in ["/etc/passwd", "/etc/shadow", "../../../../../../etc/passwd", "..", ".hidden", "a/b", "/dev/zero"]:
        _, code, message = load_error(client, name, timeout=2)
        assert code == "bad_set_name", (name, code, message)
        assert "letters, digits" in message and "root:" not in message and "TOML" not in message
    # A NUL arrives as OSC's char type (a string cannot hold one): still an answer, not a traceback.
    client.send_raw(b"/sao/load\x00\x00\x00,c\x00\x00" + struct.pack(">I", 0))
    assert client.wait_for("/sao/error", timeout=2)[1] == "bad_set_name"
    _, code, message = load_error(client, "not-there")
    assert code == "no_file" and str(sets_daemon.sets) in message


def test_liblo_oscsend_gets_no_file_oracle(sets_daemon):
    need("sending /sao/load from liblo's oscsend (apt-get install liblo-tools)", tools=["oscsend"])
    replies = Collector(sets_daemon.reply_port)  # oscsend sends no /sao/hello: replies go to the reply port
    try:
        for path in ("/etc/shadow", "/etc/passwd", "../../etc/hostname"):
            subprocess.run(["oscsend", "127.0.0.1", str(sets_daemon.osc_port), "/sao/load", "s", path],
                           check=True, timeout=10)  # fmt: skip
            _, code, message = replies.wait_reply(path, ("/sao/error",), timeout=5)[1]
            assert code == "bad_set_name" and "root" not in message and "TOML" not in message
    finally:
        replies.close()


def test_a_file_that_is_not_a_set_is_reported_by_line_without_its_content(sets_daemon, client):
    """A TOML file of something else, and a set with a wrong value: the client hears the line and
    what the schema expects; the daemon's log has the whole message."""
    (sets_daemon.sets / "pyproject.toml").write_text('[build-system]\nrequires = ["s3cr3t-dep"]\n')
    _, code, message = load_error(client, "pyproject.toml")
    assert code == "bad_set" and message.startswith("pyproject.toml:1: unknown key")
    assert "build-system" not in message and "s3cr3t" not in message
    text = set_text("leaky", ["kick"]).replace('prompt = "kick bank 0"', 'prompt = "kick"\nmode = "s3cr3t-mode"')
    (sets_daemon.sets / "leaky.toml").write_text(text)
    _, code, message = load_error(client, "leaky")
    line = text.splitlines().index('mode = "s3cr3t-mode"') + 1
    assert code == "bad_set" and message.startswith(f"leaky.toml:{line}: banks[0].pads[0].mode: must be oneshot")
    assert "s3cr3t" not in message
    assert "s3cr3t-mode" in sets_daemon.log()


@pytest.mark.parametrize(
    "broken, line",
    [
        ("cc = 1", 1),
        ("banks = [1]", 1),
        ("[[banks]]\npads = [1]", 2),
        ('[[banks]]\npads = "kick"', 2),
        ('defaults = "fast"\n[[banks]]\n[[banks.pads]]\nprompt = "x"\nseconds = 1', 1),
        ('[[banks]]\n[[banks.pads]]\nprompt = "x"\nseconds = 1\nmode = ["loop"]', 5),
        ("[[banks]]\n[[banks.pads]]\nprompt = 3\nseconds = 1", 3),
        ('[[banks]]\n[[banks.pads]]\nprompt = "x"\nbars = "2"', 4),
        ('[[banks]]\n[[banks.pads]]\nprompt = "x"\nseconds = 1\nseed = "x"\nvariations = 2', 5),
        ("[defaults\n", 1),
    ],
)
def test_every_broken_set_gets_bad_set_with_its_line(sets_daemon, client, broken, line):
    name = f"broken-{uuid.uuid4().hex[:8]}"
    (sets_daemon.sets / f"{name}.toml").write_text(broken + "\n")
    _, code, message = load_error(client, name)
    assert code == "bad_set" and message.startswith(f"{name}.toml:{line}: "), message


def test_an_oversize_set_file_is_refused(sets_daemon, client):
    (sets_daemon.sets / "huge.toml").write_text(set_text("huge", ["kick"]) + "# padding\n" * 120_000)
    _, code, message = load_error(client, "huge")
    assert code == "bad_set" and "a set file has at most 1048576" in message


def test_a_set_larger_than_the_queue_loads_and_clients_keep_their_room(sets_daemon, client):
    tag = uuid.uuid4().hex[:8]
    (sets_daemon.sets / "big.toml").write_text(set_text("big", [f"{tag} kick", f"{tag} hat", f"{tag} tom"], 2, 2))
    before = settled(client)[3]
    client.send("/sao/load", "big")  # 2 banks x 3 pads x 2 variations: 12 takes, the queue holds 4
    client.wait_for("/sao/render", lambda a: a[0] == "big" and a[1] >= 1, timeout=60)
    for i in range(3):  # while it pre-renders, clients' requests are queued, not refused
        kind, args = client.request("/sao/gen", f"g{i}", f"{tag} client {i}", 0.3, "steps", 2, timeout=60)
        assert kind == "/sao/done", args
    assert client.wait_for("/sao/loaded", timeout=120) == ("big", 6, 2)
    assert max(a[1] for a in client.of("/sao/render") if a[0] == "big") == 12
    assert settled(client)[3] - before == 12 + 3  # every take once, and the clients' clips


def test_a_replaced_set_cancels_its_takes_not_made_yet(sets_daemon, client):
    tag = uuid.uuid4().hex[:8]
    slow = [f"{tag} slow@{LONG_STEPS}", *[f"{tag} slow pad {i}" for i in range(7)]]
    (sets_daemon.sets / "slow.toml").write_text(set_text("slow", slow))
    (sets_daemon.sets / "quick.toml").write_text(set_text("quick", [f"{tag} quick a", f"{tag} quick b"]))
    before = settled(client)[3]
    client.send("/sao/load", "slow")
    deadline = time.monotonic() + 30
    while status(client)[2] == 0:  # the slow set's first take is on the worker
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.send("/sao/load", "quick")
    kind, args = client.wait_reply("slow", ("/sao/error", "/sao/loaded"), timeout=10)
    assert (kind, args[1]) == ("/sao/error", "cancelled") and "replaced" in args[2]
    assert client.wait_reply("quick", ("/sao/error", "/sao/loaded"), timeout=60) == ("/sao/loaded", ("quick", 2, 1))
    time.sleep(1.0)  # anything of the slow set still queued would run now
    now = settled(client)
    assert now[3] - before == 2, "only the quick set's two takes are made: the slow one's were cancelled"
    assert now[11] == "quick"


def test_a_set_whose_take_fails_cancels_the_rest(sets_daemon, client):
    """The worker dies under the set's second take (no retries): the load fails with the reason,
    and none of the takes after it are made once the worker is back."""
    tag = uuid.uuid4().hex[:8]
    pads = [f"{tag} first", f"{tag} doomed@{LONG_STEPS}", *[f"{tag} later {i}" for i in range(6)]]
    (sets_daemon.sets / "doomed.toml").write_text(set_text("doomed", pads))
    before = settled(client)[3]
    client.send("/sao/load", "doomed")
    client.wait_for("/sao/render", lambda a: a == ("doomed", 1, 8), timeout=60)
    deadline = time.monotonic() + 30
    while (now := status(client))[2] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(now[5], signal.SIGKILL)
    kind, args = client.wait_reply("doomed", ("/sao/error", "/sao/loaded"), timeout=30)
    assert (kind, args[1]) == ("/sao/error", "bad_set") and "worker_crashed" in args[2], args
    client.wait_for("/sao/ready", lambda a: a[0] == 1, timeout=60)
    time.sleep(1.0)
    assert settled(client)[3] - before == 1, "only the take made before the failure"


def test_a_fifo_or_device_is_refused_at_once_and_the_daemon_still_loads_and_stops(tmp_path, tiny_t5):
    sets = tmp_path / "sets"
    sets.mkdir()
    os.mkfifo(sets / "fifo.toml")
    (sets / "zero.toml").symlink_to("/dev/zero")
    (sets / "good.toml").write_text(set_text("good", [f"{uuid.uuid4().hex[:8]} good"]))
    daemon = DaemonProcess(tmp_path / "d", tiny_t5, config={**CONFIG, "sets_dir": str(sets)}, export=False).start()
    client = daemon.client()
    try:
        for name in ("fifo", "zero"):
            started = time.monotonic()
            _, code, message = load_error(client, name, timeout=5)
            assert code == "bad_set" and "not a regular file" in message
            assert time.monotonic() - started < 2
        proc_status = Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines()
        rss_kb = int(next(x for x in proc_status if x.startswith("VmRSS")).split()[1])
        assert rss_kb < 1_000_000
        client.send("/sao/load", "good")
        assert client.wait_reply("good", ("/sao/error", "/sao/loaded"), timeout=60) == ("/sao/loaded", ("good", 1, 1))
        started = time.monotonic()
        assert daemon.stop(timeout=20) == 0, daemon.log()
        assert time.monotonic() - started < 8
    finally:
        client.close()
        daemon.stop()
