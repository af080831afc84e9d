"""The daemon's live parts against real JACK and rtmidi: devices, /sao/loop, MIDI clock, CC actions,
quantised launch and stolen voices."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from sao_live.testing.jack import onset

from ..daemon.daemon_helpers import riff_chunks
from ..needs import need

RATE = 48000


def status(client) -> tuple:
    client.send("/sao/status")
    return client.wait_for("/sao/status", timeout=10)


def midi_out():
    import mido

    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    names = [n for n in backend.get_output_names() if n.startswith("sao-live")]
    assert names, backend.get_output_names()
    return mido, backend.open_output(names[0])


def until(check, timeout=20.0, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def test_devices_lists_the_jack_device_and_midi_ports(live_daemon):
    env = dict(os.environ, XDG_CONFIG_HOME=str(live_daemon.root / "xdg-config"))
    done = subprocess.run([sys.executable, "-m", "sao_live.cli", "devices", "--midi-api", "UNIX_JACK"],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    audio, midi = done.stdout.split("MIDI inputs")
    jack = [line for line in audio.splitlines() if "[JACK Audio Connection Kit]" in line]
    assert jack and "48000 Hz" in jack[0] and "2 ch" in jack[0], done.stdout
    assert "API UNIX_JACK" in midi and "sao-live:sao-live" in midi.split("MIDI outputs:")[1], done.stdout


def test_loop_over_osc_is_exact_and_carries_its_tempo(live_daemon, live):
    addr, args = live.request("/sao/loop", "L1", "deep techno", 1, 90)  # the tiny model's window is 2.97 s
    assert addr == "/sao/done", args
    path = Path(args[1])
    assert path.name.startswith("deep-techno-90-bpm_90bpm_1bar_")  # the prompt gained "90 BPM"
    info = sf.info(path)
    assert info.frames == round(240 / 90 * info.samplerate)  # 2.667 s, to the sample
    acid = riff_chunks(path)[b"acid"]
    flags, _root, _, _, beats, _den, _num, tempo = struct.unpack("<IHHfIHHf", acid)
    assert tempo == 90.0 and beats == 4 and not flags & 0x01
    live.send("/sao/stop", "L1")
    for bad, code in (((0,), "bad_bars"), ((1, 1000), "bad_bpm"), ((1, 10), "bad_bpm"), (("x",), "bad_bars")):
        live.send("/sao/loop", "bad", "deep techno", *bad)
        addr, args = live.wait_reply("bad", timeout=10)
        assert addr == "/sao/error" and args[1] == code, (bad, args)


def send_clock(out, mido, bpm: float, ticks: int) -> None:
    """`ticks` MIDI clock messages at `bpm` (24 per beat), on an absolute schedule."""
    step, t0 = 60.0 / (24 * bpm), time.monotonic()
    for k in range(ticks):
        time.sleep(max(0.0, t0 + k * step - time.monotonic()))
        out.send(mido.Message("clock"))


def test_midi_clock_sets_the_tempo(live):
    mido, out = midi_out()
    live.send("/sao/set/tempo_source", "midi")
    assert live.wait_for("/sao/value", timeout=10) == ("tempo_source", "midi")
    try:
        out.send(mido.Message("start"))
        send_clock(out, mido, 100.0, 49)  # two beats
        time.sleep(0.2)
        assert status(live)[10] == pytest.approx(100.0, abs=3.0)
        live.send("/sao/get/bpm")
        assert live.wait_for("/sao/value", timeout=10)[1] == pytest.approx(100.0, abs=3.0)
        out.send(mido.Message("stop"))
        time.sleep(0.5)
        out.send(mido.Message("start"))  # Start forgets the ticks before the pause
        send_clock(out, mido, 140.0, 20)  # fewer than a beat + 1: the pause would count
        time.sleep(0.2)
        assert status(live)[10] == pytest.approx(140.0, abs=5.0)
    finally:
        out.close()
        live.send("/sao/set/tempo_source", "fixed")
        live.wait_for("/sao/value", timeout=10)
        live.send("/sao/set/bpm", 120.0)
        live.wait_for("/sao/value", timeout=10)
    assert status(live)[10] == 120.0


def settle(live) -> int:
    """The cache's clip count once no job is queued or running (background refills done)."""
    last = None
    for _ in range(200):
        s = status(live)
        if s[1] == 0 and s[2] == 0 and s[3] == last:
            return last
        last = s[3] if s[1] == 0 and s[2] == 0 else None
        time.sleep(0.15)
    pytest.fail(f"the daemon did not settle: {s}")


def test_cc_actions_of_the_set(live):
    mido, out = midi_out()
    try:
        out.send(mido.Message("note_on", note=41, velocity=100))  # pad 6 (2 variations): the last pad hit
        time.sleep(0.3)  # its refill is queued before settle() looks
        clips = settle(live)
        out.send(mido.Message("control_change", control=21, value=127))  # next variation: one new take
        assert until(lambda: settle(live) == clips + 1), "next_variation asked for no new take"
        clips += 1
        out.send(mido.Message("control_change", control=20, value=127))  # regenerate: a new pool of two
        assert until(lambda: settle(live) == clips + 2), "regenerate did not refill the pool"
        live.send("/sao/play", "pad5", 0.0)  # a loop: plays until stopped
        live.wait_for("/sao/playing", timeout=10)
        assert until(lambda: status(live)[7] >= 1, timeout=5)
        out.send(mido.Message("control_change", control=22, value=127))  # stop all
        assert until(lambda: status(live)[7] == 0, timeout=5), "stop_all left voices playing"
    finally:
        out.close()


def test_quantized_launch_lands_on_the_beat(live, recorder):
    live.send("/sao/set/quantize", "beat")
    assert live.wait_for("/sao/value", timeout=10) == ("quantize", "beat")
    try:
        live.send("/sao/stop", "all")
        time.sleep(0.1)
        mark = recorder.mark()
        onsets = []
        for pause in (0.0, 0.63):  # pad 1 is 0.5 s: one beat at 120 bpm; the second hit is >= 2 beats later
            time.sleep(pause)
            live.send("/sao/play", "pad1", 0.002)
            live.wait_for("/sao/playing", timeout=10)
            rec = recorder.wait(RATE * 3 // 2, mark) if not onsets else recorder.wait(4 * RATE, mark)
            onsets.append(onset(rec[onsets[-1] + RATE // 2 + 1 :] if onsets else rec, 1e-6))
        first, second = onsets[0], onsets[0] + RATE // 2 + 1 + onsets[1]
    finally:
        live.send("/sao/set/quantize", "off")
        live.wait_for("/sao/value", timeout=10)
    beat = RATE // 2  # 24000 frames at 120 bpm
    gap = second - first
    assert gap >= 2 * beat - 2 and abs(gap - beat * round(gap / beat)) <= 2, (first, second, gap)


def test_stolen_voices_are_counted(live):
    before = status(live)[13]
    for _ in range(34):  # 32 voices: the 33rd and 34th loop steal the oldest
        live.send("/sao/play", "pad5", 0.0)
    for _ in range(34):
        live.wait_for("/sao/playing", timeout=10)
    assert until(lambda: status(live)[13] >= before + 2, timeout=5)
    live.send("/sao/stop", "all")


def test_link_peer_sets_the_daemon_tempo(tmp_path, tiny_t5):
    """Daemon and peer share a network namespace of their own (unshare -n): no packet leaves the machine."""
    import json

    need("the Link test (pip install sao-live[link])", tools=["unshare", "ip"], modules=["aalink"])
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        need("the Link test", problems=["permission for unshare -n (root or CAP_SYS_ADMIN)"])
    root = Path(__file__).resolve().parents[2]
    script = f'ip link set lo up && exec "{sys.executable}" -m tests.live.link_session "{tmp_path}" "{tiny_t5}"'
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(root))
    done = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, cwd=root, env=env,
                          timeout=150)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, result["log"]
    assert result["peers"] >= 1, result["log"]
    assert result["bpm"] == pytest.approx(133.0, abs=0.01), result
    assert result["param_bpm"] == pytest.approx(133.0, abs=0.01), result
    assert [133.0, "link"] in [list(t) for t in result["tempo"]], result


def test_midi_input_errors_name_what_was_asked_for(jack_server):
    from sao_live.live.midi import MidiError, MidiIn

    with pytest.raises(MidiError, match="MIDI API 'NO_SUCH_API' is not available"):
        MidiIn.open(None, "NO_SUCH_API", None, print)
    with pytest.raises(MidiError, match="matches no MIDI input"):
        MidiIn.open("no such port anywhere", "UNIX_JACK", None, print)
