"""The shared skip for missing tools: a skip on a developer machine, a failure in CI."""

from __future__ import annotations

import pytest

from .needs import need


def test_a_missing_tool_skips_here_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-sao"):
        need("this", tools=["no-such-tool-sao"])
    with pytest.raises(pytest.skip.Exception, match="the no_such_module_sao module"):
        need("this", modules=["no_such_module_sao"])
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI installs every tool"):
        need("this", tools=["no-such-tool-sao"])
    need("this", tools=["sh"], modules=["json"])  # all there: nothing happens, in CI too
