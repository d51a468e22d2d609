"""Time maps between two performances, warping along them and onto a steady grid: on
synthesised performances of one tune whose timing is known."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unbake.analysis.timemap import LowConfidenceError, TimeMap, require_confidence, time_map
from unbake.analysis.warp import warp

REPO = Path(__file__).resolve().parents[2]
SR = 22050

# a melody with chords: (beat, length in beats, midi pitch) for the tune; one chord per bar
TUNE = [(0, 1, 72), (1, 1, 74), (2, 1, 76), (3, 1, 72), (4, 1, 76), (5, 0.5, 77), (5.5, 0.5, 76), (6, 2, 74),
        (8, 1, 71), (9, 1, 72), (10, 1, 74), (11, 1, 79), (12, 2, 77), (14, 1, 76), (15, 1, 74),
        (16, 1, 72), (17, 0.5, 74), (17.5, 0.5, 76), (18, 1, 77), (19, 1, 79), (20, 2, 81), (22, 1, 79), (23, 1, 77),
        (24, 1, 76), (25, 1, 74), (26, 1, 72), (27, 1, 71), (28, 4, 72),
        (32, 1, 67), (33, 1, 69), (34, 1, 71), (35, 1, 72), (36, 1.5, 74), (37.5, 0.5, 72), (38, 2, 71),
        (40, 1, 69), (41, 1, 71), (42, 1, 72), (43, 1, 74), (44, 2, 76), (46, 2, 79), (48, 4, 72)]
CHORDS = [(48, 52, 55), (43, 47, 50), (45, 48, 52), (41, 45, 48), (41, 45, 48), (43, 47, 50), (48, 52, 55), (48, 52, 55),
          (40, 43, 47), (45, 48, 52), (41, 45, 48), (43, 47, 50), (48, 52, 55)]


def score():
    """[(beat, beats, pitch, gain)] of the tune and its chords (one per bar, 4/4)."""
    notes = [(b, d, p, 0.5) for b, d, p in TUNE]
    for bar, chord in enumerate(CHORDS):
        notes += [(4 * bar, 4, p, 0.22) for p in chord]
    return notes


def tone(pitch, seconds, sr, timbre, rng):
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    t = np.arange(int(seconds * sr)) / sr
    if timbre == "piano":
        partials = [(k, 0.6 ** (k - 1)) for k in range(1, 9)]
        env = np.exp(-t * 2.5) * np.minimum(t / 0.004, 1)
    else:  # a reedy voice: odd partials, slower attack, vibrato
        partials = [(k, 1.0 / k) for k in range(1, 12, 2)]
        env = np.minimum(t / 0.015, 1) * np.exp(-t * 0.8)
    vib = 1 + (0.004 * np.sin(2 * np.pi * 5.5 * t) if timbre != "piano" else 0 * t)
    phase = 2 * np.pi * f0 * np.cumsum(vib) / sr
    x = sum(a * np.sin(k * phase + rng.uniform(0, 6.28)) for k, a in partials if k * f0 < sr / 2 - 500)
    rel = np.minimum((seconds - t) / 0.03, 1)  # release: no click at the note's end
    return x * env * rel


def render(notes, beat_time, sr=SR, timbre="piano", transpose=0, tail_s=1.0, seed=0):
    """Audio ``(t,)`` of ``notes`` with beat b at ``beat_time(b)`` seconds; and the onset times
    of the tune's notes."""
    rng = np.random.default_rng(seed)
    end = max(beat_time(b + d) for b, d, _, _ in notes) + tail_s
    out = np.zeros(int(end * sr) + 1)
    for b, d, p, g in notes:
        t0, t1 = beat_time(b), beat_time(b + d)
        x = g * tone(p + transpose, t1 - t0 + 0.05, sr, timbre, rng)
        i = int(round(t0 * sr))
        out[i:i + len(x)] += x[: len(out) - i]
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def steady(bpm, lead_s=0.5):
    return lambda b: lead_s + b * 60.0 / bpm


def rubato(bpm, lead_s=0.8, depth=0.15, fermata_beat=15, rush=(36, 44), seed=1):
    """Beat -> time for a free performance: tempo wandering +-depth, a fermata (beat held twice
    as long), a rushed phrase (15 % faster)."""
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 2 * np.pi, 2)
    grid = np.arange(0, 80, 0.25)
    local = bpm * (1 + depth * (0.6 * np.sin(2 * np.pi * grid / 23 + phases[0]) + 0.4 * np.sin(2 * np.pi * grid / 9 + phases[1])))
    local = np.where((grid >= rush[0]) & (grid < rush[1]), local * 1.15, local)
    dur = 0.25 * 60.0 / local
    dur = np.where((grid >= fermata_beat) & (grid < fermata_beat + 1), dur * 2.0, dur)
    times = lead_s + np.concatenate([[0], np.cumsum(dur)])
    knots = np.concatenate([grid, [grid[-1] + 0.25]])
    return lambda b: float(np.interp(b, knots, times))


# a different tune with different chords, for "unrelated songs"
OTHER = [(b, 1, p) for b, p in zip(range(0, 48), [64, 62, 60, 62, 64, 64, 64, 62, 62, 62, 64, 67, 67, 64, 62, 60] * 3)]
OTHER_CHORDS = [(45, 49, 52), (42, 45, 49), (47, 50, 54), (44, 47, 51)] * 3


def other_score():
    notes = [(b, d, p + 1, 0.5) for b, d, p in OTHER]
    for bar, chord in enumerate(OTHER_CHORDS):
        notes += [(4 * bar, 4, p, 0.22) for p in chord]
    return notes


def onsets_s(y: np.ndarray) -> np.ndarray:
    import librosa

    return librosa.onset.onset_detect(y=np.asarray(y, np.float32), sr=SR, hop_length=128, units="time")


def nearest_ms(found: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    return np.array([np.min(np.abs(found - t)) for t in wanted]) * 1000


@pytest.fixture(scope="module")
def cover():
    """B steady at 100 BPM (piano); A the same notes 3 semitones up, another timbre, rubato
    +-15 %, a fermata and a rushed phrase; with their onset times."""
    notes = score()
    fb, fa = steady(100, 0.5), rubato(100, seed=1)
    b = render(notes, fb, timbre="piano")
    a = render(notes, fa, timbre="reed", transpose=3, seed=5)
    beats = np.array(sorted({n[0] for n in notes}))
    return a, b, np.array([fa(x) for x in beats]), np.array([fb(x) for x in beats])


@pytest.fixture(scope="module")
def mapped(cover):
    a, b, _, _ = cover
    return time_map(a, b, SR)


def test_transposition_is_found_as_the_shift_back(mapped):
    assert mapped.semitones == -3


def test_map_sends_a_notes_onto_b_notes(cover, mapped):
    _, _, ta, tb = cover
    err = np.abs(mapped.to_b(ta) - tb) * 1000
    assert np.median(err) <= 30 and np.percentile(err, 95) <= 80, (np.median(err), np.percentile(err, 95))
    assert mapped.confidence > 0.5 and not mapped.low_confidence()
    assert np.all(np.diff(mapped.times_a) > 0) and np.all(np.diff(mapped.times_b) > 0)


def test_map_round_trips_through_json(mapped):
    back = TimeMap.from_dict(json.loads(json.dumps(mapped.to_dict())))
    t = np.linspace(1, 30, 50)
    assert np.allclose(back.to_b(t), mapped.to_b(t), atol=1e-4)
    assert back.semitones == mapped.semitones
    from unbake.errors import ConfigError

    with pytest.raises(ConfigError, match="increase"):
        TimeMap.from_dict({"anchors": [[0, 0], [1, 2], [0.5, 3]]})


def test_warp_is_sample_accurate_at_anchors():
    """Clicks moved by an uneven map land where the map sends them (Rubber Band's own
    latency cancelled; a few samples of smearing at most)."""
    import scipy.signal as ss

    sr = 22050
    x = np.zeros(sr * 8, np.float32)
    t = np.arange(int(0.01 * sr)) / sr
    blip = (np.sin(2 * np.pi * 1000 * t) * np.exp(-t * 400)).astype(np.float32)
    pos = np.arange(sr // 2, len(x) - sr, sr // 3)
    for p in pos:
        x[p:p + len(blip)] += blip
    rng = np.random.default_rng(0)
    src = np.arange(0, 8.01, 0.5)
    dst = np.concatenate([[0.3], 0.3 + np.cumsum(np.diff(src) / rng.uniform(0.7, 1.4, len(src) - 1))])
    y = warp(x[None], sr, list(zip(src, dst)), semitones=2)[0]
    peaks = lambda s: ss.find_peaks(np.abs(ss.hilbert(s)), height=0.2, distance=sr // 8)[0]  # noqa: E731
    bias = np.median(peaks(x) - pos)
    want = np.interp(pos / sr, src, dst) * sr + bias
    got = peaks(y)
    err = np.array([np.min(np.abs(got - w)) for w in want])
    assert np.median(err) < 0.002 * sr and err.max() < 0.006 * sr, err
    assert np.abs(np.diff(y)).max() < 2 * np.abs(np.diff(x)).max()  # no clicks at the joins


@pytest.mark.slow
def test_sync_cli_puts_a_onsets_on_b_onsets(tmp_path, cover):
    from unbake.audio import read_audio, write_audio

    a, b, _, tb = cover
    write_audio(tmp_path / "a.wav", a[None], SR)
    write_audio(tmp_path / "b.wav", b[None], SR)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-m", "unbake", "sync", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"),
                        "-o", str(tmp_path / "a_on_b.wav"), "--map", str(tmp_path / "map.json"),
                        "--plot", str(tmp_path / "warp.png")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "map.json").read_text())
    assert data["semitones"] == -3 and data["anchors"] and data["regions"]
    assert (tmp_path / "warp.png").read_bytes()[:4] == b"\x89PNG"
    out, sr = read_audio(tmp_path / "a_on_b.wav")
    assert sr == SR and abs(out.shape[1] - len(b)) <= 1
    # A's onsets in the warped audio against B's (the same detector on both)
    err = nearest_ms(onsets_s(out[0]), onsets_s(b))
    assert np.median(err) <= 30 and np.percentile(err, 95) <= 80, (np.median(err), np.percentile(err, 95))
    # and against B's score
    err = nearest_ms(onsets_s(out[0]), tb)
    assert np.median(err) <= 30 and np.percentile(err, 95) <= 80, (np.median(err), np.percentile(err, 95))


@pytest.mark.slow
def test_unrelated_songs_get_low_confidence(tmp_path, cover):
    _, b, _, _ = cover
    other = render(other_score(), steady(112, 0.2), timbre="reed", seed=3)
    tm = time_map(other, b, SR)
    assert tm.confidence < 0.5 and tm.low_confidence()
    with pytest.raises(LowConfidenceError, match="do not match"):
        require_confidence(tm)
    from unbake.audio import write_audio

    write_audio(tmp_path / "other.wav", other[None], SR)
    write_audio(tmp_path / "b.wav", b[None], SR)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-m", "unbake", "sync", str(tmp_path / "other.wav"), str(tmp_path / "b.wav"),
                        "-o", str(tmp_path / "x.wav")], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "low confidence" in r.stderr and "do not match" in r.stderr
    assert not (tmp_path / "x.wav").exists() and not list(tmp_path.glob("*.part*"))


def free_tempo_drums():
    """A melody over a shaker on every beat, tempo drifting +-12 % around 96 BPM (no click)."""
    notes = score()
    fa = rubato(96, depth=0.12, fermata_beat=1000, rush=(1000, 1000), seed=4)
    y = render(notes, fa, timbre="piano", seed=2).astype(np.float64)
    rng = np.random.default_rng(0)
    th = np.arange(int(0.03 * SR)) / SR
    for k in range(0, 52):
        i = int(round(fa(k) * SR))
        hit = (0.25 if k % 4 == 0 else 0.12) * rng.standard_normal(th.size) * np.exp(-th * 120)
        y[i:i + th.size] += hit[: len(y) - i]
    return (0.5 * y / np.abs(y).max()).astype(np.float32), fa


@pytest.mark.slow
def test_warp_cli_puts_beats_on_the_grid(tmp_path):
    from unbake.audio import read_audio, write_audio

    y, fa = free_tempo_drums()
    write_audio(tmp_path / "free.wav", y[None], SR)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-m", "unbake", "warp", str(tmp_path / "free.wav"), "--to-bpm", "120",
                        "-o", str(tmp_path / "grid.wav")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    out, _ = read_audio(tmp_path / "grid.wav")
    # the detector's own lateness, measured on the input against the true beats, is taken off
    y_onsets = onsets_s(y)
    true_beats = np.array([fa(k) for k in range(48)])
    late_s = np.median([y_onsets[np.argmin(np.abs(y_onsets - t))] - t for t in true_beats])
    assert 0 <= late_s < 0.03
    found = onsets_s(out[0]) - late_s
    period = 0.5
    grid = np.arange(np.ceil(found[0] / period) * period, found[-1] - 0.5, period)
    err = nearest_ms(found, grid)
    assert np.median(err) <= 25, np.median(err)
    # the first downbeat sits on a bar line: the grid starts at a whole bar
    assert abs(found[0] / (4 * period) - round(found[0] / (4 * period))) * 4 * period < 0.03


def test_tempo_curve_follows_a_drifting_performance():
    from unbake.analysis.tempo import track_beats

    y, fa = free_tempo_drums()
    beats, curve = track_beats(y)
    t = np.array([c[0] for c in curve])
    bpm = np.array([c[1] for c in curve])
    # the true local tempo at each curve point: 60 / the beat length there
    true_bpm = []
    for x in t:
        k = np.searchsorted([fa(i) for i in range(60)], x) - 1
        true_bpm.append(60.0 / (fa(k + 1) - fa(k)))
    rel = np.abs(bpm / np.array(true_bpm) - 1)
    assert np.median(rel) < 0.05, np.median(rel)
    assert bpm.max() / bpm.min() > 1.1  # a curve, not one number


def test_low_confidence_regions_are_merged_and_named():
    from unbake.analysis.timemap import Region, low_confidence_lines

    conf = [0.9, 0.3, 0.2, 0.8, 0.1]
    regions = tuple(Region(4.0 * i + 38, 4.0 * i + 42, c) for i, c in enumerate(conf))
    tm = TimeMap(anchors=((0.0, 0.0), (60.0, 60.0)), semitones=0, confidence=0.3, regions=regions,
                 duration_a_s=60.0, duration_b_s=60.0)
    assert low_confidence_lines(tm) == ["0:42–0:50: low confidence (0.25)", "0:54–0:58: low confidence (0.10)"]
    assert [r.start_s for r in tm.low_confidence(0.15)] == [54.0]


def test_dtw_equals_librosa_including_ties():
    """The step-constrained DTW: the accumulated cost and the path of librosa.sequence.dtw, also
    where several paths cost the same (costs on a coarse grid), and no path when one sequence is
    more than three times as long as the other."""
    librosa = pytest.importorskip("librosa")
    from unbake.analysis.timemap import STEP_WEIGHTS, STEPS, dtw

    rng = np.random.default_rng(3)
    for n, m in ((40, 55), (230, 170), (12, 30)):
        for cost in (rng.random((n, m)), np.round(rng.random((n, m)) * 3) / 3):
            D, wp = librosa.sequence.dtw(C=cost, step_sizes_sigma=STEPS, weights_mul=STEP_WEIGHTS)
            total, path = dtw(cost, STEPS, STEP_WEIGHTS)
            assert total == D[-1, -1]
            np.testing.assert_array_equal(path, wp[::-1])
    total, path = dtw(rng.random((100, 20)), STEPS, STEP_WEIGHTS)
    assert total == np.inf and path.shape == (0, 2)
    with pytest.raises(ValueError, match="advance both"):
        dtw(rng.random((5, 5)), np.array([[1, 0]]), np.ones(1))
