"""The web page: how fast a new clip shows, what the page weighs, what it costs the daemon.

    HF_HUB_OFFLINE=1 python benchmarks/web_bench.py [--library 500] [--probes 30] [--run 300]

Needs Debian's `chromium` and Playwright for Python (the test extra). Starts `sao-live serve`
(tiny model, no audio) and:

1. fills the library with `--library` clips over OSC, opens the page in headless Chromium, then
   for `--probes` new clips measures the time from the OSC client receiving `/sao/done` to the
   clip's row being in the page (a MutationObserver stamps it; both clocks are this machine's
   wall clock);
2. the page's total transfer on its first load: HTML, JS, CSS and the first screen's library
   (with its waveform data), as the browser's resource timing counts it (encoded bytes);
3. the control process's memory (RSS, the `sao-live serve` process only) after a `--run`-clip
   run with the page open, against the same run with the page closed and with `--no-web`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sao_live.testing.daemon import DaemonProcess  # noqa: E402

STAMP_ROWS = """() => {
  window.rowSeen = {};
  new MutationObserver((records) => {
    const now = performance.timeOrigin + performance.now();
    for (const r of records) {
      for (const n of r.addedNodes) if (n.dataset && n.dataset.key) window.rowSeen[n.dataset.key] = now;
    }
  }).observe(document.querySelector('#library'), { childList: true });
}"""
TRANSFER = """() => {
  const entries = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
  return entries.map((e) => [e.name, e.transferSize, e.encodedBodySize]);
}"""


def wait_until(page, expression: str, timeout: float = 30.0):
    """Polls a JavaScript expression until truthy (the page's CSP forbids Playwright's eval-based waits)."""
    deadline = time.monotonic() + timeout
    while not (value := page.evaluate(f"() => ({expression})")):
        if time.monotonic() > deadline:
            raise TimeoutError(expression)
        time.sleep(0.01)
    return value


def fill(client, count: int, tag: str) -> None:
    """`count` new clips, 8 in flight at a time."""
    sent = done = 0
    while done < count:
        while sent < count and sent - done < 8:
            client.send("/sao/gen", f"{tag}{sent}", f"{tag} clip {sent}", 0.25, "steps", 1, "export", 0)
            sent += 1
        address, args = client.wait_reply(f"{tag}{done}", timeout=120)
        if address != "/sao/done":
            raise RuntimeError(f"{tag}{done}: {args}")
        done += 1


def run_for_memory(root: Path, t5: Path, clips: int, browser, mode: str) -> float:
    args = ("--no-web",) if mode == "no web" else ()
    daemon = DaemonProcess(root / mode.replace(" ", "-"), t5, config=dict(audio_device="none", midi_in="none"),
                           export=False, args=args).start()  # fmt: skip
    page = None
    try:
        if mode == "page open":
            page = browser.new_page()
            page.goto(daemon.web_url)
            wait_until(page, "document.querySelector('#status').dataset.ready === '1'")
        with daemon.client() as client:
            fill(client, clips, "m")
        time.sleep(1.0)
        return daemon.memory_mb()[0]
    finally:
        if page is not None:
            page.close()
        daemon.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--library", type=int, default=500)
    ap.add_argument("--probes", type=int, default=30)
    ap.add_argument("--run", type=int, default=300)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from sao_live.engine.tiny import build_tiny_text_encoder

    root = Path(tempfile.mkdtemp(prefix="web-bench-"))
    t5 = build_tiny_text_encoder(root / "t5")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"))
        daemon = DaemonProcess(root / "d", t5, config=dict(audio_device="none", midi_in="none"), export=False).start()
        try:
            with daemon.client() as client:
                t0 = time.monotonic()
                fill(client, args.library, "lib")
                print(f"library: {args.library} clips in {time.monotonic() - t0:.1f} s")
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(daemon.web_url)
            wait_until(page, "document.querySelector('#status').dataset.ready === '1'")
            wait_until(page, "document.querySelectorAll('#library li').length >= 40")
            page.wait_for_timeout(500)
            entries = page.evaluate(TRANSFER)
            total = sum(e[1] for e in entries)
            print(f"first load: {total / 1024:.1f} KB transferred in {len(entries)} requests")
            for name, size, body in entries:
                print(f"  {size:7d} B ({body} B body)  {name}")
            page.evaluate(STAMP_ROWS)
            latencies = []
            with daemon.client(thread=False) as client:
                for i in range(args.probes):
                    client.send("/sao/gen", f"p{i}", f"probe clip {i}", 0.25, "steps", 1, "export", 0)
                    address, reply = client.wait_reply(f"p{i}", timeout=60)
                    done_at = time.time() * 1000
                    assert address == "/sao/done", reply
                    path = reply[1]
                    key = Path(path).stem
                    latencies.append(wait_until(page, f"window.rowSeen['{key}']", timeout=10) - done_at)
            latencies.sort()
            print(f"/sao/done -> row in the page ({args.probes} clips, library of {args.library}): "
                  f"median {statistics.median(latencies):.1f} ms, max {latencies[-1]:.1f} ms "
                  f"(negative: the row was there before the OSC reply arrived)")  # fmt: skip
            page.close()
        finally:
            daemon.stop()
        for mode in ("no web", "page closed", "page open"):
            mb = run_for_memory(root, t5, args.run, browser, mode)
            print(f"control process after a {args.run}-clip run, {mode}: {mb:.1f} MB")
        browser.close()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
