"""The uSDR training loss: it is the metric's uSDR negated, weighted and logged like the other terms."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from unbake.errors import ConfigError
from unbake.metrics import usdr
from unbake.train.config import config_from_dict
from unbake.train.losses import LossConfig, sdr, separation_loss
from unbake.train.loop import Trainer

from test_train import tiny_config


def test_sdr_loss_is_the_metrics_usdr_negated():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((3, 4, 2, 2000))
    # each (excerpt, stem) pair at its own error level, so a mean over the wrong axes would differ
    noise_gain = rng.uniform(0.05, 2.0, size=(3, 4, 1, 1))
    est = ref + noise_gain * rng.standard_normal(ref.shape)
    expected = -np.mean([usdr(ref[b, s], est[b, s]) for b in range(3) for s in range(4)])
    got = float(sdr(torch.from_numpy(est), torch.from_numpy(ref)))
    assert got == pytest.approx(expected, rel=1e-9)
    assert float(sdr(torch.from_numpy(ref * 0.9), torch.from_numpy(ref))) < float(
        sdr(torch.from_numpy(ref * 0.5), torch.from_numpy(ref)))


def test_sdr_loss_gradient_is_finite_on_silent_references():
    torch.manual_seed(0)
    ref = torch.randn(2, 4, 2, 1000)
    ref[0, 1] = 0.0  # one silent stem with a non-silent estimate
    ref[1] = 0.0     # a wholly silent excerpt
    est = (ref + 0.1 * torch.randn_like(ref))
    est[1, 2] = 0.0  # silent reference, silent estimate
    est.requires_grad_(True)
    loss = sdr(est, ref)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(est.grad).all()
    assert est.grad[0, 1].abs().sum() > 0  # the bleed into the silent stem is pushed down


def test_sdr_weight_in_the_config_and_the_sum():
    assert LossConfig().sdr == 0.0  # old configs train as before
    cfg = LossConfig.from_dict({"l1_wave": 0.0, "sdr": 1.0})
    with pytest.raises(ConfigError):
        LossConfig.from_dict({"sdr": -1.0})
    torch.manual_seed(1)
    ref = torch.randn(2, 4, 2, 512)
    est = 0.7 * ref
    total, parts = separation_loss(est, ref, LossConfig(l1_wave=0.5, sdr=2.0))
    assert float(total) == pytest.approx(0.5 * parts["l1_wave"] + 2.0 * parts["sdr"], rel=1e-5)
    total, parts = separation_loss(est, ref, cfg)
    assert set(parts) == {"sdr"} and float(total) == pytest.approx(parts["sdr"])


def test_negative_sdr_weight_in_a_training_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="loss"):
        config_from_dict(tiny_config(tmp_path, loss={"l1_wave": 1.0, "sdr": -0.5}))


def test_a_run_with_the_sdr_loss_logs_it(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path, loss={"l1_wave": 0.0, "sdr": 1.0}))
    Trainer(cfg).fit()
    with (tmp_path / "run" / "train_log.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(np.isfinite(float(r["sdr"])) for r in rows)
    assert all(float(r["loss"]) == pytest.approx(float(r["sdr"])) for r in rows)
