"""What a studio job does and the views the mixer shows: separation into a job folder, the
original as FLAC for the A/B switch, waveform peaks, loudness, the quality report and
spectrogram pictures.

A job folder holds::

    input             the upload, under a generated name
    original.flac     stream 0 of the input, decoded (what the A/B switch plays)
    stems/{stem}.flac the separated stems, plus stems/unbake.json (the StemSet layout)
    analysis.json     peaks, loudness and the quality report
    cache/            spectrograms and stems converted for download
    renders/          mixes exported from the mixer
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError, UnbakeError
from .jobs import Job, Reporter

log = logging.getLogger(__name__)

STEM_FORMAT = "flac"
PEAK_BUCKETS = 1200
SEPARATION_SHARE = 0.85  # of the progress bar; the rest is analysis
STEM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ANALYSIS_VERSION = 1


class JobFiles:
    """The paths of one job's folder; every name in it is generated here, none comes from a client."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def original(self) -> Path:
        return self.root / f"original.{STEM_FORMAT}"

    @property
    def stems_dir(self) -> Path:
        return self.root / "stems"

    def stem(self, name: str) -> Path:
        if not STEM_NAME_RE.match(name):
            raise OutputError(f"unusable stem name {name!r}")
        return self.stems_dir / f"{name}.{STEM_FORMAT}"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis.json"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def renders(self) -> Path:
        return self.root / "renders"


# ------------------------------------------------------------------------------ the job


def run_separation(job: Job, files: JobFiles, report: Reporter) -> dict[str, Any]:
    """Separate ``files.input`` with ``job.model`` into ``files.stems_dir``, then analyse.

    Returns the job fields to store (stems, sample rate, channels, duration).
    """
    from ..audio import info
    from ..separate import resolve_model, separate_file
    from ..stems import PROVENANCE_FILE, write_json_atomic

    report(0.0, "loading model")
    model = resolve_model(job.model)
    report.check()
    meta = info(files.input)
    report(0.0, "separating")
    targets = separate_file(
        files.input, files.stems_dir, model, format=STEM_FORMAT, filename="{stem}.{ext}", overwrite=True,
        progress=lambda f: report(SEPARATION_SHARE * f, "separating"),
    )
    names = list(targets)
    for name in names:
        if not STEM_NAME_RE.match(name):
            raise OutputError(f"the model produced a stem name the studio cannot store: {name!r}")
    provenance = {"input": job.name, "model": job.model, "studio_job": job.id}
    write_json_atomic(files.stems_dir / PROVENANCE_FILE, {
        "sample_rate": meta.sample_rate, "stems": names,
        "files": {n: p.name for n, p in targets.items()}, "provenance": provenance,
    })
    report(SEPARATION_SHARE, "analysing")
    write_original(files.input, files.original)
    report(SEPARATION_SHARE + 0.05, "analysing")
    analysis = analyse(files, names, report)
    write_json_atomic(files.analysis, analysis)
    report(1.0, "done")
    return {"stems": names, "sample_rate": analysis["sample_rate"], "channels": analysis["channels"],
            "duration_s": analysis["duration_s"]}


def write_original(src: Path, dst: Path) -> None:
    """Decode stream 0 of ``src`` to ``dst`` block by block (the A/B reference and check input)."""
    from ..audio.io import AudioWriter, iter_blocks

    sr, ch, blocks = iter_blocks(src)
    writer = AudioWriter(dst, sr, ch, overwrite=True)
    try:
        for block in blocks:
            writer.write(block)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def analyse(files: JobFiles, names: list[str], report: Reporter | None = None) -> dict[str, Any]:
    """Peaks, loudness and the quality report of a finished separation (JSON-ready)."""
    from ..audio import read_audio
    from ..stems import StemSet

    stems = StemSet.load(files.stems_dir, names=names)
    # the decoded input, not original.flac: a lossy decode may peak above full scale, which FLAC clips
    original, sr = read_audio(files.input)
    n = min(original.shape[1], stems.frames)
    original = original[:, :n]
    stem_arrays = {k: v[:, :n] for k, v in stems.items()}
    if report is not None:
        report.check()
    out: dict[str, Any] = {
        "version": ANALYSIS_VERSION,
        "sample_rate": stems.sample_rate,
        "channels": stems.channels,
        "frames": n,
        "duration_s": n / stems.sample_rate,
        "stems": names,
        "peaks": {"original": peaks(original), **{k: peaks(v) for k, v in stem_arrays.items()}},
        "loudness_lufs": {"original": loudness_lufs(original, sr),
                          **{k: loudness_lufs(v, sr) for k, v in stem_arrays.items()}},
        "rms_db": {"original": rms_db(original), **{k: rms_db(v) for k, v in stem_arrays.items()}},
    }
    if report is not None:
        report.check()
    out["quality"] = quality_report(original, stem_arrays, sr, stems_dir=files.stems_dir, mixture_path=files.input)
    return out


# ------------------------------------------------------------------------------ views


def peaks(audio: np.ndarray, buckets: int = PEAK_BUCKETS) -> list[float]:
    """Largest absolute sample of ``audio (c, t)`` over all channels in ``buckets`` equal spans."""
    mag = np.abs(np.asarray(audio, np.float32)).max(axis=0) if audio.size else np.zeros(0, np.float32)
    if mag.size == 0:
        return [0.0] * buckets
    edges = np.linspace(0, mag.size, buckets + 1).astype(np.int64)
    starts = np.minimum(edges[:-1], mag.size - 1)
    values = np.maximum.reduceat(mag, starts)
    return [round(float(v), 4) for v in values]


def loudness_lufs(audio: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness (ITU-R BS.1770) of ``audio (c, t)``; None when silent or too short."""
    from ..errors import AudioError
    from ..remix.master import integrated_lufs

    try:
        value = integrated_lufs(audio, sample_rate)
    except AudioError:
        return None
    return round(value, 2) if math.isfinite(value) else None


def rms_db(audio: np.ndarray) -> float | None:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return round(20 * math.log10(rms), 2) if rms > 0 else None


def quality_report(original: np.ndarray, stems: dict[str, np.ndarray], sample_rate: int, *,
                   stems_dir: Path | None = None, mixture_path: Path | None = None) -> dict[str, Any]:
    """The ``unbake check`` figures: stems-sum-to-mix SNR, the triviality flag and energy shares.

    Returns ``{"available": True, "snr_db", "exact", "trivial", "reasons", "stems": {name:
    {"energy_share", "leakage"}}, "report"}`` (``report``: the full report as computed), or
    ``{"available": False, "message"}`` when :mod:`unbake.metrics` cannot say.
    """
    try:
        if stems_dir is not None and mixture_path is not None:
            summary = _from_check_report(stems_dir, mixture_path)
            if summary is not None:
                return summary
        return _from_metrics(original, stems, sample_rate)
    except ImportError as exc:
        return {"available": False, "message": f"quality report unavailable: unbake.metrics lacks "
                                               f"mixture_consistency / triviality_report ({exc})"}
    except UnbakeError as exc:
        return {"available": False, "message": f"quality report failed: {exc}"}


def _from_check_report(stems_dir: Path, mixture_path: Path) -> dict[str, Any] | None:
    """What `unbake check` prints, from the function behind it (None where it does not exist)."""
    try:
        from ..metrics.report import check_report
    except ImportError:
        return None
    report = _jsonable(check_report(stems_dir, mixture_path))
    snr = report.get("consistency_snr_db")
    reason = report.get("trivial_reason")
    return {
        "available": True, "snr_db": snr, "exact": snr is None and bool(report.get("consistent")),
        "trivial": bool(report.get("trivial")), "reasons": [reason] if report.get("trivial") and reason else [],
        "stems": {k: {"energy_share": v.get("energy_share"), "leakage": v.get("leakage")}
                  for k, v in (report.get("stems") or {}).items()},
        "report": report,
    }


def _from_metrics(original: np.ndarray, stems: dict[str, np.ndarray], sample_rate: int) -> dict[str, Any]:
    from ..metrics import mixture_consistency, triviality_report

    consistency = _jsonable(mixture_consistency(original, stems, sample_rate))
    triviality = _jsonable(triviality_report(original, stems, sample_rate))
    return {
        "available": True, "snr_db": consistency.get("snr_db"), "exact": bool(consistency.get("exact")),
        "trivial": bool(triviality.get("trivial")), "reasons": list(triviality.get("reasons") or []),
        "stems": {k: {"energy_share": v.get("energy_share"), "leakage": v.get("leakage")}
                  for k, v in (triviality.get("stems") or {}).items()},
        "report": {"consistency": consistency, "triviality": triviality},
    }


def _jsonable(value: Any) -> Any:
    """Reports may be dataclasses or hold numpy scalars and infinities; JSON needs plain values."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    elif hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value


def spectrogram_png(audio: np.ndarray, sample_rate: int, path: Path, *, width_px: int = 1200,
                    height_px: int = 160) -> Path:
    """A log-frequency spectrogram of ``audio (c, t)`` (channels averaged) as a PNG, no axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy.signal import stft

    mono = np.asarray(audio, np.float64).mean(axis=0)
    n_fft = 2048
    hop = int(min(n_fft, max(256, mono.size // (2 * width_px))))
    if mono.size < n_fft:
        mono = np.pad(mono, (0, n_fft - mono.size))
    freqs, _, z = stft(mono, fs=sample_rate, nperseg=n_fft, noverlap=n_fft - hop, boundary=None, padded=False)
    db = 20 * np.log10(np.abs(z) + 1e-9)
    top = float(db.max()) if db.size else 0.0
    db = np.clip(db, top - 80.0, top)
    # rows on a log-frequency axis from 30 Hz to Nyquist, as people hear pitch
    rows = np.geomspace(30.0, sample_rate / 2, height_px)
    img = np.stack([np.interp(rows, freqs, db[:, i]) for i in range(db.shape[1])], axis=1)
    fig = Figure(figsize=(width_px / 100, height_px / 100), dpi=100)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(img, origin="lower", aspect="auto", cmap="magma", interpolation="bilinear")
    ax.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    FigureCanvasAgg(fig).print_png(str(tmp))
    tmp.replace(path)
    return path


def read_analysis(files: JobFiles) -> dict[str, Any]:
    try:
        return json.loads(files.analysis.read_text())
    except (OSError, ValueError) as exc:
        raise OutputError(f"the analysis of this job cannot be read ({exc.__class__.__name__})") from exc
