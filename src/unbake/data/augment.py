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
    effects_p: per-stem probability of a random effect chain (shelf and peak EQ, band-limiting,
        compression, distortion, reverb: see :func:`stem_effects`), so the model meets other
        productions than the few it trains on.
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
    effects_p: float = 0.0

    def __post_init__(self) -> None:
        for name in ("remix_p", "channel_swap_p", "polarity_flip_p", "pitch_tempo_p", "silence_p",
                     "effects_p"):
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


def _effect_chain(rng: np.random.Generator):
    """A random pedalboard chain, mild enough that the stem stays what it is: EQ always, each of
    band-limiting, compression, distortion and reverb sometimes."""
    import pedalboard as pb

    chain = [pb.LowShelfFilter(cutoff_frequency_hz=float(rng.uniform(80, 400)), gain_db=float(rng.uniform(-6, 6))),
             pb.PeakFilter(cutoff_frequency_hz=float(np.exp(rng.uniform(np.log(300), np.log(5000)))),
                           gain_db=float(rng.uniform(-6, 6)), q=float(rng.uniform(0.5, 2.0))),
             pb.HighShelfFilter(cutoff_frequency_hz=float(rng.uniform(3000, 10000)), gain_db=float(rng.uniform(-6, 6)))]
    if rng.random() < 0.25:
        chain.append(pb.LowpassFilter(cutoff_frequency_hz=float(rng.uniform(4000, 16000))))
    if rng.random() < 0.25:
        chain.append(pb.HighpassFilter(cutoff_frequency_hz=float(rng.uniform(20, 200))))
    if rng.random() < 0.4:
        chain.append(pb.Compressor(threshold_db=float(rng.uniform(-30, -10)), ratio=float(rng.uniform(1.5, 6)),
                                   attack_ms=float(rng.uniform(1, 30)), release_ms=float(rng.uniform(50, 300))))
    if rng.random() < 0.15:
        chain.append(pb.Distortion(drive_db=float(rng.uniform(3, 15))))
    if rng.random() < 0.3:
        chain.append(pb.Reverb(room_size=float(rng.uniform(0.1, 0.7)), wet_level=float(rng.uniform(0.05, 0.3)),
                               dry_level=1.0, width=float(rng.uniform(0.5, 1.0))))
    return pb.Pedalboard(chain)


def stem_effects(stems: np.ndarray, rng: np.random.Generator, p: float, sample_rate: int = 44100) -> np.ndarray:
    """``(s, c, t) -> (s, c, t)``: each stem through its own random effect chain with probability
    ``p``; the output level is matched to the input's (levels are :func:`random_gain`'s job) and
    the length is kept (reverb tails are cut: the excerpt is a window into a longer song)."""
    if p <= 0.0:
        return stems
    out = stems.copy()
    for i in np.flatnonzero(rng.random(stems.shape[0]) < p):
        x = np.ascontiguousarray(stems[i], dtype=np.float32)
        y = _effect_chain(rng)(x, float(sample_rate), reset=True)[:, :x.shape[-1]]
        rms_in, rms_out = float(np.sqrt(np.mean(x ** 2))), float(np.sqrt(np.mean(y ** 2)))
        if rms_out > 1e-8 and np.isfinite(rms_out):
            out[i] = y * (rms_in / rms_out)
    return out


def apply_augmentations(stems: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
                        sample_rate: int = 44100) -> np.ndarray:
    """The per-stem signal augmentations in a fixed order (the draw order is part of the seed
    contract: changing it changes every later example)."""
    stems = stem_effects(stems, rng, cfg.effects_p, sample_rate)
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
