"""Absurd or inconsistent sizes in model_config.json: an error naming the key, at once, never a hang.

Real config and checkpoint files are written here and read through the real loaders and the
real `sao-live generate` and `sao-live serve` commands.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from sao_live import StableAudioPipeline
from sao_live.daemon.preflight import free_port
from sao_live.errors import CheckpointError, ModelConfigError


def _model_folder(tiny_checkpoint, folder, **changes):
    """A copy of the tiny model with `changes` ({"a.b.c": value}) made to its model_config.json."""
    folder.mkdir()
    shutil.copy(tiny_checkpoint / "model.safetensors", folder)
    config = json.loads((tiny_checkpoint / "model_config.json").read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        section = config
        for name in parents:
            section = section[name]
        section[key] = value
    (folder / "model_config.json").write_text(json.dumps(config))
    return folder


DIT = "model.diffusion.config"
ABSURD = [
    ({f"{DIT}.depth": 10**7}, "diffusion depth is 10000000; expected an integer from 1 to 256"),
    ({"sample_size": 2**40}, "sample_size is 1099511627776; expected an integer from 1 to 8,388,608"),
    ({f"{DIT}.embed_dim": 10**9}, "diffusion embed_dim is 1000000000; expected an integer from 1 to 16,384"),
    ({f"{DIT}.embed_dim": -64}, "diffusion embed_dim is -64; expected an integer from 1 to 16,384"),
    ({f"{DIT}.depth": 2.0}, "diffusion depth is 2.0; expected an integer"),
    ({f"{DIT}.embed_dim": 129}, "diffusion embed_dim 129 is not divisible by num_heads 2"),
    ({f"{DIT}.num_heads": 8}, "gives heads 16 wide; expected a multiple of 4, at least 32"),
    ({"sample_size": 131072 + 1}, "sample_size is 131073; expected a multiple of the pretransform downsampling_ratio"),
    ({f"{DIT}.io_channels": 16}, "diffusion io_channels is 16; expected the pretransform latent_dim 8"),
    (
        {"model.pretransform.config.downsampling_ratio": 1024},
        "downsampling_ratio (from the encoder) is 1024; expected 2048, the product of the encoder strides",
    ),
    ({"model.pretransform.config.encoder.config.c_mults": [1, 2]}, "has 2 c_mults and 5 strides"),
    ({"model.conditioning.cond_dim": 0}, "conditioning cond_dim is 0; expected an integer from 1 to 8,192"),
]


@pytest.mark.parametrize("changes, expected", ABSURD, ids=[str(c) for c, _ in ABSURD])
def test_the_loader_names_the_bad_size(tiny_checkpoint, tiny_t5, tmp_path, changes, expected):
    folder = _model_folder(tiny_checkpoint, tmp_path / "model", **changes)
    with pytest.raises(ModelConfigError) as info:
        StableAudioPipeline.from_pretrained(folder, tiny_t5, device="cpu")
    assert expected in str(info.value)


def _cli(tmp_path, *args, timeout=60):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_CACHE_HOME=str(tmp_path / "xdg-cache"))
    t0 = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "sao_live.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    return result, time.monotonic() - t0


@pytest.mark.parametrize("changes, expected", ABSURD[:4], ids=[str(c) for c, _ in ABSURD[:4]])
def test_generate_fails_at_once_with_the_key(tiny_checkpoint, tiny_t5, tmp_path, changes, expected):
    """depth 10^7 used to hang at 4.4 GB, sample_size 2^40 to ask 17 GB per clip, embed_dim to crash."""
    folder = _model_folder(tiny_checkpoint, tmp_path / "model", **changes)
    args = ["generate", "kick drum", "--model", str(folder), "--text-encoder", str(tiny_t5), "--device", "cpu"]
    result, took = _cli(tmp_path, *args, "--seconds", "0.5", "--steps", "2", "-o", str(tmp_path / "out.wav"))
    assert result.returncode == 2, result
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert took < 30 and not (tmp_path / "out.wav").exists()


def test_sizes_that_disagree_with_the_checkpoint_are_named_before_building(tiny_checkpoint, tiny_t5, tmp_path):
    deeper = _model_folder(tiny_checkpoint, tmp_path / "deeper", **{f"{DIT}.depth": 200})
    with pytest.raises(CheckpointError, match="diffusion depth is 200, but the file holds 2 transformer layers"):
        StableAudioPipeline.from_pretrained(deeper, tiny_t5, device="cpu")
    wider = _model_folder(tiny_checkpoint, tmp_path / "wider", **{f"{DIT}.embed_dim": 256})
    with pytest.raises(CheckpointError) as info:
        StableAudioPipeline.from_pretrained(wider, tiny_t5, device="cpu")
    assert "diffusion embed_dim is 256, but the file's model.model.transformer.project_in.weight is 128 there" in str(
        info.value
    )
    narrower = {"model.conditioning.cond_dim": 32, f"{DIT}.cond_token_dim": 32, f"{DIT}.global_cond_dim": 32}
    with pytest.raises(CheckpointError) as info:
        StableAudioPipeline.from_pretrained(_model_folder(tiny_checkpoint, tmp_path / "narrower", **narrower), tiny_t5)
    message = str(info.value)
    assert "diffusion global_cond_dim is 32, but the file's model.model.to_global_embed.0.weight is 64" in message
    assert "conditioning cond_dim is 32, but the file's conditioner.conditioners.seconds_total" in message


def _serve(tmp_path, folder, tiny_t5):
    (tmp_path / "serve.toml").write_text('audio_device = "none"\nmidi_in = "none"\n')
    args = ["serve", "--model", str(folder), "--text-encoder", str(tiny_t5), "--device", "cpu"]
    args += ["--osc-port", str(free_port()), "--reply-port", str(free_port())]
    args += ["--cache-dir", str(tmp_path / "cache"), "--config", str(tmp_path / "serve.toml")]
    return _cli(tmp_path, *args, timeout=120)


def test_serve_refuses_an_absurd_config_before_starting(tiny_checkpoint, tiny_t5, tmp_path):
    folder = _model_folder(tiny_checkpoint, tmp_path / "model", **{f"{DIT}.depth": 10**7})
    result, took = _serve(tmp_path, folder, tiny_t5)
    assert result.returncode == 2 and took < 20, result
    assert "diffusion depth is 10000000; expected an integer from 1 to 256" in result.stderr
    assert "Traceback" not in result.stderr and "settings:" not in result.stdout  # refused before it started


def test_serve_stops_when_the_worker_finds_the_checkpoint_disagrees(tiny_checkpoint, tiny_t5, tmp_path):
    """The worker's fatal report ends `serve` at once, rather than after its 900 s ready timeout."""
    folder = _model_folder(tiny_checkpoint, tmp_path / "model", **{f"{DIT}.depth": 3})
    result, took = _serve(tmp_path, folder, tiny_t5)
    assert result.returncode == 2 and took < 60, result
    assert "diffusion depth is 3, but the file holds 2 transformer layers" in result.stderr
    assert "Traceback" not in result.stderr
