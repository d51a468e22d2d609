import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_bad_audio_files
from unbake.audio import read_audio, write_audio
from unbake.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_help_does_not_import_torch():
    code = "import sys; from unbake.cli import app; import unbake; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    res = subprocess.run([sys.executable, "-m", "unbake", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "separate" in res.stdout


def test_separate_default_layout(tmp_path, wav_file):
    from unbake.separate import default_model

    res = run("separate", wav_file, "-o", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert f"model: {default_model()}" in res.output  # the default is announced, never silent
    assert default_model() == "unbake_small"  # ships inside the package: four stems, no download
    assert files_under(tmp_path / "out") == [f"song/{s}.wav" for s in ("bass", "drums", "other", "vocals")]


def test_formats_template_and_two_stems(tmp_path, wav_file):
    res = run("separate", wav_file, "-o", tmp_path, "--format", "mp3", "--mp3-bitrate", "128",
              "--filename", "{model}-{track}-{stem}.{ext}", "--two-stems", "vocals", "--other-method", "minus")
    assert res.exit_code == 0, res.output
    names = files_under(tmp_path)
    assert len(names) == 3 and all(n.endswith(".mp3") for n in names if n != "song.wav")
    assert any("no_vocals" in n for n in names)
    res = run("separate", wav_file, "-o", tmp_path / "f", "--format", "flac", "--bit-depth", "16",
              "--segment", "0.5", "--overlap", "0.5", "--shifts", "1")
    assert res.exit_code == 0, res.output


def test_existing_outputs_refused_without_overwrite(tmp_path, wav_file):
    assert run("separate", wav_file, "-o", tmp_path / "o").exit_code == 0
    before = (tmp_path / "o/song/vocals.wav").stat().st_mtime_ns
    res = run("separate", wav_file, "-o", tmp_path / "o")
    assert res.exit_code != 0 and "already exists" in res.output
    assert (tmp_path / "o/song/vocals.wav").stat().st_mtime_ns == before
    assert run("separate", wav_file, "-o", tmp_path / "o", "--overwrite").exit_code == 0


def test_each_bad_input_one_line_no_traceback_no_output(tmp_path, mix):
    (tmp_path / "in").mkdir()
    bad = make_bad_audio_files(tmp_path / "in", mix)
    for kind, path in bad.items():
        out = tmp_path / f"out_{kind}"
        res = run("separate", path, "-o", out)
        assert res.exit_code != 0, kind
        assert "Traceback" not in res.output, kind
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and path.name in errors[0], (kind, res.output)
        assert not out.exists() or files_under(out) == [], kind


def test_one_bad_file_does_not_stop_the_others(tmp_path, wav_file):
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"\x00" * 1000)
    res = run("separate", bad, wav_file, "-o", tmp_path / "o", "-n", "center")
    assert res.exit_code == 1
    assert "1 separated, 1 failed" in res.output
    assert files_under(tmp_path / "o") == ["song/accompaniment.wav", "song/vocals.wav"]


def test_unknown_model_and_unwritable_folder(tmp_path, wav_file):
    res = run("separate", wav_file, "-n", "htdemucz", "-o", tmp_path / "o")
    assert res.exit_code != 0 and "unknown model" in res.output and "Traceback" not in res.output
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        import os

        if os.access(locked, os.W_OK):  # running as root: permissions are not enforced
            target = tmp_path / "file_not_folder"
            target.write_text("x")
            res = run("separate", wav_file, "-o", target)
        else:
            res = run("separate", wav_file, "-o", locked)
        assert res.exit_code != 0 and "Traceback" not in res.output
        assert res.output.count("error:") == 1
    finally:
        locked.chmod(0o700)


def test_mono_file_written_as_mono(tmp_path, mix):
    p = write_audio(tmp_path / "mono.wav", mix[:1], 44100)
    assert run("separate", p, "-o", tmp_path / "o").exit_code == 0
    audio, _ = read_audio(tmp_path / "o/mono/vocals.wav")
    assert audio.shape[0] == 1


def test_info_and_models_and_example(example_song):
    res = run("info", example_song)
    assert res.exit_code == 0 and "vocals" in res.output and "44100" in res.output
    res = run("models", "--json")
    assert res.exit_code == 0 and '"center"' in res.output and "built in" in res.output
    res = run("example")
    assert res.exit_code == 0 and res.output.strip().endswith(".stem.mp4")
    res = run("info", "/nonexistent.wav")
    assert res.exit_code != 0 and "no such file" in res.output


@pytest.mark.parametrize("args,needle", [
    (["--overlap", "1.5"], "overlap"), (["--format", "ogg"], "format"), (["--bit-depth", "20"], "bit depth"),
    (["--filename", "{track}.{ext}"], "{stem}"), (["--device", "tpu"], "device"),
])
def test_bad_options(tmp_path, wav_file, args, needle):
    res = run("separate", wav_file, "-o", tmp_path / "o", *args)
    assert res.exit_code != 0 and needle in res.output, res.output
    assert files_under(tmp_path / "o") == [] if (tmp_path / "o").exists() else True
