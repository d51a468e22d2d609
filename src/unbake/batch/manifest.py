"""The batch manifest, ``OUT/.unbake/batch.sqlite``: one row per input with its content hash, the
model and options that shaped its outputs, its state and its output files.

Only the driver writes it (workers return results), in WAL mode so that ``--status`` can read
while a run writes. A row is marked ``done`` only after its outputs are under their final names,
so a process killed at any moment leaves rows that say no more than what is on disk; rows left
``running`` by a killed run go back to ``pending`` when the next run opens the manifest.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import OutputError

STATES = ("pending", "running", "done", "failed")
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inputs (
    id INTEGER PRIMARY KEY,
    input TEXT NOT NULL UNIQUE,        -- absolute path of the input file
    rel_dir TEXT NOT NULL,             -- its folder relative to its SOURCE: outputs go to OUT/rel_dir
    size INTEGER,
    mtime_ns INTEGER,
    sha256 TEXT,                       -- of the input's bytes
    model TEXT,
    options TEXT,                      -- JSON of the separation options
    settings_key TEXT,                 -- digest of model identity + options that shape the output
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    audio_s REAL,                      -- duration of the input
    elapsed_s REAL,                    -- wall time of its separation
    x_realtime REAL,                   -- audio_s / elapsed_s
    outputs TEXT,                      -- JSON {path relative to OUT: {"stem": ..., "sha256": ...}}
    model_label TEXT,                  -- what {model} stood for in the output names
    how TEXT,                          -- 'separated', or 'copy' of a byte-identical input
    worker TEXT,
    updated REAL
);
CREATE INDEX IF NOT EXISTS inputs_sha ON inputs (sha256, settings_key, state);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    engine TEXT,
    workers INTEGER,
    to_do INTEGER,
    pid INTEGER
);
"""


def state_dir(out: str | os.PathLike) -> Path:
    return Path(out) / ".unbake"


def manifest_path(out: str | os.PathLike) -> Path:
    return state_dir(out) / "batch.sqlite"


def staging_root(out: str | os.PathLike) -> Path:
    """Where workers write; everything here is unfinished work (removed when a run starts)."""
    return state_dir(out) / "staging"


@dataclass
class Row:
    id: int
    input: str
    rel_dir: str
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    model: str | None
    options: str | None
    settings_key: str | None
    state: str
    attempts: int
    error: str | None
    audio_s: float | None
    elapsed_s: float | None
    x_realtime: float | None
    outputs: str | None
    model_label: str | None
    how: str | None
    worker: str | None
    updated: float | None

    def output_map(self) -> dict[str, str]:
        """``{path relative to OUT: sha256}``"""
        return {p: v["sha256"] for p, v in self.output_info().items()}

    def output_info(self) -> dict[str, dict]:
        """``{path relative to OUT: {"stem": ..., "sha256": ...}}``"""
        return json.loads(self.outputs) if self.outputs else {}


class Manifest:
    """The SQLite manifest of one OUT folder. ``Manifest(out, write=True)`` also takes the
    folder's lock (one run per OUT at a time), puts rows a killed run left ``running`` back to
    ``pending`` and removes its unfinished staging files."""

    def __init__(self, out: str | os.PathLike, *, write: bool = False) -> None:
        self.out = Path(out)
        self.path = manifest_path(out)
        self._lock_fd: int | None = None
        if write:
            state_dir(out).mkdir(parents=True, exist_ok=True)
            self._lock()
        elif not self.path.is_file():
            raise OutputError(f"{out}: no batch manifest here ({self.path} not found)")
        # autocommit: each state change is its own transaction, durable before the next step
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        if write:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            self._recover()

    # --------------------------------------------------------------------------- lifecycle

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory lock, one run at a time is on the user
            return
        lock = state_dir(self.out) / "lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OutputError(f"{self.out}: another `unbake batch` is running on this folder") from None
        self._lock_fd = fd

    def _recover(self) -> None:
        # the lock is ours, so nothing is in flight: what says otherwise was left by a killed run
        self.db.execute("UPDATE inputs SET state = 'pending' WHERE state = 'running'")
        self.db.execute("UPDATE runs SET finished = started WHERE finished IS NULL")
        shutil.rmtree(staging_root(self.out), ignore_errors=True)

    def close(self) -> None:
        self.db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --------------------------------------------------------------------------- reading

    def rows(self, where: str = "", args: tuple = ()) -> list[Row]:
        cur = self.db.execute(f"SELECT * FROM inputs {where} ORDER BY input", args)
        return [Row(**dict(r)) for r in cur.fetchall()]

    def get(self, input: str) -> Row | None:
        found = self.rows("WHERE input = ?", (input,))
        return found[0] if found else None

    def by_id(self, row_id: int) -> Row:
        return self.rows("WHERE id = ?", (row_id,))[0]

    def done_with(self, sha256: str, settings_key: str) -> Iterator[Row]:
        """Finished rows with this content and these settings (their outputs can be reused)."""
        yield from self.rows("WHERE sha256 = ? AND settings_key = ? AND state = 'done'", (sha256, settings_key))

    def all_outputs(self) -> set[str]:
        paths: set[str] = set()
        for r in self.rows("WHERE outputs IS NOT NULL"):
            paths.update(r.output_map())
        return paths

    def run_active(self) -> bool:
        """Whether a run holds this folder's lock now (a killed run holds nothing)."""
        if self._lock_fd is not None:
            return True
        try:
            import fcntl
        except ImportError:  # pragma: no cover
            return False
        lock = state_dir(self.out) / "lock"
        if not lock.exists():
            return False
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def last_run(self) -> dict | None:
        r = self.db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return dict(r) if r else None

    # --------------------------------------------------------------------------- writing

    def upsert(self, input: str, *, rel_dir: str, size: int, mtime_ns: int, sha256: str | None,
               model: str, options: str, settings_key: str, state: str, error: str | None = None) -> int:
        """A row for ``input`` in ``state`` with its current identity; returns its id."""
        now = time.time()
        self.db.execute(
            """INSERT INTO inputs (input, rel_dir, size, mtime_ns, sha256, model, options, settings_key,
                                   state, attempts, error, updated)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)
               ON CONFLICT (input) DO UPDATE SET rel_dir = excluded.rel_dir, size = excluded.size,
                   mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, model = excluded.model,
                   options = excluded.options, settings_key = excluded.settings_key,
                   state = excluded.state, attempts = 0, error = excluded.error,
                   updated = excluded.updated""",
            (input, rel_dir, size, mtime_ns, sha256, model, options, settings_key, state, error, now))
        return self.db.execute("SELECT id FROM inputs WHERE input = ?", (input,)).fetchone()[0]

    def set_state(self, row_id: int, state: str, *, error: str | None = None, attempt: bool = False) -> None:
        assert state in STATES
        self.db.execute(
            "UPDATE inputs SET state = ?, error = ?, attempts = attempts + ?, updated = ? WHERE id = ?",
            (state, error, int(attempt), time.time(), row_id))

    def mark_done(self, row_id: int, *, outputs: dict[str, dict], model_label: str, how: str,
                  audio_s: float | None, elapsed_s: float | None, worker: str = "") -> None:
        x = audio_s / elapsed_s if audio_s and elapsed_s else None
        self.db.execute(
            """UPDATE inputs SET state = 'done', error = NULL, outputs = ?, model_label = ?, how = ?,
                   audio_s = ?, elapsed_s = ?, x_realtime = ?, worker = ?, updated = ? WHERE id = ?""",
            (json.dumps(outputs, sort_keys=True), model_label, how, audio_s, elapsed_s, x, worker,
             time.time(), row_id))

    def record_outputs(self, row_id: int, outputs: dict[str, dict]) -> None:
        """Files a row is about to place (its state unchanged)."""
        self.db.execute("UPDATE inputs SET outputs = ? WHERE id = ?", (json.dumps(outputs, sort_keys=True), row_id))

    def running_to_pending(self) -> None:
        self.db.execute("UPDATE inputs SET state = 'pending' WHERE state = 'running'")

    def start_run(self, engine: str, workers: int, to_do: int) -> int:
        cur = self.db.execute("INSERT INTO runs (started, engine, workers, to_do, pid) VALUES (?, ?, ?, ?, ?)",
                              (time.time(), engine, workers, to_do, os.getpid()))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int) -> None:
        self.db.execute("UPDATE runs SET finished = ? WHERE id = ?", (time.time(), run_id))
