"""The studio's HTTP API and pages: :func:`create_app` builds the FastAPI application.

Every file the API serves is found from a job id (checked for shape, then looked up in the job
database) and a name from a fixed set (the job's stems, a render id, a format); no request can
name a path, and every path is checked to lie inside the data folder before it is opened.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import unicodedata
import zipfile
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from .. import __version__
from ..errors import AudioError, DependencyError, UnbakeError
from . import pipeline
from .jobs import JobStore, WorkerPool, is_job_id, new_job_id
from .pipeline import JobFiles
from .settings import DEFAULT_MAX_UPLOAD_MB, LOOPBACK_HOSTS

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("wav", "flac", "mp3")
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}
STATIC_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                "style.css": "text/css; charset=utf-8"}
RENDERS_KEPT = 8
EVENT_POLL_S = 0.2
EVENT_HEARTBEAT_S = 15.0
_CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
        "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def create_app(data_dir: str | os.PathLike, *, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, workers: int = 1,
               allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS) -> FastAPI:
    """The studio application, keeping its jobs under ``data_dir``.

    Args:
        max_upload_mb: larger uploads are refused with 413.
        workers: separations run at the same time (the rest wait in the queue).
        allowed_hosts: host names the ``Host`` header may carry (guards against DNS rebinding
            while bound to loopback); None accepts any.
    """
    root = Path(data_dir).expanduser().resolve()
    (root / "jobs").mkdir(parents=True, exist_ok=True)
    (root / "incoming").mkdir(parents=True, exist_ok=True)
    store = JobStore(root / "studio.sqlite3")
    max_upload_bytes = int(max_upload_mb * 1024 * 1024)

    def files_of(job_id: str) -> JobFiles:
        return JobFiles(root / "jobs" / job_id)

    def work(job, report):
        files = files_of(job.id)
        try:
            return pipeline.run_separation(job, files, report)
        except UnbakeError as exc:
            # the job's error is shown in the page: name the song, not the server's files
            text = _public_message(str(exc).replace(str(files.input), job.name), root)
            raise exc.__class__(text) from exc

    def on_cancelled(job_id: str) -> None:
        stems = files_of(job_id).stems_dir
        if stems.is_dir():
            shutil.rmtree(stems, ignore_errors=True)

    pool = WorkerPool(store, work, workers=workers, on_cancelled=on_cancelled)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool.start()
        try:
            yield
        finally:
            await run_in_threadpool(pool.stop)
            store.close()

    app = FastAPI(title="unbake studio", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.pool = pool
    app.state.data_dir = root
    app.state.max_upload_bytes = max_upload_bytes

    # ------------------------------------------------------------------ guards

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = _host_name(request.headers.get("host", ""))
        if allowed_hosts is not None and host not in allowed_hosts:
            return JSONResponse({"detail": f"host {host!r} is not served; open the studio at 127.0.0.1"},
                                status_code=421)
        # a page from another site may POST here (a "simple" request needs no preflight); browsers
        # mark such requests with an Origin that is not ours
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin is not None \
                and urlsplit(origin).netloc != request.headers.get("host"):
            return JSONResponse({"detail": "cross-site request refused"}, status_code=403)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", _CSP)
        return response

    @app.exception_handler(UnbakeError)
    async def unbake_error(request: Request, exc: UnbakeError):
        status = 501 if isinstance(exc, DependencyError) else 400
        return JSONResponse({"detail": _public_message(str(exc), root)}, status_code=status)

    def job_or_404(job_id: str):
        if not is_job_id(job_id):
            raise HTTPException(404, "no such job")
        job = store.get(job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        return job

    def inside(path: Path) -> Path:
        """``path`` resolved, or 404 when it (or a link in it) leads outside the data folder."""
        real = path.resolve()
        if not real.is_relative_to(root):
            raise HTTPException(404, "not found")
        return real

    def done_job(job_id: str):
        job = job_or_404(job_id)
        if job.status != "done":
            raise HTTPException(409, f"the job is {job.status}, not done")
        return job, files_of(job.id)

    def stem_path(job, files: JobFiles, stem: str) -> Path:
        if stem not in job.stems:
            raise HTTPException(404, "no such stem")
        path = inside(files.stem(stem))
        if not path.is_file():
            raise HTTPException(404, "stem file missing")
        return path

    # ------------------------------------------------------------------ pages

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return _static("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC_FILES or name == "index.html":
            raise HTTPException(404, "not found")
        return _static(name)

    # ------------------------------------------------------------------ models, config

    @app.get("/api/config")
    async def config() -> dict:
        return {"version": __version__, "max_upload_bytes": max_upload_bytes, "export_formats": list(EXPORT_FORMATS),
                "workers": workers}

    @app.get("/api/models")
    async def models() -> list[dict]:
        return await run_in_threadpool(model_list)

    # ------------------------------------------------------------------ jobs

    @app.get("/api/jobs")
    async def list_jobs() -> list[dict]:
        return [j.to_dict() for j in store.list()]

    @app.post("/api/jobs", status_code=201)
    async def create_job(request: Request, model: str | None = None, name: str = "upload") -> dict:
        """The body is the file itself (``curl --data-binary @song.mp3``), not a form. Without
        ``model``, the best model available without a download is used."""
        from ..hub.catalogue import load_catalogue

        model = model or load_catalogue().default()
        if model not in load_catalogue():
            raise HTTPException(400, f"unknown model {model!r}; see /api/models")
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/"):
            raise HTTPException(415, "send the file itself as the request body, not a form")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload_bytes:
            raise HTTPException(413, f"the file is larger than the {_mb(max_upload_bytes)} upload limit")
        token = secrets.token_urlsafe(16)
        tmp = root / "incoming" / f"{token}.part"
        size = 0
        try:
            with open(tmp, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > max_upload_bytes:
                        raise HTTPException(413, f"the file is larger than the {_mb(max_upload_bytes)} upload limit")
                    await run_in_threadpool(fh.write, chunk)
            if size == 0:
                raise HTTPException(400, "the upload is empty")
            try:
                await run_in_threadpool(_check_audio, tmp)
            except AudioError as exc:
                raise HTTPException(415, _upload_message(str(exc), tmp)) from None
            job_id = new_job_id()
            files = files_of(job_id)
            files.root.mkdir(parents=True)
            os.replace(tmp, files.input)
        finally:
            tmp.unlink(missing_ok=True)
        job = store.create(_clean_name(name), model, job_id=job_id)
        pool.submit(job.id)
        return job.to_dict()

    @app.get("/api/jobs/{job_id}")
    async def get_job(job_id: str) -> dict:
        return job_or_404(job_id).to_dict()

    @app.get("/api/jobs/{job_id}/events")
    async def job_events(job_id: str) -> StreamingResponse:
        """Server-sent events: ``job`` (the job, on every change) until ``end``."""
        job_or_404(job_id)

        async def stream():
            last = None
            idle_s = 0.0
            yield "retry: 1000\n\n"
            while True:
                job = store.get(job_id)
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

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.post("/api/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str) -> dict:
        job = job_or_404(job_id)
        if not pool.cancel(job.id):
            raise HTTPException(409, f"the job is already {job.status}")
        return store.get(job.id).to_dict()

    @app.delete("/api/jobs/{job_id}")
    async def delete_job(job_id: str) -> dict:
        job = job_or_404(job_id)
        pool.cancel(job.id)
        if pool.is_running(job.id):
            raise HTTPException(409, "the job is still stopping; delete it in a moment")
        store.delete(job.id)
        folder = inside(files_of(job.id).root)
        await run_in_threadpool(shutil.rmtree, folder, True)
        return {"deleted": job.id}

    # ------------------------------------------------------------------ results

    @app.get("/api/jobs/{job_id}/analysis")
    async def analysis(job_id: str) -> dict:
        job, files = done_job(job_id)
        inside(files.analysis)
        return await run_in_threadpool(pipeline.read_analysis, files)

    @app.get("/api/jobs/{job_id}/original")
    async def original(job_id: str) -> FileResponse:
        job, files = done_job(job_id)
        path = inside(files.original)
        if not path.is_file():
            raise HTTPException(404, "original missing")
        return FileResponse(path, media_type=MEDIA_TYPES[pipeline.STEM_FORMAT])

    @app.get("/api/jobs/{job_id}/stems/{stem}/audio")
    async def stem_audio(job_id: str, stem: str) -> FileResponse:
        job, files = done_job(job_id)
        return FileResponse(stem_path(job, files, stem), media_type=MEDIA_TYPES[pipeline.STEM_FORMAT])

    @app.get("/api/jobs/{job_id}/stems/{stem}/download")
    async def stem_download(job_id: str, stem: str, format: str = "wav") -> FileResponse:
        job, files = done_job(job_id)
        fmt = _format(format)
        src = stem_path(job, files, stem)
        path = src if fmt == pipeline.STEM_FORMAT else inside(files.cache / f"stem-{stem}.{fmt}")
        if not path.is_file():
            await run_in_threadpool(_convert, src, path)
        return FileResponse(path, media_type=MEDIA_TYPES[fmt], filename=f"{_track(job)} - {stem}.{fmt}")

    @app.get("/api/jobs/{job_id}/stems/{stem}/spectrogram.png")
    async def spectrogram(job_id: str, stem: str) -> FileResponse:
        job, files = done_job(job_id)
        src = files.original if stem == "original" else stem_path(job, files, stem)
        path = inside(files.cache / f"spectrogram-{stem}.png")
        if not path.is_file():
            await run_in_threadpool(_spectrogram, inside(src), path)
        return FileResponse(path, media_type="image/png")

    @app.get("/api/jobs/{job_id}/stems.zip")
    async def stems_zip(job_id: str, format: str = "flac") -> FileResponse:
        job, files = done_job(job_id)
        fmt = _format(format)
        path = inside(files.cache / f"stems-{fmt}.zip")
        if not path.is_file():
            sources = {s: stem_path(job, files, s) for s in job.stems}
            await run_in_threadpool(_zip_stems, job, files, sources, fmt, path)
        return FileResponse(path, media_type="application/zip", filename=f"{_track(job)} - stems ({fmt}).zip")

    # ------------------------------------------------------------------ mixing, export, projects

    @app.post("/api/jobs/{job_id}/render")
    async def render(job_id: str, request: Request) -> dict:
        """Body: ``{"settings": {tracks, master}, "format": "wav"}``; the mix is written by the
        remix engine (the same as ``unbake remix``) and kept for download."""
        job, files = done_job(job_id)
        body = await _json_body(request)
        fmt = _format(str(body.get("format", "wav")))
        settings = body.get("settings") or {}
        render_id = secrets.token_urlsafe(16)
        target = inside(files.renders / f"{render_id}.{fmt}")
        stats = await run_in_threadpool(_render, job, files, settings, target)
        await run_in_threadpool(_prune_renders, files.renders, RENDERS_KEPT)
        return {"id": render_id, "url": f"/api/jobs/{job.id}/renders/{render_id}.{fmt}",
                "filename": f"{_track(job)} - mix.{fmt}", **stats}

    @app.get("/api/jobs/{job_id}/renders/{render_file}")
    async def render_file(job_id: str, render_file: str) -> FileResponse:
        job, files = done_job(job_id)
        render_id, _, fmt = render_file.partition(".")
        if fmt not in EXPORT_FORMATS or not is_job_id(render_id):
            raise HTTPException(404, "no such render")
        path = inside(files.renders / f"{render_id}.{fmt}")
        if not path.is_file():
            raise HTTPException(404, "no such render (renders are kept until the next few exports)")
        return FileResponse(path, media_type=MEDIA_TYPES[fmt], filename=f"{_track(job)} - mix.{fmt}")

    @app.post("/api/jobs/{job_id}/project")
    async def save_project(job_id: str, request: Request) -> Response:
        """The mixer settings as the YAML project file ``unbake remix`` reads."""
        job, files = done_job(job_id)
        settings = (await _json_body(request)).get("settings") or {}
        text = await run_in_threadpool(_project_yaml, job, files, settings)
        name = f"{_track(job)}.unbake.yaml"
        return Response(text, media_type="application/x-yaml",
                        headers={"Content-Disposition": _attachment(name)})

    @app.post("/api/jobs/{job_id}/project/load")
    async def load_project(job_id: str, request: Request) -> dict:
        """Body: a YAML project; returns its settings for this job's stems (its paths are ignored)."""
        job, files = done_job(job_id)
        raw = await request.body()
        if len(raw) > 1024 * 1024:
            raise HTTPException(413, "a project file is at most 1 MiB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(400, "the project file is not UTF-8 text") from None
        return {"settings": await run_in_threadpool(_project_settings, job, files, text)}

    return app


# ---------------------------------------------------------------------- helpers


def _static(name: str) -> Response:
    data = resources.files("unbake.studio").joinpath("static", name).read_bytes()
    return Response(data, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


def _public_message(text: str, root: Path) -> str:
    """Messages name files; the data folder's location is nobody's business but the owner's."""
    return text.replace(str(root), "<data>")


def _upload_message(text: str, tmp: Path) -> str:
    """A decoder's complaint about the upload, without the server's file names or errno noise."""
    text = text.replace(f"{tmp}: ", "").replace(f": '{tmp}'", "").replace(str(tmp), "the file")
    text = re.sub(r"\[Errno -?\d+\] ", "", text)
    return f"the file was not accepted: {text}"


def _check_audio(path: Path) -> None:
    """Decode the header and the first block: the file is accepted for what it holds, not its name."""
    from ..audio import info, iter_blocks

    info(path)
    _, _, blocks = iter_blocks(path)
    try:
        next(blocks)
    except StopIteration:
        raise AudioError(f"{path}: contains no audio samples") from None
    finally:
        blocks.close()


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def _clean_name(name: str) -> str:
    """A display name from the client's file name: its last part, printable, at most 120 characters."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE.sub("", name).strip().strip(".")
    return (name or "upload")[:120]


def _track(job) -> str:
    """The song's name for download file names (the display name without its extension)."""
    name = job.name
    for suffix in (".stem.mp4", ".stem.m4a"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "song"
    stem, dot, ext = name.rpartition(".")
    return (stem if dot and 0 < len(ext) <= 5 else name) or "song"


def _attachment(filename: str) -> str:
    from urllib.parse import quote

    ascii_name = filename.encode("ascii", "ignore").decode().replace('"', "") or "download"
    return f'attachment; filename="{ascii_name}"; filename*=UTF-8\'\'{quote(filename)}'


def _format(fmt: str) -> str:
    if fmt not in EXPORT_FORMATS:
        raise HTTPException(400, f"format must be one of {', '.join(EXPORT_FORMATS)}")
    return fmt


async def _json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "the request body must be JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return body


def _convert(src: Path, dst: Path) -> None:
    from ..audio import read_audio, write_audio

    audio, sr = read_audio(src)
    write_audio(dst, audio, sr)


def _spectrogram(src: Path, dst: Path) -> None:
    from ..audio import read_audio

    audio, sr = read_audio(src)
    pipeline.spectrogram_png(audio, sr, dst)


def _zip_stems(job, files: JobFiles, sources: dict[str, Path], fmt: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part")
    folder = _track(job)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for stem, src in sources.items():
                if fmt == pipeline.STEM_FORMAT:
                    zf.write(src, f"{folder}/{stem}.{fmt}")
                else:
                    converted = files.cache / f"stem-{stem}.{fmt}"
                    if not converted.is_file():
                        _convert(src, converted)
                    zf.write(converted, f"{folder}/{stem}.{fmt}")
            meta = json.loads((files.stems_dir / "unbake.json").read_text())
            meta["files"] = {s: f"{s}.{fmt}" for s in sources}
            zf.writestr(f"{folder}/unbake.json", json.dumps(meta, indent=2))
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)


def _prune_renders(folder: Path, keep: int) -> None:
    if not folder.is_dir():
        return
    renders = sorted((p for p in folder.iterdir() if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in renders[keep:]:
        old.unlink(missing_ok=True)


def model_list() -> list[dict[str, Any]]:
    """The catalogue with, for each model, whether it runs offline (built in, or its files cached)."""
    from ..hub.catalogue import EnsembleEntry, load_catalogue

    cat = load_catalogue()
    rows = []
    for name in cat.names():
        entry = cat.get(name)
        members = [cat.models[m] for m in entry.models] if isinstance(entry, EnsembleEntry) else [entry]
        if all(not m.files for m in members):
            availability = "built in"
        else:
            availability = "cached" if all(_is_cached(m) for m in members) else "download"
        rows.append({"name": name, "sources": list(entry.sources), "description": entry.description,
                     "licence": entry.licence, "availability": availability,
                     "offline": availability != "download"})
    return rows


def _is_cached(entry) -> bool:
    try:
        from ..hub.download import is_cached
    except ImportError:
        return False
    try:
        return bool(is_cached(entry))
    except UnbakeError:
        return False


# ---------------------------------------------------------------------- remix engine


def _render(job, files: JobFiles, settings: dict, target: Path) -> dict:
    """Render the mixer settings through the remix engine into ``target``; returns its meters."""
    from . import remixing

    return remixing.render(files.stems_dir, job.stems, settings, target)


def _project_yaml(job, files: JobFiles, settings: dict) -> str:
    from . import remixing

    return remixing.project_yaml(files.stems_dir, job.stems, settings, name=_track(job))


def _project_settings(job, files: JobFiles, text: str) -> dict:
    from . import remixing

    return remixing.settings_from_project(text, job.stems, files.stems_dir)
