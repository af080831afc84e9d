"""`sao-live cache` (ls, info, verify, clear) on a real cache folder, run as the user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sao_live.daemon.store import ClipStore

from .test_store import assert_moved_aside, put, user_files


@pytest.fixture
def store(tmp_path):
    s = ClipStore(tmp_path / "cache").open()
    yield s
    s.close()


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


def test_verify_fix_moves_the_users_files_and_deletes_only_the_caches_leftovers(tmp_path, store):
    clip = put(store, "ab" + "6" * 30)
    files = user_files(store.root / "clips")
    orphan = store.root / "clips" / "cd" / ("cd" + "6" * 30 + ".wav")
    partial = store.root / "clips" / "cd" / (".cd" + "6" * 30 + ".wav.abcd1234.part")
    orphan.parent.mkdir()
    orphan.write_bytes(b"RIFF unindexed")
    partial.write_bytes(b"RIFF half")
    store.close()
    check = _cache(tmp_path, "verify")
    assert check.returncode == 1 and "my-song" not in check.stdout  # the folder album is moved whole
    assert f"{store.root / 'clips' / 'album'}: not made by the cache (--fix: moved to" in check.stdout
    assert all(p.exists() for p in [*files, orphan, partial])  # without --fix nothing moves
    fixed = _cache(tmp_path, "verify", "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert f"{store.root / 'clips' / 'notes.txt'}: not made by the cache: moved to" in fixed.stdout
    assert f"{orphan}: clip file not in the index: deleted" in fixed.stdout
    assert_moved_aside(store.root, files)
    assert not orphan.exists() and not partial.exists() and clip.path.exists()
    assert "0 problems, 1 clips" in _cache(tmp_path, "verify").stdout
    # the same name again: moved beside the first, never over it
    (store.root / "clips" / "notes.txt").write_bytes(b"new notes")
    assert _cache(tmp_path, "verify", "--fix").returncode == 0
    assert (store.root / "stray" / "clips" / "notes.txt").read_bytes() == b"my notes"
    assert (store.root / "stray" / "clips" / "notes_2.txt").read_bytes() == b"new notes"
    assert "moved aside (not made by the cache)" in _cache(tmp_path, "info").stdout


@pytest.mark.parametrize("action", ["verify", "ls", "clear"])
def test_a_folder_of_the_users_own_is_refused(tmp_path, action):
    music = tmp_path / "music"
    files = user_files(music / "clips")
    (music / "song.flac").write_bytes(b"fLaC")
    before = sorted(p.relative_to(music) for p in music.rglob("*"))
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    cmd = [sys.executable, "-m", "sao_live.cli", "cache", action, "--fix", "--cache-dir", str(music)]
    result = subprocess.run(cmd if action == "verify" else cmd[:5] + cmd[6:], capture_output=True, text=True, env=env)
    assert result.returncode == 2, result
    assert f"the cache folder {music} is not a sao-live cache" in result.stderr
    assert "pass a new or empty folder as --cache-dir" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.relative_to(music) for p in music.rglob("*")) == before  # nothing written, nothing moved
    assert all(path.read_bytes() == content for path, content in files.items())


def test_clear_removes_indexed_clips_only(tmp_path, store):
    clip = put(store, "ab" + "8" * 30)
    files = user_files(store.root / "clips")
    orphan = store.root / "clips" / "ab" / ("ab" + "9" * 30 + ".wav")
    orphan.write_bytes(b"RIFF unindexed")
    store.close()
    clear = _cache(tmp_path, "clear")
    assert clear.returncode == 0 and "removed 1 clips" in clear.stdout
    assert not clip.path.exists() and orphan.exists()
    assert all(path.read_bytes() == content for path, content in files.items())
