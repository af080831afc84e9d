"""Clients that others wrote: liblo's oscsend/oscdump and Pure Data, talking to a real daemon.

Neither sends `/sao/hello`, so the replies go to their host on the daemon's reply port, where
oscdump (or Pd's [netreceive]) listens.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import soundfile as sf

from ..needs import need


@pytest.fixture(autouse=True, scope="module")
def _clients_installed():
    need("talking to real OSC clients (apt-get install liblo-tools puredata-core)", tools=["oscsend", "oscdump", "pd"])


class Lines:
    """Reads a subprocess's stream in a thread; `wait_for(text)` returns the first line holding it."""

    def __init__(self, stream):
        self.q: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [self.q.put(line) for line in iter(stream.readline, "")], daemon=True).start()

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise TimeoutError(f"no line with {text!r} within {timeout} s; saw {self.seen[-10:]}")


def oscsend(port: int, address: str, types: str, *args) -> None:
    subprocess.run(["oscsend", "127.0.0.1", str(port), address, types, *map(str, args)], check=True, timeout=10)


def test_oscsend_and_oscdump(shared_daemon):
    dump = subprocess.Popen(["oscdump", "-L", str(shared_daemon.reply_port)], stdout=subprocess.PIPE, text=True)
    try:
        lines = Lines(dump.stdout)
        token = uuid.uuid4().hex[:8]
        # oscdump prints nothing when it starts: ping until a pong shows it is listening.
        for _ in range(50):
            oscsend(shared_daemon.osc_port, "/sao/ping", "s", token)
            try:
                lines.wait_for(token, timeout=0.2)
                break
            except TimeoutError:
                continue
        prompt = f"liblo kick {token}"
        oscsend(shared_daemon.osc_port, "/sao/gen", "isfsisi", 4242, prompt, 0.5, "seed", 8, "steps", 2)
        queued = lines.wait_for("/sao/queued")
        assert queued.split()[-3:] == ["ii", "4242", "0"]
        done = lines.wait_for("/sao/done")
        # e.g. "/sao/done isfii 4242 "/tmp/.../liblo-kick-…_0.5s_s8.wav" 0.500000 8 0"
        fields = done.split()
        assert fields[2:4] == ["isfii", "4242"] and fields[-3:] == ["0.500000", "8", "0"]
        path = done.split('"')[1]
        assert Path(path).name == f"liblo-kick-{token}_0.5s_s8.wav" and sf.info(path).frames == 22050
        oscsend(shared_daemon.osc_port, "/sao/gen", "isf", 4243, "liblo", float("nan"))
        error = lines.wait_for("/sao/error")
        assert '4243 "bad_seconds"' in error
    finally:
        dump.kill()
        dump.wait()


PD_PATCH = """#N canvas 0 0 600 400 12;
#X obj 10 10 r go;
#X obj 10 40 oscformat sao gen;
#X obj 10 70 list prepend send;
#X obj 10 100 list trim;
#X obj 10 130 netsend -u -b;
#X obj 300 10 loadbang;
#X msg 300 40 connect 127.0.0.1 {osc_port};
#X obj 10 200 netreceive -u -b {reply_port};
#X obj 10 230 oscparse;
#X obj 10 260 list trim;
#X obj 10 290 print sao;
#X connect 0 0 1 0;
#X connect 1 0 2 0;
#X connect 2 0 3 0;
#X connect 3 0 4 0;
#X connect 5 0 6 0;
#X connect 6 0 4 0;
#X connect 7 0 8 0;
#X connect 8 0 9 0;
#X connect 9 0 10 0;
"""


def test_pure_data_sends_a_gen_and_hears_done(shared_daemon, tmp_path):
    patch = tmp_path / "sao.pd"
    patch.write_text(PD_PATCH.format(osc_port=shared_daemon.osc_port, reply_port=shared_daemon.reply_port))
    token = uuid.uuid4().hex[:6]
    # Pd sends every number as a float, and this prompt as separate atoms: "pd", "kick", token.
    message = f"go 31 pd kick x{token} 0.5 seed 12 steps 2"
    cmd = ["pd", "-nogui", "-noaudio", "-nomidi", "-stderr", "-open", str(patch), "-send", message]
    pd = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        lines = Lines(pd.stderr)
        done = lines.wait_for("sao: sao done", timeout=60)
        # [print sao] shows "sao: sao done 31 /…/pd-kick-x…_0.5s_s12.wav 0.5 12 0"
        fields = done.split()
        assert fields[3] == "31" and fields[-3:] == ["0.5", "12", "0"]
        assert Path(fields[4]).name == f"pd-kick-x{token}_0.5s_s12.wav" and Path(fields[4]).is_file()
        progress = [line for line in lines.seen if "sao: sao progress 31" in line]
        assert len(progress) == 2
    finally:
        pd.kill()
        pd.wait()
