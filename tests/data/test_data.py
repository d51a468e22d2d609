"""unbake.data: track discovery and decoding, the decoded-audio cache, the excerpt sampler and
the augmentations (shapes, sum-to-mixture, determinism)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from unbake.data.augment import (AugmentConfig, apply_augmentations, channel_swap, pitch_tempo,
                                 polarity_flip, random_gain, silence, variant_params)
from unbake.data.cache import AudioCache
from unbake.data.datasets import (MUSDB_SOURCES, BatchPrefetcher, ExcerptSampler, decode_track,
                                  find_tracks, load_tracks, split_tracks, track_name)
from unbake.errors import AudioError, ConfigError

from conftest import TRACK_SR as SR, make_folder_tracks


def test_find_and_decode_folder_tracks(tmp_path):
    paths = make_folder_tracks(tmp_path / "d", with_mixture=False)
    assert [track_name(p) for p in paths] == [f"Artist {k} - Song" for k in range(3)]
    arr, meta = decode_track(paths[0], MUSDB_SOURCES, SR)
    assert arr.shape == (5, 2, SR) and arr.dtype == np.float32
    assert meta["has_mixture"] is False and not arr[0].any()
    with pytest.raises(AudioError, match="lacks stems"):
        decode_track(paths[0], ("drums", "piano"), SR)
    with pytest.raises(ConfigError):
        find_tracks(tmp_path / "missing")


def test_cache_decodes_once_and_memory_maps(tmp_path):
    paths = make_folder_tracks(tmp_path / "d")
    cache = AudioCache(tmp_path / "cache")
    calls = []

    def decode(p):
        calls.append(p)
        return decode_track(p, MUSDB_SOURCES, SR)

    a1, _ = cache.get(paths[0], decode)
    a2, meta = cache.get(paths[0], decode)
    assert len(calls) == 1
    assert isinstance(a2, np.memmap) and np.array_equal(a1, a2)
    assert meta["names"] == ["mixture", *MUSDB_SOURCES]
    assert not list((tmp_path / "cache").rglob("*.part"))  # no temporary files left behind
    tracks = load_tracks(paths, MUSDB_SOURCES, SR, cache)
    np.testing.assert_allclose(tracks[0].mix(), np.asarray(tracks[0].stems).sum(0), atol=1e-6)


def test_stem_mp4_decoding(tmp_path):
    from unbake.audio import example_path
    from unbake.errors import DependencyError

    try:
        path = example_path()
    except DependencyError:
        pytest.skip("stempeg's example stems file is not installed")
    arr, meta = decode_track(Path(path), MUSDB_SOURCES, 44100)
    assert arr.shape[:2] == (5, 2) and arr.shape[-1] > 44100 and meta["has_mixture"]
    assert all(np.abs(a).max() > 0 for a in arr)


def test_split_rule_is_fixed():
    paths = [Path(f"t{i:02d}") for i in range(20)]
    train, valid = split_tracks(paths, valid_every=9, valid_count=10)
    assert [p.name for p in valid] == ["t00", "t09", "t18"]
    assert len(train) == 17 and not set(train) & set(valid)
    _, valid = split_tracks(paths, valid_every=3, valid_count=2)
    assert [p.name for p in valid] == ["t00", "t03"]


def test_augmentations_keep_shapes_and_do_what_they_say():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 100)).astype(np.float32)
    x0 = x.copy()
    swapped = channel_swap(x, np.random.default_rng(1), 1.0)
    assert np.array_equal(swapped[:, 0], x[:, 1]) and np.array_equal(swapped[:, 1], x[:, 0])
    assert np.array_equal(polarity_flip(x, np.random.default_rng(1), 1.0), -x)
    g = random_gain(x, np.random.default_rng(1), (-6.0, -6.0))
    np.testing.assert_allclose(g, x * 10 ** (-6 / 20), rtol=1e-6)
    g = random_gain(x, np.random.default_rng(1), (-10.0, 2.0))
    ratio_db = 20 * np.log10(np.abs(g[:, 0, 0] / x[:, 0, 0]))
    assert ((ratio_db >= -10 - 1e-4) & (ratio_db <= 2 + 1e-4)).all() and np.ptp(ratio_db) > 0
    muted = silence(x, np.random.default_rng(1), 1.0)
    assert sum(bool(s.any()) for s in muted) == 1  # never everything
    cfg = AugmentConfig(gain_db=(-9, 3), channel_swap_p=0.5, polarity_flip_p=0.5, silence_p=0.2)
    y = apply_augmentations(x, np.random.default_rng(3), cfg)
    assert y.shape == x.shape and y.dtype == np.float32
    assert not np.shares_memory(y, x)
    np.testing.assert_array_equal(x, x0)  # inputs are never modified


def test_prefetched_batches_equal_the_samplers(tmp_path):
    paths = make_folder_tracks(tmp_path / "d", n_tracks=4)
    tracks = load_tracks(paths, MUSDB_SOURCES, SR, AudioCache(tmp_path / "c"))
    cfg = AugmentConfig(remix_p=0.5, gain_db=(-9, 3), channel_swap_p=0.5, polarity_flip_p=0.5, effects_p=0.5)
    sampler = ExcerptSampler(tracks, 2000, cfg, seed=7)
    order = [0, 1, 2, 3, 4, 5, 6, 8, 2, 3, 9]  # in order past the 4 ahead, a skip, jumps back and ahead
    with BatchPrefetcher(sampler, workers=2, rank=1, size=3, end=10, ahead=4) as pre:
        for step in order:
            np.testing.assert_array_equal(pre.get(step), sampler.batch_stems(step, 1, 3))
        with pytest.raises(ValueError, match="outside"):
            pre.get(10)
    mix, stems = sampler.batch(5, 1, 3)
    np.testing.assert_array_equal(stems, sampler.batch_stems(5, 1, 3))
    np.testing.assert_array_equal(mix, stems.sum(axis=1))


def test_a_prefetch_workers_error_reaches_the_caller(tmp_path):
    paths = make_folder_tracks(tmp_path / "d", n_tracks=2)
    tracks = load_tracks(paths, MUSDB_SOURCES, SR, AudioCache(tmp_path / "c"))
    sampler = ExcerptSampler(tracks, 2000, AugmentConfig(), seed=1)
    sampler.augment = None  # every example now fails in the worker
    with BatchPrefetcher(sampler, workers=1, rank=0, size=2, end=3) as pre:
        with pytest.raises(AttributeError):
            pre.get(0)
    with pytest.raises(ConfigError, match="worker"):
        BatchPrefetcher(sampler, workers=0, rank=0, size=2, end=3)


def test_augment_config_rejects_nonsense():
    with pytest.raises(ConfigError, match="probability"):
        AugmentConfig(remix_p=1.5)
    with pytest.raises(ConfigError, match="unknown augment keys"):
        AugmentConfig.from_dict({"remixx": 0.5})
    assert AugmentConfig.from_dict({"gain_db": [-3, 1]}).gain_db == (-3.0, 1.0)


def test_sampler_batches_are_deterministic_and_sum_to_the_mixture(tmp_path):
    paths = make_folder_tracks(tmp_path / "d", n_tracks=4)
    tracks = load_tracks(paths, MUSDB_SOURCES, SR, AudioCache(tmp_path / "c"))
    cfg = AugmentConfig(remix_p=0.5, gain_db=(-9, 3), channel_swap_p=0.5, polarity_flip_p=0.5)
    sampler = ExcerptSampler(tracks, 2000, cfg, seed=7)
    mix, stems = sampler.batch(step=3, rank=0, size=5)
    assert mix.shape == (5, 2, 2000) and stems.shape == (5, 4, 2, 2000)
    assert mix.dtype == np.float32 and stems.dtype == np.float32
    np.testing.assert_array_equal(mix, stems.sum(axis=1))
    again = ExcerptSampler(tracks, 2000, cfg, seed=7).batch(step=3, rank=0, size=5)
    np.testing.assert_array_equal(again[1], stems)
    assert not np.array_equal(sampler.batch(3, 1, 5)[1], stems)   # ranks draw different data
    assert not np.array_equal(sampler.batch(4, 0, 5)[1], stems)   # so do steps
    assert not np.array_equal(ExcerptSampler(tracks, 2000, cfg, seed=8).batch(3, 0, 5)[1], stems)
    with pytest.raises(ConfigError, match="shorter"):
        ExcerptSampler(tracks, SR * 2, cfg)


def test_remixing_takes_stems_from_different_tracks(tmp_path):
    paths = make_folder_tracks(tmp_path / "d", n_tracks=5, constant=True)
    tracks = load_tracks(paths, MUSDB_SOURCES, SR, AudioCache(tmp_path / "c"))

    def origins(remix_p: float) -> list[set[int]]:
        sampler = ExcerptSampler(tracks, 500, AugmentConfig(remix_p=remix_p), seed=0)
        _, stems = sampler.batch(0, 0, 16)
        out = []
        for ex in stems:
            ks = {int(round((ex[s, 0, 0] - (s + 1) / 100) * 10)) - 1 for s in range(4)}
            assert all(0 <= k < 5 for k in ks)
            out.append(ks)
        return out

    assert all(len(ks) == 1 for ks in origins(0.0))
    assert sum(len(ks) > 1 for ks in origins(1.0)) >= 12


def test_extra_p_sets_the_share_of_picks_from_the_extra_tracks(tmp_path):
    paths = make_folder_tracks(tmp_path / "d", n_tracks=5, constant=True)
    tracks = load_tracks(paths, MUSDB_SOURCES, SR, AudioCache(tmp_path / "c"))

    def extra_share(extra_p: float | None, remix_p: float) -> float:
        # tracks 3 and 4 are the "extra" group; each stem's constant tells its track
        sampler = ExcerptSampler(tracks, 500, AugmentConfig(remix_p=remix_p), seed=1, extra_from=3,
                                 extra_p=extra_p)
        _, stems = sampler.batch(0, 0, 400)
        k = np.rint((stems[:, :, 0, 0] - (np.arange(4) + 1) / 100) * 10) - 1
        assert ((k >= 0) & (k < 5)).all()
        return float((k >= 3).mean())

    for remix_p in (0.0, 1.0):
        assert extra_share(0.0, remix_p) == 0.0 and extra_share(1.0, remix_p) == 1.0
        assert abs(extra_share(0.2, remix_p) - 0.2) < 0.06
    assert abs(extra_share(None, 1.0) - 2 / 5) < 0.06   # unset: uniform over all five tracks
    # extra_stems: bass (index 1) never comes from the extra tracks, whether remixed or not
    for remix_p in (0.0, 1.0):
        sampler = ExcerptSampler(tracks, 500, AugmentConfig(remix_p=remix_p), seed=2, extra_from=3, extra_p=0.5,
                                 extra_stems=(0, 2, 3))
        _, stems = sampler.batch(0, 0, 300)
        k = np.rint((stems[:, :, 0, 0] - (np.arange(4) + 1) / 100) * 10) - 1
        assert (k[:, 1] < 3).all() and (k[:, [0, 2, 3]] >= 3).mean() > 0.35
    with pytest.raises(ConfigError, match="outside"):
        ExcerptSampler(tracks, 500, AugmentConfig(), extra_from=3, extra_p=0.5, extra_stems=(4,))
    with pytest.raises(ConfigError, match="without tracks"):
        ExcerptSampler(tracks, 500, AugmentConfig(), extra_from=5, extra_p=0.3)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        ExcerptSampler(tracks, 500, AugmentConfig(), extra_from=3, extra_p=1.5)


def test_pitch_tempo_variants_are_cached(tmp_path):
    paths = make_folder_tracks(tmp_path / "d", n_tracks=2, seconds=1.0)
    cfg = AugmentConfig(pitch_tempo_variants=1, pitch_tempo_p=1.0, tempo_range=(1.2, 1.2),
                        pitch_semitones=(1.0, 1.0))
    assert variant_params(0, "a", 0, cfg) == (1.2, 1.0)
    cache = AudioCache(tmp_path / "c")
    tracks = load_tracks(paths, MUSDB_SOURCES, SR, cache, augment=cfg, seed=0)
    v = tracks[0].variants[0]
    assert isinstance(v, np.memmap) and v.shape[:2] == (4, 2)
    assert abs(v.shape[-1] - SR / 1.2) < 0.05 * SR
    files = sorted(p.name for p in (tmp_path / "c").rglob("var_*.npy"))
    assert len(files) == 2
    mtimes = [p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("var_*.npy")]
    load_tracks(paths, MUSDB_SOURCES, SR, cache, augment=cfg, seed=0)
    assert [p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("var_*.npy")] == mtimes
    sampler = ExcerptSampler(tracks, 1000, cfg, seed=0)
    mix, stems = sampler.batch(0, 0, 3)
    np.testing.assert_array_equal(mix, stems.sum(axis=1))
    assert pitch_tempo(np.zeros((4, 2, SR), np.float32), SR, 1.0, 0.0).shape[:2] == (4, 2)


# ------------------------------------------------------------------ effects, k-fold split, synthetic multitracks


def test_stem_effects_keep_shape_and_level_and_follow_the_seed():
    from unbake.data.augment import stem_effects

    rng = np.random.default_rng(0)
    stems = (0.1 * rng.standard_normal((4, 2, 22050))).astype(np.float32)
    assert stem_effects(stems, np.random.default_rng(1), 0.0) is stems
    a = stem_effects(stems, np.random.default_rng(1), 1.0, 44100)
    b = stem_effects(stems, np.random.default_rng(1), 1.0, 44100)
    assert a.shape == stems.shape and a.dtype == np.float32 and np.array_equal(a, b)
    rms = lambda x: np.sqrt(np.mean(x ** 2, axis=(1, 2)))  # noqa: E731
    assert np.allclose(rms(a), rms(stems), rtol=1e-3)  # levels are the gain augmentation's job
    assert all(np.abs(a[i] - stems[i]).max() > 1e-3 for i in range(4))  # every stem processed
    assert not np.array_equal(a, stem_effects(stems, np.random.default_rng(2), 1.0, 44100))
    with pytest.raises(ConfigError):
        AugmentConfig(effects_p=1.5)


def test_fold_split_partitions_the_tracks():
    from unbake.data.datasets import fold_split

    paths = [Path(f"t{i:02d}") for i in range(23)]
    valid_sets = [fold_split(paths, 5, f)[1] for f in range(5)]
    assert sorted(p for v in valid_sets for p in v) == paths  # each track held out exactly once
    train, valid = fold_split(paths, 5, 2)
    assert not set(train) & set(valid) and len(train) + len(valid) == 23
    for bad in ((1, 0), (5, 5), (5, -1)):
        with pytest.raises(ConfigError):
            fold_split(paths, *bad)


def test_midi_bytes_is_a_standard_midi_file():
    from unbake.data.synth import midi_bytes

    data = midi_bytes([(0.0, 1.0, 0, 60, 100), (0.5, 200.0, 0, 64, 90)], 120.0, {0: 33})
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22
    assert data.count(bytes([0x90, 60, 100])) == 1 and data.count(bytes([0x80, 64, 0])) == 1
    assert bytes([0xC0, 33]) in data and data.endswith(b"\xff\x2f\x00")


def _fake_render(midi, soundfont, sample_rate, length, workdir):
    """A stand-in for fluidsynth: a tone per note-on, so the audio depends on the MIDI."""
    t = np.arange(length) / sample_rate
    pitches = [midi[i + 1] for i in range(len(midi) - 2) if midi[i] & 0xF0 == 0x90 and midi[i + 2] > 0]
    x = sum(np.sin(2 * np.pi * 440 * 2 ** ((p - 69) / 12) * t) for p in pitches[:8]) if pitches else 0 * t
    return np.stack([x, x]).astype(np.float32)


def test_synth_set_is_reproducible_and_readable_as_training_data(tmp_path, monkeypatch):
    from unbake.data import synth

    monkeypatch.setattr(synth, "render_midi", _fake_render)
    monkeypatch.setattr(synth, "find_soundfont", lambda sf=None: Path("fake.sf2"))
    monkeypatch.setattr(synth, "_fluidsynth", lambda: "fluidsynth")
    vocals = make_folder_tracks(tmp_path / "real", n_tracks=2, seconds=1.5)
    a = synth.make_synth_set(tmp_path / "a", 3, seed=5, duration_s=1.0, sample_rate=SR, vocal_tracks=vocals,
                             cache_dir=tmp_path / "cache")
    b = synth.make_synth_set(tmp_path / "b", 3, seed=5, duration_s=1.0, sample_rate=SR, vocal_tracks=vocals,
                             cache_dir=tmp_path / "cache")
    c = synth.make_synth_set(tmp_path / "c", 3, seed=6, duration_s=1.0, sample_rate=SR)
    assert a == b and a != c and len({t.tempo_bpm for t in a}) == 3
    assert {t.vocals_from for t in a} <= {track_name(p) for p in vocals} and c[0].vocals_from is None
    tracks = find_tracks(tmp_path / "a")
    assert [track_name(p) for p in tracks] == ["synth_00000", "synth_00001", "synth_00002"]
    for pa, pb in zip(tracks, find_tracks(tmp_path / "b")):
        arr, meta = decode_track(pa, MUSDB_SOURCES, SR)
        assert arr.shape == (5, 2, SR) and not meta["has_mixture"]
        assert np.array_equal(arr, decode_track(pb, MUSDB_SOURCES, SR)[0])
        assert all(np.abs(arr[1 + s]).max() > 1e-3 for s in range(4))  # no silent stem
    silent_vocals = decode_track(find_tracks(tmp_path / "c")[0], MUSDB_SOURCES, SR)[0][4]
    assert np.abs(silent_vocals).max() == 0
    assert not list((tmp_path / "a").glob(".*partial"))


def _beat_song(folder: Path, bpm: float, tonic: int, minor: bool, seconds: float = 8.0, sr: int = 22050) -> None:
    """A song with a known tempo and key: clicks on the beats (drums), the tonic triad (bass and
    other) and a voice on the tonic (vocals)."""
    from unbake.audio import write_audio

    n = int(seconds * sr)
    t = np.arange(n) / sr
    blip_t = np.arange(int(0.03 * sr)) / sr
    blip = np.sin(2 * np.pi * 1500 * blip_t) * np.exp(-blip_t * 200)
    drums = np.zeros(n)
    for i in range(int(seconds * bpm / 60) + 1):
        p = int(round(i * 60 / bpm * sr))
        m = min(len(blip), n - p)
        if m > 0:
            drums[p:p + m] += blip[:m]

    def tone(pc: int, octave: int) -> np.ndarray:
        return 0.1 * np.sin(2 * np.pi * 440 * 2 ** ((12 * (octave + 1) + pc - 69) / 12) * t)

    third = 3 if minor else 4
    stems = {"drums": drums, "bass": tone(tonic, 2), "other": tone(tonic, 4) + tone(tonic + third, 4)
             + tone(tonic + 7, 4), "vocals": tone(tonic, 5) + 0.5 * tone(tonic + 7, 5)}
    folder.mkdir(parents=True)
    for name, x in stems.items():
        write_audio(folder / f"{name}.wav", np.stack([x, x]).astype(np.float32), sr, bit_depth="32f")


def test_synth_match_vocals_follows_the_vocal_songs_tempo_key_and_beats(tmp_path, monkeypatch):
    from unbake.data import synth

    monkeypatch.setattr(synth, "render_midi", _fake_render)
    monkeypatch.setattr(synth, "find_soundfont", lambda sf=None: Path("fake.sf2"))
    monkeypatch.setattr(synth, "_fluidsynth", lambda: "fluidsynth")
    sr = 22050
    _beat_song(tmp_path / "real" / "A - Slow", 96.0, 9, True, sr=sr)      # A minor
    _beat_song(tmp_path / "real" / "B - Quick", 128.0, 7, False, sr=sr)   # G major
    vocals = find_tracks(tmp_path / "real")
    kw = dict(seed=3, duration_s=3.0, sample_rate=sr, vocal_tracks=vocals, cache_dir=tmp_path / "cache")
    matched = synth.make_synth_set(tmp_path / "m", 6, match_vocals=True, **kw)
    plain = synth.make_synth_set(tmp_path / "p", 6, **kw)
    expect = {"A - Slow": (96.0, 9, True), "B - Quick": (128.0, 7, False)}
    assert {t.vocals_from for t in matched} == set(expect)  # both songs lend (6 draws)
    for m, p in zip(matched, plain):
        bpm, tonic, minor = expect[m.vocals_from]
        assert m.matched_to_vocals and not p.matched_to_vocals
        assert abs(m.tempo_bpm - bpm) < 2.0 and (m.key_root, m.minor) == (tonic, minor)
        # the excerpt starts on a beat of its song (the tracker's beats: within 30 ms of the clicks)
        phase = (m.vocals_offset_s * bpm / 60) % 1.0
        assert min(phase, 1 - phase) * 60 / bpm < 0.03
        # what the matching does not decide is the unmatched track's: same progression and instruments
        assert (m.progression, m.bass_program, m.other_programs) == (p.progression, p.bass_program,
                                                                    p.other_programs)
    with pytest.raises(ConfigError, match="vocal"):
        synth.make_synth_set(tmp_path / "x", 1, match_vocals=True, sample_rate=sr)


def test_synth_names_the_missing_debian_packages(tmp_path, monkeypatch):
    from unbake.data import synth
    from unbake.errors import DependencyError

    monkeypatch.setattr(synth, "SOUNDFONT_CANDIDATES", (str(tmp_path / "none.sf2"),))
    with pytest.raises(DependencyError, match="fluid-soundfont-gm"):
        synth.make_synth_set(tmp_path / "out", 1)
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(DependencyError, match="fluidsynth"):
        synth.make_synth_set(tmp_path / "out", 1, soundfont=__file__)


@pytest.mark.skipif(not __import__("shutil").which("fluidsynth")
                    or not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").is_file(),
                    reason="Debian packages fluidsynth and fluid-soundfont-gm not installed")
def test_synth_renders_with_fluidsynth(tmp_path):
    from unbake.data.synth import make_synth_set

    made = make_synth_set(tmp_path, 1, seed=0, duration_s=1.0)
    arr, _ = decode_track(find_tracks(tmp_path)[0], MUSDB_SOURCES, 44100)
    assert made[0].name == "synth_00000" and arr.shape == (5, 2, 44100)
    for s in range(3):  # drums, bass, other: rendered, at the drawn level (-28 .. -20 dB RMS)
        rms_db = 20 * np.log10(np.sqrt(np.mean(arr[1 + s] ** 2)))
        assert -28.5 < rms_db < -19.5


def test_cli_data_synth_refuses_bad_input(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.run([sys.executable, "-m", "unbake", "data", "synth", str(tmp_path / "out"), "--count", "0",
                           "--soundfont", __file__], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "count" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
