"""Tempo that changes: a beat tracker that follows a local tempo curve, downbeats, and the time
map that puts a free-tempo performance's beats on a steady grid.

librosa is an optional extra (``pip install unbake[analysis]``), imported only when called.

Method
------
* **Local tempo**: librosa's tempogram tempo per onset frame (``aggregate=None``, a 4 s
  autocorrelation window, the same log-normal prior as :func:`.analyze.estimate_tempo`),
  median-smoothed over :data:`TEMPO_SMOOTH_S`; librosa's dynamic-programming beat tracker then
  runs with that time-varying tempo, so a performance that drifts, slows and rushes keeps its
  beats instead of being forced onto one period. The reported curve is 60 / inter-beat interval
  at each interval's midpoint, lightly smoothed.
* **Downbeats** (4/4 assumed, ``beats_per_bar``): of the bar's possible phases, the one whose
  beats carry the most low-frequency onset strength (kick, bass) plus harmonic change (chords
  change on the bar) wins.
* **Onto a grid**: beat ``i`` goes to ``g0 + i * 60 / bpm``; ``g0`` puts the first downbeat on a
  whole bar of the output (silence is padded before it when the pickup needs room), so the
  result drops onto bar lines in a sequencer.
"""

from __future__ import annotations

import numpy as np

from .analyze import ANALYSIS_RATE_HZ, ONSET_HOP, ONSET_LATENCY_S, _peak_offset, librosa_module, onset_envelope

TEMPO_SMOOTH_S = 2.0
MIN_TRACKED_BEATS = 4


def track_beats(mono: np.ndarray, *, prior_bpm: float = 120.0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Beats of mono audio at :data:`ANALYSIS_RATE_HZ` following a changing tempo:
    ``(beat times (n,) s, tempo curve [(time s, BPM)])`` (empty when no beat is found)."""
    librosa = librosa_module()
    from scipy.ndimage import median_filter

    env = onset_envelope(mono)
    if not np.any(env > 0):
        return np.zeros(0), []
    fps = ANALYSIS_RATE_HZ / ONSET_HOP
    local = librosa.feature.tempo(onset_envelope=env, sr=ANALYSIS_RATE_HZ, hop_length=ONSET_HOP, aggregate=None,
                                  start_bpm=prior_bpm, std_bpm=1.0, ac_size=4.0)
    local = median_filter(np.asarray(local, float), size=max(1, int(TEMPO_SMOOTH_S * fps)) | 1, mode="nearest")
    _, frames = librosa.beat.beat_track(onset_envelope=env, sr=ANALYSIS_RATE_HZ, hop_length=ONSET_HOP,
                                        bpm=local, tightness=100, trim=True, units="frames")
    frames = np.asarray(frames, int)
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
    librosa = librosa_module()
    beats_s = np.asarray(beats_s, float)
    if len(beats_s) < beats_per_bar:
        return beats_s[:1]
    y = np.asarray(mono, np.float32)
    fps = ANALYSIS_RATE_HZ / ONSET_HOP
    low = librosa.onset.onset_strength_multi(y=y, sr=ANALYSIS_RATE_HZ, hop_length=ONSET_HOP, channels=[0, 16])[0]
    chroma = librosa.feature.chroma_stft(y=y, sr=ANALYSIS_RATE_HZ, hop_length=ONSET_HOP)
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


def grid_anchors(beats_s: np.ndarray, downbeats_s: np.ndarray, to_bpm: float, *,
                 beats_per_bar: int = 4) -> tuple[tuple[float, float], ...]:
    """Anchors ``(source time, grid time)`` that put each beat on a steady ``to_bpm`` grid with
    the first downbeat on a bar line (see the module docstring)."""
    beats_s = np.asarray(beats_s, float)
    if len(beats_s) < 2:
        raise ValueError("a grid needs at least two beats")
    period = 60.0 / float(to_bpm)
    bar = beats_per_bar * period
    first_down = float(downbeats_s[0]) if len(downbeats_s) else float(beats_s[0])
    i0 = int(np.argmin(np.abs(beats_s - first_down)))
    rate0 = (beats_s[1] - beats_s[0]) / period  # the audio before the first beat plays at this rate
    needed = i0 * period + beats_s[0] / rate0
    g0 = float(np.ceil(needed / bar - 1e-9) * bar)
    grid = g0 + (np.arange(len(beats_s)) - i0) * period
    return tuple((float(s), float(g)) for s, g in zip(beats_s, grid))
