"""Signal-to-distortion ratios on whole signals: the MDX "utterance" SDR and SI-SDR.

Every function takes channels-first arrays, ``(c, t)`` for one signal and
``(s, c, t)`` (or a ``{name: (c, t)}`` dict) for a set of stems, and returns
plain Python floats so results can go straight into JSON.

The input checks and JSON helpers at the bottom are shared by the other
metrics modules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from unbake.errors import ChannelLayoutError, InvalidAudioError

__all__ = ["USDR_EPS", "SI_SDR_EPS", "DB_LIMIT", "usdr", "usdr_stems", "si_sdr"]

USDR_EPS = 1e-7
"""Added to both energies in :func:`usdr`, as in the MDX challenge / Demucs ``new_sdr``."""

SI_SDR_EPS = 1e-8
"""Keeps :func:`si_sdr` finite for silent or exact signals."""

DB_LIMIT = 300.0
"""Magnitude at which unbounded dB figures are clipped in reports.

300 dB is above anything float64 rounding can produce for audio-range signals
(relative rounding ~1e-16 gives ~320 dB only for pathological cases), so a
clipped value reads as "exact to machine precision".
"""


def usdr(reference: Any, estimate: Any) -> float:
    """MDX-challenge SDR ("uSDR") of one estimate over the whole signal, in dB.

    ``10 log10((sum(ref^2) + eps) / (sum((ref - est)^2) + eps))`` with the sums
    over all channels and samples and ``eps = USDR_EPS``. An exact estimate gives
    the finite value ``10 log10(sum(ref^2) / eps + 1)``.

    reference, estimate: (c, t) arrays of the same shape.
    """
    ref, est = check_pair(reference, estimate)
    return _usdr(ref, est)


def usdr_stems(references: Any, estimates: Any) -> dict[str, Any]:
    """uSDR for every stem and their mean.

    references, estimates: ``{name: (c, t)}`` dicts with the same keys, or
    ``(s, c, t)`` arrays (stems are then named ``"0"``, ``"1"``, ...).
    Returns ``{"stems": {name: dB}, "mean": dB}``.
    """
    names, refs, ests = check_stem_pair(references, estimates)
    per_stem = {name: _usdr(refs[i], ests[i]) for i, name in enumerate(names)}
    return {"stems": per_stem, "mean": float(np.mean(list(per_stem.values())))}


def si_sdr(reference: Any, estimate: Any, zero_mean: bool = True) -> float:
    """Scale-invariant SDR (Le Roux et al., "SDR - half-baked or well done?", 2019), in dB.

    Per channel: ``alpha = <est, ref> / <ref, ref>``, target ``alpha * ref``,
    noise ``est - target``, ``SI-SDR = 10 log10(|target|^2 / |noise|^2)``.
    The result is the mean of the per-channel dB values, matching the usual
    multichannel practice (asteroid, torchmetrics) of treating channels as
    separate utterances. ``SI_SDR_EPS`` is added to the projection and both
    energies so silent or exact signals stay finite.

    zero_mean: remove each channel's mean from both signals first, as the paper
        prescribes; set False to score DC offsets too.
    reference, estimate: (c, t) arrays of the same shape.
    """
    ref, est = check_pair(reference, estimate)
    if zero_mean:
        ref = ref - ref.mean(axis=-1, keepdims=True)
        est = est - est.mean(axis=-1, keepdims=True)
    alpha = (np.sum(ref * est, axis=-1, keepdims=True) + SI_SDR_EPS) / (
        np.sum(ref**2, axis=-1, keepdims=True) + SI_SDR_EPS
    )
    target = alpha * ref
    noise = est - target
    ratio = (np.sum(target**2, axis=-1) + SI_SDR_EPS) / (np.sum(noise**2, axis=-1) + SI_SDR_EPS)
    return float(np.mean(10.0 * np.log10(ratio)))


def _usdr(ref: np.ndarray, est: np.ndarray) -> float:
    num = float(np.sum(ref**2)) + USDR_EPS
    den = float(np.sum((ref - est) ** 2)) + USDR_EPS
    return 10.0 * math.log10(num / den)


# Shared input checks ---------------------------------------------------------------------------


def check_signal(audio: Any, what: str = "signal") -> np.ndarray:
    """Validate one channels-first signal and return it as float64 (c, t).

    Raises ChannelLayoutError for anything that is not 2-D or that looks
    time-first (more channels than samples), InvalidAudioError for empty,
    non-real or non-finite data. Never modifies ``audio``.
    """
    array = np.asarray(audio)
    if array.ndim != 2:
        raise ChannelLayoutError(
            f"{what} must be shaped (channels, time); got {array.ndim}-D array of shape {array.shape}"
        )
    channels, samples = array.shape
    if channels == 0 or samples == 0:
        raise InvalidAudioError(f"{what} is empty (shape {array.shape})")
    if channels > samples:
        raise ChannelLayoutError(
            f"{what} has shape {array.shape}: more channels than samples; "
            "expected (channels, time) — transpose (time, channels) input"
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise InvalidAudioError(f"{what} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise InvalidAudioError(f"{what} contains NaN or infinite samples")
    return array


def check_pair(reference: Any, estimate: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a reference/estimate pair of (c, t) signals with equal shapes."""
    ref = check_signal(reference, "reference")
    est = check_signal(estimate, "estimate")
    if ref.shape != est.shape:
        raise InvalidAudioError(f"reference has shape {ref.shape} but estimate has shape {est.shape}")
    return ref, est


def check_stems(stems: Any, what: str = "stems") -> tuple[tuple[str, ...], np.ndarray]:
    """Validate a stem set; returns (names, float64 array (s, c, t)).

    stems: ``{name: (c, t)}`` (names kept in dict order) or an (s, c, t) array
    (names ``"0"``, ``"1"``, ...). All stems must share one shape.
    """
    if isinstance(stems, Mapping):
        if not stems:
            raise InvalidAudioError(f"{what}: no stems given")
        names = tuple(str(name) for name in stems)
        arrays = [check_signal(audio, f"{what}[{name!r}]") for name, audio in stems.items()]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            detail = ", ".join(f"{n}: {a.shape}" for n, a in zip(names, arrays, strict=True))
            raise InvalidAudioError(f"{what} have different shapes ({detail})")
        return names, np.stack(arrays)
    array = np.asarray(stems)
    if array.ndim != 3:
        raise ChannelLayoutError(
            f"{what} must be a {{name: (channels, time)}} dict or a (stems, channels, time) array; "
            f"got {array.ndim}-D array of shape {array.shape}"
        )
    if array.shape[0] == 0:
        raise InvalidAudioError(f"{what}: no stems given")
    arrays = [check_signal(array[i], f"{what}[{i}]") for i in range(array.shape[0])]
    return tuple(str(i) for i in range(array.shape[0])), np.stack(arrays)


def check_stem_pair(references: Any, estimates: Any) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Validate matching reference and estimate stem sets.

    Dicts must have the same keys (estimates are reordered to the references'
    order); arrays must have the same shape. Returns (names, refs, ests) with
    float64 (s, c, t) arrays.
    """
    if isinstance(references, Mapping) and isinstance(estimates, Mapping):
        if set(references) != set(estimates):
            raise InvalidAudioError(
                f"reference stems {sorted(map(str, references))} and estimate stems "
                f"{sorted(map(str, estimates))} differ"
            )
        estimates = {name: estimates[name] for name in references}
    names, refs = check_stems(references, "references")
    est_names, ests = check_stems(estimates, "estimates")
    if refs.shape != ests.shape:
        raise InvalidAudioError(f"references have shape {refs.shape} but estimates have shape {ests.shape}")
    if isinstance(references, Mapping) != isinstance(estimates, Mapping):
        names = names if isinstance(references, Mapping) else est_names
    return names, refs, ests


# JSON helpers ----------------------------------------------------------------------------------


def db_or_none(value: float) -> float | None:
    """A dB figure for JSON: NaN -> None, +-inf and beyond -> +-DB_LIMIT."""
    value = float(value)
    if math.isnan(value):
        return None
    return max(-DB_LIMIT, min(DB_LIMIT, value))


def finite_or_none(value: float) -> float | None:
    """A float for JSON: NaN or infinite -> None."""
    value = float(value)
    return value if math.isfinite(value) else None


def energy_db(num: float, den: float) -> float:
    """``10 log10(num / den)`` with 0/0 -> NaN, x/0 -> +inf, 0/x -> -inf (no warnings)."""
    if den == 0.0:
        return math.nan if num == 0.0 else math.inf
    if num == 0.0:
        return -math.inf
    return 10.0 * math.log10(num / den)
