"""Loading official-layout files through the real loaders, and every way that can fail."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

from sao_live import StableAudioPipeline
from sao_live.engine.loading import read_state_dict, resolve_model_files
from sao_live.errors import CheckpointError, ModelAccessError


def _copy_model(src, dst, state=None, config=None):
    dst.mkdir()
    shutil.copy(src / "model_config.json", dst / "model_config.json")
    if config is not None:
        (dst / "model_config.json").write_text(json.dumps(config))
    if state is None:
        shutil.copy(src / "model.safetensors", dst / "model.safetensors")
    else:
        save_file(state, str(dst / "model.safetensors"))
    return dst


def _audio(pipe):
    return pipe.generate("kick drum", seconds=0.5, seed=5, steps=3).audio


def test_safetensors_and_ckpt_give_the_same_audio(tiny_checkpoint, tiny_t5, tmp_path):
    from_st = StableAudioPipeline.from_pretrained(tiny_checkpoint, tiny_t5, device="cpu")
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    shutil.copy(tiny_checkpoint / "model_config.json", ckpt_dir)
    shutil.copy(tiny_checkpoint / "state.ckpt", ckpt_dir / "model.ckpt")
    from_ckpt = StableAudioPipeline.from_pretrained(ckpt_dir, tiny_t5, device="cpu")
    a, b = _audio(from_st), _audio(from_ckpt)
    assert a.shape == (2, 22050) and a.std() > 0
    assert torch.equal(torch.from_numpy(a), torch.from_numpy(b))


def test_loaded_weights_are_the_files_weights(tiny_checkpoint, tiny_t5):
    pipe = StableAudioPipeline.from_pretrained(tiny_checkpoint, tiny_t5, device="cpu", numerics="reference")
    stored = load_file(str(tiny_checkpoint / "model.safetensors"))
    ours = pipe.model.state_dict()
    key = "model.model.transformer.layers.1.cross_attn.to_kv.weight"
    assert torch.equal(ours[key], stored[key])
    # weight norm is folded at load: W = g * v / ||v|| per output channel
    g = stored["pretransform.model.decoder.layers.0.weight_g"]
    v = stored["pretransform.model.decoder.layers.0.weight_v"]
    folded = ours["pretransform.model.decoder.layers.0.weight"]
    torch.testing.assert_close(folded, g * v / v.norm(dim=(1, 2), keepdim=True))


def test_fp16_stored_tensors_load(tiny_checkpoint, tiny_t5, tmp_path):
    state = {
        k: v.half() if v.is_floating_point() else v
        for k, v in load_file(str(tiny_checkpoint / "model.safetensors")).items()
    }
    folder = _copy_model(tiny_checkpoint, tmp_path / "half", state=state)
    pipe = StableAudioPipeline.from_pretrained(folder, tiny_t5, device="cpu")
    assert next(pipe.model.parameters()).dtype == torch.float32
    assert _audio(pipe).std() > 0


def test_derived_buffers_may_be_absent(tiny_checkpoint, tiny_t5, tmp_path):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    kept = {k: v for k, v in state.items() if not k.endswith((".inv_freq", "_norm.beta"))}
    assert len(kept) < len(state)
    folder = _copy_model(tiny_checkpoint, tmp_path / "nobuf", state=kept)
    a = _audio(StableAudioPipeline.from_pretrained(folder, tiny_t5, device="cpu"))
    b = _audio(StableAudioPipeline.from_pretrained(tiny_checkpoint, tiny_t5, device="cpu"))
    assert (a == b).all()


@pytest.mark.parametrize(
    "change, expected",
    [
        ("drop", "1 missing: model.model.transformer.layers.0.ff.ff.2.weight"),
        ("extra", "1 unexpected: model.model.extra.weight"),
        ("reshape", "1 mis-shaped: model.model.transformer.layers.0.ff.ff.2.weight (file (3, 3)"),
    ],
)
def test_key_mismatch_names_the_tensor(tiny_checkpoint, tiny_t5, tmp_path, change, expected):
    state = load_file(str(tiny_checkpoint / "model.safetensors"))
    key = "model.model.transformer.layers.0.ff.ff.2.weight"
    if change == "drop":
        del state[key]
    elif change == "extra":
        state["model.model.extra.weight"] = torch.zeros(2)
    else:
        state[key] = torch.zeros(3, 3)
    folder = _copy_model(tiny_checkpoint, tmp_path / change, state=state)
    with pytest.raises(CheckpointError, match="does not match its model_config.json") as info:
        StableAudioPipeline.from_pretrained(folder, tiny_t5, device="cpu")
    assert expected in str(info.value)


def test_wrong_config_for_the_weights(tiny_checkpoint, tiny_t5, tmp_path):
    config = json.loads((tiny_checkpoint / "model_config.json").read_text())
    config["model"]["diffusion"]["config"]["depth"] = 3
    folder = _copy_model(tiny_checkpoint, tmp_path / "deeper", config=config)
    with pytest.raises(CheckpointError, match="diffusion depth is 3, but the file holds 2 transformer layers"):
        StableAudioPipeline.from_pretrained(folder, tiny_t5, device="cpu")


def test_truncated_file_says_download_again(tiny_checkpoint, tmp_path):
    folder = _copy_model(tiny_checkpoint, tmp_path / "cut")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or damaged: download it again"):
        read_state_dict(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    for cut in (5000, -200):  # without the zip directory; without the last tensor bytes
        ckpt = (tiny_checkpoint / "state.ckpt").read_bytes()
        (folder / "model.ckpt").write_bytes(ckpt[:cut])
        with pytest.raises(CheckpointError, match="truncated or damaged") as info:
            read_state_dict(folder / "model.ckpt")
        assert "code" not in str(info.value)


class RunsCode:
    """Pickles as a call of os.getpid: harmless, but code that an unsafe load would run."""

    def __reduce__(self):
        return (os.getpid, ())


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_ckpt_with_code_is_refused_and_says_so(tmp_path, layout):
    """weights_only=True: a pickle that would run code is refused, not run, and the message says
    why (not "truncated"), pointing at the .safetensors file."""
    path = tmp_path / "model.ckpt"
    torch.save(
        {"state_dict": {"x": torch.zeros(1)}, "extra": RunsCode()},
        path,
        _use_new_zipfile_serialization=layout == "zip",
    )
    assert torch.load(path, weights_only=False)["extra"] == os.getpid()  # what an unsafe load would do
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert f"refused to load {path}: besides tensors it holds code that would run when the file is loaded" in message
    assert f"(it uses {os.getpid.__module__}.getpid)" in message and "model.safetensors" in message
    assert "truncated" not in message


def test_missing_files_say_what_is_needed(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="has no model_config.json"):
        resolve_model_files(tmp_path)
    shutil.copy(tiny_checkpoint / "model_config.json", tmp_path)
    with pytest.raises(CheckpointError, match="no model.safetensors or model.ckpt"):
        resolve_model_files(tmp_path)
    with pytest.raises(CheckpointError, match="not a hub repo id"):
        resolve_model_files(tmp_path / "nope")


def test_hub_offline_says_what_to_do():
    with pytest.raises(ModelAccessError, match="HF_HUB_OFFLINE is set, and it is not in the local cache"):
        resolve_model_files("stabilityai/stable-audio-open-small")


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """Answers like the hub does for a gated repo (401/403 + X-Error-Code)."""

    status = 401
    code = "GatedRepo"

    def _answer(self):
        self.send_response(self.status)
        self.send_header("X-Error-Code", self.code)
        self.send_header("X-Error-Message", "Access to model is restricted. You must be authenticated.")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = _answer

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "status, code, expected",
    [
        (401, "GatedRepo", "is gated: accept its licence"),
        (403, "GatedRepo", "is gated: accept its licence"),
        (401, "RepoNotFound", "not found or your token cannot see it"),
    ],
)
def test_hub_access_errors_through_a_real_http_server(status, code, expected, tmp_path):
    handler = type("Hub", (_FakeHub,), {"status": status, "code": code})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}", HF_HUB_OFFLINE="0")
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache: the request must reach the server
    code_ = (
        "from sao_live.engine.loading import resolve_model_files\n"
        "resolve_model_files('stabilityai/stable-audio-open-small')"
    )
    try:
        proc = subprocess.run([sys.executable, "-c", code_], env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert proc.returncode != 0
    assert "ModelAccessError" in proc.stderr and expected in proc.stderr, proc.stderr[-2000:]
