"""`sao-live generate` and `sao-live bench` as a user runs them: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf


def sao(*args, cwd=None, timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "sao_live.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


@pytest.mark.parametrize(
    "fmt, depth, subtype",
    [("wav", "24", "PCM_24"), ("wav", "16", "PCM_16"), ("wav", "32f", "FLOAT"), ("flac", "24", "PCM_24")],
)
def test_generate_writes_the_requested_file(tmp_path, fmt, depth, subtype):
    out = tmp_path / f"clip.{fmt}"
    args = ["generate", "warm arpeggios on house beats 120BPM", "--seconds", "1.5", "--seed", "42"]
    proc = sao(*args, "--model", "tiny-random", "--steps", "3", "-o", str(out), "--format", fmt, "--bit-depth", depth)
    assert proc.returncode == 0, proc.stderr
    assert "seed 42" in proc.stdout and "time: load" in proc.stdout
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (44100, 2, round(1.5 * 44100), subtype)
    assert "generating" in proc.stderr  # the progress bar
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_generate_with_init_audio_and_negative(tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, [[0.1, -0.1]] * 22050, 22050)
    common = ["generate", "bass", "--seconds", "1", "--model", "tiny-random", "--cfg", "3", "--steps", "3"]
    init = ["--init-audio", str(src), "--init-noise-level", "0.4"]
    audio = {}
    for name, extra in [("both", [*init, "--negative", "noise"]), ("no init", ["--negative", "noise"]),
                        ("no negative", init)]:  # fmt: skip
        out = tmp_path / f"{name}.wav"
        proc = sao(*common, *extra, "--seed", "5", "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        audio[name], rate = sf.read(out, dtype="float32")
        assert rate == 44100 and audio[name].shape == (44100, 2) and np.isfinite(audio[name]).all()
    # Same seed: each option changes the clip, so each reached the pipeline.
    assert not np.allclose(audio["both"], audio["no init"])
    assert not np.allclose(audio["both"], audio["no negative"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seconds", "50"], "seconds must be in (0, 2.97]"),
        (["--sampler", "nope"], "sampler must be one of"),
        (["--format", "flac", "--bit-depth", "32f"], "format/bit depth must be one of"),
        (["--init-audio", "/nonexistent.wav"], "cannot read --init-audio"),
        (["-o", "/nonexistent-dir/x.wav"], "the output folder /nonexistent-dir does not exist"),
        (["--model", "/no/such/folder"], "not a hub repo id"),
    ],
)
def test_generate_errors_exit_2_with_a_message(tmp_path, args, message):
    proc = sao("generate", "kick", "--model", "tiny-random", "--steps", "2", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_prints_stage_figures_as_json():
    proc = sao("bench", "--model", "tiny-random", "--repeat", "1", "--seconds", "1")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["stages"]) == {"text", "dit", "dit_cfg", "decode", "end_to_end"}
    for stage in report["stages"].values():  # --repeat 1: one timed run after one warm-up
        assert len(stage["runs_s"]) == 1 and stage["median_s"] == round(stage["runs_s"][0], 4) > 0
        assert stage["warmup_s"] > 0
    # The fast path decodes what 1 s needs plus the decoder's margin (17 frames), not the 2.97 s window.
    assert (report["seconds"], report["window_frames"], report["decode_frames"]) == (1.0, 64, 44100 // 2048 + 17)
    assert report["peak_rss_mb"] > 100  # torch and a model are loaded: a figure in MB, not bytes or GB
