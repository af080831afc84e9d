"""bridges/pd/sao-live.pd in real Pure Data against a real daemon, driven like a person would click it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
import soundfile as sf

from sao_live.testing.daemon import build

from ..daemon.test_clients import Lines
from . import addresses as a
from . import oscforms as forms

_PD_MISSING = shutil.which("pd") is None
if _PD_MISSING and os.environ.get("CI"):
    raise RuntimeError("CI needs puredata-core: pd is missing")
pytestmark = pytest.mark.skipif(_PD_MISSING, reason="needs puredata-core (apt)")


# A second patch that prints what reaches the timing and status displays (what their boxes receive).
PROBE = """#N canvas 0 50 450 300 12;
#X obj 20 20 r sao-timing-show;
#X obj 20 50 print probe-timing;
#X obj 220 20 r sao-status-show;
#X obj 220 50 print probe-status;
#X connect 0 0 1 0;
#X connect 2 0 3 0;
"""


def _display(receive: str) -> str:
    """The kind of atom box of the patch that shows what is sent to `receive`."""
    boxes = [w[1] for w in map(str.split, a.pd_lines()) if w[1] in ("listbox", "symbolatom") and w[9] == receive]
    assert len(boxes) == 1, f"{len(boxes)} boxes show {receive}"
    return boxes[0]


def _nth(lines: Lines, text: str, n: int = 0) -> str:
    """The n-th line holding `text` (0: the first), seen already or waited for."""
    while len(hits := [x for x in lines.seen if text in x]) <= n:
        lines.wait_for(text, timeout=10)
    return hits[n]


def _printed(lines: Lines, probe: str, n: int) -> str:
    """What the n-th line `probe` printed (0: the first) shows, without Pd's "list" in front."""
    return _nth(lines, f"{probe}: ", n).split(f"{probe}: ", 1)[1].strip().removeprefix("list ")


def test_patch_generates_and_hears_done(bridge_daemon, tmp_path):
    token = uuid.uuid4().hex[:6]
    # The same receivers the patch's boxes send to: prompt list box, seconds/seed/bars/bpm boxes, gen/trigger.
    sends = [
        f"sao-connect 127.0.0.1 {bridge_daemon.osc_port}",
        f"sao-listen {bridge_daemon.reply_port}",
        f"sao-prompt pd bridge kick x{token}",
        "sao-seconds 0.5",
        "sao-seed 12",
        "sao-gen bang",
        "sao-bars 1",
        "sao-bpm 240",
        "sao-trigger bang",
    ]
    probe = tmp_path / "probe.pd"
    probe.write_text(PROBE)
    cmd = ["pd", "-nogui", "-noaudio", "-nomidi", "-stderr", "-open", str(a.PD_PATCH), "-open", str(probe),
           "-send", "; ".join(sends)]  # fmt: skip
    pd = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        lines = Lines(pd.stderr)
        done = lines.wait_for("sao: sao done 1 ", timeout=60).split()
        # "sao: sao done 1 /…/pd-bridge-kick-x…_0.5s_s12.wav 0.5 12 0"
        path = Path(done[4])
        assert path.name == f"pd-bridge-kick-x{token}_0.5s_s12.wav" and done[-3:] == ["0.5", "12", "0"]
        assert sf.info(path).frames == 22050
        # the patch read the clip into its arrays: soundfiler reports the frames
        assert lines.wait_for("sao-loaded:", timeout=10).split()[-1] == "22050"
        loop = lines.wait_for("sao: sao done 2 ", timeout=60).split()
        # 1 bar of 4/4 at 240 bpm = 1 s; bpm went with bars, and the seed box still said 12
        assert Path(loop[4]).name == f"pd-bridge-kick-x{token}_240bpm_1bar_s12.wav" and loop[-3:-1] == ["1", "12"]
        progress = [line for line in lines.seen if "sao: sao progress 1 " in line]
        assert progress and progress[-1].split()[-1] == "1"
        assert not [line for line in lines.seen if "error" in line.lower()], lines.seen
        # After its /sao/done, the generated clip's /sao/timing (as Pd printed it): the timing box shows each
        # figure after its label; it was not played (gen), so "not streamed".
        timing_line = _nth(lines, "sao: sao timing 1 ")
        assert lines.seen.index(_nth(lines, "sao: sao done 1 ")) < lines.seen.index(timing_line), lines.seen
        timing = [float(x) for x in timing_line.split()[4:]]
        reply = dict(zip(forms.reply("/sao/timing"), [1, *timing], strict=True))
        assert reply["first_sound"] == -1 and reply["rtf"] > 0, reply
        assert _display("sao-timing-show") == "listbox"
        shown = _printed(lines, "probe-timing", 0)
        assert forms.timing_shown(shown) == pytest.approx(forms.timing_expected(reply), abs=0.006), shown
        # Replies from the table's columns (distinct figures, a streamed one) into the port the patch listens on,
        # once the loop's own timing is in (the third line the timing box gets)
        _nth(lines, "sao: sao timing 2 ")
        args, by_name = forms.sample_reply("/sao/timing")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(build("/sao/timing", *args), ("127.0.0.1", bridge_daemon.reply_port))
        shown = _printed(lines, "probe-timing", 2)
        assert forms.timing_shown(shown) == pytest.approx(forms.timing_expected(by_name), abs=0.006), shown
        args, by_name = forms.sample_reply("/sao/interrupted")
        sock.sendto(build("/sao/interrupted", *args), ("127.0.0.1", bridge_daemon.reply_port))
        sock.close()
        assert _display("sao-status-show") == "listbox"
        assert _printed(lines, "probe-status", 0).split() == ["interrupted", str(by_name["id"]), by_name["reason"]]
    finally:
        pd.kill()
        pd.wait()
