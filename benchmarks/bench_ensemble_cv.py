"""Cross-validated gain of an output ensemble over its members.

    PYTHONPATH=src python benchmarks/bench_ensemble_cv.py \\
        runs/cv/fold{fold}_real runs/cv/fold{fold}_synth runs/cv/fold{fold}_matched [--folds 0 1 2 3 4] [--threads 2]

Each argument is a run folder pattern (``unbake train`` outputs) with ``{fold}`` for the fold
number: the "arms" of a k-fold comparison, trained on the same folds. For every fold, each arm's
state at its schedule's last step (``state.pt``; a run that has not reached ``optim.steps`` is
refused, and never the best step, which its validation picked) separates that fold's held-out
tracks (``data.folds`` / ``data.fold`` of the runs, which must agree); the ensemble is the
uniform mean of the arms' stems, which for mask models of one STFT is the mean of their masks
(``unbake.models.masknet.MaskNetEnsemble``). Printed: per fold, each arm's and the ensemble's
mean uSDR, and the ensemble minus the mean of the arms and minus the fold's best arm (the best
picked on the very tracks it is scored on: a comparison that favours the single arm); then, over
the folds, per stem, mean ± standard deviation (ddof=1) of those differences.
Run by hand; never part of the test suite.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def last_state(run: Path) -> dict:
    from unbake.train.loop import read_state

    state = read_state(run / "state.pt")
    steps = int(state["config"]["optim"]["steps"])
    if int(state["step"]) != steps:
        raise SystemExit(f"{run}: at step {state['step']}, its schedule ends at {steps}; finish it first")
    return state


def fold_setup(runs: list[Path]) -> tuple[list[torch.nn.Module], list, tuple[str, ...]]:
    """The runs' models at their schedules' last step, the held-out tracks the runs share, and
    their stems."""
    from unbake.data.cache import AudioCache
    from unbake.data.datasets import load_tracks
    from unbake.hub.architectures import model_from_config
    from unbake.hub.checkpoint import load_state_strict
    from unbake.train.config import TrainConfig
    from unbake.train.loop import split_data

    states = [last_state(r) for r in runs]
    cfgs = [TrainConfig.model_validate(st["config"]) for st in states]
    splits = {(c.data.root, c.data.folds, c.data.fold, c.data.valid_every, c.data.valid_count) for c in cfgs}
    if len(splits) != 1:
        raise SystemExit(f"the runs {[str(r) for r in runs]} hold out different tracks: {sorted(map(str, splits))}")
    cfg = cfgs[0]
    _, valid = split_data(cfg)
    sources = tuple(cfg.data.sources)
    tracks = load_tracks(valid, sources, cfg.data.samplerate, AudioCache(Path(cfg.data.cache_dir)))
    models = []
    for run, st in zip(runs, states):
        model = model_from_config(st["architecture"], st["model_config"])
        load_state_strict(model, st["model"], str(run))
        models.append(model.eval())
    return models, tracks, sources


def fold_scores(runs: list[Path]) -> tuple[list[dict], dict, list[str]]:
    """Per-stem mean uSDR of each run and of their ensemble on the runs' held-out tracks."""
    from unbake.engine import apply_model
    from unbake.metrics.sdr import usdr

    models, tracks, sources = fold_setup(runs)
    per_run = [{s: [] for s in sources} for _ in runs]
    ens = {s: [] for s in sources}
    for track in tracks:
        refs = np.asarray(track.stems, dtype=np.float32)
        ests = [apply_model(m, track.mix(), backend="torch") for m in models]
        for k, est in enumerate(ests):
            for i, s in enumerate(sources):
                per_run[k][s].append(usdr(refs[i], est[i]))
        mean_est = np.mean(ests, axis=0)
        for i, s in enumerate(sources):
            ens[s].append(usdr(refs[i], mean_est[i]))
    return [_means(d) for d in per_run], _means(ens), [t.name for t in tracks]


def _means(scores: dict[str, list[float]]) -> dict[str, float]:
    return {s: float(np.mean(v)) for s, v in scores.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arms", nargs="+", help="run folder patterns with {fold}")
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if len(args.arms) < 2 or any("{fold}" not in a for a in args.arms):
        ap.error("give at least two run folder patterns, each with {fold}")
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for fold in args.folds:
        runs = [Path(a.format(fold=fold)) for a in args.arms]
        arms, ens, names = fold_scores(runs)
        sources = list(ens)
        arm_means = [float(np.mean(list(a.values()))) for a in arms]
        best = int(np.argmax(arm_means))
        ens_mean = float(np.mean(list(ens.values())))
        vs_mean = {s: ens[s] - np.mean([a[s] for a in arms]) for s in sources}
        vs_best = {s: ens[s] - arms[best][s] for s in sources}
        vs_mean["mean"], vs_best["mean"] = np.mean(list(vs_mean.values())), np.mean(list(vs_best.values()))
        rows.append((vs_mean, vs_best))
        print(f"fold {fold} ({len(names)} held-out tracks): arms "
              + ", ".join(f"{Path(a).name} {m:.3f}" for a, m in zip(runs, arm_means))
              + f"; ensemble {ens_mean:.3f} (vs mean of arms {ens_mean - np.mean(arm_means):+.3f}, "
              f"vs best arm {ens_mean - arm_means[best]:+.3f})", flush=True)
    n = len(rows)
    print(f"\nover {n} folds, ensemble minus arms (uSDR dB, mean ± std across folds):")
    print(f"{'stem':8s} {'vs mean of arms':>18s} {'vs best arm':>18s}")
    for s in rows[0][0]:
        a, b = (np.array([r[k][s] for r in rows]) for k in (0, 1))
        sd_a, sd_b = (x.std(ddof=1) if n > 1 else float("nan") for x in (a, b))
        print(f"{s:8s} {a.mean():+9.3f} ± {sd_a:.3f} {b.mean():+9.3f} ± {sd_b:.3f}")


if __name__ == "__main__":
    main()
