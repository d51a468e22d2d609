"""The page and its static files (the front end's ES modules and style), bundled in the package."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}
_SERVED = re.compile(r"^[a-z][a-z0-9_-]*\.(js|css)$")


@lru_cache(maxsize=1)
def static_names() -> frozenset[str]:
    """The files /static/ serves: the scripts and styles that ship in the package, nothing else."""
    folder = resources.files("unbake.studio").joinpath("static")
    return frozenset(p.name for p in folder.iterdir() if _SERVED.match(p.name))


def _static(name: str) -> Response:
    data = resources.files("unbake.studio").joinpath("static", name).read_bytes()
    return Response(data, media_type=MEDIA_TYPES[name[name.rfind("."):]], headers={"Cache-Control": "no-cache"})


@router.get("/")
async def index() -> Response:
    return _static("index.html")


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in static_names():
        raise HTTPException(404, "not found")
    return _static(name)
