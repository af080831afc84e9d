"""From a validated Request to a clip on disk: cache, scheduler, worker, export, events.

`submit` resolves a request against the model, then for each variation looks the clip up in
the store (a seedless trigger takes any clip of the same sound), delivers it at once when it
is there, and otherwise queues a job in the scheduler and the crash journal. `run` starts the
most urgent jobs on free slots: the local worker (one job at a time), or, with a model pool
(`pool.py`), each of its actors while it has any. Every job started gets a worker job id, and the
messages of the worker and the pool come back through `on_worker` tagged with it. A job stays in the
journal until every requester has its answer (the export included), so a daemon killed at any
point answers them after its restart. While the worker is down for good (it failed to come
back several times in a row), requests that need it are refused with `worker_unavailable`.

Everything that happens to a request is published on the event bus (`events.py`): Queued,
Progress, Streaming (a client's job on the local worker: its audio arrives while it decodes, in a
ClipStream), ClipReady (in the cache: the live stage plays it), Done (after the export, with a
generated clip's timings), Failed, Cancelled. The service never calls up into whoever listens.
Store calls run on the runtime's store thread, exports on its file thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..events import Cancelled, Clip, ClipReady, ClipStream, Done, Event, EventBus, Failed, Progress, Queued, Streaming
from ..live.tempo import Tempo
from ..musical_time import bars_to_seconds
from ..request import ModelInfo, Request, Requester, RequestError
from ..runtime import Runtime
from .scheduler import Busy, Job, Scheduler
from .settings import LiveParams, Settings
from .store import ClipStore
from .workers import WorkerSupervisor

if TYPE_CHECKING:
    from .pool import PoolSupervisor

log = logging.getLogger(__name__)
PROGRESS_STEP = 0.05
LOCAL = "local"  # the local worker's slot; a pool actor's slot is its name


class ClipService:
    def __init__(
        self,
        settings: Settings,
        store: ClipStore,
        workers: WorkerSupervisor,
        runtime: Runtime,
        bus: EventBus,
        tempo: Tempo,
        pool: PoolSupervisor | None = None,
    ):
        self.settings = settings
        self.pool = pool
        self.store = store
        self.workers = workers
        self.runtime = runtime
        self.bus = bus
        self.sched = Scheduler(settings.queue_size, settings.requesters_per_job)
        self.journal = JournalWriter(store, runtime)
        self.params = LiveParams(settings, tempo)
        self.model: ModelInfo | None = None
        self.accepting = True
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self._ids = itertools.count(1)
        self._internal = itertools.count(1)
        self._waiters: dict[str, asyncio.Future] = {}  # the daemon's own requests (host ""): id -> future
        self._running: dict[int, tuple[Job, str]] = {}  # worker job id -> (job, the slot it runs on)
        self._streams: dict[int, ClipStream] = {}  # worker job id -> its audio, while it decodes
        self._started_at: dict[int, float] = {}  # worker job id -> when it went to its slot (timings)
        self._queued_at: dict[str, float] = {}  # job key -> when it was queued (timings)
        workers.on_job_message, workers.on_died, workers.on_back = self.on_worker, self.worker_died, self.wake.set
        workers.on_down = self.worker_down
        if pool is not None:
            pool.on_job_message, pool.on_slot_died, pool.on_change = self.on_worker, self.slot_died, self.pool_changed
        bus.subscribe(self._settle_internal)

    # ------------------------------------------------------------ intake

    def resolve(self, request: Request) -> Request:
        """`request` with the model's and the live settings' defaults; RequestError if it cannot be made."""
        if self.model is None:
            raise RequestError("not_ready", "the model is still loading; wait for /sao/ready 1")
        return request.resolved(self.model, self.params.values)

    def obtain(self, request: Request) -> asyncio.Future:
        """The daemon's own request (a set's pre-render or refill): a future for its Clip, or its RequestError.

        Cancelling the future gives the request up: its job leaves the queue (or stops, when
        running) unless a client waits for the same clip."""
        request = self.resolve(request)
        future = asyncio.get_running_loop().create_future()
        rid = f"internal:{next(self._internal)}"
        self._waiters[rid] = future
        future.add_done_callback(functools.partial(self._given_up, rid))
        self.runtime.spawn(self._serve(request, Requester("", 0, rid, request.priority, None), False))
        return future

    def _given_up(self, rid: str, future: asyncio.Future) -> None:
        if future.cancelled() and self._waiters.pop(rid, None) is not None:
            self._let_go(self.sched.cancel(("", 0), rid), "the daemon no longer needs this clip")

    def submit(self, host: str, port: int, id: int | str, request: Request, trigger: bool, play: int = 0) -> None:
        """A client's request; its events go to (host, port), the target its replies go to."""
        if not self.accepting:
            raise RequestError("shutting_down", "the daemon is stopping and takes no new requests")
        request = self.resolve(request)
        requester = Requester(host, port, id, request.priority, self._export_format(request), play or int(trigger))
        if request.variations == 1:
            self.runtime.spawn(self._serve(request, requester, trigger))
            return
        for i in range(request.variations):  # distinct seeds: even a trigger wants new clips here
            self.runtime.spawn(self._serve(request.variation(i), dataclasses.replace(requester), False))

    def _export_format(self, request: Request) -> str | None:
        wanted = request.export
        if wanted is None:
            wanted = "default" if self.params["export"] and self.settings.export_dir else "none"
        if wanted == "none":
            return None
        if self.settings.export_dir is None:
            raise RequestError("no_export_dir", "export asked for, but the daemon runs without --export-dir")
        return self.params["export_format"] if wanted == "default" else wanted

    async def _serve(self, request: Request, r: Requester, trigger: bool) -> None:
        try:
            await self._lookup_or_queue(request, r, trigger)
        except Exception as err:  # a bug or a broken disk: the requester still gets an answer
            log.exception("request %r from %s failed", r.id, r.host)
            self.bus.publish(Failed(r, "internal", f"internal error: {type(err).__name__}: {err}"))

    async def _lookup_or_queue(self, request: Request, r: Requester, trigger: bool) -> None:
        fp = self.model.fingerprint
        key, family = request.cache_key(fp), request.family_key(fp)
        any_seed = trigger and request.picked_seed  # any clip of this sound will do, made or being made
        clip = await self.runtime.io(self.store.latest if any_seed else self.store.get, family if any_seed else key)
        if clip is not None:
            self.runtime.io_nowait(self.store.touch, clip.key)
            await self._deliver(clip, r, cached=True, made_on=self._made_on(None))
            return
        if not self.accepting:
            self.bus.publish(Failed(r, "shutting_down", "the daemon is stopping and takes no new requests"))
            return
        if not r.host and r.id not in self._waiters:
            return  # the daemon gave its own request up while the store was asked
        # No await from here to submit: a twin request arriving meanwhile finds this job.
        twin = self.sched.find_family(family) if any_seed else None
        if twin is not None:
            key, request = twin.key, twin.request
        if self._down() and self.sched.find(key) is None:
            self.bus.publish(Failed(r, "worker_unavailable", self._unavailable()))
            return
        try:
            job, merged = self.sched.submit(key, request, r, family)
        except Busy as err:
            self.bus.publish(Failed(r, err.code, str(err)))
            return
        if not merged:
            self._queued_at[job.key] = time.monotonic()
        self._journal(job)
        self.bus.publish(Queued(r, self.sched.position(job)))
        stream = next((s for wj, s in self._streams.items() if self._running.get(wj, (None,))[0] is job), None)
        if stream is not None and r.host:
            self.bus.publish(Streaming(r, stream))  # joined a job that is decoding: it may play now
        self.wake.set()

    def _journal(self, job: Job) -> None:
        self.journal.put(job)

    def resume(self, journal: list) -> None:
        """Queues again the jobs a killed daemon left in the journal; their requesters hear Queued."""
        for key, request_dict, requesters in journal:
            try:
                request = Request.from_dict(request_dict).resolved(self.model, self.params.values)
            except RequestError as err:
                log.warning("dropping an interrupted job: %s", err)
                self.journal.drop(key)
                continue
            new_key = request.cache_key(self.model.fingerprint)
            if new_key != key:
                self.journal.drop(key)
            family = request.family_key(self.model.fingerprint)
            job = None
            for r in [Requester(**d) for d in requesters]:
                try:
                    job, _ = self.sched.submit(new_key, request, r, family)
                except Busy as err:
                    self.bus.publish(Failed(r, err.code, f"lost at the restart: {err}"))
                    continue
                self.bus.publish(Queued(r, self.sched.position(job)))
            if job is not None:
                self._journal(job)
            else:
                self.journal.drop(key)
        if journal:
            log.info("resumed %d jobs interrupted by the last shutdown", len(journal))
            self.wake.set()

    # ------------------------------------------------------------ output

    def _settle_internal(self, event: Event) -> None:
        """The daemon's own requests end in their future instead of a reply."""
        r = event.requester
        if r.host or not isinstance(event, (Done, Failed, Cancelled)):
            return
        future = self._waiters.pop(r.id, None)
        if future is None or future.done():
            return
        if isinstance(event, Done):
            future.set_result(event.clip)
        else:
            code = event.code if isinstance(event, Failed) else "cancelled"
            future.set_exception(RequestError(code, event.message))

    async def _deliver(
        self, clip: Clip, r: Requester, cached: bool, made_on: str | None = None, timing: dict | None = None
    ) -> None:
        self.bus.publish(ClipReady(r, clip, cached))
        path = clip.path
        if r.export is not None:
            try:
                path = await self._export(clip, r.export)
            except Exception as err:
                log.exception("export of clip %s failed", clip.key)
                msg = f"the clip is at {clip.path} but the export failed: {err}"
                self.bus.publish(Failed(r, "export_failed", msg))
                return
        self.bus.publish(Done(r, clip, Path(path), cached, made_on, timing))

    async def _export(self, clip: Clip, fmt: str):
        folder = self.settings.export_dir
        done = await self.runtime.io(self.store.exported, clip.key, fmt, folder)
        if done is not None:  # a restart resuming this delivery does not export twice
            return done
        request = Request.from_dict(clip.request)
        meta = {"model": self.model.name, "seconds": clip.seconds, "sample_rate": clip.sample_rate}
        path = await self.runtime.in_thread(_export_clip, clip.path, folder, request, fmt, meta)
        await self.runtime.io(self.store.add_export, clip.key, fmt, path)  # recorded before the journal ends
        return path

    async def _deliver_job(
        self, job: Job, clip: Clip, cached: bool, made_on: str | None = None, timing: dict | None = None
    ) -> None:
        """Exports and answers each requester of a made job in turn (twins may still join), then ends
        its journal entry. Killed halfway, the next start resumes the job and finds its clip."""
        try:
            while job.requesters:
                await self._deliver(clip, job.requesters[0], cached, made_on, timing)
                job.requesters.pop(0)  # answered: a restart need not answer it again
                if job.requesters:
                    self._journal(job)
        finally:
            self.sched.delivered(job)
        self.journal.drop(job.key)

    def _fail_made(self, job: Job, code: str, message: str) -> None:
        """A made job whose clip cannot be delivered: every requester hears why."""
        for r in job.requesters:
            self.bus.publish(Failed(r, code, message))
        self.sched.delivered(job)
        self.journal.drop(job.key)

    # ------------------------------------------------------------ the workers' side

    async def run(self) -> None:
        """Starts the most urgent jobs on free slots: one on the local worker, or one on each free pool actor."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while (slot := self._free_slot()) is not None and (job := self.sched.next()):
                self.idle.clear()
                worker_job = next(self._ids)
                self._running[worker_job] = (job, slot)  # the slot is taken while the store is asked
                clip = None
                if job.requesters and not job.cancelled:
                    # made already: by a twin that raced it, or before a kill interrupted its delivery
                    clip = await self.runtime.io(self.store.get, job.key)
                if self._running.get(worker_job, (None,))[0] is not job:
                    continue  # its slot died meanwhile: requeued
                if job.cancelled or not job.requesters:
                    self._end(worker_job)
                    continue
                if clip is not None:
                    del self._running[worker_job]
                    self.sched.deliver(job)
                    self.runtime.spawn(self._deliver_job(job, clip, cached=True, made_on=self._made_on(None)))
                    continue
                q = job.request
                params = dict(
                    prompt=q.prompt,
                    seconds=q.seconds,
                    seed=q.seed,
                    steps=q.steps,
                    cfg_scale=q.cfg,
                    sampler=q.sampler,
                    negative_prompt=q.negative or None,
                    # a client may play it before it is finished (the local worker streams; the pool does not)
                    stream=self.settings.stream and slot == LOCAL and any(r.host for r in job.requesters),
                )
                if q.bars is not None:  # a loop: exact length from bars and bpm, seam crossfaded
                    params["loop_seconds"] = bars_to_seconds(q.bars, q.bpm)  # q.seconds is rounded to 0.1 ms
                path = self.store.clip_path(job.key)
                log.info(
                    "job %d: %r, %g s, seed %d (attempt %d)%s",
                    worker_job,
                    q.prompt[:60],
                    q.seconds,
                    q.seed,
                    job.attempts,
                    "" if slot == LOCAL else f" on {slot}",
                )
                self._started_at[worker_job] = time.monotonic()
                if slot == LOCAL:
                    self.workers.send(("job", worker_job, params, str(path)))
                else:
                    self.pool.start(slot, worker_job, params, str(path))
            if not self.sched.running:
                self.idle.set()

    def _free_slot(self) -> str | None:
        """Where a job can start now: the fastest free pool actor while the pool has any, else the local worker."""
        busy = {slot for _, slot in self._running.values()}
        if self.pool is not None and self.pool.serving:
            return self.pool.free_actor(busy)
        return LOCAL if self.workers.ready and LOCAL not in busy else None

    def _cancel(self, worker_job: int) -> None:
        slot = self._running[worker_job][1]
        if slot == LOCAL:
            self.workers.send(("cancel", worker_job))
        else:
            self.pool.cancel(worker_job)

    def _made_on(self, info: dict | None) -> str | None:
        """Where a clip was made, as `/sao/done` says it with a pool ("" for a cached clip); None without one."""
        if self.pool is None:
            return None
        return "" if info is None else info.get("made_on", LOCAL)

    def _end(self, worker_job: int, why: str = "the clip was not finished") -> None:
        """A running job ended without a clip; its requesters, if any, are answered by the caller."""
        job, _ = self._running.pop(worker_job)
        self._end_stream(worker_job, why)
        self._started_at.pop(worker_job, None)
        self._queued_at.pop(job.key, None)
        self.sched.finish(job)
        self.journal.drop(job.key)
        self.wake.set()

    def on_worker(self, msg: tuple) -> None:
        """A message of the local worker or the pool about the job it knows as msg[1]."""
        kind, worker_job = msg[0], msg[1]
        job = self._running.get(worker_job, (None,))[0]
        if job is None:
            return  # a job that was already given up
        if kind == "audio":
            self._on_audio(worker_job, job, *msg[2:])
        elif kind == "progress":
            fraction = msg[2] / msg[3]
            if fraction < min(1.0, job.progress + PROGRESS_STEP):
                return  # at most one progress event per 5% (a 1000-step job would send 1000)
            job.progress = fraction
            for r in job.requesters:
                self.bus.publish(Progress(r, fraction))
        elif kind == "done":
            timing = self._timing(worker_job, job, msg[2])
            del self._running[worker_job]
            self._streams.pop(worker_job, None)
            self.sched.deliver(job)  # the slot is free; twins join the job until it is delivered
            self.wake.set()
            self.runtime.spawn(self._complete(job, msg[2], timing))
        elif kind == "error":
            log.warning("job %d failed: %s: %s", worker_job, msg[2], msg[3])
            self._end(worker_job, msg[3])
            for r in job.requesters:
                self.bus.publish(Failed(r, msg[2], msg[3]))
        elif kind == "cancelled":
            if job.requesters and self.accepting:  # someone asked again after the cancel
                del self._running[worker_job]
                self._end_stream(worker_job, "cancelled")
                self.sched.requeue(job)
                self.wake.set()
            else:
                self._end(worker_job, "cancelled")

    def _on_audio(
        self, worker_job: int, job: Job, offset: int, total: int, rate: int, spent: float, done: float, chunk
    ) -> None:
        """A piece of a running job's audio: the first one opens its stream for each client requester."""
        stream = self._streams.get(worker_job)
        if stream is None:
            if offset != 0:
                return  # the start of this attempt's audio was missed: no stream for it
            q = job.request
            loop_seconds = bars_to_seconds(q.bars, q.bpm) if q.bars is not None else None
            stream = self._streams[worker_job] = ClipStream(job.key, q.seed, rate, total, loop_seconds)
            for r in job.requesters:
                if r.host:
                    self.bus.publish(Streaming(r, stream))
        stream.add(chunk, spent, done)

    def _end_stream(self, worker_job: int, why: str) -> None:
        stream = self._streams.pop(worker_job, None)
        if stream is not None:
            stream.fail(why)

    def _timing(self, worker_job: int, job: Job, info: dict) -> dict:
        """Where a generated clip's time went, in seconds (first_sound -1: it was not streamed)."""
        stages = info.get("timing") or {}
        started = self._started_at.pop(worker_job, time.monotonic())
        queued = self._queued_at.pop(job.key, started)
        stream = self._streams.get(worker_job)
        first = None if stream is None else stream.first_sound
        work = sum(stages.get(k, 0.0) for k in ("text", "dit", "decode"))
        return dict(
            queue=max(0.0, started - queued),
            text=stages.get("text", 0.0),
            dit=stages.get("dit", 0.0),
            decode=stages.get("decode", 0.0),
            first_sound=-1.0 if first is None else max(0.0, first - queued),
            rtf=info["seconds"] / work if work > 0 else 0.0,
        )

    async def _complete(self, job: Job, info: dict, timing: dict) -> None:
        family = job.request.family_key(self.model.fingerprint)
        try:
            clip = await self.runtime.io(self.store.add, job.key, family, info, job.request.to_dict())
        except Exception as err:
            log.exception("indexing clip %s failed", job.key)
            self._fail_made(job, "cache_failed", f"the clip was made but could not be stored: {err}")
            return
        if clip is None:
            self._fail_made(job, "generation_failed", "the clip file vanished before it could be indexed")
            return
        await self._deliver_job(job, clip, cached=False, made_on=self._made_on(info), timing=timing)

    def worker_died(self) -> None:
        """The worker process ended: retry its job once (settings.retries), then report it."""
        self.slot_died(LOCAL, "the model worker died")

    def slot_died(self, slot: str, what: str) -> None:
        """The local worker or a pool actor is gone: each job it held is retried (on another slot), then reported."""
        for worker_job, (job, on) in list(self._running.items()):
            if on != slot:
                continue
            del self._running[worker_job]
            self._started_at.pop(worker_job, None)
            self._end_stream(worker_job, f"{what} while decoding this clip")
            if job.cancelled or not job.requesters:
                self.sched.finish(job)
                self.journal.drop(job.key)
            elif job.attempts <= self.settings.retries:
                log.warning("%s during %r: trying again (attempt %d)", what, job.request.prompt[:60], job.attempts + 1)
                self.sched.requeue(job)
            else:
                self.sched.finish(job)
                self.journal.drop(job.key)
                who = "the model worker" if self.pool is None else "the model worker or pool actor making this clip"
                for r in job.requesters:
                    self.bus.publish(Failed(r, "worker_crashed", f"{who} died {job.attempts} times making this clip"))
        self.wake.set()

    def worker_down(self) -> None:
        """The worker failed to come back several times in a row: nobody is left waiting for it (unless a
        pool serves). (No job runs on it: a dying worker's job was requeued or reported by `worker_died`.)"""
        if not self._down():
            return
        message = self._unavailable()
        for job in self.sched.drain():
            for r in job.requesters:
                self.bus.publish(Failed(r, "worker_unavailable", message))
            self.journal.drop(job.key)

    def pool_changed(self) -> None:
        """The pool gained or lost actors: start what waits, or answer it if nothing is left to make it."""
        self.wake.set()
        self.worker_down()

    def _down(self) -> bool:
        return self.workers.down and not (self.pool is not None and self.pool.serving)

    def _unavailable(self) -> str:
        return (
            f"the model worker is down: it failed to come back {self.workers.failed_restarts} times in a row; "
            "the daemon keeps trying, and /sao/ready 1 will announce its return"
        )

    # ------------------------------------------------------------ cancel, shutdown, status

    def stop_running(self, code: str, message: str) -> None:
        """Tells the running jobs' requesters why, and has their slots stop them (shutdown)."""
        for worker_job, (job, _) in list(self._running.items()):
            for r in job.requesters:
                self.bus.publish(Failed(r, code, message))
            job.requesters.clear()
            job.cancelled = True
            self._cancel(worker_job)
            self.journal.drop(job.key)

    def refuse_queued(self, code: str, message: str) -> None:
        """Empties the queue (shutdown): every waiting requester is told why."""
        self.accepting = False
        for job in self.sched.drain():
            for r in job.requesters:
                self.bus.publish(Failed(r, code, message))
            self.journal.drop(job.key)

    def cancel(self, target: tuple[str, int], id: int | str | None, why: str = "cancelled by /sao/cancel") -> int:
        """Cancels `id` (or all, None) of the requests answered at `target`; returns how many requesters let go."""
        removed = self.sched.cancel(target, id)
        self._let_go(removed, why)
        if id is not None and not removed:
            raise RequestError("unknown_id", f"no queued or running request {id!r} from this sender")
        return len(removed)

    def _let_go(self, removed: list, why: str) -> None:
        """Tells cancelled requesters why; a running job nobody waits for stops, a queued one leaves the journal."""
        for job, r in removed:
            self.bus.publish(Cancelled(r, why))
            if job in self.sched.running and job.cancelled:
                self._cancel(next(w for w, (j, _) in self._running.items() if j is job))
            elif not job.requesters:
                self.journal.drop(job.key)
            else:
                self._journal(job)

    async def status(self) -> tuple:
        """(ready, queued, running, clips, cache MB, worker pid), as /sao/status begins."""
        clips, size = await self.runtime.io(self.store.stats)
        ready = self.workers.ready or (self.pool is not None and self.pool.serving)
        return (int(ready), len(self.sched), len(self.sched.running), clips, round(size / 2**20, 3), self.workers.pid)


class JournalWriter:
    """The crash journal's writes: each job's entry at most once per loop turn, in one transaction.

    An entry holds the job's whole requester list; writing it at every join made a burst of
    identical requests cost the square of its size on the store thread. A drop cancels a
    write still pending, and goes to the store thread in order with the writes.
    """

    def __init__(self, store: ClipStore, runtime: Runtime):
        self.store = store
        self.runtime = runtime
        self._pending: dict[str, Job] = {}

    def put(self, job: Job) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending[job.key] = job

    def drop(self, key: str) -> None:
        self._pending.pop(key, None)
        self.runtime.io_nowait(self.store.journal_drop, key)

    def _flush(self) -> None:
        rows = [
            (job.key, job.request.to_dict(), [dataclasses.asdict(r) for r in job.requesters])
            for job in self._pending.values()
        ]
        self._pending.clear()
        if rows:
            self.runtime.io_nowait(self.store.journal_put_many, rows)


def _export_clip(*args):
    from .export import export_clip  # numpy and soundfile load on the export thread, off the start-up path

    return export_clip(*args)
