"""Chunk plan, cross-fade windows, overlap-add, batching, devices and progress for any model."""

from .apply import DEVICES, apply_model, iter_separate, resolve_device, segment_for, track_statistics
from .backend import BACKENDS, resolve_backend
from .overlap_add import OverlapAdd, plan_chunks, shift_offsets, triangular_window
from .precision import PRECISIONS, resolve_precision
from .sources import ArraySource, NormalizedSource, RawFileSource, RawFileWriter

__all__ = [
    "ArraySource", "BACKENDS", "DEVICES", "PRECISIONS", "NormalizedSource", "OverlapAdd", "RawFileSource", "RawFileWriter",
    "apply_model", "iter_separate", "plan_chunks", "resolve_backend", "resolve_device", "resolve_precision", "segment_for",
    "shift_offsets", "track_statistics", "triangular_window",
]
