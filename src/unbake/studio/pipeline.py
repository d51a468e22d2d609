"""What a studio job does and the views the mixer shows: separation into a job folder, the
original as FLAC for the A/B switch, waveform peaks, loudness, the quality report and
spectrogram pictures.

A job folder holds::

    input             the upload, under a generated name
    original.flac     stream 0 of the input, decoded (what the A/B switch plays)
    stems/{stem}.flac the separated stems, plus stems/unbake.json (the StemSet layout)
    analysis.json     peaks, loudness and the quality report
    stems-loudness.npz  K-weighted energies of the original and the stems per 100 ms (A/B match)
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
SEPARATION_SHARE = 0.85  # of the progress bar; the rest is analysis
ANALYSIS_START = 0.9
STEM_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ANALYSIS_VERSION = 2


def _entry(name: str) -> property:
    return property(lambda self: self.root / name, doc=f"``<job>/{name}``")


class JobFiles:
    """The paths of one job's folder; every name in it is generated here, none comes from a client."""

    def __init__(self, root: Path) -> None:
        self.root = root

    input = _entry("input")
    original = _entry(f"original.{STEM_FORMAT}")
    stems_dir = _entry("stems")
    analysis = _entry("analysis.json")
    loudness = _entry("stems-loudness.npz")
    cache = _entry("cache")
    renders = _entry("renders")

    def stem(self, name: str) -> Path:
        if not STEM_NAME_RE.match(name):
            raise OutputError(f"unusable stem name {name!r}")
        return self.stems_dir / f"{name}.{STEM_FORMAT}"


# ------------------------------------------------------------------------------ the job


def run_separation(job: Job, files: JobFiles, report: Reporter) -> dict[str, Any]:
    """Separate ``files.input`` with ``job.model`` into ``files.stems_dir``, then analyse.

    Returns the job fields to store (stems, sample rate, channels, duration).
    """
    from ..audio import info
    from ..separate import output_stems, resolve_model, separate_file
    from ..stems import PROVENANCE_FILE, write_json_atomic

    report(0.0, "loading model")
    model = resolve_model(job.model)
    report.check()
    meta = info(files.input)
    check_free_disk(files.root, meta.duration_s, meta.sample_rate, meta.channels, len(output_stems(model, None)))
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
    transcode(files.input, files.original)
    report(ANALYSIS_START, "analysing")
    analysis = analyse(files, names, report)
    write_json_atomic(files.analysis, analysis)
    report(1.0, "done")
    return {"stems": names, "sample_rate": analysis["sample_rate"], "channels": analysis["channels"],
            "duration_s": analysis["duration_s"]}


def disk_needed_bytes(duration_s: float, sample_rate: int, channels: int, n_stems: int) -> tuple[int, int]:
    """About how many bytes a job writes: ``(temporary, kept)``. The separation keeps the decoded
    input and every stem as float32 in a temporary folder; the job folder keeps the original and
    the stems as FLAC (at most 24-bit PCM size; silence compresses far better)."""
    frames = max(float(duration_s), 0.0) * max(sample_rate, 44100) * max(channels, 2)
    return int(frames * 4 * (n_stems + 1)), int(frames * 3 * (n_stems + 1))


def check_free_disk(folder: Path, duration_s: float, sample_rate: int, channels: int, n_stems: int) -> None:
    """Refuse a job, before it writes decoded audio, when the disk cannot hold what it will write."""
    import shutil

    from .._common import temp_root

    if not math.isfinite(duration_s):
        return
    temporary, kept = disk_needed_bytes(duration_s, sample_rate, channels, n_stems)
    tmp_dir = temp_root()  # where separations do their temporary work
    while not tmp_dir.exists() and tmp_dir != tmp_dir.parent:
        tmp_dir = tmp_dir.parent
    needs = {folder: kept}
    same_disk = tmp_dir.exists() and tmp_dir.stat().st_dev == folder.stat().st_dev
    needs[folder if same_disk else tmp_dir] = needs.get(folder if same_disk else tmp_dir, 0) + temporary
    for where, need in needs.items():
        free = shutil.disk_usage(where).free
        if need > free:
            place = "the data folder" if where == folder else f"the temporary folder {where}"
            raise OutputError(f"not enough free disk space: this song needs about {_gib(need)} in {place}, "
                              f"{_gib(free)} is free")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def transcode(src: Path, dst: Path) -> None:
    """Decode stream 0 of ``src`` into ``dst`` (format from its suffix) block by block."""
    from ..audio.io import AudioWriter, iter_blocks

    sr, ch, blocks = iter_blocks(src)
    with AudioWriter(dst, sr, ch, overwrite=True) as writer:
        for block in blocks:
            writer.write(block)


def analyse(files: JobFiles, names: list[str], report: Reporter | None = None) -> dict[str, Any]:
    """Peaks, loudness and the quality report of a finished separation (JSON-ready), in one
    pass over the input and the stems, block by block; the loudness gram (for the A/B match)
    is saved beside it."""
    from ..audio import info
    from ..audio.dsp import convert_channels
    from .meters import CheckStats, LoudnessGram, PeakMeter, lockstep_blocks, round_or_none

    stem_paths = [files.stem(n) for n in names]
    frames = min(file_frames(p) for p in [files.original, *stem_paths])
    sample_rate = info(stem_paths[0]).sample_rate
    channels = info(stem_paths[0]).channels
    meters = {name: PeakMeter(frames) for name in ["original", *names]}
    gram = LoudnessGram(frames, sample_rate, channels, len(names) + 1)
    check = CheckStats(names, frames, sample_rate)
    done = 0
    # the decoded input, not original.flac: a lossy decode may peak above full scale, which FLAC clips
    for blocks in lockstep_blocks([files.input, *stem_paths], frames):
        blocks[0] = convert_channels(blocks[0], channels)
        for meter, block in zip(meters.values(), blocks):
            meter.add(block)
        signals = np.stack(blocks).astype(np.float64)
        gram.add(signals)
        check.add(signals[0], signals[1:])
        done += signals.shape[-1]
        if report is not None:
            report(ANALYSIS_START + (1.0 - ANALYSIS_START) * 0.99 * done / max(frames, 1), "analysing")
    gram.save(files.loudness)
    energies = {"original": check.mix_energy, **{n: float(check.gram[i, i]) for i, n in enumerate(names)}}
    loudness = {}
    for i, name in enumerate(["original", *names]):
        weights = np.zeros((channels, len(names) + 1))
        weights[:, i] = 1.0
        loudness[name] = round_or_none(gram.lufs(weights))
    return {
        "version": ANALYSIS_VERSION,
        "sample_rate": sample_rate,
        "channels": channels,
        "frames": frames,
        "duration_s": frames / sample_rate,
        "stems": names,
        "peaks": {k: m.result() for k, m in meters.items()},
        "loudness_lufs": loudness,
        "rms_db": {k: rms_db(e, channels * frames) for k, e in energies.items()},
        "quality": _streamed_quality(check),
    }


def file_frames(path: Path) -> int:
    """Frames of an audio file: from its header when it says (FLAC does), else by decoding."""
    from ..audio import info, iter_blocks

    frames = info(path).frames
    if frames is not None:
        return frames
    _, _, blocks = iter_blocks(path)
    return sum(b.shape[1] for b in blocks)


def rms_db(energy: float, samples: int) -> float | None:
    rms = math.sqrt(energy / samples) if samples else 0.0
    return round(20 * math.log10(rms), 2) if rms > 0 else None


def _streamed_quality(check) -> dict[str, Any]:
    try:
        return _summary(_jsonable(check.report()), exact=check.residual_energy == 0.0)
    except ImportError as exc:
        return {"available": False, "message": f"quality report unavailable: unbake.metrics lacks a part ({exc})"}
    except UnbakeError as exc:
        return {"available": False, "message": f"quality report failed: {exc}"}


def quality_report(original: np.ndarray, stems: dict[str, np.ndarray], sample_rate: int) -> dict[str, Any]:
    """The ``unbake check`` figures of arrays in memory: stems-sum-to-mix SNR, the triviality
    flag and energy shares (a finished job's report is streamed by :func:`analyse` instead).

    Returns ``{"available": True, "snr_db", "exact", "trivial", "reasons", "stems": {name:
    {"energy_share", "leakage"}}, "report"}`` (``report``: the full report as computed), or
    ``{"available": False, "message"}`` when :mod:`unbake.metrics` cannot say.
    """
    try:
        return _from_metrics(original, stems, sample_rate)
    except ImportError as exc:
        return {"available": False, "message": f"quality report unavailable: unbake.metrics lacks "
                                               f"mixture_consistency / triviality_report ({exc})"}
    except UnbakeError as exc:
        return {"available": False, "message": f"quality report failed: {exc}"}


def _summary(report: dict[str, Any], *, exact: bool) -> dict[str, Any]:
    """The mixer's quality panel from an `unbake check` report."""
    reasons = [r for r in (report.get("trivial_reason") or "").split(", ") if r]
    return {
        "available": True, "snr_db": report.get("consistency_snr_db"), "exact": exact,
        "trivial": bool(report.get("trivial")), "reasons": reasons if report.get("trivial") else [],
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


SPECTROGRAM_FFT = 2048


def spectrogram_png(src: Path, path: Path, *, width_px: int = 1200, height_px: int = 160) -> Path:
    """A log-frequency spectrogram of the audio file ``src`` (channels averaged) as a PNG, no
    axes. Read block by block: each of at most ``2 * width_px`` columns is the mean power of the
    frames that fall in it, so memory does not grow with the song's length."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .._common import atomic_path
    from ..audio import iter_blocks

    n_fft = SPECTROGRAM_FFT
    frames = file_frames(src)
    hop = int(min(n_fft, max(256, frames // (2 * width_px))))
    n_frames = 1 + max(frames - n_fft, 0) // hop
    columns = min(n_frames, 2 * width_px)
    power = np.zeros((columns, n_fft // 2 + 1))
    counts = np.zeros(columns)
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, as scipy's stft uses
    sample_rate, _, blocks = iter_blocks(src)
    carry = np.zeros(0)
    done = 0
    for block in blocks:
        buf = np.concatenate([carry, block.astype(np.float64).mean(axis=0)])
        k = 0 if buf.size < n_fft else (buf.size - n_fft) // hop + 1
        k = min(k, n_frames - done)
        if k > 0:
            starts = np.arange(k) * hop
            spectra = np.abs(np.fft.rfft(buf[starts[:, None] + np.arange(n_fft)] * window, axis=1)) ** 2
            cols = (done + np.arange(k)) * columns // n_frames
            np.add.at(power, cols, spectra)
            np.add.at(counts, cols, 1)
            done += k
        carry = buf[k * hop:]
    if done == 0:  # shorter than one FFT: one zero-padded frame
        power[0] = np.abs(np.fft.rfft(np.pad(carry[:n_fft], (0, n_fft - min(carry.size, n_fft))) * window)) ** 2
        counts[0] = 1
    db = 10 * np.log10(power / np.maximum(counts, 1)[:, None] + 1e-18).T
    top = float(db.max()) if db.size else 0.0
    db = np.clip(db, top - 80.0, top)
    # rows on a log-frequency axis from 30 Hz to Nyquist, as people hear pitch
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    rows = np.geomspace(30.0, sample_rate / 2, height_px)
    img = np.stack([np.interp(rows, freqs, db[:, i]) for i in range(db.shape[1])], axis=1)
    fig = Figure(figsize=(width_px / 100, height_px / 100), dpi=100)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(img, origin="lower", aspect="auto", cmap="magma", interpolation="bilinear")
    ax.set_axis_off()
    with atomic_path(path, suffix=".png") as tmp:
        FigureCanvasAgg(fig).print_png(str(tmp))
    return path


def read_analysis(files: JobFiles) -> dict[str, Any]:
    try:
        return json.loads(files.analysis.read_text())
    except (OSError, ValueError) as exc:
        raise OutputError(f"the analysis of this job cannot be read ({exc.__class__.__name__})") from exc
