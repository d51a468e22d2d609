"""The OpenVINO backend (``backend=``, extra ``unbake[fast]``): the same output as PyTorch
(float32 within 1e-4 of the peak, bfloat16 within -30 dB), a converted graph reused from the
cache, one log line and PyTorch when the runtime is missing, and the switch that forces PyTorch."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from unbake.engine import apply_model, backend, resolve_backend
from unbake.errors import ParameterError
from unbake.separate import SeparationRequest

from conftest import FakeModel, tone_mix
from test_precision import SNR_BOUND_DB, _snr_db, _tiny

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory):
    """One cache for this module (a conversion takes seconds), none of the user's."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNBAKE_CACHE", str(root))
        yield root / "openvino"


@pytest.fixture(scope="module")
def tiny_htdemucs():
    return _tiny("htdemucs")


def _separate(model, mix, **kw):
    return apply_model(model, mix, segment_samples=model.max_segment_samples, **kw)


@pytest.mark.slow  # the module's first conversion
def test_openvino_float32_matches_pytorch(tiny_htdemucs, ov_cache):
    pytest.importorskip("openvino")
    mix = tone_mix(1.0)
    exact = _separate(tiny_htdemucs, mix, backend="torch")
    assert np.abs(exact).max() > 1e-3  # the model does something
    ov_out = _separate(tiny_htdemucs, mix, backend="openvino")
    assert ov_out.shape == exact.shape and ov_out.dtype == np.float32
    assert np.abs(ov_out - exact).max() / np.abs(exact).max() < 1e-4
    assert any(ov_cache.glob("*/model.xml"))  # it did run through OpenVINO


def test_openvino_bfloat16_within_the_bound(tiny_htdemucs, ov_cache):
    pytest.importorskip("openvino")
    mix = tone_mix(1.0)
    exact = _separate(tiny_htdemucs, mix, backend="torch")
    fast = _separate(tiny_htdemucs, mix, backend="openvino", precision="bfloat16")
    for k in range(exact.shape[0]):
        assert _snr_db(exact[k], fast[k]) >= SNR_BOUND_DB


def test_converted_graph_is_reused(tiny_htdemucs, ov_cache, monkeypatch):
    ov = pytest.importorskip("openvino")
    converted_before = any(ov_cache.glob("*/model.xml"))
    calls = []
    convert = backend.convert
    monkeypatch.setattr(backend, "convert", lambda *a: (calls.append(1), convert(*a))[1])
    monkeypatch.setattr(backend, "_compiled", {})
    runner = backend.for_backend(tiny_htdemucs, "float32", CPU, "openvino")
    assert isinstance(runner, backend.OpenVinoRunner)
    assert len(calls) == (0 if converted_before else 1)
    assert len(list(ov_cache.glob("*/model.xml"))) == 1
    # the same process keeps the compiled model
    assert backend.for_backend(tiny_htdemucs, "float32", CPU, "openvino").compiled is runner.compiled
    monkeypatch.setattr(backend, "_compiled", {})  # a new process: only the disk cache is left
    again = backend.for_backend(tiny_htdemucs, "float32", CPU, "openvino")
    assert again.compiled is not runner.compiled
    assert len(calls) == (0 if converted_before else 1)
    # other weights are another graph
    example = backend._example_inputs(tiny_htdemucs)
    key = backend.model_key(tiny_htdemucs, example, ov.__version__)
    other = _tiny("htdemucs")
    assert backend.model_key(other, example, ov.__version__) == key
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    assert backend.model_key(other, example, ov.__version__) != key
    assert backend.model_key(tiny_htdemucs, example, "0.0") != key


def test_missing_runtime_falls_back_with_one_line(tiny_htdemucs, monkeypatch, caplog):
    def missing():
        raise ImportError("No module named 'openvino'")

    monkeypatch.setattr(backend, "_import_openvino", missing)
    monkeypatch.setattr(backend, "_missing_logged", False)
    monkeypatch.delenv("UNBAKE_BACKEND", raising=False)
    mix = tone_mix(0.5)
    with caplog.at_level(logging.INFO, logger="unbake.engine.backend"):
        first = _separate(tiny_htdemucs, mix)
        second = _separate(tiny_htdemucs, mix)
    lines = [r for r in caplog.records if r.name == "unbake.engine.backend"]
    assert len(lines) == 1 and "not installed" in lines[0].getMessage()
    assert lines[0].levelno == logging.WARNING  # the CLI shows warnings by default: the user sees the line
    np.testing.assert_array_equal(first, _separate(tiny_htdemucs, mix, backend="torch"))
    np.testing.assert_array_equal(first, second)
    with pytest.raises(ParameterError, match=r"unbake\[fast\]"):
        backend.for_backend(tiny_htdemucs, "float32", CPU, "openvino")


def test_backend_switch(tiny_htdemucs, monkeypatch):
    monkeypatch.setenv("UNBAKE_BACKEND", "torch")
    assert resolve_backend(None) == "torch"
    assert backend.for_backend(tiny_htdemucs, "float32", CPU, None) is tiny_htdemucs
    monkeypatch.delenv("UNBAKE_BACKEND")
    assert resolve_backend(None) == "auto"
    assert backend.for_backend(tiny_htdemucs, "float32", CPU, "torch") is tiny_htdemucs
    monkeypatch.setenv("UNBAKE_BACKEND", "tensorrt")
    with pytest.raises(ParameterError, match="UNBAKE_BACKEND"):
        resolve_backend(None)
    with pytest.raises(ParameterError, match="backend"):
        SeparationRequest(backend="onnx")
    assert SeparationRequest(backend="torch").backend == "torch"


def test_auto_uses_openvino_where_it_can(tiny_htdemucs, ov_cache, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.delenv("UNBAKE_BACKEND", raising=False)
    assert isinstance(backend.for_backend(tiny_htdemucs, "bfloat16", CPU, None), backend.OpenVinoRunner)
    # what OpenVINO does not run stays with PyTorch under auto, and is refused when asked for
    fake = FakeModel()
    assert backend.for_backend(fake, "float32", CPU, None) is fake
    assert backend.for_backend(tiny_htdemucs, "int8", CPU, None) is tiny_htdemucs
    for model, precision in ((fake, "float32"), (tiny_htdemucs, "int8")):
        with pytest.raises(ParameterError, match="openvino"):
            backend.for_backend(model, precision, CPU, "openvino")


def test_cli_refuses_an_unknown_backend(wav_file, tmp_path):
    from unbake.cli import app

    result = CliRunner().invoke(app, ["separate", str(wav_file), "-o", str(tmp_path / "out"), "--backend", "onnx"])
    assert result.exit_code != 0
    assert "backend" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.wav"))
