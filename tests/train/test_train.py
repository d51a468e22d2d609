"""unbake.train and the masknet model: losses, schedule, config checks, a tiny run that learns,
bit-exact resume after a kill, data-parallel ranks holding identical weights, fine-tuning and
the CLI."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unbake.errors import ConfigError, ModelError
from unbake.train.config import config_from_dict, load_config
from unbake.train.losses import LossConfig, l1_wave, mrstft, separation_loss
from unbake.train.loop import STATE_NAME, Trainer, lr_factor, read_state

from conftest import TRACK_SR as SR, make_folder_tracks

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL = {"n_fft": 256, "hop_length": 64, "hidden": 16, "depth": 2, "full_res_bins": 64,
              "high_group": 4, "segment_s": 1.0}


def tiny_config(tmp: Path, **over) -> dict:
    data = tmp / "data"
    if not data.exists():
        make_folder_tracks(data, n_tracks=4, seconds=1.0, tonal=True)
    raw = {
        "seed": 3,
        "out_dir": str(tmp / "run"),
        "model": {"architecture": "masknet", "config": {**TINY_MODEL, "samplerate": SR}},
        "data": {"root": str(data), "cache_dir": str(tmp / "cache"), "samplerate": SR,
                 "segment_s": 0.25, "valid_every": 4, "valid_count": 1},
        "augment": {"remix_p": 0.5, "gain_db": [-6, 3], "channel_swap_p": 0.5, "polarity_flip_p": 0.5},
        "optim": {"lr": 3e-3, "warmup_steps": 2, "steps": 6, "batch_size": 2},
        "loss": {"l1_wave": 1.0, "mrstft": 0.1, "mrstft_ffts": [64, 128]},
        "run": {"threads": 1, "device": "cpu", "log_every": 1, "valid_every_steps": 3,
                "checkpoint_every_s": 0, "checkpoint_every_steps": 1},
    }
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            raw[section] = {**raw[section], name: value}
        else:
            raw[section] = value
    return raw


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


# ------------------------------------------------------------------ losses and schedule


def test_losses_are_sane():
    torch.manual_seed(0)
    ref = torch.randn(2, 4, 2, 4096)
    assert float(l1_wave(ref, ref)) == 0.0
    assert float(l1_wave(ref + 0.5, ref)) == pytest.approx(0.5, rel=1e-6)
    assert float(mrstft(ref, ref, (256, 512))) == pytest.approx(0.0, abs=1e-6)
    small = float(mrstft(ref + 0.01 * torch.randn_like(ref), ref, (256, 512)))
    large = float(mrstft(0.1 * torch.randn_like(ref), ref, (256, 512)))
    assert 0 < small < large
    total, parts = separation_loss(ref * 0.5, ref, LossConfig(l1_wave=1.0, mrstft=0.5, mrstft_ffts=(256,)))
    assert float(total) == pytest.approx(parts["l1_wave"] + 0.5 * parts["mrstft"], rel=1e-5)
    with pytest.raises(ValueError, match="shape"):
        l1_wave(ref, ref[:, :3])
    with pytest.raises(ConfigError):
        LossConfig.from_dict({"l1_wave": 0, "mrstft": 0})


def test_lr_schedule_warms_up_then_decays():
    f = [lr_factor(s, 10, 110, 0.1) for s in range(0, 120)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0)
    assert f[60] == pytest.approx(0.55)
    assert f[110] == pytest.approx(0.1) and f[119] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))


# ------------------------------------------------------------------ config


def test_config_checks(tmp_path):
    raw = tiny_config(tmp_path)
    cfg = config_from_dict(raw)
    assert cfg.segment_samples == 2000 and cfg.optim.batch_size == 2
    with pytest.raises(ConfigError, match="unknown keys in optim"):
        config_from_dict(tiny_config(tmp_path, optim__lrr=1.0))
    with pytest.raises(ConfigError, match="unknown top-level"):
        config_from_dict({**raw, "extra": 1})
    with pytest.raises(ConfigError, match="positive"):
        config_from_dict(tiny_config(tmp_path, optim__steps=0))
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_shipped_config_parses():
    cfg = load_config(REPO / "configs" / "train_small.yaml")
    assert cfg.model.architecture == "masknet" and cfg.augment.remix_p > 0
    assert cfg.data.sources == ("drums", "bass", "other", "vocals")


# ------------------------------------------------------------------ the model


def test_masknet_contract_and_round_trip(tmp_path):
    from unbake import load_model
    from unbake.hub.checkpoint import save_checkpoint
    from unbake.models.masknet import from_reference_kwargs

    model = from_reference_kwargs({**TINY_MODEL, "samplerate": SR}).eval()
    mix = torch.randn(3, 2, 1234)
    with torch.no_grad():
        out = model(mix)
    assert out.shape == (3, 4, 2, 1234)
    # softmax masks on the mixture STFT: the stems add up to the mixture
    torch.testing.assert_close(out.sum(dim=1), mix, atol=1e-4, rtol=1e-4)
    path = save_checkpoint(model, tmp_path / "m.pt", architecture="masknet", config=model.config.to_dict(),
                           half=True)
    again = load_model(str(path))
    assert again.sources == model.sources and again.samplerate == SR
    with torch.no_grad():
        torch.testing.assert_close(again(mix), out, atol=2e-2, rtol=0)
    with pytest.raises(ModelError, match="unknown masknet"):
        from_reference_kwargs({"hiden": 3})
    with pytest.raises(ModelError, match="expects"):
        model(torch.randn(1, 1, 100))


def test_masknet_ensemble_is_the_mean_of_its_members_over_one_stft(tmp_path):
    from unbake import load_model
    from unbake.engine.precision import for_precision
    from unbake.hub.architectures import model_from_config
    from unbake.hub.checkpoint import save_checkpoint
    from unbake.models.masknet import MaskNetEnsemble, from_reference_kwargs

    torch.manual_seed(0)
    a = from_reference_kwargs({**TINY_MODEL, "samplerate": SR}).eval()
    b = from_reference_kwargs({**TINY_MODEL, "samplerate": SR, "depth": 3, "hidden": 8}).eval()
    ens = MaskNetEnsemble([a, b]).eval()
    mix = torch.randn(2, 2, 3000)
    with torch.no_grad():
        out = ens(mix)
        torch.testing.assert_close(out, (a(mix) + b(mix)) / 2, atol=1e-5, rtol=1e-4)
        # a member that groups the bins otherwise has features and masks of its own
        c = from_reference_kwargs({**TINY_MODEL, "samplerate": SR, "full_res_bins": 40, "high_group": 3}).eval()
        torch.testing.assert_close(MaskNetEnsemble([a, c, b])(mix), (a(mix) + b(mix) + c(mix)) / 3,
                                   atol=1e-5, rtol=1e-4)
        # so has one that hears the side signal too
        d = from_reference_kwargs({**TINY_MODEL, "samplerate": SR, "stereo_side": True}).eval()
        torch.testing.assert_close(MaskNetEnsemble([a, d, b])(mix), (a(mix) + b(mix) + d(mix)) / 3,
                                   atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.sum(dim=1), mix, atol=1e-4, rtol=1e-4)
    assert ens.sources == a.sources and ens.segment_samples == a.segment_samples
    # the checkpoint carries the members' configs; it loads by its architecture name alone
    path = save_checkpoint(ens, tmp_path / "e.pt", architecture="masknet", config=ens.config.to_dict())
    again = load_model(str(path))
    assert isinstance(again, MaskNetEnsemble) and len(again.members) == 2
    with torch.no_grad():
        torch.testing.assert_close(again(mix), out, atol=1e-5, rtol=0)
    # int8 keeps every member's residual blocks in float32, as for a single masknet
    quantised = for_precision(again, "int8")
    kinds = {name: type(mod) for name, mod in quantised.named_modules()}
    assert kinds["members.1.blocks.2.proj"] is torch.nn.Linear and kinds["members.1.encode"] is not torch.nn.Linear
    with pytest.raises(ModelError, match="differs from member 0 in \\['n_fft'\\]"):
        MaskNetEnsemble([a, from_reference_kwargs({**TINY_MODEL, "samplerate": SR, "n_fft": 512})])
    with pytest.raises(ModelError, match="only 'members', 'passes' and 'peel'"):
        model_from_config("masknet", {"members": [dict(TINY_MODEL)], "depth": 2})
    with pytest.raises(ModelError, match="1 to 16 members"):
        model_from_config("masknet", {"members": []})
    with pytest.raises(ModelError, match="masknet setting hidden"):
        model_from_config("masknet", {"members": [{**TINY_MODEL, "hidden": 10**6}]})
    with pytest.raises(ModelError, match="expects"):
        ens(torch.randn(1, 1, 100))


def test_masknet_ensemble_separates_in_passes(tmp_path):
    """passes/peel: each pass separates what the earlier ones left, the stems taken out are added
    up, and the stems still sum to the mixture; the checkpoint keeps the passes."""
    from unbake import load_model
    from unbake.hub.architectures import model_from_config
    from unbake.hub.checkpoint import save_checkpoint
    from unbake.models.masknet import MaskNetEnsemble, from_reference_kwargs

    torch.manual_seed(3)
    a, b, c = (from_reference_kwargs({**TINY_MODEL, "samplerate": SR, "hidden": h}).eval() for h in (8, 12, 16))
    sources = list(a.sources)
    v, d = sources.index("vocals"), sources.index("drums")
    mix = torch.randn(2, 2, 3000)
    with torch.no_grad():
        two = MaskNetEnsemble([a, b, c], [[0, 2], [1]], ["vocals"]).eval()
        first = MaskNetEnsemble([a, c])(mix)
        expected = b(mix - first[:, v])
        expected[:, v] += first[:, v]
        out = two(mix)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
        assert (out - MaskNetEnsemble([a, b, c])(mix)).abs().max() > 1e-3
        # three passes: the second pass's vocals join the first's, and both are taken out
        three = MaskNetEnsemble([a, b, c], [[0], [1], [2]], ["vocals", "drums"]).eval()
        ea = a(mix)
        rest = mix - ea[:, v]
        eb = b(rest)
        ec = c(rest - eb[:, v] - eb[:, d])
        expected = ec.clone()
        expected[:, v] += ea[:, v] + eb[:, v]
        expected[:, d] += eb[:, d]
        out3 = three(mix)
        torch.testing.assert_close(out3, expected, atol=1e-5, rtol=1e-4)
    for est in (out, out3):
        torch.testing.assert_close(est.sum(dim=1), mix, atol=1e-4, rtol=1e-4)
    path = save_checkpoint(two, tmp_path / "p.pt", architecture="masknet", config=two.config.to_dict())
    again = load_model(str(path))
    assert again.config.passes == ((0, 2), (1,)) and again.config.peel == ("vocals",)
    with torch.no_grad():
        torch.testing.assert_close(again(mix), out, atol=1e-5, rtol=0)
    members = [dict(TINY_MODEL)] * 2
    for passes, peel, message in (([[0], [2]], ["vocals"], "member indices 0-1"),
                                  ([[0]], [], "members \\[1\\] are in no pass"),
                                  ([[0], []], ["vocals"], "non-empty lists"),
                                  ([[0], [1]], [], "one stem for each pass but the last"),
                                  ([[0], [1], [0, 1]], ["vocals", "vocals"], "distinct stems"),
                                  ([[0], [1]], ["voice"], "distinct stems"),
                                  ([], ["vocals"], "'peel' needs 'passes'")):
        with pytest.raises(ModelError, match=message):
            model_from_config("masknet", {"members": members, "passes": passes, "peel": peel})


def test_passes_cv_bench_scores_both_arms_and_applies_its_rule(tmp_path):
    """benchmarks/bench_passes_cv.py on two folds of two tiny runs each: per fold, the one-pass arm is
    the two models' ensemble, the two-pass arm the mean of both orders; the verdict follows the rule."""
    import json

    import numpy as np

    from unbake.data.cache import AudioCache
    from unbake.data.datasets import find_tracks, fold_split, load_tracks
    from unbake.hub.architectures import model_from_config
    from unbake.hub.checkpoint import load_state_strict
    from unbake.models.masknet import MaskNetEnsemble
    from unbake.train.loop import evaluate

    for fold in (0, 1):
        for seed in (3, 4):
            cfg = tiny_config(tmp_path, seed=seed, data__folds=2, data__fold=fold, data__valid_count=0)
            Trainer(config_from_dict(cfg), tmp_path / f"f{fold}_s{seed}").fit()
    out = tmp_path / "cv.json"
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "bench_passes_cv.py"), "--runs",
                           str(tmp_path / "f{fold}_s3"), str(tmp_path / "f{fold}_s4"), "--folds", "0", "1",
                           "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(repo / "src")})
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    # fold 1 again, here: the one-pass arm is the ensemble of the two runs' last states
    models = []
    for seed in (3, 4):
        state = read_state(tmp_path / f"f1_s{seed}" / STATE_NAME)
        model = model_from_config(state["architecture"], state["model_config"])
        load_state_strict(model, state["model"], "test")
        models.append(model.eval())
    _, held_out = fold_split(find_tracks(tmp_path / "data"), 2, 1)
    tracks = load_tracks(held_out, tuple(models[0].sources), SR, AudioCache(tmp_path / "cache2"))
    with torch.no_grad():
        one = evaluate(MaskNetEnsemble(models).eval(), tracks, tuple(models[0].sources))["stems"]
    assert figures["folds"]["1"]["one"] == pytest.approx(one, abs=1e-4)
    diffs = [np.mean(list(figures["folds"][f]["two"].values())) - np.mean(list(figures["folds"][f]["one"].values()))
             for f in ("0", "1")]
    assert figures["gain"] == pytest.approx(np.mean(diffs), abs=1e-9)
    assert figures["stderr"] == pytest.approx(np.std(diffs, ddof=1) / np.sqrt(2), abs=1e-9)
    wins = figures["gain"] > 0 and figures["gain"] > figures["stderr"]
    assert figures["verdict"] == ("two passes" if wins else "one pass")
    assert f"by the rule, {figures['verdict']}" in proc.stdout
    # one fold: its difference, no spread and so no verdict
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "bench_passes_cv.py"), "--runs",
                           str(tmp_path / "f{fold}_s3"), str(tmp_path / "f{fold}_s4"), "--folds", "1",
                           "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(repo / "src")})
    assert proc.returncode == 0, proc.stderr
    single = json.loads(out.read_text())
    assert single["gain"] == pytest.approx(diffs[1], abs=1e-6) and single["verdict"] is None
    assert "no spread, so no decision" in proc.stdout and "nan" not in proc.stdout + proc.stderr


def test_masknets_separate_a_short_track_in_one_window_of_its_own_length():
    """A masknet (or ensemble) is never fed silence past a track's end: a track shorter than the
    segment is separated exactly as the model's own forward pass over the whole track."""
    from unbake.engine import apply_model
    from unbake.models.masknet import MaskNetEnsemble, from_reference_kwargs

    torch.manual_seed(1)
    single = from_reference_kwargs({**TINY_MODEL, "samplerate": SR}).eval()
    ens = MaskNetEnsemble([single, from_reference_kwargs({**TINY_MODEL, "samplerate": SR})]).eval()
    mix = torch.randn(2, single.segment_samples * 2 // 3)
    for model in (single, ens):
        with torch.no_grad():
            direct = model(mix[None])[0]
        torch.testing.assert_close(apply_model(model, mix), direct, atol=1e-5, rtol=1e-4)
        # shorter than the STFT's reflection padding, down to one sample: still separated, still summing
        for n in (1, TINY_MODEL["n_fft"] // 2):
            out = apply_model(model, mix[:, :n])
            assert out.shape == (4, 2, n)
            torch.testing.assert_close(out.sum(dim=0), mix[:, :n], atol=1e-5, rtol=1e-4)


def test_masknet_stereo_side_hears_whether_the_channels_agree():
    """``stereo_side``: a third feature plane, the log magnitude of (L - R) / 2. Two mixtures with
    the same |L| and |R| in every bin, one the same sound in both channels and one with the right
    channel's polarity flipped, differ only there: empty for the first, |L| for the second. The
    masks still cover only the two channels; the stems still sum to the mixture; mono is refused."""
    from unbake.models.masknet import from_reference_kwargs

    torch.manual_seed(4)
    model = from_reference_kwargs({**TINY_MODEL, "samplerate": SR, "stereo_side": True}).eval()
    plain = from_reference_kwargs({**TINY_MODEL, "samplerate": SR}).eval()
    left = 0.1 * torch.randn(1, 1, 3000)
    centred, opposed = torch.cat([left, left], dim=1), torch.cat([left, -left], dim=1)
    with torch.no_grad():
        fc, fo = (model.features(model.spectrogram(m)) for m in (centred, opposed))
        assert fc.shape[1] == 3 and torch.equal(fc[:, :2], fo[:, :2])
        torch.testing.assert_close(fc[:, :2], plain.features(plain.spectrogram(centred)))
        assert fc[:, 2].abs().max() < 1e-6
        torch.testing.assert_close(fo[:, 2], fo[:, 0], atol=1e-5, rtol=1e-5)
        # the network does hear the difference (random weights: the side plane's columns are not zero)
        out_c, out_o = model(centred), model(opposed)
        assert out_c.shape == (1, 4, 2, 3000)
        assert not torch.allclose(out_c[:, :, 0], out_o[:, :, 0], atol=1e-4)
        torch.testing.assert_close(out_o.sum(dim=1), opposed, atol=1e-5, rtol=1e-4)
    with pytest.raises(ModelError, match="stereo_side needs audio_channels 2"):
        from_reference_kwargs({**TINY_MODEL, "samplerate": SR, "audio_channels": 1, "stereo_side": True})


def test_masknet_input_rms_makes_separation_independent_of_the_input_level(tmp_path):
    """With ``input_rms`` the network hears every window at one level: a mixture played 12 dB
    louder gives stems exactly 12 dB louder (without it, the log-magnitude features change and so
    do the masks); the stems still sum to the mixture; the setting travels with the checkpoint and
    ensemble members must agree on it."""
    from unbake import load_model
    from unbake.hub.checkpoint import save_checkpoint
    from unbake.models.masknet import MaskNetEnsemble, from_reference_kwargs

    torch.manual_seed(2)
    plain = from_reference_kwargs({**TINY_MODEL, "samplerate": SR}).eval()
    levelled = from_reference_kwargs({**TINY_MODEL, "samplerate": SR, "input_rms": 0.1}).eval()
    levelled.load_state_dict(plain.state_dict())
    mix = 0.05 * torch.randn(2, 2, 3000)
    loud = 4.0 * mix
    with torch.no_grad():
        a, b = levelled(mix), levelled(loud)
        torch.testing.assert_close(b, 4.0 * a, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(plain(loud), 4.0 * plain(mix), atol=1e-3)
        # the gain is exactly the one that brings the mixture to 0.1 RMS
        scaled = mix * (0.1 / mix.pow(2).mean(dim=(1, 2), keepdim=True).sqrt())
        torch.testing.assert_close(a, plain(scaled) * (mix.pow(2).mean(dim=(1, 2), keepdim=True).sqrt() / 0.1)[:, None],
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a.sum(dim=1), mix, atol=1e-5, rtol=1e-4)
        silent = levelled(torch.zeros(1, 2, 3000))
    assert torch.isfinite(silent).all() and silent.abs().max() == 0
    ens = MaskNetEnsemble([levelled, levelled]).eval()
    path = save_checkpoint(ens, tmp_path / "e.pt", architecture="masknet", config=ens.config.to_dict())
    again = load_model(str(path))
    with torch.no_grad():
        torch.testing.assert_close(again(loud), b, atol=1e-5, rtol=1e-4)
    with pytest.raises(ModelError, match="input_rms"):
        MaskNetEnsemble([levelled, plain])
    with pytest.raises(ModelError, match="input_rms"):
        from_reference_kwargs({**TINY_MODEL, "input_rms": -1.0})


# ------------------------------------------------------------------ training


def test_tiny_run_reduces_the_loss(tmp_path):
    from unbake.train.losses import separation_loss as loss_fn

    cfg = config_from_dict(tiny_config(tmp_path, optim__steps=40, optim__warmup_steps=0, optim__lr=1e-2,
                                       run__checkpoint_every_steps=0, run__valid_every_steps=40,
                                       run__log_every=10))
    trainer = Trainer(cfg)
    mix, stems = trainer.sampler.batch(10_000, 0, 8)  # a batch the run never trains on

    def held_out_loss() -> float:
        trainer.model.eval()
        with torch.no_grad():
            return float(loss_fn(trainer.model(torch.from_numpy(mix)), torch.from_numpy(stems), cfg.loss)[0])

    before = held_out_loss()
    result = trainer.fit()
    after = held_out_loss()
    assert result["step"] == 40
    assert after < 0.7 * before
    out = Path(cfg.out_dir)
    for name in ("state.pt", "best_model.pt", "train_log.csv", "valid_log.csv", "curves.png"):
        assert (out / name).is_file(), name
    rows = (out / "train_log.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 1 + 4
    from unbake import load_model

    best = load_model(str(out / "best_model.pt"))
    assert best.sources == ("drums", "bass", "other", "vocals")


def test_bfloat16_run_trains_float32_weights(tmp_path):
    """``run.precision: bfloat16`` autocasts the forward pass: the loss still falls, the weights
    stay float32, and they are not those of the float32 run (the products did run in bfloat16)."""
    from unbake.train.losses import separation_loss as loss_fn

    runs = {}
    for precision in ("float32", "bfloat16"):
        cfg = config_from_dict(tiny_config(tmp_path / precision, optim__steps=20, optim__warmup_steps=0,
                                           optim__lr=1e-2, run__precision=precision,
                                           run__checkpoint_every_steps=0, run__valid_every_steps=20))
        trainer = Trainer(cfg)
        mix, stems = trainer.sampler.batch(10_000, 0, 8)

        def held_out_loss() -> float:
            trainer.model.eval()
            with torch.no_grad():
                return float(loss_fn(trainer.model(torch.from_numpy(mix)), torch.from_numpy(stems), cfg.loss)[0])

        before = held_out_loss()
        trainer.fit()
        assert held_out_loss() < 0.8 * before, precision
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
        runs[precision] = weights(trainer.model)
    assert any(not torch.equal(runs["float32"][k], runs["bfloat16"][k]) for k in runs["float32"])
    with pytest.raises(ConfigError, match="run.precision"):
        config_from_dict(tiny_config(tmp_path / "float32", run__precision="float16"))


def test_resume_in_process_is_exact(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path, run__valid_every_steps=0))
    straight = Trainer(cfg, tmp_path / "a")
    straight.fit()
    first = Trainer(cfg, tmp_path / "b")
    first.fit(max_steps=3)
    assert first.step == 3
    second = Trainer(cfg, tmp_path / "b")
    assert second.resume() and second.step == 3
    second.fit()
    assert second.step == straight.step == 6
    assert_same_weights(weights(straight.model), weights(second.model))
    a, b = read_state(tmp_path / "a" / STATE_NAME), read_state(tmp_path / "b" / STATE_NAME)
    for k, v in a["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6
    # the CSV log holds each step once after the resume
    steps = [line.split(",")[0] for line in (tmp_path / "b" / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3", "4", "5", "6"]


def test_data_workers_train_on_the_same_batches(tmp_path):
    # batches prepared ahead by worker processes, with a resume in between, give the weights a
    # run without workers gives
    raw = tiny_config(tmp_path, run__valid_every_steps=0)
    straight = Trainer(config_from_dict(raw), tmp_path / "a")
    straight.fit()
    workers = config_from_dict(tiny_config(tmp_path, run__valid_every_steps=0, run__data_workers=2))
    first = Trainer(workers, tmp_path / "b")
    first.fit(max_steps=4)
    assert first._prefetch is None  # closed when fit returns
    second = Trainer(workers, tmp_path / "b")
    assert second.resume() and second.step == 4
    second.fit()
    assert_same_weights(weights(straight.model), weights(second.model))


def _cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
def test_resume_after_kill_is_bit_exact(tmp_path):
    import yaml

    steps = 30  # long enough that the kill lands mid-run
    raw = tiny_config(tmp_path, optim__steps=steps, run__valid_every_steps=0)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_config(cfg_path)
    straight = Trainer(cfg, tmp_path / "straight")
    straight.fit()

    out = tmp_path / "killed"
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "unbake", "train", str(cfg_path), "--out", str(out),
                                 "--quiet"], env=_cli_env(), stdout=subprocess.DEVNULL, stderr=err)
    state = out / STATE_NAME
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file():
            step = read_state(state)["step"]
            if step >= 2:
                proc.send_signal(signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert killed_at is not None, errors.read_text()[-2000:]
    resumed = Trainer(cfg, out)
    assert resumed.resume()
    assert 2 <= resumed.step < steps
    resumed.fit()
    assert resumed.step == steps
    assert_same_weights(weights(straight.model), weights(resumed.model))


def test_resume_refuses_a_foreign_state(tmp_path):
    from unbake.errors import CheckpointError

    cfg = config_from_dict(tiny_config(tmp_path, optim__steps=1))
    Trainer(cfg, tmp_path / "a").fit()
    other = config_from_dict(tiny_config(tmp_path, seed=4, optim__steps=1))
    with pytest.raises(CheckpointError, match="seed"):
        Trainer(other, tmp_path / "a").resume()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / STATE_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        Trainer(cfg, tmp_path / "junk").resume()


def _ddp_worker(cfg_raw: dict, out: str) -> None:
    from unbake.train import ddp
    from unbake.train.loop import Trainer as T

    cfg = config_from_dict(cfg_raw)
    info = ddp.init_from_env(torch.device("cpu"))

    def fit() -> None:  # the trainer is gone before the process group (ddp.shutdown)
        trainer = T(cfg, out, info)
        trainer.fit()
        torch.save(weights(trainer.model), Path(out) / f"rank{info.rank}.pt")

    try:
        fit()
    finally:
        ddp.shutdown(info)


@pytest.mark.slow
def test_ddp_ranks_hold_identical_weights(tmp_path):
    from unbake.train import ddp

    raw = tiny_config(tmp_path, optim__steps=3, run__valid_every_steps=0)
    Trainer(config_from_dict(raw), tmp_path / "warm").fit(max_steps=0)  # fill the cache once
    init = weights(Trainer(config_from_dict(raw), tmp_path / "init").model)
    out = tmp_path / "ddp"
    out.mkdir()
    ddp.spawn(_ddp_worker, 2, raw, str(out))
    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    assert_same_weights(w0, w1)
    assert any(not torch.equal(w0[k], init[k]) for k in init)  # it did train
    assert read_state(out / STATE_NAME)["world_size"] == 2


def test_fine_tune_from_a_checkpoint(tmp_path):
    from unbake.train.loop import BEST_NAME

    cfg = config_from_dict(tiny_config(tmp_path, optim__steps=3))
    Trainer(cfg, tmp_path / "base").fit()
    start = tmp_path / "base" / BEST_NAME
    from unbake.hub.checkpoint import load_checkpoint

    base = weights(load_checkpoint(start))
    tuned = Trainer(config_from_dict(tiny_config(tmp_path, init_from=str(start), optim__steps=2)),
                    tmp_path / "tuned")
    assert_same_weights(weights(tuned.model), base)
    tuned.fit()
    assert any(not torch.equal(v, base[k]) for k, v in weights(tuned.model).items())
    with pytest.raises(ModelError):
        Trainer(config_from_dict(tiny_config(tmp_path, init_from=str(tmp_path / "nope.pt"))), tmp_path / "x")


def test_cli_train_refuses_to_overwrite_a_run(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from unbake.cli import app

    raw = tiny_config(tmp_path, optim__steps=2)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(cfg_path), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "best validation" in res.output
    res = runner.invoke(app, ["train", str(cfg_path), "--quiet"])
    assert res.exit_code != 0 and "--resume" in res.output
    res = runner.invoke(app, ["train", str(cfg_path), "--resume", "--quiet"])
    assert res.exit_code == 0, res.output


def test_data_folder_from_the_command_line(tmp_path, monkeypatch):
    """A fresh clone has no data where configs/train_small.yaml looks: the error says how to
    give it, and --data gives it (relative to the working folder, not the config)."""
    import shutil

    import yaml
    from typer.testing import CliRunner

    from unbake.cli import app

    raw = tiny_config(tmp_path, optim__steps=1)
    data = raw["data"]["root"]
    raw["data"]["root"] = "../nowhere"
    cfg_path = tmp_path / "configs" / "cfg.yaml"
    cfg_path.parent.mkdir()
    cfg_path.write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(cfg_path), "--quiet"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "data.root: no such folder" in res.output and "--data PATH" in res.output
    assert not (tmp_path / "run").exists()
    shutil.copytree(data, tmp_path / "here")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(cfg_path, data_root="here")
    assert cfg.data.root == str(tmp_path / "here")
    res = runner.invoke(app, ["train", str(cfg_path), "--data", "here", "--quiet"])
    assert res.exit_code == 0, res.output
    del raw["data"]["root"]
    with pytest.raises(ConfigError, match=r"data\.root: no training data folder; give the folder .* --data PATH"):
        config_from_dict(raw)


def test_data_preparation_reports_progress_and_disk_use(tmp_path, caplog):
    import logging

    from unbake.data.cache import AudioCache
    from unbake.data.datasets import find_tracks, load_tracks

    cfg = config_from_dict(tiny_config(tmp_path, augment__pitch_tempo_variants=1))
    paths = find_tracks(cfg.data.root)
    with caplog.at_level(logging.INFO, logger="unbake.data.datasets"):
        tracks = load_tracks(paths, cfg.data.sources, cfg.data.samplerate, AudioCache(cfg.data.cache_dir),
                             augment=cfg.augment, seed=cfg.seed)
    lines = [r.getMessage() for r in caplog.records if r.name == "unbake.data.datasets"]
    assert lines[0].startswith(f"preparing {len(paths)} tracks") and "1 pitch/tempo variant" in lines[0]
    progress = [line for line in lines if line.startswith("prepared ")]
    assert len(progress) == len(paths) and progress[-1].startswith(f"prepared {len(paths)}/{len(paths)}")
    used_mb = sum(t.stems.nbytes + sum(v.nbytes for v in t.variants) +
                  (t.mixture.nbytes if t.mixture is not None else 0) for t in tracks) / 1e6
    assert used_mb > 0 and f"cache {used_mb:.1f} MB" in progress[-1]


def test_fine_tune_starts_from_one_member_of_an_ensemble(tmp_path):
    from unbake.hub.checkpoint import save_checkpoint
    from unbake.models.masknet import MaskNet, MaskNetEnsemble, from_reference_kwargs
    from unbake.train.loop import build_model

    torch.manual_seed(1)
    cfg_model = {**TINY_MODEL, "samplerate": SR}
    ens = MaskNetEnsemble([from_reference_kwargs(cfg_model), from_reference_kwargs({**cfg_model, "depth": 3})])
    path = save_checkpoint(ens, tmp_path / "ens.pt", architecture="masknet", config=ens.config.to_dict())
    model, arch, kwargs = build_model(config_from_dict(tiny_config(tmp_path, init_from=str(path), init_member=1, model__config={})))
    assert isinstance(model, MaskNet) and arch == "masknet" and kwargs["depth"] == 3
    assert_same_weights(weights(model), weights(ens.members[1]))
    with pytest.raises(ConfigError, match="has 2 members"):
        build_model(config_from_dict(tiny_config(tmp_path, init_from=str(path), init_member=2, model__config={})))
    single = save_checkpoint(ens.members[0], tmp_path / "one.pt", architecture="masknet", config=cfg_model)
    with pytest.raises(ConfigError, match="not an ensemble"):
        build_model(config_from_dict(tiny_config(tmp_path, init_from=str(single), init_member=0, model__config={})))


def test_fine_tune_grows_a_trained_model_without_changing_its_output(tmp_path):
    """init_from plus new model keys (a recurrent block): the checkpoint's tensors load exactly,
    the new block starts as the identity, so the grown model separates as the trained one did."""
    from unbake.errors import CheckpointError
    from unbake.hub.checkpoint import load_checkpoint
    from unbake.train.loop import BEST_NAME

    Trainer(config_from_dict(tiny_config(tmp_path, optim__steps=3)), tmp_path / "base").fit()
    start = tmp_path / "base" / BEST_NAME
    base = load_checkpoint(start)
    grown_cfg = {**TINY_MODEL, "samplerate": SR, "rnn_hidden": 8}
    grown = Trainer(config_from_dict(tiny_config(tmp_path, init_from=str(start), optim__steps=2,
                                                 model={"architecture": "masknet", "config": grown_cfg})),
                    tmp_path / "grown")
    assert grown.model.config.rnn_hidden == 8 and grown.model.recurrent is not None
    own = weights(grown.model)
    for k, v in base.state_dict().items():
        assert torch.equal(own[k], v), k
    x = 0.1 * torch.randn(1, 2, SR // 2)
    with torch.no_grad():
        assert torch.allclose(grown.model.eval()(x), base(x), atol=1e-6)
    grown.fit()
    assert not torch.equal(weights(grown.model)["recurrent.proj.weight"], own["recurrent.proj.weight"])
    with pytest.raises(CheckpointError):  # a changed shape is never loaded over
        Trainer(config_from_dict(tiny_config(tmp_path, init_from=str(start), model={
            "architecture": "masknet", "config": {**TINY_MODEL, "samplerate": SR, "hidden": 24}})), tmp_path / "bad")
    # deeper: the added temporal block starts as the identity too
    deeper = Trainer(config_from_dict(tiny_config(tmp_path, init_from=str(start), optim__steps=2, model={
        "architecture": "masknet", "config": {**TINY_MODEL, "samplerate": SR, "depth": 3}})), tmp_path / "deeper")
    assert len(deeper.model.blocks) == 3 and not deeper.model.blocks[2].proj.weight.any()
    with torch.no_grad():
        assert torch.allclose(deeper.model.eval()(x), base(x), atol=1e-6)
    deeper.fit()
    assert deeper.model.blocks[2].proj.weight.any()
    # the side signal as a new input plane: the trained tensors are kept, the side's encoder
    # columns start at zero, so the output is the trained model's until training moves them
    side = Trainer(config_from_dict(tiny_config(tmp_path, init_from=str(start), optim__steps=2, model={
        "architecture": "masknet", "config": {**TINY_MODEL, "samplerate": SR, "stereo_side": True}})), tmp_path / "side")
    planes = base.in_shift.shape[0]
    assert side.model.in_shift.shape[0] == planes + 1 and not side.model.encode.weight[:, base.encode.in_features:].any()
    assert torch.equal(side.model.encode.weight[:, :base.encode.in_features], base.encode.weight)
    with torch.no_grad():
        assert torch.allclose(side.model.eval()(x), base(x), atol=1e-6)
    side.fit()
    assert side.model.encode.weight[:, base.encode.in_features:].any()


def test_k_fold_split_and_extra_training_folders(tmp_path):
    extra = tmp_path / "extra"
    make_folder_tracks(extra, n_tracks=2, seconds=1.0, tonal=True)
    cfg = config_from_dict(tiny_config(tmp_path, data__folds=2, data__fold=1, data__extra_roots=[str(extra)]))
    trainer = Trainer(cfg, tmp_path / "run")
    train = [t.name for t in trainer.train_tracks]
    assert trainer.valid_names == ["Artist 1 - Song", "Artist 3 - Song"]
    assert train == ["Artist 0 - Song", "Artist 2 - Song", "Artist 0 - Song", "Artist 1 - Song"]
    assert [t.path.parent for t in trainer.train_tracks] == [tmp_path / "data"] * 2 + [extra] * 2
    with pytest.raises(ConfigError):
        config_from_dict(tiny_config(tmp_path, data__folds=3, data__fold=3))
    weighted = Trainer(config_from_dict(tiny_config(tmp_path, data__extra_roots=[str(extra)], data__extra_p=0.25)),
                       tmp_path / "run_p")
    assert (weighted.sampler.extra_p, weighted.sampler.extra_from) == (0.25, len(weighted.train_tracks) - 2)
    with pytest.raises(ConfigError, match="extra_roots"):
        config_from_dict(tiny_config(tmp_path, data__extra_p=0.25))
    kept_real = Trainer(config_from_dict(tiny_config(tmp_path, data__extra_roots=[str(extra)], data__extra_p=0.25,
                                                     data__extra_stems=["drums", "vocals"])), tmp_path / "run_s")
    assert kept_real.sampler.extra_stems == {0, 3}
    with pytest.raises(ConfigError, match="sources"):
        config_from_dict(tiny_config(tmp_path, data__extra_roots=[str(extra)], data__extra_stems=["piano"]))


def test_fold_from_the_command_line_fills_fold_fields(tmp_path):
    """--fold replaces data.fold and {fold} in out_dir / data.extra_roots stands for it, so one
    config serves every fold; a fold out of range, or a fold without k-fold, is a ConfigError."""
    import yaml
    from typer.testing import CliRunner

    from unbake.cli import app

    for f in (0, 1):
        make_folder_tracks(tmp_path / f"extra{f}", n_tracks=1, seconds=1.0, tonal=True)
    raw = tiny_config(tmp_path, optim__steps=1, data__folds=2, out_dir="runs/fold{fold}",
                      data__extra_roots=["extra{fold}"])
    raw["data"]["root"] = "data"
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    plain = load_config(cfg_path)
    assert (plain.data.fold, plain.out_dir, plain.data.extra_roots) == (0, str(tmp_path / "runs/fold0"),
                                                                        (str(tmp_path / "extra0"),))
    other = load_config(cfg_path, fold=1)
    assert (other.data.fold, other.out_dir, other.data.extra_roots) == (1, str(tmp_path / "runs/fold1"),
                                                                        (str(tmp_path / "extra1"),))
    assert other.to_dict() == config_from_dict({**raw, "out_dir": "runs/fold1", "data": {
        **raw["data"], "fold": 1, "extra_roots": ["extra1"]}}, base_dir=tmp_path).to_dict()
    with pytest.raises(ConfigError, match=r"data\.fold.*\[0, 2\)"):
        load_config(cfg_path, fold=2)
    with pytest.raises(ConfigError):
        load_config(cfg_path, fold=-1)
    single = {**raw, "data": {**raw["data"], "folds": 0, "extra_roots": []}}
    with pytest.raises(ConfigError, match=r"data\.folds: \{fold\} in out_dir"):
        config_from_dict(single, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"data\.folds: a fold needs"):
        config_from_dict({**single, "out_dir": "runs/x"}, base_dir=tmp_path, fold=0)

    runner = CliRunner()
    res = runner.invoke(app, ["train", str(cfg_path), "--fold", "2", "--quiet"])
    assert res.exit_code != 0 and "Traceback" not in res.output and "data.fold" in res.output
    assert not (tmp_path / "runs").exists()
    res = runner.invoke(app, ["train", str(cfg_path), "--fold", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "runs" / "fold1" / STATE_NAME).is_file() and not (tmp_path / "runs" / "fold0").exists()
    assert read_state(tmp_path / "runs" / "fold1" / STATE_NAME)["config"]["data"]["fold"] == 1


def test_the_cross_validation_configs_serve_every_fold():
    """configs/cv/fold0_*.yaml with --fold F: that fold's run folder and synthetic set, the rest equal."""
    for arm in ("real", "synth"):
        base = load_config(REPO / "configs" / "cv" / f"fold0_{arm}.yaml").to_dict()
        assert base["data"]["fold"] == 0 and base["out_dir"].endswith(f"fold0_{arm}")
        for f in range(1, 5):
            cfg = load_config(REPO / "configs" / "cv" / f"fold0_{arm}.yaml", fold=f).to_dict()
            assert cfg["out_dir"].endswith(f"fold{f}_{arm}")
            assert cfg["data"]["extra_roots"] == ([str(REPO / "configs/cv/../../runs/synth" / f"fold{f}_of5")]
                                                  if arm == "synth" else [])
            same = {**cfg, "out_dir": base["out_dir"], "data": {**cfg["data"], "fold": 0,
                                                                 "extra_roots": base["data"]["extra_roots"]}}
            assert same == base


def test_export_state_tool_writes_a_loadable_checkpoint(tmp_path):
    import unbake

    Trainer(config_from_dict(tiny_config(tmp_path, optim__steps=2)), tmp_path / "run").fit()
    dest = tmp_path / "shipped.pt"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "export_state.py"), str(tmp_path / "run" / STATE_NAME),
                           str(dest), "--selection", "last step", "--float32"], env=_cli_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    model = unbake.load_model(str(dest))
    state = read_state(tmp_path / "run" / STATE_NAME)
    assert_same_weights(weights(model), state["model"])
    from unbake.hub.checkpoint import read_blob

    assert read_blob(dest)["meta"]["selection"] == "last step" and read_blob(dest)["meta"]["step"] == 2

    # --average: the uniform mean of the weights of several states
    Trainer(config_from_dict(tiny_config(tmp_path, optim__steps=4, run__valid_every_steps=2,
                                         run__keep_validated=True)), tmp_path / "run4").fit()
    kept = sorted((tmp_path / "run4").glob("state_step*.pt"))
    assert len(kept) == 2
    mean = tmp_path / "mean.pt"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "export_state.py"), *map(str, kept), str(mean),
                           "--average", "--selection", "mean of the last two", "--float32"], env=_cli_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    first, second = (read_state(p)["model"] for p in kept)
    got = weights(unbake.load_model(str(mean)))
    key = next(k for k, v in first.items() if v.is_floating_point() and not torch.equal(v, second[k]))
    torch.testing.assert_close(got[key], (first[key] + second[key]) / 2)
    assert read_blob(mean)["meta"]["averaged_steps"] == [2, 4]
    # checkpoints of fine-tunes average the same way (a model soup), also a float16 with a float32 one
    from unbake.train.loop import export_weights

    ckpts = [export_weights(tmp_path / "run4" / "best_model.pt", tmp_path / "a.pt", half=True), dest]
    soup = tmp_path / "soup.pt"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "export_state.py"), *map(str, ckpts), str(soup),
                           "--average", "--selection", "soup", "--float32"], env=_cli_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    a, b = (weights(unbake.load_model(str(p))) for p in ckpts)
    got = weights(unbake.load_model(str(soup)))
    key = next(k for k, v in a.items() if v.is_floating_point() and not torch.equal(v.float(), b[k].float()))
    torch.testing.assert_close(got[key], (a[key].float() + b[key].float()) / 2)
    assert read_blob(soup)["meta"]["averaged_files"] == ["a.pt", "shipped.pt"]
    refused = subprocess.run([sys.executable, str(REPO / "tools" / "export_state.py"), *map(str, kept), str(mean),
                              "--selection", "x"], env=_cli_env(), capture_output=True, text=True)
    assert refused.returncode != 0 and "--average" in refused.stderr
    # --ensemble: masknets (and the members of ensembles) as one MaskNetEnsemble, members in order
    from unbake.models.masknet import MaskNetEnsemble

    pair, trio = tmp_path / "pair.pt", tmp_path / "trio.pt"
    for inputs, out in (([ckpts[0], dest], pair), ([pair, mean], trio)):
        proc = subprocess.run([sys.executable, str(REPO / "tools" / "export_state.py"), *map(str, inputs), str(out),
                               "--ensemble", "--selection", "members", "--float32"], env=_cli_env(),
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    ens = unbake.load_model(str(trio))
    assert isinstance(ens, MaskNetEnsemble) and len(ens.members) == 3
    for member, single in zip(ens.members, [*ckpts, mean]):
        assert_same_weights(weights(member), {k: v.float() for k, v in weights(unbake.load_model(str(single))).items()})
    assert read_blob(trio)["meta"]["member_files"] == ["pair.pt", "mean.pt"]
    # --input-rms sets the level in every member and nothing else
    levelled = tmp_path / "levelled.pt"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "export_state.py"), str(trio), str(levelled),
                           "--input-rms", "0.1", "--selection", "levelled", "--float32"], env=_cli_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    again = unbake.load_model(str(levelled))
    assert [m.config.input_rms for m in again.members] == [0.1] * 3 and read_blob(levelled)["meta"]["input_rms"] == 0.1
    assert_same_weights(weights(again), weights(ens))
    # --passes/--peel: the same weights separating in passes, the metadata kept; "" is one pass again
    passed, back = tmp_path / "passed.pt", tmp_path / "back.pt"
    for args in ((str(levelled), str(passed), "--passes", "0,2/1", "--peel", "vocals"), (str(passed), str(back), "--passes", "")):
        proc = subprocess.run([sys.executable, str(REPO / "tools" / "export_state.py"), *args, "--selection", "p",
                               "--float32"], env=_cli_env(), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    two = unbake.load_model(str(passed))
    assert two.config.passes == ((0, 2), (1,)) and two.config.peel == ("vocals",)
    assert read_blob(passed)["meta"]["input_rms"] == 0.1 and "passes" not in read_blob(back)["config"]
    assert_same_weights(weights(two), weights(again))
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "export_state.py"), str(levelled), str(tmp_path / "x.pt"),
                           "--passes", "0/1", "--peel", "vocals", "--selection", "p"], env=_cli_env(),
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "members [2] are in no pass" in proc.stderr and not (tmp_path / "x.pt").exists()


def test_training_level_tool_reports_the_samplers_level(tmp_path):
    """The level a recipe trains at: quieter stems (the config's gains) give quieter mixtures."""
    import yaml

    figures = {}
    for name, gains in (("quiet", [-12, -12]), ("loud", [0, 0])):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(tiny_config(tmp_path, augment__gain_db=gains, augment__remix_p=0.0,
                                                  out_dir=str(tmp_path / name))))
        proc = subprocess.run([sys.executable, str(REPO / "tools" / "training_level.py"), str(cfg), "--batches", "20"],
                              env=_cli_env(), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        line = next(x for x in proc.stdout.splitlines() if x.startswith("sampler mixtures"))
        figures[name] = float(line.split("median ")[1].split()[0])
        tracks = next(x for x in proc.stdout.splitlines() if x.startswith("training tracks"))
        assert "n=3" in tracks
    assert abs(20 * math.log10(figures["loud"] / figures["quiet"]) - 12) < 0.5


def test_a_killed_runs_half_written_files_are_swept(tmp_path):
    """`.part` files of a process that no longer exists (a kill mid-save) are removed when the
    next training starts; those of a live process are kept."""
    from unbake.train.loop import run_training

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(child.stdout)
    cfg = config_from_dict(tiny_config(tmp_path, optim__steps=2))
    out = tmp_path / "run"
    out.mkdir()
    stale = out / f".{STATE_NAME}.{dead}.abcd1234.part"
    live = out / f".curves.png.{os.getpid()}.abcd1234.part"
    stale.write_bytes(b"half a state")
    live.write_bytes(b"being written")
    run_training(cfg, out)
    assert not stale.exists() and live.exists()


def _without_pyav(tmp_path: Path) -> dict:
    """The CLI environment of a machine without PyAV (a bare GPU image)."""
    block = tmp_path / "no_av"
    block.mkdir(exist_ok=True)
    (block / "sitecustomize.py").write_text("import sys\nsys.modules['av'] = None\n")
    env = _cli_env()
    env["PYTHONPATH"] = os.pathsep.join([str(block), env["PYTHONPATH"]])
    return env


@pytest.mark.slow
def test_pack_then_train_within_a_time_budget_without_pyav(tmp_path):
    import numpy as np
    import yaml
    from pedalboard.io import AudioFile

    import unbake
    from unbake.audio import read_audio
    from unbake.hub.checkpoint import read_blob

    raw = tiny_config(tmp_path)  # 4 tracks, 1 held out
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw))
    packed = tmp_path / "packed"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "pack_training_set.py"), str(tmp_path / "cfg.yaml"),
                           str(packed), "--kbps", "128"], env=_cli_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    tracks = sorted(p.name for p in packed.iterdir())
    assert tracks == [f"Artist {k} - Song" for k in (1, 2, 3)]  # the held-out track 0 stays out
    for stem in ("drums", "bass", "other", "vocals"):
        with AudioFile(str(packed / tracks[0] / f"{stem}.ogg")) as fh:
            got = fh.read(fh.frames)
        ref, _ = read_audio(tmp_path / "data" / tracks[0] / f"{stem}.wav")
        n = min(got.shape[1], ref.shape[1])
        assert n >= ref.shape[1] - 1 and np.corrcoef(got[:, :n].ravel(), ref[:, :n].ravel())[0, 1] > 0.9

    train = tiny_config(tmp_path, run__data_workers=1, run__valid_every_steps=0, run__checkpoint_every_steps=0,
                        run__log_every=10)
    train["data"] = {**train["data"], "root": str(packed), "cache_dir": str(tmp_path / "cache2"), "valid_count": 0}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    export = tmp_path / "out" / "model.pt"
    cmd = [sys.executable, str(REPO / "tools" / "gpu_train.py"), str(tmp_path / "train.yaml"),
           "--out", str(tmp_path / "run"), "--export", str(export)]
    proc = subprocess.run(cmd + ["--budget-s", "15", "--calibrate-steps", "40"], env=_without_pyav(tmp_path),
                          capture_output=True, text=True)
    assert "read with pedalboard" in proc.stderr
    import json

    record = json.loads(export.with_suffix(".json").read_text())
    if proc.returncode == 0:
        assert record["complete"] and record["steps_done"] == record["steps"] >= 10
    else:  # a loaded machine ran slower than calibrated: the deadline stopped it, and it says so
        assert "(deadline)" in proc.stderr, proc.stderr
        assert not record["complete"] and 0 < record["steps_done"] < record["steps"]
    # the schedule is the calibrated one either way; the checkpoint is the last step done
    assert record["calibration_steps"] == 40 and record["config"]["optim"]["steps"] == record["steps"]
    assert read_blob(export)["meta"]["step"] == record["steps_done"]
    assert unbake.load_model(str(export)).sources == ("drums", "bass", "other", "vocals")
    lines = (tmp_path / "out" / "model_train_log.csv").read_text().splitlines()
    assert lines[-1].split(",")[0] == str(record["steps"])
    # a budget already spent is refused before anything is trained
    proc = subprocess.run(cmd + ["--budget-s", "0.5"], env=_without_pyav(tmp_path), capture_output=True, text=True)
    assert proc.returncode != 0 and "budget too small" in proc.stderr
