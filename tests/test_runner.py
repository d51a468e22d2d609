"""One runner and one request: a model is an ensemble of one; options travel as one frozen,
validated object whose errors name parameters, and the CLI names its flags."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import unbake
from unbake.cli import app
from unbake.errors import ModelError, OutputError, ParameterError
from unbake.hub.ensemble import Ensemble, Member, as_runner
from unbake.separate import SeparationRequest, model_name, output_stems

SRC = Path(unbake.__file__).resolve().parent


class Gains(torch.nn.Module):
    """Stem k = gain[k] * mix."""

    audio_channels = 2
    max_segment_samples = None
    track_normalize = False
    samplerate = 44100
    segment_samples = 6000

    def __init__(self, sources, gains):
        super().__init__()
        self.sources = tuple(sources)
        self.gains = torch.tensor(gains, dtype=torch.float32)

    def forward(self, x):
        return self.gains[None, :, None, None] * x[:, None]


def test_a_model_is_an_ensemble_of_one(mix):
    model = Gains(["vocals", "drums"], [0.25, 0.75])
    runner = as_runner(model)
    assert isinstance(runner, Ensemble) and runner.parts == [Member(model, (1.0, 1.0), None)]
    assert as_runner(runner) is runner and runner.sources == ("vocals", "drums")
    assert model_name(model) == model_name(runner) == "Gains"
    alone = unbake.separate(mix, sample_rate=44100, model=model)
    wrapped = unbake.separate(mix, sample_rate=44100, model=runner)
    assert alone.names == wrapped.names == ["vocals", "drums"]
    for name, gain in (("vocals", 0.25), ("drums", 0.75)):
        assert np.array_equal(alone[name], wrapped[name])
        assert np.allclose(alone[name], gain * mix, atol=1e-6)
    assert output_stems(model, None) == output_stems(runner, None) == ["vocals", "drums"]


def test_nested_ensembles_refused():
    a = Gains(["vocals"], [1.0])
    with pytest.raises(ModelError, match="another ensemble"):
        unbake.separate(np.zeros((2, 100), np.float32), sample_rate=44100,
                        model=[Ensemble.uniform([a, a]), a])


@pytest.mark.parametrize("options,parameter", [
    ({"overlap": 1.5}, "overlap"), ({"overlap": "half"}, "overlap"), ({"segment_s": -1}, "segment_s"),
    ({"shifts": -1}, "shifts"), ({"shifts": 1.5}, "shifts"), ({"batch_size": 0}, "batch_size"),
    ({"other_method": "subtract"}, "other_method"), ({"clip": "soft"}, "clip"),
    ({"device": "tpu"}, "device"), ({"format": "ogg"}, "format"), ({"bit_depth": "20"}, "bit_depth"),
    ({"format": "flac", "bit_depth": "32f"}, "bit_depth"), ({"format": "mp3", "mp3_bitrate": 1000}, "mp3_bitrate"),
    ({"filename": "{track}.{ext}"}, "filename"), ({"filename": "{track}/{stem}.{nope}"}, "filename"),
    ({"loudness": 3}, "loudness"),
])
def test_request_refuses_bad_values_naming_the_parameter(options, parameter):
    with pytest.raises(ParameterError) as info:
        SeparationRequest.from_options(**options)
    assert info.value.parameter == parameter
    assert str(info.value).startswith(f"{parameter}: ") and "--" not in str(info.value)


def test_request_is_frozen_and_output_options_are_output_errors():
    req = SeparationRequest(overlap=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.overlap = 0.1
    assert SeparationRequest.from_options(req, shifts=2).overlap == 0.5
    with pytest.raises(OutputError):  # still an OutputError for callers that catch those
        SeparationRequest(format="ogg")
    assert "format" not in req.separation_options() and req.separation_options()["overlap"] == 0.5


def test_library_calls_name_parameters(mix, tmp_path):
    with pytest.raises(ParameterError, match=r"^overlap: must be in \[0, 1\), got 2"):
        unbake.separate(mix, sample_rate=44100, model="center", overlap=2)
    with pytest.raises(ParameterError, match="^two_stems: drums: the model has no such stem"):
        unbake.separate(mix, sample_rate=44100, model="center", two_stems="drums")
    with pytest.raises(ParameterError, match="^weights: "):
        unbake.separate(mix, sample_rate=44100, model="center", weights=[1.0])


def test_request_travels_whole_and_keywords_override_it(tmp_path, wav_file):
    req = SeparationRequest(format="flac", bit_depth="16", two_stems="vocals", filename="{stem}.{ext}")
    out = unbake.separate_file(wav_file, tmp_path / "a", "center", request=req)
    assert sorted(p.name for p in out.values()) == ["no_vocals.flac", "vocals.flac"]
    out = unbake.separate_file(wav_file, tmp_path / "b", "center", request=req, format="wav", two_stems=None)
    assert sorted(p.name for p in out.values()) == ["accompaniment.wav", "vocals.wav"]


@pytest.mark.parametrize("args,message", [
    (["--overlap", "1.5"], "--overlap: must be in [0, 1), got 1.5"),
    (["--segment", "-2"], "--segment: must be > 0, got -2.0"),
    (["--shifts", "-1"], "--shifts: must be >= 0, got -1"),
    (["--format", "ogg"], "--format: must be one of wav, flac, mp3, stems, not 'ogg'"),
    (["--bit-depth", "20"], "--bit-depth: wav bit depth must be one of 16, 24, 32f, not 20"),
    (["--weights", "1,x", "-n", "center", "-n", "center"], "--weights: must be numbers separated by commas"),
    (["--weights", "1", "-n", "center"], "--weights: need several models"),
])
def test_cli_names_its_flags_and_refuses_before_loading_a_model(tmp_path, wav_file, args, message):
    res = CliRunner().invoke(app, ["separate", str(wav_file), "-o", str(tmp_path / "o"), *args])
    assert res.exit_code == 1, res.output
    assert f"error: {message}" in res.output, res.output
    if "--weights" not in args:
        assert "model:" not in res.output  # refused before the default model was even chosen
    assert not (tmp_path / "o").exists()


def _functions(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


FACADE_FILES = ["separate.py", "cli/separate_cmd.py", "cli/eval_cmd.py", "cli/app.py", "hub/ensemble.py",
                "hub/loading.py", "hub/download.py", "audio/io.py", "audio/dsp.py", "metrics/dataset.py",
                "metrics/report.py"]


def test_no_long_functions_and_no_model_kind_branches_outside_the_hub():
    for rel in FACADE_FILES:
        long = [(n, k) for n, k in _functions(SRC / rel) if k > 120]
        assert not long, (rel, long)
    for rel in ["separate.py", "metrics/dataset.py", *(f"cli/{p.name}" for p in (SRC / "cli").glob("*.py"))]:
        tree = ast.parse((SRC / rel).read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not names & {"Ensemble", "EnsembleEntry"}, rel
    tree = ast.parse((SRC / "metrics/dataset.py").read_text())
    private = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
               and n.module.endswith("separate") for a in n.names if a.name.startswith("_")]
    assert private == []
