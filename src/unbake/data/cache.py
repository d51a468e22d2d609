"""Decoded-audio cache for training: every track is decoded once to a float32 ``.npy`` array and
memory-mapped afterwards, so an epoch costs array slicing instead of AAC decoding. Slow
pitch/tempo variants are computed once per (track, variant) and cached the same way."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .._common import atomic_path, sweep_stale_parts, write_text_atomic
from ..errors import AudioError, ConfigError

CACHE_VERSION = 1


def _key(path: Path, extra: str = "") -> str:
    """A cache key that changes when the source file changes (path, size, mtime)."""
    st = path.stat()
    text = f"v{CACHE_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{extra}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` under a temporary name, then rename: a reader never sees half a file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)




class AudioCache:
    """Arrays under ``root/<key>/``: ``audio.npy`` of shape ``(k, c, t)`` float32 (``k`` streams
    in the order of ``meta.json``'s ``names``) and ``var_<i>.npy`` for augmented variants."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def track_dir(self, source: Path, extra: str = "") -> Path:
        return self.root / _key(source, extra)

    def get(self, source: Path, decode, *, extra: str = "") -> tuple[np.ndarray, dict]:
        """The memory-mapped ``(k, c, t)`` array of ``source`` and its metadata, decoding with
        ``decode(source) -> (array (k, c, t), meta dict)`` on a miss."""
        folder = self.track_dir(source, extra)
        arr_path, meta_path = folder / "audio.npy", folder / "meta.json"
        if not (arr_path.is_file() and meta_path.is_file()):
            sweep_stale_parts(folder)  # what a killed earlier decode left half-written
            array, meta = decode(source)
            array = np.ascontiguousarray(array, dtype=np.float32)
            if array.ndim != 3:
                raise AudioError(f"{source}: decoded array must be (streams, channels, time), got {array.shape}")
            atomic_save_npy(arr_path, array)
            # metadata last: its presence marks a complete entry
            write_text_atomic(meta_path, json.dumps(dict(meta, source=str(source)), indent=1))
        try:
            meta = json.loads(meta_path.read_text())
            array = np.load(arr_path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cache entry {folder} is unreadable ({exc}); delete it to rebuild") from exc
        return array, meta

    def variant(self, source: Path, index: int | str, compute, *, extra: str = "") -> np.ndarray:
        """The memory-mapped variant ``index`` of ``source``, computed once with ``compute()``."""
        path = self.track_dir(source, extra) / f"var_{index}.npy"
        if not path.is_file():
            atomic_save_npy(path, np.ascontiguousarray(compute(), dtype=np.float32))
        return np.load(path, mmap_mode="r")
