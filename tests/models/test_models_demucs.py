"""HT Demucs and Hybrid Demucs against the reference implementation: parameter layout of the
full-size official models, outputs and intermediates of small models, official-format files."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from unbake.errors import ModelError
from unbake.hub.architectures import model_from_config
from unbake.hub.catalogue import load_catalogue
from unbake.hub.loading import load_model

PARITY = Path(__file__).resolve().parents[3] / "shared" / "parity" / "demucs"

# which catalogue models each keys file describes
KEYS_FILES = {
    "htdemucs.keys.json": ["htdemucs", "htdemucs_ft_drums", "htdemucs_ft_bass",
                           "htdemucs_ft_other", "htdemucs_ft_vocals"],
    "htdemucs_6s.keys.json": ["htdemucs_6s"],
    "hdemucs_mmi.keys.json": ["hdemucs_mmi"],
}
SMALL = sorted(PARITY.glob("*.small.pt"))
SMALL_TH = sorted(PARITY.glob("*.small.th"))


def _kwargs(pkg: dict) -> dict:
    kw = dict(pkg["kwargs"])
    if isinstance(kw.get("segment"), str):
        kw["segment"] = Fraction(kw["segment"])
    return kw


def _assert_close(y: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert tuple(y.shape) == tuple(ref.shape), f"{what}: shape {tuple(y.shape)} vs {tuple(ref.shape)}"
    err = (y - ref).abs().max().item()
    scale = ref.abs().max().item()
    assert err <= 1e-5 * scale, f"{what}: max abs diff {err:.3g} > 1e-5 * {scale:.3g}"


@pytest.mark.needs_shared
def test_every_keys_file_is_covered():
    found = sorted(p.name for p in PARITY.glob("*.keys.json"))
    assert found, "no keys files"
    assert set(found) <= set(KEYS_FILES), f"keys files without a catalogue mapping: {found}"


@pytest.mark.needs_shared
@pytest.mark.parametrize("keys_file,name", [(k, n) for k, ns in KEYS_FILES.items() for n in ns])
def test_full_size_state_dict_layout(keys_file, name):
    path = PARITY / keys_file
    if not path.exists():
        pytest.skip(f"{keys_file} missing")
    expected = [(k, list(shape)) for k, shape, _ in json.loads(path.read_text())]
    entry = load_catalogue().models[name]
    with torch.device("meta"):
        model = model_from_config(entry.architecture, entry.config)
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert got == expected
    assert tuple(model.sources) == tuple(entry.sources)
    assert model.samplerate == entry.samplerate == 44100
    assert model.track_normalize is True


def test_full_size_contract_attributes():
    cat = load_catalogue()
    with torch.device("meta"):
        ht = model_from_config("htdemucs", cat.models["htdemucs"].config)
        hd = model_from_config("hdemucs", cat.models["hdemucs_mmi"].config)
    assert ht.segment == Fraction(39, 5)
    assert ht.segment_samples == ht.max_segment_samples == 343980
    assert hd.segment_samples == 40 * 44100 and hd.max_segment_samples is None
    assert ht.audio_channels == hd.audio_channels == 2


@pytest.mark.needs_shared
@pytest.mark.parametrize("path", SMALL, ids=[p.name for p in SMALL])
def test_small_model_parity(path):
    pkg = torch.load(path, weights_only=True)
    model = model_from_config(pkg["arch"], _kwargs(pkg))
    assert list(model.state_dict()) == list(pkg["state_dict"])
    model.load_state_dict({k: v.float() for k, v in pkg["state_dict"].items()}, strict=True)
    model.eval()

    captured: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    hooks = []
    for key in pkg["intermediates"]:
        name, _, index = key.partition(":")
        assert name in modules, f"no module {name!r}"

        def hook(_mod, _inp, out, key=key, index=index):
            if key not in captured:  # first call = inputs[0]
                captured[key] = (out[int(index)] if index else out).detach().clone()

        hooks.append(modules[name].register_forward_hook(hook))
    with torch.no_grad():
        for i, (x, ref) in enumerate(zip(pkg["inputs"], pkg["outputs"])):
            _assert_close(model(x), ref, f"{path.name} output {i}")
            if i == 0:
                for h in hooks:
                    h.remove()
    for key, ref in pkg["intermediates"].items():
        _assert_close(captured[key], ref, f"{path.name} intermediate {key}")


@pytest.mark.needs_shared
@pytest.mark.parametrize("path", SMALL_TH, ids=[p.name for p in SMALL_TH])
def test_official_format_file_loads_and_matches(path):
    model = load_model(str(path))
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    io = torch.load(path.with_name(path.name.replace(".small.th", ".small.io.pt")), weights_only=True)
    with torch.no_grad():
        for i, (x, ref) in enumerate(zip(io["inputs"], io["outputs"])):
            _assert_close(model(x), ref, f"{path.name} output {i}")


def test_segment_forms_give_exact_lengths():
    base = dict(sources=["a"], channels=8, t_layers=1)
    from unbake.models.htdemucs import from_reference_kwargs

    for seg in ("39/5", Fraction(39, 5)):
        with torch.device("meta"):
            assert from_reference_kwargs({**base, "segment": seg}).segment_samples == 343980
    with torch.device("meta"):
        # a float keeps float rounding, as int(7.8 * 44100) does in the reference
        assert from_reference_kwargs({**base, "segment": 7.8}).segment_samples == int(7.8 * 44100)


@pytest.mark.parametrize("arch,bad", [
    ("htdemucs", {"cac": False}),
    ("htdemucs", {"t_sparse_self_attn": True}),
    ("htdemucs", {"t_emb": "scaled"}),
    ("htdemucs", {"multi_freqs": [0.5]}),
    ("htdemucs", {"not_an_argument": 1}),
    ("hdemucs", {"hybrid_old": True}),
    ("hdemucs", {"hybrid": False}),
    ("hdemucs", {"segment": "abc"}),
])
def test_unsupported_kwargs_are_refused(arch, bad):
    with pytest.raises(ModelError):
        model_from_config(arch, {"sources": ["a", "b"], "channels": 8, **bad})


def test_htdemucs_refuses_input_longer_than_segment_and_keeps_short_length():
    model = model_from_config("htdemucs", {"sources": ["a", "b"], "channels": 8, "t_layers": 1,
                                           "bottom_channels": 8, "segment": "1/10"}).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 1000)).shape == (1, 2, 2, 1000)
        with pytest.raises(ModelError):
            model(torch.randn(1, 2, 4411))
        with pytest.raises(ModelError):
            model(torch.randn(1, 1, 1000))  # wrong channel count


@pytest.mark.parametrize("cin,cout,kernel,stride,batch,bias", [
    (6, 4, 8, 4, 1, True), (5, 3, 8, 4, 2, False), (4, 2, 6, 2, 1, True), (3, 2, 4, 4, 2, True),
])
def test_strided_transposed_conv_matches_torch(cin, cout, kernel, stride, batch, bias):
    from unbake.models._demucs_blocks import conv_transpose_strided

    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(cin, cout, (kernel, 1), (stride, 1), bias=bias)
    x = torch.randn(batch, cin, 13, 7)
    with torch.no_grad():
        expected = conv(x)
        got = conv_transpose_strided(conv, x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_strided_transposed_conv_falls_back_for_other_layouts():
    from unbake.models._demucs_blocks import conv_transpose_strided

    torch.manual_seed(0)
    odd = torch.nn.ConvTranspose2d(3, 2, (5, 1), (2, 1))  # kernel not a multiple of the stride
    one_d = torch.nn.ConvTranspose1d(3, 2, 8, 4)
    x2, x1 = torch.randn(1, 3, 9, 4), torch.randn(1, 3, 9)
    with torch.no_grad():
        assert torch.equal(conv_transpose_strided(odd, x2), odd(x2))
        assert torch.equal(conv_transpose_strided(one_d, x1), one_d(x1))
