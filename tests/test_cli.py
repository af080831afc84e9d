"""`sao-live generate` and `sao-live bench` as a user runs them: a real process, real files."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from sao_live.engine.pipeline import DECODE_MARGIN_FRAMES


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
        (["--seconds", "50"], "seconds must be in (0, 11.89] for tiny-random, got 50"),
        (["--seconds", "-1"], "seconds must be in (0, 11.89] for tiny-random, got -1"),
        (["--seed", "99999999999"], "seed must be in [0, 2147483647] or -1 (random), got 99999999999"),
        (["--seed", "-5"], "seed must be in [0, 2147483647] or -1 (random), got -5"),
        (["--sampler", "nope"], "sampler must be one of"),
        (["--format", "flac", "--bit-depth", "32f"], "format/bit depth must be one of"),
        (["--init-audio", "/nonexistent.wav"], "--init-audio /nonexistent.wav: no such file"),
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
    # The fast path decodes what 1 s needs plus the decoder's margin, not the 11.9 s window.
    needed = math.ceil(44100 / 2048) + DECODE_MARGIN_FRAMES
    assert (report["seconds"], report["window_frames"], report["decode_frames"]) == (1.0, 524288 // 2048, needed)
    assert report["peak_rss_mb"] > 100  # torch and a model are loaded: a figure in MB, not bytes or GB
    # What it is doing goes to stderr as it happens: loading, then each stage's warm-up and runs.
    said = [line for line in proc.stderr.splitlines() if line.startswith("bench: ")]
    assert said[0].startswith("bench: loading tiny-random (random weights") and said[-1] == "bench: done", said
    for stage in report["stages"]:
        assert f"bench: timing {stage}: a warm-up run, then 1 timed" in said, said
        assert any(line.startswith(f"bench:   {stage} run 1/1: ") for line in said), said


def test_bench_help_names_the_model_it_uses():
    proc = sao("bench", "--help")
    assert proc.returncode == 0
    help_text = " ".join(proc.stdout.split())
    assert "(default: random-small: Small's size, random weights)" in help_text
    assert "./model" not in help_text


def test_tiny_random_makes_smalls_window_at_a_quiet_level(tmp_path):
    """The toy model takes what the real Small takes (up to 11.9 s) and sounds at about -30 dBFS."""
    out = tmp_path / "long.wav"
    proc = sao("generate", "warm arpeggios on house beats 120BPM", "--model", "tiny-random", "--seconds", "11.8",
               "--seed", "3", "--bit-depth", "32f", "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    audio, rate = sf.read(out, dtype="float32")
    assert (rate, audio.shape) == (44100, (round(11.8 * 44100), 2))
    rms_db = 10 * np.log10(np.mean(audio.astype(np.float64) ** 2))
    peak_db = 20 * np.log10(np.abs(audio).max())
    assert -36 < rms_db < -24, rms_db
    assert -30 < peak_db < -6, peak_db  # far from clipping, and not silence
