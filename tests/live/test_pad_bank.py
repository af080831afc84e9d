"""The pad bank, the MIDI router and the one Tempo, in process.

The audio process and the clip service are stand-ins here (FakePlayer, FakeClips, below):
what these tests check is the bank's own logic (pools, refills, fallbacks, banks, tempo) and
which messages the router turns into which actions. Sound through a real JACK server, and MIDI
from real clients, are tested in test_playback.py and test_live_parts.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import mido
import pytest

from sao_live.events import Clip, ClipReady
from sao_live.live.audio_supervisor import AudioSupervisor
from sao_live.live.midi_router import MidiRouter
from sao_live.live.pads import PadBank
from sao_live.live.player import Take
from sao_live.live.sets import SetError
from sao_live.live.tempo import Tempo
from sao_live.request import Requester, RequestError
from sao_live.runtime import Runtime


class FakePlayer:
    """Stands in for the audio process: records plays and stops."""

    serial, rate, frame, voices, master_db = 1, 48000, 0, 8, -6.0

    def __init__(self):
        self.plays, self.stops = [], []

    def prepare(self, path, seed=0, key="", loop_seconds=None) -> Take:
        return Take(1, seed, key, round(loop_seconds * self.rate) if loop_seconds else 0, self.serial)

    def play(self, take, gain, mode, choke, tag, start=0) -> int:
        self.plays.append((take, gain, tag))
        return len(self.plays)

    def stop(self, tag, gate_only=False) -> int:
        self.stops.append((tag, gate_only))
        return 1


class FakeClips:
    """Stands in for the clip service's obtain(): every request gets a clip at once, recorded."""

    def __init__(self):
        self.requests = []

    def obtain(self, request):
        self.requests.append(request)
        future = asyncio.get_running_loop().create_future()
        future.set_result(Clip(f"k{len(self.requests)}", "f", Path("/x.wav"), 1, "", 1.0, request.seed, 44100,
                               request.to_dict(), 0.0, 0.0))  # fmt: skip
        return future


class FakeReplies:
    def __init__(self):
        self.sent, self.announced = [], []

    def send(self, target, address, *args):
        self.sent.append((target, address, *args))

    def announce(self, address, *args):
        self.announced.append((address, *args))


SET = """
name = "unit"
bpm = 120
tempo_source = "{source}"
[cc]
20 = "regenerate"
21 = "next_variation"
22 = "stop_all"
[[banks]]
[[banks.pads]]
prompt = "house loop"
bars = 1
mode = "loop"
variations = 2
[[banks.pads]]
prompt = "gated pad"
seconds = 1.0
mode = "gate"
[[banks]]
[[banks.pads]]
prompt = "second bank kick"
seconds = 0.5
"""


@pytest.fixture
def bank(tmp_path):
    def make(source: str = "fixed"):
        path = tmp_path / "unit.toml"
        path.write_text(SET.format(source=source))
        runtime, tempo, replies, clips = Runtime(), Tempo(90.0), FakeReplies(), FakeClips()
        audio = AudioSupervisor(runtime, tempo, lambda key: Path("/x.wav"), "none", 8, -6.0, 0, 0)
        audio.player = FakePlayer()
        pads = PadBank(runtime, replies, tempo, audio, clips.obtain, lambda r: r)
        return pads, path, clips, replies

    return make


async def settle(runtime: Runtime):
    for _ in range(10):
        await asyncio.sleep(0.01)
        if runtime.tasks:
            await asyncio.wait(list(runtime.tasks), timeout=2)


def test_a_set_pre_renders_every_seed_and_takes_its_tempo(bank):
    async def main():
        pads, path, clips, replies = bank()
        live = await pads.load_set(path)
        return pads, live, clips, replies

    pads, live, clips, replies = asyncio.run(main())
    assert len(clips.requests) == 4  # 2 variations + 1 + 1
    assert {r.bpm for r in clips.requests if r.bars} == {120.0}
    assert pads.tempo.bpm == 120.0 and pads.tempo.source == "fixed"
    assert ("/sao/loaded", "unit", 3, 2) in replies.announced


def test_refills_after_a_tempo_change_follow_the_new_tempo(bank):
    """/sao/set/bpm with a set loaded: a loop pad's refills are made and cut at the new tempo."""

    async def main():
        pads, path, clips, _ = bank()
        await pads.load_set(path)
        pads.tempo.set_bpm(100.0)  # what /sao/set/bpm does
        pads.hit(1)
        await settle(pads.runtime)
        return pads, clips

    pads, clips = asyncio.run(main())
    refill = clips.requests[-1]
    assert refill.priority == 2 and refill.bpm == 100.0 and "100 BPM" in refill.prompt
    new_take = pads.pads[(0, 1)].pool[-1]
    assert new_take.loop_frames == round(1 * 4 * 60 / 100.0 * FakePlayer.rate)


def test_a_sets_tempo_source_is_applied(bank):
    async def main():
        pads, path, _, _ = bank("midi")
        await pads.load_set(path)
        return pads

    pads = asyncio.run(main())
    assert pads.tempo.source == "midi"
    assert pads.tempo.bpm == 90.0  # a clock-driven set keeps the running tempo until the clock speaks


def test_an_empty_pool_falls_back_to_the_last_take_and_says_so(bank):
    async def main():
        pads, path, clips, replies = bank()
        await pads.load_set(path)
        clips.obtain = None  # from here on refills fail (nothing answers)
        pads.obtain = lambda request: asyncio.get_running_loop().create_future()  # never done
        takes = [pads.hit(1)[1] for _ in range(3)]
        return takes, replies

    takes, replies = asyncio.run(main())
    assert takes[0].seed != takes[1].seed  # the pool's two variations, in order
    assert takes[2] is takes[1]  # pool empty: the last one again
    assert replies.announced[-1][0] == "/sao/fallback"


def test_banks_and_unknown_pads(bank):
    async def main():
        pads, path, _, _ = bank()
        await pads.load_set(path)
        return pads

    pads = asyncio.run(main())
    assert pads.set_bank(1.0) == 1
    assert pads.hit(1)[1].seed == pads.pads[(1, 1)].last.seed
    for bad, code in ((5, "unknown_pad"), (0, "unknown_pad")):
        with pytest.raises(RequestError) as err:
            pads.hit(bad)
        assert err.value.code == code
    with pytest.raises(RequestError) as err:
        pads.set_bank(2)
    assert err.value.code == "bad_value"


def test_a_triggered_clip_is_kept_and_played_once(bank):
    async def main():
        pads, _, _, replies = bank()
        clip = Clip("key", "f", Path("/x.wav"), 1, "", 1.0, 42, 44100, {"prompt": "kick"}, 0.0, 0.0)
        pads.on_event(ClipReady(Requester("127.0.0.1", 9322, 5, play=1), clip, cached=False))
        pads.on_event(ClipReady(Requester("", 0, "internal:1"), clip, cached=False))  # the daemon's own: not kept
        await settle(pads.runtime)
        return pads, replies

    pads, replies = asyncio.run(main())
    assert list(pads.by_id) == [5]
    assert replies.sent == [(("127.0.0.1", 9322), "/sao/playing", 5, 1, 42, 0)]
    started = []
    pads.play_id(5, 0.5, lambda voice, take, nearest: started.append((take.seed, nearest)))
    assert started == [(42, False)]


def test_the_midi_router_maps_notes_programs_ccs_and_clock(bank):
    async def main():
        pads, path, clips, replies = bank()
        await pads.load_set(path)
        router = MidiRouter(pads, pads.tempo, replies)
        player = pads.audio.player
        router.on_midi(mido.Message("note_on", note=37, velocity=127))  # pad 2 (gate)
        router.on_midi(mido.Message("note_off", note=37))
        assert player.stops[-1] == ("pad:0:2", True)
        router.on_midi(mido.Message("note_on", note=36, velocity=64))  # pad 1
        assert player.plays[-1][2] == "pad:0:1" and player.plays[-1][1] == pytest.approx((64 / 127) ** 1.5)
        await settle(pads.runtime)  # the hit's own refill
        before = len(clips.requests)
        router.on_midi(mido.Message("control_change", control=20, value=127))  # regenerate pad 1
        await settle(pads.runtime)
        assert len(clips.requests) - before == 2  # its whole pool: 2 variations
        router.on_midi(mido.Message("control_change", control=22, value=127))
        assert player.stops[-1] == (None, False)
        router.on_midi(mido.Message("note_on", note=99, velocity=100))  # no pad: nothing
        router.on_midi(mido.Message("program_change", program=1))
        assert pads.bank == 1 and replies.announced[-1] == ("/sao/value", "bank", 1)
        pads.tempo.source = "midi"
        router.on_midi(mido.Message("start"))
        t0 = pads.tempo.bpm
        for _ in range(30):  # 24 ticks a beat at 150 bpm
            router.on_midi(mido.Message("clock"))
            await asyncio.sleep(60 / 150 / 24)
        return pads, replies, t0

    pads, replies, t0 = asyncio.run(main())
    assert t0 == 120.0 and pads.tempo.bpm == pytest.approx(150, abs=10)
    assert replies.announced[-1][0] == "/sao/tempo" and replies.announced[-1][2] == "midi"


class HeldClips:
    """Stands in for obtain(): futures the test completes (or fails) itself, to see what is outstanding."""

    def __init__(self):
        self.futures: list[tuple] = []  # (request, future)

    def obtain(self, request):
        future = asyncio.get_running_loop().create_future()
        self.futures.append((request, future))
        return future

    def outstanding(self) -> list:
        return [f for _, f in self.futures if not f.done()]

    def give(self, future) -> None:
        request = next(r for r, f in self.futures if f is future)
        future.set_result(Clip(f"k{request.seed}", "f", Path("/x.wav"), 1, "", 1.0, request.seed, 44100,
                               request.to_dict(), 0.0, 0.0))  # fmt: skip


def held_bank(tmp_path, queue_size: int, text: str = SET.format(source="fixed")):
    path = tmp_path / "unit.toml"
    path.write_text(text)
    runtime, tempo, replies, clips = Runtime(), Tempo(90.0), FakeReplies(), HeldClips()
    audio = AudioSupervisor(runtime, tempo, lambda key: Path("/x.wav"), "none", 8, -6.0, 0, 0)
    pads = PadBank(runtime, replies, tempo, audio, clips.obtain, lambda r: r, queue_size=queue_size)
    return pads, path, clips


async def until(check, timeout: float = 2.0):
    for _ in range(int(timeout / 0.005)):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


def test_pre_render_asks_for_a_few_takes_at_a_time(tmp_path):
    """A queue of 8: at most 2 of the set's takes are asked for at once, however many it has."""

    async def main():
        pads, path, clips = held_bank(tmp_path, queue_size=8)
        load = asyncio.ensure_future(pads.load_set(path))
        most = 0
        while not load.done():
            await asyncio.sleep(0.01)
            waiting = clips.outstanding()
            most = max(most, len(waiting))
            if waiting:
                clips.give(waiting[0])
        return await load, most, clips

    live, most, clips = asyncio.run(main())
    assert live.name == "unit" and len(clips.futures) == 4 and most == 2


def test_a_failed_take_cancels_the_takes_still_asked_for(tmp_path):
    async def main():
        pads, path, clips = held_bank(tmp_path, queue_size=8)
        load = asyncio.ensure_future(pads.load_set(path))
        await until(lambda: len(clips.outstanding()) == 2)
        first, second = clips.outstanding()
        first.set_exception(RequestError("worker_crashed", "the model worker died 1 times making this clip"))
        with pytest.raises(SetError) as err:
            await load
        return err.value, second, clips

    err, second, clips = asyncio.run(main())
    assert "worker_crashed" in err.public and second.cancelled()
    assert len(clips.futures) == 2  # nothing asked for after the failure


def test_a_newer_load_replaces_one_still_pre_rendering(tmp_path):
    async def main():
        pads, path, clips = held_bank(tmp_path, queue_size=8)
        first = asyncio.ensure_future(pads.load_set(path, shown="first", replaceable=True))
        await until(lambda: len(clips.outstanding()) == 2)
        old = clips.outstanding()
        second = asyncio.ensure_future(pads.load_set(path, shown="second", replaceable=True))
        with pytest.raises(SetError) as err:
            await first
        while not second.done():
            await asyncio.sleep(0.01)
            for future in clips.outstanding():
                clips.give(future)
        return err.value, old, await second, pads

    err, old, live, pads = asyncio.run(main())
    assert err.code == "cancelled" and "second" in err.public
    assert all(f.cancelled() for f in old)
    assert pads.set is live


def test_a_load_given_at_start_is_not_replaced(tmp_path):
    """sao-live serve --set: an OSC /sao/load meanwhile is refused, not a replacement."""

    async def main():
        pads, path, clips = held_bank(tmp_path, queue_size=8)
        first = asyncio.ensure_future(pads.load_set(path))
        await until(lambda: len(clips.outstanding()) == 2)
        with pytest.raises(SetError, match="still loading"):
            await pads.load_set(path, shown="other", replaceable=True)
        while not first.done():
            await asyncio.sleep(0.01)
            for future in clips.outstanding():
                clips.give(future)
        return await first

    assert asyncio.run(main()).name == "unit"


def test_a_new_set_cancels_the_old_sets_refills(tmp_path):
    async def main():
        pads, path, clips = held_bank(tmp_path, queue_size=8)
        load = asyncio.ensure_future(pads.load_set(path))
        while not load.done():
            await asyncio.sleep(0.01)
            for future in clips.outstanding():
                clips.give(future)
        pads.audio.player = FakePlayer()
        pads.hit(1)  # pad 1 has 2 variations: its pool is refilled in the background
        await until(lambda: len(clips.outstanding()) == 1)
        refill = clips.outstanding()[0]
        load = asyncio.ensure_future(pads.load_set(path))
        while not load.done():
            await asyncio.sleep(0.01)
            for future in clips.outstanding():
                if future is not refill:
                    clips.give(future)
        return refill

    assert asyncio.run(main()).cancelled()
