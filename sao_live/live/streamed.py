"""Playing a clip while it still decodes: a streamed take, started once it can play to its end.

The worker decodes a clip in time order and the clip service publishes its ClipStream. A
StreamedPlay resamples each chunk to the device rate (soxr's streaming resampler gives the
same samples as resampling the whole clip at once) and writes it into a take the audio process
already holds. The voice starts when the rest of the clip is predicted to be decoded before the
audio already there has played (`start_time`: from the decoding rate measured on this job, with
a safety factor and a margin), so on a machine that decodes slower than real time it only
starts later, never with a gap. A loop's first pass plays the raw audio (nothing precedes its
start); the finished loop, seam crossfaded as in the cache file, is loaded as soon as the last
chunk is in, and the voice moves onto it at its first wrap. A stream that fails (a cancel, a
dead worker) fades a started voice out, as `/sao/stop` does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from ..events import ClipStream
from ..runtime import Runtime
from .audio_supervisor import AudioSupervisor
from .loops import XFADE_SECONDS, cut_loop
from .player import Take, fit_channels, resample_clip

log = logging.getLogger(__name__)
SAFETY = 1.25  # the rest is assumed to decode this much slower than it has so far
MARGIN_SECONDS = 0.3  # and to reach the audio process this much later (pipe, resampling)
LOOP_MARGIN_SECONDS = 0.5  # a loop's finished take must also be made and sent before its first pass ends


def start_time(stream: ClipStream, arrived: float) -> float | None:
    """When (time.monotonic) a voice may start and play `stream` to its end without running dry;
    None until there is a decoding rate to go by. `arrived`: when its latest chunk came in."""
    if stream.state == "complete":
        return arrived
    done = stream.decode_done  # by work, not samples: a short clip's last samples need frames past its end
    if stream.decoded == 0 or stream.decode_seconds <= 0 or done <= 0:
        return None
    rest = stream.decode_seconds * (1 - done) / done * SAFETY  # seconds until the last sample is in
    lasts = stream.decoded / stream.sample_rate  # seconds the audio already here plays for
    margin = MARGIN_SECONDS
    if stream.loop_seconds:  # the first pass must end after the finished loop is in place
        lasts, margin = min(lasts, stream.loop_seconds), margin + LOOP_MARGIN_SECONDS
    return arrived + rest + margin - lasts


class StreamedPlay:
    """One requester's streamed take: fed from the ClipStream, started by `start_time`.

    `play(take)` starts the voice (the pad bank's, with its tag and quantize) and returns it;
    `interrupted(reason)` is told when a started voice had to fade out. `done` resolves to the
    finished take (the streamed one, or a loop's crossfaded one), or None if the stream failed.
    """

    def __init__(
        self,
        stream: ClipStream,
        audio: AudioSupervisor,
        runtime: Runtime,
        seed: int,
        play: Callable[[Take], int] | None,
        interrupted: Callable[[str], None],
    ):
        player = audio.need()
        self.stream, self.audio, self.runtime, self.player = stream, audio, runtime, player
        self.seed, self._play, self._interrupted = seed, play, interrupted
        sr, rate = stream.sample_rate, player.rate
        self.loop_frames = round(stream.loop_seconds * rate) if stream.loop_seconds else 0
        self.take = player.open_stream(round(stream.total * rate / sr), seed, stream.key, self.loop_frames)
        self.voice: int | None = None
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()
        self._fed = 0  # chunks written into the take
        self._written = 0  # device frames written
        self._resampler = None
        if sr != rate:
            import soxr

            self._resampler = soxr.ResampleStream(sr, rate, player.channels, dtype="float32", quality="HQ")
        self._timer: asyncio.TimerHandle | None = None
        self._made_final = False
        self._arrived = time.monotonic()
        stream.listen(self._changed)
        self._changed(stream)

    def want_play(self, play: Callable[[Take], int]) -> None:
        """Start it (by the same rule) after all: `/sao/play` of a request that is still decoding."""
        if self._play is None and self.voice is None:
            self._play = play
            self._consider()

    # ------------------------------------------------------------ feeding

    def _changed(self, stream: ClipStream) -> None:
        if stream.state == "failed":
            self._fail(stream.reason)
            return
        self._arrived = time.monotonic()
        self.runtime.spawn(self._feed_then_consider())

    async def _feed_then_consider(self) -> None:
        try:
            final = await asyncio.get_running_loop().run_in_executor(self.audio.pool, self._feed)
        except Exception as err:  # noqa: BLE001 - an audio process that went away: nothing to feed
            log.warning("streamed clip %s: %s", self.stream.key[:12], err)
            self._fail(str(err))
            return
        if final is not None and not self.done.done():
            self.done.set_result(final)
        self._consider()

    def _feed(self) -> Take | None:
        """On the audio supervisor's thread: resamples and writes the chunks not written yet, in order;
        the finished take once the last chunk is in."""
        stream, player = self.stream, self.player
        chunks = stream.chunks[self._fed :]
        complete = stream.state == "complete" and self._fed + len(chunks) == len(stream.chunks)
        for i, chunk in enumerate(chunks):
            last = complete and i == len(chunks) - 1
            audio = fit_channels(chunk.T, player.channels)
            if self._resampler is not None:
                audio = self._resampler.resample_chunk(audio, last=last)
            audio = audio[: self.take_frames - self._written]  # never past the end it was opened with
            player.write(self.take, self._written, audio)
            self._written += len(audio)
            self._fed += 1
        if not complete or self._made_final:
            return None
        self._made_final = True
        if not stream.loop_seconds:
            return self.take
        sr = stream.sample_rate  # the loop as the cache file has it: the same cut of the same samples
        looped = cut_loop(
            np.concatenate(stream.chunks, axis=1), round(stream.loop_seconds * sr), round(XFADE_SECONDS * sr)
        )
        audio, frames = resample_clip(fit_channels(looped.T, player.channels), sr, player.rate, stream.loop_seconds)
        final = player.load(audio, self.seed, stream.key, frames)
        player.then(self.take, final)
        return final

    @property
    def take_frames(self) -> int:
        return round(self.stream.total * self.player.rate / self.stream.sample_rate)

    # ------------------------------------------------------------ starting, failing

    def _consider(self) -> None:
        if self.voice is not None or self._play is None or self.stream.state == "failed":
            return
        at = start_time(self.stream, self._arrived)
        if at is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        wait = at - time.monotonic()
        if wait > 0:
            self._timer = asyncio.get_running_loop().call_later(wait, self._consider)
            return
        self._timer = None
        try:
            self.voice = self._play(self.take)
        except Exception as err:  # noqa: BLE001 - no audio process any more: nothing plays
            log.warning("streamed clip %s did not start: %s", self.stream.key[:12], err)
            return
        self.stream.first_sound = time.monotonic()

    def _fail(self, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.done.done():
            self.done.set_result(None)
        if self.voice is not None:
            self._interrupted(reason)
