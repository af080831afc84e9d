"""The web page's HTTP side: static files, a small JSON API and the WebSocket, on the daemon's loop.

Every action goes through the daemon's `Controller`, as the OSC handlers' do; a refusal is
answered `400 {"error": {"code", "message", "field"}}` with the code and sentence `/sao/error`
would carry (`field`: the form field it concerns, when there is one). Clip files are served
only by cache key, sets loaded only by name from the daemon's sets folder.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from importlib import resources
from pathlib import Path

from aiohttp import web

from ..errors import SaoLiveError
from ..events import Clip
from ..request import RequestError, parse_osc
from .guard import WebGuard, is_loopback, local_addresses
from .hub import Hub, clip_row
from .peaks import load_or_make

log = logging.getLogger(__name__)
STATIC = Path(str(resources.files(__package__) / "static"))
KEY = re.compile(r"[0-9a-f]{32}")
PAGE_SIZE = 40  # library rows a page asks for at a time (its first screen and a bit)
MAX_PAGE = 200
# Which form field an error code concerns (the others are shown above the form).
FIELDS = {
    "missing_prompt": "prompt", "empty_prompt": "prompt", "bad_prompt": "prompt", "prompt_too_long": "prompt",
    "missing_seconds": "seconds", "bad_seconds": "seconds", "bad_seed": "seed", "bad_steps": "steps",
    "bad_cfg": "cfg", "bad_sampler": "sampler", "bad_negative": "negative", "bad_bpm": "bpm", "bad_bars": "bars",
    "bad_variations": "variations",
}  # fmt: skip
NUMERIC = ("seed", "steps", "cfg", "variations")


def _number(value):
    """A form's text as the number it spells, else unchanged (the request's checks then name it)."""
    if isinstance(value, str):
        text = value.strip()
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                continue
    return value


def request_from_form(form: dict, bpm: float):
    """The page's prompt form as the atoms of `/sao/gen`, parsed by the same code (same codes, same sentences)."""
    prompt = form.get("prompt", "")
    if not isinstance(prompt, str):
        raise RequestError("bad_prompt", f"prompt must be a string, got {prompt!r}"[:300])
    options: list = []
    for key in (*NUMERIC, "negative", "sampler"):
        value = form.get(key)
        if value is None or value == "":
            continue
        options += [key, _number(value) if key in NUMERIC else value]
    if form.get("length") == "bars":
        bars = form.get("bars")
        if bars is None or bars == "":
            raise RequestError("bad_bars", "bars must be a number in (0, 256], got nothing")
        bpm_given = form.get("bpm")
        options += ["bars", _number(bars), "bpm", bpm if bpm_given in (None, "") else _number(bpm_given)]
        seconds = 0
    else:
        seconds = form.get("seconds")
        if seconds is None or seconds == "":
            raise RequestError("missing_seconds", f"expected a number of seconds after the prompt {prompt!r}"[:300])
        seconds = _number(seconds)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise RequestError("bad_seconds", f"seconds must be a number, got {seconds!r}"[:300])
    request, _ = parse_osc([prompt, seconds, *options], bpm)
    return request


def error_response(err: SaoLiveError, form: dict | None = None) -> web.Response:
    code, message = err.code, str(err)[:300]
    if isinstance(err, RequestError) or code in FIELDS:
        field = FIELDS.get(code)
        if code == "prompt_too_long" and message.startswith("negative"):
            field = "negative"
        if field == "seconds" and form is not None and form.get("length") == "bars":
            field = "bars"  # the length the bars make is what the model refused
    else:
        field = None
    public = getattr(err, "public", None) or message  # a set's error: never the file's values
    return web.json_response(dict(error=dict(code=code, message=public[:300], field=field)), status=400)


class WebServer:
    def __init__(self, controller, bus, store, runtime, settings, token: str | None = None):
        self.controller = controller
        self.store = store
        self.runtime = runtime
        self.settings = settings
        self.guard = WebGuard(settings.host, settings.http_port, token)
        self.hub = Hub(controller, self._peaks, runtime.spawn)
        bus.subscribe(self.hub.on_event)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._tick = None
        self.app = web.Application(middlewares=[self.guard.middleware], client_max_size=64 * 1024)
        self.app.add_routes(
            [
                web.get("/", self.index),
                web.get("/static/{name}", self.static),
                web.get("/ws", self.hub.serve),
                web.get("/api/clips", self.clips),
                web.get("/clips/{key}.wav", self.clip_file),
                web.post("/api/generate", self.generate),
                web.post("/api/cancel", self.cancel),
                web.post("/api/play", self.play),
                web.post("/api/stop", self.stop),
                web.post("/api/pad", self.pad),
                web.post("/api/bank", self.bank),
                web.post("/api/load", self.load),
            ]
        )

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The link to open: on this machine, or (bound beyond it) an address others reach, with the token."""
        s = self.settings
        host = s.host
        if host in ("0.0.0.0", "::"):
            others = sorted(a for a in local_addresses() if ":" not in a and a[0].isdigit() and not is_loopback(a))
            host = others[0] if others else "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        token = f"?token={self.guard.token}" if self.guard.token else ""
        return f"http://{shown}:{s.http_port}/{token}"

    async def start(self) -> None:
        """Binds and serves (OSError if the port is taken)."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.host, self.settings.http_port).start()
        self._tick = asyncio.ensure_future(self.hub.tick())  # not a tracked task: shutdown does not wait for it

    async def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        await self.hub.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------ pages and files

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if not re.fullmatch(r"[a-z0-9_-]+\.(js|css|svg)", name) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    async def _peaks(self, clip: Clip) -> bytes | None:
        try:
            return await self.runtime.in_thread(load_or_make, clip.path, self.store.peaks_path(clip.key))
        except Exception as err:  # noqa: BLE001 - a clip evicted meanwhile, an unreadable file: no waveform
            log.warning("waveform of clip %s: %s", clip.key, err)
            return None

    async def clips(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            offset, limit = max(0, int(q.get("offset", 0))), min(MAX_PAGE, max(1, int(q.get("limit", PAGE_SIZE))))
        except ValueError:
            raise web.HTTPBadRequest(text="offset and limit are whole numbers") from None
        clips, total = await self.runtime.io(self.store.recent, q.get("q", "")[:200], limit, offset)
        rows = [clip_row(c, await self._peaks(c)) for c in clips]
        return web.json_response(dict(clips=rows, total=total, offset=offset))

    async def _clip(self, key) -> Clip:
        if not isinstance(key, str) or not KEY.fullmatch(key):
            raise RequestError("unknown_clip", f"a clip is named by its 32-character cache key, got {str(key)[:40]!r}")
        clip = await self.runtime.io(self.store.get, key)
        if clip is None:
            raise RequestError("unknown_clip", f"no clip {key} in the cache (evicted?)")
        return clip

    async def clip_file(self, request: web.Request) -> web.StreamResponse:
        try:
            clip = await self._clip(request.match_info["key"])
        except RequestError:
            raise web.HTTPNotFound() from None
        headers = {"Cache-Control": "private, max-age=3600"}
        if request.query.get("download"):
            words = re.sub(r"[^A-Za-z0-9]+", "-", clip.request.get("prompt", "clip")).strip("-")[:40] or "clip"
            headers["Content-Disposition"] = f'attachment; filename="{words}-{clip.seed}.wav"'
        return web.FileResponse(clip.path, headers=headers)

    # ------------------------------------------------------------ actions

    async def _body(self, request: web.Request) -> dict:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise RequestError("bad_args", "the body must be a JSON object")
        return body

    async def generate(self, request: web.Request) -> web.Response:
        form = {}
        try:
            form = await self._body(request)
            req = request_from_form(form, self.controller.bpm)
            rid = f"web{next(self._ids)}"
            self.controller.submit_web(rid, req, trigger=bool(form.get("trigger")))
        except SaoLiveError as err:
            return error_response(err, form)
        return web.json_response(dict(id=rid))

    async def cancel(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            r = self.hub.requester(body.get("job")) if isinstance(body.get("job"), int) else None
            if r is None or not r.host:
                raise RequestError("unknown_id", f"no queued or running request {body.get('job')!r} to cancel")
            count = self.controller.cancel_requester(r.host, r.port, r.id)
        except SaoLiveError as err:
            return error_response(err)
        return web.json_response(dict(cancelled=count))

    async def play(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            clip = await self._clip(body.get("key"))
            voice = await self.controller.play_clip(clip)
        except SaoLiveError as err:
            return error_response(err)
        self.hub.send_all(dict(type="playing", target=clip.key, voice=voice, seed=clip.seed))
        return web.json_response(dict(voice=voice))

    async def stop(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            key = body.get("key")
            if key is None:
                count = self.controller.stop("all")
            else:
                count = self.controller.stop_clip((await self._clip(key)).key)
        except SaoLiveError as err:
            return error_response(err)
        return web.json_response(dict(stopped=count))

    async def pad(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            number = body.get("number")
            if isinstance(number, bool) or not isinstance(number, int):
                raise RequestError("unknown_pad", f"a pad is named by its number, got {number!r}"[:300])
            voice, take, nearest = self.controller.hit(number, 1.0)
        except SaoLiveError as err:
            return error_response(err)
        self.hub.send_all(dict(type="playing", target=f"pad{number}", voice=voice, seed=take.seed, nearest=nearest))
        return web.json_response(dict(voice=voice, seed=take.seed, nearest=nearest))

    async def bank(self, request: web.Request) -> web.Response:
        try:
            bank = self.controller.set_bank((await self._body(request)).get("bank"))
        except SaoLiveError as err:
            return error_response(err)
        self.hub.send_all(dict(type="pads", pads=self.controller.pad_grid()))
        return web.json_response(dict(bank=bank))

    async def load(self, request: web.Request) -> web.Response:
        try:
            name = (await self._body(request)).get("name")
            if not isinstance(name, str):
                raise RequestError("bad_args", f"load takes one set name (a file in the sets folder), got {name!r}")
            live = await self.controller.load_named(name)
        except SaoLiveError as err:
            return error_response(err)
        self.hub.send_all(dict(type="pads", pads=self.controller.pad_grid()))
        return web.json_response(dict(name=live.name, pads=len(live.pads), banks=len(live.banks)))
