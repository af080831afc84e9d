"""What `sao-live serve` checks before it starts anything (the worker, OSC, audio, MIDI).

Each failure says what is wrong and what to do next, within a second of starting rather
than after the model has loaded. None of this loads torch.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path

from ..errors import SaoLiveError
from .settings import Settings
from .store import check_cache_folder

DEFAULT_PORTS = {"--osc-port": 9321, "--http-port": 9323}


class PreflightError(SaoLiveError, RuntimeError):
    code = "startup_failed"


def check(settings: Settings) -> None:
    """Raises PreflightError (or the model's CheckpointError / ModelAccessError) for the first problem."""
    from ..engine.loading import check_model_source

    check_model_source(settings.model)
    check_pool(settings)
    check_udp_port(settings.host, settings.osc_port)
    if settings.web:
        check_tcp_port(settings.host, settings.http_port)
    check_allow(settings)
    check_folder(settings.cache_dir, "--cache-dir")
    check_cache_folder(settings.cache_dir)  # a folder of the user's own is refused, never tidied
    if settings.export_dir is not None:
        check_folder(settings.export_dir, "--export-dir")
    if settings.set_file is not None and not settings.set_file.is_file():
        raise PreflightError(f"--set {settings.set_file.absolute()}: no such file (a set file is TOML, docs/sets.md)")


def check_pool(settings: Settings) -> None:
    """A model pool needs Ray, an optional extra."""
    from .pool import RAY_MISSING, ray_installed

    if settings.pool and not ray_installed():
        raise PreflightError(RAY_MISSING)


def check_allow(settings: Settings) -> None:
    """Every `allow` entry names an address, a network or a host that resolves."""
    from .guard import AllowError, AllowList

    try:
        AllowList.for_settings(settings.host, settings.allow)
    except AllowError as err:
        raise PreflightError(f"{err}; fix --allow or `allow` in the config file") from None


def port_problem(host: str, port: int, err: OSError, what: str = "OSC", flag: str = "--osc-port") -> str:
    """Why `what` cannot listen on host:port, and which flag changes it."""
    where = f"cannot listen for {what} on {host}:{port}"
    if err.errno == errno.EADDRINUSE:
        spare = free_port(host, near=port + 1, kind=socket.SOCK_STREAM if flag == "--http-port" else socket.SOCK_DGRAM)
        other = f"{flag} {spare}" if spare else f"{flag} <another port>"
        return (
            f"{where}: the port is in use (another `sao-live serve`?). Stop that program, or listen on another "
            f"port with `{other}` and point your client at it"
        )
    if err.errno == errno.EACCES:
        example = f"{flag} {DEFAULT_PORTS[flag]}"
        return f"{where}: ports below 1024 need administrator rights; choose one above, e.g. `{example}`"
    if err.errno == errno.EADDRNOTAVAIL or isinstance(err, socket.gaierror):
        return f"{where}: {host!r} is not an address of this machine; use `--host 127.0.0.1` or `--host 0.0.0.0`"
    return f"{where}: {err.strerror or err}"


def check_udp_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            raise PreflightError(port_problem(host, port, err)) from None


def check_tcp_port(host: str, port: int) -> None:
    """The web page's port is free (the daemon binds it later, with SO_REUSEADDR as here)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise PreflightError(port_problem(host, port, err, "the web page", "--http-port")) from None


def free_port(host: str = "127.0.0.1", near: int | None = None, kind: int = socket.SOCK_DGRAM) -> int | None:
    """A UDP (or `kind`) port nothing listens on now: the kernel's pick, or the first free one from
    `near` on (within 100 ports; None if all are taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = [0] if near is None else range(near, min(near + 100, 65536))
    for port in candidates:
        with socket.socket(family, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    return None


def check_folder(folder: Path, flag: str) -> None:
    """`folder` exists (created if missing, with its parents), is a folder, and takes new files."""
    folder = Path(folder)
    where = f"{flag} {folder.absolute()}"
    if folder.exists() and not folder.is_dir():
        raise PreflightError(f"{where} is a file, not a folder: pass a folder (it is created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # A real file, not os.access: that says yes to root on read-only and virtual file systems.
        with tempfile.TemporaryFile(dir=folder, prefix=".sao-live-probe-"):
            pass
    except OSError as err:
        raise PreflightError(
            f"{where}: cannot write there ({err.strerror or err}); pass a folder you can write to"
        ) from None
    if not os.access(folder, os.R_OK):
        raise PreflightError(f"{where}: cannot read this folder; pass one you can read and write")
