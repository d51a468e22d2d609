"""Tempo and key tags (ID3, Vorbis comments, MP4 atoms, WAV's ID3 chunk) and the track.json
sidecar, from one analysis per track."""

import json
import signal

import numpy as np
import pytest

from unbake.audio import write_audio
from unbake.audio.tags import TrackTags, camelot_key, read_tags, short_key, write_tags

SR = 44100
BPM = 120.0


def bar_music(bars=6, bpm=BPM, sr=SR, start_s=0.25):
    """4/4 bars: a strong kick on each bar's first beat, softer ones on the others, and an
    A minor / F major / C major / G major chord that changes on the bar line."""
    beat = 60.0 / bpm
    n = int((start_s + bars * 4 * beat + 1.0) * sr)
    y = np.zeros(n)
    chords = [(57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62)]
    t_kick = np.arange(int(0.2 * sr)) / sr
    kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-t_kick / 0.02)) * t_kick) * np.exp(-t_kick / 0.06)
    for b in range(bars):
        t0 = start_s + b * 4 * beat
        i0 = int(t0 * sr)
        t = np.arange(int(4 * beat * sr)) / sr
        for p in chords[b % 4]:
            y[i0:i0 + t.size] += 0.08 * np.sin(2 * np.pi * 440 * 2 ** ((p - 69) / 12) * t) * np.exp(-t / 2)
        for k in range(4):
            i = int((t0 + k * beat) * sr)
            y[i:i + kick.size] += (0.9 if k == 0 else 0.35) * kick
    return np.stack([y, y]).astype(np.float32), start_s


@pytest.mark.parametrize("tonic,mode,code", [(0, "major", "8B"), (9, "minor", "8A"), (7, "major", "9B"),
                                             (4, "minor", "9A"), (5, "major", "7B"), (2, "minor", "7A"),
                                             (11, "major", "1B"), (8, "minor", "1A"), (1, "major", "3B"),
                                             (6, "minor", "11A")])
def test_camelot_wheel(tonic, mode, code):
    assert camelot_key(tonic, mode) == code


def test_short_key():
    assert short_key("A", "minor") == "Am" and short_key("F#", "major") == "F#"


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "m4a"])
def test_tags_in_every_format(tmp_path, fmt):
    import mutagen

    path = tmp_path / f"x.{fmt}"
    audio = np.zeros((2, SR), np.float32)
    if fmt == "m4a":
        from conftest import encode_with_av

        encode_with_av(path, audio, SR, "aac")
    else:
        write_audio(path, audio, SR)
    tags = TrackTags(bpm=127.6, key="F#m", camelot="11A")
    write_tags(path, tags)
    assert read_tags(path) == {"bpm": "128" if fmt in ("wav", "mp3", "m4a") else "127.6", "key": "F#m",
                               "camelot": "11A"}
    f = mutagen.File(str(path))
    # the fields DJ programs read, by their own names
    if fmt in ("wav", "mp3"):
        assert str(f.tags["TBPM"]) == "128" and str(f.tags["TKEY"]) == "F#m"
    elif fmt == "m4a":
        assert f.tags["tmpo"] == [128] and bytes(f.tags["----:com.apple.iTunes:initialkey"][0]) == b"F#m"
        assert bytes(f.tags["----:com.apple.iTunes:BPM"][0]) == b"127.6"
    else:
        assert f.tags["BPM"] == ["127.6"] and f.tags["INITIALKEY"] == ["F#m"]
    from unbake.audio import read_audio

    back, sr = read_audio(path)  # still decodes
    assert sr == SR and back.shape[0] == 2


def test_analysis_gives_tempo_downbeats_and_a_whole_track_grid():
    from unbake.transcribe.timing import tags_from_stems

    audio, start_s = bar_music()
    tags = tags_from_stems({"mixture": audio}, SR)
    assert tags.bpm == pytest.approx(BPM, rel=0.02)
    beat = 60.0 / BPM
    bar_lines = start_s + np.arange(8) * 4 * beat  # the grid may run a bar past the music
    found = np.asarray(tags.downbeats_s)
    assert len(found) >= 4
    assert np.all(np.min(np.abs(found[:, None] - bar_lines[None]), axis=1) < 0.05)
    assert tags.camelot == camelot_key({"C": 0, "Am": 9, "F": 5, "G": 7, "Dm": 2, "Em": 4}.get(tags.key, 0),
                                       "minor" if tags.key.endswith("m") else "major")
    # an excerpt: tracked beats inside it, the grid at the measured tempo outside it
    half = audio.shape[1] // 2
    part = tags_from_stems({"mixture": audio[:, half - 4 * SR:half + 4 * SR]}, SR,
                           offset_s=(half - 4 * SR) / SR, duration_s=audio.shape[1] / SR)
    beats = np.asarray(part.beats_s)
    assert beats[0] < beat and beats[-1] > audio.shape[1] / SR - 2 * beat
    assert np.allclose(np.diff(beats), beat, rtol=0.05)
    assert part.info["analysed_span_s"][0] == pytest.approx((half - 4 * SR) / SR, abs=1e-3)


def test_separate_writes_tags_and_one_sidecar(tmp_path):
    from typer.testing import CliRunner

    from unbake.cli import app

    audio, _ = bar_music()
    src = tmp_path / "song.wav"
    write_audio(src, audio, SR)
    res = CliRunner().invoke(app, ["separate", str(src), "-o", str(tmp_path / "out"), "-n", "center",
                                   "--format", "flac"])
    assert res.exit_code == 0, res.output
    sidecar = json.loads((tmp_path / "out/song/track.json").read_text())
    assert set(sidecar) >= {"bpm", "key", "camelot", "beats", "downbeats"}
    assert sidecar["bpm"] == pytest.approx(BPM, rel=0.02)
    for stem in ("vocals", "accompaniment"):
        tags = read_tags(tmp_path / f"out/song/{stem}.flac")
        assert tags == {"bpm": f"{sidecar['bpm']:.2f}".rstrip("0").rstrip("."), "key": sidecar["key"],
                        "camelot": sidecar["camelot"]}
    res = CliRunner().invoke(app, ["separate", str(src), "-o", str(tmp_path / "plain"), "-n", "center", "--no-tag"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "plain/song").iterdir()) == ["accompaniment.wav", "vocals.wav"]
    assert read_tags(tmp_path / "plain/song/vocals.wav") == {"bpm": None, "key": None, "camelot": None}


class _ArraySource:
    """What separate_file hands an analyzer: ``.read(start, stop)`` and ``.length``."""

    def __init__(self, audio):
        self.audio, self.length = audio, audio.shape[1]

    def read(self, start, stop):
        return self.audio[:, start:stop]


def _bar_sources():
    audio, _ = bar_music()
    kick_free = audio * 0.5
    return {"mixture": _ArraySource(audio), "drums": _ArraySource(audio - kick_free),
            "other": _ArraySource(kick_free)}


def test_tag_worker_gives_what_track_tags_gives():
    from unbake.transcribe.timing import TagWorker, track_tags

    here = track_tags(_bar_sources(), SR)
    with TagWorker() as worker:
        assert worker(_bar_sources(), SR) == here
        assert worker(_bar_sources(), SR) == here  # the worker serves every track of a batch
    assert here.bpm == pytest.approx(BPM, rel=0.02)


def test_tag_worker_analyses_here_when_its_process_dies(caplog):
    from unbake.transcribe.timing import TagWorker, track_tags

    with TagWorker() as worker:
        for process in list(worker._pool._processes.values()):
            process.kill()
            process.join()
        with caplog.at_level("WARNING"):
            assert worker(_bar_sources(), SR) == track_tags(_bar_sources(), SR)
    assert "analysis worker stopped" in caplog.text


def test_tag_worker_stops_at_once_and_reports_analysis_errors():
    from unbake.errors import InvalidAudioError
    from unbake.transcribe.timing import TagWorker

    worker = TagWorker()
    processes = list(worker._pool._processes.values())
    worker.close()  # in the middle of its warm-up: terminated, not awaited
    assert processes and all(p.exitcode == -signal.SIGTERM for p in processes)
    short = {"mixture": _ArraySource(np.zeros((2, SR), np.float32))}
    with TagWorker() as worker, pytest.raises(InvalidAudioError, match="too short"):
        worker(short, SR)


def test_tag_worker_prepared_with_the_mixture_gives_the_same_tags():
    from unbake.transcribe.timing import TagWorker, track_tags

    sources = _bar_sources()
    here = track_tags(sources, SR)
    with TagWorker() as worker:
        worker.prepare({"mixture": sources["mixture"]}, SR)
        assert worker(sources, SR) == here
        assert worker._pending is None
        # the prepared rhythm is the one used: the same mixture object, played 0.2 s later after
        # prepare, still gives the beats of what prepare read
        mixture = sources["mixture"]
        original = mixture.audio
        worker.prepare({"mixture": mixture}, SR)
        mixture.audio = np.roll(original, int(0.2 * SR), axis=1)
        later = track_tags(sources, SR)
        assert later.beats_s != here.beats_s
        assert worker(sources, SR) == here
        mixture.audio = original
        # a prepared mixture that is not the one analysed is not used
        worker.prepare({"mixture": _ArraySource(np.zeros((2, 10 * SR), np.float32))}, SR)
        assert worker(sources, SR) == here
        assert worker._pending is None


def test_separate_tags_without_librosa_installed(tmp_path):
    """The first command of the README installs no extra: the tags need none (the analysis is
    unbake.audio.features), in the command and in its worker process."""
    import os
    import subprocess
    import sys

    blocker = tmp_path / "site" / "librosa"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('librosa is not installed here')\n")
    audio, _ = bar_music()
    src = tmp_path / "song.wav"
    write_audio(src, audio, SR)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site")] + sys.path)}
    res = subprocess.run([sys.executable, "-m", "unbake", "separate", str(src), "-o", str(tmp_path / "out"),
                          "-n", "center"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "worker stopped" not in res.stderr  # the worker itself analysed
    sidecar = json.loads((tmp_path / "out/song/track.json").read_text())
    assert sidecar["bpm"] == pytest.approx(BPM, rel=0.02)
    assert read_tags(tmp_path / "out/song/vocals.wav")["key"] == sidecar["key"]
    probe = subprocess.run([sys.executable, "-c", "import librosa"], capture_output=True, text=True, env=env)
    assert probe.returncode != 0  # the blocker works, so the analysis above ran without librosa


def test_tag_worker_prepared_with_silence_reports_it():
    from unbake.errors import InvalidAudioError
    from unbake.transcribe.timing import TagWorker

    silent = _ArraySource(np.zeros((2, 10 * SR), np.float32))
    sources = {"mixture": silent, "drums": silent, "other": silent}
    with TagWorker() as worker, pytest.raises(InvalidAudioError, match="silence"):
        worker.prepare(sources, SR)
        worker(sources, SR)


def _thread_settings() -> tuple:
    import os

    return tuple(os.environ.get(name) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"))


def test_tag_worker_runs_one_thread_per_library_and_leaves_this_process_as_it_was(monkeypatch):
    """Its BLAS and OpenMP threads would compete with the separation for the cores."""
    from unbake.transcribe.timing import TagWorker

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # a setting the user made is kept
    with TagWorker() as worker:
        assert worker._pool.submit(_thread_settings).result() == ("1", "1", "3")
    assert _thread_settings() == (None, None, "3")
