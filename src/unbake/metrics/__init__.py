"""Evaluation metrics: the SDR family, BSSEval v4, mixture consistency and triviality checks.

numpy/scipy only. Signals are channels-first: (c, t) for one signal, (s, c, t)
or ``{name: (c, t)}`` for a stem set. Results are JSON-friendly: Python floats,
None for undefined values, unbounded dB values clipped to ``DB_LIMIT``.
"""

from unbake.metrics.bsseval import FILTER_TAPS, METRICS, bss_eval, csdr, evaluate_stems
from unbake.metrics.consistency import (
    ENFORCE_METHODS,
    OCTAVE_BAND_EDGES_HZ,
    enforce_consistency,
    mixture_consistency,
)
from unbake.metrics.sdr import DB_LIMIT, SI_SDR_EPS, USDR_EPS, si_sdr, usdr, usdr_stems
from unbake.metrics.triviality import (
    DOMINANT_USDR_DB,
    IDENTICAL_CORRELATION,
    SILENT_STEM_DB,
    triviality_report,
)

__all__ = [
    "DB_LIMIT",
    "DOMINANT_USDR_DB",
    "ENFORCE_METHODS",
    "FILTER_TAPS",
    "IDENTICAL_CORRELATION",
    "METRICS",
    "OCTAVE_BAND_EDGES_HZ",
    "SILENT_STEM_DB",
    "SI_SDR_EPS",
    "USDR_EPS",
    "bss_eval",
    "csdr",
    "enforce_consistency",
    "evaluate_stems",
    "mixture_consistency",
    "si_sdr",
    "triviality_report",
    "usdr",
    "usdr_stems",
]
