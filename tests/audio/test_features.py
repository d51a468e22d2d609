"""The analysis's spectral features against librosa's (``unbake.audio.features`` computes them
step for step as librosa 0.11 does): on the example song (real music), on tones tuned off A440, and
on envelopes long enough to span several of the tempogram's blocks."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest

librosa = pytest.importorskip("librosa")

from unbake.audio import features  # noqa: E402
from unbake.analysis.analyze import ANALYSIS_RATE_HZ, CHROMA_HOP, ONSET_HOP, to_mono_analysis_rate  # noqa: E402

SR = ANALYSIS_RATE_HZ


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    """Mono float32 at the analysis rate: the example song's mixture, real music."""
    from unbake.audio import example_path, read_audio

    try:
        audio, rate = read_audio(example_path())
    except Exception as exc:  # pragma: no cover - stempeg is a test dependency
        pytest.skip(f"example song unavailable: {exc}")
    return to_mono_analysis_rate(audio, rate).astype(np.float32)


def tone(f0_hz: float, seconds: float = 6.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a little noise: a clear pitch, so a clear tuning."""
    t = np.arange(int(seconds * SR)) / SR
    y = sum(0.3 / k * np.sin(2 * np.pi * k * f0_hz * t) for k in range(1, 6))
    return (y + 0.01 * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


def test_mel_filterbank_equals_librosa():
    for sr, n_fft, n_mels, fmax in ((44100, 2048, 60, None), (48000, 2048, 60, None), (44100, 4096, 128, None),
                                    (22050, 1024, 40, None), (22050, 2048, 16, 180.0), (22050, 2048, 128, 8000.0)):
        ours = features.mel_filterbank(sr, n_fft, n_mels, fmax)
        with _quiet():
            ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=fmax)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        np.testing.assert_array_equal(ours, ref)


@contextlib.contextmanager
def _quiet():
    """librosa warns of empty mel filters for 16 bands under 180 Hz; the layout is still its own."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_onset_strength_equals_librosa(song):
    for y in (song, tone(220.0)):
        ours = features.onset_strength(y, SR, ONSET_HOP)
        ref = librosa.onset.onset_strength(y=y, sr=SR, hop_length=ONSET_HOP)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
        with _quiet():
            ref_low = librosa.onset.onset_strength(y=y, sr=SR, hop_length=ONSET_HOP, n_mels=16, fmax=180.0)
        np.testing.assert_allclose(features.onset_strength(y, SR, ONSET_HOP, n_mels=16, fmax_hz=180.0), ref_low,
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("block", [features._TEMPO_BLOCK, 97])
def test_tempo_equals_librosa_over_blocks(song, monkeypatch, block):
    monkeypatch.setattr(features, "_TEMPO_BLOCK", block)
    rng = np.random.default_rng(1)
    env = librosa.onset.onset_strength(y=song, sr=SR, hop_length=ONSET_HOP)
    # a second envelope: a 131 BPM pulse train with noise, long enough for several blocks
    pulse = np.zeros(3000, np.float32)
    pulse[::int(round(60 / 131 * SR / ONSET_HOP))] = 1.0
    noisy = (pulse + 0.1 * rng.random(3000)).astype(np.float32)
    for e in (env, noisy):
        for prior, top in ((120.0, 200.0), (90.0, 320.0)):
            ref = librosa.feature.tempo(onset_envelope=e, sr=SR, hop_length=ONSET_HOP, start_bpm=prior, std_bpm=1.0,
                                        max_tempo=top)
            np.testing.assert_array_equal(features.tempo(e, SR, ONSET_HOP, start_bpm=prior, max_tempo=top), ref)
        ref = librosa.feature.tempo(onset_envelope=e, sr=SR, hop_length=ONSET_HOP, aggregate=None, ac_size=4.0)
        ours = features.tempo(e, SR, ONSET_HOP, ac_size_s=4.0, per_frame=True)
        assert ours.shape == ref.shape
        assert np.mean(ours == ref) > 0.999  # per frame: argmax ties between float orders aside
    assert abs(features.tempo(noisy, SR, ONSET_HOP)[0] - 131) < 2


def test_tuning_equals_librosa(song):
    found = []
    for y in (song, tone(440.0), tone(440.0 * 2 ** (0.3 / 12), seed=2), tone(233.0 * 2 ** (-0.2 / 12), seed=3)):
        for bins in (12, 36):
            ours = features.estimate_tuning(y, SR, bins)
            assert ours == pytest.approx(librosa.estimate_tuning(y=y, sr=SR, bins_per_octave=bins), abs=1e-9)
            found.append(ours)
    # the tones 30 cents sharp (0.9 of a 36-per-octave bin, so -0.1) and 20 cents flat (-0.2, -0.6)
    assert found[5] == pytest.approx(-0.1, abs=0.03) and found[6] == pytest.approx(-0.2, abs=0.03)
    assert features.estimate_tuning(np.zeros(SR, np.float32), SR, 36) == 0.0


def test_chroma_cqt_equals_librosa(song):
    for y in (song, tone(261.6, seed=4)):
        for norm in (np.inf, None):
            ours = features.chroma_cqt(y, SR, CHROMA_HOP, norm=norm)
            ref = librosa.feature.chroma_cqt(y=y, sr=SR, hop_length=CHROMA_HOP, norm=norm)
            assert ours.dtype == ref.dtype and ours.shape == ref.shape
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5 * float(ref.max()))
    c = features.chroma_cqt(tone(261.6, seed=4), SR, CHROMA_HOP, norm=None).mean(axis=1)
    assert int(np.argmax(c)) == 0  # the C tone's chroma peaks at C
    with pytest.raises(ValueError, match="norm"):
        features.chroma_cqt(song, SR, CHROMA_HOP, norm=2)


def test_sync_mean_equals_librosa():
    data = np.random.default_rng(5).random((12, 40)).astype(np.float32)
    for edges in ([3, 9, 9, 20, 55], [0, 40], [5], [39, 1, 17]):
        np.testing.assert_allclose(features.sync_mean(data, np.array(edges)),
                                   librosa.util.sync(data, np.clip(edges, 0, 40), aggregate=np.mean), rtol=1e-6)


def test_low_band_onsets_and_stft_chroma_equal_librosa(song):
    """What the downbeats read: the onsets of the lowest 16 of 128 mel bands, and the STFT chroma
    at the tuning of the power spectrogram's peaks."""
    for y in (song, tone(440.0 * 2 ** (0.25 / 12), seed=6)):
        ref = librosa.onset.onset_strength_multi(y=y, sr=SR, hop_length=ONSET_HOP, channels=[0, 16])[0]
        np.testing.assert_allclose(features.onset_strength(y, SR, ONSET_HOP, band_edges=(0, 16))[0], ref,
                                   rtol=1e-6, atol=1e-6)
        power = np.abs(librosa.stft(y, n_fft=2048, hop_length=ONSET_HOP)) ** 2
        tuning = librosa.estimate_tuning(S=power, sr=SR, bins_per_octave=12)
        assert features.tuning_of_spectrogram(power, SR, 2048, 12) == pytest.approx(tuning, abs=1e-9)
        np.testing.assert_array_equal(features.chroma_filterbank(SR, 2048, tuning),
                                      librosa.filters.chroma(sr=SR, n_fft=2048, tuning=tuning))
        ref = librosa.feature.chroma_stft(y=y, sr=SR, hop_length=ONSET_HOP)
        ours = features.chroma_stft(y, SR, ONSET_HOP)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
    # the 25-cent sharp tone (the power spectrum's parabolas place its peaks less exactly)
    assert features.tuning_of_spectrogram(power, SR, 2048, 12) == pytest.approx(0.25, abs=0.05)


def test_band_onsets_equal_librosa_in_either_precision(song):
    """What alignment reads: several groups of mel bands, a shorter FFT; float64 input stays float64."""
    from unbake.analysis.align import ALIGN_HOP, BAND_EDGES

    for y in (song, song.astype(np.float64)):
        ref = librosa.onset.onset_strength_multi(y=y, sr=SR, hop_length=ALIGN_HOP, n_fft=1024,
                                                 channels=list(BAND_EDGES))
        ours = features.onset_strength(y, SR, ALIGN_HOP, n_fft=1024, band_edges=BAND_EDGES)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape == (len(BAND_EDGES) - 1, len(ref[0]))
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_harmonic_part_and_istft_equal_librosa(song):
    for y in (song, tone(196.0, seconds=3.0, seed=7)):
        np.testing.assert_allclose(features.harmonic_part(y), librosa.effects.harmonic(y, margin=1.0), rtol=0,
                                   atol=1e-6)
        spec = librosa.stft(y)
        for length in (len(y), len(y) - 700, len(y) + 3000):  # trimmed, and padded past the frames
            np.testing.assert_allclose(features.istft(spec, 512, length), librosa.istft(spec, length=length),
                                       rtol=0, atol=1e-6)
    # a steady tone is all harmonic; a click train is all percussive
    t = tone(196.0, seconds=3.0, seed=7)
    assert np.std(features.harmonic_part(t)[SR:-SR] - t[SR:-SR]) < 0.05 * np.std(t)
    clicks = np.zeros(3 * SR, np.float32)
    clicks[::SR // 4] = 1.0
    assert np.abs(features.harmonic_part(clicks)).max() < 0.2


def test_onset_picking_and_db_equal_librosa(song):
    """The drum transcription's attacks: librosa's peak picking (ties and plateaus included) and dB."""
    rng = np.random.default_rng(8)
    for trial in range(60):
        env = rng.random(int(rng.integers(10, 2000))) ** 3
        env = np.round(env * 5) / 5 if trial % 3 == 0 else env.astype(np.float32)
        sr, hop = (22050, 256) if trial % 2 else (44100, 128)
        np.testing.assert_array_equal(features.pick_onsets(env.copy(), sr, hop),
                                      librosa.onset.onset_detect(onset_envelope=env.copy(), sr=sr, hop_length=hop))
    assert features.pick_onsets(np.zeros(50), SR, 256).size == 0
    power = np.abs(librosa.stft(song, n_fft=1024, hop_length=128)) ** 2
    np.testing.assert_allclose(features.power_to_db(power, ref=None), librosa.power_to_db(power, ref=np.max),
                               rtol=0, atol=1e-4)
    np.testing.assert_allclose(features.power_to_db(power), librosa.power_to_db(power), rtol=0, atol=1e-4)
