"""Project files (parsing, errors that name the key, relative paths, separation cache) and the
`unbake remix` command."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from unbake import StemSet
from unbake.audio import read_audio, write_audio
from unbake.cli import app
from unbake.errors import ConfigError
from unbake.remix import Project, Remix, integrated_lufs, true_peak_db

SR = 44100
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def stems_dir(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    t = np.arange(int(2.0 * SR)) / SR
    stems = {
        "vocals": np.stack([0.2 * np.sin(2 * np.pi * 440 * t)] * 2),
        "drums": 0.1 * rng.standard_normal((2, t.size)),
        "bass": np.stack([0.3 * np.sin(2 * np.pi * 55 * t), 0.25 * np.sin(2 * np.pi * 55 * t)]),
    }
    folder = tmp_path / "stems"
    StemSet({k: v.astype(np.float32) for k, v in stems.items()}, SR).save(folder, bit_depth="32f")
    return folder


def write_project(folder: Path, text: str, name: str = "project.yaml") -> Path:
    p = folder / name
    p.write_text(textwrap.dedent(text))
    return p


GOOD = """\
    stems: stems
    tracks:
      vocals:
        gain_db: 3
        eq:
          - {type: peak, freq_hz: 3000, gain_db: 2, q: 1.0}
        automation:
          - {at: "0:01", gain_db: -3}
      drums:
        compressor: {threshold_db: -20, ratio: 3, attack_ms: 5, release_ms: 80}
        eq: [{type: high_pass, freq_hz: 40}]
      bass: {pan: 0.3}
    master:
      loudness_lufs: -14
      true_peak_db: -1
    output: {path: out/remix.wav, bit_depth: 24}
"""


def test_project_renders_with_paths_relative_to_the_file(tmp_path, stems_dir, monkeypatch):
    project = write_project(tmp_path, GOOD)
    monkeypatch.chdir(stems_dir)  # somewhere else: paths must not depend on the cwd
    written = Remix.from_project(project).render_project()
    assert written == [tmp_path / "out" / "remix.wav"]
    audio, sr = read_audio(written[0])
    assert sr == SR and audio.shape[0] == 2
    assert abs(integrated_lufs(audio, sr) + 14) <= 0.5 and true_peak_db(audio, sr) < -1


def test_neutral_project_is_the_sum_of_the_stems(tmp_path, stems_dir):
    res = run("remix", "--init", stems_dir)
    assert res.exit_code == 0, res.output
    project = write_project(tmp_path, res.stdout)
    remix = Remix.from_project(project)
    assert sorted(remix.tracks) == ["bass", "drums", "vocals"]
    stems = StemSet.load(stems_dir)
    assert np.abs(remix.render() - stems.mixture()).max() <= 1e-6


BAD_PROJECTS = {
    "unknown stem": ("stems: stems\ntracks:\n  voclas: {gain_db: 3}\n", "tracks.voclas: unknown stem"),
    "unknown key": ("stems: stems\ntracks:\n  vocals: {gian_db: 3}\n", "tracks.vocals.gian_db: unknown key; did you mean 'gain_db'"),
    "out of range": ("stems: stems\ntracks:\n  vocals:\n    eq:\n      - {type: peak, freq_hz: 100}\n"
                     "      - {type: peak, freq_hz: 50000}\n",
                     "tracks.vocals.eq[1].freq_hz: must be between 10 and 22000, got 50000"),
    "pan range": ("stems: stems\ntracks:\n  bass: {pan: 2}\n", "tracks.bass.pan: must be between -1 and 1, got 2"),
    "missing folder": ("stems: nowhere\n", "stems: no such folder"),
    "missing song": ("song: nowhere.wav\n", "song: no such file"),
    "no source": ("tracks: {}\n", "stems: give exactly one source"),
    "bad time": ("stems: stems\ntracks:\n  vocals:\n    automation: [{at: \"1:75\", gain_db: 1}]\n",
                 "tracks.vocals.automation[0].at: '1:75' is not a valid time"),
    "late automation": ("stems: stems\ntracks:\n  vocals:\n    automation: [{at: 30, gain_db: 1}]\n",
                        "tracks.vocals.automation[0].at: 0:30.000 is after the end"),
    "bad master": ("stems: stems\nmaster: {loudness_lufs: 3}\n", "master.loudness_lufs: must be between -70 and 0, got 3"),
    "top-level key": ("stems: stems\ntrack: {}\n", "track: unknown key; did you mean 'tracks'"),
    "bad output format": ("stems: stems\noutput: {path: a.flac, format: wav}\n", "output.format: wav does not match"),
    "yaml syntax": ("stems: stems\ntracks: [unclosed\n", "invalid YAML at line"),
}


@pytest.mark.parametrize("kind", sorted(BAD_PROJECTS))
def test_bad_projects_give_one_clear_error(tmp_path, stems_dir, kind):
    text, needle = BAD_PROJECTS[kind]
    project = write_project(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        Remix.from_project(project).render_project(tmp_path / "out.wav")
    assert needle in str(exc.value)
    # and through the CLI: exit code != 0, one line, no traceback, no output file
    res = run("remix", project, "-o", tmp_path / "cli.wav")
    assert res.exit_code != 0
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], res.output
    assert not (tmp_path / "cli.wav").exists() and not (tmp_path / "out.wav").exists()
    assert not list(tmp_path.glob(".*part*"))


def test_missing_project_file(tmp_path):
    res = run("remix", tmp_path / "nope.yaml")
    assert res.exit_code != 0 and "no such project file" in res.output


def test_ab_project_writes_remix_and_comparison(tmp_path, stems_dir):
    project = write_project(tmp_path, """\
        stems: stems
        tracks: {vocals: {gain_db: -10}}
        ab: [{at: 0, use: remix}, {at: "0:01", use: original}]
        ab_output: ab.flac
        output: {path: remix.wav}
    """)
    res = run("remix", project)
    assert res.exit_code == 0, res.output
    remix, _ = read_audio(tmp_path / "remix.wav")
    ab, _ = read_audio(tmp_path / "ab.flac")
    assert np.allclose(ab[:, : SR - 1000], remix[:, : SR - 1000], atol=1e-4)
    assert not np.allclose(ab[:, SR + 1000:], remix[:, SR + 1000:], atol=1e-2)
    # without ab_output the comparison is what gets written
    project2 = write_project(tmp_path, "stems: stems\nab: [{at: 0, use: original}]\noutput: {path: only.wav}\n", "p2.yml")
    assert run("remix", project2).exit_code == 0
    assert (tmp_path / "only.wav").exists() and not (tmp_path / "remix.wav.ab").exists()


def test_quick_form_on_a_stems_folder(tmp_path, stems_dir):
    out = tmp_path / "quick.wav"
    res = run("remix", stems_dir, "--gain", "vocals=+3", "--gain", "drums=-2", "--pan", "bass=0.3",
              "--mute", "drums", "--loudness", "-16", "--true-peak", "-1.5", "-o", out)
    assert res.exit_code == 0, res.output
    assert "LUFS" in res.output
    audio, sr = read_audio(out)
    assert abs(integrated_lufs(audio, sr) + 16) <= 0.5 and true_peak_db(audio, sr) < -1.5
    # existing output refused without --overwrite; bad quick options are one-line errors
    assert "already exists" in run("remix", stems_dir, "-o", out).output
    for args, needle in [(["--gain", "voclas=3"], "tracks.voclas: unknown stem"),
                         (["--gain", "vocals"], "expected STEM=NUMBER"),
                         (["--pan", "bass=x"], "is not a number"),
                         (["--loudness", "5"], "--loudness: must be between -70 and 0")]:
        res = run("remix", stems_dir, *args, "-o", tmp_path / "never.wav")
        assert res.exit_code != 0 and needle in res.output, res.output
        assert not (tmp_path / "never.wav").exists()


def test_song_is_separated_once_then_cached(tmp_path, wav_file, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    project = write_project(wav_file.parent, """\
        song: song.wav
        tracks: {vocals: {gain_db: 2}, bass: {pan: -0.2}}
        output: {path: r1.wav}
    """)
    first = Remix.from_project(project).render()
    cached = list((tmp_path / "cache" / "unbake" / "separations").iterdir())
    assert len(cached) == 1 and (cached[0] / "unbake.json").exists()

    def refuse(*args, **kwargs):
        raise AssertionError("separated again")

    monkeypatch.setattr(sys.modules["unbake.separate"], "separate", refuse)
    again = Remix.from_project(project)
    assert np.array_equal(again.render(), first)
    original, _ = read_audio(wav_file)
    assert np.allclose(again.original, original, atol=1e-6)  # the A/B original is the song itself
    # the quick form and --init use the same cache
    res = run("remix", wav_file, "--gain", "vocals=1", "-o", tmp_path / "q.wav")
    assert res.exit_code == 0, res.output
    res = run("remix", "--init", wav_file)
    assert res.exit_code == 0 and "vocals:" in res.stdout and "bass:" in res.stdout


def test_api_values_are_validated(tmp_path, stems_dir):
    remix = Remix(StemSet.load(stems_dir))
    with pytest.raises(ConfigError, match=r"tracks\.bass\.pan: must be between -1 and 1"):
        remix.pan("bass", 1.5)
    with pytest.raises(ConfigError, match=r"tracks\.drums\.compressor\.ratio: must be between 1 and 100"):
        remix.compressor("drums", ratio=0.5)
    with pytest.raises(ConfigError, match=r"master\.true_peak_db: must be between -30 and 0"):
        remix.master(loudness_lufs=-14, true_peak_db=3)
    p = Project.parse({"stems": str(stems_dir), "master": {"loudness_lufs": -14}}, tmp_path)
    assert p.master.true_peak_db == -1.0  # the default ceiling with a loudness target
    p = Project.parse({"stems": str(stems_dir), "master": {"loudness_lufs": -14, "true_peak_db": None}}, tmp_path)
    assert p.master.true_peak_db is None


def test_example_project_file_is_valid(tmp_path, stems_dir):
    example = Path(__file__).resolve().parents[2] / "examples" / "remix.yaml"
    import yaml

    data = yaml.safe_load(example.read_text())
    data.pop("song", None)
    data.pop("model", None)
    data["stems"] = str(stems_dir)
    data["tracks"] = {k: v for k, v in data["tracks"].items() if k in ("vocals", "drums", "bass")}
    Project.parse(data, tmp_path)


def test_written_with_unbake_write_audio_roundtrip(tmp_path, stems_dir):
    # the output is a normal audio file at the stems' rate
    stems = StemSet.load(stems_dir)
    path = Remix(stems).write(tmp_path / "x.flac")
    audio, sr = read_audio(path)
    assert sr == SR and np.abs(audio - stems.mixture()).max() < 1e-4
    write_audio(tmp_path / "y.wav", audio, sr)
