"""Clip store: index survives a reopen, damaged files are caught, LRU eviction, `sao-live cache`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from sao_live.audio import write_audio
from sao_live.daemon.store import ClipStore, file_sha256

RATE = 44100


def put(store: ClipStore, key: str, seconds: float = 0.5, seed: int = 1):
    """Writes a clip file the way the worker does, then indexes it."""
    path = store.clip_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = np.full((2, int(seconds * RATE)), 0.25, dtype=np.float32)
    write_audio(path, audio, RATE, "wav", "32f")
    info = dict(bytes=path.stat().st_size, sha256=file_sha256(path), seconds=seconds, seed=seed, sample_rate=RATE)
    return store.add(key, "fam-" + key[:2], info, {"prompt": f"clip {key}", "seed": seed})


@pytest.fixture
def store(tmp_path):
    s = ClipStore(tmp_path / "cache").open()
    yield s
    s.close()


def test_reopen_finds_every_clip(tmp_path, store):
    keys = [f"{i:02d}" + "a" * 30 for i in range(3)]
    for k in keys:
        put(store, k)
    store.close()
    again = ClipStore(tmp_path / "cache").open()
    assert sorted(c.key for c in again.clips()) == sorted(keys)
    assert again.get(keys[0]).request == {"prompt": f"clip {keys[0]}", "seed": 1}
    again.close()


def test_truncated_or_missing_file_is_dropped(store):
    a, b = put(store, "aa" + "0" * 30), put(store, "bb" + "0" * 30)
    with open(a.path, "r+b") as f:
        f.truncate(100)
    b.path.unlink()
    assert store.get(a.key) is None and store.get(b.key) is None
    assert store.stats() == (0, 0) and not a.path.exists()


def test_verify_finds_changed_bytes_and_strays(store):
    good, bad = put(store, "aa" + "1" * 30), put(store, "bb" + "1" * 30)
    data = bytearray(bad.path.read_bytes())
    data[-8] ^= 0xFF  # same size, different content: only the hash sees it
    bad.path.write_bytes(bytes(data))
    stray = store.root / "clips" / "cc" / "cc-stray.wav"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"RIFF")
    problems = dict(store.verify())
    assert problems == {bad.key: "content changed (sha256 mismatch)", str(stray): "file not in the index"}
    store.verify(fix=True)
    assert [c.key for c in store.clips()] == [good.key] and not stray.exists()
    assert store.verify() == []


def test_lru_eviction_keeps_recently_used(tmp_path):
    store = ClipStore(tmp_path / "lru").open()
    first = put(store, "aa" + "2" * 30)
    store.max_bytes = int(first.bytes * 2.5)  # room for two clips
    second = put(store, "bb" + "2" * 30)
    time.sleep(0.01)  # distinct last-used times (the clock, not synchronisation)
    store.touch(first.key)  # first is now more recent than second
    third = put(store, "cc" + "2" * 30)
    assert {c.key for c in store.clips()} == {first.key, third.key}
    assert not second.path.exists()
    store.close()


def test_recover_removes_partials_and_unindexed_files(store):
    kept = put(store, "aa" + "3" * 30)
    partial = kept.path.parent / f".{kept.path.name}.x1.part"
    orphan = kept.path.parent / ("aa" + "4" * 30 + ".wav")
    partial.write_bytes(b"half")
    orphan.write_bytes(b"whole but unknown")
    assert store.recover() == (1, 1)
    assert kept.path.exists() and not partial.exists() and not orphan.exists()


def test_journal_round_trip(store):
    store.journal_put("k1", {"prompt": "a"}, [{"host": "127.0.0.1", "port": 1, "id": 3}])
    assert store.journal() == [("k1", {"prompt": "a"}, [{"host": "127.0.0.1", "port": 1, "id": 3}])]
    store.journal_drop("k1")
    assert store.journal() == []


def _cache(tmp_path, *args):
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    cmd = [sys.executable, "-m", "sao_live.cli", "cache", *args, "--cache-dir", str(tmp_path / "cache")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_cache_command(tmp_path, store):
    clip = put(store, "ab" + "5" * 30, seconds=0.25, seed=77)
    store.close()
    ls = _cache(tmp_path, "ls")
    assert ls.returncode == 0 and clip.key[:12] in ls.stdout and "seed 77" in ls.stdout and "'clip ab" in ls.stdout
    info = _cache(tmp_path, "info")
    assert "clips: 1" in info.stdout and "interrupted jobs: 0" in info.stdout
    assert _cache(tmp_path, "verify").returncode == 0
    clip.path.write_bytes(b"RIFF" + bytes(clip.bytes - 4))  # same size, wrong content
    verify = _cache(tmp_path, "verify")
    assert verify.returncode == 1 and "sha256 mismatch" in verify.stdout
    assert _cache(tmp_path, "verify", "--fix").returncode == 0
    clear = _cache(tmp_path, "clear")
    assert "removed 0 clips" in clear.stdout  # --fix already dropped the bad one
    assert "clips: 0" in _cache(tmp_path, "info").stdout
