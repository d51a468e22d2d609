"""The studio application: :func:`create_app` wires the services (job database, workers, job
folders, limits) to one router per resource (see :mod:`unbake.studio.routers`)."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from .. import __version__
from .routers import ROUTERS
from .routers.jobs import UPLOAD_PATH
from .services import Studio
from .settings import DEFAULT_MAX_DURATION_MIN, DEFAULT_MAX_UPLOAD_MB, LOOPBACK_HOSTS, MAX_BODY_BYTES
from .web import install


def create_app(data_dir: str | os.PathLike, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               max_duration_s: float = DEFAULT_MAX_DURATION_MIN * 60, workers: int = 1,
               allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The studio application, keeping its jobs under ``data_dir``.

    Args:
        max_upload_mb: larger uploads are refused with 413.
        max_duration_s: longer songs are refused with 413, from their header, before any work.
        workers: separations run at the same time (the rest wait in the queue).
        allowed_hosts: host names the ``Host`` header may carry (guards against DNS rebinding
            while bound to loopback); None accepts any.
        max_body_bytes: larger JSON (and project) request bodies are refused with 413.
    """
    studio = Studio(data_dir, max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_duration_s=max_duration_s,
                    workers=workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        studio.start()
        try:
            yield
        finally:
            await run_in_threadpool(studio.stop)

    app = FastAPI(title="unbake studio", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.studio = studio
    install(app, root=studio.root, allowed_hosts=allowed_hosts, max_body_bytes=max_body_bytes,
            upload_path=UPLOAD_PATH)
    for router in ROUTERS:
        app.include_router(router)
    return app
