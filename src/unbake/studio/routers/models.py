"""The models the studio offers (with which run offline) and the server's limits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from ... import __version__
from ...errors import UnbakeError
from ..deps import StudioDep

router = APIRouter(prefix="/api")

EXPORT_FORMATS = ("wav", "flac", "mp3")


@router.get("/config")
async def config(studio: StudioDep) -> dict:
    from ...separate import default_model

    return {"version": __version__, "max_upload_bytes": studio.max_upload_bytes,
            "max_duration_s": studio.max_duration_s, "export_formats": list(EXPORT_FORMATS),
            "workers": studio.workers, "default_model": await run_in_threadpool(default_model)}


@router.get("/models")
async def models() -> list[dict]:
    return await run_in_threadpool(model_list)


def model_list() -> list[dict[str, Any]]:
    """The catalogue with, for each model, whether it runs offline (built in, or its files cached)
    and which one is the default (the one ``unbake separate`` uses when none is named)."""
    from ...hub.catalogue import load_catalogue
    from ...separate import default_model

    cat = load_catalogue()
    default = default_model()
    rows = []
    for name in cat.names():
        entry = cat.get(name)
        members = cat.members(name)
        if all(not m.files for m in members):
            availability = "built in"
        else:
            availability = "cached" if all(_is_cached(m) for m in members) else "download"
        rows.append({"name": name, "sources": list(entry.sources), "description": entry.description,
                     "licence": entry.licence, "availability": availability,
                     "offline": availability != "download", "default": name == default})
    return rows


def _is_cached(entry) -> bool:
    try:
        from ...hub.download import is_cached
    except ImportError:
        return False
    try:
        return bool(is_cached(entry))
    except UnbakeError:
        return False
