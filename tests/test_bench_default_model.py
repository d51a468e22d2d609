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
