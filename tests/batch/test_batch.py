"""`unbake batch` and `unbake.batch.run`: a small library made here (nested folders, a duplicate,
a bad file, a unicode name, a name collision, an NI stems file), separated with the `center`
model (built in, fast); the manifest's rules, both engines, status and reports."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, tone_mix

from unbake.audio import read_audio, write_audio
from unbake.models.center import CenterExtraction

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def make_library(root: Path, example_song: Path) -> Path:
    lib = root / "lib"
    (lib / "a" / "b").mkdir(parents=True)
    (lib / "stems").mkdir()
    write_audio(lib / "one.wav", tone_mix(2.0, seed=1), 44100)
    write_audio(lib / "a" / "two.flac", tone_mix(2.0, seed=2), 44100)
    write_audio(lib / "a" / "two.wav", tone_mix(1.0, seed=5), 44100)  # same output folder as two.flac
    write_audio(lib / "a" / "b" / "héllo wörld.wav", tone_mix(1.5, seed=3), 44100)
    shutil.copy(lib / "one.wav", lib / "a" / "b" / "dup.wav")
    (lib / "a" / "bad.mp3").write_bytes(b"this is not audio")
    shutil.copy(example_song, lib / "stems" / "falcon.stem.mp4")
    return lib


GOOD = ["one", "a/two", "a/b/héllo wörld", "a/b/dup", "stems/falcon"]


def wavs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.wav"))
            if ".unbake" not in p.parts}


def batch_cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unbake", "batch", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def separated(tmp_path_factory, example_song):
    """The library separated once by the CLI with the local engine (two workers)."""
    root = tmp_path_factory.mktemp("batch")
    lib = make_library(root, example_song)
    out = root / "out"
    res = batch_cli(lib, "-o", out, "-n", "center", "--workers", "2", "--report", root / "first.csv")
    return root, lib, out, res, wavs(out)


def test_outputs_mirror_the_tree_and_failures_are_recorded(separated, tmp_path):
    root, lib, out, res, names = separated
    assert res.returncode == 1, res.stderr  # a file failed
    assert sorted(names) == sorted(f"{t}/{s}.wav" for t in GOOD for s in ("vocals", "accompaniment"))
    # the NI stems file is separated from its mixture stream, named without .stem.mp4
    from unbake.separate import separate_file

    direct = separate_file(lib / "stems" / "falcon.stem.mp4", tmp_path, "center")
    assert direct["vocals"].read_bytes() == names["stems/falcon/vocals.wav"]
    # byte-identical inputs give byte-identical outputs, each in its own place
    assert names["one/vocals.wav"] == names["a/b/dup/vocals.wav"]
    assert names["one/vocals.wav"] != names["a/two/vocals.wav"]
    assert not [p for p in out.rglob("*") if ".part" in p.name]

    rows = {Path(r["input"]).relative_to(lib).as_posix(): r for r in csv.DictReader((root / "first.csv").read_text().splitlines())}
    assert len(rows) == 7
    bad = rows["a/bad.mp3"]
    assert bad["state"] == "failed" and bad["attempts"] == "2"  # tried, retried once (--retries 1)
    assert "bad.mp3" in bad["error"] and "\n" not in bad["error"]
    assert rows["a/two.wav"]["state"] == "failed" and "two.flac" in rows["a/two.wav"]["error"]
    actions = sorted(rows[k]["action"] for k in ("one.wav", "a/b/dup.wav"))
    assert actions == ["copied", "separated"]  # separated once, placed twice
    assert "failed" in res.stderr and "bad.mp3" in res.stderr

    with contextlib.closing(sqlite3.connect(out / ".unbake" / "batch.sqlite")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        done = db.execute("SELECT sha256, outputs, audio_s, x_realtime FROM inputs WHERE input = ?",
                          (str(lib / "a" / "two.flac"),)).fetchone()
    from unbake._common import sha256_file

    assert done[0] == sha256_file(lib / "a" / "two.flac")
    recorded = json.loads(done[1])
    assert {p: v["sha256"] for p, v in recorded.items()} == {
        p: sha256_file(out / p) for p in ("a/two/vocals.wav", "a/two/accompaniment.wav")}
    assert done[2] == pytest.approx(2.0, abs=0.01) and done[3] > 0


def test_status_and_report(separated, tmp_path):
    root, lib, out, _, _ = separated
    res = batch_cli("--status", out, "--report", tmp_path / "r.json")
    assert res.returncode == 0, res.stderr
    assert "7 inputs: 5 done, 0 running, 0 pending, 2 failed" in res.stdout
    assert "bad.mp3" in res.stdout and "x real time" in res.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["rows"]) == 7
    assert {r["state"] for r in data["rows"]} == {"done", "failed"}
    with pytest.raises(Exception, match="csv or .json"):
        from unbake.batch import BatchReport

        BatchReport(out).write(tmp_path / "r.txt")


def test_rerun_is_a_no_op_and_new_options_redo_everything(separated):
    from unbake.batch import run

    root, lib, out, _, _ = separated
    before = {p: (out / p).stat().st_mtime_ns for p in wavs(out)}
    report = run([lib], out, model="center", workers=1)
    assert report.separated == 0 and report.count("skipped") == 5 and report.failed == 2
    assert {p: (out / p).stat().st_mtime_ns for p in wavs(out)} == before

    report = run([lib], out, model="center", workers=2, two_stems="vocals")
    assert report.separated == 4 and report.count("copied") == 1
    # the new stems replace the old ones; nothing of the earlier settings is left behind
    assert sorted(wavs(out)) == sorted(f"{t}/{s}.wav" for t in GOOD for s in ("vocals", "no_vocals"))


def test_unknown_model_and_bad_options_fail_before_any_work(tmp_path):
    from unbake.batch import run
    from unbake.errors import UnbakeError

    (tmp_path / "lib").mkdir()
    write_audio(tmp_path / "lib" / "x.wav", tone_mix(0.5), 44100)
    with pytest.raises(UnbakeError, match="htdemucz"):
        run([tmp_path / "lib"], tmp_path / "out", model="htdemucz")
    with pytest.raises(UnbakeError, match="overlap"):
        run([tmp_path / "lib"], tmp_path / "out", model="center", overlap=2.0)
    res = batch_cli(tmp_path / "lib", "-o", tmp_path / "out", "-n", "center", "--format", "ogg")
    assert res.returncode != 0 and "--format" in res.stderr
    assert not (tmp_path / "out" / "lib").exists()


def test_a_file_placed_but_not_yet_marked_done_is_redone(tmp_path, monkeypatch):
    """Stopped between moving a file's outputs into place and marking it done: the next run
    knows the files as its own and separates the input again."""
    from unbake.batch import run
    from unbake.batch.manifest import Manifest

    (tmp_path / "lib").mkdir()
    write_audio(tmp_path / "lib" / "x.wav", tone_mix(1.0), 44100)
    out = tmp_path / "out"

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(Manifest, "mark_done", stop)
        with pytest.raises(KeyboardInterrupt):
            run([tmp_path / "lib"], out, model="center", workers=1)
    assert sorted(wavs(out)) == ["x/accompaniment.wav", "x/vocals.wav"]
    again = run([tmp_path / "lib"], out, model="center", workers=1)
    assert again.ok and again.separated == 1


def test_one_run_per_folder(tmp_path):
    from unbake.batch.manifest import Manifest
    from unbake.errors import OutputError

    with Manifest(tmp_path, write=True):
        with pytest.raises(OutputError, match="another"):
            Manifest(tmp_path, write=True)
    Manifest(tmp_path, write=True).close()  # the lock went with the first


def _rows(out: Path, state: str) -> int:
    try:
        with contextlib.closing(sqlite3.connect(out / ".unbake" / "batch.sqlite", timeout=1)) as db:
            return db.execute("SELECT COUNT(*) FROM inputs WHERE state = ?", (state,)).fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigkill_then_rerun_completes_without_partial_files(tmp_path):
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    lengths = {}
    for i in range(8):
        name = f"sub/t{i}.wav" if i % 2 else f"t{i}.wav"
        audio = tone_mix(3.0 + i / 4, seed=10 + i)
        write_audio(lib / name, audio, 44100)
        lengths[Path(name).with_suffix("").as_posix()] = audio.shape[1]
    out = tmp_path / "out"
    args = [lib, "-o", out, "-n", "center", "--workers", "1", "--format", "flac"]

    # killed while the first file is in flight, then again once one more file is done
    for first in (True, False):
        done_at_start = _rows(out, "done")
        proc = subprocess.Popen([sys.executable, "-m", "unbake", "batch", *map(str, args)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if (_rows(out, "running") > 0) if first else (_rows(out, "done") > done_at_start):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the batch ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # whatever is under a final name is complete: every stem decodes to the input's length
        for p in out.rglob("*"):
            if ".unbake" in p.parts or not p.is_file():
                continue
            assert ".part" not in p.name
            audio, _ = read_audio(p)
            assert audio.shape[1] == lengths[p.parent.relative_to(out).as_posix()]

    done_before = _rows(out, "done")
    assert done_before < 8
    res = batch_cli(*args)
    assert res.returncode == 0, res.stderr
    assert _rows(out, "done") == 8
    assert f"{8 - done_before} separated" in res.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flac"))
    assert files == sorted(f"{t}/{s}.flac" for t in lengths for s in ("vocals", "accompaniment"))
    assert not (out / ".unbake" / "staging").exists()


@pytest.mark.slow
def test_a_dying_local_worker_has_its_file_retried(tmp_path):
    from unbake.batch import run
    from unbake.separate import separate_file

    lib = tmp_path / "lib"
    lib.mkdir()
    write_audio(lib / "x.wav", tone_mix(1.0), 44100)
    report = run([lib], tmp_path / "out", model=CrashingCenter(tmp_path / "crashed"), workers=1)
    assert (tmp_path / "crashed").exists()  # the worker did die
    assert report.ok and report.rows[0]["attempts"] == 2
    expected = separate_file(lib / "x.wav", tmp_path / "ref", "center")
    assert wavs(tmp_path / "out") == {f"x/{s}.wav": p.read_bytes() for s, p in expected.items()}


class CrashingCenter(CenterExtraction):
    """The `center` model, except that the first process to run it dies at once."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = str(marker)

    def forward(self, mix):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().forward(mix)


@pytest.fixture
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # the test module's classes travel by value: Ray's workers do not have tests/ on their path
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


@pytest.mark.slow
def test_ray_engine_gives_the_local_engine_outputs(separated, ray_cluster, tmp_path):
    from unbake.batch import run

    root, lib, _, _, local = separated
    report = run([lib], tmp_path / "out", model="center", engine="ray")
    assert report.engine == "ray" and report.separated == 4 and report.failed == 2
    assert wavs(tmp_path / "out") == local
    again = run([lib], tmp_path / "out", model="center", engine="ray")
    assert again.separated == 0 and again.count("skipped") == 5

    # an actor that dies has its file retried (Ray restarts the actor and retries the call)
    lib2 = tmp_path / "lib2"
    lib2.mkdir()
    write_audio(lib2 / "x.wav", tone_mix(1.0), 44100)
    crashed = run([lib2], tmp_path / "out2", model=CrashingCenter(tmp_path / "crashed"), engine="ray")
    assert (tmp_path / "crashed").exists() and crashed.ok
