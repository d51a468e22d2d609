"""Jobs: upload a song (a new job), list, follow (server-sent events), cancel, delete; and a
finished job's analysis."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from .. import pipeline, uploads
from ..deps import DoneDep, JobDep, StudioDep
from ..web import clean_name, mib

router = APIRouter(prefix="/api/jobs")

UPLOAD_PATH = "/api/jobs"
EVENT_POLL_S = 0.2
EVENT_HEARTBEAT_S = 15.0


@router.get("")
async def list_jobs(studio: StudioDep) -> list[dict]:
    return [j.to_dict() for j in studio.store.list()]


@router.post("", status_code=201)
async def create_job(request: Request, studio: StudioDep, model: str | None = None, name: str = "upload") -> dict:
    """The body is the file itself (``curl --data-binary @song.mp3``), not a form. Without
    ``model``, the model ``unbake separate`` uses by default."""
    from ...hub.catalogue import load_catalogue
    from ...separate import default_model

    model = model or await run_in_threadpool(default_model)
    if model not in load_catalogue():
        raise HTTPException(400, f"unknown model {model!r}; see /api/models")
    if request.headers.get("content-type", "").startswith("multipart/"):
        raise HTTPException(415, "send the file itself as the request body, not a form")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > studio.max_upload_bytes:
        raise HTTPException(413, f"the file is larger than the {mib(studio.max_upload_bytes)} upload limit")
    job_id = await uploads.receive(studio, request.stream())
    job = studio.store.create(clean_name(name), model, job_id=job_id)
    studio.pool.submit(job.id)
    return job.to_dict()


@router.get("/{job_id}")
async def get_job(job: JobDep) -> dict:
    return job.to_dict()


@router.get("/{job_id}/events")
async def job_events(job: JobDep, studio: StudioDep) -> StreamingResponse:
    """Server-sent events: ``job`` (the job, on every change) until ``end``."""
    return StreamingResponse(_events(studio, job.id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _events(studio, job_id: str):
    last = None
    idle_s = 0.0
    yield "retry: 1000\n\n"
    while True:
        job = studio.store.get(job_id)
        if job is None:
            yield "event: end\ndata: {\"deleted\": true}\n\n"
            return
        key = (job.status, job.progress, job.stage, job.error)
        if key != last:
            last = key
            idle_s = 0.0
            yield f"event: job\ndata: {json.dumps(job.to_dict())}\n\n"
        if job.finished:
            yield f"event: end\ndata: {json.dumps({'status': job.status})}\n\n"
            return
        await asyncio.sleep(EVENT_POLL_S)
        idle_s += EVENT_POLL_S
        if idle_s >= EVENT_HEARTBEAT_S:
            idle_s = 0.0
            yield ": still here\n\n"


@router.post("/{job_id}/cancel")
async def cancel_job(job: JobDep, studio: StudioDep) -> dict:
    if not studio.pool.cancel(job.id):
        raise HTTPException(409, f"the job is already {job.status}")
    return studio.store.get(job.id).to_dict()


@router.delete("/{job_id}")
async def delete_job(job: JobDep, studio: StudioDep) -> dict:
    studio.pool.cancel(job.id)
    if studio.pool.is_running(job.id):
        raise HTTPException(409, "the job is still stopping; delete it in a moment")
    studio.store.delete(job.id)
    await run_in_threadpool(studio.delete_folder, job.id)
    return {"deleted": job.id}


@router.get("/{job_id}/analysis")
async def analysis(done: DoneDep) -> dict:
    done.inside(done.files.analysis)
    return await run_in_threadpool(pipeline.read_analysis, done.files)
