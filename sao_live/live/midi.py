"""MIDI in: one rtmidi input port, polled by a thread that hands every message to the event loop.

`MidiIn.open(port, api, loop, handle)` opens a virtual input port named `sao-live` (port
None) or an existing port whose name contains `port`; `api` is an rtmidi API name such as
`UNIX_JACK` (or mido's `mido.backends.rtmidi/UNIX_JACK`). `handle` gets mido Messages and
dispatches by type on the loop.

Why polling and not rtmidi's callback: with JACK, rtmidi calls the callback inside JACK's
process cycle, and a Python callback must first take this process's GIL, which the control
plane may hold for milliseconds: the whole JACK graph (our audio too) would wait for it.
Without a callback rtmidi queues messages in C++, and a thread here collects them every
millisecond. The port is opened from a thread that asked for `nice` first, so the threads
rtmidi and libjack start for it inherit that priority (priority.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
import threading
import time

from ..errors import SaoLiveError
from .priority import raise_priority

log = logging.getLogger(__name__)
VIRTUAL_NAME = "sao-live"
POLL_SECONDS = 0.001  # how often the queue is looked at when it was empty (adds 0.5 ms on average)


class MidiError(SaoLiveError, RuntimeError):
    code = "midi_failed"


_alsa_handler = None  # kept alive: libasound calls it for as long as the process runs


def quiet_alsa() -> None:
    """Silences libasound's own error lines (`ALSA lib seq_hw.c:...: open /dev/snd/seq failed`, on a
    machine without a sequencer): rtmidi raises an error for the same failure, which is reported."""
    global _alsa_handler
    if _alsa_handler is not None or not sys.platform.startswith("linux"):
        return
    try:
        lib = ctypes.CDLL("libasound.so.2")  # the one rtmidi is linked to
    except OSError:
        return  # no ALSA here, nothing prints
    kind = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)
    # A no-op: writing from inside this callback (a log line) crashes the process.
    _alsa_handler = kind(lambda file, line, function, err, fmt: None)
    lib.snd_lib_error_set_handler(_alsa_handler)


def api_name(api: str | None) -> str | None:
    """`UNIX_JACK` from `UNIX_JACK` or `mido.backends.rtmidi/UNIX_JACK`; None: rtmidi's default."""
    return api.rsplit("/", 1)[-1] if api else None


def backend(api: str | None):
    import mido

    quiet_alsa()
    name = api_name(api)
    return mido.Backend(f"mido.backends.rtmidi/{name}" if name else "mido.backends.rtmidi", load=True)


def list_ports(api: str | None = None) -> tuple[list[str], list[str]]:
    """(input names, output names) of the MIDI API."""
    b = backend(api)
    return b.get_input_names(), b.get_output_names()


def _open_port(port: str | None, api: str | None):
    """An rtmidi.MidiIn with its port open (virtual when `port` is None), and the port's name."""
    import rtmidi

    quiet_alsa()
    name = api_name(api)
    rtapi = getattr(rtmidi, f"API_{name}", None) if name else rtmidi.API_UNSPECIFIED
    if rtapi is None or (name and rtapi not in rtmidi.get_compiled_api()):
        compiled = [rtmidi.get_api_name(a) for a in rtmidi.get_compiled_api()]
        raise MidiError(f"MIDI API {api!r} is not available; this rtmidi has {compiled}")
    try:
        rt = rtmidi.MidiIn(rtapi=rtapi, name=VIRTUAL_NAME)
    except Exception as err:  # noqa: BLE001 - rtmidi raises its own kinds
        which = f"MIDI API {name}" if name else "MIDI (rtmidi's default API; --midi-api chooses another)"
        raise MidiError(f"{which} is not available: {err}") from None
    try:
        if port is None:
            rt.open_virtual_port(VIRTUAL_NAME)
            opened = VIRTUAL_NAME
        else:
            names = rt.get_ports()
            match = [n for n in names if n == port] or [n for n in names if port.lower() in n.lower()]
            if not match:
                raise MidiError(f"midi_in {port!r} matches no MIDI input; inputs: {names}")
            rt.open_port(names.index(match[0]))
            opened = match[0]
        rt.ignore_types(sysex=False, timing=False, active_sense=True)  # timing: MIDI clock is a tempo source
        return rt, opened
    except MidiError:
        rt.delete()
        raise
    except Exception as err:  # noqa: BLE001
        rt.delete()
        raise MidiError(f"cannot open MIDI input {port or VIRTUAL_NAME!r}: {err}") from None


class MidiIn:
    def __init__(self, rt, name: str, loop, handle):
        self.rt = rt
        self.name = name
        self._loop = loop
        self._handle = handle
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="sao-midi-in", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, port: str | None, api: str | None, loop, handle, nice: int = 0) -> MidiIn:
        result: list = []

        def opener() -> None:  # a thread of its own, so only rtmidi's threads inherit the priority
            raise_priority(nice, "MIDI input")
            try:
                result.append(_open_port(port, api))
            except MidiError as err:
                result.append(err)

        t = threading.Thread(target=opener, name="sao-midi-open")
        t.start()
        t.join()
        if isinstance(result[0], MidiError):
            raise result[0]
        rt, name = result[0]
        return cls(rt, name, loop, handle)

    def _poll(self) -> None:
        import mido

        while not self._closed.is_set():
            got = self.rt.get_message()
            if got is None:
                time.sleep(POLL_SECONDS)
                continue
            data, _delta = got
            try:
                message = mido.Message.from_bytes(data)
            except ValueError as err:
                log.debug("MIDI bytes %s: %s", data, err)
                continue
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._handle, message)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(1.0)
        try:
            self.rt.close_port()
            self.rt.delete()
        except Exception as err:  # noqa: BLE001
            log.warning("closing MIDI: %s", err)
