"""Run inside `unshare -rn` (a network namespace of its own) after `lo` got 10.9.9.1/24 and 10.8.8.1/24.

`python -m tests.daemon.allow_session ROOT TEXT_ENCODER` starts daemons listening on 10.9.9.1
and sends from three places: 10.9.9.5 (the listening address's subnet), 10.8.8.7 (another
subnet of this machine) and 127.0.0.1 (loopback). It prints one JSON line: which senders got
answers, with no `--allow` and with `--allow 10.8.8.0/24`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from sao_live.testing.daemon import Collector, DaemonProcess


def answers(daemon: DaemonProcess, source: str) -> dict:
    """What a sender at `source` hears back, on its own socket and at its host's reply port."""
    client = daemon.client(hello=False, host=source, daemon_host="10.9.9.1")
    at_reply_port = Collector(daemon.reply_port, host=source)
    client.send("/sao/ping", "hi")  # no hello yet: the pong goes to <source>:reply_port
    client.send("/sao/hello", 0)  # now to this socket
    client.send("/sao/ping", "again")
    time.sleep(1.5)
    heard = {"own": [m[0] for m in client.messages], "reply_port": [m[0] for m in at_reply_port.messages]}
    client.close()
    at_reply_port.close()
    return heard


def main(root: Path, text_encoder: Path) -> dict:
    result = {}
    for name, args in (("default", ()), ("allow", ("--allow", "10.8.8.0/24"))):
        config = dict(audio_device="none", midi_in="none", host="10.9.9.1")
        daemon = DaemonProcess(root / name, text_encoder, config=config, export=False, args=args).start(timeout=120)
        result[name] = {}
        try:
            result[name] = {source: answers(daemon, source) for source in ("10.9.9.5", "10.8.8.7", "127.0.0.1")}
        finally:
            result[name]["code"] = daemon.stop()
            result[name]["log"] = daemon.log()[-4000:]
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))), flush=True)
