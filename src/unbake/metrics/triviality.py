"""Non-triviality checks: did a separator actually split the mixture?

A model (or a bug) that copies the mixture into one stem and leaves the
others silent, or writes the same signal into every stem, still sums to the
mixture and can score a deceptively good mixture consistency. This report
flags such outputs and describes how the energy is spread over the stems.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from unbake.errors import InvalidAudioError
from unbake.metrics.sdr import check_signal, check_stems, db_or_none, energy_db, finite_or_none, usdr

__all__ = [
    "DOMINANT_USDR_DB",
    "SILENT_STEM_DB",
    "IDENTICAL_CORRELATION",
    "triviality_report",
]

DOMINANT_USDR_DB = 20.0
"""A stem "carries the whole mixture" when uSDR(mixture, stem) is at least this (dB)."""

SILENT_STEM_DB = -30.0
"""A stem "carries nothing" when its energy relative to the mixture's is at most this (dB)."""

IDENTICAL_CORRELATION = 0.99
"""Two stems are "identical" when the Pearson correlation of their mono sums exceeds this."""


def triviality_report(mixture: Any, stems: Any, sample_rate: int) -> dict[str, Any]:
    """Describe how a stem set splits its mixture and flag trivial splits.

    mixture: (c, t). stems: ``{name: (c, t)}`` or (s, c, t) with the same (c, t).
    sample_rate: in Hz (only for ``duration_s``).

    Per stem (``"stems"``):

    * ``energy_share``: stem energy / sum of all stem energies (None if all silent).
    * ``level_db``: stem energy relative to the mixture energy, clipped to
      ``-DB_LIMIT`` for a silent stem.
    * ``usdr_vs_mixture_db``: uSDR of the stem taken as an estimate of the
      whole mixture; high means the stem *is* the mixture.
    * ``leakage``: share of the stem's energy that a least-squares combination
      of the other stems (one gain per stem, all channels) reproduces, in
      [0, 1]. Independent sources give values near 0; a stem duplicated in, or
      built from, the others gives values near 1. None for a silent stem.

    ``correlations``: ``{a: {b: r}}``, Pearson correlation of the mono sums
    (channels added) of every pair of stems; None when a stem is constant.

    ``trivial`` is True when any of these ``reasons`` holds:

    * ``"dominant_stem:<name>"``: that stem has uSDR(mixture, stem) >=
      ``DOMINANT_USDR_DB`` and every other stem has ``level_db <=
      SILENT_STEM_DB``;
    * ``"identical_stems:<a>,<b>"``: correlation > ``IDENTICAL_CORRELATION``
      (e.g. the mixture copied into every stem);
    * ``"silent_stems"``: every stem is silent;
    * ``"silent_mixture"``: there is nothing to separate.
    """
    if sample_rate <= 0:
        raise InvalidAudioError(f"sample_rate must be positive, got {sample_rate}")
    mix = check_signal(mixture, "mixture")
    names, stack = check_stems(stems, "stems")
    if stack.shape[1:] != mix.shape:
        raise InvalidAudioError(f"stems have shape {stack.shape[1:]} but the mixture has shape {mix.shape}")

    mixture_energy = float(np.sum(mix**2))
    flat = stack.reshape(stack.shape[0], -1)
    gram = flat @ flat.T  # (s, s) inner products over all channels and samples
    energies = np.diag(gram).copy()
    total = float(energies.sum())

    per_stem: dict[str, dict[str, Any]] = {}
    levels = {}
    usdrs = {}
    for i, name in enumerate(names):
        levels[name] = energy_db(float(energies[i]), mixture_energy)
        usdrs[name] = usdr(mix, stack[i])
        per_stem[name] = {
            "energy_share": float(energies[i] / total) if total > 0 else None,
            "level_db": db_or_none(levels[name]),
            "usdr_vs_mixture_db": usdrs[name],
            "leakage": _leakage(gram, i),
        }

    mono = stack.sum(axis=1)
    mono = mono - mono.mean(axis=-1, keepdims=True)
    norms = np.sqrt(np.sum(mono**2, axis=-1))
    correlations: dict[str, dict[str, float | None]] = {name: {} for name in names}
    reasons: list[str] = []
    for i, j in itertools.combinations(range(len(names)), 2):
        if norms[i] == 0.0 or norms[j] == 0.0:
            r = None
        else:
            r = finite_or_none(np.clip(np.dot(mono[i], mono[j]) / (norms[i] * norms[j]), -1.0, 1.0))
        correlations[names[i]][names[j]] = r
        correlations[names[j]][names[i]] = r
        if r is not None and r > IDENTICAL_CORRELATION:
            reasons.append(f"identical_stems:{names[i]},{names[j]}")

    if mixture_energy == 0.0:
        reasons.append("silent_mixture")
    elif total == 0.0:
        reasons.append("silent_stems")
    else:
        for name in names:
            others_silent = all(_at_most(levels[o], SILENT_STEM_DB) for o in names if o != name)
            if usdrs[name] >= DOMINANT_USDR_DB and others_silent:
                reasons.append(f"dominant_stem:{name}")

    return {
        "trivial": bool(reasons),
        "reasons": reasons,
        "duration_s": mix.shape[-1] / sample_rate,
        "mixture_energy": mixture_energy,
        "stems": per_stem,
        "correlations": correlations,
        "thresholds": {
            "dominant_usdr_db": DOMINANT_USDR_DB,
            "silent_stem_db": SILENT_STEM_DB,
            "identical_correlation": IDENTICAL_CORRELATION,
        },
    }


def _at_most(value_db: float, limit_db: float) -> bool:
    return not math.isnan(value_db) and value_db <= limit_db


def _leakage(gram: np.ndarray, i: int) -> float | None:
    """R^2 of stem i regressed on the other stems, from their inner products."""
    own = gram[i, i]
    if own == 0.0 or gram.shape[0] == 1:
        return None if own == 0.0 else 0.0
    others = [k for k in range(gram.shape[0]) if k != i]
    # lstsq copes with silent or mutually identical "other" stems (singular Gram).
    coef = np.linalg.lstsq(gram[np.ix_(others, others)], gram[others, i], rcond=None)[0]
    explained = float(coef @ gram[others, i])
    return float(min(1.0, max(0.0, explained / own)))
