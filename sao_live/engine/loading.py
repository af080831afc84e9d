"""Finding, reading and strictly matching official checkpoint files.

A source is a local folder (`model_config.json` + `model.safetensors` or `model.ckpt`) or a
hub repo id fetched with huggingface_hub and the user's token. Keys are matched by name:
a missing, unexpected or mis-shaped tensor is an error that names it. The only keys that
may be absent are the deterministic buffers (norm `beta` zeros, RoPE `inv_freq`), which
are recomputed rather than read (docs/engine.md, model notes).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import socket
import urllib.request
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import CheckpointError, ModelAccessError

if TYPE_CHECKING:
    import torch  # imported where it is used: the daemon checks model folders without loading torch

    from .config import ModelConfig

WEIGHT_FILES = ("model.safetensors", "model.ckpt")
DERIVED_BUFFERS = (".inv_freq", "_norm.beta")  # recomputed, may be absent from a file
# The weights file each published repo holds (model/README.md downloads these).
HUB_WEIGHTS = {
    "stabilityai/stable-audio-open-small": "model.ckpt",
    "stabilityai/stable-audio-open-1.0": "model.safetensors",
}
CONNECT_TIMEOUT = 3.0  # seconds to reach the hub before giving up (and not retrying for half a minute)

# Names that build a model with random weights instead of loading files.
# (config file, text encoder kind, config keys replaced).
RANDOM_MODELS: dict[str, tuple[str, str, dict]] = {
    # The tiny Small shape with the published window (524288 samples, 11.9 s), so that every
    # request the real Small takes also works on the toy model.
    "tiny-random": ("tiny-small.json", "tiny", {"sample_size": 524288}),
    "tiny-random-1.0": ("tiny-1.0.json", "tiny", {}),
    "random-small": ("sao-small.json", "t5-base", {}),
    "random-1.0": ("sao-1.0.json", "t5-base", {}),
}
NEXT_STEP = "run with `--model tiny-random` to try without weights, or see model/README.md for getting them"


def _hub_error(repo: str, filename: str, err: Exception) -> ModelAccessError:
    from huggingface_hub import errors as hub_errors

    page = f"https://huggingface.co/{repo}"
    if isinstance(err, hub_errors.GatedRepoError):
        return ModelAccessError(
            f"{repo} is gated: accept its licence at {page} while logged in, then give this machine "
            "your token (`hf auth login`, or set HF_TOKEN); or download model_config.json and the "
            "weights into a local folder and pass that folder"
        )
    if isinstance(err, hub_errors.RepositoryNotFoundError):
        return ModelAccessError(
            f"{repo} was not found or your token cannot see it (a gated repo answers 401 without a "
            f"token): check the name, accept the licence at {page}, and log in with `hf auth login`"
        )
    if isinstance(err, (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled, ConnectionError)):
        return _offline_error(repo, filename)
    if isinstance(err, hub_errors.EntryNotFoundError | hub_errors.RemoteEntryNotFoundError):
        return ModelAccessError(f"{repo} has no file {filename}")
    return ModelAccessError(f"downloading {filename} from {repo} failed: {err}")


def _offline_error(repo: str, filename: str, why: str = "no network or HF_HUB_OFFLINE is set") -> ModelAccessError:
    weights = HUB_WEIGHTS.get(repo, "model.safetensors")  # or model.ckpt, whichever the repo holds
    return ModelAccessError(
        f"cannot download {filename} from {repo}: {why}, and it is not in the local cache; download it on a "
        f"connected machine (`hf download {repo} model_config.json {weights} --local-dir model/`) and pass "
        "the folder, or run with `--model tiny-random` to try without weights"
    )


def resolve_model_files(source: str | os.PathLike) -> tuple[Path, Path]:
    """(config path, weights path) for a local folder or a hub repo id."""
    path = Path(source).expanduser()
    # The absolute folder: a relative one (the default `model`) depends on where the command runs.
    where = path.absolute()
    if path.is_dir():
        config = path / "model_config.json"
        if not config.is_file():
            raise CheckpointError(f"{where} has no model_config.json: {NEXT_STEP}")
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return config, path / name
        raise CheckpointError(f"{where} has model_config.json but no {' or '.join(WEIGHT_FILES)}: {NEXT_STEP}")
    if path.exists():
        raise CheckpointError(f"{where} is a file; pass the folder that holds model_config.json and the weights")
    if not is_hub_id(source):
        raise CheckpointError(
            f"no model folder at {where}, and {str(source)!r} is not a hub repo id like owner/name: {NEXT_STEP}"
        )
    return _download(str(source))


def check_model_source(source: str | os.PathLike) -> None:
    """Raises what loading `source` would raise about missing files or a bad model_config.json,
    without reading the weights: for a folder, and for a hub repo id while the hub is out of
    reach. Random models pass."""
    from huggingface_hub import constants

    from .config import ModelConfig

    if str(source) in RANDOM_MODELS:
        return
    if is_hub_id(source) and not constants.HF_HUB_OFFLINE and hub_unreachable() is None:
        return  # the worker downloads it
    config, _ = resolve_model_files(source)
    ModelConfig.from_file(config)  # every size within bounds: a bad one fails here, not after a load


def is_hub_id(source: str | os.PathLike) -> bool:
    """Whether `source` reads as a hub repo id (owner/name) rather than a path."""
    text = str(source)
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not Path(text).exists()


def hub_unreachable(timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why the hub (HF_ENDPOINT, or the proxy in between) cannot be reached, or None if it can.

    A TCP connect only: without it huggingface_hub retries a dead network for about half a minute.
    """
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as err:
        return f"no network: cannot reach {url.hostname}:{port} ({err.strerror or err})"
    return None


def text_encoder_source(source: str) -> str:
    """`source`, or its folder in the hub cache when the hub is out of reach (transformers would
    retry for about a minute); ModelAccessError when it is not there either."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub import errors as hub_errors

    if constants.HF_HUB_OFFLINE or not is_hub_id(source) or (why := hub_unreachable()) is None:
        return source
    try:
        return snapshot_download(source, local_files_only=True)
    except hub_errors.LocalEntryNotFoundError:
        folder = source.rsplit("/", 1)[-1]
        raise ModelAccessError(
            f"cannot download the text encoder {source}: {why}, and it is not in the local cache; download it "
            f"on a connected machine (`hf download {source} --local-dir {folder}/`) and pass "
            f"`--text-encoder {folder}/`"
        ) from None


def _download(repo: str) -> tuple[Path, Path]:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub import errors as hub_errors
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.disable_propagation()  # it has a handler of its own: each message would print twice
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else hub_unreachable()
    if why is not None:  # the cache only
        logging.getLogger(__name__).debug("%s: looking for %s in the local hub cache only", why, repo)
        try:
            config = Path(hf_hub_download(repo, "model_config.json", local_files_only=True))
        except hub_errors.LocalEntryNotFoundError:
            raise _offline_error(repo, "model_config.json", why) from None
        for name in WEIGHT_FILES:
            try:
                return config, Path(hf_hub_download(repo, name, local_files_only=True))
            except hub_errors.LocalEntryNotFoundError:
                continue
        raise _offline_error(repo, HUB_WEIGHTS.get(repo, " or ".join(WEIGHT_FILES)), why)

    def fetch(filename: str) -> Path:
        try:
            return Path(hf_hub_download(repo, filename))
        except Exception as err:  # mapped to a message that says what to do
            raise _hub_error(repo, filename, err) from err

    config = fetch("model_config.json")
    try:
        return config, Path(hf_hub_download(repo, "model.safetensors"))
    except (hub_errors.RemoteEntryNotFoundError, hub_errors.EntryNotFoundError) as err:
        if isinstance(err, hub_errors.LocalEntryNotFoundError):
            raise _hub_error(repo, "model.safetensors", err) from err
        return config, fetch("model.ckpt")
    except Exception as err:
        raise _hub_error(repo, "model.safetensors", err) from err


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or a .ckpt (loaded with weights_only=True), memory-mapped:
    nothing is read into memory until a tensor is used."""
    import torch

    size = path.stat().st_size
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # mmap needs the zip layout of torch.save; an older pickle-only file is read whole
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        raise _unpickling_error(path, err) from None
    except Exception as err:
        raise CheckpointError(
            f"cannot read {path} ({size:,} bytes): {err}. The file is truncated or damaged: download it again"
        ) from None
    if isinstance(data, dict) and "state_dict" in data:
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors (expected a 'state_dict' entry)")
    return data


def _unpickling_error(path: Path, err: pickle.UnpicklingError) -> CheckpointError:
    """A .ckpt the weights-only unpickler refused: code it would have run, or a damaged file."""
    code = re.search(r"GLOBAL ([\w.]+)", str(err))  # what torch names when the pickle imports something
    if code is None:
        detail = re.search(r"WeightsUnpickler error:\s*(\S.*)", str(err))
        return CheckpointError(
            f"cannot read {path}: {detail[1] if detail else str(err).splitlines()[0]}. The file is truncated or "
            "damaged, or not a PyTorch checkpoint: download it again"
        )
    return CheckpointError(
        f"refused to load {path}: besides tensors it holds code that would run when the file is loaded "
        f"(it uses {code[1]}). sao-live loads checkpoints as weights only and did not run it. Use the "
        "model's model.safetensors file instead (it can hold only tensors), from the publisher's repository"
    )


def check_sizes(cfg: ModelConfig, shapes: dict[str, tuple[int, ...]], source: str) -> None:
    """Compares the config's main sizes with the shapes of the checkpoint's tensors, before the model
    is built: CheckpointError naming the config key, its value, and what the file holds."""
    dit, vae = cfg.dit, cfg.autoencoder
    layers = {int(m[1]) for k in shapes if (m := re.match(r"model\.model\.transformer\.layers\.(\d+)\.", k))}
    problems = []
    if layers and len(layers) != dit.depth:
        problems.append(f"diffusion depth is {dit.depth}, but the file holds {len(layers)} transformer layers")
    # (config key, its value, tensor, dimension that holds it)
    facts = [
        ("diffusion embed_dim", dit.embed_dim, "model.model.transformer.project_in.weight", 0),
        ("diffusion io_channels", dit.io_channels, "model.model.transformer.project_in.weight", 1),
        (
            "diffusion embed_dim / num_heads",
            dit.head_dim,
            "model.model.transformer.layers.0.self_attn.q_norm.weight",
            0,
        ),
        ("diffusion cond_token_dim", dit.cond_token_dim, "model.model.to_cond_embed.0.weight", 1),
        ("diffusion global_cond_dim", dit.global_cond_dim, "model.model.to_global_embed.0.weight", 1),
        ("pretransform encoder channels", vae.encoder.channels, "pretransform.model.encoder.layers.0.weight_v", 0),
        ("pretransform latent_dim", vae.latent_dim, "pretransform.model.decoder.layers.0.weight_v", 1),
    ]
    facts += [
        (
            "conditioning cond_dim",
            cfg.conditioning.cond_dim,
            f"conditioner.conditioners.{n.id}.embedder.embedding.1.weight",
            0,
        )
        for n in cfg.conditioning.numbers
    ]
    for key, value, tensor, dim in facts:
        shape = shapes.get(tensor)
        if shape is not None and len(shape) > dim and shape[dim] != value:
            problems.append(f"{key} is {value}, but the file's {tensor} is {shape[dim]} there (shape {tuple(shape)})")
    if problems:
        raise CheckpointError(
            f"{source} does not match its model_config.json: "
            + "; ".join(problems)
            + ". Use the model_config.json that was published with these weights"
        )


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Loads `state` into `module` by exact key and shape, casting to the module's dtype.

    The module may live on the meta device: its tensors are then replaced (assign=True),
    and derived buffers absent from the file are recomputed by the caller.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(DERIVED_BUFFERS)]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} mis-shaped: {_listing(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match its model_config.json: "
            + "; ".join(problems)
            + ". Use the model_config.json that was published with these weights"
        )
    # copy=True: safetensors hands out views of one memory-mapped file, which would stay mapped
    # (and resident) for as long as any one tensor lives, even after fast mode drops the fp32 DiT.
    typed = {k: v.to(expected[k].dtype if v.is_floating_point() else v.dtype, copy=True) for k, v in state.items()}
    module.load_state_dict(typed, strict=False, assign=True)
