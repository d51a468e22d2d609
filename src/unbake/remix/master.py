"""Mastering of the mix bus: reference EQ, EQ, compressor, loudness normalisation (ITU-R BS.1770
integrated loudness, :mod:`.loudness`) and a look-ahead true-peak limiter; plus the true-peak meter.

Order in :func:`master`:

0. with a ``reference`` record, the EQ that gives the mix its tonal balance
   (:mod:`unbake.remix.reference`);
1. master EQ, then the master compressor (pedalboard);
2. a gain that brings the integrated loudness to ``loudness_lufs`` (the reference's loudness
   when there is a reference and no ``loudness_lufs``);
3. the true-peak limiter, which keeps the 4x-oversampled peak below ``true_peak_db``;
4. limiting lowers the loudness, so steps 2-3 are repeated from the compressed signal with the
   gain corrected by the measured shortfall until the loudness is within 0.1 LU of the target
   (at most :data:`MAX_LOUDNESS_PASSES` passes). The last step is always the limiter, so the
   output is below the ceiling even when the target is not reachable (a warning is logged).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ..errors import AudioError
from .._schema import join, validate
from .effects import apply_chain, build_chain, check_nyquist
from .loudness import integrated_lufs
from .reference import file_profile, match_eq
from .schema import MasterSettings

log = logging.getLogger(__name__)

OVERSAMPLE = 4
MAX_LOUDNESS_PASSES = 10
LOUDNESS_TOLERANCE_LU = 0.1
_TP_BLOCK = 1 << 17
_TP_PAD = 64  # input samples either side of a block: more than the resampling filter's reach


# ------------------------------------------------------------------------------ meters


def _oversampled_block(audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``audio[:, start:stop]`` oversampled 4x ``(c, 4 * (stop - start))``, with enough context
    on both sides that block edges match a whole-signal resampling."""
    from scipy.signal import resample_poly

    lo = max(0, start - _TP_PAD)
    hi = min(audio.shape[1], stop + _TP_PAD)
    up = resample_poly(np.asarray(audio[:, lo:hi], dtype=np.float32), OVERSAMPLE, 1, axis=1)
    off = (start - lo) * OVERSAMPLE
    return up[:, off: off + (stop - start) * OVERSAMPLE]


def sample_true_peaks(audio: np.ndarray) -> np.ndarray:
    """``(t,)``: for each sample n the largest magnitude, over channels, of the signal between
    n and n + 1 (the sample and its three 4x-oversampled neighbours)."""
    audio = np.asarray(audio)
    c, t = audio.shape
    peaks = np.empty(t, np.float64)
    for start in range(0, t, _TP_BLOCK):
        stop = min(t, start + _TP_BLOCK)
        up = _oversampled_block(audio, start, stop).reshape(c, stop - start, OVERSAMPLE)
        block = np.maximum(up.max(axis=2), -up.min(axis=2)).max(axis=0)
        peaks[start:stop] = np.maximum(block, np.abs(audio[:, start:stop]).max(axis=0))
    return peaks


def true_peak_db(audio: np.ndarray, sample_rate: int | None = None) -> float:
    """True peak of ``audio (c, t)`` in dBTP: the largest magnitude of the 4x-oversampled
    signal (BS.1770-4 annex 2 style), never below the sample peak. ``sample_rate`` is accepted
    for symmetry with :func:`integrated_lufs`; the measure does not depend on it."""
    del sample_rate
    audio = np.asarray(audio)
    if audio.ndim != 2:
        raise AudioError(f"audio must be shaped (channels, time), got {audio.shape}")
    peak = float(sample_true_peaks(audio).max()) if audio.shape[1] else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


# ------------------------------------------------------------------------------ limiter


def _gain_envelope(required: np.ndarray, sample_rate: int, lookahead_ms: float, release_ms: float) -> np.ndarray:
    """Smooth gain ``(t,)`` that is nowhere above ``required (t,)``.

    Works on blocks of about 1 ms: each block's gain is at most the smallest requirement of
    itself and its two neighbours, so linear interpolation between block centres stays below
    every sample's requirement. The gain falls linearly over the look-ahead before a peak and
    recovers exponentially (``release_ms`` time constant) after it.
    """
    from scipy.ndimage import minimum_filter1d

    t = required.shape[0]
    block = max(1, int(round(sample_rate / 1000)))
    nb = -(-t // block)
    padded = np.ones(nb * block, np.float64)
    padded[:t] = required
    per_block = padded.reshape(nb, block).min(axis=1)
    ahead = max(1, int(math.ceil(lookahead_ms * sample_rate / 1000 / block)))
    # window [k-1, k+ahead]: the min of every window a trailing box of `ahead` blocks averages
    # over covers blocks k-1..k+1
    size = ahead + 2
    windowed = minimum_filter1d(per_block, size=size, mode="nearest", origin=-(size // 2) + 1)
    csum = np.concatenate([[0.0], np.cumsum(np.concatenate([np.ones(ahead - 1), windowed]))])
    attack = (csum[ahead:] - csum[:-ahead]) / ahead
    attack = np.minimum(attack, windowed)
    rho = math.exp(-block / (release_ms * 1e-3 * sample_rate))
    gains = np.empty(nb, np.float64)
    g = 1.0
    for k in range(nb):  # the release is a recursion; ~1000 iterations per second of audio
        g = min(attack[k], 1.0 - (1.0 - g) * rho)
        gains[k] = g
    centres = np.arange(nb) * block + (block - 1) / 2.0
    return np.interp(np.arange(t), centres, gains)


def limit_true_peak(audio: np.ndarray, sample_rate: int, ceiling_db: float, *, lookahead_ms: float = 5.0,
                    release_ms: float = 100.0, max_passes: int = 6, peaks: np.ndarray | None = None) -> np.ndarray:
    """Look-ahead limiter: ``audio (c, t)`` -> ``(c, t)`` float32 whose :func:`true_peak_db` is
    below ``ceiling_db``. Channels share one gain (no image shift). Gain reduction is computed
    from the 4x-oversampled peaks; because a time-varying gain slightly changes intersample
    peaks, the result is measured and the limiter re-run with a lower internal ceiling until it
    passes; a final static trim makes the guarantee unconditional. ``peaks`` may pass
    :func:`sample_true_peaks` of ``audio`` when it is already known."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 2:
        raise AudioError(f"audio must be shaped (channels, time), got {x.shape}")
    ceiling = 10.0 ** (ceiling_db / 20.0)
    peaks = sample_true_peaks(x) if peaks is None else peaks
    if peaks.max(initial=0.0) < ceiling * 10 ** (-0.01 / 20):
        return x.astype(np.float32)
    target = ceiling * 10 ** (-0.05 / 20)  # a small margin for float32 output and encoding
    y = x
    for _ in range(max_passes):
        required = np.minimum(1.0, target / np.maximum(peaks, 1e-12))
        gain = _gain_envelope(required, sample_rate, lookahead_ms, release_ms)
        y = (x * gain).astype(np.float32)
        measured = sample_true_peaks(y).max()
        if measured < ceiling:
            return y
        target *= ceiling / measured * 10 ** (-0.02 / 20)
    trim = ceiling / sample_true_peaks(y).max() * 10 ** (-0.02 / 20)
    return (y * trim).astype(np.float32)


# ------------------------------------------------------------------------------ settings


def parse_master(value: Any, path: str = "master") -> MasterSettings:
    """The ``master:`` section. When ``loudness_lufs`` is set and ``true_peak_db`` is not
    mentioned, the ceiling defaults to -1 dBTP; ``true_peak_db: null`` switches the limiter off."""
    return MasterSettings() if value is None else validate(MasterSettings, value, path)


# ------------------------------------------------------------------------------ processing


def master(audio: np.ndarray, sample_rate: int, settings: MasterSettings, *, path: str = "master") -> np.ndarray:
    """Master ``audio (c, t)`` -> float32 ``(c, t)`` (order in the module docstring).
    The input is not modified; neutral settings return an unchanged copy."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 2:
        raise AudioError(f"audio must be shaped (channels, time), got {x.shape}")
    reference = None
    if settings.reference is not None:
        reference = file_profile(settings.reference, sample_rate)
        x = match_eq(x, sample_rate, reference, max_db=settings.reference_max_db)
    if settings.eq or (settings.compressor is not None and not settings.compressor.neutral):
        check_nyquist(settings.eq, sample_rate, join(path, "eq"))
        x = apply_chain(build_chain(eq=settings.eq, compressor=settings.compressor), x, sample_rate)
    # every path below returns a new array (astype copies), so the input is never the output
    ceiling = settings.true_peak_db

    # the true-peak profile of a gain-scaled signal is the scaled profile: measured once
    x_peaks = sample_true_peaks(x) if ceiling is not None else None

    def limit(sig: np.ndarray, scale: float = 1.0) -> np.ndarray:
        if ceiling is None:
            return sig.astype(np.float32)
        return limit_true_peak(sig, sample_rate, ceiling, lookahead_ms=settings.lookahead_ms,
                               release_ms=settings.release_ms, peaks=x_peaks * scale)

    target = settings.loudness_lufs
    if target is None and reference is not None:
        target = reference.integrated_lufs
    if target is None:
        return limit(x)
    start = integrated_lufs(x, sample_rate)
    if not math.isfinite(start):
        log.warning("the mix is silent: loudness normalisation skipped")
        return limit(x)
    gain_db = target - start
    y = x
    measured = start
    for _ in range(MAX_LOUDNESS_PASSES):
        scale = 10.0 ** (gain_db / 20.0)
        y = limit(x * np.float32(scale), scale)
        measured = integrated_lufs(y, sample_rate)
        if abs(measured - target) <= LOUDNESS_TOLERANCE_LU:
            break
        gain_db += target - measured
        if gain_db > 60.0:
            break
    if abs(measured - target) > 0.5:
        log.warning("loudness target %.1f LUFS not reached under the %.1f dBTP ceiling (got %.2f LUFS)",
                    target, ceiling if ceiling is not None else float("nan"), measured)
    return y


def measure(audio: np.ndarray, sample_rate: int) -> dict:
    """``{"integrated_lufs": .., "true_peak_db": .., "sample_peak_db": ..}`` of ``audio (c, t)``."""
    audio = np.asarray(audio)
    peak = float(np.abs(audio).max(initial=0.0))
    return {"integrated_lufs": integrated_lufs(audio, sample_rate),
            "true_peak_db": true_peak_db(audio, sample_rate),
            "sample_peak_db": 20 * math.log10(peak) if peak > 0 else -math.inf}
