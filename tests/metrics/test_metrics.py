"""Tests for unbake.metrics: SDR family, BSSEval v4 parity with museval, consistency, triviality."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from unbake.errors import AudioError, ChannelLayoutError, ConfigError, InvalidAudioError
from unbake.metrics import (
    DB_LIMIT,
    USDR_EPS,
    bss_eval,
    csdr,
    enforce_consistency,
    evaluate_stems,
    mixture_consistency,
    si_sdr,
    triviality_report,
    usdr,
    usdr_stems,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _load_fixture_tools():
    spec = importlib.util.spec_from_file_location("make_museval_fixture", FIXTURES / "make_museval_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fixture_tools = _load_fixture_tools()


def _noise(seed: int, shape: tuple[int, ...], pole: float = 0.0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape)
    if pole:
        x = scipy.signal.lfilter([1.0], [1.0, -pole], x, axis=-1)
    return x


def _scaled_to_snr(reference: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Noise scaled so that sum(ref^2) / sum(noise^2) is exactly snr_db."""
    gain = math.sqrt(np.sum(reference**2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return noise * gain


def _dumps(obj) -> str:
    return json.dumps(obj, allow_nan=False)


# --- uSDR / SI-SDR ----------------------------------------------------------------------------


def test_usdr_exact_estimate_is_eps_limited():
    ref = _noise(0, (2, 20000))
    value = usdr(ref, ref.copy())
    assert value >= 60.0
    assert value == pytest.approx(10 * math.log10((np.sum(ref**2) + USDR_EPS) / USDR_EPS), abs=1e-9)


@pytest.mark.parametrize("snr_db", [-3.0, 0.0, 12.5, 30.0])
def test_usdr_matches_analytic_snr(snr_db):
    ref = _noise(1, (2, 30000), pole=0.5)
    est = ref + _scaled_to_snr(ref, _noise(2, ref.shape), snr_db)
    assert usdr(ref, est) == pytest.approx(snr_db, abs=0.1)
    # eps only matters for near-silent signals.
    assert abs(usdr(ref, est) - snr_db) < 1e-6


def test_usdr_stems_dict_and_array():
    refs = {"a": _noise(3, (2, 5000)), "b": _noise(4, (2, 5000))}
    ests = {"b": refs["b"] + _scaled_to_snr(refs["b"], _noise(5, (2, 5000)), 20.0), "a": refs["a"] * 0.5}
    out = usdr_stems(refs, ests)
    assert list(out["stems"]) == ["a", "b"]
    assert out["stems"]["a"] == pytest.approx(10 * math.log10(4.0), abs=1e-6)  # error is half the reference
    assert out["stems"]["b"] == pytest.approx(20.0, abs=1e-6)
    assert out["mean"] == pytest.approx((out["stems"]["a"] + out["stems"]["b"]) / 2)
    as_array = usdr_stems(np.stack([refs["a"], refs["b"]]), np.stack([ests["a"], ests["b"]]))
    assert as_array["stems"] == {"0": out["stems"]["a"], "1": out["stems"]["b"]}
    _dumps(out)
    with pytest.raises(InvalidAudioError):
        usdr_stems(refs, {"a": ests["a"], "c": ests["b"]})


def test_si_sdr_is_scale_invariant_and_exact_for_orthogonal_noise():
    ref = _noise(6, (2, 16000), pole=0.3)
    ref -= ref.mean(axis=-1, keepdims=True)
    noise = _noise(7, ref.shape)
    noise -= noise.mean(axis=-1, keepdims=True)
    # Orthogonalise per channel so the projection recovers the reference exactly.
    noise -= np.sum(noise * ref, axis=-1, keepdims=True) / np.sum(ref**2, axis=-1, keepdims=True) * ref
    noise *= np.sqrt(np.sum(ref**2, axis=-1, keepdims=True) / np.sum(noise**2, axis=-1, keepdims=True) / 10)
    est = ref + noise  # 10 dB in every channel
    assert si_sdr(ref, est) == pytest.approx(10.0, abs=1e-6)
    assert si_sdr(ref, 0.25 * est) == pytest.approx(si_sdr(ref, est), abs=1e-6)
    assert si_sdr(ref, -3.0 * est) == pytest.approx(si_sdr(ref, est), abs=1e-6)
    assert si_sdr(ref, 2.0 * ref) > 60.0
    # uSDR, unlike SI-SDR, punishes the gain error.
    assert usdr(ref, 0.25 * est) < 3.0
    # A DC offset is ignored with zero_mean=True only.
    assert si_sdr(ref, est + 1.0) == pytest.approx(10.0, abs=1e-6)
    assert si_sdr(ref, est + 1.0, zero_mean=False) < 0.0


@pytest.mark.parametrize(
    ("reference", "estimate", "error"),
    [
        (np.zeros(100), np.zeros(100), ChannelLayoutError),  # mono without channel axis
        (np.ones((100, 2)), np.ones((100, 2)), ChannelLayoutError),  # time-first
        (np.ones((1, 2, 100)), np.ones((1, 2, 100)), ChannelLayoutError),
        (np.ones((2, 100)), np.ones((2, 99)), InvalidAudioError),
        (np.ones((2, 0)), np.ones((2, 0)), InvalidAudioError),
        (np.full((2, 100), np.nan), np.ones((2, 100)), InvalidAudioError),
        (np.ones((2, 100), dtype=complex), np.ones((2, 100), dtype=complex), InvalidAudioError),
    ],
)
def test_bad_shapes_raise_typed_errors(reference, estimate, error):
    for fn in (usdr, si_sdr, lambda r, e: csdr(r, e, 100)):
        with pytest.raises(error):
            fn(reference, estimate)
    assert issubclass(error, AudioError)


def test_stem_sets_must_be_three_dimensional():
    with pytest.raises(ChannelLayoutError):
        usdr_stems(np.ones((2, 100)), np.ones((2, 100)))
    with pytest.raises(ChannelLayoutError):
        mixture_consistency(np.ones((2, 100)), np.ones((2, 100)), 100)
    with pytest.raises(InvalidAudioError):
        triviality_report(np.ones((2, 100)), np.ones((3, 1, 100)), 100)


# --- cSDR / BSSEval ---------------------------------------------------------------------------


def test_csdr_is_median_of_window_snrs_and_skips_silent_windows():
    rate = 1000
    snrs = [5.0, 25.0, 10.0, 20.0, 15.0]
    ref = _noise(8, (2, rate * (len(snrs) + 1)))
    est = ref.copy()
    for k, snr in enumerate(snrs):
        window = slice(k * rate, (k + 1) * rate)
        est[:, window] += _scaled_to_snr(ref[:, window], _noise(100 + k, (2, rate)), snr)
    ref[:, -rate:] = 0.0  # a silent reference window is skipped
    est[:, -rate:] = _noise(9, (2, rate))
    assert csdr(ref, est, rate) == pytest.approx(15.0, abs=1e-9)
    # The leftover samples past the last full window are ignored, like museval.
    assert csdr(ref[:, : rate * 5 + 10], est[:, : rate * 5 + 10], rate) == pytest.approx(15.0, abs=1e-9)
    # An exact estimate has infinite SDR everywhere: no usable window.
    assert csdr(ref, ref, rate) is None


def _synthetic_stems(rate: int, seconds: float, seed: int = 10):
    """Two stereo references with different spectra and imperfect estimates."""
    n = int(rate * seconds)
    refs = np.stack([_noise(seed, (2, n), pole=0.9), _noise(seed + 1, (2, n), pole=-0.5)])
    refs[1, 1] = 0.6 * refs[1, 1] + 0.4 * refs[1, 0]
    ests = np.empty_like(refs)
    for i in range(2):
        filtered = scipy.signal.lfilter([0.8, 0.3, -0.1], [1.0], refs[i], axis=-1)
        ests[i] = filtered + 0.2 * refs[1 - i] + 0.05 * _noise(seed + 10 + i, (2, n))
    return refs, ests


def test_bss_eval_matches_museval_on_synthetic_signals():
    try:
        museval_metrics = fixture_tools.load_museval_metrics()
    except ImportError:
        pytest.skip("museval is not installed")
    rate = 2000
    refs, ests = _synthetic_stems(rate, 4.3)
    refs[0, :, rate : 2 * rate] = 0.0  # silent reference window: NaN for every stem
    # Short filters keep the test fast; the code path is the same as with 512 taps.
    ours = bss_eval(refs, ests, rate, window_s=1.0, hop_s=0.5, filter_taps=64)
    sdr, isr, sir, sar, _ = museval_metrics.bss_eval(
        np.moveaxis(refs, 1, 2),
        np.moveaxis(ests, 1, 2),
        window=rate,
        hop=rate // 2,
        filters_len=64,
        compute_permutation=False,
        framewise_filters=False,
        bsseval_sources_version=False,
    )
    assert ours["n_windows"] == sdr.shape[1] == 7
    for key, theirs in (("SDR", sdr), ("ISR", isr), ("SIR", sir), ("SAR", sar)):
        for i, name in enumerate(("0", "1")):
            frames = np.array([np.nan if v is None else v for v in ours["stems"][name]["frames"][key]])
            np.testing.assert_array_equal(np.isnan(frames), np.isnan(theirs[i]))
            np.testing.assert_allclose(frames, theirs[i], atol=1e-6, equal_nan=True)
            assert ours["stems"][name][key] == pytest.approx(np.nanmedian(theirs[i]), abs=1e-6)


def test_bss_eval_is_consistent_with_csdr_and_stem_order():
    rate = 2000
    refs, ests = _synthetic_stems(rate, 3.0, seed=20)
    joint = bss_eval({"x": refs[0], "y": refs[1]}, {"y": ests[1], "x": ests[0]}, rate, filter_taps=64)
    assert joint["window_samples"] == joint["hop_samples"] == rate
    assert joint["stems"]["x"]["SDR"] == pytest.approx(csdr(refs[0], ests[0], rate), abs=1e-9)
    swapped = bss_eval(refs[::-1], ests[::-1], rate, filter_taps=64)
    for key in ("SDR", "ISR", "SIR", "SAR"):
        assert swapped["stems"]["1"][key] == pytest.approx(joint["stems"]["x"][key], abs=1e-6)
    # More interference in y's estimate lowers its SIR and leaves x untouched.
    worse = ests.copy()
    worse[1] += 0.5 * refs[0]
    degraded = bss_eval(refs, worse, rate, filter_taps=64)
    assert degraded["stems"]["1"]["SIR"] < joint["stems"]["y"]["SIR"] - 3.0
    assert degraded["stems"]["0"]["SIR"] == pytest.approx(joint["stems"]["x"]["SIR"], abs=1e-6)
    _dumps(joint)


def test_bss_eval_handles_mono_stems_stored_as_stereo(caplog):
    # Identical channels make the normal equations singular; the fit must still
    # be deterministic (independent of stem order) and warning-free.
    rate = 2000
    refs, ests = _synthetic_stems(rate, 3.0, seed=25)
    refs[0, 1] = refs[0, 0]
    refs[1, 1] = 0.5 * refs[1, 0]
    with caplog.at_level(logging.WARNING, logger="unbake.metrics.bsseval"):
        forward = bss_eval(refs, ests, rate, filter_taps=64)
        backward = bss_eval(refs[::-1], ests[::-1], rate, filter_taps=64)
    assert caplog.text == ""
    for key in ("SDR", "ISR", "SIR", "SAR"):
        for i in range(2):
            value = forward["stems"][str(i)][key]
            assert value is not None and math.isfinite(value)
            assert backward["stems"][str(1 - i)][key] == pytest.approx(value, abs=1e-6)


def test_bss_eval_silent_stem_gives_none_not_an_error(caplog):
    rate = 1000
    refs, ests = _synthetic_stems(rate, 2.0, seed=30)
    refs[1] = 0.0
    with caplog.at_level(logging.WARNING, logger="unbake.metrics.bsseval"):
        out = bss_eval(refs, ests, rate, filter_taps=64)
    assert "silent" in caplog.text
    assert all(out["stems"][name][key] is None for name in ("0", "1") for key in ("SDR", "SIR"))
    _dumps(out)


def test_evaluate_stems_oracle_and_degraded():
    rate = 2000
    refs, ests = _synthetic_stems(rate, 3.0, seed=40)
    refs, ests = refs[:, :1], ests[:, :1]  # mono keeps the 512-tap solve small
    names = ("drums", "bass")
    oracle = evaluate_stems(dict(zip(names, refs, strict=True)), dict(zip(names, refs, strict=True)), rate)
    assert set(oracle) == set(names)
    for scores in oracle.values():
        assert set(scores) == {"SDR", "ISR", "SIR", "SAR", "uSDR", "SI-SDR"}
        assert scores["SDR"] is None  # every frame is infinite; museval stores those as NaN
        assert scores["uSDR"] > 60.0 and scores["SI-SDR"] > 60.0
    degraded = evaluate_stems(dict(zip(names, refs, strict=True)), dict(zip(names, ests, strict=True)), rate)
    for name in names:
        assert degraded[name]["SDR"] < 30.0
        assert degraded[name]["SIR"] > 0.0
    _dumps(oracle)
    _dumps(degraded)
    # A silent estimate is scored by uSDR alone and leaves the other stem's BSSEval intact.
    silent_bass = dict(zip(names, ests, strict=True), bass=np.zeros_like(ests[1]))
    partial = evaluate_stems(dict(zip(names, refs, strict=True)), silent_bass, rate)
    assert partial["bass"]["SDR"] is None and partial["bass"]["SIR"] is None
    assert partial["bass"]["uSDR"] == pytest.approx(0.0, abs=1e-6)
    assert partial["drums"]["SDR"] == pytest.approx(degraded["drums"]["SDR"], abs=1e-9)
    _dumps(partial)


def _fixture_tracks():
    data = json.loads((FIXTURES / "museval_reference.json").read_text())
    return [pytest.param(track, id=Path(track["track"]).name.split(".")[0]) for track in data["tracks"]]


@pytest.mark.needs_shared
@pytest.mark.parametrize("track", _fixture_tracks())
def test_bss_eval_matches_museval_fixture_on_real_music(track):
    pytest.importorskip("av")
    path = fixture_tools.data_dir() / track["track"]
    if not path.is_file():
        pytest.skip(f"MUSDB18 excerpt not found: {path}")
    references = fixture_tools.decode_stems(path)
    estimates = fixture_tools.degrade(references)
    assert references["drums"].shape[1] == track["samples"]
    # Stems stored as two identical channels make museval's own solve singular: its
    # SIR/SAR then move by museval_order_spread_db when only the stem order changes.
    tolerance = 0.01 if not track["mono_stems"] else max(0.01, 3 * track["museval_order_spread_db"])
    ours = bss_eval(references, estimates, fixture_tools.SAMPLE_RATE)
    for name, expected in track["stems"].items():
        for key in ("SDR", "ISR", "SIR", "SAR"):
            assert ours["stems"][name][key] == pytest.approx(expected[key]["median"], abs=tolerance), (name, key)
        # SDR has no filters: it must match museval exactly on every frame.
        np.testing.assert_allclose(ours["stems"][name]["frames"]["SDR"], expected["SDR"]["frames"], atol=1e-6)
        assert csdr(references[name], estimates[name], fixture_tools.SAMPLE_RATE) == pytest.approx(
            expected["SDR"]["median"], abs=1e-6
        )


# --- mixture consistency ------------------------------------------------------------------------


def _oracle_set(rate: int = 8000, seconds: float = 2.0):
    n = int(rate * seconds)
    t = np.arange(n) / rate
    band_pass = scipy.signal.butter(4, [500, 2000], "bandpass", fs=rate, output="sos")
    stems = {
        "low": np.stack([np.sin(2 * np.pi * 100 * t), 0.8 * np.sin(2 * np.pi * 100 * t + 0.3)]),
        "noise": 0.3 * _noise(50, (2, n), pole=-0.3),
        "mid": scipy.signal.sosfilt(band_pass, _noise(51, (2, n))),
    }
    mixture = sum(stems.values())
    return mixture, stems


def test_consistency_of_oracle_and_dropped_stem():
    mixture, stems = _oracle_set()
    oracle = mixture_consistency(mixture, stems, 8000)
    assert oracle["snr_db"] >= 250.0
    assert oracle["snr_db"] <= DB_LIMIT
    exact = mixture_consistency(mixture, {"all": mixture}, 8000)
    assert exact["exact"] and exact["snr_db"] == DB_LIMIT
    assert all(band["residual_db"] == -DB_LIMIT for band in exact["bands"])

    dropped = {k: v for k, v in stems.items() if k != "low"}
    report = mixture_consistency(mixture, dropped, 8000)
    expected = 10 * math.log10(np.sum(mixture**2) / np.sum(stems["low"] ** 2))
    assert report["snr_db"] == pytest.approx(expected, abs=1e-9)
    assert not report["exact"]
    # The missing 100 Hz tone shows up in the 80-160 Hz band and nowhere near as much elsewhere.
    bands = report["bands"]
    assert [b["low_hz"] for b in bands] == [20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0, 2560.0]
    assert bands[-1]["high_hz"] == 4000.0
    worst = max(bands, key=lambda b: b["residual_db"])
    assert worst["low_hz"] == 80.0 and worst["residual_db"] > -1.0
    assert all(b["residual_db"] < -20.0 for b in bands if b["low_hz"] >= 320.0)
    _dumps(report)
    _dumps(oracle)


@pytest.mark.parametrize("method", ["energy", "equal"])
def test_enforce_consistency_makes_the_sum_exact(method):
    mixture, stems = _oracle_set()
    estimates = {k: 0.9 * v + 0.01 * _noise(60 + i, v.shape) for i, (k, v) in enumerate(stems.items())}
    before = {k: v.copy() for k, v in estimates.items()}
    fixed = enforce_consistency(mixture, estimates, method=method)
    assert list(fixed) == list(estimates)
    np.testing.assert_allclose(sum(fixed.values()), mixture, rtol=0, atol=1e-12)
    assert mixture_consistency(mixture, fixed, 8000)["snr_db"] > 250.0
    for k in estimates:  # inputs untouched
        np.testing.assert_array_equal(estimates[k], before[k])
    # Already consistent stems come back unchanged.
    same = enforce_consistency(mixture, np.stack(list(stems.values())), method=method)
    np.testing.assert_array_equal(same, np.stack(list(stems.values())))


def test_enforce_consistency_energy_follows_the_active_stem():
    n = 8000
    a = _noise(70, (1, n))
    b = _noise(71, (1, n))
    a[:, n // 2 :] = 0.0
    b[:, : n // 2] = 0.0
    residual = 0.1 * _noise(72, (1, n))
    mixture = a + b + residual
    fixed = enforce_consistency(mixture, {"a": a, "b": b}, method="energy", smoothing_samples=256)
    margin = 256
    # Where only a plays, b receives none of the residual, and vice versa.
    np.testing.assert_array_equal(fixed["b"][:, : n // 2 - margin], 0.0)
    np.testing.assert_array_equal(fixed["a"][:, n // 2 + margin :], 0.0)
    np.testing.assert_allclose(fixed["a"][:, : n // 2 - margin], (a + residual)[:, : n // 2 - margin], atol=1e-12)
    equal = enforce_consistency(mixture, {"a": a, "b": b}, method="equal")
    np.testing.assert_allclose(equal["b"], b + residual / 2, atol=1e-12)
    with pytest.raises(ConfigError):
        enforce_consistency(mixture, {"a": a, "b": b}, method="wiener")


# --- triviality -------------------------------------------------------------------------------


def test_oracle_stems_are_not_trivial():
    mixture, stems = _oracle_set()
    report = triviality_report(mixture, stems, 8000)
    assert report["trivial"] is False and report["reasons"] == []
    shares = [s["energy_share"] for s in report["stems"].values()]
    assert sum(shares) == pytest.approx(1.0)
    assert all(abs(r) < 0.2 for row in report["correlations"].values() for r in row.values())
    assert all(s["leakage"] < 0.05 for s in report["stems"].values())
    assert report["duration_s"] == pytest.approx(2.0)
    _dumps(report)


def test_mixture_in_one_stem_is_trivial():
    mixture, stems = _oracle_set()
    copied = {name: np.zeros_like(mixture) for name in stems}
    copied["mid"] = mixture.copy()
    report = triviality_report(mixture, copied, 8000)
    assert report["trivial"] is True
    assert "dominant_stem:mid" in report["reasons"]
    assert report["stems"]["mid"]["energy_share"] == 1.0
    assert report["stems"]["low"]["level_db"] == -DB_LIMIT
    assert report["correlations"]["low"]["mid"] is None
    _dumps(report)
    # Faint leftovers in the other stems (below -30 dB) do not hide it.
    copied["low"] = 1e-3 * _noise(80, mixture.shape)
    assert "dominant_stem:mid" in triviality_report(mixture, copied, 8000)["reasons"]


def test_mixture_in_every_stem_is_trivial():
    mixture, stems = _oracle_set()
    every = np.stack([mixture / len(stems)] * len(stems))
    report = triviality_report(mixture, every, 8000)
    assert report["trivial"] is True
    assert "identical_stems:0,1" in report["reasons"]
    assert not any(r.startswith("dominant_stem") for r in report["reasons"])
    assert all(s["leakage"] == pytest.approx(1.0) for s in report["stems"].values())
    _dumps(report)


def test_silent_stems_are_trivial():
    mixture, _ = _oracle_set()
    report = triviality_report(mixture, np.zeros((2,) + mixture.shape), 8000)
    assert report["trivial"] and report["reasons"] == ["silent_stems"]
    _dumps(report)
