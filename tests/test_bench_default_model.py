"""benchmarks/bench_default_model.py runs end to end and its --json holds the printed figures unrounded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import make_folder_tracks

REPO = Path(__file__).resolve().parents[1]


def test_bench_default_model_prints_and_writes_the_same_figures(tmp_path):
    make_folder_tracks(tmp_path / "data", n_tracks=3, seconds=1.0, tonal=True)
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_default_model.py"), "--seconds", "1",
                           "--threads", "1", "--data", str(tmp_path / "data"), "--valid-every", "2",
                           "--valid-count", "2", "--json", str(out)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    assert figures["tracks"] == ["Artist 0 - Song", "Artist 2 - Song"]
    assert set(figures["stems"]) == {"drums", "bass", "other", "vocals"}
    printed = dict(re.findall(r"^(\w+)\s+(-?\d+\.\d\d)\s", proc.stdout, flags=re.M))
    for stem, value in figures["stems"].items():
        assert float(printed[stem]) == round(value, 2)
    assert float(printed["mean"]) == round(figures["mean"], 2)
    assert figures["speed_x_realtime"] > 0


def _fake_fold_run(folder: Path, fold: int, seed: int, mean: float, steps: int = 600, last: int = 600) -> str:
    """A run folder as `unbake train --fold` leaves it: the state's config and the validation log."""
    import torch

    from unbake.train.loop import STATE_FORMAT

    folder.mkdir(parents=True)
    torch.save({"format": STATE_FORMAT, "config": {"seed": seed, "optim": {"steps": steps},
                                                   "data": {"folds": 2, "fold": fold}}}, folder / "state.pt")
    (folder / "valid_log.csv").write_text(
        "step,mean,drums,bass,other,vocals,floor_mean\n"
        f"200,0.0,0,0,0,0,-5\n{last},{mean},{mean - 1},{mean + 1},{mean},{mean},-5\n")
    return str(folder)


def test_cross_validation_summary_averages_the_seeds_of_each_fold(tmp_path):
    """--cv-only: each run at its last step, the seeds of a fold averaged, paired differences by fold;
    unfinished runs, a fold/seed given twice and folds with unequal numbers of runs are refused."""
    def bench(*args):
        return subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_default_model.py"), "--cv-only", *args],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})

    new = [_fake_fold_run(tmp_path / f"new{f}_{s}", f, s, m) for f, s, m in
           [(0, 42, 2.0), (0, 43, 3.0), (1, 42, 1.0), (1, 43, 2.0)]]
    old = [_fake_fold_run(tmp_path / f"old{f}_{s}", f, s, m) for f, s, m in
           [(0, 42, 2.0), (0, 43, 2.0), (1, 42, 1.0), (1, 43, 1.0)]]
    proc = bench("--cv", *new, "--cv-against", *old)
    assert proc.returncode == 0, proc.stderr
    tables = proc.stdout.split("paired difference")
    rows = lambda text: {r[0]: [float(x) for x in r[1:]] for r in
                         (line.split() for line in text.splitlines()) if r and r[0] in ("0", "1", "mean")}
    assert rows(tables[0]) == {"0": [1.5, 3.5, 2.5, 2.5, 2.5], "1": [0.5, 2.5, 1.5, 1.5, 1.5],
                               "mean": [1.0, 3.0, 2.0, 2.0, 2.0]}
    assert rows(tables[1])["0"][-1] == 0.5 and rows(tables[1])["1"][-1] == 0.5
    twice = bench("--cv", new[0], _fake_fold_run(tmp_path / "again", 0, 42, 1.0))
    assert twice.returncode != 0 and "seed 42 given twice" in twice.stderr
    unequal = bench("--cv", *new[:3])
    assert unequal.returncode != 0 and "different numbers of runs" in unequal.stderr
    short = bench("--cv", _fake_fold_run(tmp_path / "short", 0, 42, 1.0, steps=800))
    assert short.returncode != 0 and "not finished" in short.stderr
