"""Shared fixtures: tiny random models written to real files and read by the real loaders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the hub is out of reach here; never try it by accident
os.environ.setdefault("JACK_NO_START_SERVER", "1")  # libjack must never start a server of its own in tests

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> Path:
    """A tiny random T5 encoder + tokenizer folder (save_pretrained layout)."""
    from sao_live.engine.tiny import build_tiny_text_encoder

    return build_tiny_text_encoder(tmp_path_factory.mktemp("t5"))


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_t5):
    """A tiny SAO-Small-shaped pipeline with random weights, fast numerics, on CPU."""
    from sao_live import StableAudioPipeline
    from sao_live.engine.config import ModelConfig
    from sao_live.engine.tiny import tiny_config_path

    return StableAudioPipeline.from_config(ModelConfig.from_file(tiny_config_path("small")), tiny_t5, device="cpu")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_pipeline) -> Path:
    """A model folder as published: model_config.json + model.safetensors with weight_g/weight_v."""
    import json

    import torch
    from safetensors.torch import save_file

    from sao_live.engine.model import StableAudioModel
    from sao_live.engine.tiny import randomize_

    folder = tmp_path_factory.mktemp("model")
    cfg = tiny_pipeline.cfg
    model = StableAudioModel(cfg)
    randomize_(model, seed=7)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    (folder / "model_config.json").write_text(json.dumps(cfg.raw))
    torch.save({"state_dict": state}, folder / "state.ckpt")
    return folder


@pytest.fixture(scope="session")
def jack_server():
    """One private JACK server (dummy backend) for the whole session: libjack serves one server per
    process, so the live and web suites share it, each daemon with its own PortAudio client."""
    from sao_live.testing.jack import JackServer

    from .needs import need

    need("the live suite (apt-get install jackd2)", tools=["jackd"])
    server = JackServer(f"saotest{os.getpid()}")
    yield server
    server.stop()
