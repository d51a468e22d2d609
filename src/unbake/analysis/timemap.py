"""Time maps between two performances of one song (a cover and its original, two takes): which
moment of performance B each moment of performance A corresponds to, with a confidence per region.

Needs no extra: the features are :mod:`unbake.audio.features` (computed as librosa computes them)
and the DTW is :func:`dtw` (librosa's, a row at a time).

Method
------
* **Features that survive a different arrangement, key and voice.** Chroma (CQT, log-compressed,
  unit length per frame) of the harmonic part (HPSS) of each performance: what notes sound,
  not how. Beside it, chroma onsets: where each pitch class rises, held with a short decay.
  Chroma alone says "this chord" and cannot tell where a held note ends (a piano's note fades
  while a voice holds it); the onsets say "now". The DTW cost is the chroma's cosine distance
  plus :data:`ONSET_WEIGHT` times the distance between chroma onsets (3, where lower weights
  left half-second slips on held notes in the synthetic tests).
* **Transposition first.** A cover is often in another key. A's chroma is rotated by each of
  the 12 semitone shifts and a coarse dynamic time warping (DTW) of each rotation against B is
  run; the rotation with the cheapest path wins. The reported ``semitones`` is the shift that
  brings A into B's key, the short way round (-6..+5): A a minor third above B gives -3.
* **DTW with step constraints** (:func:`dtw`, as ``librosa.sequence.dtw`` computes it): steps
  (1, 1), (2, 1), (1, 2), (3, 1) and (1, 3) frames, so the local tempo ratio between the
  performances stays between 1/3 and 3 (a fermata held three times as long is the most allowed;
  a path that stands still in one performance while the other plays on is not). Steps are
  weighted by how many frames they advance (2, 3, 3, 4, 4), so that no step is cheaper merely for
  touching fewer cells.
* **A smooth monotonic map.** The path is read as B-time per A-frame, lightly smoothed and made
  strictly increasing; every quarter second the map is then moved by the lag (within
  :data:`REFINE_MAX_S`) that best lines up the two spectral-flux onset envelopes in a window
  around it, which brings it from DTW frames (tens of ms) to the timing of the notes; the result
  is smoothed over :data:`SMOOTH_S`, its slope kept within the DTW's limits, and thinned to the
  anchors needed to follow it within :data:`ANCHOR_TOLERANCE_S` (a steady passage needs two).
* **Confidence.** On the path, a frame's cost is compared with the median cost of its row of
  the cost matrix (what an arbitrary moment of B costs): ``1 - path cost / median cost``, 0 for
  "no better than chance", 1 for a perfect match, averaged over regions of
  :data:`REGION_S`. Two unrelated songs still get a cheapest path, but it is hardly cheaper
  than chance; :data:`LOW_CONFIDENCE` is where the synthetic and real checks separate them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError, InvalidAudioError, UnbakeError
from .analyze import ANALYSIS_RATE_HZ, to_mono_analysis_rate

FEATURE_HOP = 512  # 23 ms frames at 22.05 kHz
MAX_DTW_CELLS = 2.0e7  # frames(A) x frames(B) of the fine DTW; the hop doubles until under this
COARSE_POOL = 4  # frames pooled for the transposition search
STEPS = np.array([[1, 1], [2, 1], [1, 2], [3, 1], [1, 3]])
STEP_WEIGHTS = np.array([2.0, 3.0, 3.0, 4.0, 4.0]) / 2.0
ONSET_WEIGHT = 3.0  # weight of the chroma-onset term of the DTW cost beside the chroma term (see below)
REFINE_HOP = 128  # 5.8 ms onset frames for the fine timing
REFINE_MAX_S = 0.12
REFINE_WINDOW_S = 1.5
MIN_ONSET_CORRELATION = 0.3
ANCHOR_TOLERANCE_S = 0.008
SMOOTH_S = 0.1
REGION_S = 4.0
LOW_CONFIDENCE = 0.5


class LowConfidenceError(UnbakeError):
    """Two performances could not be mapped onto each other with confidence (unrelated songs,
    or too little in common); the message names the confidence found."""


@dataclass(frozen=True)
class Region:
    """A stretch of performance A (``start_s``..``end_s``) and how sure the map is there (0..1)."""

    start_s: float
    end_s: float
    confidence: float


@dataclass(frozen=True)
class TimeMap:
    """A smooth, strictly increasing map from performance A's time to performance B's.

    ``anchors`` are ``(time_a, time_b)`` pairs in seconds, increasing in both; between them the
    map is linear. ``semitones`` is the shift that brings A into B's key. ``regions`` hold the
    confidence per stretch of A, ``confidence`` their overall median. ``detail`` holds what a
    plot needs (cost matrix, path, frame times); it is not saved.
    """

    anchors: tuple[tuple[float, float], ...]
    semitones: int
    confidence: float
    regions: tuple[Region, ...]
    duration_a_s: float
    duration_b_s: float
    detail: dict | None = field(default=None, compare=False, repr=False)

    @property
    def times_a(self) -> np.ndarray:
        return np.array([a for a, _ in self.anchors])

    @property
    def times_b(self) -> np.ndarray:
        return np.array([b for _, b in self.anchors])

    def to_b(self, t_a: Any) -> np.ndarray:
        """B-times of A-times (seconds; linear beyond the first and last anchors)."""
        return _interp_extrapolate(np.asarray(t_a, float), self.times_a, self.times_b)

    def to_a(self, t_b: Any) -> np.ndarray:
        """A-times of B-times (the inverse map)."""
        return _interp_extrapolate(np.asarray(t_b, float), self.times_b, self.times_a)

    def low_confidence(self, threshold: float = LOW_CONFIDENCE) -> list[Region]:
        """Runs of regions below ``threshold``, merged: ``[Region(start, end, mean confidence)]``."""
        runs: list[list[Region]] = []
        for r in self.regions:
            if r.confidence < threshold:
                if runs and abs(runs[-1][-1].end_s - r.start_s) < 1e-6:
                    runs[-1].append(r)
                else:
                    runs.append([r])
        return [Region(run[0].start_s, run[-1].end_s, float(np.mean([r.confidence for r in run]))) for run in runs]

    def to_dict(self) -> dict:
        return {
            "semitones": self.semitones,
            "confidence": round(self.confidence, 3),
            "duration_a_s": round(self.duration_a_s, 4),
            "duration_b_s": round(self.duration_b_s, 4),
            "anchors": [[round(a, 5), round(b, 5)] for a, b in self.anchors],
            "regions": [{"start_s": round(r.start_s, 3), "end_s": round(r.end_s, 3),
                         "confidence": round(r.confidence, 3)} for r in self.regions],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "TimeMap":
        """The inverse of :meth:`to_dict` (a map file written by ``unbake sync --map``); a
        malformed one is a :class:`ConfigError`."""
        try:
            anchors = tuple((float(a), float(b)) for a, b in data["anchors"])
            regions = tuple(Region(float(r["start_s"]), float(r["end_s"]), float(r["confidence"]))
                            for r in data.get("regions", ()))
            tm = cls(anchors=anchors, semitones=int(data.get("semitones", 0)),
                     confidence=float(data.get("confidence", 1.0)), regions=regions,
                     duration_a_s=float(data.get("duration_a_s", anchors[-1][0])),
                     duration_b_s=float(data.get("duration_b_s", anchors[-1][1])))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"not a time map ({exc!r}): needs anchors [[time_a, time_b], ...]") from None
        try:
            check_anchors(tm.anchors)
        except ValueError as exc:
            raise ConfigError(f"not a usable time map: {exc}") from None
        return tm


def check_anchors(anchors) -> None:
    """Anchors must be at least two ``(time_a, time_b)`` pairs, finite, increasing in both."""
    arr = np.asarray(anchors, float)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 2:
        raise ValueError(f"a time map needs at least two (time_a, time_b) anchors, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("time map anchors must be finite")
    if np.any(np.diff(arr[:, 0]) <= 0) or np.any(np.diff(arr[:, 1]) <= 0):
        raise ValueError("time map anchors must increase strictly in both times")


def _interp_extrapolate(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    y = np.interp(x, xp, fp)
    lo, hi = x < xp[0], x > xp[-1]
    if np.any(lo):
        y[lo] = fp[0] + (x[lo] - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0])
    if np.any(hi):
        y[hi] = fp[-1] + (x[hi] - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    return y


# ------------------------------------------------------------------------------ features


def chroma_features(mono: np.ndarray, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Chroma of the harmonic part of ``mono``: ``(unit-length chroma (12, frames), chroma
    onsets (12, frames))``.

    The chroma onsets are where each pitch class rises (the positive frame difference of the
    log-compressed chroma), scaled by the largest rise within about a second and held with a
    decay of :data:`ONSET_DECAY_S`: timbre-independent "this note starts now" cues, which pin a
    held note's end where the plain chroma cannot (a piano's note fades, a voice's is held).
    """
    from ..audio.features import chroma_cqt, harmonic_part

    chroma = chroma_cqt(harmonic_part(mono), ANALYSIS_RATE_HZ, hop, norm=None)
    peak = float(chroma.max())
    if peak <= 0:
        raise InvalidAudioError("cannot map silence")
    # log compression: quiet notes still count, a loud chord does not drown the melody
    chroma = np.log1p(100.0 * chroma / peak)
    return _unit_columns(chroma), _chroma_onsets(chroma, ANALYSIS_RATE_HZ / hop)


ONSET_DECAY_S = 0.1


def _chroma_onsets(log_chroma: np.ndarray, frames_per_s: float) -> np.ndarray:
    from scipy.ndimage import maximum_filter1d
    from scipy.signal import lfilter

    rise = np.maximum(np.diff(log_chroma, axis=1, prepend=log_chroma[:, :1]), 0.0)
    norm = np.linalg.norm(rise, axis=0)
    local = maximum_filter1d(norm, size=max(1, int(frames_per_s)), mode="nearest")
    rise = rise / np.maximum(local, 1e-3 * max(float(norm.max()), 1e-12))
    decay = math.exp(-1.0 / max(ONSET_DECAY_S * frames_per_s, 1e-3))
    return lfilter([1.0], [1.0, -decay], rise, axis=1) * (1 - decay)


def _unit_columns(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=0, keepdims=True)
    flat = np.full((x.shape[0], 1), 1.0 / math.sqrt(x.shape[0]))
    # silence (no pitch at all) becomes the flat vector: it matches silence, and anything only weakly
    return np.where(norm > 1e-3 * max(float(norm.max()), 1e-12), x / np.maximum(norm, 1e-12), flat)


def _pool(x: np.ndarray, k: int) -> np.ndarray:
    n = x.shape[-1] // k * k
    if n == 0:
        return x
    return x[..., :n].reshape(*x.shape[:-1], n // k, k).mean(axis=-1)


def _dtw(cost: np.ndarray) -> tuple[float, np.ndarray]:
    """Step-constrained DTW of ``cost (n, m)``: ``(cost per advanced frame, path (k, 2) start first)``."""
    total, path = dtw(cost, STEPS, STEP_WEIGHTS)
    if not math.isfinite(total):
        raise InvalidAudioError(
            "the performances cannot be mapped: one is more than three times as long as the other")
    return total / (cost.shape[0] + cost.shape[1]), path


def dtw(cost: np.ndarray, steps: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray]:
    """Dynamic time warping of ``cost (n, m)`` from ``(0, 0)`` to ``(n - 1, m - 1)`` with the given
    steps (each advances both sequences: ``steps (k, 2)`` of positive integers) and step weights
    (a step into a cell adds ``weight * cost``): ``(accumulated cost, path (p, 2) start first)``;
    the cost is infinite, and the path empty, when no path exists. The result of
    ``librosa.sequence.dtw(C=cost, step_sizes_sigma=steps, weights_mul=weights)`` (ties go to the
    earlier step), computed a row at a time: written here because librosa's compiled loop costs a
    numba import, and with every step advancing both sequences a row depends only on the rows
    before it."""
    steps = np.asarray(steps, dtype=int)
    if np.any(steps < 1):
        raise ValueError("every step must advance both sequences")
    n, m = cost.shape
    back, left = int(steps[:, 0].max()), int(steps[:, 1].max())
    acc = np.full((n + back, m + left), np.inf)
    choice = np.zeros((n, m), np.int8)
    for i in range(n):
        row = i + back
        # (weight * cost) added to the cell the step comes from, as librosa computes each candidate
        candidates = np.stack([acc[row - di, left - dj:left - dj + m] + weights[k] * cost[i]
                               for k, (di, dj) in enumerate(steps)])
        best = np.argmin(candidates, axis=0)
        acc[row, left:] = candidates[best, np.arange(m)]
        choice[i] = best
        if i == 0:
            acc[back, left] = cost[0, 0]  # the start: no step leads into it
    total = float(acc[-1, -1])
    if not np.isfinite(total):
        return total, np.zeros((0, 2), int)
    path = [(n - 1, m - 1)]  # a finite cell was reached by steps from the start: they lead back to it
    while path[-1] != (0, 0):
        i, j = path[-1]
        di, dj = steps[choice[i, j]]
        path.append((i - di, j - dj))
    return total, np.array(path[::-1])


def find_transposition(chroma_a: np.ndarray, chroma_b: np.ndarray) -> tuple[int, np.ndarray]:
    """The semitone shift (-6..+5) that brings A's chroma to B's, by the cheapest coarse DTW
    over the 12 rotations: ``(semitones, path cost per rotation (12,))``."""
    ca = _unit_columns(_pool(chroma_a, COARSE_POOL))
    cb = _unit_columns(_pool(chroma_b, COARSE_POOL))
    costs = np.empty(12)
    for k in range(12):
        costs[k] = _dtw(1.0 - np.roll(ca, k, axis=0).T @ cb)[0]
    k = int(np.argmin(costs))
    return (k - 12 if k >= 6 else k), costs


# ------------------------------------------------------------------------------ the map


def time_map(a: np.ndarray, b: np.ndarray, sample_rate_a: int, sample_rate_b: int | None = None, *,
             semitones: int | None = None) -> TimeMap:
    """Map performance ``a`` onto performance ``b`` (each ``(c, t)`` or ``(t,)``).

    ``semitones`` fixes the transposition (the shift bringing A to B's key) instead of finding
    it. See the module docstring for the method. Raises :class:`InvalidAudioError` for silence
    or lengths more than three times apart; a poor match is not an error here (see
    ``confidence``, and :func:`require_confidence`).
    """
    sample_rate_b = sample_rate_a if sample_rate_b is None else sample_rate_b
    ya = to_mono_analysis_rate(a, sample_rate_a)
    yb = to_mono_analysis_rate(b, sample_rate_b)
    for name, y in (("A", ya), ("B", yb)):
        if not np.any(np.abs(y) > 1e-6):
            raise InvalidAudioError(f"cannot map silence (performance {name} is silent)")
    hop = FEATURE_HOP
    while (len(ya) / hop) * (len(yb) / hop) > MAX_DTW_CELLS:
        hop *= 2
    (ca, da), (cb, db) = chroma_features(ya, hop), chroma_features(yb, hop)
    if semitones is None:
        semitones, _ = find_transposition(ca, cb)
    ca, da = np.roll(ca, int(semitones), axis=0), np.roll(da, int(semitones), axis=0)
    n = ca.shape[1]
    chroma_cost = 1.0 - ca.T @ cb
    from scipy.spatial.distance import cdist

    cost = chroma_cost + ONSET_WEIGHT * cdist(da.T, db.T)
    _, path = _dtw(cost)
    fps = ANALYSIS_RATE_HZ / hop
    tb_of_a = _path_to_curve(path, n) / fps  # B-time (s) of each A frame
    ta = np.arange(n) / fps
    tb_of_a = _monotone(_smooth(tb_of_a, 5))
    tb_of_a = refine_with_onsets(ya, yb, ta, tb_of_a)
    # the onset corrections come every quarter second; smoothing over that much keeps the
    # stretch from wobbling between them (and the anchors few)
    from scipy.ndimage import uniform_filter1d

    tb_of_a = limit_slope(ta, uniform_filter1d(tb_of_a, size=max(1, int(round(SMOOTH_S * fps))) | 1, mode="nearest"))
    regions = _regions(path, chroma_cost, fps, len(ya) / ANALYSIS_RATE_HZ)
    confidence = float(np.median([r.confidence for r in regions])) if regions else 0.0
    anchors = simplify(ta, tb_of_a, ANCHOR_TOLERANCE_S)
    return TimeMap(anchors=anchors, semitones=int(semitones), confidence=confidence, regions=tuple(regions),
                   duration_a_s=len(ya) / ANALYSIS_RATE_HZ, duration_b_s=len(yb) / ANALYSIS_RATE_HZ,
                   detail={"cost": chroma_cost, "path": path, "frames_per_s": fps})


def _path_to_curve(path: np.ndarray, n: int) -> np.ndarray:
    """B-frame per A-frame ``(n,)`` from a DTW path: the mean where A dwells, interpolated where
    a step skips A frames."""
    i, j = path[:, 0], path[:, 1].astype(float)
    ui, inv = np.unique(i, return_inverse=True)
    mean_j = np.bincount(inv, weights=j) / np.bincount(inv)
    return np.interp(np.arange(n), ui, mean_j)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    from scipy.ndimage import median_filter, uniform_filter1d

    return uniform_filter1d(median_filter(x, size=width, mode="nearest"), size=3, mode="nearest")


def _monotone(y: np.ndarray, min_slope: float = 1e-3) -> np.ndarray:
    """Strictly increasing version of ``y`` (per-sample steps of at least ``min_slope`` of the mean step)."""
    if len(y) < 2:
        return y.copy()
    step = max((y[-1] - y[0]) / (len(y) - 1), 1e-9) * min_slope
    d = np.maximum(np.diff(y), step)
    return np.concatenate([[y[0]], y[0] + np.cumsum(d)])


def refine_with_onsets(ya: np.ndarray, yb: np.ndarray, ta: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """Move the map ``ta -> tb`` (seconds) by the lag that best lines up the onset envelopes
    of A (mapped through the map) and B in a window around each point; returns the new ``tb``.

    Only lags within :data:`REFINE_MAX_S` are searched (DTW is already that close), windows
    without onsets keep their place, and the corrections are smoothed so that one spurious
    match cannot bend the map."""
    from scipy.interpolate import PchipInterpolator
    from scipy.ndimage import median_filter

    from ..audio.features import onset_strength

    fps = ANALYSIS_RATE_HZ / REFINE_HOP
    ea = onset_strength(ya, ANALYSIS_RATE_HZ, REFINE_HOP)
    eb = onset_strength(yb, ANALYSIS_RATE_HZ, REFINE_HOP)
    tb_grid = np.arange(len(eb)) / fps
    # A's envelope on B's clock: for each B frame, the A time the map sends there
    ta_of_b = np.interp(tb_grid, tb, ta)
    ea_on_b = np.interp(ta_of_b * fps, np.arange(len(ea)), ea)
    half = int(REFINE_WINDOW_S * fps / 2)
    max_lag = int(REFINE_MAX_S * fps)
    step = max(1, int(0.25 * fps))
    centres, lags = [], []
    for c in range(0, len(eb), step):
        lo, hi = c - half, c + half
        if lo - max_lag < 0 or hi + max_lag > len(eb):
            continue
        seg_b = eb[lo - max_lag: hi + max_lag]
        seg_a = ea_on_b[lo:hi]
        if seg_a.std() == 0 or seg_b.std() == 0:
            continue
        sa = (seg_a - seg_a.mean()) / seg_a.std()
        score = np.correlate(seg_b - seg_b.mean(), sa, mode="valid")  # lag k: A moved by k - max_lag
        k = int(np.argmax(score))
        # a weak best match (no common onsets in the window) would only add noise
        if score[k] / (len(sa) * seg_b.std()) < MIN_ONSET_CORRELATION:
            continue
        frac = 0.0
        if 0 < k < len(score) - 1:
            y0, y1, y2 = score[k - 1], score[k], score[k + 1]
            den = y0 - 2 * y1 + y2
            if den < 0:
                frac = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
        centres.append(c / fps)
        lags.append((k - max_lag + frac) / fps)
    if len(lags) < 3:
        return tb
    lags = median_filter(np.asarray(lags), size=5, mode="nearest")
    # the correction is a lag on B's clock; apply it where the map lands in B
    shift = PchipInterpolator(np.asarray(centres), lags, extrapolate=False)(tb)
    shift = np.where(np.isnan(shift), np.interp(tb, centres, lags), shift)
    return limit_slope(ta, tb + shift)


def limit_slope(ta: np.ndarray, tb: np.ndarray, lo: float = 1 / 3, hi: float = 3.0) -> np.ndarray:
    """``tb`` with its slope against ``ta`` kept within ``lo``..``hi`` (the DTW's own limits):
    a map that stood still or raced would ask the stretcher for the impossible. The clipped
    excess is spread over the neighbours by a forward and a backward pass, averaged."""
    dt = np.diff(ta)
    fwd = np.concatenate([[tb[0]], tb[0] + np.cumsum(np.clip(np.diff(tb), lo * dt, hi * dt))])
    back = np.concatenate([tb[-1] - np.cumsum(np.clip(np.diff(tb), lo * dt, hi * dt)[::-1])[::-1], [tb[-1]]])
    return 0.5 * (fwd + back)


def _regions(path: np.ndarray, chroma_cost: np.ndarray, fps: float, duration_a_s: float) -> list[Region]:
    """Confidence per :data:`REGION_S` of A from the path's cost against each row's median."""
    row_median = np.median(chroma_cost, axis=1)
    on_path = chroma_cost[path[:, 0], path[:, 1]]
    ratio = 1.0 - on_path / np.maximum(row_median[path[:, 0]], 1e-6)
    t = path[:, 0] / fps
    count = max(1, int(round(duration_a_s / REGION_S)))
    edges = np.linspace(0.0, duration_a_s, count + 1)
    regions = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (t >= lo) & (t < hi)
        conf = float(np.clip(np.mean(ratio[sel]), 0.0, 1.0)) if sel.any() else 0.0
        regions.append(Region(float(lo), float(hi), conf))
    return regions


def simplify(ta: np.ndarray, tb: np.ndarray, tolerance_s: float) -> tuple[tuple[float, float], ...]:
    """The fewest anchors (a subset of the points, ends kept) whose linear interpolation stays
    within ``tolerance_s`` of every point (Ramer-Douglas-Peucker on B-time)."""
    keep = np.zeros(len(ta), bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(ta) - 1)]
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        seg = slice(i + 1, j)
        line = tb[i] + (ta[seg] - ta[i]) * (tb[j] - tb[i]) / (ta[j] - ta[i])
        err = np.abs(tb[seg] - line)
        k = int(np.argmax(err))
        if err[k] > tolerance_s:
            mid = i + 1 + k
            keep[mid] = True
            stack += [(i, mid), (mid, j)]
    return tuple((float(x), float(y)) for x, y in zip(ta[keep], tb[keep]))


def describe_time(seconds: float) -> str:
    """``m:ss`` for a report line."""
    seconds = max(0.0, float(seconds))
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def low_confidence_lines(tm: TimeMap, threshold: float = LOW_CONFIDENCE) -> list[str]:
    """``"0:42–0:51: low confidence (0.31)"`` for each run of weak regions of A."""
    return [f"{describe_time(r.start_s)}–{describe_time(r.end_s)}: low confidence ({r.confidence:.2f})"
            for r in tm.low_confidence(threshold)]


def require_confidence(tm: TimeMap, threshold: float = LOW_CONFIDENCE) -> None:
    """Raise :class:`LowConfidenceError` when the map as a whole is below ``threshold``."""
    if tm.confidence < threshold:
        raise LowConfidenceError(
            f"the two performances do not match well enough to warp one onto the other (confidence "
            f"{tm.confidence:.2f} < {threshold:.2f}): they may be different songs, or share too little "
            "(try the same stem of both, e.g. --stem vocals)")


def plot_time_map(tm: TimeMap, path, *, names: tuple[str, str] = ("A", "B"),
                  threshold: float = LOW_CONFIDENCE) -> None:
    """A PNG of the similarity matrix (chroma), the DTW path and the final map, with A's
    low-confidence regions shaded, written atomically to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._common import atomic_path

    if tm.detail is None:
        raise ValueError("this time map holds no similarity matrix (read from a file?): nothing to plot")
    cost, wp, fps = tm.detail["cost"], tm.detail["path"], tm.detail["frames_per_s"]
    fig, ax = plt.subplots(figsize=(8, 7), dpi=100)
    extent = (0, cost.shape[1] / fps, 0, cost.shape[0] / fps)
    ax.imshow(1.0 - cost, origin="lower", aspect="auto", cmap="magma", extent=extent, vmin=0, vmax=1)
    ax.plot(wp[:, 1] / fps, wp[:, 0] / fps, color="cyan", lw=0.8, label="DTW path")
    ax.plot(tm.times_b, tm.times_a, color="lime", lw=1.2, ls="--", label="time map")
    for r in tm.low_confidence(threshold):
        ax.axhspan(r.start_s, r.end_s, color="red", alpha=0.25)
    ax.set_xlabel(f"{names[1]} (s)")
    ax.set_ylabel(f"{names[0]} (s)")
    ax.set_title(f"{names[0]} -> {names[1]}: shift {tm.semitones:+d} st, confidence {tm.confidence:.2f} "
                 "(red: low confidence)", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
