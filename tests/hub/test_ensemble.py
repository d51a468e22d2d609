"""Ensembles: members at their own rate and segment, per-stem weights, average and median."""

import numpy as np
import pytest

import unbake
from unbake.errors import ModelError
from unbake.hub.ensemble import Ensemble

from conftest import FakeModel


def Scaled(sources, gains, samplerate=44100, segment=8000):
    """Stem k = gain[k] * mix: exact, checkable outputs at any sample rate."""
    return FakeModel(sources, gains, samplerate=samplerate, segment=segment)


def _mix(seconds=1.0, sr=44100):
    t = np.arange(int(seconds * sr)) / sr
    # band-limited content survives the 44.1k -> 22.05k -> 44.1k round trip
    return np.stack([np.sin(2 * np.pi * 220 * t), 0.5 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)


def test_weighted_average_across_rates():
    a = Scaled(["vocals", "drums"], [0.6, 0.4])
    b = Scaled(["vocals", "bass"], [0.2, 0.8], samplerate=22050, segment=3000)
    ens = Ensemble([a, b], ("vocals", "drums", "bass"), [[3.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    mix = _mix()
    stems = unbake.separate(mix, sample_rate=44100, model=ens)
    assert stems.names == ["vocals", "drums", "bass"]
    inner = slice(2000, -2000)  # away from the resampler's edges
    assert np.allclose(stems["vocals"][:, inner], (3 * 0.6 + 1 * 0.2) / 4 * mix[:, inner], atol=2e-3)
    assert np.allclose(stems["drums"], 0.4 * mix, atol=1e-6)
    assert np.allclose(stems["bass"][:, inner], 0.8 * mix[:, inner], atol=2e-3)


def test_median_and_uniform():
    members = [Scaled(["vocals"], [g]) for g in (0.1, 0.5, 0.9)]
    ens = Ensemble.uniform(members, method="median")
    mix = _mix(0.5)
    stems = unbake.separate(mix, sample_rate=44100, model=ens)
    assert np.allclose(stems["vocals"], 0.5 * mix, atol=1e-6)
    # a single-target ensemble derives the instrumental like a single-target model
    assert np.allclose(stems["instrumental"], 0.5 * mix, atol=1e-6)


def test_model_list_and_weights_through_separate(mix):
    a = Scaled(["vocals", "accompaniment"], [1.0, 0.0])
    stems = unbake.separate(mix, sample_rate=44100, model=[a, "center"], weights=[1, 3])
    ref = unbake.separate(mix, sample_rate=44100, model="center")
    assert np.allclose(stems["vocals"], (mix + 3 * ref["vocals"]) / 4, atol=1e-5)


def test_bad_ensembles():
    a = Scaled(["vocals"], [1.0])
    with pytest.raises(ModelError):
        Ensemble([a], ("vocals",), [[1.0, 2.0]])
    with pytest.raises(ModelError, match="drums"):
        Ensemble([a], ("drums",), [[1.0]])
    with pytest.raises(ModelError):
        Ensemble.uniform([a, a], member_weights=[1.0])
    with pytest.raises(ModelError, match="weights"):
        unbake.separate(_mix(0.2), sample_rate=44100, model="center", weights=[1.0])


def test_catalogue_ensemble_builds_without_download():
    ens = unbake.load_model("htdemucs_ft", pretrained=False)
    assert isinstance(ens, Ensemble) and len(ens.members) == 4
    assert ens.sources == ("drums", "bass", "other", "vocals")
