"""How many torch threads the worker takes: every core, one fewer beside an audio callback that is
not realtime (the live test beside JACK checks the daemon's choice end to end)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sao_live.daemon.worker import cores, threads_beside

ASK = "from sao_live.daemon.worker import cores, threads_beside; print(cores(), threads_beside(False))"


def test_every_core_unless_the_callback_is_not_realtime():
    n = len(os.sched_getaffinity(0))
    assert cores() == n
    assert threads_beside(None) == threads_beside(True) == n
    assert threads_beside(False) == max(1, n - 1)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to pin to one of them")
def test_one_core_is_one_thread_whatever_the_player():
    one = min(os.sched_getaffinity(0))
    out = subprocess.run(["taskset", "-c", str(one), sys.executable, "-c", ASK], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]
