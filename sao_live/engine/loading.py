"""Finding, reading and strictly matching official checkpoint files (spec §2, §7).

A source is a local folder (`model_config.json` + `model.safetensors` or `model.ckpt`) or a
hub repo id fetched with huggingface_hub and the user's token. Keys are matched by name:
a missing, unexpected or mis-shaped tensor is an error that names it. The only keys that
may be absent are the deterministic buffers (norm `beta` zeros, RoPE `inv_freq`), which
spec §2.7 says not to depend on.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import CheckpointError, ModelAccessError

WEIGHT_FILES = ("model.safetensors", "model.ckpt")
DERIVED_BUFFERS = (".inv_freq", "_norm.beta")  # recomputed, may be absent from a file


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
        return ModelAccessError(
            f"cannot download {filename} from {repo}: no network or HF_HUB_OFFLINE is set, and it is not "
            "in the local cache; download it on a connected machine (`hf download "
            f"{repo} model_config.json model.safetensors --local-dir model/`) and pass the folder"
        )
    if isinstance(err, hub_errors.EntryNotFoundError | hub_errors.RemoteEntryNotFoundError):
        return ModelAccessError(f"{repo} has no file {filename}")
    return ModelAccessError(f"downloading {filename} from {repo} failed: {err}")


def resolve_model_files(source: str | os.PathLike) -> tuple[Path, Path]:
    """(config path, weights path) for a local folder or a hub repo id."""
    path = Path(source).expanduser()
    if path.is_dir():
        config = path / "model_config.json"
        if not config.is_file():
            raise CheckpointError(f"{path} has no model_config.json (see model/README.md for what goes there)")
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return config, path / name
        raise CheckpointError(f"{path} has model_config.json but no {' or '.join(WEIGHT_FILES)}")
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the folder that holds model_config.json and the weights")
    text = str(source)
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise CheckpointError(f"no model folder at {text!r}, and it is not a hub repo id like owner/name")
    return _download(text)


def _download(repo: str) -> tuple[Path, Path]:
    from huggingface_hub import errors as hub_errors
    from huggingface_hub import hf_hub_download

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
    """Tensors of a .safetensors file or a .ckpt (loaded with weights_only=True)."""
    size = path.stat().st_size
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise CheckpointError(
            f"cannot read {path} ({size:,} bytes): {err}. The file is truncated or damaged: download it again"
        ) from None
    if isinstance(data, dict) and "state_dict" in data:
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors (expected a 'state_dict' entry)")
    return data


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
