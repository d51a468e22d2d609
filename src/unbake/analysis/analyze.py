"""Tempo, beat and key analysis of a mix or a stem, for matching songs in a mash-up.

Needs no extra: :mod:`unbake.audio.features` computes librosa's onset envelope, tempogram and
chroma as librosa does.

Method
------
* Everything is analysed as a mono fold-down at :data:`ANALYSIS_RATE_HZ` (22.05 kHz): beat and
  key cues live well below 11 kHz and this halves the work.
* **Tempo**: librosa's spectral-flux onset envelope and its tempogram (as
  :mod:`unbake.audio.features` computes them) with a log-normal tempo prior, then Ellis's
  dynamic-programming beat tracker (:mod:`.beats`, as librosa runs it) locked to that tempo.
  The reported BPM is refined from the tracked beats (least-squares line through sub-frame beat
  times), because the tempogram alone is quantised to whole autocorrelation lags
  (about +-2 BPM at 140 BPM).
* **Octave errors** (reporting half or double the tempo) are the usual failure of tempo
  estimators: a periodic pulse correlates with itself at every multiple of its period, so the
  evidence for 70 and 140 BPM is nearly the same for a 140 BPM song. The guard is the prior
  (log-normal, centred on ``prior_bpm`` = 120 BPM, one octave wide), which picks the metrical
  level nearest the centre of popular-music tempi when the evidence is even, plus a hard
  ``bpm_range`` (default 60-200 BPM): a result outside it is folded back by octaves. One more
  check catches the common "counted the hi-hats" error: when a tempo above the prior's centre
  has every other tracked beat clearly weaker than its neighbours (median onset strength
  :data:`ACCENT_RATIO` times lower: off-beats, not beats), the tempo is halved. Kick and snare
  alternating at the true tempo stay well under that ratio (below 2.3 on the 24 MUSDB previews
  tried). A caller who knows better (half-time hip-hop, drum and bass) moves the prior or the
  range.
* **Key**: the Krumhansl–Schmuckler method: the time-averaged CQT chroma is correlated (Pearson)
  with the 24 rotations of the Krumhansl–Kessler probe-tone profiles (C major ... B minor); the
  best correlation wins and is reported as ``key_confidence``. Krumhansl–Kessler profiles were
  chosen over Temperley's or Albrecht–Shanahan's because they were measured on listeners rather
  than counted in scores, which suits a chroma of real recordings (overtones and all); the key
  of music that is not tonal in the major/minor sense is still forced into one of the 24, and a
  low confidence (below about 0.5) says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidAudioError

ANALYSIS_RATE_HZ = 22050
ONSET_HOP = 256  # 11.6 ms frames: fine enough for beat times, cheap enough for whole songs
CHROMA_HOP = 2048
# one half of the tracked beats this many times stronger than the other: tracked at double time
ACCENT_RATIO = 3.0
MIN_BEATS = 3
# The spectral-flux envelope peaks after the attack that causes it (the analysis window must
# fill with the new sound first): tracked beats came out 13 ms late on clicks, 17 ms on a drum
# loop and 20 ms on piano chords, so beat times are moved this much earlier.
ONSET_LATENCY_S = 0.015

PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_NAME_TO_PC = {n: i for i, n in enumerate(PITCH_NAMES)}
_NAME_TO_PC.update({"Db": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11, "B#": 0, "Fb": 4, "E#": 5})

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass(frozen=True)
class Key:
    """A musical key: ``tonic`` pitch class (0 = C) and ``mode`` (major | minor)."""

    tonic: int
    mode: str

    @property
    def name(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"

    def relative(self) -> "Key":
        """The relative key sharing this key's notes (C major <-> A minor)."""
        if self.mode == "major":
            return Key((self.tonic - 3) % 12, "minor")
        return Key((self.tonic + 3) % 12, "major")

    def __str__(self) -> str:
        return self.name


def parse_key(text: str) -> Key:
    """``"D minor"``, ``"F# major"``, ``"Bbm"``, ``"Am"``, ``"C"`` -> :class:`Key`."""
    s = str(text).strip()
    mode = "major"
    low = s.lower()
    for suffix, m in ((" major", "major"), (" minor", "minor"), (" maj", "major"), (" min", "minor"),
                      ("maj", "major"), ("min", "minor"), ("m", "minor")):
        if low.endswith(suffix) and len(s) > len(suffix):
            s, mode = s[: -len(suffix)].strip(), m
            break
    name = s[:1].upper() + s[1:].replace("♯", "#").replace("♭", "b")
    if name not in _NAME_TO_PC:
        raise ValueError(f"not a key: {text!r} (write e.g. 'D minor', 'F# major', 'Am')")
    return Key(_NAME_TO_PC[name], mode)


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyze` finds. ``beats_s`` are beat times in seconds from the start."""

    bpm: float
    beats_s: tuple[float, ...]
    key: Key
    key_confidence: float
    duration_s: float
    key_scores: dict[str, float] = field(default_factory=dict, compare=False, repr=False)
    # (time s, BPM) from the tempo-following tracker (:mod:`.tempo`), and the beats that start bars
    tempo_curve: tuple[tuple[float, float], ...] = ()
    downbeats_s: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        top = sorted(self.key_scores.items(), key=lambda kv: -kv[1])[:3]
        return {
            "bpm": round(self.bpm, 2) if np.isfinite(self.bpm) else None,  # None: no beat found
            "beats": [round(b, 4) for b in self.beats_s],
            "key": self.key.name,
            "key_confidence": round(self.key_confidence, 3),
            "key_candidates": [{"key": k, "correlation": round(v, 3)} for k, v in top],
            "duration_s": round(self.duration_s, 3),
            "tempo_curve": [[round(t, 3), round(b, 2)] for t, b in self.tempo_curve],
            "downbeats": [round(b, 4) for b in self.downbeats_s],
        }


def to_mono_analysis_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``(c, t)`` or ``(t,)`` at ``sample_rate`` -> mono float32 ``(t',)`` at 22.05 kHz."""
    from ..audio.dsp import as_channels_first, resample

    x = as_channels_first(audio)
    mono = x.mean(axis=0, keepdims=True)
    return resample(mono, int(sample_rate), ANALYSIS_RATE_HZ)[0]


def analysis_mono(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """:func:`to_mono_analysis_rate`, refusing silence (:class:`InvalidAudioError`): what
    :func:`analyze` and the tags' analysis (:mod:`unbake.transcribe.timing`) start from."""
    mono = to_mono_analysis_rate(audio, sample_rate)
    if not np.any(np.abs(mono) > 1e-6):
        raise InvalidAudioError("cannot analyse silence")
    return mono


def onset_envelope(mono: np.ndarray, *, hop: int = ONSET_HOP) -> np.ndarray:
    """Spectral-flux onset strength ``(frames,)`` of mono audio at :data:`ANALYSIS_RATE_HZ`."""
    from ..audio.features import onset_strength

    return onset_strength(np.asarray(mono, np.float32), ANALYSIS_RATE_HZ, hop)


def _peak_offset(y: np.ndarray, i: int) -> float:
    """Sub-sample position of a peak at ``i`` from a parabola through its neighbours."""
    if i <= 0 or i >= len(y) - 1:
        return 0.0
    a, b, c = float(y[i - 1]), float(y[i]), float(y[i + 1])
    den = a - 2 * b + c
    if den >= 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))


def _fold(bpm: float, lo: float, hi: float) -> float:
    while bpm > hi and bpm / 2 >= lo:
        bpm /= 2
    while bpm < lo and bpm * 2 <= hi:
        bpm *= 2
    return bpm


def estimate_tempo(mono: np.ndarray, *, prior_bpm: float = 120.0,
                   bpm_range: tuple[float, float] = (60.0, 200.0)) -> tuple[float, np.ndarray]:
    """Tempo and beats of mono audio at :data:`ANALYSIS_RATE_HZ`: ``(bpm, beat times (n,) s)``.

    See the module docstring for the method and the octave-error guard. ``bpm`` is NaN when
    fewer than :data:`MIN_BEATS` beats are found (silence, a drone).
    """
    from ..audio.features import tempo

    lo, hi = bpm_range
    if not 0 < lo < hi:
        raise ValueError(f"bpm_range must be (low, high) with 0 < low < high, got {bpm_range}")
    env = onset_envelope(mono)
    if not np.any(env > 0):
        return float("nan"), np.zeros(0)
    fps = ANALYSIS_RATE_HZ / ONSET_HOP
    # librosa's prior: a Gaussian in log2(bpm) around prior_bpm, one octave wide
    coarse = float(tempo(env, ANALYSIS_RATE_HZ, ONSET_HOP, start_bpm=prior_bpm, std_bpm=1.0, max_tempo=hi)[0])
    coarse = _fold(coarse, lo, hi)
    frames = _track(env, coarse)
    if coarse > prior_bpm and coarse / 2 >= lo and len(frames) >= 8:
        ratio = _accent_ratio(env, frames)
        if ratio > ACCENT_RATIO:
            coarse /= 2
            frames = _track(env, coarse)
    beats = np.array([max((f + _peak_offset(env, f)) / fps - ONSET_LATENCY_S, 0.0) for f in frames])
    if len(beats) < MIN_BEATS:
        return float("nan"), beats  # no steady beat: a tempo from one or two onsets means nothing
    bpm = coarse
    if len(beats) >= 4:
        # least-squares period through the beat times; beats the tracker skipped or doubled
        # are absorbed by numbering them with the coarse period
        period = 60.0 / coarse
        index = np.round((beats - beats[0]) / period)
        if len(np.unique(index)) == len(index):
            slope = np.polyfit(index, beats, 1)[0]
            refined = 60.0 / slope
            if abs(refined / coarse - 1) < 0.06:
                bpm = refined
    return float(bpm), beats


def _track(env: np.ndarray, bpm: float) -> np.ndarray:
    from .beats import beat_frames

    return beat_frames(env, bpm, ANALYSIS_RATE_HZ / ONSET_HOP, tightness=400, trim=True)


def _accent_ratio(env: np.ndarray, frames: np.ndarray) -> float:
    """How much stronger one half of alternating beats is than the other (>= 1).

    Tracked at twice the true tempo, every other "beat" is an off-beat (a hi-hat between kick
    and snare), so one half is much weaker; at the true tempo kick and snare beats alternate
    with similar strength.
    """
    peaks = np.array([env[max(f - 2, 0):f + 3].max() for f in frames])
    a, b = float(np.median(peaks[0::2])), float(np.median(peaks[1::2]))
    lo_, hi_ = min(a, b), max(a, b)
    return hi_ / lo_ if lo_ > 0 else float("inf")


# ------------------------------------------------------------------------------ changing tempo

TEMPO_SMOOTH_S = 2.0
MIN_TRACKED_BEATS = 4


def track_beats(mono: np.ndarray, *, prior_bpm: float = 120.0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Beats of mono audio at :data:`ANALYSIS_RATE_HZ` following a changing tempo (method:
    :mod:`.tempo`):
    ``(beat times (n,) s, tempo curve [(time s, BPM)])`` (empty when no beat is found)."""
    from scipy.ndimage import median_filter

    from .beats import beat_frames
    from ..audio.features import tempo

    env = onset_envelope(mono)
    if not np.any(env > 0):
        return np.zeros(0), []
    fps = ANALYSIS_RATE_HZ / ONSET_HOP
    local = tempo(env, ANALYSIS_RATE_HZ, ONSET_HOP, start_bpm=prior_bpm, std_bpm=1.0, ac_size_s=4.0, per_frame=True)
    local = median_filter(np.asarray(local, float), size=max(1, int(TEMPO_SMOOTH_S * fps)) | 1, mode="nearest")
    frames = beat_frames(env, local, fps, tightness=100, trim=True)
    beats = np.array([max((f + _peak_offset(env, f)) / fps - ONSET_LATENCY_S, 0.0) for f in frames])
    return beats, tempo_curve(beats)


def tempo_curve(beats_s: np.ndarray) -> list[tuple[float, float]]:
    """``[(time, BPM)]`` at the midpoints of the inter-beat intervals, median of three."""
    from scipy.ndimage import median_filter

    beats_s = np.asarray(beats_s, float)
    if len(beats_s) < 2:
        return []
    ibi = np.diff(beats_s)
    bpm = median_filter(60.0 / ibi, size=3, mode="nearest") if len(ibi) >= 3 else 60.0 / ibi
    mids = 0.5 * (beats_s[1:] + beats_s[:-1])
    return [(float(t), float(b)) for t, b in zip(mids, bpm)]


def downbeats(mono: np.ndarray, beats_s: np.ndarray, *, beats_per_bar: int = 4) -> np.ndarray:
    """The beats that start bars (see the module docstring): a subset of ``beats_s``."""
    from ..audio.features import chroma_stft, onset_strength

    beats_s = np.asarray(beats_s, float)
    if len(beats_s) < beats_per_bar:
        return beats_s[:1]
    y = np.asarray(mono, np.float32)
    fps = ANALYSIS_RATE_HZ / ONSET_HOP
    low = onset_strength(y, ANALYSIS_RATE_HZ, ONSET_HOP, band_edges=(0, 16))[0]  # the lowest 16 of 128 mel bands
    chroma = chroma_stft(y, ANALYSIS_RATE_HZ, ONSET_HOP)
    frames = np.clip(np.round(beats_s * fps).astype(int), 0, min(len(low), chroma.shape[1]) - 1)
    # harmonic change at each beat: the chroma of the beat before against the beat after
    seg = [chroma[:, a:b].mean(axis=1) if b > a else chroma[:, a] for a, b in zip(frames[:-1], frames[1:])]
    seg = np.array(seg).T
    change = np.zeros(len(frames))
    if seg.shape[1] >= 2:
        cos = np.sum(seg[:, 1:] * seg[:, :-1], axis=0) / np.maximum(
            np.linalg.norm(seg[:, 1:], axis=0) * np.linalg.norm(seg[:, :-1], axis=0), 1e-9)
        change[1:-1] = 1.0 - cos
    strength = np.array([low[max(f - 2, 0):f + 3].max() for f in frames])
    score = strength / max(float(strength.mean()), 1e-9) + change / max(float(change.mean()), 1e-9)
    phase = int(np.argmax([score[p::beats_per_bar].mean() for p in range(beats_per_bar)]))
    return beats_s[phase::beats_per_bar]



def estimate_key(mono: np.ndarray) -> tuple[Key, float, dict[str, float]]:
    """Krumhansl–Schmuckler key of mono audio at :data:`ANALYSIS_RATE_HZ`.

    Returns ``(key, confidence, {key name: correlation})``; confidence is the winning Pearson
    correlation (0 when the chroma is flat).
    """
    from ..audio.features import chroma_cqt

    # unnormalised frames: loud passages weigh more than quiet ones, and silence (which a
    # per-frame normalisation would blow up to noise) weighs nothing
    chroma = chroma_cqt(np.asarray(mono, np.float32), ANALYSIS_RATE_HZ, CHROMA_HOP, norm=None)
    profile = chroma.mean(axis=1)
    return key_from_chroma(profile)


def key_from_chroma(profile: np.ndarray) -> tuple[Key, float, dict[str, float]]:
    """Correlate a 12-bin chroma ``(12,)`` (C first) with the 24 rotated key profiles."""
    profile = np.asarray(profile, dtype=np.float64)
    if profile.shape != (12,):
        raise ValueError(f"a chroma profile has 12 bins, got shape {profile.shape}")
    scores: dict[str, float] = {}
    best, best_r = Key(0, "major"), -np.inf
    if np.std(profile) < 1e-12:
        return best, 0.0, {}
    for mode, ref in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(profile, np.roll(ref, tonic))[0, 1])
            key = Key(tonic, mode)
            scores[key.name] = r
            if r > best_r:
                best, best_r = key, r
    return best, max(best_r, 0.0), scores


def analyze(audio: np.ndarray, sample_rate: int, *, prior_bpm: float = 120.0,
            bpm_range: tuple[float, float] = (60.0, 200.0),
            key_audio: np.ndarray | None = None, full: bool = True) -> Analysis:
    """Tempo, beats and key of ``audio (c, t)`` (or mono ``(t,)``) at ``sample_rate``.

    ``key_audio`` (same rate) is analysed for the key instead of ``audio`` when given: the
    pitched stems of a song without its drums give a cleaner chroma. ``full=False`` leaves out
    the tempo curve and the downbeats (empty in the result), for callers that need neither.
    """
    mono = analysis_mono(audio, sample_rate)
    bpm, beats = estimate_tempo(mono, prior_bpm=prior_bpm, bpm_range=bpm_range)
    kmono = mono if key_audio is None else to_mono_analysis_rate(key_audio, sample_rate)
    key, conf, scores = estimate_key(kmono)
    curve: list[tuple[float, float]] = []
    down = np.zeros(0)
    if full:
        _, curve = track_beats(mono, prior_bpm=prior_bpm)
        down = downbeats(mono, beats) if len(beats) else down
    return Analysis(bpm=bpm, beats_s=tuple(float(b) for b in beats), key=key, key_confidence=conf,
                    duration_s=len(mono) / ANALYSIS_RATE_HZ, key_scores=scores, tempo_curve=tuple(curve),
                    downbeats_s=tuple(float(b) for b in down))


def pitched_mix(stems: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The sum of the pitched stems (everything but ``drums`` and a ``mixture`` stream) when
    the set has a ``drums`` stem and something else, else ``None``: drums smear the chroma that
    the key is read from."""
    pitched = [v for k, v in stems.items() if k not in ("drums", "mixture")]
    if "drums" not in stems or not pitched:
        return None
    return np.sum(pitched, axis=0)


def analyze_stems(stems: Mapping[str, np.ndarray], sample_rate: int, *, prior_bpm: float = 120.0,
                  bpm_range: tuple[float, float] = (60.0, 200.0), full: bool = True) -> Analysis:
    """Tempo and beats of the whole song (its ``mixture`` stream, else the sum of its stems) and
    its key from the pitched stems (:func:`pitched_mix`). Every front end that analyses stems
    goes through here, so one song gets one answer."""
    if "mixture" in stems:
        mix = stems["mixture"]
    else:
        mix = np.sum(list(stems.values()), axis=0, dtype=np.float64).astype(np.float32)
    return analyze(mix, sample_rate, prior_bpm=prior_bpm, bpm_range=bpm_range, key_audio=pitched_mix(stems),
                   full=full)


def analyze_file(path, *, prior_bpm: float = 120.0, bpm_range: tuple[float, float] = (60.0, 200.0)) -> Analysis:
    """The one analysis of a song on disk that ``unbake analyze`` and ``unbake mashup`` share, so
    one file gets one answer: a folder of stems or a multi-stream stems file goes through
    :func:`analyze_stems` (key from the pitched stems), a plain song file is analysed as it
    is decoded (tempo and key from the mix; a mash-up's separation of it is not consulted,
    because the plain ``unbake analyze`` does not have one)."""
    from pathlib import Path

    from ..audio import read_audio
    from ..audio.io import info, read_stems
    from ..stems import StemSet

    path = Path(path)
    if path.is_dir():
        stems = StemSet.load(path)
        return analyze_stems(dict(stems.items()), stems.sample_rate, prior_bpm=prior_bpm, bpm_range=bpm_range)
    if path.is_file() and len(info(path).streams) >= 2:
        streams, sr = read_stems(path)
        return analyze_stems(streams, sr, prior_bpm=prior_bpm, bpm_range=bpm_range)
    audio, sr = read_audio(path)
    return analyze(audio, sr, prior_bpm=prior_bpm, bpm_range=bpm_range)
