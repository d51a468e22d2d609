"""MUSDB-format training data: a folder of NI ``.stem.mp4`` files, or a folder of track folders
holding one file per stem (``drums.wav`` ...) and optionally ``mixture.wav``. Tracks are decoded
once into an :class:`~unbake.data.cache.AudioCache` and read memory-mapped; the
:class:`ExcerptSampler` draws augmented random excerpts as a pure function of
``(seed, step, rank)``, so training resumes exactly without storing a sampler state beyond
the step."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._common import AUDIO_SUFFIXES, find_dataset_tracks, track_name
from ..errors import AudioError, ConfigError
from .augment import AugmentConfig, apply_augmentations, pitch_tempo, variant_params
from .cache import AudioCache

log = logging.getLogger(__name__)

MUSDB_SOURCES = ("drums", "bass", "other", "vocals")


@dataclass
class Track:
    """One decoded track.

    stems: ``(s, c, t)`` float32 (memory-mapped), in the order of the dataset's ``sources``.
    mixture: ``(c, t)`` the published mixture when the data has one, else ``None`` (the sum of
        the stems is then the mixture).
    variants: pitch/tempo variants of ``stems``, each ``(s, c, t')``.
    """

    name: str
    path: Path
    stems: np.ndarray
    mixture: np.ndarray | None
    samplerate: int
    variants: list[np.ndarray] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.stems.shape[-1])

    def mix(self) -> np.ndarray:
        """``(c, t)``: the published mixture, or the sum of the stems."""
        if self.mixture is not None:
            return np.asarray(self.mixture, dtype=np.float32)
        return np.asarray(self.stems, dtype=np.float32).sum(axis=0)


def find_tracks(root: str | os.PathLike) -> list[Path]:
    """The tracks under ``root`` in name order: ``*.stem.mp4`` files and folders with stem files."""
    return find_dataset_tracks(root)


def _stem_file(folder: Path, name: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        p = folder / f"{name}{suffix}"
        if p.is_file():
            return p
    return None


def decode_track(path: Path, sources: tuple[str, ...], samplerate: int) -> tuple[np.ndarray, dict]:
    """``path`` -> ``(k, c, t)`` float32 with ``k = 1 + s`` (mixture first, zeros when the data
    has none) and metadata; resampled to ``samplerate``."""
    from ..audio import read_audio, read_stems, resample

    if path.is_file():
        streams, sr = read_stems(path)
        has_mix = "mixture" in streams
    else:
        streams, rates = {}, set()
        for name in ("mixture",) + tuple(sources):
            f = _stem_file(path, name)
            if f is None:
                continue
            streams[name], r = read_audio(f)
            rates.add(r)
        if len(rates) > 1:
            raise AudioError(f"{path}: stem files have different sample rates {sorted(rates)}")
        sr = rates.pop() if rates else samplerate
        has_mix = "mixture" in streams
    missing = [s for s in sources if s not in streams]
    if missing:
        raise AudioError(f"{path}: lacks stems {missing} (has {sorted(streams)})")
    channels = {a.shape[0] for a in streams.values()}
    if len(channels) != 1:
        raise AudioError(f"{path}: streams have different channel counts")
    n = min(a.shape[-1] for a in streams.values())
    c = channels.pop()
    mix = streams["mixture"][:, :n] if has_mix else np.zeros((c, n), np.float32)
    arr = np.stack([mix] + [streams[s][:, :n] for s in sources]).astype(np.float32)
    if sr != samplerate:
        arr = np.stack([resample(a, sr, samplerate) for a in arr])
    return arr, {"names": ["mixture", *sources], "has_mixture": has_mix, "samplerate": samplerate}


def load_tracks(paths: list[Path], sources: tuple[str, ...], samplerate: int, cache: AudioCache,
                *, augment: AugmentConfig | None = None, seed: int = 0) -> list[Track]:
    """Decode (or read from the cache) every track, and precompute its pitch/tempo variants.

    Logs every track as it is ready, with the cache's disk use so far and the expected total
    (decoding and variants take minutes on a large set; the cache holds float32 audio)."""
    tracks = []
    extra = f"{','.join(sources)}@{samplerate}"
    variants = augment.pitch_tempo_variants if augment is not None else 0
    log.info("preparing %d tracks in %s (decoded once%s, then read from the cache)", len(paths), cache.root,
             f", plus {variants} pitch/tempo variant(s) each" if variants else "")
    used = 0
    for i, path in enumerate(paths):
        arr, meta = cache.get(path, lambda p: decode_track(p, sources, samplerate), extra=extra)
        if tuple(meta["names"][1:]) != tuple(sources):
            raise ConfigError(f"cache entry for {path} holds {meta['names']}, expected {sources}")
        used += arr.nbytes
        name = track_name(path)
        track = Track(name, path, arr[1:], arr[0] if meta["has_mixture"] else None, samplerate)
        for v in range(variants):
            stretch, pitch = variant_params(seed, name, v, augment)
            track.variants.append(cache.variant(
                path, f"{v}_{stretch:.4f}_{pitch:+.1f}",
                lambda: pitch_tempo(np.asarray(track.stems), samplerate, stretch, pitch), extra=extra))
            used += track.variants[-1].nbytes
        tracks.append(track)
        log.info("prepared %d/%d tracks (%s): cache %.1f MB, about %.1f MB when done", i + 1, len(paths), name,
                 used / 1e6, used / (i + 1) * len(paths) / 1e6)
    return tracks


def split_tracks(paths: list[Path], valid_every: int, valid_count: int) -> tuple[list[Path], list[Path]]:
    """Fixed held-out rule: in name order, tracks number 0, ``valid_every``, 2·``valid_every`` ...
    (at most ``valid_count``) are validation, the rest training."""
    if valid_count <= 0:
        return list(paths), []
    if valid_every <= 0:
        raise ConfigError("data.valid_every must be positive")
    chosen = set(list(range(0, len(paths), valid_every))[:valid_count])
    valid = [p for i, p in enumerate(paths) if i in chosen]
    train = [p for i, p in enumerate(paths) if i not in chosen]
    if not train:
        raise ConfigError("no training tracks left after the validation split")
    return train, valid


def fold_split(paths: list[Path], folds: int, fold: int) -> tuple[list[Path], list[Path]]:
    """k-fold rule: in name order, track ``i`` is validation in fold ``i % folds`` and training
    in every other fold, so the folds' validation sets partition the tracks."""
    if folds < 2 or not 0 <= fold < folds:
        raise ConfigError(f"k-fold split needs folds >= 2 and 0 <= fold < folds, got fold {fold} of {folds}")
    train = [p for i, p in enumerate(paths) if i % folds != fold]
    valid = [p for i, p in enumerate(paths) if i % folds == fold]
    if not train or not valid:
        raise ConfigError(f"fold {fold} of {folds} leaves no training or no validation tracks")
    return train, valid


class ExcerptSampler:
    """Random augmented excerpts from ``tracks``.

    ``batch(step, rank, size)`` returns ``(mix (b, c, t), stems (b, s, c, t))`` float32 with the
    mixture equal to the sum of the stems, drawn from a generator seeded by
    ``(seed, step, rank)`` only: the same call always gives the same batch, whatever happened
    before (which is what makes resuming exact and ranks of a data-parallel run disjoint).

    ``extra_p``: the probability that a pick (a whole excerpt, or one stem of a cross-song remix)
    comes from ``tracks[extra_from:]`` (e.g. a synthetic set), the rest from ``tracks[:extra_from]``;
    ``None`` picks uniformly over all tracks, so a large extra set would outweigh the real one.
    ``extra_stems`` (stem indices; ``None``: all) are the only stems ever taken from the extra
    tracks: an excerpt drawn from an extra track takes its other stems from regular tracks.
    """

    def __init__(self, tracks: list[Track], segment_samples: int, augment: AugmentConfig,
                 seed: int = 0, sample_rate: int = 44100, extra_from: int | None = None,
                 extra_p: float | None = None, extra_stems: tuple[int, ...] | None = None) -> None:
        if not tracks:
            raise ConfigError("no training tracks")
        if extra_p is not None:
            if extra_from is None or not 0 <= extra_from <= len(tracks):
                raise ConfigError(f"extra_p needs the index where the extra tracks start, got {extra_from}")
            if not 0.0 <= extra_p <= 1.0:
                raise ConfigError(f"extra_p must be in [0, 1], got {extra_p}")
            if (extra_p > 0 and extra_from == len(tracks)) or (extra_p < 1 and extra_from == 0):
                raise ConfigError(f"extra_p = {extra_p} draws from a group without tracks "
                                  f"({extra_from} regular, {len(tracks) - extra_from} extra)")
        short = [t.name for t in tracks if t.length < segment_samples]
        if short:
            raise ConfigError(f"tracks shorter than the training segment ({segment_samples} samples): {short[:5]}")
        self.tracks = tracks
        self.segment_samples = int(segment_samples)
        self.augment = augment
        self.seed = int(seed)
        self.sample_rate = int(sample_rate)
        self.n_sources = int(tracks[0].stems.shape[0])
        self.extra_from = extra_from
        self.extra_p = extra_p
        if extra_stems is not None:
            if extra_from is None or extra_from == 0:
                raise ConfigError("extra_stems needs regular tracks to take the other stems from")
            if not set(extra_stems) <= set(range(self.n_sources)):
                raise ConfigError(f"extra_stems {list(extra_stems)} outside the {self.n_sources} stems")
        self.extra_stems = None if extra_stems is None else frozenset(extra_stems)
        # the variants a stem may come from: (track, variant) with variant -1 for the original
        self._variant_ok = [[v for v in range(len(t.variants)) if t.variants[v].shape[-1] >= segment_samples]
                            for t in tracks]

    def _source_array(self, ti: int, vi: int) -> np.ndarray:
        t = self.tracks[ti]
        return t.stems if vi < 0 else t.variants[vi]

    def _pick(self, rng: np.random.Generator, regular: bool = False) -> tuple[int, int]:
        if regular:
            ti = int(rng.integers(self.extra_from))
        elif self.extra_p is None:
            ti = int(rng.integers(len(self.tracks)))
        elif rng.random() < self.extra_p:
            ti = self.extra_from + int(rng.integers(len(self.tracks) - self.extra_from))
        else:
            ti = int(rng.integers(self.extra_from))
        vi = -1
        ok = self._variant_ok[ti]
        if ok and rng.random() < self.augment.pitch_tempo_p:
            vi = int(ok[int(rng.integers(len(ok)))])
        return ti, vi

    def example(self, rng: np.random.Generator) -> np.ndarray:
        """One augmented example ``(s, c, t)``."""
        seg = self.segment_samples
        remix = rng.random() < self.augment.remix_p
        out = []
        if remix:
            for s in range(self.n_sources):
                ti, vi = self._pick(rng, regular=self.extra_stems is not None and s not in self.extra_stems)
                arr = self._source_array(ti, vi)
                start = int(rng.integers(arr.shape[-1] - seg + 1))
                out.append(np.asarray(arr[s, :, start:start + seg]))
            stems = np.stack(out)
        else:
            ti, vi = self._pick(rng)
            arr = self._source_array(ti, vi)
            start = int(rng.integers(arr.shape[-1] - seg + 1))
            stems = np.asarray(arr[:, :, start:start + seg])
            if self.extra_stems is not None and ti >= self.extra_from:
                stems = np.array(stems)  # a copy: the stems replaced below must not touch the cache
                for s in set(range(self.n_sources)) - self.extra_stems:
                    ri, rv = self._pick(rng, regular=True)
                    other = self._source_array(ri, rv)
                    o = int(rng.integers(other.shape[-1] - seg + 1))
                    stems[s] = other[s, :, o:o + seg]
        return apply_augmentations(np.array(stems, dtype=np.float32), rng, self.augment, self.sample_rate)

    def batch_stems(self, step: int, rank: int, size: int) -> np.ndarray:
        """The stems ``(b, s, c, t)`` of batch ``(step, rank)``."""
        rng = np.random.default_rng([self.seed, int(step), int(rank)])
        return np.stack([self.example(rng) for _ in range(size)])

    def batch(self, step: int, rank: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        stems = self.batch_stems(step, rank, size)
        return stems.sum(axis=1), stems


class BatchPrefetcher:
    """The batches of ``sampler`` for consecutive steps, prepared ahead by ``workers`` threads:
    the same arrays as ``sampler.batch_stems(step, rank, size)``.

    Threads, not processes: the work is array slicing and arithmetic (numpy) and effect chains
    (pedalboard), which release the GIL, and a process forked from a training process that runs
    other threads can deadlock on a lock one of them held (seen in a test run), while a spawned
    one would need the tracks pickled. At most ``ahead`` batches wait in memory.
    """

    def __init__(self, sampler: ExcerptSampler, workers: int, rank: int, size: int, end: int,
                 ahead: int | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if workers < 1:
            raise ConfigError(f"a prefetcher needs at least one worker, got {workers}")
        self.sampler, self.rank, self.size = sampler, int(rank), int(size)
        self.ahead = int(ahead or 2 * workers)
        self.end = int(end)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="unbake-batches")
        self._pending: dict = {}
        self._next: int | None = None  # the next step to hand to a worker

    def get(self, step: int) -> np.ndarray:
        """The stems of ``step``'s batch ``(b, s, c, t)``."""
        step = int(step)
        if not 0 <= step < self.end:
            raise ValueError(f"step {step} outside the prefetched range [0, {self.end})")
        if self._next is None or step not in self._pending:
            # first call, or a jump (resume): whatever was prepared is for other steps
            for fut in self._pending.values():
                fut.cancel()
            self._pending.clear()
            self._next = step
        for s in [s for s in self._pending if s < step]:  # skipped steps
            self._pending.pop(s).cancel()
        while self._next < min(step + self.ahead, self.end):
            self._pending[self._next] = self._pool.submit(self.sampler.batch_stems, self._next, self.rank,
                                                          self.size)
            self._next += 1
        return self._pending.pop(step).result()  # re-raises a worker's error here

    def close(self) -> None:
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "BatchPrefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
