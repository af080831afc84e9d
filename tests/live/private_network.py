"""Runs a function in a forked child that has a network namespace of its own (loopback only).

Ableton Link peers find each other by multicast on every interface; in a namespace of its own a
test's peers meet only each other (never another test's session on this machine) and no packet
leaves it. The child is forked, not started afresh, so it runs the very code the test imported
(a mutation run's changed module included). Root unshares the network alone; anyone else gets a
user namespace with it, where they are root.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import subprocess
import time
import traceback

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000


def _unshare_network() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
            raise PermissionError(ctypes.get_errno(), "unshare of the network namespace")
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)


def can_unshare() -> bool:
    try:
        return run(lambda: True, timeout=10)
    except AssertionError:
        return False


def run(fn, timeout: float = 60):
    """fn()'s result (picklable), computed in a forked child inside its own network namespace;
    the child's exception, with its traceback, is raised here as an AssertionError."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read)
            try:
                _unshare_network()
                outcome = (True, fn())
            except BaseException:  # noqa: BLE001 - everything goes back to the test
                outcome = (False, traceback.format_exc())
            with os.fdopen(write, "wb") as f:
                pickle.dump(outcome, f)
        finally:
            os._exit(0)
    os.close(write)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while chunk := _read(read, deadline):  # until the child closes its end
            chunks.append(chunk)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError(f"the child in its own network namespace took more than {timeout} s") from None
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    data = b"".join(chunks)
    if not data:
        raise AssertionError("the child in its own network namespace died without an answer")
    ok, value = pickle.loads(data)
    if not ok:
        raise AssertionError(f"in the child:\n{value}")
    return value


def _read(fd: int, deadline: float) -> bytes:
    if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        raise TimeoutError
    return os.read(fd, 1 << 16)
