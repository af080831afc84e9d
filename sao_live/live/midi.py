"""MIDI in: one mido input port whose rtmidi callback hands every message to the event loop.

`MidiIn.open(port, api, loop, handle)` opens a virtual input port named `sao-live` (port
None) or an existing port whose name contains `port`; `api` is a mido backend name such as
`mido.backends.rtmidi/UNIX_JACK` (or just `UNIX_JACK`). The rtmidi thread only does
`loop.call_soon_threadsafe(handle, message)` (STYLE §10); `handle` dispatches by type on the
loop. mido 1.3.3 trap: `client_name=` on an existing port makes a new virtual one, so it is
only passed for the virtual port.
"""

from __future__ import annotations

import contextlib
import logging

from ..errors import SaoLiveError

log = logging.getLogger(__name__)
VIRTUAL_NAME = "sao-live"


class MidiError(SaoLiveError, RuntimeError):
    code = "midi_failed"


def backend(api: str | None):
    import mido

    if api and "/" not in api and "." not in api:
        api = f"mido.backends.rtmidi/{api}"
    return mido.Backend(api or "mido.backends.rtmidi", load=True)


def list_ports(api: str | None = None) -> tuple[list[str], list[str]]:
    """(input names, output names) of the MIDI API."""
    b = backend(api)
    return b.get_input_names(), b.get_output_names()


class MidiIn:
    def __init__(self, port, name: str):
        self.port = port
        self.name = name

    @classmethod
    def open(cls, port: str | None, api: str | None, loop, handle) -> MidiIn:
        try:
            b = backend(api)
        except Exception as err:  # noqa: BLE001 - rtmidi raises its own kinds
            raise MidiError(f"MIDI API {api!r} is not available: {err}") from None

        def callback(message) -> None:  # the rtmidi thread
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(handle, message)

        try:
            if port is None:
                p = b.open_input(VIRTUAL_NAME, virtual=True, callback=callback, client_name=VIRTUAL_NAME)
                return cls(p, VIRTUAL_NAME)
            names = b.get_input_names()
            match = [n for n in names if n == port] or [n for n in names if port.lower() in n.lower()]
            if not match:
                raise MidiError(f"midi_in {port!r} matches no MIDI input; inputs: {names}")
            return cls(b.open_input(match[0], callback=callback), match[0])
        except MidiError:
            raise
        except Exception as err:  # noqa: BLE001
            raise MidiError(f"cannot open MIDI input {port or VIRTUAL_NAME!r}: {err}") from None

    def close(self) -> None:
        try:
            self.port.close()
        except Exception as err:  # noqa: BLE001
            log.warning("closing MIDI: %s", err)
