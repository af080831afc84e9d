"""The daemon plays into a JACK server (dummy backend) and a JACK client records it (real parts)."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf
import soxr

from sao_live.live.sets import SetError, load_set
from sao_live.testing.jack import onset

from ..needs import need
from .jack_helpers import attempts, best_lag

RATE = 48000


def clip_of(daemon, client, prompt_id, seconds=0.5):
    """Generates a clip under `prompt_id` and returns it at the JACK rate, (frames, 2)."""
    addr, args = client.request("/sao/gen", prompt_id, f"clip {prompt_id}", seconds, "steps", 2, "export", 0)
    assert addr == "/sao/done", args
    audio, sr = sf.read(args[1], dtype="float32", always_2d=True)
    return soxr.resample(audio, sr, RATE, quality="HQ")


def wait_playable(client, prompt_id, gain):
    """Plays `prompt_id` until it plays: its take is prepared on the daemon's thread after /sao/done."""
    for _ in range(50):
        client.send("/sao/play", prompt_id, gain)
        if client.wait_reply(prompt_id, ("/sao/playing", "/sao/error"), timeout=10)[0] == "/sao/playing":
            return
        time.sleep(0.02)
    pytest.fail(f"{prompt_id} never became playable")


def play_and_record(client, recorder, address, *args, frames=RATE):
    mark = recorder.mark()
    client.send(address, *args)
    reply = client.wait_for("/sao/playing", timeout=10)
    return reply, recorder.wait(frames, mark)


def test_played_clip_is_the_clip(live_daemon, live, recorder):
    ref = clip_of(live_daemon, live, "c1")
    gain = float(0.5 / np.abs(ref).max())  # below the limiter's ceiling: the mix is linear
    wait_playable(live, "c1", gain)
    live.send("/sao/stop", "all")
    time.sleep(0.05)
    reply, rec = play_and_record(live, recorder, "/sao/play", "c1", float(gain))
    lag, corr = best_lag(rec, ref)
    assert corr > 0.99, corr
    np.testing.assert_allclose(rec[lag : lag + len(ref)], gain * ref, atol=2e-3)


def test_polyphony_sums(live_daemon, live, recorder):
    ref = clip_of(live_daemon, live, "c2")
    gain = float(0.2 / np.abs(ref).max())  # two copies stay below the limiter's ceiling: the mix is linear
    wait_playable(live, "c2", gain)
    live.send("/sao/stop", "all")
    time.sleep(0.05)
    mark = recorder.mark()
    live.send("/sao/play", "c2", float(gain))
    live.send("/sao/play", "c2", float(gain))
    for _ in range(2):
        assert live.wait_reply("c2", ("/sao/playing", "/sao/error"))[0] == "/sao/playing"
    rec = recorder.wait(RATE, mark)
    # Two copies of the clip at its gain, started in the same period (one copy at twice the level)
    # or a few periods apart: find one, take it away, find the other, and the rest is silence.
    first, _ = best_lag(rec, ref)
    rest = rec.copy()
    rest[first : first + len(ref)] -= gain * ref
    second, corr = best_lag(rest, ref)
    assert corr > 0.99 and abs(second - first) < RATE // 20, (first, second, corr)
    rest[second : second + len(ref)] -= gain * ref
    assert np.abs(rest).max() < 4e-3, np.abs(rest).max()


def test_choke_stops_the_other_voice_with_a_fade(live, recorder):
    _, rec = play_and_record(
        live, recorder, "/sao/play", "pad3", 1.0, frames=RATE // 2
    )  # open hat (2 s, choke 1); the tiny model peaks near -12 dBFS
    level = np.abs(rec[-RATE // 10 :]).max()
    assert level > 0.005
    mark = recorder.mark()
    live.send("/sao/play", "pad2", 0.0)  # closed hat, same group, silent: what is left is the open hat's fade
    live.wait_for("/sao/playing", timeout=10)
    rec = recorder.wait(RATE // 2, mark)
    end = len(rec) - onset(rec[::-1], 1e-6)
    assert end < RATE // 4  # the 2 s open hat is gone
    fade = rec[max(0, end - 480) : end]  # 10 ms at 48 kHz
    assert np.abs(fade[:96]).max() > 0.3 * level  # still loud as the fade begins ...
    assert np.abs(fade[-48:]).max() < 0.15 * level  # ... and near silence at its end: no cut


def test_loop_seam_has_no_click(live, recorder):
    for last in attempts(recorder):  # again only if the recorder itself lost a period (jack_helpers)
        live.send("/sao/stop", "all")
        mark = recorder.silence()  # no earlier voice is still fading out: the first sound from here is the loop's
        live.send("/sao/play", "pad5", 1.0)  # 1 bar at 120: 2 s
        live.wait_for("/sao/playing", timeout=10)
        start = recorder.sound(mark)  # however long the play took to arrive
        rec = recorder.wait(2 * RATE + RATE // 2, start)  # the loop, and half a second of its repeat
        live.send("/sao/stop", "pad5")
        if not recorder.skipped(start, len(rec)):
            break
        assert not last, "the recorder missed or repeated a period in every attempt"
    loop, again = rec[: 2 * RATE], rec[2 * RATE :]
    np.testing.assert_allclose(again, loop[: len(again)], atol=1e-5)  # repeats exactly, 96000 frames later
    seam = np.abs(rec[2 * RATE] - rec[2 * RATE - 1]).max()
    typical = np.percentile(np.abs(np.diff(loop, axis=0)), 99.9)
    assert seam <= typical, (seam, typical)


def test_status_reports_the_player(live):
    live.send("/sao/status")
    status = live.wait_for("/sao/status", timeout=10)
    audio, voices, underruns, errors, bpm, set_name, bank, stolen = status[6:]
    assert audio == 1 and errors == 0 and set_name == "test-set" and bpm == 120.0 and bank == 0
    assert isinstance(underruns, int) and isinstance(stolen, int)
    time.sleep(0.2)
    live.send("/sao/status")
    later = live.wait_for("/sao/status", timeout=10)[8]
    assert underruns <= later  # counters since the start: they never go back (the benchmark measures them)


def test_unknown_pad_and_bank_switch(live):
    live.send("/sao/pad/9", 1.0)
    assert live.wait_for("/sao/error", timeout=10)[1] == "unknown_pad"
    live.send("/sao/bank", 1)
    assert live.wait_for("/sao/value", timeout=10) == ("bank", 1)
    live.send("/sao/pad/1", 1.0)
    assert live.wait_for("/sao/playing", timeout=10)[0] == "pad1"
    live.send("/sao/bank", 0)
    live.wait_for("/sao/value", timeout=10)


def test_pool_plays_a_new_take_then_the_nearest(live):
    seeds = []
    for _ in range(3):
        live.send("/sao/pad/6", 1.0)
        seeds.append(live.wait_for("/sao/playing", timeout=10))
    assert seeds[0][2] != seeds[1][2] and [s[3] for s in seeds[:2]] == [0, 0]  # two variations: two takes
    # The third is a fresh take from the refilled pool (nearest 0, a seed not played yet), or, when
    # the refill is not ready, the take played last again (nearest 1, its seed).
    third = seeds[2]
    assert (third[3], third[2] in {seeds[0][2], seeds[1][2]}) in [(0, False), (1, True)], seeds
    assert third[3] == 0 or third[2] == seeds[1][2], seeds


def test_broken_set_is_rejected_with_its_line_and_the_running_one_stays(live_daemon, live):
    broken = live_daemon.sets / "broken.toml"
    broken.write_text(live_daemon.set_file.read_text().replace('mode = "gate"', 'mode = "gait"'))
    with pytest.raises(SetError, match="gait"):  # the command line shows the value
        load_set(broken)
    line = next(i for i, t in enumerate(broken.read_text().splitlines(), 1) if "gait" in t)
    live.send("/sao/load", "broken")
    err = live.wait_for("/sao/error", timeout=10)
    assert err[1] == "bad_set" and err[2].startswith(f"broken.toml:{line}:") and "mode: must be" in err[2]
    assert "gait" not in err[2]  # an OSC client hears where and what is expected, not the file's values
    live.send("/sao/status")
    assert live.wait_for("/sao/status", timeout=10)[11] == "test-set"


def pad_sound(live, recorder, pad: int, gain: float, frames: int = RATE // 2) -> np.ndarray:
    """What pad `pad` sounds like at `gain` (through the same mixer and limiter), from its onset."""
    live.send("/sao/stop", "all")
    time.sleep(0.1)
    _, rec = play_and_record(live, recorder, "/sao/play", f"pad{pad}", gain, frames=frames + RATE // 2)
    live.send("/sao/stop", "all")
    time.sleep(0.1)
    start = onset(rec)
    assert start is not None and start + frames <= len(rec), start
    return rec[start : start + frames]


def test_midi_notes_from_jack_midiseq_play_pads(live, recorder):
    need("MIDI from another JACK client (apt-get install jackd2)", tools=["jack_midiseq", "jack_connect"])
    # Pad 1's sound at jack_midiseq's velocity (64), and another pad's, to tell them apart.
    kick, other = pad_sound(live, recorder, 1, 64 / 127, RATE // 4), pad_sound(live, recorder, 2, 64 / 127, RATE // 4)
    # jack_midiseq NAME LOOP_FRAMES START NOTE LENGTH: note 36 (pad 1) at the start of every 0.5 s
    seq = subprocess.Popen(["jack_midiseq", "sao-test-seq", str(RATE // 2), "0", "36", "2400"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        live.send("/sao/stop", "all")
        time.sleep(0.1)
        silent = recorder.wait(RATE // 4, recorder.mark())
        for _ in range(100):
            if (
                subprocess.run(
                    ["jack_connect", "sao-test-seq:out", "sao-live:sao-live"], capture_output=True
                ).returncode
                == 0
            ):
                break
            time.sleep(0.05)
        else:
            pytest.fail("could not connect jack_midiseq to sao-live")
        rec = recorder.wait(RATE, recorder.mark())
        assert np.abs(silent).max() < 1e-4
        lag, corr = best_lag(rec, kick)
        assert corr > 0.95 and best_lag(rec, other)[1] < corr - 0.1, (corr, best_lag(rec, other)[1])
        np.testing.assert_allclose(rec[lag : lag + len(kick)], kick, atol=0.05 * np.abs(kick).max())
    finally:
        seq.terminate()
        seq.wait(5)


def test_midi_from_a_second_rtmidi_client(live, recorder):
    import mido

    gate, other = pad_sound(live, recorder, 4, 100 / 127, RATE // 4), pad_sound(live, recorder, 1, 100 / 127, RATE // 4)
    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    names = [n for n in backend.get_output_names() if n.startswith("sao-live")]
    assert names, backend.get_output_names()
    with backend.open_output(names[0]) as out:
        live.send("/sao/stop", "all")
        time.sleep(0.1)
        mark = recorder.mark()
        out.send(mido.Message("note_on", note=39, velocity=100))  # pad 4: gate
        held = recorder.wait(RATE // 2, mark)
        out.send(mido.Message("note_off", note=39))
        time.sleep(0.2)
        after = recorder.wait(RATE // 4, recorder.mark())
    # Pad 4's sound at velocity 100 (velocity curve 1: gain 100/127), not any sound.
    lag, corr = best_lag(held, gate)
    assert corr > 0.95 and best_lag(held, other)[1] < corr - 0.1, (corr, best_lag(held, other)[1])
    np.testing.assert_allclose(held[lag : lag + len(gate)], gate, atol=0.05 * np.abs(gate).max())
    assert np.abs(after).max() < 1e-4  # the gate voice ended on note-off (2.5 s clip)


def test_the_worker_threads_follow_the_audio_callbacks_scheduling(live_daemon, live):
    """The session's jackd runs without realtime scheduling unless SAO_JACK_REALTIME=1: then the
    worker leaves a core to the player; with it, it takes every core."""
    realtime = os.environ.get("SAO_JACK_REALTIME") == "1"
    n = len(os.sched_getaffinity(0))
    threads = n if realtime else max(1, n - 1)
    beside = "a realtime audio callback" if realtime else "an audio callback at normal priority"
    live.send("/sao/status")
    live.wait_for("/sao/status")  # the daemon is up; its choice is made after the stream's first callback
    log = live_daemon.log()
    assert f"worker: {threads} torch threads ({beside})" in log, log[-3000:]
    assert f"{threads} torch threads from now on" in log  # the worker applied it
