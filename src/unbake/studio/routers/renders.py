"""Mixes of a finished job: rendered by the remix engine (the same as ``unbake remix``) and kept
for download, and the loudness match of the A/B switch."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from .. import remixing
from ..bodies import MixRequest, RenderRequest
from ..deps import DoneDep
from ..jobs import is_job_id
from ..web import song_name
from .stems import MEDIA_TYPES

router = APIRouter(prefix="/api/jobs/{job_id}")

RENDERS_KEPT = 8


@router.post("/render")
async def render(done: DoneDep, body: RenderRequest) -> dict:
    """The mix of ``settings`` (``{tracks, master}``) written in ``format`` and kept for download."""
    render_id = secrets.token_urlsafe(16)
    target = done.inside(done.files.renders / f"{render_id}.{body.format}")
    stats = await run_in_threadpool(remixing.render, done.files.stems_dir, done.job.stems, body.settings, target)
    await run_in_threadpool(prune_renders, done.files.renders, RENDERS_KEPT)
    return {"id": render_id, "url": f"/api/jobs/{done.job.id}/renders/{render_id}.{body.format}",
            "filename": f"{song_name(done.job)} - mix.{body.format}", **stats}


@router.get("/renders/{render_file}")
async def render_file(done: DoneDep, render_file: str) -> FileResponse:
    render_id, _, fmt = render_file.partition(".")
    if fmt not in MEDIA_TYPES or not is_job_id(render_id):
        raise HTTPException(404, "no such render")
    path = done.inside(done.files.renders / f"{render_id}.{fmt}")
    if not path.is_file():
        raise HTTPException(404, "no such render (renders are kept until the next few exports)")
    return FileResponse(path, media_type=MEDIA_TYPES[fmt], filename=f"{song_name(done.job)} - mix.{fmt}")


@router.post("/ab-match")
async def ab_match(done: DoneDep, body: MixRequest) -> dict:
    """Integrated loudness (LUFS) of the mix as the browser plays it and of the original, and
    ``gain_db``, the gain that makes the original as loud as the mix for the A/B switch."""
    path = done.existing(done.files.loudness, "loudness analysis (separate the song again)")
    return await run_in_threadpool(remixing.ab_match, path, done.job.stems, body.settings)


def prune_renders(folder, keep: int) -> None:
    if not folder.is_dir():
        return
    renders = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in renders[keep:]:
        old.unlink(missing_ok=True)
