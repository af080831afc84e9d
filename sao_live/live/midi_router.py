"""MIDI in, to the pads and the tempo: notes hit and release pads, program change switches
banks, CC numbers trigger the set's actions, clock messages drive the MIDI tempo source.

`MidiRouter.open` opens the input port (a virtual `sao-live` port, or an existing one by
name); rtmidi's queue is polled on a thread and every message arrives here on the event loop.
A message that cannot act (no set, an unknown note) is dropped with a log line.
"""

from __future__ import annotations

import logging

from ..request import RequestError
from .pads import PadBank
from .tempo import Tempo

log = logging.getLogger(__name__)


class MidiRouter:
    def __init__(self, pads: PadBank, tempo: Tempo, replies):
        self.pads = pads
        self.tempo = tempo
        self.replies = replies  # announce(address, *args)
        self.port = None  # the open MidiIn, if any
        self.last_pad: int | None = None  # the pad hit last: CC actions act on it

    def open(self, name: str | None, api: str | None, loop, nice: int) -> None:
        """Opens the input (`name` None: a virtual port; "none": no MIDI); a failure is logged."""
        from .midi import MidiError, MidiIn

        if name == "none":
            return
        try:
            self.port = MidiIn.open(name, api, loop, self.on_midi, nice=nice)
            log.info("MIDI in: %s", self.port.name)
        except MidiError as err:
            log.warning("no MIDI input: %s", err)

    def close(self) -> None:
        if self.port is not None:
            self.port.close()

    def on_midi(self, msg) -> None:
        try:
            handler = getattr(self, "_" + msg.type, None)
            if handler is not None:
                handler(msg)
        except RequestError as err:
            log.info("MIDI %s: %s", msg, err)
        except Exception:
            log.exception("MIDI message %s", msg)

    def _note_on(self, msg) -> None:
        if msg.velocity == 0:
            return self._note_off(msg)
        pad = self.pads.pad_for_note(msg.note)
        if pad is not None:
            self.last_pad = pad.index
            self.pads.hit(pad.index, msg.velocity / 127.0)

    def _note_off(self, msg) -> None:
        pad = self.pads.pad_for_note(msg.note)
        if pad is not None:
            self.pads.release(pad.index)

    def _program_change(self, msg) -> None:
        live = self.pads.set
        if live is not None and msg.program < len(live.banks):
            self.pads.set_bank(msg.program)
            self.replies.announce("/sao/value", "bank", self.pads.bank)

    def _control_change(self, msg) -> None:
        live = self.pads.set
        if live is None or msg.value == 0:
            return
        action = dict(live.cc).get(msg.control)
        if action == "stop_all":
            self.pads.stop_all()
        elif action == "regenerate" and self.last_pad:
            self.pads.regenerate(self.last_pad)
        elif action == "next_variation" and self.last_pad:
            self.pads.next_variation(self.last_pad)

    def _clock(self, msg) -> None:
        before = self.tempo.bpm
        bpm = self.tempo.midi_tick()
        if bpm is not None and self.tempo.source == "midi" and abs(bpm - before) > 0.5:
            self.replies.announce("/sao/tempo", round(bpm, 2), "midi")

    def _start(self, msg) -> None:
        self.tempo.midi_start()

    _continue = _start

    def _stop(self, msg) -> None:
        self.tempo.midi_stop()
