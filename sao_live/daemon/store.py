"""The clip store: finished audio on disk, indexed by cache key in sqlite3 (WAL).

Layout under the cache folder: `index.sqlite3` and `clips/<key[:2]>/<key>.wav` (32-bit float
WAV, exactly what the model made). Clip files are written by the worker to a temporary name
and renamed, and indexed only after the rename, so a reader never sees half a clip. A clip
whose file went missing or changed size is dropped when looked up (the caller regenerates
it); `verify` also re-hashes every file. Past `max_bytes`, least recently used clips go
first, pinned and protected ones never. The `jobs` table is a crash journal: jobs whose
requesters were not all answered (queued, running, or made but not yet exported and replied
to) when the daemon died, so the next start can resume them. The service ends an entry once
its last requester has its answer, not when the clip is indexed.

One thread at a time: the daemon calls every method from its single IO thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from pathlib import Path

from ..events import Clip

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clips (
    key TEXT PRIMARY KEY, family TEXT NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL,
    seconds REAL NOT NULL, seed INTEGER NOT NULL, sample_rate INTEGER NOT NULL, request TEXT NOT NULL,
    created REAL NOT NULL, last_used REAL NOT NULL, pinned INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS clips_family ON clips (family, last_used);
CREATE TABLE IF NOT EXISTS exports (key TEXT NOT NULL, fmt TEXT NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY (key, fmt, path));
CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, request TEXT NOT NULL, requesters TEXT NOT NULL,
    created REAL NOT NULL);
"""
_COLUMNS = "key, family, bytes, sha256, seconds, seed, sample_rate, request, created, last_used, pinned"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class ClipStore:
    def __init__(self, root: str | Path, max_bytes: int | None = None):
        self.root = Path(root).expanduser()
        self.max_bytes = max_bytes or None
        self._db: sqlite3.Connection | None = None
        self._touched: dict[str, float] = {}

    # ------------------------------------------------------------ lifecycle

    def open(self) -> ClipStore:
        (self.root / "clips").mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "index.sqlite3", timeout=10, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        return self

    def close(self) -> None:
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the clip store is not open")
        return self._db

    def recover(self) -> tuple[int, int]:
        """Deletes temporary files and clip files the index does not know; (partials, orphans)."""
        partials = orphans = 0
        known = {row[0] for row in self.db.execute("SELECT key FROM clips")}
        for path in (self.root / "clips").glob("*/*"):
            if path.name.startswith(".") and path.name.endswith(".part"):
                path.unlink(missing_ok=True)
                partials += 1
            elif path.suffix == ".wav" and path.stem not in known:
                path.unlink(missing_ok=True)
                orphans += 1
        if partials or orphans:
            log.info("clip store: removed %d unfinished and %d unindexed files", partials, orphans)
        return partials, orphans

    # ------------------------------------------------------------ clips

    def clip_path(self, key: str) -> Path:
        return self.root / "clips" / key[:2] / f"{key}.wav"

    def _clip(self, row) -> Clip:
        key, family, size, sha, seconds, seed, rate, request, created, last_used, pinned = row
        return Clip(
            key,
            family,
            self.clip_path(key),
            size,
            sha,
            seconds,
            seed,
            rate,
            json.loads(request),
            created,
            self._touched.get(key, last_used),
            bool(pinned),
        )

    def _checked(self, clip: Clip | None) -> Clip | None:
        if clip is None:
            return None
        try:
            size = clip.path.stat().st_size
        except FileNotFoundError:
            size = -1
        if size != clip.bytes:
            problem = "is missing" if size < 0 else f"has {size} bytes instead of {clip.bytes}"
            log.warning("clip %s %s: dropped from the cache, it will be generated again", clip.key, problem)
            self.remove(clip.key)
            return None
        return clip

    def get(self, key: str) -> Clip | None:
        """The clip for `key` if its file is there and whole (same size as written), else None."""
        row = self.db.execute(f"SELECT {_COLUMNS} FROM clips WHERE key = ?", (key,)).fetchone()
        return self._checked(row and self._clip(row))

    def latest(self, family: str) -> Clip | None:
        """The most recently used clip of a family (the same request, any seed)."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM clips WHERE family = ? ORDER BY last_used DESC LIMIT 4", (family,)
        ).fetchall()
        for clip in sorted((self._clip(r) for r in rows), key=lambda c: -c.last_used):
            if self._checked(clip) is not None:
                return clip
        return None

    def add(self, key: str, family: str, info: dict, request: dict, protect: frozenset = frozenset()) -> Clip:
        """Indexes a clip file the worker wrote to `clip_path(key)`; `info` has bytes, sha256, seconds,
        seed, sample_rate. Evicts past the size limit; the key's journal entry stays (the export and
        the replies still have to happen)."""
        now = time.time()
        with self.db:
            self.db.execute(
                f"INSERT OR REPLACE INTO clips ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    key,
                    family,
                    info["bytes"],
                    info["sha256"],
                    info["seconds"],
                    info["seed"],
                    info["sample_rate"],
                    json.dumps(request),
                    now,
                    now,
                ),
            )
        self.evict(protect | {key})
        return self.get(key)

    def touch(self, key: str) -> None:
        """Marks a clip used now (written to the index by `flush`)."""
        self._touched[key] = time.time()

    def flush(self) -> None:
        if self._touched:
            with self.db:
                self.db.executemany(
                    "UPDATE clips SET last_used = ? WHERE key = ?", [(t, k) for k, t in self._touched.items()]
                )
            self._touched.clear()

    def remove(self, key: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM clips WHERE key = ?", (key,))
            self.db.execute("DELETE FROM exports WHERE key = ?", (key,))
        self._touched.pop(key, None)
        self.clip_path(key).unlink(missing_ok=True)

    def evict(self, protect: frozenset | set = frozenset()) -> list[str]:
        """Removes least recently used clips until the total fits `max_bytes`; returns their keys."""
        if self.max_bytes is None:
            return []
        total = self.stats()[1]
        if total <= self.max_bytes:
            return []
        self.flush()
        gone = []
        for key, size in self.db.execute("SELECT key, bytes FROM clips WHERE pinned = 0 ORDER BY last_used, created"):
            if total <= self.max_bytes:
                break
            if key not in protect:
                gone.append(key)
                total -= size
        for key in gone:
            self.remove(key)
        if gone:
            log.info(
                "clip store: evicted %d least recently used clips to stay under %d MB",
                len(gone),
                self.max_bytes // 2**20,
            )
        return gone

    def stats(self) -> tuple[int, int]:
        """(clips, bytes)."""
        count, total = self.db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM clips").fetchone()
        return count, total

    def clips(self) -> list[Clip]:
        self.flush()
        return [self._clip(r) for r in self.db.execute(f"SELECT {_COLUMNS} FROM clips ORDER BY last_used DESC")]

    def clear(self) -> int:
        """Removes every clip; returns how many."""
        keys = [k for (k,) in self.db.execute("SELECT key FROM clips")]
        for key in keys:
            self.remove(key)
        return len(keys)

    def verify(self, fix: bool = False) -> list[tuple[str, str]]:
        """Checks every clip file (present, size, sha256) and stray files; [(key or file, problem)].

        With `fix`, bad clips leave the index (the daemon makes them again when asked)
        and stray files are deleted.
        """
        problems = []
        for clip in self.clips():
            if not clip.path.is_file():
                problems.append((clip.key, "file missing"))
            elif clip.path.stat().st_size != clip.bytes:
                problems.append((clip.key, f"size {clip.path.stat().st_size} instead of {clip.bytes}"))
            elif file_sha256(clip.path) != clip.sha256:
                problems.append((clip.key, "content changed (sha256 mismatch)"))
        known = {c.key for c in self.clips()}
        for path in sorted((self.root / "clips").glob("*/*")):
            if path.stem not in known:
                problems.append((str(path), "file not in the index"))
        if fix:
            for what, _ in problems:
                if what in known:
                    self.remove(what)
                else:
                    Path(what).unlink(missing_ok=True)
        return problems

    # ------------------------------------------------------------ exports

    def exported(self, key: str, fmt: str, folder: Path) -> Path | None:
        """A file this clip was already exported to in `folder` as `fmt`, if it is still there."""
        for (path,) in self.db.execute("SELECT path FROM exports WHERE key = ? AND fmt = ?", (key, fmt)):
            p = Path(path)
            if p.parent == folder and p.is_file():
                return p
        return None

    def add_export(self, key: str, fmt: str, path: Path) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO exports VALUES (?, ?, ?)", (key, fmt, str(path)))

    # ------------------------------------------------------------ crash journal

    def journal_put(self, key: str, request: dict, requesters: list[dict]) -> None:
        self.journal_put_many([(key, request, requesters)])

    def journal_put_many(self, jobs: list[tuple[str, dict, list[dict]]]) -> None:
        """Writes (key, request, requesters) entries in one transaction, replacing the keys' old ones
        (a job keeps its place: the next start resumes jobs in the order they came)."""
        now = time.time()
        with self.db:
            self.db.executemany(
                "INSERT INTO jobs VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE"
                " SET request = excluded.request, requesters = excluded.requesters",
                [(key, json.dumps(request), json.dumps(requesters), now) for key, request, requesters in jobs],
            )

    def journal_drop(self, key: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM jobs WHERE key = ?", (key,))

    def journal(self) -> list[tuple[str, dict, list[dict]]]:
        rows = self.db.execute("SELECT key, request, requesters FROM jobs ORDER BY created, rowid")
        return [(k, json.loads(r), json.loads(q)) for k, r, q in rows]
