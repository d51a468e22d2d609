"""Tempo, key, stretch/shift, matching and alignment on synthetic signals with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unbake.analysis.align import find_offset
from unbake.analysis.analyze import Key, analyze, key_from_chroma, parse_key
from unbake.analysis.transforms import (TransformError, match, pitch_shift, shortest_shift, stretch_to_bpm,
                                     time_stretch)

SR = 22050


# ------------------------------------------------------------------------------ test signals


def drum_loop(bpm: float, seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Kick on beats 1 and 3, snare on 2 and 4, closed hi-hat on every eighth: ``(t,)``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n)
    beat_s = 60.0 / bpm
    tk = np.arange(int(0.25 * sr)) / sr
    kick = np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-tk * 30)) / sr) * np.exp(-tk * 12)
    ts = np.arange(int(0.15 * sr)) / sr
    snare = (0.6 * rng.standard_normal(ts.size) + 0.4 * np.sin(2 * np.pi * 190 * ts)) * np.exp(-ts * 25)
    th = np.arange(int(0.04 * sr)) / sr

    def add(sound: np.ndarray, at_s: float) -> None:
        p = int(round(at_s * sr))
        m = min(len(sound), n - p)
        if m > 0:
            out[p:p + m] += sound[:m]

    for i in range(int(seconds / beat_s) + 1):
        add(kick if i % 2 == 0 else snare, i * beat_s)
        for half in (0.0, 0.5):
            add(0.1 * np.diff(rng.standard_normal(th.size), prepend=0) * np.exp(-th * 120), (i + half) * beat_s)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def clicks(bpm: float, seconds: float, sr: int = SR) -> np.ndarray:
    """A metronome: 1 kHz blips, the first of each bar louder."""
    n = int(seconds * sr)
    out = np.zeros(n)
    t = np.arange(int(0.02 * sr)) / sr
    blip = np.sin(2 * np.pi * 1000 * t) * np.exp(-t * 300)
    for i in range(int(seconds * bpm / 60) + 1):
        p = int(round(i * 60 / bpm * sr))
        m = min(len(blip), n - p)
        if m > 0:
            out[p:p + m] += blip[:m] * (1.0 if i % 4 == 0 else 0.6)
    return out.astype(np.float32)


def note(midi: int, seconds: float, sr: int = SR) -> np.ndarray:
    """A plucked tone with six harmonics (amplitudes 0.6^k) at MIDI pitch ``midi``."""
    t = np.arange(int(seconds * sr)) / sr
    f = 440.0 * 2 ** ((midi - 69) / 12)
    x = sum(0.6 ** (h - 1) * np.sin(2 * np.pi * f * h * t) for h in range(1, 7) if f * h < sr / 2)
    return x * np.minimum(1.0, t / 0.01) * np.exp(-t * 1.5)


def sequence(chords: list[list[int]], seconds: float, sr: int = SR) -> np.ndarray:
    x = np.concatenate([sum(note(m, seconds, sr) for m in chord) for chord in chords])
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def progression(root: int, minor: bool, sr: int = SR) -> np.ndarray:
    """I-IV-V-I (major) or i-iv-V-i (minor, harmonic V), each chord with a bass note."""
    third = 3 if minor else 4
    chords = [(0, third), (5, third), (7, 4), (0, third)]
    return sequence([[root + d - 24, root + d - 12, root + d - 12 + q, root + d - 5] for d, q in chords], 0.8, sr)


def scale(root: int, steps: list[int]) -> np.ndarray:
    notes = [root]
    for s in steps:
        notes.append(notes[-1] + s)
    return sequence([[n] for n in notes + notes[::-1][1:]], 0.35)


def peak_hz(x: np.ndarray, sr: int) -> float:
    """Frequency of the strongest FFT bin, refined by a parabola through log magnitudes."""
    n = len(x)
    spec = np.abs(np.fft.rfft(x * np.hanning(n)))
    i = int(np.argmax(spec))
    a, b, c = np.log(spec[i - 1:i + 2])
    return (i + 0.5 * (a - c) / (a - 2 * b + c)) * sr / n


# ------------------------------------------------------------------------------ tempo


@pytest.mark.parametrize("bpm", [90, 120, 140])
@pytest.mark.parametrize("make", [drum_loop, clicks], ids=["drums", "clicks"])
def test_tempo_of_known_patterns(make, bpm):
    result = analyze(make(bpm, 8.0), SR)
    assert result.bpm == pytest.approx(bpm, abs=1.0)
    beats = np.array(result.beats_s)
    assert len(beats) >= 8
    # beats sit on the grid (the pattern starts at 0 s)
    phase = (beats / (60 / bpm) + 0.5) % 1 - 0.5
    assert np.median(np.abs(phase)) * 60 / bpm < 0.03


def test_analysis_without_curve_and_downbeats_gives_the_same_tempo_beats_and_key():
    loop = drum_loop(120, 8.0)
    x = loop + 0.3 * np.resize(progression(57, True), loop.shape)
    full, lean = analyze(x, SR), analyze(x, SR, full=False)
    assert (lean.bpm, lean.beats_s, lean.key, lean.key_confidence) == (full.bpm, full.beats_s, full.key, full.key_confidence)
    assert full.tempo_curve and full.downbeats_s
    assert lean.tempo_curve == () and lean.downbeats_s == ()


def test_tempo_prior_resolves_octave():
    # a click every 0.5 s is 120 BPM or 60 BPM; the prior picks the level nearer 120, a prior at
    # 60 with a range that excludes 120 gives 60
    x = clicks(120, 8.0)
    assert analyze(x, SR).bpm == pytest.approx(120, abs=1)
    assert analyze(x, SR, prior_bpm=60, bpm_range=(40, 90)).bpm == pytest.approx(60, abs=1)


def test_stretched_loop_has_the_new_tempo():
    sr = 44100
    loop = drum_loop(120, 8.0, sr=sr)
    slower = stretch_to_bpm(loop[None], sr, 120, 100)
    assert slower.shape == (1, round(loop.size * 120 / 100))
    assert analyze(slower, sr).bpm == pytest.approx(100, abs=1.0)


# ------------------------------------------------------------------------------ key


@pytest.mark.parametrize("signal, expected", [
    (lambda: progression(60, False), "C major"),
    (lambda: progression(57, True), "A minor"),
    (lambda: progression(62, True), "D minor"),
    (lambda: progression(66, False), "F# major"),
    (lambda: scale(60, [2, 2, 1, 2, 2, 2, 1]), "C major"),
    (lambda: scale(62, [2, 1, 2, 2, 1, 3, 1]), "D minor"),      # harmonic minor
    (lambda: scale(57, [2, 1, 2, 2, 1, 2, 2]), "A minor"),      # natural minor: C major's notes
    (lambda: scale(66, [2, 2, 1, 2, 2, 2, 1]), "F# major"),
], ids=["C-prog", "Am-prog", "Dm-prog", "F#-prog", "C-scale", "Dm-scale", "Am-scale", "F#-scale"])
def test_key_of_known_music(signal, expected):
    result = analyze(signal(), SR)
    assert result.key.name == expected
    assert result.key_confidence > 0.6


def test_key_from_chroma_profiles_and_flat_input():
    # the Krumhansl-Kessler profile itself, rotated to E, is E major / E minor exactly
    from unbake.analysis.analyze import KK_MAJOR, KK_MINOR

    key, r, scores = key_from_chroma(np.roll(KK_MAJOR, 4))
    assert key == Key(4, "major") and r == pytest.approx(1.0)
    assert len(scores) == 24
    assert key_from_chroma(np.roll(KK_MINOR, 4))[0] == Key(4, "minor")
    assert key_from_chroma(np.ones(12))[1] == 0.0


def test_parse_key_and_relative():
    assert parse_key("D minor") == Key(2, "minor")
    assert parse_key("F# major") == parse_key("Gb") == Key(6, "major")
    assert parse_key("Bbm") == Key(10, "minor")
    assert parse_key("Am").relative() == Key(0, "major")
    assert Key(0, "major").relative().name == "A minor"
    with pytest.raises(ValueError):
        parse_key("H major")


# ------------------------------------------------------------------------------ stretch and shift


def test_pitch_shift_moves_a_tone_and_keeps_length():
    sr = 44100
    t = np.arange(2 * sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    for formants in (False, True):
        down = pitch_shift(tone, sr, -2, preserve_formants=formants)
        assert down.shape == tone.shape
        assert peak_hz(down[0, sr // 2: sr // 2 + 32768], sr) == pytest.approx(392.0, abs=1.0)
    assert np.array_equal(pitch_shift(tone, sr, 0), tone)


def test_time_stretch_keeps_pitch():
    sr = 44100
    t = np.arange(2 * sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    longer = time_stretch(tone, sr, 0.8)
    assert longer.shape == (1, round(tone.shape[1] / 0.8))
    assert peak_hz(longer[0, sr // 2: sr // 2 + 32768], sr) == pytest.approx(440.0, abs=1.0)
    with pytest.raises(TransformError):
        time_stretch(tone, sr, 10.0)
    with pytest.raises(TransformError):
        pitch_shift(tone, sr, 40)


# ------------------------------------------------------------------------------ matching


def test_shortest_shift():
    assert shortest_shift(0, 2) == 2
    assert shortest_shift(0, 10) == -2
    assert shortest_shift(0, 6) == -6  # a tritone goes down
    assert shortest_shift(11, 0) == 1


def test_match_same_mode_takes_the_short_way():
    plan = match((120.0, parse_key("C major")), (100.0, parse_key("A major")))
    assert plan.rate == pytest.approx(1.2)
    assert plan.semitones == 3  # A up 3 to C, not down 9
    assert plan.target_key == parse_key("C major") and plan.key_relation == "same key"
    assert "up 3 semitones" in plan.explanation and "100.0 to 120.0 BPM" in plan.explanation


def test_match_uses_relative_key_when_smaller():
    # A in D minor (relative major F); B in F major needs no shift at all
    plan = match((120.0, parse_key("D minor")), (120.0, parse_key("F major")))
    assert plan.semitones == 0 and plan.key_relation == "relative"
    assert plan.target_key == parse_key("F major")
    assert "relative" in plan.explanation
    # B in E minor over C major: relative A minor is +5, parallel C minor is -4 -> parallel
    plan = match((120.0, parse_key("C major")), (120.0, parse_key("E minor")))
    assert plan.semitones == -4 and plan.key_relation == "parallel"
    plan = match((120.0, parse_key("C major")), (120.0, parse_key("E minor")), use_relative=False)
    assert plan.key_relation == "parallel"
    # B in B minor over C major: relative A minor is -2, parallel C minor is +1 -> parallel (smaller)
    assert match((120.0, parse_key("C major")), (120.0, parse_key("B minor"))).semitones == 1
    # B in C# minor over E major: relative C# minor is 0
    plan = match((120.0, parse_key("E major")), (120.0, parse_key("C# minor")))
    assert plan.semitones == 0 and plan.key_relation == "relative"


def test_match_half_and_double_time():
    plan = match((140.0, parse_key("C major")), (72.0, parse_key("C major")))
    assert plan.tempo_relation == "half" and plan.rate == pytest.approx(70 / 72)
    plan = match((70.0, parse_key("C major")), (136.0, parse_key("C major")))
    assert plan.tempo_relation == "double" and plan.rate == pytest.approx(140 / 136)
    plan = match((70.0, parse_key("C major")), (136.0, parse_key("C major")), allow_half_double=False)
    assert plan.rate == pytest.approx(70 / 136)


# ------------------------------------------------------------------------------ alignment


@pytest.mark.parametrize("offset_s", [0.137, -0.21])
def test_find_offset_recovers_a_known_delay(offset_s):
    sr = 44100
    loop = drum_loop(120, 5.0, sr=sr, seed=3)
    n = int(round(abs(offset_s) * sr))
    if offset_s > 0:   # b is the loop started later: b must be delayed by offset to match a
        a, b = loop, loop[n:]
    else:
        a, b = loop[n:], loop
    got = find_offset(np.stack([a, a]), np.stack([b, b]), sr, max_offset_s=0.4)
    assert got == pytest.approx(offset_s, abs=0.010)


def test_find_offset_of_identical_audio_is_zero():
    loop = drum_loop(100, 4.0)
    assert find_offset(loop, loop, SR) == pytest.approx(0.0, abs=0.003)


# ------------------------------------------------------------------------------ extras and CLI


def test_cli_analyze_json_and_match(tmp_path):
    from typer.testing import CliRunner

    from unbake.audio import write_audio
    from unbake.cli import app

    sr = 44100
    beat = drum_loop(120, 6.0, sr=sr)
    chords = np.tile(progression(62, True, sr), 2)[: beat.size]  # D minor, 6.4 s cut to 6 s
    song = 0.3 * beat + chords
    a = write_audio(tmp_path / "a.wav", np.stack([song, song]), sr)
    b = write_audio(tmp_path / "b.wav", drum_loop(100, 6.0, sr=sr)[None], sr)
    runner = CliRunner()
    res = runner.invoke(app, ["analyze", str(a), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["bpm"] == pytest.approx(120, abs=1)
    assert data["key"] == "D minor"
    assert {"beats", "key_confidence", "duration_s"} <= set(data)
    assert data["duration_s"] == pytest.approx(6.0, abs=0.01)
    res = runner.invoke(app, ["analyze", str(a), "--match", str(b)])
    assert res.exit_code == 0, res.output
    import re

    rate = float(re.search(r"\(rate ([0-9.]+)", res.stdout).group(1))
    assert rate == pytest.approx(1.2, abs=0.02)
    assert res.stdout.count("stretch") == 1 and res.stdout.count("rate") == 1  # said once, one wording
    res = runner.invoke(app, ["analyze", str(tmp_path / "missing.wav")])
    assert res.exit_code == 1


@pytest.mark.parametrize("offset_s", [0.137, -0.21])
def test_find_offset_on_a_beat_grid(offset_s):
    # folded onto the loop's 1 s bar (kick, snare) the answer is unique within +-0.5 s
    sr = 44100
    loop = drum_loop(120, 6.0, sr=sr, seed=5)
    n = int(round(abs(offset_s) * sr))
    a, b = (loop, loop[n:]) if offset_s > 0 else (loop[n:], loop)
    assert find_offset(a, b, sr, period_s=1.0) == pytest.approx(offset_s, abs=0.010)
    # folded onto one beat (0.5 s) the same delay is seen modulo a beat
    assert find_offset(a, b, sr, period_s=0.5) == pytest.approx(offset_s, abs=0.010)


def test_a_drone_has_no_tempo_and_cannot_be_matched():
    t = np.arange(3 * SR) / SR
    result = analyze((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    assert np.isnan(result.bpm) and result.to_dict()["bpm"] is None
    with pytest.raises(TransformError, match="B has no steady beat"):
        match((120.0, parse_key("C major")), result)


def test_cli_analyze_json_has_tempo_curve_and_downbeats(tmp_path):
    from typer.testing import CliRunner

    from unbake.audio import write_audio
    from unbake.cli import app

    a = write_audio(tmp_path / "a.wav", drum_loop(120, 8.0)[None], SR)
    res = CliRunner().invoke(app, ["analyze", str(a), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    bpms = [b for _, b in data["tempo_curve"]]
    assert len(bpms) >= 8 and np.median(bpms) == pytest.approx(120, rel=0.03)
    times = [t for t, _ in data["tempo_curve"]]
    assert times == sorted(times) and 0 < times[0] < times[-1] < 8.0
    # kick on beats 1 and 3: a downbeat every fourth beat, each one a beat
    down = data["downbeats"]
    assert len(down) >= 3 and np.allclose(np.diff(down), 2.0, atol=0.05)
    assert all(min(abs(d - b) for b in data["beats"]) < 1e-6 for d in down)


def test_analyze_and_mashup_give_one_answer_for_one_file(tmp_path):
    from typer.testing import CliRunner

    from unbake.audio import write_audio
    from unbake.cli import app
    from unbake.mashup import Mashup, MashupProject
    from unbake.stems import StemSet

    sr = 44100
    beat = drum_loop(120, 6.0, sr=sr)
    song = 0.3 * beat + np.tile(progression(62, True, sr), 2)[: beat.size]
    path = write_audio(tmp_path / "song.wav", np.stack([song, song]), sr)
    res = CliRunner().invoke(app, ["analyze", str(path), "--json"])
    cli = json.loads(res.stdout)
    # the mash-up has the song's (here: made-up) stems in memory; its analysis is still the file's
    stems = StemSet({"drums": np.stack([beat, beat]) * 0.3, "other": np.stack([song, song]) * 0.0 + 0.01}, sr)
    job = Mashup(MashupProject.parse({"songs": {"s": str(path)}, "tracks": [{"stem": "s:drums"}]}),
                 stems={"s": stems})
    found = job.analysis("s").to_dict()
    assert found == {k: cli[k] for k in found}
