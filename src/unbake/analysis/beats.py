"""Ellis's dynamic-programming beat tracker ("Beat tracking by dynamic programming", JNMR 2007),
step for step as ``librosa.beat.beat_track`` (librosa 0.11) runs it on a given onset envelope and tempo.

Written here because importing ``librosa.beat`` builds its numba kernels in every new process
(one of them is never cached), which costs more CPU than the whole tempo and key analysis of a
song: every ``unbake separate`` with tags starts such a process (model card, "Speed and
memory"). The tracker itself is a short recursion; the tests hold it to librosa's beats.
"""

from __future__ import annotations

import numpy as np


def beat_frames(onset_envelope: np.ndarray, bpm: float | np.ndarray, frame_rate: float, *,
                tightness: float = 100.0, trim: bool = True) -> np.ndarray:
    """Beat frames ``(n,)`` of a mono onset envelope ``(frames,)`` at ``frame_rate`` frames/s,
    following ``bpm`` (one tempo, or one per frame) with the given ``tightness``.

    ``trim`` drops weak beats at the start and end (below half the RMS of the beats' smoothed
    local score). An envelope without onsets has no beats.
    """
    env = np.asarray(onset_envelope)
    if env.ndim != 1:
        raise ValueError(f"the onset envelope must be mono (frames,), got shape {env.shape}")
    if not env.any():
        return np.zeros(0, dtype=int)
    bpm = np.atleast_1d(np.asarray(bpm, dtype=np.float64))
    if np.any(bpm <= 0):
        raise ValueError(f"bpm must be strictly positive, got {bpm}")
    if tightness <= 0:
        raise ValueError("tightness must be strictly positive")
    if len(bpm) not in (1, len(env)):
        raise ValueError(f"bpm has {len(bpm)} values for {len(env)} frames (1 or one per frame)")
    per_beat = np.round(frame_rate * 60.0 / bpm)
    # normalised in the envelope's dtype, then float64 throughout (as librosa's kernels run for
    # the float64 frames-per-beat)
    score = local_score((env / (env.std(ddof=1) + np.finfo(env.dtype).tiny)).astype(np.float64), per_beat)
    backlink, cumulative = _dynamic_program(score, per_beat, np.float32(tightness))
    beats = np.zeros(len(env), dtype=bool)
    n = _last_beat(cumulative)
    while n >= 0:
        beats[n] = True
        n = backlink[n]
    return np.flatnonzero(_trimmed(score, beats, trim))


def local_score(env: np.ndarray, per_beat: np.ndarray) -> np.ndarray:
    """The envelope smoothed by a Gaussian a sixteenth of a beat wide (``per_beat``: frames per
    beat, one value or one per frame), float64. As librosa does, the first frame's onset never
    counts."""
    env = np.array(env, dtype=np.float64)
    env[0] = 0  # librosa's sum leaves out the first frame
    if len(per_beat) == 1:
        fpb = per_beat[0]
        window = np.exp(-0.5 * (np.arange(-fpb, fpb + 1) * 32.0 / fpb) ** 2)
        return np.convolve(env, window, mode="same")
    out = np.zeros(len(env))
    n = len(env)
    for i, fpb in enumerate(per_beat):  # a window of its own per frame: not a convolution
        half = int(fpb)
        window = np.exp(-0.5 * (np.arange(-fpb, fpb + 1) * 32.0 / fpb) ** 2)
        # out[i] = sum_k window[k] * env[i + half - k] over the frames that exist
        k0, k1 = max(0, i + half - n + 1), min(i + half + 1, 2 * half + 1)
        if k1 > k0:
            out[i] = np.dot(window[k0:k1], env[i + half - k0:i + half - k1:-1] if i + half - k1 >= 0
                            else env[i + half - k0::-1])
    return out


def _dynamic_program(score: np.ndarray, per_beat: np.ndarray, tightness: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``(backlink, cumulative score)``: for every frame, the best previous beat (between half
    and two beat periods back, the deviation from the period penalised by ``tightness``) and
    the best total score of a beat sequence ending there."""
    n = len(score)
    backlink = np.full(n, -1, dtype=np.int64)
    cumulative = np.zeros(n)
    threshold = 0.01 * float(score.max())
    penalties: dict[float, tuple[int, np.ndarray]] = {}  # frames per beat -> (nearest lag, penalty per lag)
    first_beat = True
    cumulative[0] = score[0]
    for i in range(n):
        fpb = float(per_beat[i if len(per_beat) > 1 else 0])
        if fpb not in penalties:
            near = int(np.round(fpb / 2))
            lags = np.arange(near, 2 * int(fpb) + 1)
            penalties[fpb] = near, tightness * (np.log(lags) - np.log(fpb)) ** 2
        near, penalty = penalties[fpb]
        hi, best_loc, best = i - near, -1, -np.inf
        if hi >= 0 and len(penalty):
            # candidates hi, hi-1, ... (the nearest wins a tie), lag = i - candidate
            cand = cumulative[max(hi - len(penalty) + 1, 0):hi + 1][::-1] - penalty[:hi + 1]
            j = int(np.argmax(cand))
            best_loc, best = hi - j, float(cand[j])
        cumulative[i] = score[i] + best if best_loc >= 0 else score[i]
        if first_beat and score[i] < threshold:
            backlink[i] = -1
        else:
            backlink[i] = best_loc
            first_beat = False
    return backlink, cumulative


def _last_beat(cumulative: np.ndarray) -> int:
    """The last local maximum of the cumulative score reaching half the median of them all."""
    padded = np.pad(cumulative, 1, mode="edge")
    peaks = (cumulative > padded[:-2]) & (cumulative >= padded[2:])
    threshold = cumulative.dtype.type(0.5 * np.median(cumulative[peaks])) if peaks.any() else np.inf
    found = np.flatnonzero(peaks & (cumulative >= threshold))
    return int(found[-1]) if len(found) else len(cumulative) - 1


def _trimmed(score: np.ndarray, beats: np.ndarray, trim: bool) -> np.ndarray:
    """``beats`` without the frames at either end whose local score is at most half the RMS of the
    beats' smoothed scores (``trim``), or zero."""
    beats = beats.copy()
    # librosa's slice of the full convolution: the beats' smoothed scores and two more past the last
    smooth = np.convolve(score[beats], np.hanning(5))[2:len(score) + 2]
    threshold = 0.5 * np.sqrt(np.mean(smooth ** 2)) if trim else 0.0
    weak = score <= threshold
    start = np.argmin(weak) if not weak.all() else len(score)
    beats[:start] = False
    stop = len(score) - np.argmin(weak[::-1]) if not weak.all() else 0
    beats[stop:] = False
    return beats
