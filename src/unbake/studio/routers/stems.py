"""A finished job's audio: the original, each stem (to play, to download in any export format),
spectrogram pictures, and every stem in one zip."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from .. import pipeline
from ..deps import DoneDep, DoneJob
from ..web import song_name

router = APIRouter(prefix="/api/jobs/{job_id}")

Format = Literal["wav", "flac", "mp3"]
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg"}


@router.get("/original")
async def original(done: DoneDep) -> FileResponse:
    return FileResponse(done.existing(done.files.original, "original"), media_type=MEDIA_TYPES[pipeline.STEM_FORMAT])


@router.get("/stems/{stem}/audio")
async def stem_audio(done: DoneDep, stem: str) -> FileResponse:
    return FileResponse(done.stem_path(stem), media_type=MEDIA_TYPES[pipeline.STEM_FORMAT])


@router.get("/stems/{stem}/download")
async def stem_download(done: DoneDep, stem: str, format: Format = "wav") -> FileResponse:
    path = await run_in_threadpool(converted, done, stem, format)
    return FileResponse(path, media_type=MEDIA_TYPES[format], filename=f"{song_name(done.job)} - {stem}.{format}")


@router.get("/stems/{stem}/spectrogram.png")
async def spectrogram(done: DoneDep, stem: str) -> FileResponse:
    src = done.existing(done.files.original, "original") if stem == "original" else done.stem_path(stem)
    path = done.inside(done.files.cache / f"spectrogram-{stem}.png")
    if not path.is_file():
        await run_in_threadpool(pipeline.spectrogram_png, src, path)
    return FileResponse(path, media_type="image/png")


@router.get("/stems.zip")
async def stems_zip(done: DoneDep, format: Format = "flac") -> FileResponse:
    path = done.inside(done.files.cache / f"stems-{format}.zip")
    if not path.is_file():
        await run_in_threadpool(zip_stems, done, format, path)
    return FileResponse(path, media_type="application/zip",
                        filename=f"{song_name(done.job)} - stems ({format}).zip")


def converted(done: DoneJob, stem: str, fmt: str):
    """The stem's file in ``fmt``: the stored FLAC, or a conversion kept in the job's cache."""
    src = done.stem_path(stem)
    if fmt == pipeline.STEM_FORMAT:
        return src
    path = done.inside(done.files.cache / f"stem-{stem}.{fmt}")
    if not path.is_file():
        pipeline.transcode(src, path)
    return path


def zip_stems(done: DoneJob, fmt: str, dst) -> None:
    """Every stem (in ``fmt``) and the stem set's layout file, in a folder named after the song.
    Files are opened without following links (a link planted in the job folder is refused)."""
    import json
    import zipfile

    from ..._common import atomic_path
    from ...stems import PROVENANCE_FILE

    folder = song_name(done.job)
    with atomic_path(dst, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for stem in done.job.stems:
            with _open_no_follow(converted(done, stem, fmt)) as src, zf.open(f"{folder}/{stem}.{fmt}", "w") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        with _open_no_follow(done.inside(done.files.stems_dir / PROVENANCE_FILE)) as fh:
            meta = json.loads(fh.read())
        meta["files"] = {s: f"{s}.{fmt}" for s in done.job.stems}
        zf.writestr(f"{folder}/unbake.json", json.dumps(meta, indent=2))


def _open_no_follow(path):
    import os

    from fastapi import HTTPException

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        raise HTTPException(404, "stem file missing") from None
    return os.fdopen(fd, "rb")
