"""The cache folder through a real `sao-live serve`: what it deletes, what it moves aside, file modes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sao_live.audio import write_audio
from sao_live.daemon.export import export_clip
from sao_live.daemon.preflight import free_port
from sao_live.daemon.store import CLIP_MODE, ClipStore
from sao_live.request import Request
from sao_live.testing.daemon import DaemonProcess

from .test_store import assert_moved_aside, put, user_files

QUIET = dict(audio_device="none", midi_in="none")  # export only: no sound card or MIDI needed


def test_start_moves_the_users_files_aside_and_removes_its_own_leftovers(tmp_path, tiny_t5):
    daemon = DaemonProcess(tmp_path, tiny_t5, config=QUIET, export=False)
    store = ClipStore(daemon.cache_dir).open()
    clip = put(store, "ab" + "1" * 30)
    store.close()
    files = user_files(daemon.cache_dir / "clips")
    orphan = daemon.cache_dir / "clips" / "cd" / ("cd" + "1" * 30 + ".wav")
    partial = orphan.parent / f".{orphan.name}.q7x_2k9a.part"
    orphan.parent.mkdir()
    orphan.write_bytes(b"RIFF unindexed")
    partial.write_bytes(b"RIFF half")
    daemon.start()
    try:
        assert_moved_aside(daemon.cache_dir, files)
        assert not orphan.exists() and not partial.exists() and clip.path.exists()
        assert f"{daemon.cache_dir / 'clips' / 'album'} was not made by sao-live: moved to" in daemon.log()
        assert "removed 1 unfinished and 1 unindexed files" in daemon.log()
    finally:
        assert daemon.stop() == 0


def test_serve_refuses_a_folder_of_the_users_own_at_once(tmp_path):
    music = tmp_path / "music"
    files = user_files(music / "clips")
    cmd = [sys.executable, "-m", "sao_live.cli", "serve", "--model", "tiny-random", "--device", "cpu"]
    cmd += ["--osc-port", str(free_port()), "--reply-port", str(free_port()), "--cache-dir", str(music)]
    (tmp_path / "serve.toml").write_text('audio_device = "none"\nmidi_in = "none"\n')
    cmd += ["--config", str(tmp_path / "serve.toml")]
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_CACHE_HOME=str(tmp_path / "xdg-cache"))
    t0 = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and time.monotonic() - t0 < 20, result
    assert f"the cache folder {music} is not a sao-live cache" in result.stderr and "Traceback" not in result.stderr
    assert all(path.read_bytes() == content for path, content in files.items())
    assert sorted(p.name for p in music.iterdir()) == ["clips"]  # no index, no tag


def test_cached_clips_are_private_and_exports_follow_the_umask(tmp_path, tiny_t5):
    umask = os.umask(0o027)  # the daemon inherits it; 0o027 tells "follows the umask" from a fixed 0644
    try:
        daemon = DaemonProcess(tmp_path, tiny_t5, config=QUIET).start()
    finally:
        os.umask(umask)
    try:
        client = daemon.client()
        kind, args = client.request("/sao/gen", "m", "kick drum", 0.5, "seed", 3, "steps", 2)
        assert kind == "/sao/done", args
        exported = Path(args[1])
        (cached,) = (daemon.cache_dir / "clips").rglob("*.wav")
        assert stat.S_IMODE(cached.stat().st_mode) == 0o600
        assert exported.parent == daemon.export_dir and stat.S_IMODE(exported.stat().st_mode) == 0o640
        client.close()
    finally:
        assert daemon.stop() == 0


def test_saved_files_follow_the_umask_and_cache_files_are_private(tmp_path):
    """write_audio (generate's output) and export_clip follow the umask; the cache's mode is exact."""
    audio = np.zeros((2, 4410), dtype=np.float32)
    umask = os.umask(0o027)
    try:
        saved = write_audio(tmp_path / "saved.wav", audio, 44100)
        cached = write_audio(tmp_path / "cached.wav", audio, 44100, "wav", "32f", mode=CLIP_MODE)
        exported = export_clip(saved, tmp_path / "daw", Request("kick", 0.1, 1))
    finally:
        os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (saved, cached, exported)}
    assert modes == {"saved.wav": 0o640, "cached.wav": 0o600, exported.name: 0o640}
