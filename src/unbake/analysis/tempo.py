"""Tempo that changes: a beat tracker that follows a local tempo curve, downbeats, and the time
map that puts a free-tempo performance's beats on a steady grid.

Needs no extra (the features are :mod:`unbake.audio.features`).

Method
------
* **Local tempo**: librosa's tempogram tempo (as :mod:`unbake.audio.features` computes it) per
  onset frame (``aggregate=None``, a 4 s autocorrelation window, the same log-normal prior as
  :func:`.analyze.estimate_tempo`), median-smoothed over :data:`TEMPO_SMOOTH_S`; librosa's
  dynamic-programming beat tracker then runs with that time-varying tempo, so a performance that
  drifts, slows and rushes keeps its beats instead of being forced onto one period. The reported
  curve is 60 / inter-beat interval at each interval's midpoint, lightly smoothed.
* **Downbeats** (4/4 assumed, ``beats_per_bar``): of the bar's possible phases, the one whose
  beats carry the most low-frequency onset strength (kick, bass) plus harmonic change (chords
  change on the bar) wins.
* **Onto a grid**: beat ``i`` goes to ``g0 + i * 60 / bpm``; ``g0`` puts the first downbeat on a
  whole bar of the output (silence is padded before it when the pickup needs room), so the
  result drops onto bar lines in a sequencer.
"""

from __future__ import annotations

import numpy as np

# the tempo-following tracker lives beside the steady one in .analyze (analyze() reports its curve)
from .analyze import MIN_TRACKED_BEATS, TEMPO_SMOOTH_S, downbeats, tempo_curve, track_beats

__all__ = ["MIN_TRACKED_BEATS", "TEMPO_SMOOTH_S", "downbeats", "grid_anchors", "tempo_curve", "track_beats"]


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
