"""SCNet, BS-RoFormer and Mel-Band RoFormer against the reference (MSST / starrytong) outputs
stored in shared/parity/scnet_roformer, and the MSST checkpoint + YAML reader."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from unbake.errors import (
    CheckpointError, ConfigError, DependencyError, UnsafeCheckpointError,
)
from unbake.hub.architectures import model_from_config
from unbake.hub.loading import load_model
from unbake.hub.msst import read_config, read_yaml

PARITY = Path(__file__).resolve().parents[3] / "shared" / "parity" / "scnet_roformer"
CONFIGS = Path(__file__).resolve().parents[2] / "src" / "unbake" / "hub" / "configs"


KEY_FILES = sorted(PARITY.glob("*.keys.json"))
SMALL_FILES = sorted(PARITY.glob("*.small.pt"))
CKPT_FILES = sorted(PARITY.glob("*.small.ckpt"))


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """The parity models are tiny: with several threads their many small ops spend more time in
    thread hand-offs than in arithmetic (several times slower on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _blob(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _variant_kwargs(kwargs: dict, variant: str) -> dict:
    """Reference kwargs plus the option that selects a stored forward variant."""
    kw = dict(kwargs)
    if variant in ("zero_dc_true", "zero_dc_false"):
        kw["zero_dc"] = variant == "zero_dc_true"
    elif variant in ("msst", "starrytong"):
        kw["normalize_spectrum"] = variant == "starrytong"
    else:  # pragma: no cover - a new variant in the data must be mapped here
        raise AssertionError(f"unknown variant {variant}")
    return kw


def _assert_matches(y: torch.Tensor, ref: dict) -> None:
    """``y`` (b, s, c, t) against a stored reference output.

    The reference drops the stem axis of single-stem Mel-Band (and older BS) models and returns
    hop·⌊t/hop⌋ samples for Mel-Band; ours always keeps the axis and returns t samples, so the
    comparison runs over the reference's length.
    """
    shape = list(ref["shape"])
    if len(shape) == 3:
        shape = [shape[0], 1, *shape[1:]]
    assert list(y.shape[:3]) == shape[:3]
    assert y.shape[3] >= shape[3]
    y = y[..., : shape[3]].double()
    stats = ref["stats"]
    assert stats["num_nonfinite"] == 0 and torch.isfinite(y).all()
    n = y.numel()
    assert abs(float((y**2).sum()) - stats["sum_sq"]) <= 1e-5 * stats["sum_sq"]
    assert abs(float(y.sum()) - stats["sum"]) <= 1e-5 * (n * stats["sum_sq"]) ** 0.5
    if ref["time_index"] is not None:
        y = y[..., ref["time_index"]]
    values = ref["values"].double().reshape(y.shape)
    err = float((y - values).abs().max())
    assert err <= 1e-5 * stats["abs_max"], f"max |y - ref| = {err:.3g}, abs_max {stats['abs_max']:.3g}"


# --- full-size key layouts --------------------------------------------------------------------------

@pytest.mark.needs_shared
@pytest.mark.parametrize("path", KEY_FILES, ids=lambda p: p.name.removesuffix(".keys.json"))
def test_full_size_state_dict_layout(path):
    info = json.loads(path.read_text())
    with torch.device("meta"):
        model = model_from_config(info["arch"], info["model_kwargs"])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    ref = {name: shape for name, shape, _ in info["keys"]}
    assert sorted(set(ours) ^ set(ref)) == []
    assert {k: s for k, s in ours.items() if ref[k] != s} == {}
    for name in info["non_persistent_buffers_not_in_state_dict"]:
        assert name not in ours
    assert sum(p.numel() for p in model.parameters()) == info["num_parameters"]


CATALOGUE_KEYS = {
    "scnet": "scnet_musdb18", "scnet_large": "scnet_large", "scnet_large_starrytong": "scnet_large",
    "scnet_xl": "scnet_xl", "scnet_xl_ihf": "scnet_xl_ihf",
    "bs_roformer_vocals": "bs_roformer_viperx_ep317_vocals",
    "bs_roformer_4stem": "bs_roformer_musdb18_4stem_ep17",
    "mel_roformer_vocals_kj": "mel_band_roformer_kj_vocals",
    "mel_roformer_vocals_viperx": "mel_band_roformer_viperx_ep3005_vocals",
}


@pytest.mark.needs_shared
@pytest.mark.parametrize("name", sorted(CATALOGUE_KEYS))
def test_catalogue_config_builds_checkpoint_layout(name):
    from unbake.hub.catalogue import load_catalogue

    entry = load_catalogue().get(name)
    assert entry.format == "msst" and entry.files
    arch, kwargs = read_config(CONFIGS / entry.config_file)
    assert arch == entry.architecture
    with torch.device("meta"):
        model = model_from_config(arch, kwargs)
    info = json.loads((PARITY / f"{CATALOGUE_KEYS[name]}.keys.json").read_text())
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == {n: s for n, s, _ in info["keys"]}
    assert model.samplerate == entry.samplerate
    if entry.target:
        assert model.sources == (entry.target,) and model.target_instrument == entry.target
    else:
        assert model.sources == entry.sources and model.target_instrument is None


# --- numeric parity ---------------------------------------------------------------------------------

def _parity_cases():
    for path in SMALL_FILES:
        blob = _blob(path)
        for variant in blob["variants"]:
            yield pytest.param(path, variant, id=f"{path.name.removesuffix('.small.pt')}-{variant}")


@pytest.mark.parametrize("path,variant", list(_parity_cases()))
def test_parity_with_reference(path, variant):
    blob = _blob(path)
    model = model_from_config(blob["arch"], _variant_kwargs(blob["kwargs"], variant)).eval()
    model.load_state_dict(blob["state_dict"], strict=True)
    for q, outs in zip(blob["inputs"], blob["outputs"]):
        x = q.float() * blob["input_scale"]
        with torch.no_grad():
            y = model(x)
        assert y.shape == (x.shape[0], len(model.sources), x.shape[1], x.shape[2])
        _assert_matches(y, outs[variant])


@pytest.mark.needs_shared
@pytest.mark.parametrize("path", CKPT_FILES, ids=lambda p: p.name.removesuffix(".small.ckpt"))
def test_community_checkpoint_through_load_model(path):
    """NAME.small.ckpt finds NAME.small.yaml beside it and reproduces the variant the public
    checkpoints use (msst / zero_dc_false)."""
    blob = _blob(path.with_name(path.name.replace(".small.ckpt", ".small.pt")))
    model = load_model(path)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, blob["state_dict"][k]), k
    data = read_yaml(path.with_suffix(".yaml"))
    target = data["training"].get("target_instrument")
    if blob["arch"] == "scnet":
        variant = "msst"
        assert model.sources == tuple(data["model"]["sources"])
        assert model.track_normalize == bool(data["inference"]["normalize"])
    else:
        variant = "zero_dc_false"
        assert model.sources == ((target,) if target else tuple(data["training"]["instruments"]))
    assert model.target_instrument == (None if blob["arch"] == "scnet" else target)
    assert model.segment_samples == data["audio"]["chunk_size"]
    assert model.samplerate == data["audio"]["sample_rate"]
    q, outs = blob["inputs"][1], blob["outputs"][1]  # stored in full
    with torch.no_grad():
        y = model(q.float() * blob["input_scale"])
    _assert_matches(y, outs[variant])


@pytest.mark.needs_shared
def test_single_stem_models_keep_the_stem_axis():
    for name in ("bs_roformer_1stem", "mel_band_roformer_1stem"):
        model = load_model(PARITY / f"{name}.small.ckpt")
        x = torch.zeros(1, 2, 5000)
        with torch.no_grad():
            y = model(x)
        assert model.sources == ("vocals",)
        assert y.shape == (1, 1, 2, 5000)


@pytest.mark.needs_shared
def test_mel_band_output_has_input_length_for_any_length():
    model = load_model(PARITY / "mel_band_roformer_2stem.small.ckpt")
    for t in (441 * 5, 441 * 5 + 1, 3000):
        with torch.no_grad():
            assert model(torch.zeros(1, 2, t)).shape == (1, 2, 2, t)


# --- band layouts -----------------------------------------------------------------------------------

@pytest.mark.needs_shared
@pytest.mark.parametrize("path", [p for p in KEY_FILES if p.name.startswith("mel_band")],
                         ids=lambda p: p.name.removesuffix(".keys.json"))
def test_mel_band_table_matches_reference(path):
    from unbake.models.mel_band_roformer import mel_band_masks

    info = json.loads(path.read_text())
    kw = info["model_kwargs"]
    bands = mel_band_masks(kw["sample_rate"], kw["stft_n_fft"], kw["num_bands"])
    ranges = []
    for row in bands:
        idx = np.nonzero(row)[0]
        assert (np.diff(idx) == 1).all()  # contiguous
        ranges.append([int(idx[0]), int(idx[-1])])
    assert ranges == info["mel_bands"]["band_bin_ranges_inclusive"]
    assert bands.sum(axis=1).tolist() == info["mel_bands"]["num_freqs_per_band"]
    assert bands.sum(axis=0).tolist() == info["mel_bands"]["num_bands_per_freq"]


@pytest.mark.needs_shared
@pytest.mark.parametrize("path", [p for p in KEY_FILES if p.name.startswith("scnet")],
                         ids=lambda p: p.name.removesuffix(".keys.json"))
def test_scnet_band_layout_matches_reference(path):
    from unbake.models.scnet import band_layout

    info = json.loads(path.read_text())
    kw = info["model_kwargs"]
    layout = info["scnet_band_layout_for_chunk"]
    n_bins = kw["nfft"] // 2 + 1
    for level in layout["encoder_levels"]:
        assert level["Fr_in"] == n_bins
        bands = band_layout(n_bins, tuple(kw["band_SR"]), tuple(kw["band_stride"]), tuple(kw["band_kernel"]))
        got = [{"range": [b.start, b.stop], "len": b.length, "kernel": b.kernel, "stride": b.stride,
                "pad_left": b.pad_left, "pad_right": b.pad_right, "out_len": b.out_length} for b in bands]
        assert got == level["bands"]
        n_bins = sum(b.out_length for b in bands)
        assert n_bins == level["Fr_out"]


# --- the MSST reader --------------------------------------------------------------------------------

@pytest.mark.needs_shared
def test_yaml_tuple_tag_reads_as_tuple():
    data = read_yaml(PARITY / "bs_roformer_1stem.small.yaml")
    assert isinstance(data["model"]["freqs_per_bands"], tuple)
    assert sum(data["model"]["freqs_per_bands"]) == 1025
    arch, kwargs = read_config(PARITY / "bs_roformer_1stem.small.yaml")
    assert arch == "bs_roformer" and kwargs["target_instrument"] == "vocals"


@pytest.mark.needs_shared
def test_yaml_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    bad = tmp_path / "evil.yaml"
    bad.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n"
                   "other: !!python/name:os.system\n")
    with pytest.raises(ConfigError, match="tag"):
        read_yaml(bad)
    assert not marker.exists()
    ckpt = tmp_path / "evil.ckpt"
    shutil.copy(PARITY / "scnet_musdb18.small.ckpt", ckpt)
    with pytest.raises(ConfigError):
        load_model(ckpt)
    assert not marker.exists()


@pytest.mark.needs_shared
def test_architecture_is_inferred_or_named(tmp_path):
    expected = {"scnet_musdb18": "scnet", "bs_roformer_4stem": "bs_roformer",
                "mel_band_roformer_2stem": "mel_band_roformer"}
    for name, arch in expected.items():
        assert read_config(PARITY / f"{name}.small.yaml")[0] == arch
    data = read_yaml(PARITY / "mel_band_roformer_2stem.small.yaml")
    del data["model"]["num_bands"]
    data["model_type"] = "mel_band_roformer"
    from unbake.hub.msst import config_to_kwargs

    assert config_to_kwargs(data)[0] == "mel_band_roformer"
    with pytest.raises(ConfigError, match="architecture"):
        config_to_kwargs({"model": {"foo": 1}})
    with pytest.raises(ConfigError, match="unknown model kwargs"):
        model_from_config("scnet", {"dims": [4, 8, 12, 16], "bogus": 1})


def _copy_pair(name: str, folder: Path, ckpt_name: str, yaml_name: str) -> Path:
    shutil.copy(PARITY / f"{name}.small.yaml", folder / yaml_name)
    return folder / ckpt_name


@pytest.mark.needs_shared
@pytest.mark.parametrize("wrap,prefix", [("state_dict", "module."), ("model", ""),
                                         ("model_state_dict", "_orig_mod."), ("state", "model.module."),
                                         (None, "module.")])
def test_wrapped_and_prefixed_state_dicts_load(tmp_path, wrap, prefix):
    state = torch.load(PARITY / "mel_band_roformer_2stem.small.ckpt", weights_only=True)
    state = {prefix + k: v for k, v in state.items()}
    blob = {wrap: state, "epoch": 3, "best_sdr": 11.5} if wrap else state
    # config found as config.yaml in the folder (the checkpoint has no same-named YAML)
    path = _copy_pair("mel_band_roformer_2stem", tmp_path, "weights.pth", "config.yaml")
    torch.save(blob, path)
    model = load_model(path)
    ref = torch.load(PARITY / "mel_band_roformer_2stem.small.ckpt", weights_only=True)
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


@pytest.mark.needs_shared
def test_explicit_config_argument(tmp_path):
    path = tmp_path / "weights.ckpt"
    shutil.copy(PARITY / "bs_roformer_4stem.small.ckpt", path)
    with pytest.raises(ConfigError, match="no config"):
        load_model(path)
    model = load_model(path, config=PARITY / "bs_roformer_4stem.small.yaml")
    assert model.sources == ("drums", "bass", "other", "vocals")


@pytest.mark.needs_shared
def test_missing_key_is_listed(tmp_path):
    state = torch.load(PARITY / "bs_roformer_1stem.small.ckpt", weights_only=True)
    del state["final_norm.gamma"]
    state["extra.weight"] = torch.zeros(1)
    path = _copy_pair("bs_roformer_1stem", tmp_path, "m.ckpt", "m.yaml")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"missing keys: final_norm\.gamma.*unexpected keys: extra\.weight"):
        load_model(path)


@pytest.mark.needs_shared
def test_wrong_shape_is_reported(tmp_path):
    state = torch.load(PARITY / "scnet_xl_ihf.small.ckpt", weights_only=True)
    state["encoder.0.globalconv.bias"] = torch.zeros(3)
    path = _copy_pair("scnet_xl_ihf", tmp_path, "m.ckpt", "m.yaml")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="encoder.0.globalconv.bias"):
        load_model(path)


@pytest.mark.needs_shared
def test_checkpoint_with_python_objects_is_refused(tmp_path):
    state = torch.load(PARITY / "bs_roformer_1stem.small.ckpt", weights_only=True)
    path = _copy_pair("bs_roformer_1stem", tmp_path, "m.ckpt", "m.yaml")
    torch.save({"state_dict": state, "when": datetime.date(2024, 1, 1)}, path)
    with pytest.raises(UnsafeCheckpointError):
        load_model(path)


@pytest.mark.needs_shared
def test_safetensors(tmp_path):
    state = torch.load(PARITY / "bs_roformer_1stem.small.ckpt", weights_only=True)
    path = _copy_pair("bs_roformer_1stem", tmp_path, "m.safetensors", "m.yaml")
    try:
        from safetensors.torch import save_file
    except ImportError:
        path.write_bytes(b"\0" * 16)
        with pytest.raises(DependencyError, match="safetensors"):
            load_model(path)
        return
    # the reference stores one rotary table under every layer's key; safetensors wants them unshared
    save_file({k: v.clone().contiguous() for k, v in state.items()}, str(path))
    model = load_model(path)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_catalogue_entry_builds_without_weights():
    model = load_model("scnet", pretrained=False)
    assert model.sources == ("drums", "bass", "other", "vocals") and model.track_normalize
    x = torch.zeros(1, 2, 3000)
    with torch.no_grad():
        assert model(x).shape == (1, 4, 2, 3000)
