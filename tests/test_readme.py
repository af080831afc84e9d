"""README's commands as someone pastes them into a shell."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _command(pattern: str) -> str:
    """The one indented command line of README.md that matches `pattern`."""
    lines = [line.strip() for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("    ")]
    found = [line for line in lines if re.search(pattern, line)]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="a Debian/Ubuntu command")
@pytest.mark.skipif(os.geteuid() != 0, reason="as a user, sudo would ask for a password")
def test_the_test_commands_package_step_runs_in_a_root_shell_without_sudo():
    """In a container or CI (root, often no sudo) the line runs as pasted; here apt-get only simulates."""
    command = _command(r"python -m pytest$")
    packages = command.split(" && python3 -m venv")[0]  # the system-package step
    simulated = packages.replace("apt-get update", "apt-get check").replace("apt-get install", "apt-get install -s")
    assert "apt-get install -s " in simulated
    env = dict(os.environ, PATH=os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                                  if not (Path(p) / "sudo").exists()))  # fmt: skip
    done = subprocess.run(["bash", "-c", simulated], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "command not found" not in done.stderr
    assert re.search(r"jackd2 is already the newest version|Inst jackd2", done.stdout), done.stdout
