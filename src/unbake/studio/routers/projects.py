"""Mixer settings as ``unbake remix`` project files (save, load) and the neutral settings the
mixer starts from."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from .. import remixing
from ..bodies import MixRequest
from ..deps import DoneDep
from ..web import attachment, song_name

router = APIRouter(prefix="/api")


@router.get("/mix/neutral")
async def neutral() -> dict:
    """``{"track": {...}, "master": {...}}``: one stem's and the master's neutral settings, from
    the remix project schema."""
    from ...remix.schema import neutral_settings

    return neutral_settings()


@router.post("/jobs/{job_id}/project")
async def save_project(done: DoneDep, body: MixRequest) -> Response:
    """The mixer settings as the YAML project file ``unbake remix`` reads."""
    text = await run_in_threadpool(remixing.project_yaml, done.files.stems_dir, done.job.stems, body.settings,
                                   name=song_name(done.job))
    return Response(text, media_type="application/x-yaml",
                    headers={"Content-Disposition": attachment(f"{song_name(done.job)}.unbake.yaml")})


@router.post("/jobs/{job_id}/project/load")
async def load_project(done: DoneDep, request: Request) -> dict:
    """Body: a YAML project (at most the request body limit); returns its settings for this
    job's stems (its paths are ignored)."""
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "the project file is not UTF-8 text") from None
    settings = await run_in_threadpool(remixing.settings_from_project, text, done.job.stems, done.files.stems_dir)
    return {"settings": settings}
