"""Who may use the page: any web page the musician visits can send requests to localhost.

- `Host` must name an address this server answers on (a DNS-rebinding page sends its own name).
- A state-changing request (anything but GET and HEAD) and a WebSocket upgrade must come from
  the daemon's own page: `Origin` is `http://<the Host it was sent to>`.
- Bound beyond this machine, every request carries the token printed at start: in the link
  (`?token=`, after which the page keeps it in a same-site cookie), or an `X-Sao-Token` header.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket

from aiohttp import web

COOKIE = "sao_live_token"
SAFE_METHODS = ("GET", "HEAD")
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_addresses() -> set[str]:
    """Every address of this machine's interfaces, and its names."""
    import psutil

    names = {"localhost", "127.0.0.1", "::1", socket.gethostname().lower(), f"{socket.gethostname().lower()}.local"}
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                names.add(a.address.split("%")[0].lower())
    return names


def _with_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class WebGuard:
    def __init__(self, bind_host: str, port: int, token: str | None = None):
        self.port = port
        self.local_only = is_loopback(bind_host)
        names = {"localhost", "127.0.0.1", "::1", bind_host.lower()}
        if bind_host in ("0.0.0.0", "::"):
            names |= local_addresses()
        names -= {"0.0.0.0", "::"}
        self.hosts = {_with_port(n, port) for n in names}
        # A token only where other machines can reach the page (one is made unless given).
        self.token = None if self.local_only else (token or secrets.token_urlsafe(18))

    def refuse(self, request: web.Request) -> web.Response | None:
        """Why `request` is refused (a 403 or 401 response), or None when it may go on."""
        host = request.headers.get("Host", "").lower()
        if host not in self.hosts:
            return web.Response(status=403, text=f"refused: Host {host[:100]!r} is not an address of this daemon\n")
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if request.method not in SAFE_METHODS or upgrade:
            origin = request.headers.get("Origin", "")
            if origin.lower() != f"http://{host}":
                what = "WebSocket" if upgrade else request.method
                return web.Response(status=403, text=f"refused: {what} from Origin {origin[:100]!r}, not this page\n")
        if self.token is not None and not self._has_token(request):
            return web.Response(status=401, text="refused: open the link with ?token= that sao-live serve printed\n")
        return None

    def _has_token(self, request: web.Request) -> bool:
        offered = [request.query.get("token"), request.cookies.get(COOKIE), request.headers.get("X-Sao-Token")]
        return any(t and hmac.compare_digest(t.encode(), self.token.encode()) for t in offered)

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        refused = self.refuse(request)
        if refused is not None:
            return refused
        response = await handler(request)
        if response.prepared:  # a WebSocket: its headers are sent
            return response
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if self.token is not None and request.query.get("token"):
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
        return response
