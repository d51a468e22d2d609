"""Transcription on synthesised signals with known notes: a bass line and a melody rendered with
a simple additive synthesizer, and a drum pattern from synthetic kick, snare and hi-hat hits.
``benchmarks/bench_transcribe.py`` renders many more with the same functions."""

import json

import numpy as np
import pytest

SR = 44100
RANGES = {"bass": (28, 52), "melody": (57, 81)}  # E1..E3, A3..A5
KICK, SNARE, HAT = 36, 38, 42


# ---------------------------------------------------------------------------- synthesis


def random_line(rng, kind, bpm=120.0, bars=2, start_s=0.5):
    """``[(start_s, end_s, midi pitch, velocity)]``: eighths to halves, legato or detached."""
    beat = 60.0 / bpm
    lo, hi = RANGES[kind]
    notes, t, p = [], start_s, int(rng.integers(lo, hi))
    while t < start_s + bars * 4 * beat:
        dur = beat * float(rng.choice([0.5, 1.0, 1.5, 2.0], p=[0.4, 0.3, 0.15, 0.15]))
        gap = min(beat * float(rng.choice([0.0, 0.25, 0.5], p=[0.3, 0.4, 0.3])), dur / 2)
        p = int(np.clip(p + rng.integers(-5, 6), lo, hi))
        notes.append((t, t + dur - gap, p, int(rng.integers(70, 121))))
        t += dur
    return notes


def render_line(notes, *, vibrato_cents=0.0, noise_db=-70.0, seed=0, sr=SR):
    """Six decaying harmonics per note, 5 ms attack, 30 ms release; optional 5.5 Hz vibrato and
    a white-noise floor."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int((max(n[1] for n in notes) + 0.5) * sr))
    for start, end, pitch, vel in notes:
        n, rel = int((end - start) * sr), int(0.03 * sr)
        t = np.arange(n + rel) / sr
        f = 440.0 * 2 ** ((pitch - 69) / 12) * 2 ** (vibrato_cents / 1200 * np.sin(2 * np.pi * 5.5 * t))
        phase = 2 * np.pi * np.cumsum(f) / sr + rng.uniform(0, 2 * np.pi)
        tone = sum(0.6 ** (k - 1) * np.sin(k * phase) for k in range(1, 7))
        env = np.exp(-1.5 * t)
        att = int(0.005 * sr)
        env[:att] *= np.linspace(0, 1, att)
        env[n:] = env[n - 1] * np.linspace(1, 0, rel)
        i = int(start * sr)
        y[i:i + n + rel] += vel / 127 * 0.3 * tone * env
    y += 10 ** (noise_db / 20) * rng.standard_normal(y.size)
    return y.astype(np.float32)[None]


def drum_hit(drum, rng, sr=SR):
    from scipy.signal import butter, sosfilt

    if drum == KICK:  # pitch-swept sine body and a beater click
        t = np.arange(int(0.35 * sr)) / sr
        body = np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-t / 0.03)) / sr) * np.exp(-t / 0.12)
        return body + 0.3 * rng.standard_normal(t.size) * np.exp(-t / 0.003)
    if drum == SNARE:  # a 185 Hz shell tone and band-passed wire noise
        t = np.arange(int(0.25 * sr)) / sr
        wires = sosfilt(butter(4, [900, 9000], "bandpass", fs=sr, output="sos"), rng.standard_normal(t.size))
        return 0.6 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.05) + 0.8 * wires * np.exp(-t / 0.07)
    t = np.arange(int(0.08 * sr)) / sr  # closed hi-hat: high-passed noise, fast decay
    return 0.5 * sosfilt(butter(6, 7000, "highpass", fs=sr, output="sos"), rng.standard_normal(t.size)) * np.exp(-t / 0.02)


def random_pattern(rng, bpm=120.0, bars=2, start_s=0.3):
    """``[(time_s, drum)]`` on a sixteenth grid: kicks on 1 and 3 and at random, snares on 2
    and 4 and at random, hi-hats on the eighths and at random."""
    step = 60.0 / bpm / 4
    hits = []
    for i in range(bars * 16):
        t, pos = start_s + i * step, i % 16
        if pos % 8 == 0 or (pos % 8 != 4 and rng.random() < 0.15):
            hits.append((t, KICK))
        if pos % 8 == 4 or rng.random() < 0.06:
            hits.append((t, SNARE))
        if pos % 2 == 0 or rng.random() < 0.2:
            hits.append((t, HAT))
    return hits


def render_drums(hits, seed=0, sr=SR):
    rng = np.random.default_rng(seed)
    y = np.zeros(int((max(h[0] for h in hits) + 0.6) * sr))
    for t, drum in hits:
        x = drum_hit(drum, rng, sr) * rng.uniform(0.6, 1.0)
        i = int(t * sr)
        y[i:i + x.size] += x[:y.size - i]
    return (0.3 * y).astype(np.float32)[None]


# ---------------------------------------------------------------------------- scoring


def line_scores(ref, est):
    """``(onset F-measure at 50 ms, pitch accuracy of onset-matched notes)`` with mir_eval."""
    import mir_eval

    ref_iv = np.array([[a, b] for a, b, _, _ in ref])
    ref_hz = np.array([440.0 * 2 ** ((p - 69) / 12) for _, _, p, _ in ref])
    if not est:
        return 0.0, 0.0
    est_iv = np.array([[n.start_s, n.end_s] for n in est])
    est_hz = np.array([440.0 * 2 ** ((n.pitch - 69) / 12) for n in est])
    _, _, f = mir_eval.transcription.onset_precision_recall_f1(ref_iv, est_iv, onset_tolerance=0.05)
    pairs = mir_eval.transcription.match_note_onsets(ref_iv, est_iv, onset_tolerance=0.05)
    acc = float(np.mean([abs(1200 * np.log2(est_hz[j] / ref_hz[i])) <= 50 for i, j in pairs])) if pairs else 0.0
    return float(f), acc


def drum_scores(ref, est):
    """``{drum: onset F-measure at 50 ms}`` with mir_eval."""
    import mir_eval

    out = {}
    for drum in (KICK, SNARE, HAT):
        r = np.array([t for t, d in ref if d == drum])
        e = np.array([n.start_s for n in est if n.pitch == drum])
        out[drum] = float(mir_eval.onset.f_measure(r, e, window=0.05)[0])
    return out


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("kind,seed,vibrato", [("bass", 11, 0.0), ("melody", 12, 25.0)])
def test_monophonic_lines(kind, seed, vibrato):
    from unbake.transcribe import transcribe_line

    ref = random_line(np.random.default_rng(seed), kind)
    notes = transcribe_line(render_line(ref, vibrato_cents=vibrato, seed=seed), SR, kind)
    f, acc = line_scores(ref, notes)
    assert f >= 0.9 and acc >= 0.95, (f, acc)
    assert all(1 <= n.velocity <= 127 and n.end_s > n.start_s for n in notes)


def test_velocity_follows_loudness():
    from unbake.transcribe import transcribe_line

    ref = [(0.5, 1.0, 40, 120), (1.25, 1.75, 40, 40)]  # the second ~10 dB quieter
    loud, soft = transcribe_line(render_line(ref), SR, "bass")
    assert loud.velocity - soft.velocity >= 10


def test_drum_pattern():
    from unbake.transcribe import transcribe_drums

    hits = random_pattern(np.random.default_rng(21))
    scores = drum_scores(hits, transcribe_drums(render_drums(hits, seed=21), SR))
    assert min(scores.values()) >= 0.85, scores


def test_midi_file_tempo_map_and_quantize(tmp_path):
    import mido

    from unbake.transcribe import Note, TempoMap, read_midi_notes, write_midi

    beat = 0.5
    beats = 0.3 + beat * np.arange(16)
    tempo = TempoMap(beats, downbeats_s=beats[1::4])  # the second beat is the first "one"
    # 0.8 s before the first "one" is 1.6 beats: a pickup bar of two beats, then 4/4
    assert tempo.meter_events() == [(0, 2), (2 * 480, 4)]
    assert tempo.ticks(beats[1]) == 2 * 480 and tempo.ticks(beats[5]) == 6 * 480
    notes = [Note(0.55, 0.8, 40, 100), Note(1.33, 1.71, 43, 90)]
    write_midi(tmp_path / "a.mid", notes, tempo=tempo, program=33)
    back = read_midi_notes(tmp_path / "a.mid")
    assert [n.pitch for n in back] == [40, 43]
    assert np.allclose([n.start_s for n in back], [n.start_s for n in notes], atol=0.003)
    write_midi(tmp_path / "q.mid", notes, tempo=tempo, quantize=__import__("fractions").Fraction(1, 16))
    ticks, now = [], 0
    for msg in mido.MidiFile(tmp_path / "q.mid").tracks[1]:
        now += msg.time
        if msg.type == "note_on":
            ticks.append(now)
    assert ticks and all(t % 120 == 0 for t in ticks)
    write_midi(tmp_path / "d.mid", [Note(0.3, 0.4, KICK, 100)], drums=True, tempo=tempo)
    assert {m.channel for m in mido.MidiFile(tmp_path / "d.mid").tracks[1] if m.type == "note_on"} == {9}


def test_cli_transcribe(tmp_path):
    from typer.testing import CliRunner

    from unbake.audio import write_audio
    from unbake.cli import app

    ref = random_line(np.random.default_rng(3), "bass", bars=3)
    write_audio(tmp_path / "bass.wav", render_line(ref), SR)
    runner = CliRunner()
    res = runner.invoke(app, ["transcribe", str(tmp_path / "bass.wav"), "--as", "bass", "-o",
                              str(tmp_path / "bass.mid"), "--json", "--quantize", "1/16"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout[res.stdout.index("{"):])
    assert data["kind"] == "bass" and len(data["notes"]) == pytest.approx(len(ref), abs=1)
    assert (tmp_path / "bass.mid").stat().st_size > 0
    res = runner.invoke(app, ["transcribe", str(tmp_path / "bass.wav"), "-o", str(tmp_path / "x.mid")])
    assert res.exit_code != 0 and "--as" in res.output and not (tmp_path / "x.mid").exists()
    res = runner.invoke(app, ["transcribe", str(tmp_path / "bass.wav"), "--as", "bass", "-o",
                              str(tmp_path / "bass.mid")])
    assert res.exit_code != 0 and "already exists" in res.output
    res = runner.invoke(app, ["transcribe", str(tmp_path / "bass.wav"), "--as", "bass", "--json",
                              "--quantize", "3/0"])
    assert res.exit_code != 0 and "--quantize" in res.output


def test_song_stem_is_separated_then_transcribed(tmp_path, monkeypatch):
    """``--stem``: the song is separated (cached), the stem's name picks the kind, and the tempo
    map comes from the analysis of all the stems."""
    from unbake.audio import write_audio
    from unbake.transcribe import transcribe_file

    monkeypatch.setenv("UNBAKE_CACHE", str(tmp_path / "cache"))
    ref = random_line(np.random.default_rng(31), "melody", bars=3)
    voice = render_line(ref, seed=31)[0]
    t = np.arange(voice.size) / SR
    band = 0.1 * np.sin(2 * np.pi * 55 * t)  # hard left: not the centre "vocals"
    write_audio(tmp_path / "song.wav", np.stack([voice + band, voice]).astype(np.float32), SR)
    result = transcribe_file(tmp_path / "song.wav", stem="vocals", model="center")
    assert result.kind == "melody" and result.info["stem"] == "vocals"
    f, acc = line_scores(ref, result.notes)
    assert f >= 0.8 and acc >= 0.9, (f, acc)
    from unbake.errors import UnbakeError

    with pytest.raises(UnbakeError, match="--as"):
        transcribe_file(tmp_path / "song.wav", stem="accompaniment", model="center")


def test_missing_librosa_names_the_extra(monkeypatch):
    import sys

    from unbake.errors import DependencyError
    from unbake.transcribe.notes import librosa_module

    monkeypatch.setitem(sys.modules, "librosa", None)
    with pytest.raises(DependencyError, match=r"pip install unbake\[transcribe\]"):
        librosa_module()
