"""Random-access inputs for the engine: a window ``[start, stop)`` of any track, zero outside it.

Windows are asked for in increasing order of ``start``, which lets file-backed sources keep
memory bounded whatever the track's length.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class ArraySource:
    """An in-memory track ``(c, t)`` float32."""

    def __init__(self, audio: np.ndarray) -> None:
        self.audio = np.asarray(audio, dtype=np.float32)
        self.channels, self.length = self.audio.shape

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros((self.channels, stop - start), np.float32)
        a, b = max(start, 0), min(stop, self.length)
        if b > a:
            out[:, a - start:b - start] = self.audio[:, a:b]
        return out


class RawFileSource:
    """A track stored as interleaved float32 frames ``(t, c)`` in a raw file; read with plain
    file reads (not a memory map) so that resident memory stays at one window."""

    def __init__(self, path: str | os.PathLike, channels: int, length: int) -> None:
        self.path = Path(path)
        self.channels = channels
        self.length = length
        self._fh = open(self.path, "rb")

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros((self.channels, stop - start), np.float32)
        a, b = max(start, 0), min(stop, self.length)
        if b > a:
            self._fh.seek(a * self.channels * 4)
            data = np.fromfile(self._fh, dtype=np.float32, count=(b - a) * self.channels)
            out[:, a - start:b - start] = data.reshape(b - a, self.channels).T
        return out

    def close(self) -> None:
        self._fh.close()


class NormalizedSource:
    """``(x - mean) / scale`` inside the track, zeros outside (padding stays silent, as the
    models were trained)."""

    def __init__(self, source, mean: float, scale: float) -> None:
        self.source = source
        self.channels = source.channels
        self.length = source.length
        self.mean = np.float32(mean)
        self.scale = np.float32(scale)

    def read(self, start: int, stop: int) -> np.ndarray:
        out = self.source.read(start, stop)
        a, b = max(start, 0) - start, min(stop, self.length) - start
        if b > a:
            out[:, a:b] = (out[:, a:b] - self.mean) / self.scale
        return out


class RawFileWriter:
    """Appends float32 ``(c, n)`` blocks to a raw interleaved file; tracks peak and length."""

    def __init__(self, path: str | os.PathLike, channels: int) -> None:
        self.path = Path(path)
        self.channels = channels
        self.length = 0
        self.peak = 0.0
        self._fh = open(self.path, "wb")

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if block.shape[1] == 0:
            return
        self.peak = max(self.peak, float(np.abs(block).max()))
        # the file object's own write: ndarray.tofile calls the file's Python methods from C, and
        # a Ctrl-C landing in one of them comes out as a TypeError, or not at all
        self._fh.write(memoryview(np.ascontiguousarray(block.T).reshape(-1)))
        self.length += block.shape[1]

    def close(self) -> None:
        self._fh.close()

    def source(self) -> RawFileSource:
        if not self._fh.closed:
            self._fh.flush()
        return RawFileSource(self.path, self.channels, self.length)
