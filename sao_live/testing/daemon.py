"""A real `sao-live serve` subprocess and OSC clients that collect its replies.

The daemon runs in its own cache, export and config folders, on free ports, with the tiny
random model unless told otherwise (no download). Clients are python-osc (a library others
wrote) on real UDP sockets; each sends `/sao/hello 0` so its replies come back to its own
socket, and clients do not see each other's replies.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from ..daemon.preflight import free_port

__all__ = ["Client", "Collector", "DaemonProcess", "build", "free_port", "pid_gone"]


def build(address: str, *args) -> bytes:
    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(a)
    return builder.build().dgram


class Collector:
    """Receives OSC on a socket; `wait_for` returns the first matching message not yet taken.

    A thread receives by default, so messages are collected while the test does other things.
    With `thread=False` the waits read the socket themselves: no thread hand-off in a latency
    measurement, but nothing is collected between waits.
    """

    def __init__(self, port: int = 0, thread: bool = True, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((host, port))  # another loopback address (127.0.0.77) is another sender
        self.port = self.sock.getsockname()[1]
        self.messages: list[tuple[str, tuple]] = []
        self.datagrams: list[tuple[float, int]] = []  # (time.monotonic(), bytes) of each datagram received
        self._taken: set[int] = set()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = None
        if thread:
            self.sock.settimeout(0.1)  # so the thread notices close() and lets go of the port
            self._thread = threading.Thread(target=self._receive, daemon=True)
            self._thread.start()

    def _keep(self, data: bytes) -> None:
        self.datagrams.append((time.monotonic(), len(data)))
        for timed in OscPacket(data).messages:
            with self._cond:
                self.messages.append((timed.message.address, tuple(timed.message.params)))
                self._cond.notify_all()

    def _receive(self) -> None:
        while not self._closed:
            try:
                self._keep(self.sock.recv(65536))
            except OSError:
                continue  # a timeout, or ICMP "port unreachable" for something this socket sent
        self.sock.close()

    def _wait(self, find, timeout: float, since: int, what: str):
        """The first untaken (index, message) from `since` on for which `find` returns a result."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                for i, (addr, args) in enumerate(self.messages[since:], since):
                    if i not in self._taken and (found := find(addr, args)) is not None:
                        self._taken.add(i)
                        return found
                since = len(self.messages)  # nothing before this matched: the next look starts here
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {what} within {timeout} s; got {self.messages[-12:]}")
            if self._thread is not None:
                with self._cond:
                    self._cond.wait(left)
                continue
            self.sock.settimeout(left)
            try:
                self._keep(self.sock.recv(65536))
            except OSError:
                continue

    def mark(self) -> int:
        """A position in `messages`: the waits below can skip what arrived before it."""
        with self._cond:
            return len(self.messages)

    def wait_for(self, address: str, match=None, timeout: float = 30.0, since: int = 0) -> tuple:
        """The args of the first untaken message at `address` (from `since` on) for which `match(args)` is true."""

        def find(addr, args):
            return args if addr == address and (match is None or match(args)) else None

        return self._wait(find, timeout, since, address)

    def wait_reply(
        self, id, addresses=("/sao/done", "/sao/error"), timeout: float = 30.0, since: int = 0
    ) -> tuple[str, tuple]:
        """The first untaken final reply (done or error by default) for request `id`, from `since` on."""

        def find(addr, args):
            return (addr, args) if addr in addresses and args and args[0] == id else None

        return self._wait(find, timeout, since, f"reply for {id!r}")

    def of(self, address: str, id=None) -> list[tuple]:
        with self._cond:
            return [a for addr, a in self.messages if addr == address and (id is None or (a and a[0] == id))]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._thread is not None:
            self._thread.join(5)
        else:
            self.sock.close()


class Client(Collector):
    """A python-osc client whose replies come back to its own socket (`/sao/hello 0`)."""

    def __init__(
        self,
        daemon_port: int,
        hello: bool = True,
        thread: bool = True,
        host: str = "127.0.0.1",
        daemon_host="127.0.0.1",
    ):
        super().__init__(thread=thread, host=host)
        self.target = (daemon_host, daemon_port)
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
    """`python -m sao_live.cli serve` on free ports with its own folders (the tiny model unless told)."""

    def __init__(
        self,
        root: Path,
        text_encoder: Path | None,
        config: dict | None = None,
        export: bool = True,
        args: tuple[str, ...] = (),
        model: str = "tiny-random",
        prefix: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ):
        self.model = model
        self.env = dict(env or {})  # more environment variables (e.g. RAY_ADDRESS for a model pool)
        self.args = tuple(args)  # more `serve` flags
        self.prefix = tuple(prefix)  # a command that execs the daemon (e.g. in a namespace of its own)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.osc_port, self.reply_port = free_port(), free_port()
        self.http_port = free_port(kind=socket.SOCK_STREAM)  # the web page's
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
        cmd = [*self.prefix, sys.executable, "-m", "sao_live.cli", "serve"]
        cmd += ["--model", str(self.model), "--device", "cpu"]
        cmd += ["--osc-port", str(self.osc_port), "--reply-port", str(self.reply_port)]
        cmd += ["--http-port", str(self.http_port)]
        cmd += ["--cache-dir", str(self.cache_dir), "--config", str(self.config)]
        if self.text_encoder is not None:
            cmd += ["--text-encoder", str(self.text_encoder)]
        if self.export_dir is not None:
            cmd += ["--export-dir", str(self.export_dir)]
        cmd += self.args
        env = dict(
            os.environ,
            HF_HUB_OFFLINE="1",
            XDG_CONFIG_HOME=str(self.root / "xdg-config"),
            XDG_CACHE_HOME=str(self.root / "xdg-cache"),
            PYTHONUNBUFFERED="1",
            **self.env,
        )
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

    def client(self, hello: bool = True, thread: bool = True, host: str = "127.0.0.1", daemon_host="127.0.0.1"):
        """A client sending from `host` (another loopback address is another sender) to `daemon_host`."""
        return Client(self.osc_port, hello, thread, host, daemon_host)

    @property
    def web_url(self) -> str:
        """The web page's address on this machine (without the token a `--host 0.0.0.0` daemon wants)."""
        return f"http://127.0.0.1:{self.http_port}/"

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

    def memory_mb(self) -> tuple[float, float]:
        """The daemon's control process: resident memory now and its peak (VmRSS, VmHWM), in MB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text().splitlines()
        fields = dict(line.split(":", 1) for line in status if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

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
