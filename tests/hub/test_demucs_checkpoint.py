"""The official-format ``.th`` reader refuses anything that could run code, and fails clearly on
files it cannot use."""

from __future__ import annotations

import os
import sys
import types
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from unbake.errors import CheckpointError, UnsafeCheckpointError
from unbake.hub import demucs_checkpoint
from unbake.hub.loading import load_model

PARITY = Path(__file__).resolve().parents[3] / "shared" / "parity" / "demucs"

SMALL_KWARGS = {"sources": ["drums", "bass"], "channels": 8, "bottom_channels": 16,
                "t_layers": 1, "segment": Fraction(1, 10)}


class _ModelStub:
    """Pickled by reference under the reference class names, like the official files."""


@pytest.fixture
def fake_demucs(monkeypatch):
    """Make ``demucs.htdemucs.HTDemucs`` etc. importable so that torch.save can write files
    that name them, the way the official checkpoints do."""
    classes = {}
    monkeypatch.setitem(sys.modules, "demucs", types.ModuleType("demucs"))
    for module, name in (("demucs.htdemucs", "HTDemucs"), ("demucs.hdemucs", "HDemucs"),
                         ("demucs.demucs", "Demucs")):
        mod = types.ModuleType(module)
        cls = type(name, (_ModelStub,), {"__module__": module, "__qualname__": name})
        setattr(mod, name, cls)
        monkeypatch.setitem(sys.modules, module, mod)
        classes[name] = cls
    return classes


def _small_state() -> dict[str, torch.Tensor]:
    from unbake.hub.architectures import model_from_config

    torch.manual_seed(0)
    model = model_from_config("htdemucs", SMALL_KWARGS)
    return {k: v.half() for k, v in model.state_dict().items()}


def _package(klass, **changes) -> dict:
    pkg = {"klass": klass, "args": (), "kwargs": dict(SMALL_KWARGS), "state": _small_state(),
           "training_args": {"epochs": 1}, "metrics": None}
    pkg.update(changes)
    return pkg


def test_pickle_that_runs_a_command_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.th"
    torch.save({"klass": Exploit(), "args": (), "kwargs": {}, "state": {}}, path)
    with pytest.raises(UnsafeCheckpointError, match="system"):
        demucs_checkpoint.read(path)
    with pytest.raises(UnsafeCheckpointError):
        load_model(str(path))  # the path a user takes: dispatch on the .th suffix
    assert not marker.exists()


def test_unknown_class_is_refused(tmp_path):
    path = tmp_path / "unknown.th"
    torch.save({"klass": _ModelStub, "args": (), "kwargs": {}, "state": {}}, path)
    with pytest.raises(UnsafeCheckpointError, match="_ModelStub"):
        demucs_checkpoint.read(path)


def test_reference_layout_file_loads_in_float32(tmp_path, fake_demucs):
    path = tmp_path / "small.th"
    torch.save(_package(fake_demucs["HTDemucs"]), path)
    model = demucs_checkpoint.read(path)
    assert model.sources == ("drums", "bass") and model.segment == Fraction(1, 10)
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    state = _small_state()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k].float()), k


def test_unknown_kwargs_are_dropped_like_the_reference_loader(tmp_path, fake_demucs):
    path = tmp_path / "extra.th"
    pkg = _package(fake_demucs["HTDemucs"])
    pkg["kwargs"]["some_removed_option"] = 3
    torch.save(pkg, path)
    assert demucs_checkpoint.read(path).sources == ("drums", "bass")


def test_mismatched_weights_name_the_keys(tmp_path, fake_demucs):
    pkg = _package(fake_demucs["HTDemucs"])
    del pkg["state"]["crosstransformer.norm_in.weight"]
    path = tmp_path / "missing.th"
    torch.save(pkg, path)
    with pytest.raises(CheckpointError, match="crosstransformer.norm_in.weight"):
        demucs_checkpoint.read(path)


def test_diffq_quantized_state_is_not_supported(tmp_path, fake_demucs):
    path = tmp_path / "quantized.th"
    torch.save(_package(fake_demucs["HDemucs"], state={"__quantized": True, "packed": [1, 2]}), path)
    with pytest.raises(CheckpointError, match="DiffQ"):
        demucs_checkpoint.read(path)


def test_demucs_v2_is_not_supported(tmp_path, fake_demucs):
    path = tmp_path / "v2.th"
    torch.save(_package(fake_demucs["Demucs"]), path)
    with pytest.raises(CheckpointError, match="not supported"):
        demucs_checkpoint.read(path)


@pytest.mark.parametrize("content", [b"", b"not a zip file at all"])
def test_garbage_is_a_checkpoint_error(tmp_path, content):
    path = tmp_path / "broken.th"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        demucs_checkpoint.read(path)


@pytest.mark.needs_shared
@pytest.mark.skipif(not PARITY.is_dir(), reason="Demucs parity data not found")
def test_training_metadata_of_official_files_stays_inert():
    path = PARITY / "htdemucs.small.th"
    pkg = demucs_checkpoint.read_package(path)
    assert pkg["klass"].architecture == "htdemucs"
    assert isinstance(pkg["kwargs"]["segment"], Fraction)
    # the OmegaConf config becomes a stand-in that holds data and has no behaviour
    assert isinstance(pkg["training_args"], demucs_checkpoint._Inert)
    assert "omegaconf" not in sys.modules


# ------------------------------------------------------------------------------ hostile settings


class _HugeFraction:
    """Pickles as ``fractions.Fraction("1e1000000000")``, as a hostile file can (building it
    here would compute a billion-digit number)."""

    def __reduce__(self):
        return (Fraction, ("1e1000000000",))


_PEAK_RSS = """
import sys
from unbake.errors import CheckpointError
from unbake.hub import demucs_checkpoint
try:
    demucs_checkpoint.read(sys.argv[1])
    print("loaded")
except CheckpointError as exc:
    print("refused:", exc)
# VmHWM: the peak of this process alone (ru_maxrss keeps the forking parent's)
print("peak_mb", int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))) / 1024)
"""


def _read_in_subprocess(path: Path) -> tuple[str, float]:
    """``(first line, peak RSS in MB)`` of reading ``path`` in a fresh process; a hang is a
    failure (the timeout is far above the second or two a refusal takes)."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    res = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(path)], capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    return lines[0], float(lines[-1].split()[1])


@pytest.mark.parametrize("changes, message", [
    ({"channels": 4096}, "htdemucs setting channels: must be between 1 and 512, got 4096"),
    # in range, but the file's weights are those of an 8-channel model: refused on the shapes of
    # a model built on the meta device, before a 400-channel model (~12 GB) is allocated
    ({"channels": 400}, "weights do not match the architecture"),
])
def test_huge_settings_are_refused_before_allocating(tmp_path, fake_demucs, changes, message):
    pkg = _package(fake_demucs["HTDemucs"])
    pkg["kwargs"].update(changes)
    path = tmp_path / "huge.th"
    torch.save(pkg, path)
    first, peak_mb = _read_in_subprocess(path)
    assert first.startswith("refused:") and message in first, first
    # torch alone takes a few hundred MB; building the model first took 7 GB and more
    assert peak_mb < 1500, peak_mb


def test_a_huge_fraction_does_not_hang_the_loader(tmp_path, fake_demucs):
    path = tmp_path / "fraction.th"
    torch.save(_package(fake_demucs["HTDemucs"], kwargs={**SMALL_KWARGS, "segment": _HugeFraction()}), path)
    first, _ = _read_in_subprocess(path)
    assert first.startswith("refused:") and "not a fraction" in first, first


@pytest.mark.parametrize("changes, message", [
    ({"channels": -3}, "channels: must be between 1 and 512, got -3"),
    ({"channels": "wide"}, "channels: must be a number, got the text 'wide'"),
    ({"depth": 2.5}, "depth: must be a whole number, got 2.5"),
    ({"dconv_mode": "x"}, "cannot build htdemucs from these settings (TypeError"),
    ({"sources": 5}, "cannot build htdemucs from these settings (TypeError"),
])
def test_wrong_settings_are_one_line_checkpoint_errors(tmp_path, fake_demucs, changes, message):
    pkg = _package(fake_demucs["HTDemucs"])
    pkg["kwargs"].update(changes)
    path = tmp_path / "wrong.th"
    torch.save(pkg, path)
    with pytest.raises(CheckpointError) as exc:
        demucs_checkpoint.read(path)
    assert message in str(exc.value) and "\n" not in str(exc.value)
