"""Fixtures for the bridge tests: one real daemon (tiny model) that the Pd patch and the examples talk to."""

from __future__ import annotations

import pytest

from sao_live.testing.daemon import DaemonProcess


@pytest.fixture(scope="session")
def bridge_daemon(tmp_path_factory, tiny_t5):
    daemon = DaemonProcess(tmp_path_factory.mktemp("bridge-daemon"), tiny_t5).start()
    yield daemon
    code = daemon.stop()
    assert code == 0, f"the daemon exited with {code}:\n{daemon.log()}"
