"""Clip store: index survives a reopen, damaged files are caught, LRU eviction, the cache folder's tag and leftovers
(`sao-live cache` is tested in test_cache_command.py)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sao_live.audio import write_audio
from sao_live.daemon.store import CLIP_MODE, CacheFolderError, ClipStore, check_cache_folder, file_sha256

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
    orphan = store.root / "clips" / "cc" / ("cc" + "1" * 30 + ".wav")
    stray = store.root / "clips" / "cc" / "cc-stray.wav"
    stray.parent.mkdir(parents=True)
    orphan.write_bytes(b"RIFF")
    stray.write_bytes(b"RIFF")
    problems = dict(store.verify())
    assert problems == {
        bad.key: "content changed (sha256 mismatch)",
        str(orphan): "clip file not in the index (--fix: deleted)",
        str(stray): f"not made by the cache (--fix: moved to {store.root / 'stray'})",
    }
    store.verify(fix=True)
    assert [c.key for c in store.clips()] == [good.key] and not orphan.exists() and not stray.exists()
    assert (store.root / "stray" / "clips" / "cc" / "cc-stray.wav").read_bytes() == b"RIFF"
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
    assert store.recover() == (1, 1, 0)
    assert kept.path.exists() and not partial.exists() and not orphan.exists()


def test_journal_round_trip(store):
    store.journal_put("k1", {"prompt": "a"}, [{"host": "127.0.0.1", "port": 1, "id": 3}])
    assert store.journal() == [("k1", {"prompt": "a"}, [{"host": "127.0.0.1", "port": 1, "id": 3}])]
    store.journal_drop("k1")
    assert store.journal() == []


def test_latest_of_a_family_is_the_most_recently_used_whole_clip(store):
    a, b = put(store, "aa" + "6" * 30), put(store, "aa" + "7" * 30)  # both of family "fam-aa"
    assert store.latest("fam-aa").key == b.key and store.latest("fam-bb") is None
    time.sleep(0.01)  # distinct last-used times (the clock, not synchronisation)
    store.touch(a.key)
    assert store.latest("fam-aa").key == a.key and store.clips()[0].key == a.key
    a.path.unlink()  # the newest is gone: the next one stands in
    assert store.latest("fam-aa").key == b.key and store.get(a.key) is None


def test_adding_a_clip_keeps_its_journal_entry_for_the_delivery(store):
    store.journal_put_many([("aa" + "8" * 30, {"prompt": "a"}, []), ("bb" + "8" * 30, {"prompt": "b"}, [])])
    put(store, "aa" + "8" * 30)  # made, but not yet exported nor answered: a crash now must not lose it
    assert [k for k, _, _ in store.journal()] == ["aa" + "8" * 30, "bb" + "8" * 30]
    store.journal_drop("aa" + "8" * 30)
    assert [k for k, _, _ in store.journal()] == ["bb" + "8" * 30]


def test_exports_are_remembered_per_folder_while_the_file_is_there(store, tmp_path):
    clip = put(store, "aa" + "9" * 30)
    folder = tmp_path / "exports"
    folder.mkdir()
    out = folder / "kick.wav"
    out.write_bytes(b"RIFF")
    store.add_export(clip.key, "wav", out)
    assert store.exported(clip.key, "wav", folder) == out
    assert store.exported(clip.key, "flac", folder) is None and store.exported(clip.key, "wav", tmp_path) is None
    out.unlink()
    assert store.exported(clip.key, "wav", folder) is None
    out.write_bytes(b"RIFF")
    store.remove(clip.key)  # a removed clip forgets its exports
    assert store.exported(clip.key, "wav", folder) is None


def test_last_use_is_written_on_close(tmp_path):
    store = ClipStore(tmp_path / "c").open()
    first, second = put(store, "aa" + "a" * 30), put(store, "bb" + "a" * 30)
    time.sleep(0.01)
    store.touch(first.key)
    store.close()
    with pytest.raises(RuntimeError, match="not open"):
        store.stats()
    store.close()  # twice is fine
    again = ClipStore(tmp_path / "c").open()
    assert [c.key for c in again.clips()] == [first.key, second.key]  # most recently used first
    again.close()


def test_clear_and_stats(store):
    clips = [put(store, f"{i:02d}" + "b" * 30) for i in range(3)]
    assert store.stats() == (3, sum(c.bytes for c in clips))
    assert store.clear() == 3 and store.stats() == (0, 0) and not any(c.path.exists() for c in clips)


def test_verify_reports_missing_and_resized_files(store):
    gone, short = put(store, "aa" + "c" * 30), put(store, "bb" + "c" * 30)
    gone.path.unlink()
    with open(short.path, "r+b") as f:
        f.truncate(100)
    assert dict(store.verify()) == {gone.key: "file missing", short.key: f"size 100 instead of {short.bytes}"}
    assert len(store.clips()) == 2  # without fix nothing changes
    store.verify(fix=True)
    assert store.clips() == [] and store.verify() == []


def test_eviction_stops_at_the_limit_and_spares_pinned_and_protected(tmp_path):
    store = ClipStore(tmp_path / "e").open()
    clips = [put(store, f"{i:02d}" + "d" * 30) for i in range(3)]
    size = clips[0].bytes
    store.max_bytes = 3 * size  # exactly full: nothing goes
    assert store.evict() == []
    store.max_bytes = 2 * size
    assert store.evict(protect={clips[0].key}) == [clips[1].key]  # the oldest but protected one stays
    store.db.execute("UPDATE clips SET pinned = 1 WHERE key = ?", (clips[0].key,))
    store.max_bytes = size
    assert store.evict() == [clips[2].key] and [c.key for c in store.clips()] == [clips[0].key]
    assert ClipStore(tmp_path / "x", max_bytes=0).max_bytes is None  # 0: no limit
    store.close()


def test_the_store_layout_and_settings(tmp_path):
    store = ClipStore(tmp_path / "s")
    with pytest.raises(RuntimeError, match="not open"):
        store.stats()
    store.open()
    try:
        assert (tmp_path / "s" / "clips").is_dir() and store.get("nope") is None
        assert store.clip_path("abcdef") == tmp_path / "s" / "clips" / "ab" / "abcdef.wav"
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # readers never block the writer
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        result = []
        worker = threading.Thread(target=lambda: result.append(store.stats()))  # the daemon's IO thread
        worker.start()
        worker.join()
        assert result == [(0, 0)]
    finally:
        store.close()


def test_a_clip_made_again_is_used_now(store):
    key = "aa" + "e" * 30
    put(store, key)
    time.sleep(0.01)
    store.touch(key)
    store.flush()
    time.sleep(0.01)
    now = time.time()
    assert put(store, key).last_used >= now  # an old touch does not stick to the new clip
    store.touch(key)
    store.remove(key)
    time.sleep(0.01)
    now = time.time()
    assert put(store, key).last_used >= now


def test_a_new_clip_is_kept_even_past_the_limit(tmp_path):
    store = ClipStore(tmp_path / "n").open()
    old = put(store, "aa" + "f" * 30)
    store.max_bytes = old.bytes // 2  # not even one clip fits
    new = put(store, "bb" + "f" * 30)
    assert new is not None and [c.key for c in store.clips()] == [new.key]
    store.close()


def test_recover_knows_the_caches_files_by_their_names(store):
    """Only `<key>.wav` and write_audio's `.<key>.wav.<random>.part`, with a key of the cache's
    exact format in its own shard folder, count as the cache's; the rest is moved aside."""
    key = "aa" + "5" * 30
    folder = store.root / "clips" / "aa"
    folder.mkdir(parents=True)
    others = [
        folder / "notes.part",
        folder / ".hidden.txt",
        folder / "readme.txt",
        folder / ".aa1.wav.x.part",  # not a key
        folder / ("AA" + "5" * 30 + ".wav"),  # keys are lower-case
        folder / ("bb" + "5" * 30 + ".wav"),  # in another key's shard
        folder / f"{key}.wav.bak",
    ]
    for path in others:
        path.write_bytes(path.name.encode())
    (folder / f".{key}.wav.k2j4_x9z.part").write_bytes(b"half")
    assert store.recover() == (1, 0, len(others))
    for path in others:
        moved = store.root / "stray" / path.relative_to(store.root)
        assert moved.read_bytes() == path.name.encode() and not path.exists()
    assert list(folder.iterdir()) == []
    assert store.recover() == (0, 0, 0)


def user_files(clips: Path) -> dict[Path, bytes]:
    """A user's own files inside a cache's clips folder: a folder of songs, notes beside the
    shard folders and inside one. Returns path -> content."""
    files = {
        clips / "album" / "my-song.wav": b"RIFF my own song",
        clips / "album" / "cover.jpg": b"a picture",
        clips / "notes.txt": b"my notes",
        clips / "ab" / "notes.txt": b"more notes",
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def assert_moved_aside(root: Path, files: dict[Path, bytes]) -> None:
    for path, content in files.items():
        assert not path.exists(), path
        assert (root / "stray" / path.relative_to(root)).read_bytes() == content, path


def test_a_new_or_empty_folder_becomes_a_tagged_cache(tmp_path):
    (tmp_path / "empty").mkdir()
    for name in (".DS_Store", "Thumbs.db", "desktop.ini"):  # file managers', not the user's work
        (tmp_path / "empty" / name).write_bytes(b"view settings")
    assert check_cache_folder(tmp_path / "new") == "new" and check_cache_folder(str(tmp_path / "empty")) == "new"
    for name in ("new", "empty"):
        ClipStore(tmp_path / name).open().close()
        tag = (tmp_path / name / "CACHEDIR.TAG").read_text()
        assert tag.startswith("Signature: 8a477f597d28d172789f06886806bc55\n") and "sao-live" in tag
        assert check_cache_folder(tmp_path / name) == "tagged"


def test_another_programs_cache_tag_is_refused(tmp_path):
    other = tmp_path / "target"
    other.mkdir()
    (other / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n# created by cargo\n")
    with pytest.raises(CacheFolderError, match="another program's"):
        ClipStore(other).open()
    assert sorted(p.name for p in other.iterdir()) == ["CACHEDIR.TAG"]


def test_a_cache_from_before_the_tag_is_adopted_and_its_leftovers_moved_once(tmp_path):
    store = ClipStore(tmp_path / "old").open()
    clip = put(store, "ab" + "7" * 30)
    store.close()
    (store.root / "CACHEDIR.TAG").unlink()  # as an older sao-live left it
    orphan = store.root / "clips" / "cd" / ("cd" + "7" * 30 + ".wav")
    orphan.parent.mkdir()
    orphan.write_bytes(b"RIFF unindexed")
    store = ClipStore(store.root).open()
    assert (store.root / "CACHEDIR.TAG").is_file() and not store.owns_files
    assert store.recover() == (0, 0, 1)  # not tagged before this start: moved, not deleted
    assert (store.root / "stray" / orphan.relative_to(store.root)).read_bytes() == b"RIFF unindexed"
    assert store.get(clip.key) is not None
    store.close()
    orphan.write_bytes(b"RIFF unindexed")
    store = ClipStore(store.root).open()
    assert store.owns_files and store.recover() == (0, 1, 0)  # tagged now: its own leftovers go
    store.close()


def test_a_key_that_is_not_a_key_never_names_a_file(tmp_path, store):
    """An edited index cannot make `clear` or eviction delete a file outside the cache."""
    victim = tmp_path / "victim.wav"
    key = "../victim"
    assert Path(os.path.normpath(store.clip_path(key))) == victim
    victim.write_bytes(b"RIFF keep me")
    with store.db:
        store.db.execute("INSERT INTO clips VALUES (?, 'f', 12, 'x', 1.0, 1, 44100, '{}', 0, 0, 0)", (key,))
    assert store.clear() == 1 and store.stats() == (0, 0)
    assert victim.read_bytes() == b"RIFF keep me"


def test_a_clips_waveform_lives_and_goes_with_it(store):
    """The web page's `<key>.peaks` beside a clip is the cache's own: kept with its clip, deleted
    without one (never moved to stray/ as a file the cache did not make), removed with the clip."""
    from sao_live.web.peaks import WIDTH, load_or_make

    kept, gone = put(store, "aa" + "2" * 30), "bb" + "2" * 30
    peaks = load_or_make(kept.path, store.peaks_path(kept.key))
    assert len(peaks) == 2 * WIDTH and store.peaks_path(kept.key).read_bytes() == peaks
    assert max(peaks) > 128 + 20  # the clip's 0.25 shows
    orphan = store.peaks_path(gone)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(peaks)
    partial = orphan.with_name(f".{gone}.peaks.abc123.part")
    partial.write_bytes(b"half")
    assert store.recover() == (1, 1, 0)
    assert store.peaks_path(kept.key).exists() and not orphan.exists() and not partial.exists()
    assert not (store.root / "stray").exists()
    store.remove(kept.key)
    assert not store.peaks_path(kept.key).exists()


def test_recent_is_newest_first_and_filters_by_prompt(store):
    keys = [f"{i:02d}" + "c" * 30 for i in range(5)]
    for k in keys:
        put(store, k)
        time.sleep(0.01)
    clips, total = store.recent(limit=2)
    assert total == 5 and [c.key for c in clips] == keys[::-1][:2]
    clips, total = store.recent(text="CLIP 03", limit=10)
    assert total == 1 and clips[0].key == keys[3]
    assert store.recent(limit=2, offset=4)[0][0].key == keys[0]


def test_a_refused_folder_is_named_with_a_few_of_its_files(tmp_path):
    for count, shown in [(3, "(a0, a1, a2)"), (4, "(a0, a1, a2 and 1 more)"), (5, "(a0, a1, a2 and 2 more)")]:
        folder = tmp_path / str(count)
        folder.mkdir()
        for i in range(count):
            (folder / f"a{i}").write_bytes(b"mine")
        with pytest.raises(CacheFolderError, match=rf"it holds files \({shown[1:-1]}\) and no CACHEDIR.TAG") as err:
            check_cache_folder(folder)
        assert err.value.code == "bad_cache_dir"


@pytest.mark.parametrize("index", ["text", "sqlite without clips", "folder"])
def test_a_folder_whose_index_is_not_the_stores_is_refused(tmp_path, index):
    path = tmp_path / "index.sqlite3"
    if index == "text":
        path.write_text("SQLite format 3? no, my notes")
    elif index == "folder":
        path.mkdir()
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE songs (name TEXT)")
        db.commit()
        db.close()
    with pytest.raises(CacheFolderError, match="holds files"):
        check_cache_folder(tmp_path)


def test_a_tag_that_cannot_be_read_as_text_is_another_programs(tmp_path):
    (tmp_path / "CACHEDIR.TAG").write_bytes(b"Signature: 8a477f597d28d172789f06886806bc55\n\xff\xfe sao-live?\n")
    assert check_cache_folder(tmp_path) == "tagged"  # unreadable bytes are replaced, the rest is read
    (tmp_path / "CACHEDIR.TAG").write_bytes(b"Signature: 8a477f597d28d172789f06886806bc55\n\xff\xfe\n")
    with pytest.raises(CacheFolderError, match="another program's"):
        check_cache_folder(tmp_path)
    (tmp_path / "CACHEDIR.TAG").unlink()
    (tmp_path / "CACHEDIR.TAG").symlink_to("/proc/self/mem")  # a file that fails to read (EIO), even for root
    with pytest.raises(CacheFolderError, match="another program's"):
        check_cache_folder(tmp_path)


def test_a_tag_written_before_is_left_as_it_is(tmp_path):
    store = ClipStore(tmp_path / "deep" / "new" / "cache").open()  # its parents are made too
    store.close()
    tag = store.root / "CACHEDIR.TAG"
    tag.write_text("Signature: 8a477f597d28d172789f06886806bc55\n# sao-live cache, in an older wording\n")
    ClipStore(store.root).open().close()
    assert tag.read_text().endswith("older wording\n")


def test_cached_clips_are_private_to_the_user(tmp_path):
    path = tmp_path / "clip.wav"
    write_audio(path, np.zeros((2, 64), np.float32), RATE, "wav", "32f", mode=CLIP_MODE)  # as the worker writes
    assert path.stat().st_mode & 0o777 == 0o600


def test_moved_aside_beside_what_is_there_never_over_it(store):
    for n, content in enumerate([b"first", b"second", b"third"]):
        (store.root / "clips" / "notes.txt").write_bytes(content)
        assert store.recover() == (0, 0, 1)
        assert (store.root / "stray" / "clips" / ["notes.txt", "notes_2.txt", "notes_3.txt"][n]).read_bytes() == content


def test_anything_but_a_shard_folder_in_clips_is_moved_aside(store, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clips = store.root / "clips"
    (clips / "notes.txt").write_bytes(b"a file")
    (clips / "mine").mkdir()  # a folder, but no shard name
    (clips / "ab").symlink_to(elsewhere)  # a shard name, but a link out of the cache
    assert store.recover() == (0, 0, 3)
    assert sorted(p.name for p in (store.root / "stray" / "clips").iterdir()) == ["ab", "mine", "notes.txt"]
    assert elsewhere.is_dir()


def test_a_cache_whose_clips_folder_went_away_has_no_leftovers(store):
    (store.root / "clips").rmdir()
    assert store.recover() == (0, 0, 0) and store.verify() == []


def test_verify_reports_an_unfinished_write_as_the_caches_own(store):
    partial = store.root / "clips" / "ab" / (".ab" + "1" * 30 + ".wav.x1y2.part")
    partial.parent.mkdir()
    partial.write_bytes(b"half")
    assert store.verify() == [(str(partial), "unfinished write (--fix: deleted)")]
    assert store.verify(fix=True) == [(str(partial), "unfinished write: deleted")] and not partial.exists()


def test_recent_shows_fifty_clips_a_page(store):
    keys = [f"{i:02x}" + "d" * 30 for i in range(51)]
    for k in keys:
        put(store, k, seconds=0.001)
    clips, total = store.recent()
    assert total == 51 and len(clips) == 50


def test_a_file_that_cannot_be_moved_aside_is_left_in_place(store):
    notes = store.root / "clips" / "notes.txt"
    notes.write_bytes(b"mine")
    (store.root / "stray").write_bytes(b"a file where stray/ would go")
    assert store.recover() == (0, 0, 0) and notes.read_bytes() == b"mine"
    assert store.verify(fix=True) == [(str(notes), "not made by the cache: left in place (it could not be moved)")]
