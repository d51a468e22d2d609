"""unbake's dynamic-programming beat tracker gives librosa's beats (it replaces
``librosa.beat.beat_track``, whose import compiles numba kernels in every process)."""

import numpy as np
import pytest

from unbake.analysis.beats import beat_frames

SR, HOP = 22050, 512
FPS = SR / HOP


def _envelope(rng, n: int, bpm: float, lead_silence: int) -> np.ndarray:
    """Noise-like onset strength with accents every beat and silence at the start."""
    period = FPS * 60 / bpm
    env = rng.gamma(1.0, 0.3, n).astype(np.float32)
    env += (np.arange(n) % period < 1.0) * rng.uniform(0.5, 3.0) * rng.uniform(0, 1, n).astype(np.float32)
    env[:lead_silence] = 0
    return env


@pytest.mark.parametrize("seed", range(12))
def test_beats_equal_librosa(seed):
    librosa = pytest.importorskip("librosa")
    if not librosa.__version__.startswith("0.11."):
        pytest.skip(f"the tracker follows librosa 0.11's; librosa {librosa.__version__} is installed")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(300, 4000))
    bpm_true = rng.uniform(60, 200)
    env = _envelope(rng, n, bpm_true, int(rng.integers(0, 50)))
    tempos = [bpm_true * rng.uniform(0.9, 1.1),  # one tempo
              rng.uniform(60, 200) + 10 * np.sin(np.arange(n) / 300)]  # one per frame
    for bpm in tempos:
        for tightness, trim in ((400, True), (100, True), (100, False)):
            _, expected = librosa.beat.beat_track(onset_envelope=env, sr=SR, hop_length=HOP, bpm=bpm,
                                                  tightness=tightness, trim=trim, units="frames")
            got = beat_frames(env, bpm, FPS, tightness=tightness, trim=trim)
            assert len(expected) > 3
            np.testing.assert_array_equal(got, expected)


def test_beats_follow_a_click_track_and_refuse_bad_input():
    bpm = 120.0
    env = np.zeros(int(30 * FPS), np.float32)
    period = FPS * 60 / bpm
    clicks = np.round(np.arange(10, len(env) - 1, period)).astype(int)
    env[clicks] = 1.0
    got = beat_frames(env, bpm, FPS, tightness=400)
    assert len(got) >= len(clicks) - 2
    assert np.all(np.isin(got, clicks))
    assert beat_frames(np.zeros(100, np.float32), bpm, FPS).size == 0
    with pytest.raises(ValueError, match="positive"):
        beat_frames(env, -1.0, FPS)
    with pytest.raises(ValueError, match="per frame"):
        beat_frames(env, np.full(7, 120.0), FPS)
    with pytest.raises(ValueError, match="mono"):
        beat_frames(np.stack([env, env]), bpm, FPS)


def test_tags_analysis_time_maps_and_drum_transcription_never_import_librosa():
    """Its import (numba, scipy.signal) costs more CPU than the analysis, in every process."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from unbake.transcribe.timing import _warm_up, tags_from_stems\n"
            "_warm_up()\n"
            "sr = 22050\n"
            "t = np.arange(10 * sr) / sr\n"
            "clicks = (np.sin(2 * np.pi * 2 * t) > 0.95) * np.sin(2 * np.pi * 1000 * t)\n"
            "tags = tags_from_stems({'drums': clicks, 'pitched': 0.3 * np.sin(2 * np.pi * 220 * t)}, sr)\n"
            "print(round(tags.bpm), tags.key_name)\n"
            "from unbake.analysis import analyze\n"
            "mix = clicks + 0.3 * np.sin(2 * np.pi * 220 * t)\n"
            "a = analyze(mix, sr)\n"  # the full analysis too: tempo curve and downbeats
            "assert len(a.downbeats_s) and len(a.tempo_curve)\n"
            "from unbake.analysis import find_offset\n"
            "assert abs(find_offset(mix[:-2205], mix[2205:], sr, max_offset_s=0.2) - 0.1) < 0.01\n"  # alignment
            "from unbake.analysis.timemap import time_map\n"
            "assert time_map(mix, mix, sr).semitones == 0\n"  # and time maps
            "from unbake.transcribe.drums import transcribe_drums\n"
            "assert transcribe_drums(clicks, sr)\n"  # and drum transcription
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'librosa', 'numba', 'llvmlite'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    found, modules = out.stdout.splitlines()
    assert found.split()[0] == "120"  # the clicks' tempo: the analysis ran
    assert modules == "[]"
