"""The clip store: finished audio on disk, indexed by cache key in sqlite3 (WAL).

Layout under the cache folder: `CACHEDIR.TAG`, `index.sqlite3` and `clips/<key[:2]>/<key>.wav`
(32-bit float WAV, exactly what the model made, readable by the user only), with the web page's
`<key>.peaks` (the clip's waveform) beside it once the page has shown the clip. Clip files are
written by the worker to a temporary name (`.<key>.wav.<random>.part`) and renamed, and indexed
only after the rename, so a reader never sees half a clip. A clip whose file went missing or
changed size is dropped when looked up (the caller regenerates it); `verify` also re-hashes
every file. Past `max_bytes`, least recently used clips go first, pinned and protected ones
never. The `jobs` table is a crash journal: jobs whose requesters were not all answered
(queued, running, or made but not yet exported and replied to) when the daemon died, so the
next start can resume them. The service ends an entry once its last requester has its answer,
not when the clip is indexed.

The store deletes only what it made: files with those two names, in a folder that carried
its tag before it was opened. Anything else under `clips/` is moved, never deleted, into
`stray/` in the cache folder (same relative path, never over another file). A folder that
holds files but no sao-live tag is refused, so a mistyped `--cache-dir` cannot touch the
user's files; a cache made before the tag existed (its `index.sqlite3` is there) is tagged,
and on that first start even its own leftovers are moved rather than deleted.

One thread at a time: the daemon calls every method from its single IO thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import time
from pathlib import Path

from ..errors import SaoLiveError
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
# The standard cache directory tag (backup tools skip the folder), naming sao-live: the store's
# proof that it made the folder and may delete its own files in it.
MARKER = "CACHEDIR.TAG"
MARKER_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
MARKER_TEXT = (
    f"{MARKER_SIGNATURE}\n"
    "# This file is a cache directory tag created by sao-live: its clip cache.\n"
    "# sao-live deletes only files it made, and only in a folder holding this tag.\n"
    "# Backup and archiving tools that honour cache directory tags skip this folder.\n"
)
STRAY = "stray"  # where files the cache did not make are moved
CLIP_MODE = 0o600  # cached clips are private to the user; exports follow the umask (export.py)
KEY = re.compile(r"[0-9a-f]{32}")
_SHARD = re.compile(r"[0-9a-f]{2}")
_CLIP_FILE = re.compile(r"(?P<key>[0-9a-f]{32})\.wav")
_PEAKS_FILE = re.compile(r"(?P<key>[0-9a-f]{32})\.peaks")  # a clip's waveform for the web page
_PARTIAL_FILE = re.compile(r"\.(?P<key>[0-9a-f]{32})\.(wav|peaks)\.[A-Za-z0-9_]+\.part")  # a temporary
_FOLDER_VIEW_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}  # left by file managers in any folder shown

_COLUMNS = "key, family, bytes, sha256, seconds, seed, sample_rate, request, created, last_used, pinned"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class CacheFolderError(SaoLiveError, RuntimeError):
    """A cache folder the store will not use: it holds files and is not a sao-live cache."""

    code = "bad_cache_dir"


def _is_sqlite_cache_index(path: Path) -> bool:
    """Whether `path` is an sqlite database with the store's `clips` table (a cache made before the tag)."""
    try:
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                return False
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return (
                db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clips'").fetchone() is not None
            )
        finally:
            db.close()
    except (OSError, sqlite3.Error):
        return False


def check_cache_folder(root: str | Path) -> str:
    """What `root` is for the store: "new" (missing or empty), "tagged" (a sao-live cache), or
    "untagged" (a sao-live cache made before the tag existed). CacheFolderError for anything else,
    so that a folder of the user's own is never used (nothing is written there)."""
    root = Path(root).expanduser()
    if not root.exists():
        return "new"
    tag = root / MARKER
    if tag.is_file():
        try:
            text = tag.read_text(errors="replace")
        except OSError:
            text = ""
        if text.startswith(MARKER_SIGNATURE) and "sao-live" in text:
            return "tagged"
        why = f"its {MARKER} is another program's (it does not name sao-live)"
    else:
        names = sorted(p.name for p in root.iterdir() if p.name not in _FOLDER_VIEW_FILES)
        if not names:
            return "new"
        if _is_sqlite_cache_index(root / "index.sqlite3"):
            return "untagged"
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        why = f"it holds files ({shown}) and no {MARKER} written by sao-live"
    raise CacheFolderError(
        f"the cache folder {root.absolute()} is not a sao-live cache: {why}. The cache deletes files it "
        f"made, so it keeps a folder of its own: pass a new or empty folder as --cache-dir (or cache_dir "
        f"in config.toml), e.g. {root.absolute() / 'sao-live-cache'}"
    )


def _free_path(path: Path) -> Path:
    """`path`, or `name_2.ext`, `name_3.ext`, ... : the first that does not exist."""
    n = 1
    candidate = path
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
    return candidate


class ClipStore:
    def __init__(self, root: str | Path, max_bytes: int | None = None):
        self.root = Path(root).expanduser()
        self.max_bytes = max_bytes or None
        self._db: sqlite3.Connection | None = None
        self._touched: dict[str, float] = {}
        # Whether the store may delete its own leftovers (orphans, partials): only in a folder it
        # tagged itself. In an untagged older cache they are moved aside on the first start.
        self.owns_files = False

    # ------------------------------------------------------------ lifecycle

    def open(self) -> ClipStore:
        """Opens (or makes) the cache; CacheFolderError for a folder that is not a sao-live cache."""
        state = check_cache_folder(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        if state != "tagged":
            if state == "untagged":
                log.info("clip store: tagging %s as a sao-live cache (%s)", self.root, MARKER)
            (self.root / MARKER).write_text(MARKER_TEXT)
        self.owns_files = state != "untagged"
        (self.root / "clips").mkdir(exist_ok=True)
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

    def _leftovers(self) -> tuple[list[Path], list[Path], list[Path]]:
        """What under `clips/` is not an indexed clip: (unfinished writes and unindexed clip files
        the cache made, by their names; everything else, which the cache did not make)."""
        known = {row[0] for row in self.db.execute("SELECT key FROM clips")}
        partials, orphans, strays = [], [], []
        if not (self.root / "clips").is_dir():
            return partials, orphans, strays
        for entry in sorted((self.root / "clips").iterdir()):
            if entry.is_symlink() or not entry.is_dir() or not _SHARD.fullmatch(entry.name):
                strays.append(entry)
                continue
            for path in sorted(entry.iterdir()):
                clip = _CLIP_FILE.fullmatch(path.name) or _PEAKS_FILE.fullmatch(path.name)
                partial = _PARTIAL_FILE.fullmatch(path.name)
                made = clip or partial
                if path.is_symlink() or not path.is_file() or not made or made["key"][:2] != entry.name:
                    strays.append(path)
                elif partial:
                    partials.append(path)
                elif clip["key"] not in known:
                    orphans.append(path)
        return partials, orphans, strays

    def move_aside(self, path: Path) -> Path | None:
        """Moves a file or folder the cache did not make to `stray/` (same path relative to the
        cache, never over another file); its new path, or None if it could not be moved."""
        dest = _free_path(self.root / STRAY / path.relative_to(self.root))
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, dest)
        except OSError as err:
            log.warning("clip store: %s was not made by sao-live and could not be moved aside: %s", path, err)
            return None
        log.warning("clip store: %s was not made by sao-live: moved to %s (not deleted)", path, dest)
        return dest

    def _tidy(self, path: Path, made_by_cache: bool) -> str:
        """Deletes a leftover the cache made (in a folder it owns), else moves it aside; says which."""
        if made_by_cache and self.owns_files:
            path.unlink(missing_ok=True)
            return "deleted"
        dest = self.move_aside(path)
        return "left in place (it could not be moved)" if dest is None else f"moved to {dest}"

    def recover(self) -> tuple[int, int, int]:
        """Deletes the cache's own unfinished writes and unindexed clip files and moves anything
        else under `clips/` to `stray/`; (partials deleted, orphans deleted, entries moved aside)."""
        partials, orphans, strays = self._leftovers()
        done = [self._tidy(p, made_by_cache=False) for p in strays]
        deleted = []
        for paths in (partials, orphans):
            outcomes = [self._tidy(p, made_by_cache=True) for p in paths]
            deleted.append(outcomes.count("deleted"))
            done += outcomes
        if any(deleted):
            log.info("clip store: removed %d unfinished and %d unindexed files", *deleted)
        return deleted[0], deleted[1], sum(o.startswith("moved") for o in done)

    # ------------------------------------------------------------ clips

    def clip_path(self, key: str) -> Path:
        return self.root / "clips" / key[:2] / f"{key}.wav"

    def peaks_path(self, key: str) -> Path:
        """The clip's waveform peaks (made by the web page's server), removed with the clip."""
        return self.root / "clips" / key[:2] / f"{key}.peaks"

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
        if KEY.fullmatch(key):  # a key from an edited index could name a path outside the cache
            self.clip_path(key).unlink(missing_ok=True)
            self.peaks_path(key).unlink(missing_ok=True)

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

    def recent(self, text: str = "", limit: int = 50, offset: int = 0) -> tuple[list[Clip], int]:
        """Newest first, those whose prompt holds `text` (any case): (a page of `limit` from `offset`, how many)."""
        where, args = "", ()
        if text:
            where, args = "WHERE instr(lower(json_extract(request, '$.prompt')), lower(?)) > 0", (text,)
        (total,) = self.db.execute(f"SELECT COUNT(*) FROM clips {where}", args).fetchone()
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM clips {where} ORDER BY created DESC, rowid DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [self._clip(r) for r in rows], total

    def clear(self) -> int:
        """Removes every indexed clip (and nothing else); returns how many."""
        keys = [k for (k,) in self.db.execute("SELECT key FROM clips")]
        for key in keys:
            self.remove(key)
        return len(keys)

    def verify(self, fix: bool = False) -> list[tuple[str, str]]:
        """Checks every clip file (present, size, sha256) and what else is under `clips/`;
        [(key or file, problem)].

        With `fix`, bad clips leave the index (the daemon makes them again when asked), the
        cache's own leftovers are deleted and anything it did not make is moved to `stray/`.
        """
        problems = []
        for clip in self.clips():
            if not clip.path.is_file():
                problems.append((clip.key, "file missing"))
            elif clip.path.stat().st_size != clip.bytes:
                problems.append((clip.key, f"size {clip.path.stat().st_size} instead of {clip.bytes}"))
            elif file_sha256(clip.path) != clip.sha256:
                problems.append((clip.key, "content changed (sha256 mismatch)"))
        if fix:
            for key, _ in problems:
                self.remove(key)
        partials, orphans, strays = self._leftovers()
        leftovers = [(p, "unfinished write", True) for p in partials]
        leftovers += [(p, "clip file not in the index", True) for p in orphans]
        leftovers += [(p, "not made by the cache", False) for p in strays]
        for path, problem, made_by_cache in sorted(leftovers):
            if fix:
                problems.append((str(path), f"{problem}: {self._tidy(path, made_by_cache)}"))
            else:
                action = "deleted" if made_by_cache and self.owns_files else f"moved to {self.root / STRAY}"
                problems.append((str(path), f"{problem} (--fix: {action})"))
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
