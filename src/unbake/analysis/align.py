"""Lining up two songs in time: the offset that makes their onsets (and so their beat grids)
coincide, from an FFT cross-correlation of onset envelopes.

The envelopes are computed in three bands (below ~500 Hz, ~500 Hz-2.5 kHz, above) and
correlated band by band: a kick then lines up with a kick and a hi-hat with a hi-hat, where a
single broadband envelope would happily match a song's kicks with the other's off-beat hats
(a log-spectral onset envelope hardly tells a loud hit from a soft one).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidAudioError
from .analyze import ANALYSIS_RATE_HZ, to_mono_analysis_rate

# 64 samples at 22.05 kHz = 2.9 ms per envelope frame; with the parabolic peak refinement the
# offset is good to about a millisecond on clear onsets.
ALIGN_HOP = 64


def find_offset(a: np.ndarray, b: np.ndarray, sample_rate: int, *, max_offset_s: float | None = None,
                period_s: float | None = None) -> float:
    """Seconds by which ``b`` must be delayed to line up with ``a``.

    ``a`` and ``b`` are ``(c, t)`` (or mono ``(t,)``) at ``sample_rate``; a positive result
    means ``b`` should start that much later (``a(t) ~ b(t - offset)``), a negative one that
    ``b``'s first ``-offset`` seconds should be dropped.

    Without ``period_s`` the onset envelopes are cross-correlated as they are (FFT, every lag
    where at least a quarter of the shorter envelope overlaps; ``max_offset_s`` limits the
    search to ``[-max_offset_s, max_offset_s]``): right for two takes of the same music.

    With ``period_s`` (a beat, or a bar, of music that already shares one tempo) each envelope
    is first folded onto one period (the mean onset strength at each phase of the grid) and the
    two folded profiles are cross-correlated circularly; the answer lies in
    ``[-period_s / 2, period_s / 2)``. Averaging over every beat makes this far steadier for two
    *different* songs, whose individual beats have little in common but whose grids do; it
    assumes the tempo holds steady over the audio.
    """
    ea = band_envelopes(a, sample_rate)
    eb = band_envelopes(b, sample_rate)
    fps = ANALYSIS_RATE_HZ / ALIGN_HOP
    if period_s is not None:
        if not period_s > 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        return offset_on_grid(ea, eb, fps, period_s)
    return offset_from_envelopes(ea, eb, fps, max_offset_s=max_offset_s)


def fold(env: np.ndarray, frames_per_s: float, period_s: float, bins: int) -> np.ndarray:
    """Mean of ``env (bands, n)`` at each of ``bins`` phases of a ``period_s`` grid: ``(bands, bins)``."""
    phase = (np.arange(env.shape[1]) / frames_per_s % period_s) / period_s
    idx = np.minimum((phase * bins).astype(int), bins - 1)
    counts = np.maximum(np.bincount(idx, minlength=bins), 1)
    return np.stack([np.bincount(idx, weights=band, minlength=bins) / counts for band in env])


def offset_on_grid(ea: np.ndarray, eb: np.ndarray, frames_per_s: float, period_s: float) -> float:
    """Circular cross-correlation of folded envelopes (see :func:`find_offset`), in seconds."""
    bins = max(16, int(round(period_s * frames_per_s)))  # about one envelope frame per bin
    pa, pb = fold(np.atleast_2d(ea), frames_per_s, period_s, bins), fold(np.atleast_2d(eb), frames_per_s, period_s, bins)
    score = np.zeros(bins)
    for band_a, band_b in zip(pa, pb):
        sa, sb = band_a.std(), band_b.std()
        if sa == 0 or sb == 0:
            continue
        fa = np.fft.rfft((band_a - band_a.mean()) / sa)
        fb = np.fft.rfft((band_b - band_b.mean()) / sb)
        score += np.fft.irfft(fa * np.conj(fb), n=bins)
    k = int(np.argmax(score))
    y0, y1, y2 = score[(k - 1) % bins], score[k], score[(k + 1) % bins]
    den = y0 - 2 * y1 + y2
    frac = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5)) if den < 0 else 0.0
    lag = (k + frac + bins / 2) % bins - bins / 2  # into [-bins/2, bins/2)
    return float(lag * period_s / bins)


# mel-band edges of the three onset bands (of 128 mel bands up to 11 kHz)
BAND_EDGES = (0, 16, 48, 128)


def band_envelopes(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Onset strength in the bands of :data:`BAND_EDGES`: ``(bands, frames)`` at
    ``ALIGN_HOP`` samples of :data:`ANALYSIS_RATE_HZ` per frame."""
    from ..audio.features import onset_strength

    mono = to_mono_analysis_rate(x, sample_rate)
    env = onset_strength(mono, ANALYSIS_RATE_HZ, ALIGN_HOP, n_fft=1024, band_edges=BAND_EDGES).astype(np.float64)
    if not np.any(env > 0):
        raise InvalidAudioError("cannot align audio without onsets (silence or a steady tone)")
    return env


def offset_from_envelopes(ea: np.ndarray, eb: np.ndarray, frames_per_s: float, *,
                          max_offset_s: float | None = None) -> float:
    """The lag (s) maximising the summed cross-correlation of onset envelopes ``(bands, n)``
    and ``(bands, m)`` (1-D envelopes are one band). Each band is standardised first, so a
    band counts by how well it lines up, not by how loud it is."""
    from scipy.signal import correlate

    ea, eb = np.atleast_2d(ea), np.atleast_2d(eb)
    if ea.shape[0] != eb.shape[0]:
        raise ValueError(f"envelopes have {ea.shape[0]} and {eb.shape[0]} bands")
    n, m = ea.shape[1], eb.shape[1]
    xc = np.zeros(n + m - 1)
    for band_a, band_b in zip(ea, eb):
        sa, sb = band_a.std(), band_b.std()
        if sa == 0 or sb == 0:
            continue  # a band without onsets in either signal says nothing
        xc += correlate((band_a - band_a.mean()) / sa, (band_b - band_b.mean()) / sb, mode="full", method="fft")
    lags = np.arange(-(m - 1), n)
    # unbiased: divide by how many frames overlap at each lag, else small lags always win
    overlap = np.minimum(n, lags + m) - np.maximum(0, lags)
    valid = overlap >= max(8, min(n, m) // 4)
    if max_offset_s is not None:
        valid &= np.abs(lags) <= max_offset_s * frames_per_s
    if not valid.any():
        return 0.0
    score = np.where(valid, xc / np.maximum(overlap, 1), -np.inf)
    i = int(np.argmax(score))
    frac = 0.0
    if 0 < i < len(score) - 1 and np.isfinite(score[i - 1]) and np.isfinite(score[i + 1]):
        y0, y1, y2 = score[i - 1], score[i], score[i + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            frac = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
    return float((lags[i] + frac) / frames_per_s)
