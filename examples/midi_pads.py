"""Play the sao-live pads from a script: MIDI notes 36-51 (pads 1-16) into the daemon's MIDI port.

    python examples/midi_pads.py                      # pads 1-16 once, to the port named like "sao-live"
    python examples/midi_pads.py --pads 1 5 9 --repeat 4 --interval 0.25
    python examples/midi_pads.py --list               # the MIDI output ports this machine has
    MIDO_BACKEND=mido.backends.rtmidi/UNIX_JACK python examples/midi_pads.py   # JACK MIDI (Linux)

Start the daemon with a set first (`sao-live serve --set examples/sets/one-shots.toml`): it opens a
virtual MIDI input called `sao-live` (on Windows, which has no virtual ports, start it with
`--midi-in "loopMIDI Port"` and pass the same name here with --port). Needs mido and
python-rtmidi (installed with sao-live). The backend is mido's: `--backend` or `MIDO_BACKEND`.
"""

from __future__ import annotations

import argparse
import sys
import time

FIRST_NOTE = 36  # pad 1; pad n is note 35 + n (General MIDI kick = 36, as on most pad controllers)


def note_for(pad: int) -> int:
    if not 1 <= pad <= 16:
        raise ValueError(f"pad must be in 1..16, got {pad!r}")
    return FIRST_NOTE + pad - 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", default="sao-live", help="output port name or part of it (default: sao-live)")
    p.add_argument("--backend", default=None, help="mido backend, e.g. mido.backends.rtmidi/UNIX_JACK")
    p.add_argument("--pads", type=int, nargs="+", default=list(range(1, 17)), help="pads 1-16 (default: all)")
    p.add_argument("--velocity", type=int, default=100, help="1-127 (default 100)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between hits (default 0.5)")
    p.add_argument("--hold", type=float, default=0.1, help="seconds before the note-off (gate pads play this long)")
    p.add_argument("--repeat", type=int, default=1, help="times through the pads (default 1)")
    p.add_argument("--channel", type=int, default=1, help="MIDI channel 1-16 (default 1)")
    p.add_argument("--list", action="store_true", help="list the output ports and exit")
    args = p.parse_args(argv)

    import mido  # imported here so that --help works without a MIDI backend

    if args.backend:
        mido.set_backend(args.backend)
    try:
        names = mido.get_output_names()
    except Exception as err:  # rtmidi raises its own error types when the MIDI system is missing
        print(
            f"cannot use the MIDI backend {mido.backend.name!r}: {str(err).rstrip('.')}. "
            "On Linux without ALSA MIDI, try "
            "MIDO_BACKEND=mido.backends.rtmidi/UNIX_JACK (with a JACK server running).",
            file=sys.stderr,
        )
        return 2
    if args.list:
        print("\n".join(names) or "(no MIDI output ports)")
        return 0
    notes = [note_for(pad) for pad in args.pads]
    matches = [n for n in names if args.port.lower() in n.lower()]
    if not matches:
        print(
            f"no MIDI output port matching {args.port!r}; ports: {names}. Is `sao-live serve --midi-in` running?",
            file=sys.stderr,
        )
        return 2
    with mido.open_output(matches[0]) as out:
        print(f"sending to {matches[0]!r}")
        for _ in range(args.repeat):
            for pad, note in zip(args.pads, notes, strict=True):
                out.send(mido.Message("note_on", note=note, velocity=args.velocity, channel=args.channel - 1))
                print(f"pad {pad:2d} (note {note})")
                time.sleep(args.hold)
                out.send(mido.Message("note_off", note=note, velocity=0, channel=args.channel - 1))
                time.sleep(max(0.0, args.interval - args.hold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
