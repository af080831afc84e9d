"""Fixtures for the live tests: a recorder, and one daemon playing into the session's JACK server."""

from __future__ import annotations

import pytest

from sao_live.testing.daemon import DaemonProcess
from sao_live.testing.jack import Recorder

SET_TEXT = """
name = "test-set"
bpm = 120
[defaults]
seconds = 0.5
steps = 2
[cc]
20 = "regenerate"
21 = "next_variation"
22 = "stop_all"
[[banks]]
name = "a"
[[banks.pads]]
prompt = "kick"
[[banks.pads]]
prompt = "hat closed"
choke = 1
[[banks.pads]]
prompt = "hat open"
choke = 1
seconds = 2.0
[[banks.pads]]
prompt = "pad gate"
mode = "gate"
seconds = 2.5
[[banks.pads]]
prompt = "loop"
bars = 1
mode = "loop"
[[banks.pads]]
prompt = "pooled"
variations = 2
[[banks]]
name = "b"
[[banks.pads]]
prompt = "other bank"
"""


@pytest.fixture(scope="session")
def live_daemon(tmp_path_factory, tiny_t5, jack_server):
    """A daemon with a set loaded, playing into JACK, with a virtual JACK MIDI port `sao-live`."""
    root = tmp_path_factory.mktemp("live")
    set_file = root / "test-set.toml"
    set_file.write_text(SET_TEXT)
    sets = root / "sets"  # what /sao/load reads from
    sets.mkdir()
    config = dict(audio_device="JACK", midi_api="UNIX_JACK", set_file=str(set_file), master_db=0.0,
                  velocity_curve=1.0, sets_dir=str(sets))  # fmt: skip
    daemon = DaemonProcess(root, tiny_t5, config=config).start(timeout=120)
    daemon.set_file, daemon.sets = set_file, sets
    yield daemon
    code = daemon.stop()
    assert code == 0, f"the daemon exited with {code}:\n{daemon.log()}"


@pytest.fixture(scope="session")
def recorder(live_daemon):
    rec = Recorder()
    rec.connect("PortAudio")
    yield rec
    rec.close()


@pytest.fixture
def live(live_daemon):
    c = live_daemon.client()
    yield c
    c.send("/sao/stop", "all")
    c.close()
