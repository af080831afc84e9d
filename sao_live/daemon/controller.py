"""What the OSC handlers and the web page act on: the clip service and the live stage, behind one small object.

A handler parses a message's atoms and calls one method here; the controller knows where the
sender's replies go (`Replies`), which part owns what (requests and their settings: the clip
service; pads, playback and the live settings: the stage; bpm: the one Tempo) and what
`/sao/status` adds up. It never waits: slow work runs in a task of the runtime. The web page
(`sao_live.web`) calls the same methods, so both raise the same error codes and sentences;
its requests carry the host `events.WEB` and are answered over its WebSocket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..events import WEB
from ..live.sets import LiveSet, SetError, set_file
from ..live.stage import STAGE_PARAMS, Stage
from ..request import Request
from ..runtime import Runtime
from .guard import RateLimitedLog
from .replies import Replies
from .service import ClipService
from .workers import WorkerSupervisor

if TYPE_CHECKING:
    from ..live.player import Take

log = logging.getLogger(__name__)


@dataclass
class Context:
    """Where one message came from, and the id to echo once the handler has read it."""

    host: str
    port: int  # the sender's source port (Max and Pd send from a random one)
    address: str
    id: int | str = ""


class Controller:
    def __init__(
        self,
        service: ClipService,
        stage: Stage,
        replies: Replies,
        workers: WorkerSupervisor,
        runtime: Runtime,
        model_name: str,
    ):
        self.service = service
        self.stage = stage
        self.replies = replies
        self.workers = workers
        self.runtime = runtime
        self.model_name = model_name
        self.load_log = RateLimitedLog(log)  # a client can send /sao/load as often as it likes

    def reply(self, ctx: Context, address: str, *args) -> None:
        self.replies.reply(ctx.host, ctx.port, address, *args)

    @property
    def bpm(self) -> float:
        return self.stage.tempo.bpm

    # ------------------------------------------------------------ requests

    def submit(self, ctx: Context, request: Request, trigger: bool, play: int = 0) -> None:
        host, port = self.replies.target(ctx.host, ctx.port)
        self.service.submit(host, port, ctx.id, request, trigger, play)

    def submit_web(self, id: str, request: Request, trigger: bool) -> None:
        """The web page's request: its events go to the page (host `events.WEB`), never over OSC."""
        self.service.submit(WEB, 0, id, request, trigger)

    def cancel_requester(self, host: str, port: int, id: int | str) -> int:
        """The web page's cancel: any client's request as the queue shows it (its sender hears `cancelled`)."""
        return self.service.cancel((host, port), id, "cancelled on the web page")

    def queue(self) -> list[tuple]:
        """(job, requester, position, running) for every request waiting or running, in the order they run."""
        sched = self.service.sched
        return [(job, r, sched.position(job), job in sched.running) for job in sched.jobs() for r in job.requesters]

    def cancel(self, ctx: Context, id: int | str | None) -> None:
        """The sender's own requests only: those whose replies go where this sender's go."""
        count = self.service.cancel(self.replies.target(ctx.host, ctx.port), id)
        self.reply(ctx, "/sao/cancelled", "all" if id is None else id, count)

    def status(self, ctx: Context) -> None:
        pool = self.service.pool

        async def answer():
            extra = pool.status() if pool is not None else ()  # <serving> <actors> <busy> with a pool
            self.reply(ctx, "/sao/status", *await self.service.status(), *self.stage.status(), *extra)

        self.runtime.spawn(answer())

    def pool(self, ctx: Context) -> None:
        """`/sao/pool`: a `/sao/pool/actor` row per actor, then `/sao/pool <serving> <actors> <busy>`."""
        pool = self.service.pool
        if pool is None:
            self.reply(ctx, "/sao/pool", "local" if self.workers.ready else "none", 0, 0)
            return
        for row in pool.rows():
            self.reply(ctx, "/sao/pool/actor", *row)
        self.reply(ctx, "/sao/pool", *pool.status())

    async def status_fields(self) -> dict:
        """What `/sao/status` says, by name, with the model and the tempo source (the web page's status line)."""
        ready, queued, running, clips, cache_mb, worker = await self.service.status()
        audio, voices, underruns, errors, bpm, live_set, bank, stolen = self.stage.status()
        model = self.service.model
        return dict(
            model=self.model_name, ready=ready, queued=queued, running=running, clips=clips, cache_mb=cache_mb,
            worker_pid=worker, audio=audio, voices=voices, underruns=underruns, callback_errors=errors, bpm=bpm,
            tempo_source=self.stage.tempo.source, set=live_set, bank=bank, stolen=stolen,
            samplers=list(model.samplers) if model else [], window_seconds=model.window_seconds if model else 0,
        )  # fmt: skip

    def hello(self, ctx: Context, port: int) -> None:
        self.replies.register(ctx.host, ctx.port, port)
        pool = self.service.pool
        atoms = pool.ready_atoms() if pool is not None else (int(self.workers.ready), self.model_name)
        self.reply(ctx, "/sao/ready", *atoms)

    # ------------------------------------------------------------ settings

    def set_param(self, name: str, value) -> None:
        if name in STAGE_PARAMS:
            self.stage.set_param(name, value)
        else:
            self.service.params.set(name, value, self.service.model)

    def get_param(self, name: str):
        if name in STAGE_PARAMS:
            return self.stage.get_param(name)
        return self.service.params.get(name, self.service.model)

    # ------------------------------------------------------------ the stage

    def need_audio(self) -> None:
        self.stage.audio.need()

    def play(self, target, gain: float, started: Callable[[int, Take, bool], None]) -> None:
        """Plays `pad<n>` or a request id's clip; `started(voice, take, nearest)` when it starts (a clip
        still decoding starts once it can play to its end)."""
        if isinstance(target, str) and target.startswith("pad"):
            started(*self.stage.pads.hit(int(target[3:]), gain=gain))
            return
        self.stage.pads.play_id(target, gain, started)

    def hit(self, number: int, velocity: float) -> tuple[int, Take, bool]:
        return self.stage.pads.hit(number, velocity)

    def release(self, number: int) -> None:
        self.stage.pads.release(number)

    def stop(self, target) -> int:
        return self.stage.pads.stop(target)

    def set_bank(self, bank) -> int:
        return self.stage.pads.set_bank(bank)

    def pad_grid(self) -> dict:
        """The loaded set's current bank as the web page draws it: each pad's state and pool size."""
        pads = self.stage.pads
        live = pads.set
        if live is None:
            return dict(name="", bank=0, banks=[], pads=[])
        grid = []
        for pad in live.banks[pads.bank]:
            state = pads.pads.get((pad.bank, pad.index))
            ready = state is not None and state.last is not None
            pool = len(state.pool) if state else 0
            refilling = state.refilling if state else 0
            grid.append(dict(number=pad.index, note=pad.note, prompt=pad.prompt, mode=pad.mode, ready=ready,
                             rendering=refilling, pool=pool, variations=pad.variations))  # fmt: skip
        return dict(name=live.name, bank=pads.bank, banks=[f"bank {i}" for i in range(len(live.banks))], pads=grid)

    async def play_clip(self, clip) -> int:
        """Plays a clip of the cache on the daemon's player (the web library's play); its voice."""
        return await self.stage.pads.play_clip(clip)

    def stop_clip(self, key: str) -> int:
        return self.stage.pads.stop_clip(key)

    def load(self, ctx: Context, name: str) -> None:
        """Loads set `name` from the sets folder in the background; `/sao/loaded` when it is ready,
        `/sao/error` if not. A bad name is refused at once (SetError `bad_set_name`). The client
        hears what is wrong with the file, never what is in it: the full reason goes to the log."""
        path = set_file(self.service.settings.sets_dir, name)

        async def run():
            try:
                live = await self.stage.pads.load_set(path, shown=path.name, replaceable=True)
            except SetError as err:
                self.load_log.warning("/sao/load %s from %s: %s (%s)", path.name, ctx.host, err, err.code)
                self.reply(ctx, "/sao/error", ctx.id, err.code, err.public[:300])
                return
            except Exception as err:  # a bug: the sender still gets an answer
                log.exception("/sao/load %s from %s", path.name, ctx.host)
                self.reply(ctx, "/sao/error", ctx.id, "internal", f"internal error: {type(err).__name__}")
                return
            self.reply(ctx, "/sao/loaded", live.name, len(live.pads), len(live.banks))

        self.runtime.spawn(run())

    async def load_named(self, name: str) -> LiveSet:
        """The web page's load: as `/sao/load <name>` (SetError with the same codes), answered when loaded."""
        path = set_file(self.service.settings.sets_dir, name)
        return await self.stage.pads.load_set(path, shown=path.name, replaceable=True)

    def set_names(self) -> list[str]:
        """The sets `load` can take by name: the set files in the sets folder."""
        folder = self.service.settings.sets_dir
        try:
            return sorted(p.stem for p in folder.glob("*.toml") if p.is_file() and not p.name.startswith("."))
        except OSError:
            return []
