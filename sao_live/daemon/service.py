"""From a validated Request to a clip on disk and a `/sao/done`: cache, scheduler, worker, export.

`submit` (called by an OSC handler) resolves the request against the model, then for each
variation looks the clip up in the store (a seedless trigger takes any clip of the same
sound), answers at once when it is there, and otherwise queues a job (`/sao/queued`) in the
scheduler and the crash journal. `run` feeds the worker one job at a time; worker messages
come back through `on_worker` as progress, done, error or cancelled. Every store call runs on
the daemon's single IO thread and every export on its export thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from typing import TYPE_CHECKING

from ..request import ModelInfo, Request, RequestError
from .scheduler import Busy, Job, Requester, Scheduler
from .settings import LiveParams

if TYPE_CHECKING:
    from .daemon import Daemon
    from .osc import Context
    from .store import Clip

log = logging.getLogger(__name__)


class ClipService:
    def __init__(self, daemon: Daemon):
        self.d = daemon
        s = daemon.settings
        self.sched = Scheduler(s.queue_size)
        self.model: ModelInfo | None = None
        self.accepting = True
        self.params = LiveParams(s)
        self._ids = itertools.count(1)
        self._internal = itertools.count(1)
        self._waiters: dict[str, asyncio.Future] = {}  # internal requests (host ""): id -> future
        self._worker_job: int | None = None  # the id the worker knows the running job by
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()

    # ------------------------------------------------------------ intake

    def obtain(self, request: Request) -> asyncio.Future:
        """An internal request (a set's pre-render or refill): a future for its Clip, or its RequestError."""
        if self.model is None:
            raise RequestError("not_ready", "the model is still loading; wait for /sao/ready 1")
        request = request.resolved(self.model, self.params.values)
        future = asyncio.get_running_loop().create_future()
        rid = f"internal:{next(self._internal)}"
        self._waiters[rid] = future
        self.d.spawn(self._serve(request, Requester("", 0, rid, request.priority, None), False))
        return future

    def submit(self, ctx: Context, request: Request, trigger: bool, play: int = 0) -> None:
        if not self.accepting:
            raise RequestError("shutting_down", "the daemon is stopping and takes no new requests")
        if self.model is None:
            raise RequestError("not_ready", "the model is still loading; wait for /sao/ready 1")
        request = request.resolved(self.model, self.params.values)
        fmt = self._export_format(request)
        host, port = self.d.reply_target(ctx.host, ctx.port)
        requester = Requester(host, port, ctx.id, request.priority, fmt, play or int(trigger))
        if request.variations == 1:
            self.d.spawn(self._serve(request, requester, trigger))
            return
        for i in range(request.variations):  # distinct seeds: even a trigger wants new clips here
            self.d.spawn(self._serve(request.variation(i), dataclasses.replace(requester), False))

    def _export_format(self, request: Request) -> str | None:
        wanted = request.export
        if wanted is None:
            wanted = "default" if self.params["export"] and self.d.settings.export_dir else "none"
        if wanted == "none":
            return None
        if self.d.settings.export_dir is None:
            raise RequestError("no_export_dir", "export asked for, but the daemon runs without --export-dir")
        return self.params["export_format"] if wanted == "default" else wanted

    async def _serve(self, request: Request, r: Requester, trigger: bool) -> None:
        try:
            await self._lookup_or_queue(request, r, trigger)
        except Exception as err:  # a bug or a broken disk: the requester still gets an answer
            log.exception("request %r from %s failed", r.id, r.host)
            self.error(r, "internal", f"internal error: {type(err).__name__}: {err}")

    async def _lookup_or_queue(self, request: Request, r: Requester, trigger: bool) -> None:
        fp = self.model.fingerprint
        key, family = request.cache_key(fp), request.family_key(fp)
        any_seed = trigger and request.picked_seed  # any clip of this sound will do, made or being made
        clip = await self.d.io(self.d.store.latest if any_seed else self.d.store.get, family if any_seed else key)
        if clip is not None:
            self.d.io_nowait(self.d.store.touch, clip.key)
            await self._deliver(clip, r, cached=True)
            return
        if not self.accepting:
            self.error(r, "shutting_down", "the daemon is stopping and takes no new requests")
            return
        # No await from here to submit: a twin request arriving meanwhile finds this job.
        twin = self.sched.find_family(family) if any_seed else None
        if twin is not None:
            key, request = twin.key, twin.request
        try:
            job, _ = self.sched.submit(key, request, r, family)
        except Busy as err:
            self.error(r, err.code, str(err))
            return
        self._journal(job)
        self.d.send((r.host, r.port), "/sao/queued", r.id, self.sched.position(job))
        self.wake.set()

    def _journal(self, job: Job) -> None:
        requesters = [dataclasses.asdict(r) for r in job.requesters]
        self.d.io_nowait(self.d.store.journal_put, job.key, job.request.to_dict(), requesters)

    def resume(self, journal: list) -> None:
        """Queues again the jobs a killed daemon left in the journal; their requesters hear `/sao/queued`."""
        for key, request_dict, requesters in journal:
            try:
                request = Request.from_dict(request_dict).resolved(self.model, self.params.values)
            except RequestError as err:
                log.warning("dropping an interrupted job: %s", err)
                self.d.io_nowait(self.d.store.journal_drop, key)
                continue
            new_key = request.cache_key(self.model.fingerprint)
            if new_key != key:
                self.d.io_nowait(self.d.store.journal_drop, key)
            family = request.family_key(self.model.fingerprint)
            job = None
            for r in [Requester(**d) for d in requesters]:
                try:
                    job, _ = self.sched.submit(new_key, request, r, family)
                except Busy as err:
                    self.error(r, err.code, f"lost at the restart: {err}")
                    continue
                self.d.send((r.host, r.port), "/sao/queued", r.id, self.sched.position(job))
            if job is not None:
                self._journal(job)
            else:
                self.d.io_nowait(self.d.store.journal_drop, key)
        if journal:
            log.info("resumed %d jobs interrupted by the last shutdown", len(journal))
            self.wake.set()

    # ------------------------------------------------------------ output

    def error(self, r: Requester, code: str, message: str) -> None:
        if not r.host:
            future = self._waiters.pop(r.id, None)
            if future is not None and not future.done():
                future.set_exception(RequestError(code, message))
            return
        self.d.send((r.host, r.port), "/sao/error", r.id, code, message[:300])

    async def _deliver(self, clip: Clip, r: Requester, cached: bool) -> None:
        if not r.host:
            future = self._waiters.pop(r.id, None)
            if future is not None and not future.done():
                future.set_result(clip)
            return
        self.d.live.clip_done(r, clip)  # remembered for /sao/play <id>; played now for a trigger
        path = clip.path
        if r.export is not None:
            try:
                path = await self._export(clip, r.export)
            except Exception as err:
                log.exception("export of clip %s failed", clip.key)
                self.error(r, "export_failed", f"the clip is at {clip.path} but the export failed: {err}")
                return
        self.d.send((r.host, r.port), "/sao/done", r.id, str(path), float(clip.seconds), int(clip.seed), int(cached))

    async def _export(self, clip: Clip, fmt: str):
        folder = self.d.settings.export_dir
        done = await self.d.io(self.d.store.exported, clip.key, fmt, folder)
        if done is not None:
            return done
        request = Request.from_dict(clip.request)
        meta = {"model": self.model.name, "seconds": clip.seconds, "sample_rate": clip.sample_rate}
        path = await self.d.in_thread(_export_clip, clip.path, folder, request, fmt, meta)
        self.d.io_nowait(self.d.store.add_export, clip.key, fmt, path)
        return path

    # ------------------------------------------------------------ the worker's side

    async def run(self) -> None:
        """Feeds the worker one job at a time, most urgent first."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.d.worker_ready and self.sched.running is None and (job := self.sched.next()):
                self.idle.clear()
                if job.cancelled or not job.requesters:
                    self._end(job)
                    continue
                clip = await self.d.io(self.d.store.get, job.key)
                if clip is not None:  # made while this job waited (a twin request raced it)
                    self._end(job, drop_journal=False)
                    for r in job.requesters:
                        await self._deliver(clip, r, cached=True)
                    continue
                self._worker_job = next(self._ids)
                q = job.request
                params = dict(prompt=q.prompt, seconds=q.seconds, seed=q.seed, steps=q.steps, cfg_scale=q.cfg,
                              sampler=q.sampler, negative_prompt=q.negative or None)  # fmt: skip
                if q.bars is not None:  # a loop: exact length from bars and bpm, seam crossfaded
                    params["loop_seconds"] = q.bars * 240.0 / q.bpm
                path = self.d.store.clip_path(job.key)
                log.info("job %d: %r, %g s, seed %d (attempt %d)", self._worker_job, q.prompt[:60], q.seconds,
                         q.seed, job.attempts)  # fmt: skip
                self.d.worker.send(("job", self._worker_job, params, str(path)))
            if self.sched.running is None:
                self.idle.set()

    def _end(self, job: Job, drop_journal: bool = True) -> None:
        self.sched.finish(job)
        self._worker_job = None
        if drop_journal:
            self.d.io_nowait(self.d.store.journal_drop, job.key)
        self.wake.set()

    def on_worker(self, msg: tuple) -> None:
        kind, worker_job = msg[0], msg[1]
        job = self.sched.running
        if job is None or worker_job != self._worker_job:
            return  # a job that was already given up
        if kind == "progress":
            fraction = msg[2] / msg[3]
            for r in job.requesters:
                self.d.send((r.host, r.port), "/sao/progress", r.id, fraction)
        elif kind == "done":
            self._end(job, drop_journal=False)  # store.add drops it with the clip indexed
            self.d.spawn(self._complete(job, msg[2]))
        elif kind == "error":
            self._end(job)
            for r in job.requesters:
                self.error(r, msg[2], msg[3])
        elif kind == "cancelled":
            if job.requesters and self.accepting:  # someone asked again after the cancel
                self.sched.requeue(job)
                self.wake.set()
            else:
                self._end(job)

    async def _complete(self, job: Job, info: dict) -> None:
        family = job.request.family_key(self.model.fingerprint)
        try:
            clip = await self.d.io(self.d.store.add, job.key, family, info, job.request.to_dict())
        except Exception as err:
            log.exception("indexing clip %s failed", job.key)
            for r in job.requesters:
                self.error(r, "cache_failed", f"the clip was made but could not be stored: {err}")
            return
        if clip is None:
            for r in job.requesters:
                self.error(r, "generation_failed", "the clip file vanished before it could be indexed")
            return
        for r in job.requesters:
            await self._deliver(clip, r, cached=False)

    def worker_died(self) -> None:
        """The worker process ended: retry its job once (settings.retries), then report it."""
        job = self.sched.running
        if job is None:
            return
        self._worker_job = None
        if job.cancelled or not job.requesters:
            self._end(job)
        elif job.attempts <= self.d.settings.retries:
            log.warning(
                "the worker died during %r: trying again (attempt %d)", job.request.prompt[:60], job.attempts + 1
            )
            self.sched.requeue(job)
        else:
            self._end(job)
            for r in job.requesters:
                self.error(r, "worker_crashed", f"the model worker died {job.attempts} times making this clip")

    # ------------------------------------------------------------ cancel, status, settings

    def stop_running(self, code: str, message: str) -> None:
        """Tells the running job's requesters why, and has the worker stop it (shutdown)."""
        job = self.sched.running
        if job is None:
            return
        for r in job.requesters:
            self.error(r, code, message)
        job.requesters.clear()
        job.cancelled = True
        self.d.worker.send(("cancel", self._worker_job))
        self.d.io_nowait(self.d.store.journal_drop, job.key)

    def cancel(self, ctx: Context, id: int | str | None) -> None:
        removed = self.sched.cancel(ctx.host, id)
        for job, r in removed:
            self.error(r, "cancelled", "cancelled by /sao/cancel")
            if job is self.sched.running and job.cancelled:
                self.d.worker.send(("cancel", self._worker_job))
            elif not job.requesters:
                self.d.io_nowait(self.d.store.journal_drop, job.key)
            else:
                self._journal(job)
        if id is not None and not removed:
            raise RequestError("unknown_id", f"no queued or running request {id!r} from {ctx.host}")
        self.d.reply(ctx, "/sao/cancelled", "all" if id is None else id, len(removed))

    async def status(self, ctx: Context) -> None:
        clips, size = await self.d.io(self.d.store.stats)
        running = int(self.sched.running is not None)
        self.d.reply(ctx, "/sao/status", int(self.d.worker_ready), len(self.sched), running, clips,
                     round(size / 2**20, 3), self.d.worker.pid or 0, *self.d.live.status())  # fmt: skip


def _export_clip(*args):
    from .export import export_clip  # numpy and soundfile load on the export thread, off the start-up path

    return export_clip(*args)
