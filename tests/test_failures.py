"""Clean failures and bounded resources: hostile sample rates, temporary files after a kill,
a full disk, oversized downloads, truncated checkpoints, Ctrl-C, and the rough edges of
`unbake check` and `unbake models`."""

from __future__ import annotations

import errno
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import unbake
from unbake._common import process_dir_name
from unbake.audio import info, iter_blocks, read_audio, write_audio
from unbake.audio.dsp import StreamResampler, resample
from unbake.cli import app
from unbake.errors import AudioError, CheckpointError, DownloadError

SRC_ROOT = Path(unbake.__file__).resolve().parents[1]  # the src folder this worktree's code runs from

# Runs the CLI in a child process and reports the child's own peak resident memory: VmHWM, not
# ru_maxrss, which on Linux keeps the peak of the (large) test process the child was forked from.
_PEAK_RSS = """
import sys
from unbake.cli import app
code = 0
try:
    app(sys.argv[1:], prog_name="unbake")
except SystemExit as exc:
    code = exc.code
print("PEAK_RSS_KB", int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))), file=sys.stderr)
sys.exit(code)
"""


def _env(cache: Path, **extra) -> dict:
    env = dict(os.environ, UNBAKE_CACHE=str(cache), UNBAKE_OFFLINE="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC_ROOT), env.get("PYTHONPATH", "")])
    return env


def _cli_peak_rss(args, cache: Path) -> tuple[subprocess.CompletedProcess, int]:
    res = subprocess.run([sys.executable, "-c", _PEAK_RSS, *map(str, args)], capture_output=True, text=True,
                         env=_env(cache), timeout=600)
    peak_kb = int(re.search(r"PEAK_RSS_KB (\d+)", res.stderr).group(1))
    return res, peak_kb * 1024


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def _wav_with_rate(path: Path, rate: int, frames: int = 25_000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(2 * frames, np.int16).tobytes())
    return path


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


# ---------------------------------------------------------------- 2: sample rates


def test_absurd_sample_rates_refused_by_every_reader(tmp_path, mix):
    one_hz = _wav_with_rate(tmp_path / "one_hz.wav", 1)
    for read in (info, iter_blocks, read_audio):
        with pytest.raises(AudioError, match="sample rate 1 Hz is outside the supported range 4000-384000 Hz"):
            read(one_hz)
    res = CliRunner().invoke(app, ["info", str(one_hz)])
    assert res.exit_code == 1 and _errors(res.output) and "Traceback" not in res.output
    with pytest.raises(AudioError, match="sample rate"):
        unbake.separate(mix, sample_rate=1, model="center")
    with pytest.raises(AudioError, match="sample rate"):  # the ratio stays bounded (at most 96)
        StreamResampler(1000, 44100, 2)
    with pytest.raises(AudioError, match="sample rate"):
        resample(mix, 44100, 1_000_000)
    assert info(_wav_with_rate(tmp_path / "low.wav", 4000)).sample_rate == 4000


def test_one_hz_header_fails_fast_in_bounded_memory(tmp_path):
    """A 100 KB WAV whose header says 1 Hz used to drive `unbake separate` past 6 GB."""
    one_hz = _wav_with_rate(tmp_path / "one_hz.wav", 1)
    res, peak = _cli_peak_rss(["separate", one_hz, "-o", tmp_path / "out", "-n", "center"], tmp_path / "cache")
    assert res.returncode == 1 and len(_errors(res.stderr)) == 1 and "sample rate" in res.stderr, res.stderr
    assert peak < 1.5e9, peak  # the interpreter with torch loaded, nothing more
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 3 and 4: temporary work


def test_temporary_work_under_the_cache_per_process_and_its_size_announced(tmp_path, wav_file, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("UNBAKE_CACHE", str(cache))
    facade = sys.modules["unbake.separate"]  # the module (the package's attribute is the function)
    seen = {}
    close = facade._close

    def measuring_close(track):
        seen["workdir"] = track.workdir
        seen["bytes"] = sum(p.stat().st_size for p in track.workdir.iterdir())
        close(track)

    monkeypatch.setattr(facade, "_close", measuring_close)
    unbake.separate_file(wav_file, tmp_path / "out", "center")
    assert seen["workdir"].parent == cache / "tmp" / process_dir_name()
    assert not seen["workdir"].exists()  # removed when the separation ended
    estimate = facade.temp_disk_bytes(info(wav_file), unbake.load_model("center"))
    assert seen["bytes"] <= estimate <= 1.2 * seen["bytes"], (estimate, seen["bytes"])

    import unbake.cli.separate_cmd as cmd

    monkeypatch.setattr(cmd, "LONG_INPUT_S", 0.0)  # every input counts as very long
    res = CliRunner().invoke(app, ["separate", str(wav_file), "-o", str(tmp_path / "o2"), "-n", "center"])
    assert res.exit_code == 0, res.output
    warning = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "song.wav" in warning[0] and str(cache / "tmp") in warning[0]
    assert re.search(r"about [\d.]+ (MB|kB)", warning[0]), warning[0]


def test_leftovers_of_dead_processes_swept_at_the_next_start(tmp_path, wav_file, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("UNBAKE_CACHE", str(cache))
    dead = _dead_pid()
    stale_dir = cache / "tmp" / process_dir_name(dead)
    elsewhere = cache / "tmp" / f"pid-{dead}-another-machine"  # its PIDs mean nothing here
    elsewhere.mkdir(parents=True)
    (stale_dir / "separate-abc").mkdir(parents=True)
    (stale_dir / "separate-abc" / "input.f32").write_bytes(b"\0" * 1000)
    live_dir = cache / "tmp" / process_dir_name(os.getppid())
    live_dir.mkdir()
    stale_part = cache / f".model.th.{dead}.abcd1234.part"
    stale_part.write_bytes(b"x")
    live_part = cache / f".model.th.{os.getppid()}.abcd1234.part"
    live_part.write_bytes(b"x")
    other = cache / "model.th"
    other.write_bytes(b"x")
    res = CliRunner().invoke(app, ["models", "--json"])
    assert res.exit_code == 0
    assert not stale_dir.exists() and not stale_part.exists()
    assert live_dir.exists() and live_part.exists() and other.exists() and elsewhere.exists()
    # a killed run's half-written stems beside the outputs go when the same folder is written again
    out = tmp_path / "out" / "song"
    out.mkdir(parents=True)
    half = out / f".vocals.wav.{dead}.zz_zz_zz.part.wav"
    half.write_bytes(b"x")
    unbake.separate_file(wav_file, tmp_path / "out", "center")
    assert not half.exists() and sorted(p.name for p in out.iterdir()) == ["accompaniment.wav", "vocals.wav"]


def _start_separation(tmp_path: Path, mix: np.ndarray) -> tuple[subprocess.Popen, Path]:
    long = write_audio(tmp_path / "long.wav", np.tile(mix, 30), 44100, bit_depth="16")  # 60 s
    cache = tmp_path / "cache"
    # the command runs as from a terminal, where Ctrl-C is delivered: a test run started as a
    # background job (`cmd &` in a script) ignores SIGINT, and an ignored signal stays ignored in
    # every child, so the separation would never see it
    proc = subprocess.Popen([sys.executable, "-m", "unbake", "separate", str(long), "-o", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(cache),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    work = cache / "tmp" / process_dir_name(proc.pid)
    for _ in range(1200):  # the per-process folder appears once the model is loaded
        if work.is_dir() and any(work.iterdir()) or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    return proc, work


def test_ctrl_c_prints_one_line_exits_130_and_leaves_nothing(tmp_path, mix):
    proc, work = _start_separation(tmp_path, mix)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert _errors(err) == ["error: interrupted"] and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
    assert not work.exists() or not any(work.iterdir())


@pytest.mark.parametrize("becomes", [None, TypeError])
def test_ctrl_c_that_the_decoding_swallows_still_stops_the_command(tmp_path, wav_file, monkeypatch, becomes):
    """A C extension that runs Python code where it cannot raise drops the KeyboardInterrupt
    raised there (PyAV while decoding, now and then) or turns it into another error (numpy's
    ``tofile``: a TypeError): the command still stops, exits 130 and leaves nothing."""
    import importlib

    sep = importlib.import_module("unbake.separate")  # the module, not the function of that name
    decode = sep._track_from_file

    def swallowing(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here, and its KeyboardInterrupt is dropped
        except KeyboardInterrupt:
            if becomes is not None:
                raise becomes("expected str, bytes or os.PathLike object, not BufferedWriter") from None
        return decode(*args, **kwargs)

    monkeypatch.setattr(sep, "_track_from_file", swallowing)
    # Python's own Ctrl-C handling, as in a terminal, also where pytest itself was started in the
    # background (a shell's `&` makes the process ignore SIGINT, and the command keeps ignoring it)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        res = CliRunner().invoke(app, ["separate", str(wav_file), "-o", str(tmp_path / "out"), "-n", "center"])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after the command
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert res.exit_code == 130 and _errors(res.output) == ["error: interrupted"], res.output
    assert not (tmp_path / "out").exists()


def test_sigkill_leftovers_removed_by_the_next_command(tmp_path, mix):
    proc, work = _start_separation(tmp_path, mix)
    proc.kill()
    proc.communicate(timeout=60)
    assert any(work.iterdir())  # what a killed process leaves...
    res = subprocess.run([sys.executable, "-m", "unbake", "models", "--json"], capture_output=True, text=True,
                         env=_env(tmp_path / "cache"))
    assert res.returncode == 0, res.stderr
    assert not work.exists()  # ...is gone after the next start


# ---------------------------------------------------------------- 6: disk, downloads, checkpoints


def test_full_disk_is_one_line(tmp_path, wav_file, monkeypatch):
    from unbake.engine import sources

    def full(self, block):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(sources.RawFileWriter, "write", full)
    res = CliRunner().invoke(app, ["separate", str(wav_file), "-o", str(tmp_path / "out"), "-n", "center"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    errors = _errors(res.output)
    assert len(errors) == 1 and "no space left on the disk" in errors[0], res.output
    assert not (tmp_path / "out").exists()


class _EndlessServer:
    """Serves an endless body of zeros, counting what it manages to send."""

    def __init__(self) -> None:
        self.sent = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                self.send_response(200)
                self.end_headers()
                chunk = b"\0" * 65536
                try:
                    while outer.sent < 256 << 20:  # a cap so that a failing test still ends
                        self.wfile.write(chunk)
                        outer.sent += len(chunk)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/big.th"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_stops_at_the_listed_size(tmp_path, monkeypatch):
    from unbake.hub import download
    from unbake.hub.catalogue import FileSpec

    monkeypatch.setenv("UNBAKE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("UNBAKE_OFFLINE", raising=False)
    server = _EndlessServer()
    try:
        with pytest.raises(DownloadError, match="more than the 1000000 bytes"):
            download.fetch(FileSpec(name="big.th", url=server.url, size=1_000_000))
    finally:
        server.close()
    assert server.sent < 64 << 20, server.sent  # socket buffers, not the whole stream
    assert list((tmp_path / "cache").iterdir()) == []


def test_connection_error_is_one_line_with_the_manual_hint(tmp_path, monkeypatch):
    from unbake.hub import catalogue as cat_mod

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = cat_mod.FileSpec(name="gone.th", url=f"http://127.0.0.1:{port}/gone.th", size=10)
    entry = cat_mod.ModelEntry(name="gone", architecture="htdemucs", format="demucs-th", sources=("vocals",),
                               samplerate=44100, files=(spec,))
    monkeypatch.setattr(cat_mod, "load_catalogue", lambda path=None: cat_mod.Catalogue({"gone": entry}, {}))
    monkeypatch.setenv("UNBAKE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("UNBAKE_OFFLINE", raising=False)
    res = CliRunner().invoke(app, ["models", "--download", "gone"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not download gone.th (Connection refused)")
    assert f"save it as {tmp_path / 'cache' / 'gone.th'}" in lines[0] and len(lines[0]) < 250


def test_truncated_checkpoint_named_as_such(tmp_path):
    import torch

    whole = tmp_path / "model.pt"
    torch.save({"state_dict": torch.nn.Linear(4, 4).state_dict()}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        unbake.load_model(cut)
    res = CliRunner().invoke(app, ["separate", str(tmp_path / "x.wav"), "-n", str(cut)])
    assert res.exit_code == 1 and "truncated or corrupt" in res.output


# ---------------------------------------------------------------- 7, 8, 12: rough edges


def test_check_reports_the_trivial_answer_in_text(tmp_path, mix):
    stems = tmp_path / "stems"
    write_audio(stems / "vocals.wav", mix, 44100, bit_depth="32f")
    for name in ("drums", "bass", "other"):
        write_audio(stems / f"{name}.wav", np.zeros_like(mix), 44100, bit_depth="32f")
    mixture = write_audio(tmp_path / "mix.wav", mix, 44100, bit_depth="32f")
    res = CliRunner().invoke(app, ["check", str(stems), "-m", str(mixture)])
    assert res.exit_code == 0, res.output
    assert "trivial answer: YES" in res.output
    assert all(re.search(rf"{name}\s.*leakage", res.output) for name in ("vocals", "drums", "bass", "other"))


def test_failures_leave_no_output_folders(tmp_path, mix):
    inputs = tmp_path / "in"
    inputs.mkdir()
    text = inputs / "text.mp3"
    text.write_text("not audio at all\n" * 100)
    empty = inputs / "empty.wav"
    empty.write_bytes(b"")
    whole = write_audio(inputs / "whole.wav", mix, 44100, bit_depth="16").read_bytes()
    cut = inputs / "truncated.wav"
    cut.write_bytes(whole[:5000])
    nan = mix.copy()
    nan[0, 10] = np.nan
    bad = {"text": text, "empty": empty, "truncated": cut, "missing": inputs / "missing.wav",
           "nan": write_audio(inputs / "nan.wav", nan, 44100, bit_depth="32f"),
           "one_hz": _wav_with_rate(inputs / "one_hz.wav", 1)}
    for kind, path in bad.items():
        out = tmp_path / f"out_{kind}" / "nested"
        res = CliRunner().invoke(app, ["separate", str(path), "-o", str(out), "-n", "center"])
        assert res.exit_code == 1, kind
        assert not out.parent.exists(), (kind, list(out.parent.rglob("*")))


def test_models_table_fits_80_columns_with_sizes(tmp_path):
    from unbake.hub.catalogue import load_catalogue

    res = subprocess.run([sys.executable, "-m", "unbake", "models"], capture_output=True, text=True,
                         env=_env(tmp_path / "cache", COLUMNS="80"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    words = set(re.findall(r"[\w.+-]+", res.stdout))
    cat = load_catalogue()
    for name in cat.names():
        assert name in words, name  # never cut inside a word
        assert set(cat.get(name).sources) <= words, name
    rows = json.loads(subprocess.run([sys.executable, "-m", "unbake", "models", "--json"], capture_output=True,
                                     text=True, env=_env(tmp_path / "cache")).stdout)
    sized = {r["name"]: r["download_bytes"] for r in rows}
    assert sized["htdemucs"] == sum(f.size for f in cat.models["htdemucs"].files)
    row = next(line for line in lines if line.startswith("htdemucs "))
    assert re.search(rf"\b{sized['htdemucs'] / 1e6:.0f} MB\b", row), row


def test_every_temporary_output_name_carries_its_writers_pid(tmp_path, mix):
    from unbake._common import atomic_path, part_owner
    from unbake.audio import AudioWriter

    writer = AudioWriter(tmp_path / "a.flac", 44100, 2)
    with atomic_path(tmp_path / "b.json") as tmp:
        assert part_owner(tmp) == part_owner(writer.tmp) == os.getpid()
    writer.write(mix)
    writer.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]
