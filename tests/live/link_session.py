"""Run inside `unshare -n` (loopback only): a daemon with `--tempo-source link` and an aalink peer.

`python -m tests.live.link_session ROOT TEXT_ENCODER` starts the daemon, joins its Link session
from this process, sets the session tempo to 133 and prints one JSON line: what the daemon
reported (`/sao/status` bpm, `/sao/tempo` announcements) and how many peers the peer saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from sao_live.testing.daemon import Collector, DaemonProcess


async def main(root: Path, text_encoder: Path) -> dict:
    from aalink import Link

    daemon = DaemonProcess(root, text_encoder, config=dict(audio_device="none", midi_in="none"),
                           args=("--tempo-source", "link")).start(timeout=120)  # fmt: skip
    announcements = Collector(daemon.reply_port)  # /sao/tempo goes to the reply port
    client = daemon.client()
    result = {"peers": 0, "bpm": None, "tempo": [], "log": ""}
    try:
        link = Link(90.0, asyncio.get_running_loop())
        link.enabled = True
        deadline = time.monotonic() + 20
        while link.num_peers < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        result["peers"] = link.num_peers
        link.tempo = 133.0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            client.send("/sao/status")
            result["bpm"] = await asyncio.to_thread(lambda: client.wait_for("/sao/status", timeout=5)[10])
            if abs(result["bpm"] - 133.0) < 0.01:
                break
        client.send("/sao/get/bpm")
        result["param_bpm"] = await asyncio.to_thread(lambda: client.wait_for("/sao/value", timeout=5)[1])
        result["tempo"] = announcements.of("/sao/tempo")
        link.enabled = False
    finally:
        client.close()
        announcements.close()
        result["code"] = daemon.stop()
        result["log"] = daemon.log()[-3000:]
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))), flush=True)
