"""A finished job's audio: the original, each stem (to play, to download in any export format),
spectrogram pictures, every stem in one zip, an NI Stems file for DJ software, and MIDI of a stem."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
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


@router.get("/stems.stem.mp4")
async def ni_stems_file(done: DoneDep, codec: Literal["aac", "alac"] = "aac") -> FileResponse:
    path = done.inside(done.files.cache / f"stems-{codec}.stem.mp4")
    if not path.is_file():
        await run_in_threadpool(write_ni_stems, done, codec, path)
    return FileResponse(path, media_type="audio/mp4", filename=f"{song_name(done.job)}.stem.mp4")


@router.get("/stems/{stem}/midi")
async def stem_midi(done: DoneDep, stem: str, kind: Literal["bass", "melody", "drums"] | None = None) -> FileResponse:
    from ...transcribe import KIND_OF_STEM

    kind = kind or KIND_OF_STEM.get(stem)
    if kind is None:
        raise HTTPException(400, f"say how to transcribe {stem!r}: kind=bass, melody or drums")
    path = done.inside(done.files.cache / f"midi-{stem}-{kind}.mid")
    if not path.is_file():
        await run_in_threadpool(transcribe_stem, done, stem, kind, path)
    return FileResponse(path, media_type="audio/midi", filename=f"{song_name(done.job)} - {stem}.mid")


def write_ni_stems(done: DoneJob, codec: str, dst) -> None:
    """The original as the master stream and the NI four stems, decoded and encoded block by
    block (memory does not grow with the song); a model with other stems is refused."""
    from ...audio import iter_blocks
    from ...audio.stemsfile import StemsFileWriter, plan_slots
    from ...errors import OutputError

    try:
        slots = plan_slots(done.job.stems)
    except OutputError as exc:
        raise HTTPException(409, str(exc)) from None
    original = done.existing(done.files.original, "original")
    opened = [iter_blocks(original)] + [iter_blocks(done.stem_path(parts[0])) for parts in slots.values()]
    sample_rate, channels = opened[0][0], opened[0][1]
    with StemsFileWriter(dst, sample_rate, channels, names=list(slots), codec=codec, overwrite=True) as writer:
        for blocks in zip(*(blocks for _, _, blocks in opened)):
            n = min(b.shape[1] for b in blocks)
            writer.write([b[:, :n] for b in blocks])


def transcribe_stem(done: DoneJob, stem: str, kind: str, dst) -> None:
    from ...audio import read_audio
    from ...transcribe import transcribe

    audio, sample_rate = read_audio(done.stem_path(stem))
    transcribe(audio, sample_rate, kind).write_midi(dst)


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
