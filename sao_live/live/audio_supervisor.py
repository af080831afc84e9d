"""The audio process's keeper: opens the player, prepares clips as takes, restarts a dead one.

The player (player.py) runs the stream and the mixer in a process of its own. This side opens
it (PortAudio scans devices: call `start` from a thread), turns clips into Takes (read and
resampled once, on its own thread), notices a process that died or a stream that stopped
asking for audio (its server went away), and then opens a new one with a growing pause and
loads every kept take into it again, asking the takes' holders (`holders`) to swap them in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from ..request import RequestError
from ..runtime import Runtime
from .player import LAUNCH_MARGIN, NoAudioDevice, Player, Take
from .tempo import Tempo

log = logging.getLogger(__name__)
STALL_SECONDS = 2.0  # a stream that asks for no audio this long is dead (its server went away): restart


class AudioSupervisor:
    def __init__(
        self,
        runtime: Runtime,
        tempo: Tempo,
        clip_path: Callable[[str], Path],
        device: str | None,
        voices: int,
        master_db: float,
        blocksize: int,
        nice: int,
    ):
        self.runtime = runtime
        self.tempo = tempo
        self.clip_path = clip_path  # where a take's clip file is, to load it again after a restart
        self.device, self.voices, self.master_db, self.blocksize, self.nice = device, voices, master_db, blocksize, nice
        self.player: Player | None = None
        self.note = "not started"
        self.stolen = 0  # voices cut short because every voice was busy (as last reported)
        self.starved = 0  # streamed voices faded out because their audio stopped arriving (as last reported)
        self.holders: list = []  # objects with kept_takes() and replace_takes(moved): the pad bank
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="sao-prepare")
        self._frame_seen = (0, time.monotonic())  # the player's frame clock, and when it last moved
        tempo.frame_clock = self.frame_clock

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Opens the player (blocking: PortAudio scans its devices)."""
        if self.device == "none":
            self.note = "disabled (audio_device = none), export only"
        else:
            try:
                self.player = self._open(self.master_db)
                self.tempo.rate = self.player.rate
                self.note = self.player.device_name
            except NoAudioDevice as err:
                self.note = f"{err}; export only"  # the reason says what is missing
        log.info("audio: %s", self.note)

    def _open(self, master_db: float) -> Player:
        return Player.open(self.device, self.voices, master_db, self.blocksize, nice=self.nice)

    def close(self) -> None:
        if self.player is not None:
            self.player.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def frame_clock(self) -> tuple[int, float]:
        return (self.player.frame if self.player else 0), time.monotonic()

    def need(self) -> Player:
        """The player, or RequestError `no_audio`."""
        if self.player is None:
            raise RequestError("no_audio", f"nothing can play: {self.note}")
        return self.player

    def start_frame(self, quantize: str) -> int:
        """The frame a launch quantised to `quantize` starts at (0: at once)."""
        if quantize == "off" or self.player is None:
            return 0
        return self.tempo.next_boundary(self.player.frame + LAUNCH_MARGIN, quantize)

    def status(self) -> tuple:
        """(audio on, voices playing, underruns, errors)."""
        p = self.player
        return int(p is not None), p.voices_playing() if p else 0, p.underruns if p else 0, p.errors if p else 0

    # ------------------------------------------------------------ takes

    async def prepare(self, clip, loop_seconds: float | None = None) -> Take:
        """A clip (from the store) as a Take the player holds; a bare Take without a player."""
        if self.player is None:
            return Take(0, int(clip.seed), clip.key)
        p = self.player
        prepare = partial(p.prepare, clip.path, int(clip.seed), clip.key, loop_seconds)
        return await asyncio.get_running_loop().run_in_executor(self.pool, prepare)

    # ------------------------------------------------------------ watching

    def check(self) -> None:
        """Sends the player's pending messages, reports stolen voices and an audio process that died."""
        p = self.player
        if p is None or p.process is None:
            return
        if not p.alive:
            self.player = None
            self.note = f"the audio process stopped (exit code {p.process.exitcode}); restarting it"
            log.error("audio: %s", self.note)
            self.runtime.spawn(self._restart(p))
            return
        frame, now = p.frame, time.monotonic()
        if frame != self._frame_seen[0]:
            self._frame_seen = (frame, now)
        elif now - self._frame_seen[1] > STALL_SECONDS:
            log.error(
                "audio: the stream has played nothing for %.0f s (did the audio server stop?); restarting it",
                now - self._frame_seen[1],
            )
            self._frame_seen = (frame, now)
            p.process.kill()  # seen as dead on the next look, and restarted
            return
        p.poll()
        if p.stolen > self.stolen:
            log.warning("%d voice(s) stolen: all %d voices were busy", p.stolen - self.stolen, p.voices)
            self.stolen = p.stolen
        if p.starved > self.starved:
            log.warning("%d streamed voice(s) faded out: their audio stopped arriving", p.starved - self.starved)
            self.starved = p.starved

    async def _restart(self, old: Player) -> None:
        """A new audio process, with every kept take loaded into it; retries with a growing pause."""
        delay = 0.5
        while self.player is None:
            await asyncio.sleep(delay)
            try:
                player = await self.runtime.in_thread(self._open, old.master_db)
            except NoAudioDevice as err:
                delay = min(2 * delay, 30.0)
                self.note = f"{err}; trying again in {delay:.0f} s"
                log.warning("audio: %s", self.note)
                continue
            self.player, self.note = player, player.device_name
            self._frame_seen = (player.frame, time.monotonic())
            self.tempo.rate, self.tempo.anchor = player.rate, 0.0  # the new process's frame clock starts at 0
            await self._move_takes(player, old.rate)
            log.info("audio: restarted on %s", player.device_name)

    async def _move_takes(self, player: Player, old_rate: int) -> None:
        """Loads every kept take into `player` (from the clip files), then has the holders swap them in."""
        takes = {id(t): t for h in self.holders for t in h.kept_takes() if t.player != player.serial}
        moved: dict[int, Take | None] = {}
        loop = asyncio.get_running_loop()
        for key, take in takes.items():
            loop_seconds = take.loop_frames / old_rate if take.loop_frames else None
            try:
                prepare = partial(player.prepare, self.clip_path(take.key), take.seed, take.key, loop_seconds)
                moved[key] = await loop.run_in_executor(self.pool, prepare)
            except Exception as err:  # noqa: BLE001 - a clip that is gone stays gone; the others move
                log.warning("audio restart: take %s (seed %d) not reloaded: %s", take.key[:12], take.seed, err)
                moved[key] = None
        for holder in self.holders:  # synchronous swaps (no await between), so hits see a consistent state
            holder.replace_takes(moved)
