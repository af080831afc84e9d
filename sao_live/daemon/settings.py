"""Daemon settings: one dataclass, read from TOML, overridden by command-line flags.

Where they come from, later winning: the defaults below; `config.toml` in the user config
folder (platformdirs: ~/.config/sao-live on Linux, ~/Library/Application Support/sao-live on
macOS, %LOCALAPPDATA%\\sao-live on Windows) or the file given with `--config`; the flags.
The file holds the field names below as top-level keys, e.g. `osc_port = 9000`.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir, user_config_dir, user_data_dir

from ..errors import SaoLiveError
from ..live.tempo import Tempo
from ..musical_time import QUANTIZE_UNITS, TEMPO_SOURCES
from ..ranges import RANGES, in_range
from ..request import EXPORT_FORMATS, ModelInfo, Request, RequestError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class SettingsError(SaoLiveError, ValueError):
    code = "bad_settings"


def default_config_file() -> Path:
    return Path(user_config_dir("sao-live")) / "config.toml"


def default_cache_dir() -> Path:
    return Path(user_cache_dir("sao-live")) / "clips"


def default_sets_dir() -> Path:
    return Path(user_data_dir("sao-live")) / "sets"


_RAY_CLIENT = re.compile(r"ray://[^\s/:]+:\d{1,5}")


def _one_of(words) -> str:
    """("off", "beat", "bar") -> "off, beat or bar"."""
    *head, last = words
    return f"{', '.join(head)} or {last}"


@dataclass(frozen=True)
class Settings:
    model: str = "model"  # folder, hub repo id, or tiny-random
    text_encoder: str | None = None
    device: str | None = None
    numerics: str = "fast"
    int8: bool | None = None  # int8 DiT linears (fast mode, CPU); None: on there (docs/engine.md)
    arithmetic: str = "auto"  # fast mode's arithmetic on a CPU, e.g. "dit=fp32,decoder=fp32"; auto: per CPU
    host: str = "127.0.0.1"  # OSC listen address; 0.0.0.0 to accept other machines
    osc_port: int = 9321
    reply_port: int = 9322  # replies go to the sender's IP on this port unless /sao/hello says otherwise
    web: bool = True  # serve the web page (docs/web.md) on `host`
    http_port: int = 9323  # the web page's TCP port
    stream: bool = True  # a client's clip may start playing while it still decodes (docs/player.md)
    allow: tuple[str, ...] = ()  # senders besides loopback: hosts, networks; empty: the subnet listened on
    reply_rate_kb: int = 1024  # reply kilobytes a second any one host may be sent (twice that in a burst)
    cache_dir: Path = field(default_factory=default_cache_dir)
    cache_max_mb: int = 2048  # least recently used clips are evicted past this; 0: no limit
    export_dir: Path | None = None  # the folder a DAW watches; None: no export
    export: bool = True  # export every clip when export_dir is set (a request's `export` key overrides)
    export_format: str = "wav"  # wav (24-bit), wav16, wav32f, flac
    bpm: float = 120.0  # for requests with bars but no bpm
    queue_size: int = 256  # jobs waiting; beyond, requests get `busy`
    requesters_per_job: int = 64  # identical requests answered by one generation; beyond, `busy`
    heartbeat_interval: float = 1.0  # seconds between pings to the worker
    heartbeat_timeout: float = 30.0  # a worker silent this long is killed and restarted
    ready_timeout: float = 900.0  # the longest a model may take to load (downloads included)
    shutdown_timeout: float = 10.0  # how long a running job may finish on SIGINT/SIGTERM
    worker_nice: int = 10  # the worker yields the CPU to the control plane (and the player)
    worker_threads: int = 0  # torch threads in the worker; 0: every core (it runs below the player's priority)
    retries: int = 1  # a job whose worker dies is retried this often, then reported
    # the live side (docs/player.md)
    audio_device: str | None = None  # index, or a substring of a device or host API name; "none": no sound
    audio_blocksize: int = 0  # frames per callback; 0: the device's choice (JACK: its period)
    audio_nice: int = -10  # the audio process's CPU priority; below 0 needs permission (docs/player.md)
    voices: int = 32  # mixer voices
    master_db: float = -6.0  # gain on the sum before the limiter (headroom for many voices)
    velocity_curve: float = 1.5  # gain = (velocity / 127) ** velocity_curve
    midi_in: str | None = None  # None: a virtual input port "sao-live"; a name: that existing port; "none": off
    midi_api: str | None = None  # rtmidi API, e.g. UNIX_JACK, LINUX_ALSA, MACOSX_CORE, WINDOWS_MM
    set_file: Path | None = None  # a set to pre-render and load before /sao/ready
    sets_dir: Path = field(default_factory=default_sets_dir)  # /sao/load <name> loads <name>.toml from here only
    quantize: str = "off"  # off, beat, bar: when launches start
    tempo_source: str = "fixed"  # fixed, midi (clock), link (Ableton Link, needs aalink)
    # a model pool on a Ray cluster (docs/cluster.md)
    pool: str = ""  # "": the local worker only; ray: join or start a local Ray runtime; ray://HOST:PORT: a cluster
    pool_model: str = ""  # the model as the nodes read it (a folder there, or a hub id); "": `model`
    pool_text_encoder: str = ""  # the text encoder as the nodes read it; "": `text_encoder`
    pool_cpus_per_actor: int = 0  # cores per actor on a node without a GPU; 0: one actor for all its cores

    def __post_init__(self):
        put = object.__setattr__
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("cache_dir", "export_dir", "set_file", "sets_dir") and value is not None:
                put(self, f.name, Path(value).expanduser())
        for name in ("osc_port", "reply_port", "http_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 < port < 65536:
                raise SettingsError(f"{name} must be a port number in [1, 65535], got {port!r}")
        allow = self.allow
        if isinstance(allow, str):
            allow = tuple(a for a in allow.split(",") if a.strip())
        if not isinstance(allow, (list, tuple)) or not all(isinstance(a, str) and a.strip() for a in allow):
            raise SettingsError(f'allow must be a list of hosts or networks (e.g. ["192.168.1.0/24"]), got {allow!r}')
        put(self, "allow", tuple(a.strip() for a in allow))
        if isinstance(self.reply_rate_kb, bool) or not isinstance(self.reply_rate_kb, int) or self.reply_rate_kb < 1:
            raise SettingsError(f"reply_rate_kb must be a whole number >= 1, got {self.reply_rate_kb!r}")
        for name in ("cache_max_mb", "queue_size", "requesters_per_job", "retries", "worker_nice", "worker_threads",
                     "pool_cpus_per_actor"):  # fmt: skip
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise SettingsError(f"{name} must be a whole number >= 0, got {getattr(self, name)!r}")
        for name in ("model", "host"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise SettingsError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if self.int8 is not None and not isinstance(self.int8, bool):
            raise SettingsError(f"int8 must be true or false, got {self.int8!r}")
        self._check_arithmetic()
        for name in ("web", "stream"):
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.export, bool):
            raise SettingsError(f"export must be true or false, got {self.export!r}")
        for name in ("queue_size", "requesters_per_job"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("heartbeat_interval", "heartbeat_timeout", "ready_timeout", "shutdown_timeout", "bpm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise SettingsError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.export_format not in EXPORT_FORMATS:
            raise SettingsError(f"export_format must be one of {', '.join(EXPORT_FORMATS)}, got {self.export_format!r}")
        if self.quantize not in QUANTIZE_UNITS:
            raise SettingsError(f"quantize must be {_one_of(QUANTIZE_UNITS)}, got {self.quantize!r}")
        if self.tempo_source not in TEMPO_SOURCES:
            raise SettingsError(f"tempo_source must be {_one_of(TEMPO_SOURCES)}, got {self.tempo_source!r}")
        if not isinstance(self.voices, int) or not 1 <= self.voices <= 256:
            raise SettingsError(f"voices must be a whole number in [1, 256], got {self.voices!r}")
        nice = self.audio_nice
        if isinstance(nice, bool) or not isinstance(nice, int) or not -20 <= nice <= 19:
            raise SettingsError(f"audio_nice must be a whole number in [-20, 19], got {nice!r}")
        if not isinstance(self.audio_blocksize, int) or not 0 <= self.audio_blocksize <= 8192:
            raise SettingsError(f"audio_blocksize must be a whole number in [0, 8192], got {self.audio_blocksize!r}")
        for name in ("master_db", "velocity_curve"):
            value = getattr(self, name)
            if not in_range(name, value):
                lo, hi = RANGES[name]
                raise SettingsError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
        for name in ("pool", "pool_model", "pool_text_encoder"):
            if not isinstance(getattr(self, name), str):
                raise SettingsError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.pool and not (self.pool == "ray" or _RAY_CLIENT.fullmatch(self.pool)):
            raise SettingsError(f"pool must be ray or ray://HOST:PORT (e.g. ray://10.0.0.5:10001), got {self.pool!r}")
        if self.numerics not in ("fast", "reference"):
            raise SettingsError(f"numerics must be 'fast' or 'reference', got {self.numerics!r}")

    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: Any) -> Settings:
        """Defaults, then the TOML file (`config`, else the user's config.toml if it exists), then
        `overrides` whose value is not None (the flags that were given)."""
        values: dict[str, Any] = {}
        path = Path(config).expanduser() if config else default_config_file()
        if config or path.is_file():
            values.update(cls._read(path))
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except TypeError as err:
            raise SettingsError(f"settings: {err}") from None

    @classmethod
    def _read(cls, path: Path) -> dict:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise SettingsError(f"cannot read config file {path}: {err}") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"{path}: unknown settings {unknown}; known: {', '.join(sorted(known))}")
        return data

    def _check_arithmetic(self) -> None:
        from ..engine.arithmetic import parse_override  # no torch: the control process stays light

        if not isinstance(self.arithmetic, str):
            raise SettingsError(f'arithmetic must be a string such as "dit=fp32", got {self.arithmetic!r}')
        try:
            dit = parse_override(self.arithmetic).get("dit")
        except ValueError as err:
            raise SettingsError(str(err)) from None
        if self.int8 is not None and dit is not None and dit != ("int8" if self.int8 else "fp32"):
            raise SettingsError(f"int8 = {self.int8} and arithmetic dit={dit} contradict each other")

    def describe(self) -> str:
        """One `name = value` line per setting, for the log at start: the value in effect, not None."""
        return "\n".join(f"  {f.name} = {self._effective(f.name)}" for f in fields(self))

    def _effective(self, name: str) -> str:
        from ..live.midi import VIRTUAL_NAME

        value = getattr(self, name)
        if name == "model" and Path(value).expanduser().is_dir():
            return f"{value} ({Path(value).expanduser().resolve()})"  # a relative folder depends on where we run
        if name == "int8" and value is None:
            return "auto (on for CPU in fast mode)"
        if name == "export":
            if self.export_dir is None:
                return "off (no --export-dir)"
            return "on" if value else "off (unless a request asks)"
        if name == "allow":
            if value:
                return f"loopback, {', '.join(value)}"
            local = self.host in ("localhost",) or self.host.startswith("127.") or self.host == "::1"
            return "loopback only" if local else "loopback and the subnet(s) of the address listened on"
        if name == "pool" and not value:
            return "off (the local worker makes every clip)"
        if name in ("pool_model", "pool_text_encoder") and not value:
            return "as " + name.removeprefix("pool_")
        if value is not None:
            return str(value)
        return {
            "text_encoder": "default (google-t5/t5-base for the published models)",
            "device": "auto (cuda, mps, else cpu)",
            "export_dir": "none (clips stay in the cache)",
            "audio_device": "the default output",
            "midi_in": f"a virtual port {VIRTUAL_NAME!r}",
            "midi_api": "rtmidi's default",
        }.get(name, "none")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


class LiveParams:
    """The settings `/sao/set/<param>` changes while the daemon runs (until it stops).

    steps, cfg and sampler are None until set: the model card's defaults apply. bpm belongs to
    the one Tempo (live/tempo.py): it is read and set there, checked here like the others.
    """

    def __init__(self, settings: Settings, tempo: Tempo):
        self.tempo = tempo
        self.values: dict[str, Any] = dict(
            steps=None, cfg=None, sampler=None, export=settings.export, export_format=settings.export_format
        )

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, model: ModelInfo | None) -> Any:
        if name == "bpm":
            return self.tempo.bpm
        if name not in self.values:
            names = ", ".join(["bpm", *self.values])
            raise RequestError("unknown_param", f"no setting {name!r}; settings: {names}")
        value = self.values[name]
        if value is None:  # the model's default
            value = getattr(model, name) if model else 0
        return int(value) if isinstance(value, bool) else value

    def set(self, name: str, value: Any, model: ModelInfo | None) -> None:
        """Checks `value` as a request field would be checked; RequestError `bad_value` if it does not fit."""
        self.get(name, model)
        probe = dict(prompt="probe", seconds=1.0, seed=0)
        try:
            if name == "export":
                value = Request(**probe, export=value).export != "none"
            elif name == "export_format":
                if value not in EXPORT_FORMATS:
                    raise RequestError("bad_value", f"export_format must be one of {', '.join(EXPORT_FORMATS)}")
            elif name == "bpm":
                value = Request(**probe, bars=1, bpm=value).bpm
            else:
                value = getattr(Request(**probe, **{name: value}), name)
                if name == "sampler" and model and value not in model.samplers:
                    raise RequestError("bad_value", f"sampler must be one of {', '.join(model.samplers)}")
        except RequestError as err:
            raise RequestError("bad_value", f"/sao/set/{name}: {err}") from None
        if name == "bpm":
            self.tempo.set_bpm(value)
        else:
            self.values[name] = value
