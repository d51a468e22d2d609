"""Every architecture survives unbake's own checkpoint format: save, load through
``unbake.load_model`` (the path a user's file takes), same outputs."""

from __future__ import annotations

import pytest
import torch

from unbake.hub.architectures import ARCHITECTURES, model_from_config
from unbake.hub.checkpoint import save_checkpoint
from unbake.hub.loading import load_model

_BANDS_1025 = [2] * 24 + [4] * 12 + [12] * 8 + [24] * 8 + [48] * 8 + [128, 129]

# the smallest configurations that exercise every layer type of each architecture
TINY = {
    "center": {},
    "masknet": {"hidden": 16, "depth": 2, "segment_s": 1.0},
    "htdemucs": {"sources": ["drums", "bass", "other", "vocals"], "channels": 4, "depth": 4, "segment": "2/5",
                 "t_layers": 1, "bottom_channels": 0, "dconv_comp": 4},
    "hdemucs": {"sources": ["drums", "bass", "other", "vocals"], "channels": 4, "depth": 6, "segment": 4},
    "scnet": {"sources": ["drums", "bass", "other", "vocals"], "dims": [4, 8, 12, 16], "num_dplayer": 2,
              "band_SR": [0.175, 0.392, 0.433], "band_stride": [1, 4, 16], "band_kernel": [3, 4, 16],
              "conv_depths": [3, 2, 1], "compress": 4, "conv_kernel": 3, "expand": 1, "nfft": 4096,
              "hop_size": 1024, "win_size": 4096},
    "bs_roformer": {"dim": 16, "depth": 1, "stereo": True, "num_stems": 2, "freqs_per_bands": _BANDS_1025,
                    "dim_head": 8, "heads": 2, "time_transformer_depth": 1, "freq_transformer_depth": 1,
                    "instruments": ["vocals", "other"]},
    "mel_band_roformer": {"dim": 16, "depth": 1, "stereo": True, "num_stems": 2, "num_bands": 8,
                          "dim_head": 8, "heads": 2, "time_transformer_depth": 1, "freq_transformer_depth": 1,
                          "instruments": ["vocals", "other"]},
}


def test_every_architecture_has_a_tiny_config():
    assert set(TINY) == set(ARCHITECTURES)


@pytest.mark.parametrize("arch", sorted(TINY))
def test_save_and_reload_gives_the_same_model(tmp_path, arch):
    torch.manual_seed(0)
    model = model_from_config(arch, TINY[arch]).eval()
    path = save_checkpoint(model, tmp_path / f"{arch}.pt", architecture=arch, config=TINY[arch])
    again = load_model(path)
    assert again.sources == model.sources
    mix = torch.randn(1, model.audio_channels, 8192)
    with torch.no_grad():
        a, b = model(mix), again(mix)
    assert a.shape == (1, len(model.sources), model.audio_channels, 8192)
    assert torch.equal(a, b)


@pytest.mark.parametrize("arch", sorted(a for a in TINY if a != "center"))
def test_int8_storage_keeps_every_weight_within_half_a_step(tmp_path, arch):
    from unbake.hub.checkpoint import FORMAT_INT8, INT8_MIN_NUMEL, read_blob

    torch.manual_seed(0)
    model = model_from_config(arch, TINY[arch]).eval()
    path = save_checkpoint(model, tmp_path / f"{arch}.pt", architecture=arch, config=TINY[arch], int8=True)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT_INT8 and raw["int8_scales"]
    back = read_blob(path)["state_dict"]
    for k, w in model.state_dict().items():
        if not w.is_floating_point():
            assert torch.equal(back[k], w)
        elif k in raw["int8_scales"]:
            assert raw["state_dict"][k].dtype == torch.int8 and w.numel() >= INT8_MIN_NUMEL
            step = w.reshape(w.shape[0], -1).abs().amax(dim=1) / 127
            err = (back[k] - w).reshape(w.shape[0], -1).abs().amax(dim=1)
            assert torch.all(err <= step / 2 * 1.001 + 1e-12), k
        else:
            assert raw["state_dict"][k].dtype == torch.float16
            assert torch.equal(back[k].float(), w.half().float())
    again = load_model(path)
    mix = torch.randn(1, model.audio_channels, 8192)
    with torch.no_grad():
        a, b = model(mix), again(mix)
    snr = 10 * torch.log10(a.pow(2).sum() / (a - b).pow(2).sum())
    assert snr > 25, snr


def test_damaged_int8_storage_is_refused(tmp_path):
    from unbake.errors import CheckpointError
    from unbake.hub.checkpoint import read_blob

    torch.manual_seed(0)
    model = model_from_config("masknet", TINY["masknet"]).eval()
    path = save_checkpoint(model, tmp_path / "m.pt", architecture="masknet", config=TINY["masknet"], int8=True)
    blob = torch.load(path, weights_only=True)
    key = next(iter(blob["int8_scales"]))
    for damage, message in [
        (lambda b: b["int8_scales"].pop(key), "no scale for"),
        (lambda b: b["int8_scales"].__setitem__(key, b["int8_scales"][key][:-1]), "one float scale per row"),
        (lambda b: b["int8_scales"].__setitem__("nowhere", torch.ones(3)), "has a scale but no int8 weights"),
        (lambda b: b.pop("int8_scales"), "not mappings"),
    ]:
        broken = torch.load(path, weights_only=True)
        damage(broken)
        torch.save(broken, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match=message):
            read_blob(tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match="damaged int8 weights"):
            load_model(tmp_path / "bad.pt")
