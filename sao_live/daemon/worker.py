"""The model worker: a separate process that owns the pipeline (docs/architecture.md).

The control plane never waits on torch: it talks to the worker over one multiprocessing
pipe. Control -> worker: `("job", job_id, params, path)`, `("cancel", job_id)`,
`("threads", n)`, `("ping", t)`, `("stop",)`. Worker -> control: `("ready", model_info)`,
`("fatal", code, message)` (the model did not load), `("progress", job_id, done, total)`,
`("audio", job_id, offset, total, sample_rate, decode_seconds, decode_done, chunk)` (a job asked
to stream: its audio in time order while the rest decodes; `decode_seconds` is the decoding time
so far, `decode_done` the fraction of the decoding's work finished),
`("done", job_id, info)` (info includes the stage timings), `("error", job_id, code, message)`,
`("cancelled", job_id)`, `("pong", t)`. A reader thread in the worker answers pings and takes cancels while the main
thread generates; it exits the process when the pipe closes, so a worker never outlives a
killed daemon. On the control side `Worker` starts the process (spawn) and turns everything
the pipe brings, and the process's death (`("exit", code)`), into calls on the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from ..errors import SaoLiveError

log = logging.getLogger(__name__)


class CacheWriteError(SaoLiveError):
    """The clip was made but its file could not be written to the cache folder."""

    code = "cache_failed"


def cache_write_error(err: OSError, cache_dir: Path) -> CacheWriteError:
    """What a requester is told when the clip file cannot be written, with the reason in words."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = f"no space left on the device holding the cache folder {cache_dir}"
    else:
        reason = f"cannot write to the cache folder {cache_dir}: {err.strerror or err}"
    return CacheWriteError(f"the clip was made but could not be stored: {reason}")


def fingerprint(model: str, text_encoder: str | None, numerics: str, device_type: str, raw_config: dict) -> str:
    """A model identity for cache keys: config, weights file identity (path, size, mtime), text encoder,
    numerics and device type. Random models are identified by name (their weights come from a seed)."""
    from ..engine.loading import resolve_model_files
    from ..engine.pipeline import RANDOM_MODELS

    parts: list = [json.dumps(raw_config, sort_keys=True), numerics, device_type]
    if str(model) in RANDOM_MODELS:
        parts.append(("random", str(model)))
    else:
        _, weights = resolve_model_files(model)
        st = weights.stat()
        parts.append((str(weights.resolve()), st.st_size, st.st_mtime_ns))
    encoder = Path(text_encoder).expanduser() if text_encoder else None
    if encoder is not None and encoder.is_dir():
        files = sorted(p for p in encoder.iterdir() if p.suffix in (".safetensors", ".bin", ".json"))
        parts.append([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files])
    else:
        parts.append(str(text_encoder))
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- inside the worker process


def _model_info(spec: dict, pipe) -> dict:
    from ..engine import sampling
    from ..engine.pipeline import DEFAULTS

    cfg = pipe.cfg
    d = DEFAULTS[cfg.objective]
    samplers = sampling.RF_SAMPLERS if cfg.objective == "rf" else sampling.V_SAMPLERS
    key = pipe.arithmetic.key  # int8 or bf16 arithmetic changes the audio
    numerics = spec["numerics"] + (f"+{key}" if key else "")
    fp = fingerprint(spec["model"], spec["text_encoder"], numerics, pipe.device.type, cfg.raw)
    return dict(
        name=str(spec["model"]),
        fingerprint=fp,
        window_seconds=cfg.window_seconds,
        sample_rate=cfg.sample_rate,
        objective=cfg.objective,
        steps=d["steps"],
        cfg=d["cfg_scale"],
        sampler=d["sampler"],
        samplers=list(samplers),
    )


class _AudioSender:
    """Sends a streaming job's audio to the control process with the time spent decoding it so far,
    from which the player predicts when the rest will be there."""

    def __init__(self, job_id: int, total: int, sample_rate: int, send: Callable, cancelled: set):
        self.job_id, self.total, self.sample_rate, self.send = job_id, total, sample_rate, send
        self.cancelled = cancelled
        self.sent = 0
        self.decoding = time.perf_counter()

    def after(self, progress: Callable) -> Callable:
        def step(done: int, steps: int) -> None:
            progress(done, steps)
            self.decoding = time.perf_counter()  # after the sampler's last step, decoding begins

        return step

    def __call__(self, chunk, done: float) -> None:
        from ..errors import Cancelled

        if self.job_id in self.cancelled:  # a cancel stops the decoding too
            raise Cancelled(f"job {self.job_id} cancelled")
        spent = time.perf_counter() - self.decoding
        self.send(("audio", self.job_id, self.sent, self.total, self.sample_rate, spent, done, chunk))
        self.sent += chunk.shape[1]


def _generate(pipe, job_id, params: dict, path: str, cancelled: set, send) -> None:
    audio, sample_rate, seed, timings = render(pipe, job_id, params, cancelled, send)
    send(("done", job_id, dict(write_clip(path, audio, sample_rate, seed), timing=timings)))


def render(pipe, job_id, params: dict, cancelled: set, send):
    """Makes a job's audio: (audio (channels, samples), sample rate, seed, stage timings). Sends `progress`
    per step and raises Cancelled at the next step once `job_id` is in `cancelled`; with `stream` in
    `params`, also sends the audio as it decodes (`audio` messages). The worker and the pool's actors
    (pool_actor.py) both make clips with it."""
    from ..errors import Cancelled

    def progress(done: int, total: int) -> None:
        if job_id in cancelled:
            raise Cancelled(f"job {job_id} cancelled")
        send(("progress", job_id, done, total))

    from ..live.loops import XFADE_SECONDS, cut_loop

    params = dict(params)
    loop_seconds = params.pop("loop_seconds", None)
    stream = params.pop("stream", False)
    if loop_seconds:  # a little past the loop's end, for the seam's crossfade (live/loops.py)
        params["seconds"] = min(pipe.cfg.window_seconds, loop_seconds + XFADE_SECONDS)
    if stream:  # the audio as it decodes, for a player that starts before the clip is finished
        total, rate = round(params["seconds"] * pipe.cfg.sample_rate), pipe.cfg.sample_rate
        sender = _AudioSender(job_id, total, rate, send, cancelled)
        result = pipe.generate(progress=sender.after(progress), on_audio=sender, **params)
    else:
        result = pipe.generate(progress=progress, **params)
    audio = result.audio
    if loop_seconds:
        sr = result.sample_rate
        audio = cut_loop(audio, round(loop_seconds * sr), round(XFADE_SECONDS * sr))
    return audio, result.sample_rate, result.seed, result.timings


def write_clip(path: str, audio, sample_rate: int, seed: int) -> dict:
    """Writes a clip atomically to its cache path; the `done` message's info (bytes, sha256, seed, seconds,
    sample_rate). CacheWriteError when the disk refuses it."""
    from ..audio import write_audio
    from .store import CLIP_MODE, file_sha256

    out = Path(path)  # <cache folder>/clips/<key[:2]>/<key>.wav
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_audio(out, audio, sample_rate, "wav", "32f", mode=CLIP_MODE)
    except OSError as err:  # a full disk: the daemon reports it and keeps serving what is cached
        raise cache_write_error(err, out.parents[2]) from None
    return dict(
        bytes=out.stat().st_size,
        sha256=file_sha256(out),
        seed=seed,
        seconds=audio.shape[1] / sample_rate,
        sample_rate=sample_rate,
    )


def cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def threads_beside(player_realtime: bool | None) -> int:
    """Torch threads for the worker beside a player whose callback is realtime or not (None: no player).

    The worker runs at nice 10. Measured on 2 cores, 16 voices looping for 60 s while it made
    Small's clips (BENCHMARKS.md): with a realtime callback (a realtime JACK server), every core
    gave 0 underruns, as one core did, and made the clips 1.5x faster; with a callback at normal
    priority (nice -10 at best), every core gave 13-22 underruns, even with the worker at
    SCHED_IDLE, and one core fewer gave 0. So every core, but one fewer where the callback
    is not realtime; one core is always one thread."""
    n = cores()
    return max(1, n - 1) if player_realtime is False else n


def _worker_main(conn, spec: dict) -> None:
    """The worker process: load the model, then run jobs one at a time until told to stop."""
    # Ctrl-C in a terminal reaches the whole process group: the daemon decides when the worker
    # stops (after the running job), and a KeyboardInterrupt here would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=spec.get("log_level", logging.INFO), format="%(asctime)s %(name)s[worker]: %(message)s")
    if hasattr(os, "nice"):  # POSIX
        with contextlib.suppress(OSError):
            os.nice(spec.get("nice", 0))
    import torch

    torch.set_num_threads(spec.get("threads") or cores())  # the daemon may send a count for the jobs
    lock = threading.Lock()
    jobs: queue.Queue = queue.Queue()
    cancelled: set = set()

    def send(msg) -> None:
        with lock:  # the reader thread answers pings while the main thread reports progress
            conn.send(msg)

    def reader() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                os._exit(0)  # the daemon is gone: nobody to work for
            if msg[0] == "ping":
                send(("pong", msg[1]))
            elif msg[0] == "cancel":
                cancelled.add(msg[1])
            else:  # jobs, "threads" and "stop", in order
                jobs.put(msg)

    threading.Thread(target=reader, name="worker-reader", daemon=True).start()
    from ..engine.pipeline import load_pipeline
    from ..errors import Cancelled, SaoLiveError

    try:
        pipe = load_pipeline(
            spec["model"],
            spec["text_encoder"],
            spec["device"],
            spec["numerics"],
            spec.get("int8"),
            spec.get("arithmetic"),
        )
        send(("ready", _model_info(spec, pipe)))
    except SaoLiveError as err:
        send(("fatal", err.code, str(err)))
        return
    except Exception as err:
        log.error("the model did not load:\n%s", traceback.format_exc())
        send(("fatal", "model_load_failed", f"the model did not load: {type(err).__name__}: {err}"))
        return
    while True:
        msg = jobs.get()
        if msg[0] == "stop":
            return
        if msg[0] == "threads":  # set here: torch's thread count belongs to the thread running the jobs
            torch.set_num_threads(msg[1])
            log.info("%d torch threads from now on", msg[1])
            continue
        _, job_id, params, path = msg
        try:
            if job_id in cancelled:
                raise Cancelled(f"job {job_id} cancelled")
            _generate(pipe, job_id, params, path, cancelled, send)
        except Cancelled:
            send(("cancelled", job_id))
        except SaoLiveError as err:
            send(("error", job_id, err.code, str(err)))
        except Exception as err:
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            send(("error", job_id, "generation_failed", f"{type(err).__name__}: {err}"))
        cancelled.discard(job_id)


# ---------------------------------------------------------------- in the control process


class Worker:
    """One worker process; `on_event(worker, msg)` runs on the event loop for every message.

    `target(conn, spec)` is the process's main: the model worker's by default, the pool's (pool_driver.py)
    for a model pool, which speaks the same messages."""

    def __init__(self, spec: dict, on_event: Callable, loop, target: Callable | None = None, name: str = "worker"):
        self.spec = spec
        self.target = target or _worker_main
        self.name = name
        self._on_event = on_event
        self._loop = loop
        self.process = None
        self._conn = None
        self.ready = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        name = f"sao-live-{self.name}"
        self.process = ctx.Process(target=self.target, args=(child, self.spec), name=name, daemon=True)
        self.process.start()
        child.close()
        log.info("%s started (pid %d), loading %s", self.name, self.process.pid, self.spec["model"])
        threading.Thread(target=self._read, name="worker-events", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                break
            self._post(msg)
        self.process.join()
        self._post(("exit", self.process.exitcode))

    def _post(self, msg) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon is gone
            self._loop.call_soon_threadsafe(self._on_event, self, msg)

    def send(self, msg) -> None:
        with contextlib.suppress(OSError, ValueError):  # a dead worker: the reader thread reports it
            self._conn.send(msg)

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()

    def stop(self, timeout: float) -> None:
        """Asks the worker to finish and waits (blocking: call from a thread); kills it past `timeout`."""
        if self.process is None:
            return
        self.send(("stop",))
        deadline = time.monotonic() + timeout
        while self.process.is_alive() and time.monotonic() < deadline:
            self.process.join(0.1)  # join() may return while the process is still being reaped
        if self.process.is_alive():
            log.warning("%s %d did not stop within %.0f s: killed", self.name, self.process.pid, timeout)
            self.process.kill()
            self.process.join(5)
        self._conn.close()
