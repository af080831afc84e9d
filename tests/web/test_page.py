"""The web page in a real browser (headless Chromium) against a real daemon with the tiny model."""

from __future__ import annotations

import pytest

from .conftest import wait_ready, wait_until

# Every progress bar value the page shows, sampled every few milliseconds (a bar moves between polls).
WATCH_PROGRESS = """() => {
  window.seen = [];
  setInterval(() => { for (const p of document.querySelectorAll('#queue progress')) window.seen.push(p.value); }, 5);
}"""

# How much of a canvas is drawn, and how many different column heights it has (a flat line has one).
CANVAS_INK = """(canvas) => {
  const { width, height } = canvas;
  const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  const heights = new Set();
  let inked = 0;
  for (let x = 0; x < width; x++) {
    let column = 0;
    for (let y = 0; y < height; y++) if (data[(y * width + x) * 4 + 3] > 0) column++;
    heights.add(column);
    inked += column;
  }
  return { fraction: inked / (width * height), heights: heights.size };
}"""


def open_page(page, daemon):
    page.goto(daemon.web_url)
    wait_ready(page)


def test_generate_shows_progress_then_a_clip_with_its_waveform_that_plays(web_daemon, page, screenshots):
    open_page(page, web_daemon)
    page.evaluate(WATCH_PROGRESS)
    page.fill("#f-prompt", "web page drone")
    page.fill("#f-seconds", "2")
    page.fill("#f-steps", "150")  # long enough for the bar to be seen moving
    page.click("#generate")
    row = page.locator("#library li", has_text="web page drone").first
    row.wait_for(timeout=120_000)
    seen = page.evaluate("window.seen")
    moving = sorted({v for v in seen if 0 < v < 1})
    assert len(moving) >= 2, f"the progress bar did not move: {sorted(set(seen))}"
    assert "seed" in row.locator(".info").inner_text() and "2.00 s" in row.locator(".info").inner_text()
    ink = row.locator("canvas").evaluate(CANVAS_INK)
    assert ink["fraction"] > 0.05 and ink["heights"] > 3, f"the waveform is blank or flat: {ink}"
    row.locator("button.play").click()
    wait_until(page, "document.querySelector('#player').currentTime > 0.3", timeout=15)
    assert page.locator("#queue li").count() == 0  # done: gone from the queue
    page.screenshot(path=str(screenshots / "page-1280x800.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing runs off a phone's screen
    page.screenshot(path=str(screenshots / "page-390x844.png"), full_page=True)
    for name in ("page-1280x800.png", "page-390x844.png"):
        assert (screenshots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("field", "value", "osc_args"),
    [
        ("seconds", "0", ("bad seconds", 0.0)),
        ("seed", "abc", ("bad seed", 1.0, "seed", "abc")),
        ("prompt", "   ", ("   ", 1.0)),
    ],
)
def test_a_bad_value_shows_the_daemons_error_beside_its_field(web_daemon, page, field, value, osc_args):
    """The same code and sentence as /sao/error for the same request; submitted by keyboard (Enter)."""
    with web_daemon.client() as osc:
        address, (_, code, message) = osc.request("/sao/gen", "e1", *osc_args)
    assert address == "/sao/error"
    open_page(page, web_daemon)
    page.fill("#f-prompt", osc_args[0])
    page.fill("#f-seconds", "1" if field != "seconds" else value)
    if field == "seed":
        page.fill("#f-seed", value)
    page.focus("#f-seconds")
    page.keyboard.press("Enter")
    error = page.locator(f"#err-{field}")
    error.wait_for()
    assert error.text_content() == f"{message} ({code})"  # as sent (inner_text folds spaces)
    assert error.get_attribute("data-code") == code
    assert page.get_attribute(f"#f-{field}", "aria-invalid") == "true"
    assert page.locator("#err-form").inner_text() == ""


def test_cancel_from_the_queue_loops_in_bars_filter_and_download(web_daemon, page):
    with web_daemon.client() as osc:  # a clip the filter must hide
        assert osc.request("/sao/gen", "plain", "plain clip", 0.5, "steps", 2)[0] == "/sao/done"
    open_page(page, web_daemon)
    page.fill("#f-prompt", "long job to cancel")
    page.fill("#f-seconds", "10")
    page.fill("#f-steps", "1000")
    page.click("#generate")
    job = page.locator("#queue li", has_text="long job to cancel")
    job.locator("button", has_text="Cancel").click()
    job.wait_for(state="detached", timeout=15_000)
    cancelled = page.locator("#err-form")
    cancelled.wait_for()
    assert cancelled.get_attribute("data-code") == "cancelled"
    assert cancelled.text_content() == "cancelled on the web page (cancelled)"

    page.check("input[name=length][value=bars]")
    assert page.is_hidden("#f-seconds") and page.is_visible("#f-bars")
    page.fill("#f-prompt", "web loop")
    page.fill("#f-bars", "1")
    page.fill("#f-bpm", "120")
    page.fill("#f-steps", "2")
    page.click("#generate")
    loop = page.locator("#library li", has_text="web loop").first
    loop.wait_for(timeout=60_000)
    assert "1 bars at 120 bpm" in loop.locator(".info").inner_text() and "2.00 s" in loop.inner_text()

    every = page.locator("#library li").count()
    assert page.locator("#library li", has_text="plain clip").count() == 1
    page.fill("#filter", "LOOP")
    wait_until(page, "[...document.querySelectorAll('#library li .prompt')].every((p) => /loop/i.test(p.textContent))")
    assert page.locator("#library li").count() >= 1
    page.fill("#filter", "")
    wait_until(page, f"document.querySelectorAll('#library li').length === {every}")

    href = loop.locator("a", has_text="Download").get_attribute("href")
    answer = page.evaluate(
        "async (href) => { const r = await fetch(href); return [r.status, r.headers.get('content-disposition'), "
        "(await r.arrayBuffer()).byteLength]; }",
        href,
    )
    assert answer[0] == 200 and answer[1].startswith("attachment;") and "web-loop" in answer[1], answer
    assert answer[2] > 44  # a WAV, not an empty answer

    # dragged out: Chromium's DownloadURL carries the file (a DAW or the desktop saves it); the path as text
    transfer = page.evaluate_handle("() => new DataTransfer()")
    loop.dispatch_event("dragstart", {"dataTransfer": transfer})
    url = transfer.evaluate("(t) => t.getData('DownloadURL')")
    assert url.startswith("audio/wav:web-loop-") and url.endswith(f"{web_daemon.web_url.rstrip('/')}{href}"), url
    path = transfer.evaluate("(t) => t.getData('text/plain')")
    assert path.endswith(".wav") and path.startswith(str(web_daemon.cache_dir)), path

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    loop.locator("button.copy").click()
    wait_until(page, f"navigator.clipboard.readText().then((text) => text === {path!r})")


def test_the_page_says_when_the_daemon_is_gone_and_reconnects(web_daemon, page):
    open_page(page, web_daemon)
    clips = page.locator("#library li").count()
    web_daemon.stop()
    page.locator("#offline").wait_for(state="visible", timeout=10_000)
    assert "disconnected" in page.inner_text("#status")
    web_daemon.start()
    page.locator("#offline").wait_for(state="hidden", timeout=30_000)
    wait_ready(page)
    assert "ready" in page.inner_text("#status")
    wait_until(page, f"document.querySelectorAll('#library li').length >= {clips}")
