"""The clip service publishes every step of a request on the event bus (in process).

The model worker is a stand-in here (FakeWorkers, below): it answers a job by writing a real
WAV file where the store expects it, as the worker process does. The store, scheduler, bus and
runtime are the real ones. Daemon-level behaviour (real worker, real UDP) is in test_daemon.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sao_live.daemon.service import ClipService
from sao_live.daemon.settings import Settings
from sao_live.daemon.store import ClipStore, file_sha256
from sao_live.events import Cancelled, ClipReady, Done, EventBus, Failed, Progress, Queued
from sao_live.live.tempo import Tempo
from sao_live.request import ModelInfo, Request, RequestError
from sao_live.runtime import Runtime

MODEL = ModelInfo("tiny", "fp", 2.97, 44100, "rf", 8, 1.0, "pingpong", ("pingpong", "euler"))


class FakeWorkers:
    """Stands in for the worker process: records what it is sent; `finish` writes the clip."""

    def __init__(self):
        self.ready, self.pid, self.sent = True, 1234, []
        self.down, self.failed_restarts = False, 0
        self.on_job_message = self.on_died = self.on_back = self.on_down = None

    def send(self, msg):
        self.sent.append(msg)

    def job(self):
        return next(m for m in reversed(self.sent) if m[0] == "job")

    def finish(self, seconds: float = 0.5):
        _, job_id, params, path = self.job()
        audio = np.zeros((int(44100 * seconds), 2), np.float32)
        Path(path).parent.mkdir(parents=True, exist_ok=True)  # as the worker does
        sf.write(path, audio, 44100, subtype="FLOAT")
        info = dict(bytes=Path(path).stat().st_size, sha256=file_sha256(path), seed=params["seed"],
                    seconds=seconds, sample_rate=44100)  # fmt: skip
        self.on_job_message(("done", job_id, info))


def make_service(tmp_path, **settings):
    store = ClipStore(tmp_path / "cache", 0)
    store.open()
    bus, workers, runtime = EventBus(), FakeWorkers(), Runtime()
    events: list = []
    bus.subscribe(events.append)
    service = ClipService(Settings(cache_dir=tmp_path / "cache", **settings), store, workers, runtime, bus, Tempo(120))
    service.model = MODEL
    return service, workers, events


async def settle(runtime: Runtime, rounds: int = 20):
    for _ in range(rounds):
        await asyncio.sleep(0.01)
        if runtime.tasks:
            await asyncio.wait(list(runtime.tasks), timeout=2)


def kinds(events, rid):
    return [type(e).__name__ for e in events if e.requester.id == rid]


def test_a_request_is_queued_progresses_and_is_done(tmp_path):
    async def main():
        service, workers, events = make_service(tmp_path)
        runner = asyncio.ensure_future(service.run())
        service.submit("127.0.0.1", 9322, 7, Request(prompt="kick", seconds=0.5, seed=3), trigger=False)
        await settle(service.runtime)
        assert kinds(events, 7) == ["Queued"] and events[0].position == 0
        job_id = workers.job()[1]
        workers.on_job_message(("progress", job_id, 4, 8))
        workers.finish()
        await settle(service.runtime)
        runner.cancel()
        return events

    events = asyncio.run(main())
    assert kinds(events, 7) == ["Queued", "Progress", "ClipReady", "Done"]
    progress, ready, done = events[1], events[2], events[3]
    assert isinstance(progress, Progress) and progress.fraction == 0.5
    assert isinstance(ready, ClipReady) and not ready.cached and ready.clip.seed == 3
    assert isinstance(done, Done) and done.path == ready.clip.path and done.path.is_file()
    assert (done.requester.host, done.requester.port) == ("127.0.0.1", 9322)


def test_a_cached_clip_is_ready_and_done_without_the_worker(tmp_path):
    async def main():
        service, workers, events = make_service(tmp_path)
        runner = asyncio.ensure_future(service.run())
        request = Request(prompt="kick", seconds=0.5, seed=3)
        service.submit("127.0.0.1", 9322, 1, request, trigger=False)
        await settle(service.runtime)
        workers.finish()
        await settle(service.runtime)
        jobs_before = len([m for m in workers.sent if m[0] == "job"])
        service.submit("127.0.0.1", 9322, 2, request, trigger=False)
        await settle(service.runtime)
        runner.cancel()
        return events, jobs_before, len([m for m in workers.sent if m[0] == "job"])

    events, jobs_before, jobs_after = asyncio.run(main())
    assert kinds(events, 2) == ["ClipReady", "Done"] and events[-1].cached
    assert jobs_before == jobs_after == 1


def test_worker_errors_and_cancels_are_published(tmp_path):
    async def main():
        service, workers, events = make_service(tmp_path)
        runner = asyncio.ensure_future(service.run())
        service.submit("127.0.0.1", 9322, "a", Request(prompt="kick", seconds=0.5, seed=1), trigger=False)
        await settle(service.runtime)
        workers.on_job_message(("error", workers.job()[1], "generation_failed", "boom"))
        service.submit("127.0.0.1", 9322, "b", Request(prompt="snare", seconds=0.5, seed=1), trigger=False)
        service.submit("127.0.0.1", 9322, "c", Request(prompt="hat", seconds=0.5, seed=1), trigger=False)
        await settle(service.runtime)
        assert service.cancel(("127.0.0.1", 9322), "c") == 1
        with pytest.raises(RequestError) as err:
            service.cancel(("127.0.0.1", 9322), "nobody")
        assert err.value.code == "unknown_id"
        runner.cancel()
        return events

    events = asyncio.run(main())
    failed = [e for e in events if isinstance(e, Failed)]
    assert [(e.requester.id, e.code, e.message) for e in failed] == [("a", "generation_failed", "boom")]
    assert [e.requester.id for e in events if isinstance(e, Cancelled)] == ["c"]
    assert kinds(events, "b") == ["Queued"]


def test_the_daemons_own_requests_end_in_their_future(tmp_path):
    """A set's pre-render (host "") gets its clip through obtain(), and publishes the same events."""

    async def main():
        service, workers, events = make_service(tmp_path)
        runner = asyncio.ensure_future(service.run())
        future = service.obtain(Request(prompt="pad", seconds=0.5, seed=9, priority=1))
        await settle(service.runtime)
        workers.finish()
        clip = await asyncio.wait_for(future, 5)
        runner.cancel()
        return clip, events

    clip, events = asyncio.run(main())
    assert clip.seed == 9 and clip.path.is_file()
    assert [type(e) for e in events] == [Queued, ClipReady, Done]
    assert all(e.requester.host == "" for e in events)


def test_a_subscriber_that_raises_does_not_silence_the_others(tmp_path):
    bus, heard = EventBus(), []

    def broken(event):
        raise RuntimeError("a bug in one subscriber")

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(heard.append)
    event = Queued(None, 0)
    bus.publish(event)
    unsubscribe()
    bus.publish(event)
    assert heard == [event]
