"""Reference mastering: the tonal balance and loudness of a finished record, given to a mix.

A re-master of an old recording usually aims at the sound of another record. :func:`match_eq`
measures the long-term spectrum of both (Welch averages of every channel), smooths each over a
third of an octave, and gives the mix a linear-phase EQ that turns its spectrum into the
reference's, within ``±max_db`` and level-neutral on the mix's own spectrum (the loudness is set
afterwards, on the master bus, to the reference's integrated loudness unless the project names
one). Narrow peaks do not move it: a third of an octave is the width of the ear's critical bands
and of a mastering engineer's broad strokes.

Written here because no maintained library does it as a filter we can put in the master chain:
``matchering`` does reference mastering, but as a file-to-file pipeline under the GPL; pedalboard
has no linear-phase EQ, and its convolution truncates a filter's delay away.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AudioError
from .loudness import integrated_lufs
from .schema import DEFAULT_REFERENCE_MAX_DB

log = logging.getLogger(__name__)

SMOOTHING_OCTAVES = 1.0 / 3.0
LOW_HZ, HIGH_HZ = 20.0, 20000.0   # the matched band; the curve is held flat beyond its edges
MIN_REFERENCE_S = 2.0


@dataclass(frozen=True)
class ReferenceProfile:
    """What is matched: the reference's smoothed spectrum (dB, on :func:`_grid`) and loudness."""

    sample_rate: int
    spectrum_db: np.ndarray
    integrated_lufs: float


def _grid(sample_rate: int) -> int:
    """FFT length of the spectrum estimate: about 5 Hz per bin at any rate."""
    return 1 << int(round(np.log2(sample_rate / 5.0)))


def smoothed_spectrum_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Long-term power spectrum of ``audio (c, t)`` in dB, averaged over the channels and smoothed
    over a third of an octave around each bin; ``(n_fft // 2 + 1,)``."""
    from scipy.signal import welch

    n_fft = _grid(sample_rate)
    x = np.asarray(audio, dtype=np.float32)
    if x.shape[1] < n_fft:
        x = np.pad(x, ((0, 0), (0, n_fft - x.shape[1])))
    _, psd = welch(x, fs=sample_rate, nperseg=n_fft, noverlap=n_fft // 2, axis=-1)
    power = psd.mean(axis=0).astype(np.float64)
    freqs = np.arange(power.size) * sample_rate / n_fft
    half = 2.0 ** (SMOOTHING_OCTAVES / 2)
    lo = np.searchsorted(freqs, freqs / half, side="left")
    hi = np.maximum(np.searchsorted(freqs, freqs * half, side="right"), lo + 1)
    cum = np.concatenate([[0.0], np.cumsum(power)])
    smooth = (cum[hi] - cum[lo]) / (hi - lo)
    return 10.0 * np.log10(np.maximum(smooth, 1e-20))


def profile(audio: np.ndarray, sample_rate: int) -> ReferenceProfile:
    """The :class:`ReferenceProfile` of a reference recording ``(c, t)``."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 2:
        raise AudioError(f"audio must be shaped (channels, time), got {x.shape}")
    if x.shape[1] < MIN_REFERENCE_S * sample_rate:
        raise AudioError(f"a reference must be at least {MIN_REFERENCE_S:g} s long, got "
                         f"{x.shape[1] / sample_rate:.2f} s")
    lufs = integrated_lufs(x, sample_rate)
    if not np.isfinite(lufs):
        raise AudioError("the reference is silent")
    return ReferenceProfile(sample_rate, smoothed_spectrum_db(x, sample_rate), lufs)


@functools.lru_cache(maxsize=4)
def _file_profile(path: str, mtime_ns: int, size: int, sample_rate: int) -> ReferenceProfile:
    from ..audio import read_audio, resample

    audio, sr = read_audio(path)
    if sr != sample_rate:
        audio = resample(audio, sr, sample_rate)
    try:
        return profile(audio, sample_rate)
    except AudioError as exc:
        raise AudioError(f"{path}: {exc}") from None


def file_profile(path: str | os.PathLike, sample_rate: int) -> ReferenceProfile:
    """The profile of the reference file ``path`` at ``sample_rate``, computed once per file
    version and kept: a script or the studio that renders again with other settings does not
    decode the record again."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise AudioError(f"{p}: no such reference file") from None
    return _file_profile(str(p), st.st_mtime_ns, st.st_size, sample_rate)


def eq_curve_db(audio: np.ndarray, sample_rate: int, reference: ReferenceProfile, *,
                max_db: float = DEFAULT_REFERENCE_MAX_DB) -> np.ndarray:
    """Gain in dB per bin of :func:`_grid` that gives ``audio`` the reference's tonal balance:
    the difference of the smoothed spectra, level-neutral on ``audio``'s spectrum (the power
    through it is unchanged), within ``±max_db``, flat beyond 20 Hz and 20 kHz (or 0.95 of
    Nyquist)."""
    if reference.sample_rate != sample_rate:
        raise AudioError(f"the reference profile is at {reference.sample_rate} Hz, the audio at {sample_rate} Hz")
    own = smoothed_spectrum_db(audio, sample_rate)
    diff = reference.spectrum_db - own
    freqs = np.arange(own.size) * sample_rate / _grid(sample_rate)
    band = (freqs >= LOW_HZ) & (freqs <= min(HIGH_HZ, 0.95 * sample_rate / 2))
    first, last = np.flatnonzero(band)[[0, -1]]
    diff[:first], diff[last + 1:] = diff[first], diff[last]
    # level-neutral: the mix's power through the curve equals its power before
    weights = 10.0 ** (own / 10.0)
    diff -= 10.0 * np.log10(np.sum(weights * 10.0 ** (diff / 10.0)) / np.sum(weights))
    return np.clip(diff, -max_db, max_db)


def fir_from_curve(curve_db: np.ndarray) -> np.ndarray:
    """A linear-phase FIR (odd length ``2 * (len(curve_db) - 1) - 1``, Hann-windowed) whose
    magnitude follows ``curve_db`` on its FFT grid."""
    n_fft = 2 * (curve_db.size - 1)
    impulse = np.fft.irfft(10.0 ** (curve_db / 20.0), n_fft)
    impulse = np.roll(impulse, n_fft // 2)[1:]   # centred on n_fft // 2 - 1, symmetric
    return (impulse * np.hanning(impulse.size)).astype(np.float32)


def match_eq(audio: np.ndarray, sample_rate: int, reference: ReferenceProfile, *,
             max_db: float = DEFAULT_REFERENCE_MAX_DB) -> np.ndarray:
    """``audio (c, t)`` through the linear-phase EQ of :func:`eq_curve_db`: float32, same shape,
    time-aligned with the input (the filter's delay is removed)."""
    from scipy.signal import oaconvolve

    x = np.asarray(audio, dtype=np.float32)
    curve = eq_curve_db(x, sample_rate, reference, max_db=max_db)
    fir = fir_from_curve(curve)
    log.info("reference EQ: %+.1f dB to %+.1f dB", float(curve.min()), float(curve.max()))
    delay = fir.size // 2
    y = oaconvolve(x, fir[None, :], mode="full", axes=1)
    return np.ascontiguousarray(y[:, delay:delay + x.shape[1]], dtype=np.float32)


__all__ = ["ReferenceProfile", "eq_curve_db", "file_profile", "fir_from_curve", "match_eq", "profile",
           "smoothed_spectrum_db"]
