"""The studio's state behind the HTTP layer: the job database, the worker pool, the job folders
under the data folder and the limits. Routers get it injected (:func:`unbake.studio.deps.get_studio`).

Every file is found from a job id (checked for shape, then looked up in the job database) and a
name from a fixed set; :meth:`Studio.inside` refuses any path that leaves the data folder or
passes through a symbolic link, so a link planted in a job folder is never followed.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

from ..errors import UnbakeError
from . import pipeline
from .jobs import Job, JobStore, WorkerPool, is_job_id
from .pipeline import JobFiles

log = logging.getLogger(__name__)


class NotInside(UnbakeError):
    """A path leaves the data folder or passes through a symbolic link."""


class Studio:
    """Jobs under ``root``: ``root/studio.sqlite3``, ``root/jobs/<id>/``, ``root/incoming/``."""

    def __init__(self, root: str | os.PathLike, *, max_upload_bytes: int, max_duration_s: float,
                 workers: int = 1) -> None:
        self.root = Path(root).expanduser().resolve()
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        (self.root / "incoming").mkdir(parents=True, exist_ok=True)
        self.max_upload_bytes = max_upload_bytes
        self.max_duration_s = max_duration_s
        self.workers = workers
        self.store = JobStore(self.root / "studio.sqlite3")
        self.pool = WorkerPool(self.store, self._work, workers=workers, on_cancelled=self._cancelled)

    # -- lifetime
    def start(self) -> None:
        # uploads cut short by a kill are never resumed
        for stale in (self.root / "incoming").iterdir():
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()
        self.store.close()

    # -- jobs and their folders
    def files_of(self, job_id: str) -> JobFiles:
        return JobFiles(self.root / "jobs" / job_id)

    def job(self, job_id: str) -> Job | None:
        return self.store.get(job_id) if is_job_id(job_id) else None

    def inside(self, path: Path) -> Path:
        """``path`` resolved; :class:`NotInside` when it leads outside the data folder or any part
        of it below the data folder is a symbolic link."""
        real = path.resolve()
        if not real.is_relative_to(self.root):
            raise NotInside("not found")
        try:
            parts = Path(path).relative_to(self.root).parts
        except ValueError:
            raise NotInside("not found") from None
        current = self.root
        for part in parts:
            current = current / part
            try:
                if stat.S_ISLNK(os.lstat(current).st_mode):
                    raise NotInside("not found")
            except FileNotFoundError:
                break
        return real

    def delete_folder(self, job_id: str) -> None:
        shutil.rmtree(self.inside(self.files_of(job_id).root), ignore_errors=True)

    # -- what the workers run
    def _work(self, job: Job, report):
        files = self.files_of(job.id)
        try:
            return pipeline.run_separation(job, files, report)
        except UnbakeError as exc:
            # the job's error is shown in the page: name the song, not the server's files
            text = public_message(str(exc).replace(str(files.input), job.name), self.root)
            raise exc.__class__(text) from exc

    def _cancelled(self, job_id: str) -> None:
        stems = self.files_of(job_id).stems_dir
        if stems.is_dir():
            shutil.rmtree(stems, ignore_errors=True)


def public_message(text: str, root: Path) -> str:
    """Messages name files; the data folder's location is nobody's business but the owner's."""
    return text.replace(str(root), "<data>")
