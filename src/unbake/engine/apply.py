"""Run any separation model over a track of any length: chunking, batching, devices, shifts,
progress. Knows the model only through the contract in :mod:`unbake.models.base`."""

from __future__ import annotations

import itertools
import logging
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import ModelError, UnbakeError
from ..models.base import check_output
from .allocator import keep_freed_memory
from .backend import for_backend
from .overlap_add import OverlapAdd, plan_chunks, shift_offsets
from .precision import autocast, for_precision, resolve_precision
from .sources import ArraySource, NormalizedSource

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_SEGMENT_S = 10.0
ProgressFn = Callable[[int, int], None]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.split(":")[0] not in DEVICES[1:]:
        raise UnbakeError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UnbakeError("device 'cuda' asked for, but no CUDA GPU is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UnbakeError("device 'mps' asked for, but Apple MPS is not available")
    return torch.device(name)


def segment_for(model, segment_samples: int | None = None) -> int:
    """The chunk length: the caller's, else the model's preference, capped by the model's limit."""
    seg = segment_samples or getattr(model, "segment_samples", None) or int(DEFAULT_SEGMENT_S * model.samplerate)
    limit = getattr(model, "max_segment_samples", None)
    if limit and seg > limit:
        log.warning("segment of %d samples exceeds this model's limit; using %d", seg, limit)
        seg = limit
    if seg <= 0:
        raise UnbakeError("segment must be positive")
    return int(seg)


def iter_separate(model, source, *, segment_samples: int | None = None, overlap: float = 0.25,
                  shifts: int = 0, seed: int = 0, batch_size: int = 1,
                  device: str | torch.device | None = "cpu", progress: ProgressFn | None = None,
                  normalize: tuple[float, float] | None = None,
                  precision: str = "float32", backend: str | None = None) -> Iterator[np.ndarray]:
    """Separate ``source`` (an object with ``channels``, ``length`` and ``read(start, stop)``)
    and yield the stems in order as float32 blocks ``(s, c, n)``; the blocks add up to
    ``source.length`` samples. Memory is bounded by a few segments whatever the length.

    ``normalize=(mean, scale)`` standardises the track before the model and undoes it after.
    ``precision`` is one of :data:`~unbake.engine.precision.PRECISIONS`: ``float32`` is exact,
    the others trade a little accuracy for speed (see :mod:`unbake.engine.precision`).
    ``backend`` is ``auto``, ``torch`` or ``openvino`` (None: ``$UNBAKE_BACKEND``, else
    ``auto``; see :mod:`unbake.engine.backend`).
    """
    if not 0.0 <= overlap < 1.0:
        raise UnbakeError(f"overlap must be in [0, 1), got {overlap}")
    if shifts < 0:
        raise UnbakeError("shifts must be >= 0")
    if source.channels != model.audio_channels:
        raise ModelError(f"model expects {model.audio_channels} channel(s), input has {source.channels}")
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    keep_freed_memory()
    seg = segment_for(model, segment_samples)
    delays = shift_offsets(shifts, int(0.5 * model.samplerate), seed)
    chunks = plan_chunks(source.length, seg, overlap, delays, inside=bool(getattr(model, "variable_length", False)))
    n_stems = len(model.sources)
    ola = OverlapAdd(source.length, seg, n_stems, source.channels, delays)
    src = NormalizedSource(source, *normalize) if normalize else source
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    params = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    if params is not None and params.device != dev:
        model.to(dev)
    runner = for_backend(model, prec, dev, backend)
    if runner is model:
        runner = for_precision(model, prec)
    try:
        i = 0
        while i < len(chunks):
            batch = chunks[i:i + max(1, batch_size)]
            # one call takes windows of one length (they differ only for variable-length models
            # on grids shorter than a segment, as with test-time shifts of a short track)
            batch = list(itertools.takewhile(lambda c: c.window_length == batch[0].window_length, batch))
            x = np.stack([src.read(c.window_start, c.window_start + c.window_length) for c in batch])
            xt = torch.from_numpy(x).to(dev)
            with torch.inference_mode(), autocast(prec, dev):
                y = runner(xt)
            check_output(model, xt, y)
            y = y.detach().to("cpu", torch.float32).numpy()
            for c, out in zip(batch, y):
                ola.add(c, out)
            nxt = chunks[i + len(batch)].start if i + len(batch) < len(chunks) else None
            block = ola.pop_ready(nxt)
            if normalize and block.shape[-1]:
                block = block * np.float32(normalize[1]) + np.float32(normalize[0])
            if block.shape[-1]:
                yield block
            i += len(batch)
            if progress is not None:
                progress(min(i, len(chunks)), len(chunks))
    finally:
        if was_training and hasattr(model, "train"):
            model.train()


def apply_model(model, mix, *, segment_samples: int | None = None, overlap: float = 0.25,
                shifts: int = 0, seed: int = 0, batch_size: int = 1,
                device: str | torch.device | None = "cpu", progress: ProgressFn | None = None,
                normalize: tuple[float, float] | None = None, precision: str = "float32",
                backend: str | None = None):
    """Separate an in-memory mix: ``(c, t)`` -> ``(s, c, t)`` or ``(b, c, t)`` -> ``(b, s, c, t)``.

    Accepts a numpy array or a torch tensor and returns the same kind. The input is never
    modified.
    """
    is_torch = isinstance(mix, torch.Tensor)
    arr = mix.detach().cpu().float().numpy() if is_torch else np.asarray(mix, dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise UnbakeError(f"mix must be (channels, time) or (batch, channels, time); got {arr.shape}")
    items = arr[None] if arr.ndim == 2 else arr
    outs = []
    for item in items:
        blocks = list(iter_separate(model, ArraySource(item), segment_samples=segment_samples,
                                    overlap=overlap, shifts=shifts, seed=seed, batch_size=batch_size,
                                    device=device, progress=progress, normalize=normalize,
                                    precision=precision, backend=backend))
        outs.append(np.concatenate(blocks, axis=-1))
    out = np.stack(outs)
    if arr.ndim == 2:
        out = out[0]
    return torch.from_numpy(out) if is_torch else out


def track_statistics(blocks) -> tuple[float, float]:
    """Mean and (unbiased) standard deviation of the mono mix, accumulated block by block
    (what Demucs-trained models expect to be standardised with)."""
    n = 0
    mean = 0.0
    m2 = 0.0
    for b in blocks:
        mono = np.asarray(b, dtype=np.float64).mean(axis=0)
        k = mono.size
        if k == 0:
            continue
        bm = mono.mean()
        bm2 = ((mono - bm) ** 2).sum()
        delta = bm - mean
        tot = n + k
        mean += delta * k / tot
        m2 += bm2 + delta * delta * n * k / tot
        n = tot
    std = (m2 / (n - 1)) ** 0.5 if n > 1 else 0.0
    return float(mean), float(std)
