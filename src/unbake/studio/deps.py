"""What routers have injected (``Depends``): the studio's services, a job looked up from its id,
a finished job with its folder, and a stem file; each answers 404/409 itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from .jobs import Job
from .pipeline import JobFiles
from .services import NotInside, Studio


def get_studio(request: Request) -> Studio:
    return request.app.state.studio


StudioDep = Annotated[Studio, Depends(get_studio)]


def any_job(job_id: str, studio: StudioDep) -> Job:
    job = studio.job(job_id)
    if job is None:
        raise HTTPException(404, "no such job")
    return job


JobDep = Annotated[Job, Depends(any_job)]


@dataclass(frozen=True)
class DoneJob:
    """A job whose separation finished, with its folder and the services."""

    job: Job
    files: JobFiles
    studio: Studio

    def inside(self, path: Path) -> Path:
        try:
            return self.studio.inside(path)
        except NotInside:
            raise HTTPException(404, "not found") from None

    def stem_path(self, stem: str) -> Path:
        """The stem's file (``original`` is not a stem); 404 when unknown or missing."""
        if stem not in self.job.stems:
            raise HTTPException(404, "no such stem")
        path = self.inside(self.files.stem(stem))
        if not path.is_file():
            raise HTTPException(404, "stem file missing")
        return path

    def existing(self, path: Path, what: str) -> Path:
        real = self.inside(path)
        if not real.is_file():
            raise HTTPException(404, f"{what} missing")
        return real


def done_job(job: JobDep, studio: StudioDep) -> DoneJob:
    if job.status != "done":
        raise HTTPException(409, f"the job is {job.status}, not done")
    return DoneJob(job, studio.files_of(job.id), studio)


DoneDep = Annotated[DoneJob, Depends(done_job)]
