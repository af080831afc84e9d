"""bridges/pd/sao-live.pd in real Pure Data against a real daemon, driven like a person would click it."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import soundfile as sf

from ..daemon.test_clients import Lines
from . import addresses as a

_PD_MISSING = shutil.which("pd") is None
if _PD_MISSING and os.environ.get("CI"):
    raise RuntimeError("CI needs puredata-core: pd is missing")
pytestmark = pytest.mark.skipif(_PD_MISSING, reason="needs puredata-core (apt)")


def test_patch_generates_and_hears_done(bridge_daemon):
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
    cmd = ["pd", "-nogui", "-noaudio", "-nomidi", "-stderr", "-open", str(a.PD_PATCH), "-send", "; ".join(sends)]
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
    finally:
        pd.kill()
        pd.wait()
