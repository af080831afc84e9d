"""Every OSC address a bridge or example sends is in the protocol table, and every reply it handles is one the
daemon sends: the bridges cannot drift from the daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from sao_live.daemon import protocol

from . import addresses as a

README = a.ROOT / "README.md"

SENDERS = {
    "max": (a.max_sent, {"/sao/gen", "/sao/trigger", "/sao/stop", "/sao/cancel", "/sao/play", "/sao/hello",
                         "/sao/set/bpm", "/sao/pad/1"}),
    "max device": (lambda: a.max_sent(a.MAX_DEVICE), {"/sao/gen", "/sao/trigger", "/sao/stop", "/sao/cancel",
                                                       "/sao/play", "/sao/hello", "/sao/set/bpm"}),
    "max pads": (lambda: a.max_sent(a.MAX_PADS), {"/sao/pad/1", "/sao/bank"}),
    "pd": (a.pd_sent, {"/sao/gen", "/sao/trigger", "/sao/stop", "/sao/cancel", "/sao/play", "/sao/hello",
                       "/sao/pad/1"}),
    "open-stage-control": (a.osc_sent, {"/sao/gen", "/sao/trigger", "/sao/stop", "/sao/cancel"}
                           | {f"/sao/pad/{n}" for n in range(1, 17)}),
    "osc_client.py": (lambda: a.python_sent(a.OSC_CLIENT), {"/sao/hello", "/sao/gen", "/sao/trigger"}),
}  # fmt: skip
LISTENERS = {
    "max": (a.max_heard, {"/sao/done", "/sao/progress", "/sao/error", "/sao/timing", "/sao/interrupted"}),
    "max device": (lambda: a.max_heard(a.MAX_DEVICE), {"/sao/done", "/sao/progress", "/sao/error", "/sao/timing",
                                                        "/sao/interrupted"}),
    "pd": (a.pd_heard, {"/sao/done", "/sao/progress", "/sao/ready", "/sao/error", "/sao/timing", "/sao/interrupted"}),
    "open-stage-control": (a.osc_heard, {"/sao/done", "/sao/progress", "/sao/error", "/sao/timing",
                                         "/sao/interrupted"}),
    "osc_client.py": (lambda: a.python_heard(a.OSC_CLIENT), {"/sao/done", "/sao/error", "/sao/queued"}),
}  # fmt: skip


@pytest.mark.parametrize("bridge", sorted(SENDERS))
def test_every_address_a_bridge_sends_is_in_the_protocol(bridge):
    extract, expected = SENDERS[bridge]
    sent = extract()
    assert expected <= sent, f"{bridge}: the extractor no longer finds {expected - sent}"
    unknown = sorted(x for x in sent if not a.served(x))
    assert not unknown, f"{bridge} sends addresses the daemon does not serve: {unknown}"


@pytest.mark.parametrize("bridge", sorted(LISTENERS))
def test_every_reply_a_bridge_handles_is_one_the_daemon_sends(bridge):
    extract, expected = LISTENERS[bridge]
    heard = extract()
    assert expected <= heard, f"{bridge}: the extractor no longer finds {expected - heard}"
    assert heard <= a.replies(), f"{bridge} waits for replies the daemon never sends: {heard - a.replies()}"


@pytest.mark.parametrize("address", ["/sao/gen", "/sao/pad/16", "/sao/set/bpm"])
def test_the_matcher_accepts_served_addresses(address):
    assert a.served(address)


@pytest.mark.parametrize("address", ["/sao/generate", "/sao/pad", "/sao/pad/1/2", "/sao/set", "/sao/gen/x"])
def test_the_matcher_rejects_what_no_row_takes(address):
    assert not a.served(address)


def test_readme_osc_table_is_generated_from_the_protocol():
    text = README.read_text()
    assert protocol.BEGIN in text and protocol.END in text, "README.md lost its generated OSC table markers"
    block = text.split(protocol.BEGIN, 1)[1].split(protocol.END, 1)[0]
    assert block == protocol.markdown(), "run: python -m sao_live.daemon.protocol README.md"


def test_readme_keeps_the_two_fresh_machine_commands():
    # .ci/run runs this test command, picked out of README.md by the line's end; it and the serve
    # command must not change unnoticed.
    text = README.read_text()
    ci = (a.ROOT / ".ci" / "run").read_text()
    assert "grep -m1 -E '^    .*python -m pytest$' README.md" in ci
    serve = ("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e . "
             "&& sao-live serve")  # fmt: skip
    test = ("S=$(command -v sudo); $S apt-get update && $S apt-get install -y --no-install-recommends jackd2 "
            "libportaudio2 liblo-tools puredata-core sox iproute2 chromium && python3 -m venv .venv && "
            '. .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[test,link,cluster]" && '
            "HF_HUB_OFFLINE=1 python -m pytest")  # fmt: skip
    assert f"    {serve}\n" in text and f"    {test}\n" in text
    assert [line for line in text.splitlines() if line.startswith("    ") and line.endswith("python -m pytest")] == [
        f"    {test}"
    ]  # the one line .ci/run finds


def test_readme_examples_exist():
    for path in ("examples/osc_client.py", "examples/midi_pads.py", "bridges/max/sao-live.maxpat",
                 "bridges/pd/sao-live.pd", "bridges/open-stage-control/sao-live.json"):  # fmt: skip
        assert path in README.read_text(), f"README.md does not mention {path}"
        assert Path(a.ROOT / path).is_file()
