"""Augmentations for scarce separation data. Each acts on the stems of one example,
``(s, c, t)`` float32, draws from a ``numpy.random.Generator`` it is given (so a seed fixes
everything) and keeps the stem axis, so the mixture is always the sum of the returned stems."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """What the sampler does to each example.

    remix_p: probability that an example takes each stem from an independently chosen track
        (cross-song remixing: the most useful augmentation with little data).
    gain_db: per-stem gain drawn uniformly from ``[gain_db[0], gain_db[1]]`` dB.
    channel_swap_p / polarity_flip_p: per-stem probabilities of swapping left/right and of
        negating the signal.
    pitch_tempo_p: probability of reading a stem from a precomputed pitch/tempo variant.
    pitch_tempo_variants: how many variants per track are precomputed (0 disables).
    tempo_range / pitch_semitones: ranges the variants' stretch factor and pitch shift come from.
    silence_p: probability that a stem is replaced by silence (teaches empty stems).
    """

    remix_p: float = 0.0
    gain_db: tuple[float, float] = (0.0, 0.0)
    channel_swap_p: float = 0.0
    polarity_flip_p: float = 0.0
    pitch_tempo_p: float = 0.0
    pitch_tempo_variants: int = 0
    tempo_range: tuple[float, float] = (0.9, 1.1)
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    silence_p: float = 0.0

    def __post_init__(self) -> None:
        for name in ("remix_p", "channel_swap_p", "polarity_flip_p", "pitch_tempo_p", "silence_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"augment.{name} must be a probability in [0, 1], got {p}")
        if self.gain_db[0] > self.gain_db[1]:
            raise ConfigError(f"augment.gain_db must be [low, high], got {list(self.gain_db)}")
        if self.pitch_tempo_variants < 0:
            raise ConfigError("augment.pitch_tempo_variants must be >= 0")
        if self.tempo_range[0] <= 0 or self.tempo_range[0] > self.tempo_range[1]:
            raise ConfigError(f"augment.tempo_range must be [low, high] > 0, got {list(self.tempo_range)}")

    @classmethod
    def from_dict(cls, raw: dict | None) -> "AugmentConfig":
        raw = dict(raw or {})
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"unknown augment keys {sorted(unknown)}; known: {sorted(known)}")
        for key in ("gain_db", "tempo_range", "pitch_semitones"):
            if key in raw:
                raw[key] = tuple(float(v) for v in raw[key])
        return cls(**raw)


def random_gain(stems: np.ndarray, rng: np.random.Generator, gain_db: tuple[float, float]) -> np.ndarray:
    """``(s, c, t) -> (s, c, t)``: each stem scaled by its own random gain."""
    if gain_db[0] == gain_db[1] == 0.0:
        return stems
    g_db = rng.uniform(gain_db[0], gain_db[1], size=stems.shape[0])
    return stems * (10.0 ** (g_db / 20.0)).astype(np.float32)[:, None, None]


def channel_swap(stems: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """``(s, c, t) -> (s, c, t)``: left and right swapped per stem with probability ``p``."""
    if p <= 0.0 or stems.shape[1] != 2:
        return stems
    swap = rng.random(stems.shape[0]) < p
    out = stems.copy()
    out[swap] = stems[swap][:, ::-1]
    return out


def polarity_flip(stems: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """``(s, c, t) -> (s, c, t)``: each stem negated with probability ``p``."""
    if p <= 0.0:
        return stems
    sign = np.where(rng.random(stems.shape[0]) < p, -1.0, 1.0).astype(np.float32)
    return stems * sign[:, None, None]


def silence(stems: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """``(s, c, t) -> (s, c, t)``: each stem zeroed with probability ``p`` (never all of them)."""
    if p <= 0.0:
        return stems
    mute = rng.random(stems.shape[0]) < p
    if mute.all():
        mute[rng.integers(stems.shape[0])] = False
    return stems * (~mute).astype(np.float32)[:, None, None]


def apply_augmentations(stems: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """The per-stem signal augmentations in a fixed order (the draw order is part of the seed
    contract: changing it changes every later example)."""
    stems = random_gain(stems, rng, cfg.gain_db)
    stems = channel_swap(stems, rng, cfg.channel_swap_p)
    stems = polarity_flip(stems, rng, cfg.polarity_flip_p)
    stems = silence(stems, rng, cfg.silence_p)
    return np.ascontiguousarray(stems, dtype=np.float32)


def variant_params(seed: int, track_name: str, index: int, cfg: AugmentConfig) -> tuple[float, float]:
    """``(stretch_factor, pitch_semitones)`` of variant ``index`` of a track: a pure function of
    the seed and the name, so a cache built once is found again by every run."""
    import zlib

    rng = np.random.default_rng([seed, zlib.crc32(track_name.encode()), index])
    stretch = float(rng.uniform(*cfg.tempo_range))
    pitch = float(np.round(rng.uniform(*cfg.pitch_semitones) * 2) / 2)  # half-semitone grid
    return round(stretch, 4), pitch


def pitch_tempo(stems: np.ndarray, sample_rate: int, stretch: float, semitones: float) -> np.ndarray:
    """``(s, c, t) -> (s, c, t')``: every stem time-stretched by ``stretch`` (> 1 is faster) and
    pitch-shifted by ``semitones`` with the same settings, so the stems still fit together."""
    import pedalboard

    out = [pedalboard.time_stretch(np.ascontiguousarray(x, dtype=np.float32), float(sample_rate),
                                   stretch_factor=stretch, pitch_shift_in_semitones=semitones,
                                   high_quality=False)
           for x in stems]
    n = min(x.shape[-1] for x in out)
    return np.stack([x[:, :n] for x in out]).astype(np.float32)
