"""The page's pads: load a set from the daemon's sets folder, switch banks, hit pads by click and by key;
a JACK client records what the daemon plays (real parts: JACK's dummy backend, headless Chromium)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf
import soxr

from sao_live.testing.daemon import DaemonProcess
from sao_live.testing.jack import Recorder

from ..live.jack_helpers import best_lag
from .conftest import wait_ready

RATE = 48000
SET_TEXT = """
name = "web-set"
bpm = 120
[defaults]
seconds = 0.5
steps = 2
[[banks]]
[[banks.pads]]
prompt = "web kick"
seed = 11
[[banks.pads]]
prompt = "web snare"
seed = 12
[[banks]]
[[banks.pads]]
prompt = "web other bank"
seed = 13
"""


@pytest.fixture(scope="module")
def jack_daemon(tmp_path_factory, tiny_t5, jack_server):
    """A daemon playing into the session's JACK server, recorded from its own PortAudio client
    (the live suite's daemon may be playing into the same server under the name PortAudio)."""
    root = tmp_path_factory.mktemp("web-pads")
    sets = root / "sets"
    sets.mkdir()
    (sets / "web-set.toml").write_text(SET_TEXT)
    (sets / "other.toml").write_text(SET_TEXT.replace("web-set", "other"))
    config = dict(audio_device="JACK", midi_in="none", sets_dir=str(sets), master_db=-20.0, velocity_curve=1.0)
    recorder = Recorder(name="sao-web-rec")
    before = {p.name for p in recorder.client.get_ports(is_output=True, is_audio=True)}
    daemon = DaemonProcess(root, tiny_t5, config=config).start(timeout=120)
    deadline = time.monotonic() + 20
    while not (ours := [p.name for p in recorder.client.get_ports(is_output=True, is_audio=True)
                        if p.name.startswith("PortAudio") and p.name not in before]):  # fmt: skip
        assert time.monotonic() < deadline, "the daemon's PortAudio client never appeared in JACK"
        time.sleep(0.05)
    recorder.connect(ours[0].split(":")[0] + ":")
    yield daemon, recorder
    recorder.close()
    daemon.stop()


def clip_of(daemon, prompt: str, seed: int) -> np.ndarray:
    """The pad's clip at the JACK rate: the same request over OSC is answered from the cache."""
    with daemon.client() as osc:
        address, args = osc.request("/sao/gen", "ref", prompt, 0.5, "steps", 2, "seed", seed, "export", 0)
    assert address == "/sao/done" and args[4] == 1, args  # cached: the set's own take
    audio, sr = sf.read(args[1], dtype="float32", always_2d=True)
    return soxr.resample(audio, sr, RATE, quality="HQ")


def recorded(recorder, act) -> np.ndarray:
    mark = recorder.mark()
    act()
    return recorder.wait(RATE, mark)


def test_load_a_set_switch_banks_and_hit_pads(jack_daemon, page, screenshots):
    daemon, recorder = jack_daemon
    page.goto(daemon.web_url)
    wait_ready(page)
    assert page.locator("#set-list option").all_inner_texts() == ["other", "web-set"]
    page.select_option("#set-list", "web-set")
    page.click("#load")
    page.locator(".pad.ready", has_text="web snare").wait_for(timeout=60_000)
    assert "web-set" in page.inner_text("#set-name")
    assert page.locator(".pad").count() == 2

    page.select_option("#bank", "1")
    page.locator(".pad", has_text="web other bank").wait_for()
    page.select_option("#bank", "0")
    page.locator(".pad", has_text="web kick").wait_for()

    kick, snare = clip_of(daemon, "web kick", 11), clip_of(daemon, "web snare", 12)
    rec = recorded(recorder, lambda: page.click(".pad[data-pad='1']"))
    assert best_lag(rec, kick)[1] > 0.95
    assert best_lag(rec, kick)[1] > best_lag(rec, snare)[1]
    page.evaluate("() => document.activeElement.blur()")  # keys go to the page, not a field
    rec = recorded(recorder, lambda: page.keyboard.press("2"))
    assert best_lag(rec, snare)[1] > 0.95
    assert page.inner_text("#err-pads") == ""

    # the library plays a clip on the daemon's player too (the set's takes are in the cache)
    row = page.locator("#library li", has_text="web kick").first
    rec = recorded(recorder, lambda: row.locator("button.daemon").click())
    assert best_lag(rec, kick)[1] > 0.95
    assert page.inner_text("#err-library") == ""

    page.screenshot(path=str(screenshots / "pads-1280x800.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("#pads-s").scroll_into_view_if_needed()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(screenshots / "pads-390x844.png"))


def test_a_set_name_outside_the_folder_is_refused(jack_daemon, page):
    daemon, _ = jack_daemon
    page.goto(daemon.web_url)
    wait_ready(page)
    answer = page.evaluate(
        """async () => {
          const r = await fetch('/api/load', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                              body: JSON.stringify({name: '../../etc/passwd'})});
          return [r.status, await r.json()];
        }"""
    )
    assert answer[0] == 400 and answer[1]["error"]["code"] == "bad_set_name", answer
