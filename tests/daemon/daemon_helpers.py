"""Daemon test helpers: free ports, a real `sao-live serve` subprocess, OSC clients that collect replies.

The daemon runs the tiny random model (no download) with its own cache, export and config
folders. Clients are python-osc (a library others wrote) on real UDP sockets; each sends
`/sao/hello 0` so its replies come back to its own socket and tests do not see each other's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

LONG_STEPS = 1000  # a job that stays running until the test cancels or kills it (never awaited)
SHORT_LONG_STEPS = 60  # a job still running a moment after its first progress, that tests wait to finish


def free_port() -> int:
    """A UDP port nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(address: str, *args) -> bytes:
    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(a)
    return builder.build().dgram


class Collector:
    """Receives OSC on a socket in a thread; `wait_for` returns the first matching message not yet taken."""

    def __init__(self, port: int = 0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.messages: list[tuple[str, tuple]] = []
        self._taken: set[int] = set()
        self._cond = threading.Condition()
        self._closed = False
        self.sock.settimeout(0.1)  # so the thread notices close() and lets go of the port
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                continue  # ICMP "port unreachable" for something this socket sent
            for timed in OscPacket(data).messages:
                with self._cond:
                    self.messages.append((timed.message.address, tuple(timed.message.params)))
                    self._cond.notify_all()
        self.sock.close()

    def wait_for(self, address: str, match=None, timeout: float = 30.0) -> tuple:
        """The args of the first untaken message at `address` for which `match(args)` is true."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, (addr, args) in enumerate(self.messages):
                    if i not in self._taken and addr == address and (match is None or match(args)):
                        self._taken.add(i)
                        return args
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {address} within {timeout} s; got {self.messages[-12:]}")
                self._cond.wait(left)

    def wait_reply(self, id, addresses=("/sao/done", "/sao/error"), timeout: float = 30.0) -> tuple[str, tuple]:
        """The first untaken final reply (done or error by default) for request `id`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, (addr, args) in enumerate(self.messages):
                    if i not in self._taken and addr in addresses and args and args[0] == id:
                        self._taken.add(i)
                        return addr, args
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no reply for {id!r} within {timeout} s; got {self.messages[-12:]}")
                self._cond.wait(left)

    def of(self, address: str, id=None) -> list[tuple]:
        with self._cond:
            return [a for addr, a in self.messages if addr == address and (id is None or (a and a[0] == id))]

    def close(self) -> None:
        self._closed = True
        self._thread.join(5)


class Client(Collector):
    """A python-osc client whose replies come back to its own socket (`/sao/hello 0`)."""

    def __init__(self, daemon_port: int, hello: bool = True):
        super().__init__()
        self.target = ("127.0.0.1", daemon_port)
        if hello:
            self.send("/sao/hello", 0)
            self.wait_for("/sao/ready", timeout=10)

    def send(self, address: str, *args) -> None:
        self.sock.sendto(build(address, *args), self.target)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    def request(self, address: str, *args, timeout: float = 30.0) -> tuple[str, tuple]:
        """Sends `/sao/gen`-like `args` (id first) and waits for done or error."""
        self.send(address, *args)
        return self.wait_reply(args[0], timeout=timeout)


class DaemonProcess:
    """`python -m sao_live.cli serve` with the tiny model on free ports and its own folders."""

    def __init__(self, root: Path, text_encoder: Path, config: dict | None = None, export: bool = True,
                 args: tuple[str, ...] = ()):  # fmt: skip
        self.args = tuple(args)  # more `serve` flags
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.osc_port, self.reply_port = free_port(), free_port()
        self.cache_dir = self.root / "cache"
        self.export_dir = self.root / "export" if export else None
        self.text_encoder = text_encoder
        self.config = self.root / "config.toml"
        self.config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in (config or {}).items()))
        self.log_path = self.root / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 90.0) -> DaemonProcess:
        """Starts the daemon and returns once it announced `/sao/ready 1` on the reply port."""
        cmd = [sys.executable, "-m", "sao_live.cli", "serve", "--model", "tiny-random", "--device", "cpu",
               "--text-encoder", str(self.text_encoder), "--osc-port", str(self.osc_port),
               "--reply-port", str(self.reply_port), "--cache-dir", str(self.cache_dir),
               "--config", str(self.config)]  # fmt: skip
        if self.export_dir is not None:
            cmd += ["--export-dir", str(self.export_dir)]
        cmd += self.args
        env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_CONFIG_HOME=str(self.root / "xdg-config"),
                   XDG_CACHE_HOME=str(self.root / "xdg-cache"), PYTHONUNBUFFERED="1")  # fmt: skip
        listener = Collector(self.reply_port)
        try:
            self.started_at = time.monotonic()
            with open(self.log_path, "a") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            self.starts += 1
            listener.wait_for("/sao/startup", timeout=timeout)
            listener.wait_for("/sao/ready", lambda a: a[0] == 1, timeout=timeout)
            self.ready_after = time.monotonic() - self.started_at
        except TimeoutError:
            self.proc.kill()
            raise TimeoutError(f"the daemon did not get ready; its log:\n{self.log()}") from None
        finally:
            listener.close()
        return self

    def client(self, hello: bool = True) -> Client:
        return Client(self.osc_port, hello)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def children(self) -> list[int]:
        """Pids of the daemon's child processes (the worker, the audio process, multiprocessing's helpers)."""
        pids = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():  # a child belongs to the thread that made it
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue  # the thread has ended
        return pids

    def worker_pid(self, client: Client) -> int:
        client.send("/sao/status")
        return client.wait_for("/sao/status", timeout=10)[5]

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def pid_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def riff_chunks(path) -> dict[bytes, bytes]:
    """The RIFF chunks of a WAV file, read with struct (not with the library that wrote them)."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8, "RIFF size must cover the whole file"
    chunks, pos = {}, 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks[cid] = data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)
    assert pos == len(data)
    return chunks
