"""Tests that need something from outside the Python environment (jackd, liblo's tools, Pd, aalink).

On a developer machine without it such a test skips and says what to install. In CI (`CI` set,
and .ci/run installs everything) a missing tool fails the test instead, so a skip can never hide
a broken path there.
"""

from __future__ import annotations

import importlib
import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def need(what: str, *, tools=(), modules=(), problems=()) -> None:
    """Skips the calling test or fixture when a tool or module is missing (or `problems` lists
    another reason); fails it in CI. `what` names the test's purpose for the message."""
    missing = [f"{t} (not on PATH)" for t in tools if shutil.which(t) is None]
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(f"the {name} module")
    missing += list(problems)
    if missing:
        message = f"{what} needs {', '.join(missing)}"
        if in_ci():
            pytest.fail(f"{message}; CI installs every tool the tests use", pytrace=False)
        pytest.skip(message)
