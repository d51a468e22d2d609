"""The `unbake check` report for any separation output (ours or another tool's): do the stems
sum back to the mixture, and is the split non-trivial?"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import AudioError

CONSISTENT_SNR_DB = 20.0
"""Stems count as summing to the mix at or above this SNR: lossless outputs reach 100+ dB,
lossy (mp3/aac) encodings of consistent stems land around 20-35 dB."""


def check_stemset(mixture: np.ndarray, stems: dict[str, np.ndarray], sample_rate: int) -> dict:
    """Report for in-memory stems ``{name: (c, t)}`` and their mixture ``(c, t)``."""
    from .consistency import mixture_consistency
    from .triviality import triviality_report

    n = min([mixture.shape[1]] + [s.shape[1] for s in stems.values()])
    mix = mixture[:, :n]
    cut = {k: v[:, :n] for k, v in stems.items()}
    cons = mixture_consistency(mix, cut, sample_rate)
    triv = triviality_report(mix, cut, sample_rate)
    snr = cons["snr_db"]
    return {
        "consistency_snr_db": snr if snr is not None else 0.0,
        "consistent": bool(snr is not None and snr >= CONSISTENT_SNR_DB),
        "consistency_threshold_db": CONSISTENT_SNR_DB,
        "residual_bands": cons["bands"],
        "trivial": triv["trivial"],
        "trivial_reason": ", ".join(triv["reasons"]),
        "stems": triv["stems"],
        "correlations": triv["correlations"],
        "thresholds": triv["thresholds"],
        "duration_s": n / sample_rate,
        "sample_rate": sample_rate,
    }


def check_report(stems_dir: str | os.PathLike, mixture: str | os.PathLike) -> dict:
    """Read a stems folder and the mixture file (resampled to the stems' rate if needed)."""
    from ..audio import read_audio, resample
    from ..audio.dsp import convert_channels
    from ..stems import StemSet

    stems = StemSet.load(stems_dir)
    mix, sr = read_audio(mixture)
    if sr != stems.sample_rate:
        mix = resample(mix, sr, stems.sample_rate)
    if mix.shape[0] != stems.channels:
        if mix.shape[0] > 2 or stems.channels > 2:
            raise AudioError(f"{mixture}: {mix.shape[0]} channels but the stems have {stems.channels}")
        mix = convert_channels(mix, stems.channels)
    report = check_stemset(mix, dict(stems.items()), stems.sample_rate)
    report["stems_dir"] = str(Path(stems_dir))
    report["mixture"] = str(Path(mixture))
    return report
