"""MUSDB-style evaluation of a model over a dataset: separate (estimates cached, resumable),
score every stem, write per-track JSON, a CSV, a Markdown summary and box plots."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import AudioError, UnbakeError
from .._common import atomic_path, find_dataset_tracks, track_name, write_json_atomic, write_text_atomic
from ..stems import StemSet

log = logging.getLogger(__name__)

MIXTURE_NAMES = ("mixture", "mix")
SUMMARY_METRICS = ("SDR", "uSDR", "SI-SDR", "SIR", "ISR", "SAR")


@dataclass(frozen=True)
class Track:
    """One dataset item: a ``.stem.mp4`` file, or a folder of per-stem files."""

    name: str
    path: Path

    def load(self, mixture_from_stems: bool) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
        """``(mixture (c, t), {stem: (c, t)}, sample_rate)``, all cut to one length."""
        if self.path.is_file():
            from ..audio import read_stems

            streams, sr = read_stems(self.path)
            mixture = streams.pop("mixture", None)
            refs = streams
        else:
            loaded = StemSet.load(self.path)
            sr = loaded.sample_rate
            refs = {k: v for k, v in loaded.items() if k not in MIXTURE_NAMES}
            mixture = next((loaded[k] for k in MIXTURE_NAMES if k in loaded), None)
        if not refs:
            raise AudioError(f"{self.path}: no reference stems")
        if mixture_from_stems or mixture is None:
            mixture = np.sum(list(refs.values()), axis=0, dtype=np.float64).astype(np.float32)
        n = min([mixture.shape[1]] + [r.shape[1] for r in refs.values()])
        return mixture[:, :n], {k: v[:, :n] for k, v in refs.items()}, sr


def find_tracks(dataset: str | os.PathLike) -> list[Track]:
    """Tracks of a MUSDB-format folder (``*.stem.mp4`` files and/or folders of stem files)."""
    return [Track(track_name(p), p) for p in find_dataset_tracks(dataset)]


def reference_for(stem: str, refs: dict[str, np.ndarray]) -> np.ndarray | None:
    """The reference an estimated stem is scored against: the stem itself, or for the
    complement stems (``accompaniment``, ``instrumental``, ``no_X``) everything but X."""
    if stem in refs:
        return refs[stem]
    if stem in ("accompaniment", "instrumental") and "vocals" in refs:
        return np.sum([v for k, v in refs.items() if k != "vocals"], axis=0)
    if stem.startswith("no_") and stem[3:] in refs:
        return np.sum([v for k, v in refs.items() if k != stem[3:]], axis=0)
    return None


def evaluate_dataset(dataset, model, outdir, *, mixture_from_stems: bool = False,
                     progress: Callable[[int, int, str], None] | None = None,
                     tracks: list[str] | None = None, **separate_options) -> dict:
    """Separate and score every track; returns the summary (also written to ``outdir``).

    Estimates are kept under ``outdir/estimates/<track>/`` and reused when the same model
    already produced them (so an interrupted run resumes where it stopped).
    """
    from ..separate import load_runner, separate
    from .bsseval import evaluate_stems

    out = Path(outdir)
    (out / "scores").mkdir(parents=True, exist_ok=True)
    mdl = load_runner(model)
    mname = mdl.name
    items = find_tracks(dataset)
    if tracks:
        items = [t for t in items if t.name in tracks]
    rows: list[dict] = []
    reused = 0
    for i, track in enumerate(items):
        if progress:
            progress(i, len(items), track.name)
        mixture, refs, sr = track.load(mixture_from_stems)
        est_dir = out / "estimates" / track.name
        estimates = _cached_estimates(est_dir, mname, mixture_from_stems)
        if estimates is None:
            estimates = separate(mixture, model=mdl, sample_rate=sr, **separate_options)
            estimates.provenance.update({"model": mname, "mixture_from_stems": mixture_from_stems,
                                         "track": track.name})
            estimates.save(est_dir, format="wav", bit_depth="32f", overwrite=True)
        else:
            reused += 1
        scored_refs, scored_ests = {}, {}
        for stem, est in estimates.items():
            ref = reference_for(stem, refs)
            if ref is not None:
                n = min(ref.shape[1], est.shape[1])
                scored_refs[stem], scored_ests[stem] = ref[:, :n], est[:, :n]
        if not scored_refs:
            raise UnbakeError(f"{track.name}: none of the model's stems ({', '.join(estimates.names)}) "
                              f"matches the references ({', '.join(refs)})")
        scores = evaluate_stems(scored_refs, scored_ests, sr)
        write_json_atomic(out / "scores" / f"{track.name}.json",
                          {"track": track.name, "model": mname, "sample_rate": sr, "scores": scores})
        for stem, vals in scores.items():
            rows.append({"track": track.name, "stem": stem, **vals})
    if progress:
        progress(len(items), len(items), "")
    summary = _summarise(rows, mname)
    summary["tracks"] = len(items)
    summary["reused_estimates"] = reused
    _write_csv(out / "scores.csv", rows)
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "summary.md", _markdown(summary))
    summary["plots"] = [str(p) for p in _box_plots(rows, out)]
    return summary


def _cached_estimates(folder: Path, model_name: str, mixture_from_stems: bool) -> StemSet | None:
    meta = folder / "unbake.json"
    if not meta.exists():
        return None
    try:
        prov = json.loads(meta.read_text()).get("provenance", {})
        if prov.get("model") != model_name or prov.get("mixture_from_stems") != mixture_from_stems:
            return None
        return StemSet.load(folder)
    except (ValueError, AudioError):
        return None


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _summarise(rows: list[dict], model_name: str) -> dict:
    stems = list(dict.fromkeys(r["stem"] for r in rows))
    per_stem = {}
    for stem in stems:
        sel = [r for r in rows if r["stem"] == stem]
        per_stem[stem] = {}
        for m in SUMMARY_METRICS:
            vals = _finite(r.get(m) for r in sel)
            per_stem[stem][m] = {"median": float(np.median(vals)) if vals else None,
                                 "mean": float(np.mean(vals)) if vals else None, "n": len(vals)}
    means = {}
    for m in SUMMARY_METRICS:
        vals = [per_stem[s][m]["mean"] for s in stems if per_stem[s][m]["mean"] is not None]
        means[m] = float(np.mean(vals)) if vals else None
    return {"model": model_name, "stems": per_stem, "mean_over_stems": means}


def _write_csv(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["track", "stem", *SUMMARY_METRICS])
        for r in rows:
            w.writerow([r["track"], r["stem"], *("" if r.get(m) is None else f"{r[m]:.4f}" for m in SUMMARY_METRICS)])


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def _markdown(summary: dict) -> str:
    lines = [f"# Evaluation of `{summary['model']}` ({summary['tracks']} tracks)", "",
             "Per-stem median (mean) over tracks, dB. SDR/SIR/ISR/SAR: BSSEval v4, median over 1 s windows "
             "per track; uSDR: whole-signal SDR; SI-SDR: scale-invariant SDR.", "",
             "| stem | " + " | ".join(SUMMARY_METRICS) + " |", "|---" * (len(SUMMARY_METRICS) + 1) + "|"]
    for stem, vals in summary["stems"].items():
        cells = [f"{_fmt(vals[m]['median'])} ({_fmt(vals[m]['mean'])})" for m in SUMMARY_METRICS]
        lines.append(f"| {stem} | " + " | ".join(cells) + " |")
    lines.append("| **mean over stems** | " + " | ".join(f"({_fmt(summary['mean_over_stems'][m])})"
                                                       for m in SUMMARY_METRICS) + " |")
    return "\n".join(lines) + "\n"


def _box_plots(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for stem in dict.fromkeys(r["stem"] for r in rows):
        sel = [r for r in rows if r["stem"] == stem]
        data = [_finite(r.get(m) for r in sel) for m in SUMMARY_METRICS]
        labels = [m for m, d in zip(SUMMARY_METRICS, data) if d]
        data = [d for d in data if d]
        if not data:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(labels) + 1), labels)
        ax.set_ylabel("dB")
        ax.set_title(f"{stem}: {len(sel)} tracks")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out / f"boxplot_{stem}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
