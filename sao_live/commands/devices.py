"""`sao-live devices`: the audio outputs and MIDI ports this machine offers (like sounddevice -l)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("devices", help="list audio output devices and MIDI ports")
    p.add_argument("--midi-api", default=None, help="rtmidi API to list (UNIX_JACK, LINUX_ALSA, ...)")
    return p


def run(args) -> int:
    try:
        import sounddevice as sd

        apis = sd.query_hostapis()
        print("audio outputs (--audio-device INDEX or part of a name or host API):")
        outputs = [(i, d) for i, d in enumerate(sd.query_devices()) if d["max_output_channels"] > 0]
        for i, d in outputs:
            print(
                f"  {i:3d}  {d['name']}  [{apis[d['hostapi']]['name']}]  {d['max_output_channels']} ch, "
                f"{d['default_samplerate']:.0f} Hz"
            )
        if not outputs:
            print("  (none: sao-live serve runs without sound, export only)")
    except OSError as err:
        print(f"audio: PortAudio is not available ({err})")
    from ..live.midi import list_ports

    try:
        inputs, outputs = list_ports(args.midi_api)
        print(f"MIDI inputs (--midi-in NAME; default: a virtual port 'sao-live'), API {args.midi_api or 'default'}:")
        for name in inputs or ["(none)"]:
            print(f"  {name}")
        print("MIDI outputs:")
        for name in outputs or ["(none)"]:
            print(f"  {name}")
    except Exception as err:  # noqa: BLE001 - rtmidi errors are of its own kinds
        print(f"MIDI: not available with API {args.midi_api or 'default'} ({err}); try --midi-api UNIX_JACK")
    return 0
