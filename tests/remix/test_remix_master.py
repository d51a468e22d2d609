"""Meters, the true-peak limiter and mastering to a loudness target, on synthetic and real music."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unbake import StemSet
from unbake.errors import AudioError
from unbake.remix import MasterSettings, Remix, integrated_lufs, limit_true_peak, true_peak_db
from unbake.remix.master import master, sample_true_peaks

SR = 44100
MUSDB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "musdb18-7s" / "train"


def test_integrated_loudness_of_a_reference_sine():
    # BS.1770: a 997 Hz sine at -20 dBFS in both channels of a stereo pair reads -20 LUFS (+-0.1)
    t = np.arange(5 * SR) / SR
    sine = np.repeat((0.1 * np.sin(2 * np.pi * 997 * t))[None], 2, axis=0)
    assert integrated_lufs(sine, SR) == pytest.approx(-20.0, abs=0.1)
    assert integrated_lufs(np.zeros((2, SR)), SR) == -np.inf
    with pytest.raises(AudioError, match="0.4 s"):
        integrated_lufs(sine[:, :1000], SR)


def test_true_peak_sees_intersample_peaks():
    n = np.arange(2 * SR)
    # fs/4 at 45 degrees: every sample sits at 0.707 of the waveform's real peak (-3 dB)
    x = (0.5 * np.sin(np.pi / 2 * n + np.pi / 4))[None].astype(np.float32)
    sample_peak = 20 * np.log10(np.abs(x).max())
    # away from the abrupt start and end (which really do overshoot)
    inner = 20 * np.log10(sample_true_peaks(x)[200:-200].max())
    assert inner == pytest.approx(20 * np.log10(0.5), abs=0.05)
    assert inner - sample_peak == pytest.approx(3.01, abs=0.05)
    assert true_peak_db(x) >= inner


def _programme(seconds=6.0, seed=0):
    """Dynamic synthetic material: drum-like bursts, a tone, noise, with loud and quiet parts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    kick = np.sin(2 * np.pi * 60 * t) * np.exp(-((t % 0.5) * 20))
    snare = rng.standard_normal(t.size) * np.exp(-(((t + 0.25) % 0.5) * 30)) * 0.5
    tone = 0.2 * np.sin(2 * np.pi * 330 * t) * (1 + 0.8 * np.sin(2 * np.pi * 0.3 * t))
    x = kick + snare + tone
    return np.stack([x, 0.9 * x + 0.05 * rng.standard_normal(t.size)]).astype(np.float32) * 0.3


def test_limiter_keeps_true_peak_below_ceiling_and_leaves_quiet_audio_alone():
    x = _programme() * 4.0
    y = limit_true_peak(x, SR, -1.0)
    assert true_peak_db(y) < -1.0
    assert y.shape == x.shape and np.abs(y).max() > 0.5
    quiet = _programme() * 0.1
    assert np.array_equal(limit_true_peak(quiet, SR, -1.0), quiet)


@pytest.mark.parametrize("target, ceiling", [(-14.0, -1.0), (-23.0, -2.0), (-9.0, -1.0)])
def test_master_reaches_loudness_under_the_ceiling(target, ceiling):
    x = _programme()
    before = x.copy()
    y = master(x, SR, MasterSettings(loudness_lufs=target, true_peak_db=ceiling))
    assert abs(integrated_lufs(y, SR) - target) <= 0.5
    assert true_peak_db(y) < ceiling
    assert np.array_equal(x, before)


def test_master_eq_and_compressor_then_loudness():
    from unbake.remix import parse_compressor, parse_eq

    settings = MasterSettings(eq=parse_eq([{"type": "high_shelf", "freq_hz": 8000, "gain_db": 3}], "eq"),
                              compressor=parse_compressor({"threshold_db": -24, "ratio": 3}, "c"),
                              loudness_lufs=-12, true_peak_db=-1)
    y = master(_programme(), SR, settings)
    assert abs(integrated_lufs(y, SR) + 12) <= 0.5 and true_peak_db(y) < -1


def _check_written(remix: Remix, tmp_path: Path, target=-14.0, ceiling=-1.0):
    from unbake.audio import read_audio

    remix.master(loudness_lufs=target, true_peak_db=ceiling)
    path = remix.write(tmp_path / "remix.wav")
    audio, sr = read_audio(path)
    assert sr == remix.sample_rate
    assert abs(integrated_lufs(audio, sr) - target) <= 0.5
    assert true_peak_db(audio, sr) < ceiling


def test_real_song_example_file(example_song, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from unbake.remix import separate_cached

    stems = separate_cached(example_song, "center")
    assert stems.names == ["vocals", "accompaniment"]
    remix = Remix(stems).gain("vocals", 3).pan("accompaniment", -0.2)
    remix.compressor("accompaniment", threshold_db=-20, ratio=2.5)
    _check_written(remix, tmp_path)


@pytest.mark.needs_shared
def test_real_song_musdb_true_stems(tmp_path):
    files = sorted(MUSDB.glob("*.stem.mp4")) if MUSDB.is_dir() else []
    if not files:
        pytest.skip(f"{MUSDB} not available")
    from unbake.audio import read_stems

    streams, sr = read_stems(files[0])
    mixture = streams.pop("mixture")
    stems = StemSet(streams, sr)
    assert np.abs(Remix(stems).render() - stems.mixture()).max() <= 1e-6
    remix = Remix(stems, original=mixture).gain("vocals", 3).pan("bass", 0.3)
    remix.eq("drums", [{"type": "low_shelf", "freq_hz": 100, "gain_db": 2}])
    remix.compressor("drums", threshold_db=-18, ratio=3, attack_ms=5, release_ms=80)
    _check_written(remix, tmp_path)


# ------------------------------------------------------------------------------ reference mastering


def _noise(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((2, int(seconds * SR))).astype(np.float32)


def _shape_error_db(audio: np.ndarray, reference: np.ndarray, lo_hz: float, hi_hz: float) -> float:
    """Largest difference between the third-octave spectra of two signals over a band, once
    their levels are made equal there (the shape, not the level)."""
    from unbake.remix.reference import smoothed_spectrum_db

    a, r = smoothed_spectrum_db(audio, SR), smoothed_spectrum_db(reference, SR)
    f = np.fft.rfftfreq(2 * (a.size - 1), 1 / SR)
    band = (f >= lo_hz) & (f <= hi_hz)
    d = (a - r)[band]
    return float(np.abs(d - d.mean()).max())


def test_reference_master_takes_the_records_tonal_balance_and_loudness(tmp_path):
    from scipy.signal import butter, sosfilt

    from unbake.audio import write_audio

    # an 'old recording': dull (2nd-order low-pass at 3 kHz) and quiet; the 'record': bright noise
    old = (0.05 * sosfilt(butter(2, 3000, "low", fs=SR, output="sos"), _noise(8, 1))).astype(np.float32)
    record = _noise(6, 2) * 0.1
    record += sosfilt(butter(2, 4000, "high", fs=SR, output="sos"), record).astype(np.float32)
    ref_path = write_audio(tmp_path / "record.wav", record, SR, bit_depth="32f")
    assert _shape_error_db(old, record, 50, 15000) > 20

    settings = MasterSettings.model_validate({"reference": str(ref_path), "reference_max_db": 24},
                                             context={})
    assert settings.true_peak_db == -1.0                 # a reference brings the default ceiling
    out = master(old, SR, settings)
    assert out.shape == old.shape and out.dtype == np.float32
    # the shape of the record's spectrum wherever the needed boost is within the 24 dB allowed
    assert _shape_error_db(out, record, 50, 12000) < 1.5
    assert integrated_lufs(out, SR) == pytest.approx(integrated_lufs(record, SR), abs=0.2)
    assert true_peak_db(out, SR) <= -1.0 + 0.05

    # the EQ is bounded: at the default 12 dB the top octave stays short of the record
    from unbake.remix.reference import eq_curve_db, file_profile

    curve = eq_curve_db(old, SR, file_profile(ref_path, SR))
    assert curve.max() == pytest.approx(12.0) and curve.min() >= -12.0


@pytest.mark.needs_shared
def test_reference_master_on_real_music(tmp_path):
    """An 'old recording' (a preview's mix through a 4 kHz low-pass, 12 dB quieter) mastered
    against another preview: its spectrum's shape comes within half its distance of the record's,
    its loudness to the record's."""
    old_file, record_file = MUSDB / "ANiMAL - Clinic A.stem.mp4", MUSDB / "AvaLuna - Waterduct.stem.mp4"
    if not (old_file.is_file() and record_file.is_file()):
        pytest.skip(f"{MUSDB} not available")
    from scipy.signal import butter, sosfilt

    from unbake.audio import read_stems, write_audio

    a, sr = read_stems(old_file)
    b, _ = read_stems(record_file)
    old = (0.25 * sosfilt(butter(2, 4000, "low", fs=sr, output="sos"), a["mixture"])).astype(np.float32)
    path = write_audio(tmp_path / "record.wav", b["mixture"], sr, bit_depth="32f")
    out = master(old, sr, MasterSettings.model_validate({"reference": str(path)}, context={}))
    before = _shape_error_db(old, b["mixture"], 50, 12000)
    assert _shape_error_db(out, b["mixture"], 50, 12000) < 0.5 * before
    assert integrated_lufs(out, sr) == pytest.approx(integrated_lufs(b["mixture"], sr), abs=0.3)


def test_reference_eq_of_a_mix_against_itself_changes_nothing():
    from unbake.remix.reference import match_eq, profile

    mix = _noise(4, 3) * 0.1
    out = match_eq(mix, SR, profile(mix, SR))
    # flat, and time-aligned: the filter's delay (over 4 000 samples) is taken out
    assert np.abs(out - mix).max() < 1e-3 * np.abs(mix).max()


def test_reference_errors(tmp_path):
    from unbake.audio import write_audio
    from unbake.errors import ConfigError
    from unbake.remix.reference import file_profile

    short = write_audio(tmp_path / "short.wav", _noise(1, 4) * 0.1, SR)
    silent = write_audio(tmp_path / "silent.wav", np.zeros((2, 3 * SR), np.float32), SR)
    with pytest.raises(AudioError, match=r"short\.wav: a reference must be at least 2 s long"):
        file_profile(short, SR)
    with pytest.raises(AudioError, match=r"silent\.wav: the reference is silent"):
        file_profile(silent, SR)
    from unbake.remix import Project

    with pytest.raises(ConfigError, match=r"master\.reference: no such file"):
        Project.parse({"stems": str(tmp_path), "master": {"reference": "missing.wav"}}, base=tmp_path)


def test_cli_remix_reference(tmp_path):
    from typer.testing import CliRunner

    from unbake.audio import read_audio, write_audio
    from unbake.cli import app

    folder = tmp_path / "stems"
    StemSet({"a": _noise(5, 5) * 0.01, "b": _noise(5, 6) * 0.01}, SR).save(folder, bit_depth="32f")
    record = write_audio(tmp_path / "record.wav", _noise(4, 7) * 0.2, SR, bit_depth="32f")
    out = tmp_path / "remaster.wav"
    res = CliRunner().invoke(app, ["remix", str(folder), "--reference", str(record), "-o", str(out)])
    assert res.exit_code == 0, res.output
    audio, sr = read_audio(out)
    ref, _ = read_audio(record)
    assert integrated_lufs(audio, sr) == pytest.approx(integrated_lufs(ref, sr), abs=0.2)
    res = CliRunner().invoke(app, ["remix", str(folder), "--reference", str(tmp_path / "none.wav"),
                                   "-o", str(tmp_path / "x.wav")])
    assert res.exit_code != 0 and "--reference: no such file" in res.output
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("sample_rate", [44100, 48000, 8000])
def test_integrated_loudness_is_pyloudnorms(sample_rate):
    """The block-wise measurement gives pyloudnorm's figure: lengths that end inside a block,
    a quiet half (the relative gate), silence (the absolute gate), mono, 5 channels."""
    import pyloudnorm

    rng = np.random.default_rng(sample_rate)
    cases = []
    for seconds in (0.41, 1.0, 3.37, 12.0):
        x = 0.1 * rng.standard_normal((2, int(seconds * sample_rate)))
        quiet, silent = x.copy(), x.copy()
        quiet[:, : x.shape[1] // 2] *= 1e-3
        silent[:, x.shape[1] // 3:] = 0.0
        cases += [x, quiet, silent, x[:1], 0.05 * rng.standard_normal((5, x.shape[1]))]
    for x in cases:
        expected = pyloudnorm.Meter(sample_rate).integrated_loudness(x.T.copy())
        assert integrated_lufs(x, sample_rate) == pytest.approx(expected, abs=1e-9)
    assert integrated_lufs(1e-6 * cases[0], sample_rate) == -np.inf      # every block below -70 LUFS
