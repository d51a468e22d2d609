import json

import numpy as np
import pytest
from typer.testing import CliRunner

import unbake
from conftest import MUSDB_PREVIEWS
from unbake.cli import app
from unbake.metrics.dataset import evaluate_dataset, find_tracks
from unbake.metrics.report import check_stemset
from unbake.stems import StemSet

runner = CliRunner()


def _dataset(tmp_path, n=2, seconds=3.0):
    """Folders of per-stem files with independent synthetic sources."""
    rng = np.random.default_rng(0)
    sr = 44100
    t = np.arange(int(seconds * sr)) / sr
    root = tmp_path / "data"
    for i in range(n):
        vocals = 0.2 * np.sin(2 * np.pi * (300 + 50 * i) * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
        drums = 0.1 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0.9)
        bass = 0.2 * np.sin(2 * np.pi * (55 + 5 * i) * t)
        other = 0.05 * rng.standard_normal(t.size)
        stems = {
            "vocals": np.stack([vocals, vocals]),
            "drums": np.stack([drums, 0.5 * drums]),
            "bass": np.stack([bass, bass]),
            "other": np.stack([other, rng.standard_normal(t.size) * 0.05]),
        }
        StemSet({k: v.astype(np.float32) for k, v in stems.items()}, sr).save(root / f"track{i}", bit_depth="32f")
    return root


def test_check_oracle_vs_trivial(mix):
    stems = unbake.separate(mix, sample_rate=44100)
    good = check_stemset(mix, dict(stems.items()), 44100)
    assert good["consistent"] and not good["trivial"] and good["consistency_snr_db"] > 60
    copy = check_stemset(mix, {"a": mix, "b": mix}, 44100)
    assert copy["trivial"] and not copy["consistent"]
    silent = check_stemset(mix, {"a": mix, "b": np.zeros_like(mix)}, 44100)
    assert silent["trivial"] and silent["consistent"]
    json.dumps(good, allow_nan=False)


def test_check_cli_json(tmp_path, wav_file):
    runner.invoke(app, ["separate", str(wav_file), "-o", str(tmp_path), "--format", "flac", "-n", "center"])
    res = runner.invoke(app, ["check", str(tmp_path / "song"), "--mixture", str(wav_file), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert isinstance(report["consistency_snr_db"], float) and report["trivial"] is False
    assert set(report["stems"]) == {"vocals", "accompaniment"}
    res = runner.invoke(app, ["check", str(tmp_path / "nothing"), "--mixture", str(wav_file)])
    assert res.exit_code != 0 and "Traceback" not in res.output


@pytest.mark.slow
def test_eval_writes_tables_plots_and_resumes(tmp_path):
    root = _dataset(tmp_path)
    assert [t.name for t in find_tracks(root)] == ["track0", "track1"]
    out = tmp_path / "eval"
    first = evaluate_dataset(root, "center", out, mixture_from_stems=True)
    assert first["reused_estimates"] == 0 and first["tracks"] == 2
    assert set(first["stems"]) == {"vocals", "accompaniment"}
    for name in ("scores.csv", "summary.md", "summary.json", "scores/track0.json", "boxplot_vocals.png"):
        assert (out / name).exists(), name
    second = evaluate_dataset(root, "center", out, mixture_from_stems=True)
    assert second["reused_estimates"] == 2
    assert second["stems"]["vocals"]["SDR"] == first["stems"]["vocals"]["SDR"]


def test_eval_cli(tmp_path):
    root = _dataset(tmp_path, n=1, seconds=2.0)
    res = runner.invoke(app, ["eval", str(root), "-n", "center", "-o", str(tmp_path / "e"), "--mixture-from-stems"])
    assert res.exit_code == 0, res.output
    assert "| vocals |" in res.output


@pytest.mark.slow
@pytest.mark.needs_shared
@pytest.mark.skipif(not MUSDB_PREVIEWS.is_dir(), reason="shared MUSDB previews not present")
def test_eval_on_real_previews(tmp_path):
    summary = evaluate_dataset(MUSDB_PREVIEWS, "center", tmp_path,
                               tracks=[f.name[:-9] for f in sorted(MUSDB_PREVIEWS.glob("*.stem.mp4"))[:2]])
    assert summary["tracks"] == 2
    assert summary["stems"]["vocals"]["uSDR"]["mean"] is not None
