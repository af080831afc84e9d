"""Fixtures for the web page's tests: a daemon serving the page, and headless Chromium driven by Playwright.

The browser is Debian's `chromium` (Playwright's own browser download cannot run on these
machines), launched through its executable. Screenshots go to `test-output/web/` at the repo
root (git-ignored); the folder is printed at the end of the run.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from sao_live.testing.daemon import DaemonProcess

from ..needs import need

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "web"


def pytest_terminal_summary(terminalreporter) -> None:
    if OUTPUT.is_dir() and any(OUTPUT.iterdir()):
        terminalreporter.write_line(f"web page screenshots: {OUTPUT}")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def browser():
    need("the web page tests (apt-get install chromium; pip install playwright)", tools=["chromium"],
         modules=["playwright"])  # fmt: skip
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # autoplay: the audio element's time must advance without a speaker or a user gesture
        args = ["--autoplay-policy=no-user-gesture-required"]
        b = p.chromium.launch(executable_path=shutil.which("chromium"), args=args)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda err: errors.append(str(err)))
    p.set_default_timeout(30_000)
    yield p
    context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture(scope="module")
def web_daemon(tmp_path_factory, tiny_t5):
    """A daemon without sound, serving the page on 127.0.0.1."""
    root = tmp_path_factory.mktemp("web")
    sets = root / "sets"
    sets.mkdir()
    daemon = DaemonProcess(root, tiny_t5, config=dict(audio_device="none", midi_in="none", sets_dir=str(sets)))
    daemon.start()
    yield daemon
    code = daemon.stop()
    assert code == 0, f"the daemon exited with {code}:\n{daemon.log()}"


def wait_until(page, expression: str, timeout: float = 30.0):
    """Polls a JavaScript expression until it is truthy; returns its value. (Playwright's own
    `wait_for_function` evaluates strings with eval, which the page's content security policy forbids.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(f"() => ({expression})")
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression} stayed false for {timeout} s")
        time.sleep(0.05)


def wait_ready(page) -> None:
    """Until the page says the daemon's model is loaded."""
    page.locator("#status[data-ready='1']").wait_for(timeout=60_000)
