"""Fixtures for the daemon tests: one shared daemon subprocess and a client of it."""

from __future__ import annotations

import pytest

from sao_live.testing.daemon import DaemonProcess


@pytest.fixture(scope="session")
def shared_daemon(tmp_path_factory, tiny_t5):
    """One daemon for the tests that do not stop, kill or reconfigure it."""
    # Export only, stated rather than left to the machine: the live suite's JACK server (its name is
    # in this process's environment) would otherwise be found when that suite happens to run first.
    config = dict(audio_device="none", midi_in="none")
    daemon = DaemonProcess(tmp_path_factory.mktemp("daemon"), tiny_t5, config=config).start()
    yield daemon
    code = daemon.stop()
    assert code == 0, f"the daemon exited with {code}:\n{daemon.log()}"
    assert "restarting it" not in daemon.log(), "nothing here kills the worker: it must never be restarted"


@pytest.fixture
def client(shared_daemon):
    c = shared_daemon.client()
    yield c
    c.close()
