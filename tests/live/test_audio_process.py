"""The audio process on its own (Player API, recorded through JACK) and as the daemon's child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sao_live.live.mixer import ONESHOT
from sao_live.live.player import CHUNK_BYTES, NoAudioDevice, Player
from sao_live.testing.daemon import DaemonProcess, pid_gone
from sao_live.testing.jack import RATE, JackServer, Recorder

from .jack_helpers import attempts, best_lag

pytestmark = pytest.mark.usefixtures("jack_server")


def jack_clients() -> set[str]:
    import jack

    c = jack.Client("sao-test-lister", no_start_server=True)
    try:
        return {p.name.split(":")[0] for p in c.get_ports(is_output=True, is_audio=True)}
    finally:
        c.close()


@pytest.fixture
def player_and_recorder():
    """A Player in this test's process, and a recorder connected to its JACK ports only."""
    before = jack_clients()
    player = Player.open("JACK", voices=8, master_db=0.0)
    new = sorted(jack_clients() - before)
    assert new, "the player's JACK client did not appear"
    rec = Recorder(seconds=30, name="sao-test-rec-ap")
    rec.connect(new[0] + ":")
    yield player, rec
    rec.close()
    player.close()


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal((round(seconds * RATE), 2))).astype(np.float32)


def periods_off(got: np.ndarray, want: np.ndarray, period: int = 256) -> int:
    """How many periods of `got` differ from `want` (the first `len(want)` frames)."""
    diff = np.abs(got[: len(want)] - want).max(axis=1)
    return int(sum(diff[i : i + period].max() > 1e-6 for i in range(0, len(want), period)))


def recorded(rec, mark: int, frames: int) -> np.ndarray | None:
    """The recording from `mark` until `frames` after the first sound (however long the play took
    to arrive); None when the recorder itself missed or repeated a period (see jack_helpers)."""
    start = rec.sound(mark)
    got = rec.wait(start - mark + frames + RATE // 10, mark)
    return None if rec.skipped(mark, len(got)) else got


def play_recorded(player, rec, take, frames: int, before_poll=None) -> np.ndarray:
    """Plays `take` and records it; again (a bounded number of times) only if the recorder lost a period."""
    for last in attempts(rec):
        rec.silence()
        mark = rec.mark()
        player.play(take, 0.5, ONESHOT, 0, "t")
        if before_poll is not None:
            before_poll()
        got = recorded(rec, mark, frames)
        if got is not None:
            return got
        assert not last, "the recorder missed or repeated a period in every attempt"


def test_a_clip_sent_in_chunks_plays_exactly(player_and_recorder):
    player, rec = player_and_recorder
    clip = noise(3.0)
    assert clip.nbytes > 4 * CHUNK_BYTES  # it travels in several chunks
    take = player.load(clip)
    got = play_recorded(player, rec, take, len(clip))
    lag, corr = best_lag(got, clip)
    assert corr > 0.99, corr
    assert periods_off(got[lag:], 0.5 * clip) == 0  # every period exact
    assert player.frame > len(clip) and player.errors == 0


def test_a_take_dropped_while_playing_plays_to_its_end(player_and_recorder):
    player, rec = player_and_recorder
    clip = noise(1.0, seed=1)
    got = None
    for last in attempts(rec):
        take = player.load(clip)
        rec.silence()
        mark = rec.mark()
        player.play(take, 0.5, ONESHOT, 0, "t")
        del take  # its finalizer queues the free (no gc.collect: a GIL hog here would make the recorder drop periods)
        player.poll()  # sends the free now: the audio process keeps the clip until its voice ends
        got = recorded(rec, mark, len(clip))
        if got is not None:
            break
        assert not last, "the recorder missed or repeated a period in every attempt"
    lag, corr = best_lag(got, clip)
    assert corr > 0.99 and periods_off(got[lag:], 0.5 * clip) == 0  # as above
    tail = slice(len(clip) - RATE // 10, len(clip))
    np.testing.assert_allclose(got[lag:][tail], 0.5 * clip[tail], atol=1e-6)  # the end is there


def test_dropped_takes_are_freed_in_the_audio_process(player_and_recorder):
    player, _ = player_and_recorder
    kept = player.load(noise(0.5))
    for i in range(10):
        take = player.load(noise(2.0, seed=i))
        player.play(take, 0.01, ONESHOT, 0, "t")
        del take  # while it plays: kept there until its voice ends, then let go
        player.poll()
    assert player.clips_held() >= 2  # not all gone at once: the played ones wait for their voices
    deadline = time.monotonic() + 10
    while player.clips_held() != 1:  # only `kept` is left
        assert time.monotonic() < deadline, f"the audio process still holds {player.clips_held()} clips"
        time.sleep(0.1)
    assert player.play(kept, 0.01, ONESHOT, 0, "k") >= 0


def test_no_device_is_a_clear_error():
    with pytest.raises(NoAudioDevice, match="matches no output device"):
        Player.open("no-such-device-anywhere")


def audio_pid(daemon: DaemonProcess, client) -> int:
    """The daemon's child that is neither the worker nor multiprocessing's resource tracker."""
    worker = daemon.worker_pid(client)
    pids = [p for p in daemon.children()
            if p != worker and b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]  # fmt: skip
    assert len(pids) == 1, pids
    return pids[0]


def test_a_killed_audio_process_is_restarted_with_its_takes(tmp_path, tiny_t5):
    config = dict(audio_device="JACK", midi_in="none")
    daemon = DaemonProcess(tmp_path / "a", tiny_t5, config=config).start(timeout=120)
    try:
        c = daemon.client()
        assert c.request("/sao/gen", "x", "kick", 0.3, "steps", 2)[0] == "/sao/done"
        for _ in range(50):  # the take is loaded a moment after /sao/done
            c.send("/sao/play", "x")
            if c.wait_reply("x", ("/sao/playing", "/sao/error"), timeout=10)[0] == "/sao/playing":
                break
            time.sleep(0.02)
        pid = audio_pid(daemon, c)
        nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
        # audio_nice -10 where this user may lower nice (the same test the audio process makes), else
        # the nice it inherited and a line saying so.
        permitted = subprocess.run([sys.executable, "-c", "import os; os.setpriority(os.PRIO_PROCESS, 0, -10)"],
                                   capture_output=True).returncode == 0  # fmt: skip
        if permitted:
            assert nice == -10, nice
        else:
            assert nice == os.getpriority(os.PRIO_PROCESS, 0) and "stays at normal priority" in daemon.log(), nice
        os.kill(pid, signal.SIGKILL)
        assert pid_gone(pid)
        deadline = time.monotonic() + 20
        while "audio: restarted" not in daemon.log():
            assert time.monotonic() < deadline, f"no restart:\n{daemon.log()}"
            time.sleep(0.1)
        new_pid = audio_pid(daemon, c)
        assert new_pid != pid
        c.send("/sao/status")
        assert c.wait_for("/sao/status", timeout=10)[6] == 1
        c.send("/sao/play", "x")  # the take from before the crash, loaded into the new process
        addr, args = c.wait_reply("x", ("/sao/playing", "/sao/error"), timeout=10)
        assert addr == "/sao/playing", args
        assert c.request("/sao/gen", "y", "snare", 0.3, "steps", 2)[0] == "/sao/done"
        c.close()
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_kill_9_of_the_daemon_takes_the_audio_process_down(tmp_path, tiny_t5):
    daemon = DaemonProcess(tmp_path, tiny_t5, config=dict(audio_device="JACK", midi_in="none")).start(timeout=120)
    c = daemon.client()
    pid = audio_pid(daemon, c)
    c.close()
    daemon.kill()  # kill -9: no goodbye; the audio process sees its pipe close and stops
    assert pid_gone(pid), "the audio process outlived the daemon"


def test_audio_comes_back_when_the_jack_server_is_restarted(tmp_path, tiny_t5, jack_server):
    name = os.environ["JACK_DEFAULT_SERVER"]
    own = JackServer(f"saorestart{os.getpid()}")  # a server of its own, to stop and start again
    try:
        daemon = DaemonProcess(tmp_path, tiny_t5, config=dict(audio_device="JACK", midi_in="none")).start(timeout=120)
        try:
            c = daemon.client()
            assert c.request("/sao/gen", "x", "kick", 0.3, "steps", 2)[0] == "/sao/done"
            own.stop()
            deadline = time.monotonic() + 30
            while "has played nothing" not in daemon.log():
                assert time.monotonic() < deadline, f"the stall was not noticed:\n{daemon.log()}"
                time.sleep(0.2)
            own = JackServer(own.name)
            while "audio: restarted" not in daemon.log():
                assert time.monotonic() < deadline + 60, f"no restart:\n{daemon.log()}"
                time.sleep(0.2)
            c.send("/sao/play", "x")
            addr, args = c.wait_reply("x", ("/sao/playing", "/sao/error"), timeout=10)
            assert addr == "/sao/playing", args
            c.close()
        finally:
            assert daemon.stop() == 0, daemon.log()
    finally:
        own.stop()
        os.environ["JACK_DEFAULT_SERVER"] = name  # the other live tests' server
