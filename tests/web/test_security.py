"""Other web pages the musician visits must not drive the daemon: Host, Origin and token checks.

Raw HTTP over real sockets, so every header is exactly what a hostile page's browser would send.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time

import pytest

from sao_live.testing.daemon import DaemonProcess


def status_of(port: int, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, str]:
    """(status code, headers and body) of one HTTP/1.1 request to 127.0.0.1:port."""
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        time.sleep(0.05)
        sock.settimeout(0.2)
        with contextlib.suppress(OSError):  # the body, when it came after the headers
            answer += sock.recv(65536)
    text = answer.decode(errors="replace")
    return int(text.split(" ", 2)[1]), text


def ws_upgrade(host: str, origin: str | None, path: str = "/ws") -> dict:
    headers = {"Host": host, "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    if origin is not None:
        headers["Origin"] = origin
    return headers


GENERATE = b'{"prompt": "hostile", "seconds": 0.5, "steps": 2}'


def test_foreign_host_is_refused(web_daemon):
    port = web_daemon.http_port
    assert status_of(port, "GET", "/", {"Host": f"127.0.0.1:{port}"})[0] == 200
    assert status_of(port, "GET", "/", {"Host": f"localhost:{port}"})[0] == 200
    code, text = status_of(port, "GET", "/api/clips", {"Host": f"rebind.example:{port}"})
    assert code == 403, text
    assert "rebind.example" in text and '"clips"' not in text


def test_post_from_a_foreign_origin_is_refused(web_daemon):
    port = web_daemon.http_port
    own = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json"}
    code, text = status_of(port, "POST", "/api/generate", {**own, "Origin": "http://evil.example"}, GENERATE)
    assert code == 403, text
    code, text = status_of(port, "POST", "/api/generate", own, GENERATE)  # no Origin at all
    assert code == 403, text
    code, text = status_of(port, "POST", "/api/generate", {**own, "Origin": f"http://127.0.0.1:{port}"}, GENERATE)
    assert code == 200 and '"id"' in text, text  # the page's own request goes through


def test_websocket_from_a_foreign_origin_is_refused(web_daemon):
    port = web_daemon.http_port
    host = f"127.0.0.1:{port}"
    assert status_of(port, "GET", "/ws", ws_upgrade(host, "http://evil.example"))[0] == 403
    assert status_of(port, "GET", "/ws", ws_upgrade(host, None))[0] == 403
    assert status_of(port, "GET", "/ws", ws_upgrade(host, f"http://{host}"))[0] == 101


@pytest.fixture(scope="module")
def lan_daemon(tmp_path_factory, tiny_t5):
    root = tmp_path_factory.mktemp("web-lan")
    daemon = DaemonProcess(root, tiny_t5, config=dict(audio_device="none", midi_in="none"), args=("--host", "0.0.0.0"))
    daemon.start()
    yield daemon
    daemon.stop()


def test_beyond_localhost_every_request_needs_the_printed_token(lan_daemon):
    port = lan_daemon.http_port
    found = re.search(r"web page: (http://\S+)\?token=(\S+)", lan_daemon.log())
    assert found, lan_daemon.log()
    token = found.group(2)
    host = {"Host": f"127.0.0.1:{port}"}
    assert status_of(port, "GET", "/", host)[0] == 401
    assert status_of(port, "GET", "/api/clips", host)[0] == 401
    assert status_of(port, "GET", "/?token=wrong", host)[0] == 401
    code, text = status_of(port, "GET", f"/?token={token}", host)
    assert code == 200 and "sao_live_token=" in text and "SameSite=Strict" in text, text
    assert status_of(port, "GET", "/api/clips", {**host, "Cookie": f"sao_live_token={token}"})[0] == 200
    own = f"http://127.0.0.1:{port}"
    assert status_of(port, "GET", "/ws", ws_upgrade(host["Host"], own))[0] == 401
    assert status_of(port, "GET", f"/ws?token={token}", ws_upgrade(host["Host"], own))[0] == 101
