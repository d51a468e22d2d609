"""Studio jobs: their state in SQLite under the data folder, and the worker threads that run them.

State lives in the database, not in memory, so a restart shows every job as it was; a job that
was running when the process died is marked failed with the reason, never left "running".
"""

from __future__ import annotations

import json
import logging
import queue
import secrets
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import UnbakeError

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "done", "failed", "cancelled")
TERMINAL = frozenset({"done", "failed", "cancelled"})
INTERRUPTED_REASON = "interrupted: the studio stopped while this job was running; start it again"
# 16 random bytes -> 22 url-safe characters; ids are checked against this shape before any lookup
ID_BYTES = 16
ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    error TEXT,
    stems TEXT NOT NULL DEFAULT '[]',
    sample_rate INTEGER,
    channels INTEGER,
    duration_s REAL,
    created_s REAL NOT NULL,
    updated_s REAL NOT NULL
)
"""
_COLUMNS = ("id", "name", "model", "status", "progress", "stage", "error", "stems", "sample_rate",
            "channels", "duration_s", "created_s", "updated_s")
_UPDATABLE = frozenset(_COLUMNS) - {"id", "created_s"}


class JobCancelled(UnbakeError):
    """Raised inside a running job when its cancellation was asked for."""


def new_job_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def is_job_id(text: str) -> bool:
    """True for strings shaped like :func:`new_job_id` output (so never a path)."""
    return 16 <= len(text) <= 64 and set(text) <= ID_CHARS


@dataclass
class Job:
    """One separation: its input's display name, model, status and, when done, its stems."""

    id: str
    name: str
    model: str
    status: str
    progress: float = 0.0
    stage: str = ""
    error: str | None = None
    stems: list[str] = field(default_factory=list)
    sample_rate: int | None = None
    channels: int | None = None
    duration_s: float | None = None
    created_s: float = 0.0
    updated_s: float = 0.0

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JobStore:
    """Jobs in one SQLite file; safe to use from several threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, name: str, model: str, *, job_id: str | None = None) -> Job:
        now = time.time()
        job = Job(id=job_id or new_job_id(), name=name, model=model, status="queued", created_s=now, updated_s=now)
        row = _to_row(job)
        with self._lock:
            self._db.execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                             [row[c] for c in _COLUMNS])
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _from_row(row) if row else None

    def list(self) -> list[Job]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY created_s DESC").fetchall()
        return [_from_row(r) for r in rows]

    def update(self, job_id: str, **fields: Any) -> None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job fields {sorted(unknown)}")
        fields["updated_s"] = time.time()
        if "stems" in fields:
            fields["stems"] = json.dumps(list(fields["stems"]))
        names = list(fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
                             [fields[n] for n in names] + [job_id])

    def set_status_if(self, job_id: str, expected: str, status: str, **fields: Any) -> bool:
        """Move a job from ``expected`` to ``status`` atomically; False when it was not ``expected``."""
        fields = {"status": status, "updated_s": time.time(), **fields}
        names = list(fields)
        with self._lock:
            cur = self._db.execute(
                f"UPDATE jobs SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ? AND status = ?",
                [fields[n] for n in names] + [job_id, expected])
            return cur.rowcount == 1

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def recover(self) -> list[str]:
        """After a start: running jobs -> failed (with the reason); returns the queued ids, oldest first."""
        with self._lock:
            self._db.execute("UPDATE jobs SET status = 'failed', error = ?, stage = '', updated_s = ? "
                             "WHERE status = 'running'", (INTERRUPTED_REASON, time.time()))
            rows = self._db.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_s").fetchall()
        return [r["id"] for r in rows]


def _to_row(job: Job) -> dict[str, Any]:
    row = asdict(job)
    row["stems"] = json.dumps(job.stems)
    return row


def _from_row(row: sqlite3.Row) -> Job:
    data = {c: row[c] for c in _COLUMNS}
    data["stems"] = json.loads(data["stems"] or "[]")
    return Job(**data)


class Reporter:
    """Handed to a running job: reports progress and raises :class:`JobCancelled` when asked to stop."""

    # at most this many progress writes to the database per second per job
    MIN_INTERVAL_S = 0.1

    def __init__(self, store: JobStore, job_id: str, cancel: threading.Event) -> None:
        self._store = store
        self._id = job_id
        self._cancel = cancel
        self._last_s = 0.0
        self._stage = ""

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled("cancelled")

    def __call__(self, fraction: float, stage: str | None = None) -> None:
        self.check()
        now = time.monotonic()
        stage = self._stage if stage is None else stage
        if stage == self._stage and now - self._last_s < self.MIN_INTERVAL_S and fraction < 1.0:
            return
        self._last_s, self._stage = now, stage
        self._store.update(self._id, progress=float(min(max(fraction, 0.0), 1.0)), stage=stage)


WorkFn = Callable[[Job, Reporter], dict[str, Any]]


class WorkerPool:
    """Runs queued jobs on ``workers`` threads, in submission order.

    ``work(job, report)`` does the job and returns fields to store with status ``done``; it
    raises :class:`JobCancelled` (via ``report``) when cancelled and :class:`UnbakeError` for
    failures a user can understand. Cancellation is cooperative: a running job stops at its next
    progress report.
    """

    def __init__(self, store: JobStore, work: WorkFn, *, workers: int = 1,
                 on_cancelled: Callable[[str], None] | None = None) -> None:
        if workers < 1:
            raise UnbakeError("--workers must be at least 1")
        self.store = store
        self.work = work
        self.n_workers = workers
        self.on_cancelled = on_cancelled
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> None:
        for job_id in self.store.recover():
            self._queue.put(job_id)
        for i in range(self.n_workers):
            t = threading.Thread(target=self._loop, name=f"unbake-studio-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Cancel what runs, mark it failed as interrupted, and let the threads end."""
        self._stopping.set()
        with self._lock:
            for event in self._cancel.values():
                event.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False when it had already finished."""
        with self._lock:
            if self.store.set_status_if(job_id, "queued", "cancelled", stage=""):
                return True
            event = self._cancel.get(job_id)
            if event is not None:
                event.set()
                return True
        return False

    def is_running(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancel

    def _loop(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return  # a queued job stays queued and runs after the next start
            with self._lock:
                if not self.store.set_status_if(job_id, "queued", "running", progress=0.0, stage="starting"):
                    continue  # cancelled or deleted while queued
                cancel = threading.Event()
                self._cancel[job_id] = cancel
            try:
                self._run(job_id, cancel)
            finally:
                with self._lock:
                    self._cancel.pop(job_id, None)

    def _run(self, job_id: str, cancel: threading.Event) -> None:
        job = self.store.get(job_id)
        if job is None:
            return
        report = Reporter(self.store, job_id, cancel)
        try:
            result = self.work(job, report)
        except JobCancelled:
            if self._stopping.is_set():
                self.store.update(job_id, status="failed", error=INTERRUPTED_REASON, stage="")
            else:
                self.store.update(job_id, status="cancelled", stage="")
            if self.on_cancelled is not None:
                self.on_cancelled(job_id)
            return
        except UnbakeError as exc:
            self.store.update(job_id, status="failed", error=str(exc), stage="")
            return
        except Exception as exc:  # a bug must not kill the worker thread; the job shows it
            log.exception("studio job %s failed", job_id)
            self.store.update(job_id, status="failed", error=f"internal error: {exc.__class__.__name__}: {exc}",
                              stage="")
            return
        self.store.update(job_id, status="done", progress=1.0, stage="", error=None, **result)
