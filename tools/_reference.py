"""Import workarounds and helpers for running the reference (stable-audio-tools 0.0.19).

Only for tools/make_golden.py and the benchmark's reference half, run inside the separate
reference venv made by tools/setup_reference_venv.sh. sao_live never imports this.
Nothing here is copied from the reference: it only patches how the reference is imported
and how its T5 conditioner finds its weights, so it can run offline on this machine.

Workarounds (tools/README.md explains each):
- torchaudio 2.11's C extension cannot load beside torch 2.13: a stand-in for
  `torchaudio._extension` that reports "no extension" lets the pure-Python rest import.
- k_diffusion imports image-training modules needing torchvision, clip and cleanfid at package
  level: inert placeholder modules are present only while k_diffusion is imported, and removed
  right after (transformers probes for torchvision and must not find it).
- The T5 conditioner downloads "t5-base": `local_t5(folder)` points AutoTokenizer /
  T5EncoderModel.from_pretrained at a local folder while the model is built, and sets the
  conditioner's dims table so the folder's d_model is taken without a projection.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_PLACEHOLDER_ROOTS = ("torchvision", "clip", "cleanfid")
_imported = False


def _install_torchaudio_stub() -> None:
    if "torchaudio._extension" in sys.modules:
        return
    ext = types.ModuleType("torchaudio._extension")
    ext._IS_TORCHAUDIO_EXT_AVAILABLE = False
    ext._IS_ALIGN_AVAILABLE = False

    def _fail(*_a, **_k):
        raise RuntimeError("torchaudio C extension is not available in the reference venv")

    def fail_if_no_align(func):  # used as a decorator in torchaudio.functional._alignment
        return func

    ext.fail_if_no_align = fail_if_no_align
    ext._check_cuda_version = _fail
    ext.__all__ = ["_IS_TORCHAUDIO_EXT_AVAILABLE"]
    sys.modules["torchaudio._extension"] = ext


class _Inert:
    """Stands for any attribute of a placeholder module; fails only if actually used."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, item):
        return _Inert(f"{self._name}.{item}")

    def __call__(self, *_a, **_k):
        raise RuntimeError(f"{self._name} is an inert placeholder (not installed)")


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        return _Inert(f"{self.__name__}.{item}")


class _PlaceholderFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in _PLACEHOLDER_ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        mod = _PlaceholderModule(spec.name)
        mod.__path__ = []
        return mod

    def exec_module(self, module):
        pass


@contextlib.contextmanager
def _placeholders():
    finder = _PlaceholderFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in list(sys.modules):
            if name.split(".")[0] in _PLACEHOLDER_ROOTS and isinstance(sys.modules[name], _PlaceholderModule):
                del sys.modules[name]


def import_reference():
    """Imports stable_audio_tools (and k_diffusion) with the workarounds; returns the package."""
    global _imported
    if not _imported:
        _install_torchaudio_stub()
        import torchaudio  # noqa: F401  (pure-Python part only)

        # transformers first, so its torchvision probe runs before any placeholder exists.
        import transformers  # noqa: F401

        with _placeholders():
            import k_diffusion  # noqa: F401
        import stable_audio_tools  # noqa: F401
        import stable_audio_tools.inference.generation  # noqa: F401
        import stable_audio_tools.models.conditioners  # noqa: F401

        _imported = True
    import stable_audio_tools

    return stable_audio_tools


@contextlib.contextmanager
def local_t5(t5_folder: str | os.PathLike, dim: int | None = None):
    """While active, the reference's T5Conditioner loads its tokenizer and encoder from
    `t5_folder` (whatever name the config gives), and its dims table reports `dim` (default:
    the folder's d_model) for every known T5 name, so no projection is created when that
    equals the config's cond_dim."""
    import_reference()
    from stable_audio_tools.models import conditioners as C

    t5_folder = str(t5_folder)
    d_model = json.loads((Path(t5_folder) / "config.json").read_text())["d_model"]
    if dim is not None:
        d_model = dim

    import transformers

    orig_tok = transformers.AutoTokenizer.from_pretrained
    orig_enc = transformers.T5EncoderModel.from_pretrained
    orig_dims = C.T5Conditioner.T5_MODEL_DIMS

    def tok_from_pretrained(_name, *args, **kwargs):
        return orig_tok(t5_folder, *args, **kwargs)

    def enc_from_pretrained(_name, *args, **kwargs):
        import torch

        # Real weights even when the model is being built under torch.device("meta").
        with torch.device("cpu"):
            return orig_enc(t5_folder, *args, **kwargs)

    # The conditioner does `from transformers import T5EncoderModel, AutoTokenizer` inside its
    # constructor, so patching the attributes on the classes is what it sees.
    transformers.AutoTokenizer.from_pretrained = tok_from_pretrained
    transformers.T5EncoderModel.from_pretrained = enc_from_pretrained
    C.T5Conditioner.T5_MODEL_DIMS = {k: d_model for k in orig_dims}
    try:
        yield
    finally:
        transformers.AutoTokenizer.from_pretrained = orig_tok
        transformers.T5EncoderModel.from_pretrained = orig_enc
        C.T5Conditioner.T5_MODEL_DIMS = orig_dims


def build_reference_model(config: dict, t5_folder: str | os.PathLike, vae_fp32: bool = True):
    """Builds the reference ConditionedDiffusionModelWrapper from a model_config dict with its
    T5 loaded from `t5_folder`. With vae_fp32 (the CPU rule) the pretransform's model_half is
    switched off and the whole wrapper cast to fp32 (T5 stays fp16: it is not a submodule).

    The T5 dims table is set to the config's cond_dim, as t5-base's 768 is for the published
    configs: no `proj_out` is created, so the state_dict keeps the published layout even when
    a tiny T5 stands in for t5-base (then only for listing keys: its width would not fit)."""
    import_reference()
    from stable_audio_tools.models.factory import create_model_from_config

    cond_dim = config["model"]["conditioning"]["cond_dim"]
    d_model = json.loads((Path(t5_folder) / "config.json").read_text())["d_model"]
    if d_model != cond_dim:
        print(
            f"note: T5 d_model {d_model} != cond_dim {cond_dim}: model usable for its state_dict layout only",
            file=sys.stderr,
        )
    with local_t5(t5_folder, dim=cond_dim):
        model = create_model_from_config(config)
    if vae_fp32 and getattr(model, "pretransform", None) is not None:
        model.pretransform.model_half = False
        model.float()
    model.eval().requires_grad_(False)
    return model


def t5_conditioner(model):
    """The reference's T5Conditioner inside `model` (the 'prompt' conditioner)."""
    from stable_audio_tools.models.conditioners import T5Conditioner

    for c in model.conditioner.conditioners.values():
        if isinstance(c, T5Conditioner):
            return c
    raise LookupError("no T5 conditioner")
