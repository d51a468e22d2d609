"""Separations kept for reuse: a song separated once by a model is read back afterwards.

Remix and mash-up projects name songs, not stems; separating the same song again for every
render would cost minutes. Entries live under ``<cache root>/separations/<key>`` (the cache root
is ``$UNBAKE_CACHE`` or the user cache folder), keyed by the song's bytes and the model name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

from ._common import atomic_dir, cache_root, sha256_file
from .errors import AudioError
from .stems import PROVENANCE_FILE, StemSet

log = logging.getLogger(__name__)


def separation_cache_dir() -> Path:
    """``<cache root>/separations``: one folder per (song content, model)."""
    return cache_root() / "separations"


def separation_key(song: str | os.PathLike, model: str) -> str:
    """sha256 of the song file's content digest and the model name."""
    try:
        content = sha256_file(song)
    except OSError as exc:
        raise AudioError(f"{song}: cannot read ({exc.strerror or exc})") from exc
    return hashlib.sha256(f"{content}\0model={model}".encode()).hexdigest()


def separate_cached(song: str | os.PathLike, model: str | None = None, *, progress=None) -> StemSet:
    """Stems of ``song`` by ``model`` (default: unbake's default model), separated once and then
    read back from :func:`separation_cache_dir`. Cache entries appear atomically (written to a
    temporary folder, then renamed), so an interrupted separation leaves nothing behind.
    ``progress`` (called with the fraction done) is only called when separating."""
    from .separate import default_model, separate

    model = model or default_model()
    song = Path(song)
    if not song.is_file():
        raise AudioError(f"{song}: no such file")
    folder = separation_cache_dir() / separation_key(song, model)
    if (folder / PROVENANCE_FILE).is_file():
        try:
            log.info("stems of %s from the cache (%s)", song, folder)
            return StemSet.load(folder)
        except AudioError:
            log.warning("cached stems in %s are unreadable; separating again", folder)
            shutil.rmtree(folder, ignore_errors=True)
    stems = separate(song, model=model, progress=progress)
    try:
        with atomic_dir(folder) as tmp:
            stems.save(tmp, format="wav", bit_depth="32f", overwrite=True)
    except OSError as exc:
        log.warning("cannot cache the separation in %s (%s)", folder, exc)
    return stems
