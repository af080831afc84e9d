"""Export: DAW names, safe slugs, never overwrite, formats, JSON comment, ACID tempo (parsed by hand)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from sao_live.audio import write_audio
from sao_live.daemon.export import export_clip, export_name, remove_partials, slugify
from sao_live.request import Request

from .daemon_helpers import riff_chunks

RATE = 44100


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "clip.wav"
    t = np.arange(int(1.875 * RATE)) / RATE
    audio = np.stack([np.sin(2 * np.pi * 220 * t), 1.5 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    write_audio(path, audio, RATE, "wav", "32f")  # the right channel goes past full scale
    return path


@pytest.mark.parametrize(
    ("prompt", "slug"),
    [
        ("Warm arpeggios on house beats 120BPM", "warm-arpeggios-on-house-beats-120bpm"),
        ("../../etc/passwd", "etc-passwd"),
        ("C:\\Windows\\system32", "c-windows-system32"),
        ("CON", "con-clip"),
        ("nul", "nul-clip"),
        ("Lpt1", "lpt1-clip"),
        ("Café crème brûlée", "cafe-creme-brulee"),
        ("!!! ///", "clip"),
        ("日本語", "clip"),
        ("a" * 300, "a" * 48),
        ("word " * 30, "-".join(["word"] * 9)),
    ],
)
def test_slug_is_safe(prompt, slug):
    assert slugify(prompt) == slug
    assert len(slug) <= 48


def test_names_for_one_shots_and_loops():
    assert export_name(Request("Kick drum", 0.75, 42), "wav") == "kick-drum_0.75s_s42.wav"
    assert export_name(Request("Kick", 2.0, 7), "flac") == "kick_2s_s7.flac"
    loop = Request("Deep techno", 1.0, 9, bars=1, bpm=128)
    assert export_name(loop, "wav") == "deep-techno_128bpm_1bar_s9.wav"  # singular for one bar only
    assert export_name(replace(loop, bars=2.0), "wav") == "deep-techno_128bpm_2bars_s9.wav"
    assert export_name(replace(loop, bars=0.5), "wav") == "deep-techno_128bpm_0.5bars_s9.wav"


def test_default_export_is_24_bit_wav_with_the_request_as_json(tmp_path, source):
    req = Request("Kick drum", 1.875, 42, steps=8, cfg=1.0, sampler="pingpong")
    out = export_clip(source, tmp_path / "daw", req, meta={"model": "tiny-random"})
    assert out.name == "kick-drum_1.875s_s42.wav"
    info = sf.info(out)
    assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == ("WAV", "PCM_24", RATE, 2, 82687)
    comment = json.loads(sf.SoundFile(out).comment)
    assert comment["sao_live"]["prompt"] == "Kick drum" and comment["sao_live"]["seed"] == 42
    assert comment["model"] == "tiny-random"
    data, _ = sf.read(out, dtype="float32")
    assert data[:, 1].max() <= 1.0 and data[:, 1].max() > 0.99  # clipped to full scale for integer PCM
    assert b"acid" not in riff_chunks(out)  # one-shots carry no tempo
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # like any file the user saves


@pytest.mark.parametrize(("fmt", "container", "subtype"), [("wav16", "WAV", "PCM_16"), ("wav32f", "WAV", "FLOAT"),
                                                           ("flac", "FLAC", "PCM_24")])  # fmt: skip
def test_formats_on_request(tmp_path, source, fmt, container, subtype):
    out = export_clip(source, tmp_path, Request("pad", 1.875, 1), fmt)
    info = sf.info(out)
    assert (info.format, info.subtype, info.frames) == (container, subtype, 82687)
    assert json.loads(sf.SoundFile(out).comment)["sao_live"]["prompt"] == "pad"
    if fmt == "wav32f":
        assert sf.read(out, dtype="float32")[0][:, 1].max() > 1.4  # float keeps values past full scale


def test_loop_has_an_acid_chunk_with_its_tempo(tmp_path, source):
    loop = Request("Deep techno", 0, 9, bars=1, bpm=128)
    out = export_clip(source, tmp_path, loop)
    acid = riff_chunks(out)[b"acid"]
    flags, root, _, _, beats, denominator, numerator, tempo = struct.unpack("<IHHfIHHf", acid)
    assert (beats, numerator, denominator, tempo) == (4, 4, 4, 128.0)
    assert not flags & 0x01, "a loop is not a one-shot"
    assert sf.info(out).frames == 82687  # libsndfile still reads it
    soxi = subprocess.run(["soxi", "-D", str(out)], capture_output=True, text=True)  # and so does sox
    assert soxi.returncode == 0 and abs(float(soxi.stdout) - 1.875) < 1e-3


def test_existing_files_are_never_overwritten(tmp_path, source):
    req = Request("Kick", 1.875, 3)
    held = tmp_path / "kick_1.875s_s3.wav"
    held.write_bytes(b"the DAW holds this")
    first = export_clip(source, tmp_path, req)
    second = export_clip(source, tmp_path, req)
    assert (first.name, second.name) == ("kick_1.875s_s3_2.wav", "kick_1.875s_s3_3.wav")
    assert held.read_bytes() == b"the DAW holds this"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.wav", "kick_1.875s_s3.wav",
                                                          "kick_1.875s_s3_2.wav", "kick_1.875s_s3_3.wav"]  # fmt: skip


def test_failed_export_leaves_nothing_and_partials_are_cleaned(tmp_path):
    bad_source = tmp_path / "not-audio.wav"
    bad_source.write_bytes(b"nope")
    folder = tmp_path / "daw"
    with pytest.raises(sf.LibsndfileError):
        export_clip(bad_source, folder, Request("kick", 1.0, 1))
    assert not folder.exists() or list(folder.iterdir()) == []
    folder.mkdir(exist_ok=True)
    (folder / ".sao-live-abc.part").write_bytes(b"half")
    assert remove_partials(folder) == 1 and list(folder.iterdir()) == []
