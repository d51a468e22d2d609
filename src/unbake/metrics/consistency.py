"""Mixture consistency: how far a stem set is from summing to its mixture, and how to fix it.

Separation models are not forced to output stems that add up to the input;
``mixture_consistency`` measures the gap (overall and per octave band) and
``enforce_consistency`` redistributes it so the stems sum to the mixture.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.ndimage
import scipy.signal

from unbake.errors import ConfigError, InvalidAudioError
from unbake.metrics.sdr import check_signal, check_stems, db_or_none, energy_db

__all__ = [
    "OCTAVE_BAND_EDGES_HZ",
    "ENFORCE_METHODS",
    "mixture_consistency",
    "enforce_consistency",
]

OCTAVE_BAND_EDGES_HZ = (20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0, 2560.0, 5120.0, 10240.0, 20480.0)
"""Edges of the ten octave bands (20 Hz doubling up to ~20 kHz) of the residual report.

Bands starting at or above Nyquist are left out; the last one kept ends at Nyquist.
"""

ENFORCE_METHODS = ("energy", "equal")

# Segment length of the Welch spectra behind the band report: 8192 samples
# resolve the 20-40 Hz band at 44.1 kHz with a few bins.
_WELCH_SEGMENT_SAMPLES = 8192
# Local energies below this fraction of the loudest one count as silence.
_SILENCE_FLOOR = 1e-12


def mixture_consistency(mixture: Any, stems: Any, sample_rate: int) -> dict[str, Any]:
    """Compare a mixture with the sum of its stems.

    mixture: (c, t). stems: ``{name: (c, t)}`` or (s, c, t), same (c, t) as the
    mixture. sample_rate: in Hz, for the band edges.

    Returns a JSON-friendly dict:

    * ``snr_db``: ``10 log10(sum(mix^2) / sum(res^2))`` with
      ``res = mixture - sum(stems)``; clipped to ``DB_LIMIT`` (300 dB) when the
      residual is zero or below float64 rounding; None if mixture and residual
      are both silent.
    * ``exact``: True when the residual is identically zero.
    * ``mixture_energy``, ``residual_energy`` (sums of squares), ``residual_peak``.
    * ``bands``: for each octave band (``OCTAVE_BAND_EDGES_HZ``, cut at Nyquist)
      ``{"low_hz", "high_hz", "residual_db"}`` where ``residual_db`` is the
      residual's energy in the band relative to the mixture's energy in the
      same band (Welch spectra, all channels summed); ``-DB_LIMIT`` when the
      residual is zero there, None when the mixture has no energy there.
    """
    mix = check_signal(mixture, "mixture")
    _, stack = _stems_like(stems, mix)
    residual = mix - stack.sum(axis=0)
    mixture_energy = float(np.sum(mix**2))
    residual_energy = float(np.sum(residual**2))
    return {
        "snr_db": db_or_none(energy_db(mixture_energy, residual_energy)),
        "exact": residual_energy == 0.0,
        "mixture_energy": mixture_energy,
        "residual_energy": residual_energy,
        "residual_peak": float(np.max(np.abs(residual))),
        "bands": _band_report(mix, residual, sample_rate),
    }


def enforce_consistency(
    mixture: Any, stems: Any, method: str = "energy", smoothing_samples: int = 2048
) -> Any:
    """Return stems that sum exactly (to float64 rounding) to the mixture.

    The residual ``r = mixture - sum(stems)`` is added back as
    ``stem_i + w_i * r`` with per-sample, per-channel weights ``w_i >= 0`` that
    sum to one over the stems, so the new stems add up to the mixture in the
    time domain and stems that already sum to it are returned unchanged.

    method:
        ``"energy"``: ``w_i`` proportional to stem i's local energy, a moving
        average of its squared samples over ``smoothing_samples`` (2048 ≈ 46 ms
        at 44.1 kHz) — the residual goes mostly to the stems that are playing
        at that moment, and to none that is silent there (local energy below
        1e-12 of the loudest). Where every stem is silent the weights fall back
        to equal.
        ``"equal"``: ``w_i = 1 / s``.
    mixture: (c, t). stems: ``{name: (c, t)}`` or (s, c, t), same (c, t).

    Returns the same container type as ``stems`` (dict with the same keys, or
    an (s, c, t) array), holding new float64 arrays; inputs are not modified.
    """
    if method not in ENFORCE_METHODS:
        raise ConfigError(f"method must be one of {ENFORCE_METHODS}, got {method!r}")
    if smoothing_samples < 1:
        raise ConfigError(f"smoothing_samples must be at least 1, got {smoothing_samples}")
    mix = check_signal(mixture, "mixture")
    names, stack = _stems_like(stems, mix)
    residual = mix - stack.sum(axis=0)
    n_stems = stack.shape[0]
    if method == "equal":
        weights = np.full(stack.shape, 1.0 / n_stems)
    else:
        local = scipy.ndimage.uniform_filter1d(stack**2, size=smoothing_samples, axis=-1, mode="reflect")
        # The filter's running sum leaves rounding residue (even negative values)
        # after loud passages; treat anything that small as silence so a stem
        # that is silent at a sample gets none of the residual there.
        local[local <= _SILENCE_FLOOR * float(local.max(initial=0.0))] = 0.0
        total = local.sum(axis=0, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            weights = np.where(total > 0.0, local / total, 1.0 / n_stems)
    fixed = stack + weights * residual[None]
    if isinstance(stems, Mapping):
        return {name: fixed[i] for i, name in enumerate(names)}
    return fixed


def _stems_like(stems: Any, mix: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    names, stack = check_stems(stems, "stems")
    if stack.shape[1:] != mix.shape:
        raise InvalidAudioError(f"stems have shape {stack.shape[1:]} but the mixture has shape {mix.shape}")
    return names, stack


def _band_report(mix: np.ndarray, residual: np.ndarray, sample_rate: int) -> list[dict[str, Any]]:
    if sample_rate <= 0:
        raise InvalidAudioError(f"sample_rate must be positive, got {sample_rate}")
    segment = min(_WELCH_SEGMENT_SAMPLES, mix.shape[-1])
    # No detrending: the band energies must add up to the signal energy.
    freqs, power = scipy.signal.welch(
        np.stack([mix, residual]), fs=sample_rate, nperseg=segment, detrend=False, scaling="spectrum", axis=-1
    )
    power = power.sum(axis=1)  # (2, f): mixture, residual; channels summed
    nyquist = sample_rate / 2.0
    bands = []
    for low, high in zip(OCTAVE_BAND_EDGES_HZ[:-1], OCTAVE_BAND_EDGES_HZ[1:], strict=True):
        if low >= nyquist:
            break
        high = min(high, nyquist)
        inside = (freqs >= low) & ((freqs < high) | ((high == nyquist) & (freqs <= high)))
        mix_band = float(power[0, inside].sum())
        res_band = float(power[1, inside].sum())
        residual_db = None if mix_band == 0.0 else db_or_none(energy_db(res_band, mix_band))
        bands.append({"low_hz": float(low), "high_hz": float(high), "residual_db": residual_db})
    return bands

