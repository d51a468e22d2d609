"""Chunk plans, cross-fade windows and the streaming overlap-add that works for any model.

A chunk plan places windows of ``segment`` samples every ``stride = (1 - overlap) * segment``
samples. Each window's output is weighted by a triangular cross-fade (maximal in the middle)
and the weighted sum is divided by the summed weights, so the weights are normalised exactly:
a model that returns its input reconstructs the input whatever the length, segment or overlap.

Test-time shifts run the same plan on the track delayed by up to half a second (one grid per
shift, offsets drawn from a seeded generator, so results are identical run after run); the
outputs of the grids are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def triangular_window(segment: int, power: float = 1.0) -> np.ndarray:
    """``[1 .. L/2, L - L/2 .. 1] / max`` raised to ``power`` (float64)."""
    half = segment // 2
    w = np.concatenate([np.arange(1, half + 1), np.arange(segment - half, 0, -1)]).astype(np.float64)
    return (w / w.max()) ** power


def shift_offsets(shifts: int, max_shift: int, seed: int = 0) -> list[int]:
    """Delays (samples) of each shift grid; ``shifts=0`` means one grid, not delayed."""
    if shifts <= 0 or max_shift <= 0:
        return [0]
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.integers(0, max_shift, size=shifts)]


@dataclass(frozen=True)
class Chunk:
    grid: int
    start: int      # first sample of the chunk in track coordinates (may be negative)
    length: int     # samples of output the chunk contributes (<= segment)
    window_start: int  # first sample of the model input window (centred context padding)
    window_length: int


def plan_chunks(length: int, segment: int, overlap: float, delays: list[int],
                inside: bool = False) -> list[Chunk]:
    """Every chunk of every grid, ordered by start. Grid ``g`` covers ``[-delays[g], length)``.

    A chunk shorter than ``segment`` (the last one, or a track shorter than a segment) gets a
    window of ``segment`` samples centred on it, padded with silence past the ends of the grid.
    With ``inside`` (models that separate windows of any length as well) no window reaches past
    the grid: a grid shorter than ``segment`` is one window of its own length, and a short last
    chunk's window is moved back to end where the grid ends, so the model hears music, not
    silence, around it.
    """
    if segment <= 0:
        raise ValueError("segment must be positive")
    if not 0.0 <= overlap < 1.0:
        raise ValueError("overlap must be in [0, 1)")
    stride = max(1, int((1 - overlap) * segment))
    chunks: list[Chunk] = []
    for g, delay in enumerate(delays):
        origin = -delay
        span = length + delay
        for off in range(0, span, stride):
            clen = min(segment, span - off)
            start = origin + off
            delta = segment - clen
            if inside:
                wlen = min(segment, span)
                wstart = min(max(start - delta // 2, origin), origin + span - wlen)
                chunks.append(Chunk(g, start, clen, wstart, wlen))
            else:
                chunks.append(Chunk(g, start, clen, start - delta // 2, segment))
    chunks.sort(key=lambda c: (c.start, c.grid))
    return chunks


class _Grid:
    """Accumulates one grid's weighted outputs; hands out samples no later chunk can touch."""

    def __init__(self, shape: tuple[int, int], origin: int) -> None:
        self.shape = shape
        self.base = origin  # track position of buf[..., 0]
        self.acc = np.zeros(shape + (0,), np.float64)
        self.wsum = np.zeros(0, np.float64)

    def add(self, start: int, out: np.ndarray, weight: np.ndarray) -> None:
        end = start + out.shape[-1]
        need = end - self.base
        if need > self.acc.shape[-1]:
            grow = need - self.acc.shape[-1]
            self.acc = np.concatenate([self.acc, np.zeros(self.shape + (grow,))], axis=-1)
            self.wsum = np.concatenate([self.wsum, np.zeros(grow)])
        a = start - self.base
        self.acc[..., a:a + out.shape[-1]] += out * weight
        self.wsum[a:a + out.shape[-1]] += weight

    def pop(self, upto: int) -> np.ndarray:
        """Normalised output for ``[base, upto)``."""
        n = upto - self.base
        if n <= 0:
            return np.zeros(self.shape + (0,))
        out = self.acc[..., :n] / self.wsum[:n]
        self.acc = self.acc[..., n:]
        self.wsum = self.wsum[n:]
        self.base = upto
        return out


class OverlapAdd:
    """Streams chunk outputs in, finished track samples out (in order, from 0 to ``length``).

    ``add(chunk, out)`` takes the model output for the chunk's input window, shaped
    ``(s, c, window_length)``; ``pop_ready(next_start)`` returns the final samples that no chunk
    starting at ``next_start`` or later can change, shaped ``(s, c, n)`` float32.
    """

    def __init__(self, length: int, segment: int, n_stems: int, channels: int, delays: list[int],
                 power: float = 1.0) -> None:
        self.length = length
        self.weight = triangular_window(segment, power)
        self.grids = [_Grid((n_stems, channels), -d) for d in delays]
        self.emitted = 0

    def add(self, chunk: Chunk, out: np.ndarray) -> None:
        trim = chunk.start - chunk.window_start
        part = out[..., trim:trim + chunk.length].astype(np.float64)
        self.grids[chunk.grid].add(chunk.start, part, self.weight[:chunk.length])

    def pop_ready(self, next_start: int | None) -> np.ndarray:
        """``next_start=None`` means no chunk remains."""
        upto = self.length if next_start is None else min(max(next_start, 0), self.length)
        if upto <= self.emitted:
            return np.zeros(self.grids[0].shape + (0,), np.float32)
        total = None
        for grid in self.grids:
            if grid.base < self.emitted:  # drop the part before the track (delay padding)
                grid.pop(self.emitted)
            part = grid.pop(upto)
            total = part if total is None else total + part
        self.emitted = upto
        return (total / len(self.grids)).astype(np.float32)
