"""The Scheduler: which job runs next (docs/architecture.md).

Plain data, no IO and no asyncio, so its rules are easy to test: jobs are ordered by
priority (0 play now, 1 pre-render, 2 background refill), then by arrival; several jobs may
run at once (one per free slot: the local worker, or each actor of a pool), and the caller
takes the next one only when it has a free slot; a request
whose cache key is already queued or running joins that job (one generation, every
requester answered), lifting its priority if it asks for sooner; cancel removes one
requester, and a job nobody waits for any more is dropped (or, when running, marked
for the worker to stop); a full queue refuses new jobs with `Busy`, and so does a job
that already has `max_requesters` requesters. A job whose clip is made stays findable
while it is delivered (exported, answered), so that a twin arriving meanwhile joins it
instead of making the clip again.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ..errors import SaoLiveError
from ..request import Request, Requester


class Busy(SaoLiveError):
    code = "busy"


@dataclass(eq=False)
class Job:
    key: str
    request: Request  # resolved: steps, cfg and sampler filled in
    priority: int
    seq: int
    family: str = ""  # the key without the seed: a seedless trigger may join any job of its family
    requesters: list[Requester] = field(default_factory=list)
    attempts: int = 0  # started on a worker this many times
    cancelled: bool = False  # running, but nobody waits for it any more
    progress: float = 0.0  # the fraction last reported to its requesters

    @property
    def order(self) -> tuple[int, int]:
        return (self.priority, self.seq)


class Scheduler:
    def __init__(self, max_queued: int = 256, max_requesters: int = 64):
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, got {max_queued!r}")
        if max_requesters < 1:
            raise ValueError(f"max_requesters must be at least 1, got {max_requesters!r}")
        self.max_queued = max_queued
        self.max_requesters = max_requesters
        self._queued: dict[str, Job] = {}
        self.running: list[Job] = []  # started on a slot, in the order they started
        self._delivering: dict[str, Job] = {}  # made, being exported and answered
        self._seq = itertools.count()
        self._front = itertools.count(-1, -1)

    def __len__(self) -> int:
        return len(self._queued)

    def jobs(self) -> list[Job]:
        """Running jobs first, then the queue in the order it will run."""
        return self.running + sorted(self._queued.values(), key=lambda j: j.order)

    def find(self, key: str) -> Job | None:
        running = next((j for j in self.running if j.key == key), None)
        if running is not None:
            return running
        return self._queued.get(key) or self._delivering.get(key)

    def find_family(self, family: str) -> Job | None:
        """A job of this family (running first, then queued, then being delivered), for a seedless trigger."""
        jobs = [*self.jobs(), *self._delivering.values()]
        return next((j for j in jobs if j.family == family), None)

    def submit(self, key: str, request: Request, requester: Requester, family: str = "") -> tuple[Job, bool]:
        """Queues a job for `key`, or joins the one already there; (job, merged). Raises Busy."""
        job = self.find(key)
        if job is not None:
            if len(job.requesters) >= self.max_requesters:
                raise Busy(
                    f"{self.max_requesters} requesters already wait for this clip (requesters_per_job); try again later"
                )
            job.requesters.append(requester)
            job.priority = min(job.priority, requester.priority)
            job.cancelled = False
            return job, True
        if len(self._queued) >= self.max_queued:
            raise Busy(f"the queue is full ({self.max_queued} jobs waiting); try again later")
        job = Job(key, request, requester.priority, next(self._seq), family, [requester])
        self._queued[key] = job
        return job, False

    def position(self, job: Job) -> int:
        """How many jobs run before `job`: those queued ahead of it and those running (0: it is running
        or made, or starts next on an idle worker)."""
        if job in self.running or self._delivering.get(job.key) is job:
            return 0
        ahead = sum(1 for j in self._queued.values() if j.order < job.order)
        return ahead + len(self.running)

    def next(self) -> Job | None:
        """Takes the most urgent queued job and marks it running (the caller has a free slot for it)."""
        if not self._queued:
            return None
        job = min(self._queued.values(), key=lambda j: j.order)
        del self._queued[job.key]
        job.attempts += 1
        job.progress = 0.0
        self.running.append(job)
        return job

    def finish(self, job: Job) -> None:
        """A running job ended (done, failed or cancelled)."""
        if job not in self.running:
            raise RuntimeError(f"job {job.key} is not a running job")
        self.running.remove(job)

    def deliver(self, job: Job) -> None:
        """A running job's clip is made: its slot is free, and the job stays findable until `delivered`."""
        self.finish(job)
        self._delivering[job.key] = job

    def delivered(self, job: Job) -> None:
        """Every requester of a job being delivered has its answer."""
        if self._delivering.get(job.key) is not job:
            raise RuntimeError(f"job {job.key} is not being delivered")
        del self._delivering[job.key]

    def requeue(self, job: Job) -> None:
        """Puts a running job back at the head of its priority (its worker died)."""
        self.finish(job)
        job.seq = next(self._front)
        self._queued[job.key] = job

    def cancel(self, target: tuple[str, int], id: int | str | None) -> list[tuple[Job, Requester]]:
        """Removes the requesters answered at `target` (host, port) with this `id` (every one of
        them when id is None); returns them. Another sender's requests are never touched.

        A queued job left without requesters is dropped; a running one is marked `cancelled`
        and the caller stops the worker.
        """
        removed = []
        for job in self.jobs():
            keep = []
            for r in job.requesters:
                if (r.host, r.port) == target and (id is None or r.id == id):
                    removed.append((job, r))
                else:
                    keep.append(r)
            job.requesters = keep
            if not keep:
                if job in self.running:
                    job.cancelled = True
                else:
                    del self._queued[job.key]
        return removed

    def drain(self) -> list[Job]:
        """Removes every queued job (shutdown); the running ones stay."""
        jobs = sorted(self._queued.values(), key=lambda j: j.order)
        self._queued.clear()
        return jobs
