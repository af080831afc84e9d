"""A model pool's actor: one loaded pipeline on a node of a Ray cluster (docs/cluster.md).

The pool process (pool_driver.py) makes one per GPU, or per `pool_cpus_per_actor` cores, of each
node. It makes clips with the worker's own `render` (the pipeline, progress per step, cancel at the
next step) and returns the audio: the daemon writes the cache file on its own machine. Ray runs
its methods on a few threads, so `progress` (a long poll: Ray's client cannot stream an actor's
results) and `cancel` are answered while `generate` makes a clip. Nothing here imports ray: the
pool process wraps the class with `ray.remote`, and a node imports this module from its own
sao-live install.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import traceback

from .worker import _model_info, render

log = logging.getLogger(__name__)
PROBE = dict(prompt="sao-live probe", seconds=1.0, seed=0, steps=2)  # the speed test after loading


def _ignore(_msg) -> None:
    pass


class ModelActor:
    def __init__(self, spec: dict):
        self.spec = spec  # model, text_encoder, device, numerics, int8, threads, nice
        self.pipe = None
        self.cancelled: set = set()
        self._steps: dict = {}  # job id -> [steps done, steps in all, over]
        self._changed = threading.Condition()

    def load(self) -> tuple:
        """("ready", info) once the model is loaded and timed on a short probe clip; ("fatal", code, message)."""
        import torch

        from ..engine.pipeline import load_pipeline
        from ..errors import SaoLiveError

        s = self.spec
        if s.get("threads"):
            torch.set_num_threads(s["threads"])
        if s.get("nice") and hasattr(os, "nice"):  # as the worker: a node that also plays or serves keeps its CPU
            with contextlib.suppress(OSError):
                os.nice(s["nice"])
        try:
            self.pipe = load_pipeline(s["model"], s["text_encoder"], s["device"], s["numerics"], s.get("int8"))
            start = time.perf_counter()
            render(self.pipe, "probe", PROBE, set(), _ignore)
            probe = time.perf_counter() - start
        except SaoLiveError as err:
            return ("fatal", err.code, str(err))
        except Exception as err:
            log.error("the model did not load:\n%s", traceback.format_exc())
            return ("fatal", "model_load_failed", f"the model did not load: {type(err).__name__}: {err}")
        device = self.pipe.device
        if device.type == "cuda":
            device = torch.device("cuda", torch.cuda.current_device())
        info = dict(model=_model_info(s, self.pipe), device=str(device), host=socket.gethostname(), pid=os.getpid())
        info.update(probe_s=probe, probe_work=PROBE["steps"] * PROBE["seconds"], threads=torch.get_num_threads())
        return ("ready", info)

    def generate(self, job_id: int, params: dict) -> tuple:
        """("done", audio, sample_rate, seed, timings), ("error", code, message) or ("cancelled",)."""
        from ..errors import Cancelled, SaoLiveError

        try:
            return ("done", *render(self.pipe, job_id, params, self.cancelled, self._progress))
        except Cancelled:
            return ("cancelled",)
        except SaoLiveError as err:
            return ("error", err.code, str(err))
        except Exception as err:
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            return ("error", "generation_failed", f"{type(err).__name__}: {err}")
        finally:
            self.cancelled.discard(job_id)
            with self._changed:
                self._state(job_id)[2] = True
                self._changed.notify_all()

    def progress(self, job_id: int, seen: int, wait: float = 1.0) -> tuple[int, int, bool]:
        """(steps done, steps, over) once more than `seen` steps are done or the job is over, or after `wait` s."""
        with self._changed:
            state = self._state(job_id)
            self._changed.wait_for(lambda: state[0] > seen or state[2], timeout=wait)
            if state[2]:
                del self._steps[job_id]
            return tuple(state)

    def cancel(self, job_id: int) -> None:
        self.cancelled.add(job_id)  # `render` raises Cancelled at its next step

    def _state(self, job_id: int) -> list:
        return self._steps.setdefault(job_id, [0, 0, False])

    def _progress(self, msg: tuple) -> None:
        if msg[0] != "progress":
            return  # other messages of `render` stay on the node
        with self._changed:
            state = self._state(msg[1])
            state[0], state[1] = msg[2], msg[3]
            self._changed.notify_all()
