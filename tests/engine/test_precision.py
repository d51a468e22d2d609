"""Lower-precision separation (``precision=``): every precision runs through the engine and the
facade, returns float32 stems of the input's shape, and stays within -30 dB of the float32
output (SNR >= 30 dB per stem, which moves any SDR by under 0.05 dB)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import unbake
from unbake.engine import PRECISIONS, apply_model, resolve_precision
from unbake.engine.precision import cpu_features
from unbake.errors import UnbakeError
from unbake.hub.architectures import model_from_config

from conftest import tone_mix

SNR_BOUND_DB = 30.0
LOWER = ("bfloat16", "int8", "fast")  # what a CPU runs; float16 is refused there (tested below)

# tiny versions of the full-size architectures (same code paths, a few thousand parameters)
TINY = {
    "htdemucs": dict(sources=["drums", "bass", "other", "vocals"], channels=8, segment="2/5",
                     bottom_channels=48, dconv_mode=3, t_layers=2),
    "scnet": dict(sources=["drums", "bass", "other", "vocals"], audio_channels=2, dims=[4, 8, 12, 16],
                  band_SR=[0.175, 0.392, 0.433], band_stride=[1, 4, 16], band_kernel=[3, 4, 16],
                  conv_depths=[3, 2, 1], compress=4, conv_kernel=3, expand=1, num_dplayer=2,
                  nfft=4096, hop_size=1024, win_size=4096, normalized=True),
    "bs_roformer": dict(dim=8, depth=1, stereo=True, num_stems=2, time_transformer_depth=1,
                        freq_transformer_depth=1, heads=2, dim_head=8, flash_attn=False),
    "mel_band_roformer": dict(dim=8, depth=1, stereo=True, num_stems=2, time_transformer_depth=1,
                              freq_transformer_depth=1, num_bands=60, heads=2, dim_head=8,
                              flash_attn=False),
}


def _tiny(arch: str):
    torch.manual_seed(0)
    model = model_from_config(arch, TINY[arch]).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale"):  # Demucs LayerScale starts near 0: make every branch count
                p.uniform_(0.2, 0.5)
    return model


def _snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref.astype(np.float64) - est) ** 2)))


@pytest.mark.parametrize("arch", sorted(TINY))
def test_every_precision_stays_within_the_bound(arch):
    model = _tiny(arch)
    mix = tone_mix(2.0)
    seg = model.max_segment_samples or 44100
    exact = apply_model(model, mix, segment_samples=seg)
    assert np.abs(exact).max() > 1e-3  # the model does something
    for precision in LOWER:
        out = apply_model(model, mix, segment_samples=seg, precision=precision)
        assert out.shape == exact.shape and out.dtype == np.float32
        for k, stem in enumerate(model.sources):
            snr = _snr_db(exact[k], out[k])
            assert snr >= SNR_BOUND_DB, f"{arch} {precision} {stem}: {snr:.1f} dB"
        if precision != "fast" and resolve_precision("fast", torch.device("cpu")) != precision:
            assert not np.array_equal(out, exact)  # the lower precision really ran


def test_explicit_float32_is_the_exact_default():
    model = _tiny("bs_roformer")
    mix = tone_mix(1.0)
    np.testing.assert_array_equal(apply_model(model, mix, precision="float32"), apply_model(model, mix))


def test_int8_leaves_the_callers_model_unchanged():
    model = _tiny("bs_roformer")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_model(model, tone_mix(1.0), precision="int8")
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(type(m) is torch.nn.Linear for m in model.modules())


def test_int8_quantises_per_channel_and_keeps_a_models_float_parts():
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    from unbake.engine.precision import for_precision

    model = model_from_config("masknet", {"n_fft": 256, "hop_length": 64, "hidden": 16, "depth": 2,
                                          "full_res_bins": 64, "high_group": 4, "segment_s": 1.0})
    assert model.int8_float_modules == ("blocks",)
    q = for_precision(model, "int8")
    assert type(q.encode) is QLinear and type(q.decode) is QLinear
    assert q.encode.weight().qscheme() == torch.per_channel_affine
    assert all(type(m) is torch.nn.Linear for n, m in q.named_modules() if n.startswith("blocks.") and
               isinstance(m, (torch.nn.Linear, QLinear)))
    model.int8_float_modules = ()
    assert type(for_precision(model, "int8").blocks[0].proj) is QLinear


def test_fast_picks_a_native_precision():
    cpu = resolve_precision("fast", torch.device("cpu"))
    feats = cpu_features()
    if feats["avx512_bf16"] or feats["amx"]:
        assert cpu == "bfloat16"
    elif feats["int8_kernels"]:
        assert cpu == "int8"
    else:
        assert cpu == "float32"
    assert resolve_precision("fast", torch.device("cuda")) == "float16"
    assert resolve_precision(None, torch.device("cpu")) == "float32"
    assert set(PRECISIONS) == {"float32", "bfloat16", "float16", "int8", "fast"}


@pytest.mark.parametrize("precision,device", [("float64", "cpu"), ("half", "cpu"), ("int8", "cuda")])
def test_bad_precision_is_a_typed_error(precision, device):
    with pytest.raises(UnbakeError, match="precision"):
        resolve_precision(precision, torch.device(device))


@pytest.mark.skipif(cpu_features()["amx_fp16"], reason="this CPU runs float16 natively")
def test_float16_is_refused_on_a_cpu_without_native_half_precision():
    with pytest.raises(UnbakeError, match="float16"):
        unbake.separate(tone_mix(0.5), sample_rate=44100, model="center", precision="float16")


def test_shipped_model_on_real_music(example_song):
    """The shipped default with its real weights on a real song (6 s), through the facade."""
    from unbake.audio import read_audio

    excerpt, sr = read_audio(example_song)
    exact = unbake.separate(excerpt, sample_rate=sr, model="unbake_small", precision="float32")
    assert exact.provenance["options"]["precision"] == "float32"
    assert unbake.separate(excerpt[:, :sr], sample_rate=sr).provenance["options"]["precision"] == "fast"
    for precision in LOWER:
        est = unbake.separate(excerpt, sample_rate=sr, model="unbake_small", precision=precision)
        assert est.provenance["options"]["precision"] == precision
        for stem, ref in exact.stems.items():
            out = est.stems[stem]
            assert out.dtype == np.float32 and out.shape == ref.shape
            snr = _snr_db(ref, out)
            assert snr >= SNR_BOUND_DB, f"unbake_small {precision} {stem}: {snr:.1f} dB"


def test_cli_refuses_a_bad_precision_cleanly(tmp_path, wav_file):
    from unbake.cli import app

    res = CliRunner().invoke(app, ["separate", str(wav_file), "-o", str(tmp_path / "out"),
                                   "-n", "center", "--precision", "float64"])
    assert res.exit_code != 0
    assert "--precision: must be one of" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.*"))


def test_cli_separates_with_fast_precision(tmp_path, wav_file):
    from unbake.cli import app

    res = CliRunner().invoke(app, ["separate", str(wav_file), "-o", str(tmp_path), "-n", "unbake_small",
                                   "--precision", "fast"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "song").iterdir()) == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
