"""Receiving a song: streamed to a folder under ``incoming/`` with the size limit held while it
arrives, accepted for what it holds (a decodable first block, a duration within the limit read
from its header), then moved into ``jobs/`` in one rename."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import AsyncIterator

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool

from .._common import atomic_path
from ..errors import AudioError
from .jobs import new_job_id
from .services import Studio
from .web import mib


class TooLong(AudioError):
    """The song is longer than the studio's ``--max-duration``."""


async def receive(studio: Studio, chunks: AsyncIterator[bytes]) -> str:
    """Store an upload as a new job folder; returns the job id. Raises HTTPException with the
    status a client should see (400 empty, 413 too large or too long, 415 not audio)."""
    job_id = new_job_id()
    folder = studio.root / "incoming" / job_id
    folder.mkdir(parents=True)
    try:
        with atomic_path(folder / "input") as tmp:
            size = 0
            with open(tmp, "wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > studio.max_upload_bytes:
                        raise HTTPException(413, f"the file is larger than the {mib(studio.max_upload_bytes)} upload limit")
                    await run_in_threadpool(fh.write, chunk)
            if size == 0:
                raise HTTPException(400, "the upload is empty")
            try:
                await run_in_threadpool(check_audio, tmp, studio.max_duration_s)
            except TooLong as exc:
                raise HTTPException(413, str(exc)) from None
            except AudioError as exc:
                raise HTTPException(415, upload_message(str(exc), tmp)) from None
        folder.rename(studio.files_of(job_id).root)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return job_id


def check_audio(path: Path, max_duration_s: float | None = None) -> None:
    """Decode the header and the first block: the file is accepted for what it holds, not its
    name; a song longer than ``max_duration_s`` is refused from its header (or, where the header
    does not say, by counting decoded frames up to the limit)."""
    from ..audio import info, iter_blocks

    meta = info(path)
    sample_rate, _, blocks = iter_blocks(path)
    try:
        frames = next(blocks).shape[1]
        if max_duration_s is None:
            return
        if math.isfinite(meta.duration_s):
            if meta.duration_s > max_duration_s:
                raise TooLong(too_long_message(meta.duration_s, max_duration_s))
            return
        for block in blocks:
            frames += block.shape[1]
            if frames > max_duration_s * sample_rate:
                raise TooLong(too_long_message(None, max_duration_s))
    except StopIteration:
        raise AudioError(f"{path}: contains no audio samples") from None
    finally:
        blocks.close()


def too_long_message(duration_s: float | None, max_duration_s: float) -> str:
    length = f"is {clock(duration_s)} long" if duration_s is not None else f"is longer than {clock(max_duration_s)}"
    return (f"the song {length}; this studio takes songs up to {clock(max_duration_s)} "
            "(start it with `unbake studio --max-duration MINUTES` to change that)")


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def upload_message(text: str, tmp: Path) -> str:
    """A decoder's complaint about the upload, without the server's file names or errno noise."""
    text = text.replace(f"{tmp}: ", "").replace(f": '{tmp}'", "").replace(str(tmp), "the file")
    text = re.sub(r"\[Errno -?\d+\] ", "", text)
    return f"the file was not accepted: {text}"
