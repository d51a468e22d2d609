"""Learning-curve figure of a run folder (``curves.png``): training loss and validation uSDR
per stem against the step, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .._common import atomic_path


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def plot_curves(run_dir: str | os.PathLike, out_name: str = "curves.png") -> Path | None:
    """Draw ``train_log.csv`` and ``valid_log.csv`` of ``run_dir``; None when there is nothing yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    train = _rows(run_dir / "train_log.csv")
    valid = _rows(run_dir / "valid_log.csv")
    if not train and not valid:
        return None
    fig, (ax_loss, ax_sdr) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        loss = [float(r["loss"]) for r in train]
        ax_loss.plot([int(r["step"]) for r in train], loss, lw=1)
        # an SDR-type loss is in (negated) dB and goes below zero: a log axis only for positive losses
        if min(loss) > 0:
            ax_loss.set_yscale("log")
    ax_loss.set(xlabel="step", ylabel="training loss", title="loss")
    if valid:
        steps = [int(r["step"]) for r in valid]
        stems = [k for k in valid[0] if k not in ("step", "mean", "floor_mean") and not k.startswith("floor_")]
        for s in stems:
            ax_sdr.plot(steps, [float(r[s]) for r in valid], marker=".", label=s)
        ax_sdr.plot(steps, [float(r["mean"]) for r in valid], "k-", lw=2, label="mean")
        ax_sdr.plot(steps, [float(r["floor_mean"]) for r in valid], "k:", label="floor (mixture)")
        ax_sdr.legend(fontsize=8)
    ax_sdr.set(xlabel="step", ylabel="uSDR (dB)", title="validation")
    fig.tight_layout()
    target = run_dir / out_name
    try:
        with atomic_path(target, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=90)
    finally:
        plt.close(fig)
    return target
