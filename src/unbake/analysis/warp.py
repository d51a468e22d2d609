"""Time-varying stretch: play audio along a piecewise-linear time map (anchors ``(source time,
output time)``), pitch-shifted in the same pass, with Rubber Band (``pedalboard.time_stretch``).

Why piecewise and not pedalboard's per-sample ``stretch_factor`` array (pedalboard >= 0.9.8):
that array is followed with Rubber Band's block latency. On a click train with a rate changing
every 0.3 s (0.7..1.4) clicks landed up to 18 ms off the integrated curve at 44.1 kHz; delaying
the array by the best of several latencies still left 2-6 ms median and 5-13 ms worst errors,
with a best delay that depended on the sample rate and the pitch settings. A warp that must put
notes on another performance's notes cannot drift like that. The piecewise warp below lands
the same clicks within 0.5 ms median and 3 ms worst. Its cost is one Rubber Band call per
segment, about 0.15 s of set-up each on the development machine, which dominates its run time.
Here each stretch
between two anchors is one constant-rate Rubber Band pass over the segment plus
:data:`CONTEXT_S` of audio either side (so the stretcher is warmed up where the segment
starts), cut at the anchors to the sample and joined to its neighbours with a short linear
crossfade (:data:`CROSSFADE_S`) centred on the anchor. Both sides of a crossfade render the
same source moment, so the join neither clicks nor moves the anchor.
"""

from __future__ import annotations

import numpy as np

from .transforms import MAX_RATE, MIN_RATE, TransformError, _check_audio, _rubberband, check_semitones

CONTEXT_S = 0.1
CROSSFADE_S = 0.02
# a steady passage needs only its two end anchors; pieces longer than this are still split so
# that a long file is not one huge Rubber Band call
MAX_PIECE_S = 30.0


def warp(audio: np.ndarray, sample_rate: int, anchors, *, semitones: float = 0.0, preserve_formants: bool = False,
         length_s: float | None = None) -> np.ndarray:
    """Play ``audio (c, t)`` so that source time ``s_k`` lands at output time ``d_k`` for every
    anchor ``(s_k, d_k)`` (seconds, both strictly increasing), linearly between anchors.

    Before the first and after the last anchor the edge segments' rates continue to the ends
    of the audio; output before time 0 is dropped, and the output is ``length_s`` long (default:
    until the last source sample) ``(c, n)`` float32. ``semitones`` shifts the pitch in the same
    pass; ``preserve_formants`` keeps a voice's timbre when shifting.
    """
    from .timemap import check_anchors

    x = _check_audio(audio)
    semitones = check_semitones(semitones)
    try:
        check_anchors(anchors)
    except ValueError as exc:
        raise TransformError(str(exc)) from None
    sr = float(sample_rate)
    arr = np.asarray(anchors, float) * sr
    src, dst = arr[:, 0], arr[:, 1]
    total = x.shape[1]
    rates = np.diff(src) / np.diff(dst)
    bad = (rates < MIN_RATE) | (rates > MAX_RATE)
    if np.any(bad):
        k = int(np.argmax(bad))
        raise TransformError(f"the time map asks for a stretch by {rates[k]:.2f} near {src[k] / sr:.2f} s, "
                             f"outside {MIN_RATE}..{MAX_RATE}")
    # continue the edge rates to the ends of the source
    if src[0] > 0:
        dst = np.concatenate([[dst[0] - src[0] / rates[0]], dst])
        src = np.concatenate([[0.0], src])
    if src[-1] < total:
        dst = np.concatenate([dst, [dst[-1] + (total - src[-1]) / rates[-1]]])
        src = np.concatenate([src, [float(total)]])
    src, dst = _split_long(src, dst, MAX_PIECE_S * sr)
    n_out = int(round(length_s * sr)) if length_s is not None else max(int(np.ceil(dst[-1])), 0)
    out = np.zeros((x.shape[0], n_out), np.float64)
    ctx = int(CONTEXT_S * sr)
    lengths = np.diff(dst)
    # half-width of the crossfade at each inner anchor: never more than half either neighbour
    half = np.minimum(CROSSFADE_S * sr / 2, np.minimum(lengths[:-1], lengths[1:]) / 2)
    half = np.concatenate([[0.0], half, [0.0]])
    for k in range(len(src) - 1):
        s0, s1, d0, d1 = src[k], src[k + 1], dst[k], dst[k + 1]
        lo_out, hi_out = int(np.floor(d0 - half[k])), int(np.ceil(d1 + half[k + 1]))
        if hi_out <= 0 or lo_out >= n_out:
            continue
        rate = (s1 - s0) / (d1 - d0)
        c0 = max(int(np.floor(s0)) - ctx, 0)
        c1 = min(int(np.ceil(s1)) + ctx, total)
        chunk = x[:, c0:c1]
        if abs(rate - 1.0) < 1e-6 and semitones == 0.0:
            y = chunk.astype(np.float32)
        else:
            y = _rubberband(chunk, sample_rate, rate, semitones, preserve_formants)
        # output sample p plays source position s0 + (p - d0) * rate, i.e. y index (s0 - c0) / rate + p - d0
        lead = (s0 - c0) / rate - d0
        p = np.arange(max(lo_out, 0), min(hi_out, n_out))
        idx = np.round(p + lead).astype(int)
        ok = (idx >= 0) & (idx < y.shape[1])
        p, idx = p[ok], idx[ok]
        w = _weight(p.astype(float), d0, d1, half[k], half[k + 1])
        out[:, p] += y[:, idx] * w
    return out.astype(np.float32)


def _weight(p: np.ndarray, d0: float, d1: float, h0: float, h1: float) -> np.ndarray:
    """1 between the anchors, linear ramps of half-width ``h0``/``h1`` centred on them: the
    neighbours' ramps add up to exactly 1."""
    w = np.ones_like(p)
    if h0 > 0:
        w = np.minimum(w, np.clip((p - (d0 - h0)) / (2 * h0), 0.0, 1.0))
    else:
        w = np.where(p < d0 - 0.5, 0.0, w)
    if h1 > 0:
        w = np.minimum(w, np.clip(((d1 + h1) - p) / (2 * h1), 0.0, 1.0))
    else:
        w = np.where(p >= d1 - 0.5, 0.0, w)
    return w


def _split_long(src: np.ndarray, dst: np.ndarray, max_len: float) -> tuple[np.ndarray, np.ndarray]:
    out_s, out_d = [src[0]], [dst[0]]
    for s0, s1, d0, d1 in zip(src[:-1], src[1:], dst[:-1], dst[1:]):
        pieces = int(np.ceil((d1 - d0) / max_len))
        for i in range(1, pieces + 1):
            out_s.append(s0 + (s1 - s0) * i / pieces)
            out_d.append(d0 + (d1 - d0) * i / pieces)
    return np.array(out_s), np.array(out_d)


def warp_to_bpm(audio: np.ndarray, sample_rate: int, to_bpm: float, *, guide: np.ndarray | None = None,
                semitones: float = 0.0, preserve_formants: bool = False,
                prior_bpm: float = 120.0) -> tuple[np.ndarray, tuple[tuple[float, float], ...]]:
    """Put a free-tempo performance's beats on a steady ``to_bpm`` grid: ``(audio (c, n),
    anchors (source time, grid time))``.

    Beats are tracked (tempo-following, :func:`.tempo.track_beats`) on ``guide`` (same rate and
    length: the whole song when ``audio`` is one of its stems, whose beat is often faint), else
    on ``audio``; the first downbeat lands on a bar line (:func:`.tempo.grid_anchors`).
    """
    anchors = grid_map(audio if guide is None else guide, sample_rate, to_bpm, prior_bpm=prior_bpm)
    return warp(audio, sample_rate, anchors, semitones=semitones, preserve_formants=preserve_formants), anchors


def grid_map(audio: np.ndarray, sample_rate: int, to_bpm: float, *,
             prior_bpm: float = 120.0) -> tuple[tuple[float, float], ...]:
    """Anchors ``(source time, grid time)`` putting the tracked beats of ``audio (c, t)`` on a
    steady ``to_bpm`` grid, the first downbeat on a bar line (:mod:`.tempo`)."""
    from .analyze import to_mono_analysis_rate
    from .tempo import MIN_TRACKED_BEATS, downbeats, grid_anchors, track_beats

    if not (np.isfinite(to_bpm) and 20.0 <= float(to_bpm) <= 400.0):
        raise TransformError(f"the grid's tempo must be between 20 and 400 BPM, got {to_bpm:g}")
    mono = to_mono_analysis_rate(audio, sample_rate)
    beats, _ = track_beats(mono, prior_bpm=prior_bpm)
    if len(beats) < MIN_TRACKED_BEATS:
        raise TransformError(f"found {len(beats)} beats; a steady grid needs at least {MIN_TRACKED_BEATS}")
    return grid_anchors(beats, downbeats(mono, beats), to_bpm)
