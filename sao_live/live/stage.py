"""The live side of the daemon, assembled: audio supervisor, pad bank, MIDI router, one Tempo.

Flow stays one way: triggers (OSC, MIDI, a set) ask the clip service for clips through
`obtain`; finished clips arrive as events on the bus (the pad bank keeps them for `/sao/play`
and plays triggers); the audio supervisor turns clips into takes the audio process holds. This
class only builds the parts, answers the live `/sao/set` and `/sao/get` parameters, reports
status and watches the player and Link; the work is in the parts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from ..events import EventBus
from ..musical_time import QUANTIZE_UNITS, TEMPO_SOURCES
from ..ranges import describe, in_range
from ..request import Request, RequestError
from ..runtime import Runtime
from .audio_supervisor import AudioSupervisor
from .midi_router import MidiRouter
from .pads import PadBank
from .tempo import Tempo

log = logging.getLogger(__name__)
STAGE_PARAMS = ("quantize", "tempo_source", "master_db", "bank", "velocity_curve")


class Stage:
    def __init__(
        self,
        runtime: Runtime,
        replies,
        tempo: Tempo,
        obtain: Callable[[Request], asyncio.Future],
        resolve: Callable[[Request], Request],
        clip_path: Callable[[str], Path],
        settings,
    ):
        """`replies` has send/announce (the daemon's Replies); `settings` is the daemon's Settings,
        of which only the live fields are read."""
        s = settings
        self.runtime = runtime
        self.replies = replies
        self.tempo = tempo
        self.settings = settings
        self.audio = AudioSupervisor(
            runtime, tempo, clip_path, s.audio_device, s.voices, s.master_db, s.audio_blocksize, s.audio_nice
        )
        self.pads = PadBank(
            runtime, replies, tempo, self.audio, obtain, resolve, s.quantize, s.velocity_curve, s.queue_size
        )
        self.midi = MidiRouter(self.pads, tempo, replies)

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(self.pads.on_event)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Audio (device scan off the loop), MIDI, and the tempo source the settings name."""
        s = self.settings
        await self.runtime.in_thread(self.audio.start)
        self.midi.open(s.midi_in, s.midi_api, asyncio.get_running_loop(), s.audio_nice)
        if s.tempo_source != "fixed":
            await self.tempo.use_source(s.tempo_source)

    async def watch(self, interval: float = 0.1) -> None:
        """Follows the audio process and Link's tempo."""
        while True:
            await asyncio.sleep(interval)
            self.audio.check()
            bpm = self.tempo.poll_link()
            if bpm is not None:
                self.replies.announce("/sao/tempo", round(bpm, 2), "link")

    def close(self) -> None:
        self.midi.close()
        self.tempo.close()
        self.audio.close()

    def status(self) -> tuple:
        """(audio, voices, underruns, errors, bpm, set, bank, stolen), as /sao/status ends."""
        live = self.pads.set
        return (
            *self.audio.status(),
            round(self.tempo.bpm, 3),
            live.name if live else "",
            self.pads.bank,
            self.audio.stolen,
        )

    # ------------------------------------------------------------ parameters (/sao/set, /sao/get)

    def get_param(self, name: str):
        if name == "master_db":
            return self.audio.player.master_db if self.audio.player else self.settings.master_db
        if name == "tempo_source":
            return self.tempo.source
        if name == "bank":
            return self.pads.bank
        return getattr(self.pads, name)

    def set_param(self, name: str, value) -> None:
        if name == "quantize" and value in QUANTIZE_UNITS:
            self.pads.quantize = value
        elif name == "tempo_source" and value == "link":
            self.runtime.spawn(self.tempo.use_source(value))  # joins a Link session first
        elif name == "tempo_source" and value in TEMPO_SOURCES:
            self.tempo.source = value
        elif name == "bank":
            self.pads.set_bank(value)
        elif name == "velocity_curve" and in_range("velocity_curve", value):
            self.pads.velocity_curve = float(value)
        elif name == "master_db" and in_range("master_db", value):
            self.audio.need().set_master_db(float(value))
        else:
            expected = {
                "quantize": "off, beat or bar",
                "tempo_source": "fixed, midi or link",
                "velocity_curve": describe("velocity_curve"),
                "master_db": describe("master_db"),
            }
            raise RequestError("bad_value", f"/sao/set/{name} must be {expected.get(name, '?')}, got {value!r}")
