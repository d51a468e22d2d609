"""The studio's HTTP API through fastapi's TestClient: upload -> job -> progress (server-sent
events) -> stems -> render -> download; bad uploads; path traversal on every file endpoint;
cancelling; restarts with a job in flight; the project file round trip with `unbake remix`."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the studio needs fastapi (pip install 'unbake[studio]')")
pytest.importorskip("httpx", reason="the API tests need httpx")

with warnings.catch_warnings():
    # starlette 1.x asks for the httpx2 package behind its TestClient; httpx (the test extra) works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from unbake.studio import create_app  # noqa: E402
from unbake.studio.jobs import INTERRUPTED_REASON, JobStore, is_job_id  # noqa: E402

BASE = "http://127.0.0.1"
LIMIT_S = 60.0  # bound on waits so a broken worker fails the test instead of hanging it


def client_for(data_dir: Path, **kwargs) -> TestClient:
    return TestClient(create_app(data_dir, **kwargs), base_url=BASE)


def upload(client: TestClient, data: bytes, *, name: str = "song.mp3", model: str = "center"):
    return client.post("/api/jobs", params={"model": model, "name": name}, content=data)


def read_events(client: TestClient, job_id: str) -> list[tuple[str, dict]]:
    """Every (event, data) of a job's event stream, up to its ``end``."""
    events: list[tuple[str, dict]] = []
    name = "message"
    with client.stream("GET", f"/api/jobs/{job_id}/events") as res:
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/event-stream")
        for line in res.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
                if name == "end":
                    break
    return events


def wait_for(client: TestClient, job_id: str, statuses: set[str]) -> dict:
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.02)
    pytest.fail(f"job {job_id} never reached {statuses}; it is {job['status']}")


def asgi_get(app, raw_path: bytes) -> tuple[int, bytes]:
    """GET with the path exactly as given (httpx would remove ``..`` segments before sending);
    ``path`` is percent-decoded as uvicorn does."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path, "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


# ---------------------------------------------------------------------- one real separation


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    data = tmp_path_factory.mktemp("studio-data")
    with client_for(data) as client:
        yield client, data


@pytest.fixture(scope="module")
def song_job(studio, example_song):
    """The example song separated by ``center``, with the events its job sent."""
    client, _ = studio
    res = upload(client, example_song.read_bytes(), name="Falcon 69.stem.mp4")
    assert res.status_code == 201, res.text
    job = res.json()
    events = read_events(client, job["id"])
    return client.get(f"/api/jobs/{job['id']}").json(), events


def test_upload_progress_and_stems(studio, song_job):
    client, data = studio
    job, events = song_job
    assert job["status"] == "done" and job["error"] is None
    assert job["stems"] == ["vocals", "accompaniment"]
    assert job["sample_rate"] == 44100 and job["channels"] == 2 and job["duration_s"] == pytest.approx(6.08, abs=0.01)
    assert is_job_id(job["id"]) and len(job["id"]) >= 22
    # live progress: job updates, never going backwards, ending with the final state
    updates = [d for e, d in events if e == "job"]
    assert updates and updates[-1]["status"] == "done" and events[-1] == ("end", {"status": "done"})
    progress = [u["progress"] for u in updates]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert "running" in {u["status"] for u in updates}
    # the stored file names are ours, not the client's
    folder = data / "jobs" / job["id"]
    assert sorted(p.name for p in folder.iterdir()) >= ["analysis.json", "input", "original.flac", "stems"]
    assert not any("Falcon" in p.name for p in folder.rglob("*"))

    listed = client.get("/api/jobs").json()
    assert [j["id"] for j in listed] == [job["id"]]

    for stem in job["stems"]:
        res = client.get(f"/api/jobs/{job['id']}/stems/{stem}/audio")
        assert res.status_code == 200 and res.headers["content-type"] == "audio/flac"
        assert res.content[:4] == b"fLaC"
    res = client.get(f"/api/jobs/{job['id']}/original")
    assert res.status_code == 200 and res.content[:4] == b"fLaC"


def test_analysis_quality_and_views(studio, song_job):
    client, _ = studio
    job, _ = song_job
    a = client.get(f"/api/jobs/{job['id']}/analysis").json()
    assert a["stems"] == job["stems"]
    assert set(a["peaks"]) == {"original", "vocals", "accompaniment"}
    assert all(len(p) == 1200 and max(p) > 0.1 for p in a["peaks"].values())
    assert a["loudness_lufs"]["original"] == pytest.approx(-13.4, abs=0.5)
    q = a["quality"]
    assert q["available"], q
    # center's stems sum to the mix; only 24-bit storage separates them
    assert q["snr_db"] > 100 and q["exact"] is False
    assert q["trivial"] is False and q["reasons"] == []
    shares = {k: v["energy_share"] for k, v in q["stems"].items()}
    assert set(shares) == set(job["stems"]) and sum(shares.values()) == pytest.approx(1.0)
    assert 0.2 < shares["vocals"] < 0.6

    png = client.get(f"/api/jobs/{job['id']}/stems/vocals/spectrogram.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/api/jobs/{job['id']}/stems/original/spectrogram.png").status_code == 200


def test_downloads(studio, song_job):
    from unbake.audio import read_audio
    from unbake.stems import StemSet

    client, data = studio
    job, _ = song_job
    stems = StemSet.load(data / "jobs" / job["id"] / "stems")
    res = client.get(f"/api/jobs/{job['id']}/stems/vocals/download", params={"format": "wav"})
    assert res.status_code == 200 and res.content[:4] == b"RIFF"
    assert "Falcon 69 - vocals.wav" in unquote(res.headers["content-disposition"])
    res = client.get(f"/api/jobs/{job['id']}/stems.zip")
    assert res.status_code == 200
    with zipfile.ZipFile(io.BytesIO(res.content)) as zf:
        assert sorted(zf.namelist()) == ["Falcon 69/accompaniment.flac", "Falcon 69/unbake.json", "Falcon 69/vocals.flac"]
        meta = json.loads(zf.read("Falcon 69/unbake.json"))
        assert meta["stems"] == job["stems"]
    mp3 = client.get(f"/api/jobs/{job['id']}/stems/accompaniment/download", params={"format": "mp3"})
    assert mp3.status_code == 200
    path = data / "probe.mp3"
    path.write_bytes(mp3.content)
    audio, sr = read_audio(path)
    assert sr == 44100 and audio.shape[0] == 2 and abs(audio.shape[1] - stems.frames) < 4096
    assert client.get(f"/api/jobs/{job['id']}/stems.zip", params={"format": "ogg"}).status_code == 400


def test_render_matches_engine_and_cli(studio, song_job, tmp_path):
    """The export is the remix engine's render; the saved project renders the same with `unbake remix`."""
    from typer.testing import CliRunner

    from unbake.audio import read_audio
    from unbake.cli import app as cli
    from unbake.remix import Remix
    from unbake.stems import StemSet

    client, data = studio
    job, _ = song_job
    stems = StemSet.load(data / "jobs" / job["id"] / "stems")
    settings = {"tracks": {"vocals": {"gain_db": 0, "pan": 0, "mute": True, "solo": False},
                           "accompaniment": {"gain_db": -3.0, "pan": 0.25, "mute": False, "solo": False}},
                "master": {"loudness_lufs": None}}
    res = client.post(f"/api/jobs/{job['id']}/render", json={"settings": settings, "format": "wav"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["filename"] == "Falcon 69 - mix.wav"
    wav = client.get(body["url"])
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    (tmp_path / "studio.wav").write_bytes(wav.content)
    studio_audio, sr = read_audio(tmp_path / "studio.wav")
    expected = Remix(stems).mute("vocals").gain("accompaniment", -3.0).pan("accompaniment", 0.25).render()
    assert sr == stems.sample_rate and studio_audio.shape == expected.shape
    np.testing.assert_allclose(studio_audio, expected, atol=2e-6)  # 24-bit rounding

    project = client.post(f"/api/jobs/{job['id']}/project", json={"settings": settings})
    assert project.status_code == 200
    assert "attachment" in project.headers["content-disposition"]
    proj = tmp_path / "mix.yaml"
    proj.write_text(project.text)
    out = tmp_path / "cli.wav"
    result = CliRunner().invoke(cli, ["remix", str(proj), "-o", str(out)])
    assert result.exit_code == 0, result.output
    cli_audio, _ = read_audio(out)
    np.testing.assert_array_equal(cli_audio, studio_audio)

    # loading the project back gives the same settings (its paths are not used)
    loaded = client.post(f"/api/jobs/{job['id']}/project/load", content=project.text.encode())
    assert loaded.status_code == 200
    got = loaded.json()["settings"]
    assert got["tracks"]["vocals"]["mute"] is True
    assert got["tracks"]["accompaniment"]["gain_db"] == -3.0 and got["tracks"]["accompaniment"]["pan"] == 0.25
    assert set(got["ignored"]) == {"stems", "output"}


def test_render_with_loudness_target_and_bad_settings(studio, song_job):
    client, _ = studio
    job, _ = song_job
    res = client.post(f"/api/jobs/{job['id']}/render",
                      json={"settings": {"tracks": {}, "master": {"loudness_lufs": -16}}, "format": "flac"})
    assert res.status_code == 200, res.text
    assert res.json()["integrated_lufs"] == pytest.approx(-16.0, abs=0.2)
    assert res.json()["true_peak_db"] <= -0.9
    bad = [
        ({"tracks": {"drums": {"gain_db": 1}}}, "tracks.drums"),
        ({"tracks": {"vocals": {"gain_db": 99}}}, "tracks.vocals.gain_db"),
        ({"tracks": {"vocals": {"volume": 1}}}, "tracks.vocals.volume"),
        ({"master": {"loudness_lufs": 5}}, "master.loudness_lufs"),
        ({"output": {"path": "/tmp/x.wav"}}, "output"),
    ]
    for settings, key in bad:
        res = client.post(f"/api/jobs/{job['id']}/render", json={"settings": settings})
        assert res.status_code == 400 and res.json()["detail"].startswith(key), (settings, res.text)
    assert client.post(f"/api/jobs/{job['id']}/render", json={"settings": {}, "format": "exe"}).status_code == 400
    assert client.post(f"/api/jobs/{job['id']}/render", content=b"not json").status_code == 400
    res = client.post(f"/api/jobs/{job['id']}/project/load", content=b"tracks: [unclosed")
    assert res.status_code == 400 and "YAML" in res.json()["detail"]
    res = client.post(f"/api/jobs/{job['id']}/project/load", content=b"song: /etc/passwd\ntracks: {bass: {gain_db: 1}}\n")
    assert res.status_code == 400 and res.json()["detail"].startswith("tracks.bass")


# ---------------------------------------------------------------------- safety


SECRETS = (b"SQLite format 3", b"root:x:", b"ftypM4A", b"fLaC")


def test_path_traversal_on_every_file_endpoint(studio, song_job):
    client, data = studio
    job, _ = song_job
    jid = job["id"]
    absolute = str(data / "studio.sqlite3").replace("/", "%2F")
    bad_ids = ["..", "%2E%2E", "..%2F..%2Fstudio.sqlite3", "%2Fetc%2Fpasswd", absolute, f"{jid}%2F..%2F{jid}",
               f"..%2Fjobs%2F{jid}"]
    bad_stems = ["..", "..%2Finput", "..%2F..%2F..%2Fstudio.sqlite3", "%2E%2E%2Foriginal.flac", "%2Fetc%2Fpasswd",
                 absolute, "input", "vocals.flac", "vocals%00"]
    bad_renders = ["..%2F..%2Fstudio.sqlite3", "..%2Finput.wav", "%2Fetc%2Fpasswd", "AAAAAAAAAAAAAAAAAAAAAA.wav",
                   "AAAAAAAAAAAAAAAAAAAAAA.sqlite3"]
    urls = []
    for bad in bad_ids:
        urls += [f"/api/jobs/{bad}", f"/api/jobs/{bad}/analysis", f"/api/jobs/{bad}/original",
                 f"/api/jobs/{bad}/stems/vocals/audio", f"/api/jobs/{bad}/stems/vocals/download",
                 f"/api/jobs/{bad}/stems/vocals/spectrogram.png", f"/api/jobs/{bad}/stems.zip",
                 f"/api/jobs/{bad}/events", f"/api/jobs/{bad}/renders/x.wav"]
    for bad in bad_stems:
        urls += [f"/api/jobs/{jid}/stems/{bad}/audio", f"/api/jobs/{jid}/stems/{bad}/download",
                 f"/api/jobs/{jid}/stems/{bad}/spectrogram.png"]
    urls += [f"/api/jobs/{jid}/renders/{bad}" for bad in bad_renders]
    urls += ["/static/..%2Fapp.py", "/static/%2E%2E%2Fjobs.py", "/static/%2Fetc%2Fpasswd", "/static/index.html",
             "/static/app.py", "/static/%2E%2E"]
    for url in urls:
        res = client.get(url)
        assert res.status_code in (400, 404, 405, 422), (url, res.status_code)
        assert not any(s in res.content for s in SECRETS), url
    for url in ["/api/jobs/%2E%2E/render", "/api/jobs/..%2F..%2Fx/project", f"/api/jobs/{jid}%2F..%2Fx/cancel"]:
        assert client.post(url, json={"settings": {}}).status_code in (404, 405)
    assert client.delete("/api/jobs/..%2F..").status_code == 404
    # dot segments as sent by a raw client (uvicorn passes them to the app undecoded)
    app = client.app
    for raw in [f"/api/jobs/{jid}/stems/../../../studio.sqlite3".encode(), b"/static/../app.py", b"/static/..", b"/static/%2e%2e",
                f"/api/jobs/{jid}/stems/../input/audio".encode(), b"/static/../../../../etc/passwd",
                f"/api/jobs/{jid}/renders/../input".encode(), b"/api/jobs/../studio.sqlite3/original"]:
        status, body = asgi_get(app, raw)
        assert status in (400, 404, 405, 422), (raw, status)
        assert not any(s in body for s in SECRETS), raw
    # and the real thing still works, so the refusals above are not an accident
    assert client.get(f"/api/jobs/{jid}/stems/vocals/audio").status_code == 200
    assert client.get("/static/app.js").status_code == 200


def test_bad_uploads(tmp_path, wav_file):
    data = tmp_path / "data"
    with client_for(data, max_upload_mb=1) as client:
        text = b"This is a text file pretending to be an mp3.\n" * 50
        res = upload(client, text, name="song.mp3")
        assert res.status_code == 415
        detail = res.json()["detail"]
        assert detail.startswith("the file was not accepted: not a readable audio or video file"), detail
        assert str(data) not in detail and "Errno" not in detail
        res = upload(client, b"", name="empty.mp3")
        assert res.status_code == 400 and "empty" in res.json()["detail"]
        res = upload(client, b"ID3\x03\x00\x00\x00" + bytes(range(256)) * 8, name="noise.mp3")
        assert res.status_code == 415
        too_big = np.random.default_rng(0).bytes(1024 * 1024 + 1)
        res = upload(client, too_big, name="big.wav")
        assert res.status_code == 413
        # without a Content-Length (chunked), the limit holds while receiving
        res = client.post("/api/jobs", params={"model": "center", "name": "big.wav"},
                          content=(too_big[i:i + 65536] for i in range(0, len(too_big), 65536)))
        assert res.status_code == 413
        res = client.post("/api/jobs", params={"name": "x.wav"}, files={"file": ("x.wav", wav_file.read_bytes())})
        assert res.status_code == 415 and "not a form" in res.json()["detail"]
        res = upload(client, wav_file.read_bytes(), model="no-such-model")
        assert res.status_code == 400 and "unknown model" in res.json()["detail"]
        assert client.get("/api/jobs").json() == []
        assert list((data / "incoming").iterdir()) == []
        assert list((data / "jobs").iterdir()) == []
        # the content decides, not the name: real audio called notes.txt is accepted
        res = upload(client, wav_file.read_bytes(), name="../../notes.txt")
        assert res.status_code == 201
        job = res.json()
        assert job["name"] == "notes.txt"
        assert (data / "jobs" / job["id"] / "input").read_bytes() == wav_file.read_bytes()
        assert wait_for(client, job["id"], {"done", "failed"})["status"] == "done"


def test_cross_site_and_foreign_host_refused(tmp_path, wav_file):
    with client_for(tmp_path / "data") as client:
        res = client.post("/api/jobs", params={"name": "a.wav"}, content=wav_file.read_bytes(),
                          headers={"Origin": "http://evil.example"})
        assert res.status_code == 403
        for origin in ("null", "http://127.0.0.1:9999", "http://localhost"):
            assert client.delete("/api/jobs/AAAAAAAAAAAAAAAAAAAAAA", headers={"Origin": origin}).status_code == 403
        # the page itself sends its own origin
        assert client.delete("/api/jobs/AAAAAAAAAAAAAAAAAAAAAA", headers={"Origin": BASE}).status_code == 404
        assert client.get("/api/jobs", headers={"Host": "evil.example"}).status_code == 421
        assert client.get("/api/jobs", headers={"Host": "localhost:8765"}).status_code == 200
        page = client.get("/")
        assert page.status_code == 200 and "unbake studio" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/api/jobs").json() == []


def test_static_files_are_bundled(tmp_path):
    """Page, script and style ship inside the package: nothing is fetched from elsewhere."""
    with client_for(tmp_path / "data") as client:
        for path, ctype in [("/", "text/html"), ("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")]:
            res = client.get(path)
            assert res.status_code == 200 and res.headers["content-type"].startswith(ctype)
            assert "http://" not in res.text and "https://" not in res.text, path


# ---------------------------------------------------------------------- queue, cancel, restart


@pytest.fixture
def endless_separation(monkeypatch):
    """Separation that runs until cancelled (reporting progress, as the real one does)."""
    started = threading.Event()

    def separate_file(path, outdir, model=None, *, progress=None, **kwargs):
        started.set()
        while True:
            progress(0.5)  # raises JobCancelled once cancelling was asked for
            time.sleep(0.01)

    monkeypatch.setattr(sys.modules["unbake.separate"], "separate_file", separate_file)
    return started


def test_queue_and_cancel(tmp_path, wav_file, endless_separation):
    with client_for(tmp_path / "data", workers=1) as client:
        first = upload(client, wav_file.read_bytes(), name="one.wav").json()
        second = upload(client, wav_file.read_bytes(), name="two.wav").json()
        assert first["id"] != second["id"]
        wait_for(client, first["id"], {"running"})
        assert client.get(f"/api/jobs/{second['id']}").json()["status"] == "queued"
        # a queued job is cancelled at once; a running one at its next progress report
        assert client.post(f"/api/jobs/{second['id']}/cancel").json()["status"] == "cancelled"
        assert client.post(f"/api/jobs/{first['id']}/cancel").status_code == 200
        assert wait_for(client, first["id"], {"cancelled", "failed", "done"})["status"] == "cancelled"
        assert client.post(f"/api/jobs/{first['id']}/cancel").status_code == 409
        assert client.get(f"/api/jobs/{first['id']}/analysis").status_code == 409
        for job in (first, second):
            assert client.delete(f"/api/jobs/{job['id']}").status_code == 200
            assert not (tmp_path / "data" / "jobs" / job["id"]).exists()
        assert client.get("/api/jobs").json() == []
        assert client.get(f"/api/jobs/{first['id']}").status_code == 404


def test_restart_with_a_job_in_flight(tmp_path, wav_file, endless_separation, monkeypatch):
    data = tmp_path / "data"
    with client_for(data, workers=1) as client:
        running = upload(client, wav_file.read_bytes(), name="one.wav").json()
        waiting = upload(client, wav_file.read_bytes(), name="two.wav").json()
        wait_for(client, running["id"], {"running"})
    # the studio stopped while one job ran and one waited; start it again with the real separation
    monkeypatch.undo()
    with client_for(data, workers=1) as client:
        job = client.get(f"/api/jobs/{running['id']}").json()
        assert job["status"] == "failed" and job["error"] == INTERRUPTED_REASON
        assert wait_for(client, waiting["id"], {"done", "failed"})["status"] == "done"
        assert client.get(f"/api/jobs/{waiting['id']}/analysis").status_code == 200


def test_crash_with_a_job_in_flight(tmp_path):
    """A process killed outright leaves "running" in the database; the next start repairs it."""
    data = tmp_path / "data"
    store = JobStore(data / "studio.sqlite3")
    job = store.create("song.mp3", "center")
    assert store.set_status_if(job.id, "queued", "running", progress=0.4, stage="separating")
    store.close()
    with client_for(data) as client:
        got = client.get(f"/api/jobs/{job.id}").json()
        assert got["status"] == "failed" and "interrupted" in got["error"]
        events = read_events(client, job.id)
        assert events[-1] == ("end", {"status": "failed"})


def test_cli_help_is_light():
    """`unbake --help` lists the studio without importing fastapi, uvicorn or torch."""
    import subprocess

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom unbake.cli import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0 and 'studio' in r.output, r.output\n"
            "r = CliRunner().invoke(app, ['studio', '--help'])\nassert '--max-upload-mb' in r.output, r.output\n"
            "heavy = [m for m in ('torch', 'fastapi', 'uvicorn') if m in sys.modules]\nassert not heavy, heavy\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_studio_command(monkeypatch, tmp_path):
    """Options reach the server; a non-loopback address gets a warning; bad values are refused."""
    from typer.testing import CliRunner

    from unbake.cli import app
    from unbake.studio import server

    calls = []
    monkeypatch.setattr(server, "serve", lambda **kw: calls.append(kw))
    runner = CliRunner()
    res = runner.invoke(app, ["studio", "--no-browser", "--data-dir", str(tmp_path), "--port", "9000"])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 9000 and calls[-1]["open_browser"] is False
    assert calls[-1]["data_dir"] == tmp_path and calls[-1]["workers"] == 1
    res = runner.invoke(app, ["studio", "--host", "0.0.0.0", "--max-upload-mb", "5", "--workers", "2"])
    assert res.exit_code == 0 and "warning" in res.output and "0.0.0.0" in res.output
    assert calls[-1]["open_browser"] is True and calls[-1]["max_upload_mb"] == 5 and calls[-1]["workers"] == 2
    assert runner.invoke(app, ["studio", "--port", "70000"]).exit_code == 1
    assert runner.invoke(app, ["studio", "--workers", "0"]).exit_code == 1
    assert len(calls) == 2


def test_quality_report_flags_trivial_and_degrades(monkeypatch, mix):
    """A stem that is the whole mix is flagged; without the metrics the report says what is missing."""
    import unbake.metrics
    from unbake.studio.pipeline import quality_report

    report = quality_report(mix, {"vocals": mix.copy(), "other": np.zeros_like(mix)}, 44100)
    assert report["available"] and report["trivial"] and report["reasons"] == ["dominant_stem:vocals"]
    assert report["exact"] is True and report["stems"]["vocals"]["energy_share"] == pytest.approx(1.0)
    monkeypatch.delattr(unbake.metrics, "mixture_consistency")
    report = quality_report(mix, {"vocals": mix.copy(), "other": np.zeros_like(mix)}, 44100)
    assert report["available"] is False and "mixture_consistency" in report["message"]


def test_failed_separation_names_the_song(tmp_path, wav_file):
    """A file damaged past its first block is accepted, fails in the job, and says why in the song's name."""
    data = tmp_path / "data"
    whole = wav_file.read_bytes()
    with client_for(data) as client:
        res = upload(client, whole[: int(len(whole) * 0.6)], name="cut.wav")
        assert res.status_code == 201, res.text
        job = wait_for(client, res.json()["id"], {"done", "failed"})
        assert job["status"] == "failed"
        assert job["error"].startswith("cut.wav: truncated"), job["error"]
        assert str(data) not in job["error"]
        assert client.get(f"/api/jobs/{job['id']}/stems/vocals/audio").status_code == 409


# ---------------------------------------------------------------------- streamed analysis, limits


def test_streamed_analysis_matches_the_in_memory_figures(studio, song_job):
    """Peaks, loudness and the check report, computed block by block, equal what the library
    computes on whole arrays (pyloudnorm, `unbake check`)."""
    from unbake.audio import read_audio
    from unbake.metrics.report import check_report
    from unbake.remix.master import integrated_lufs

    client, data = studio
    job, _ = song_job
    folder = data / "jobs" / job["id"]
    a = client.get(f"/api/jobs/{job['id']}/analysis").json()
    original, sr = read_audio(folder / "input")
    arrays = {"original": original, **{s: read_audio(folder / "stems" / f"{s}.flac")[0] for s in job["stems"]}}
    for name, audio in arrays.items():
        assert a["loudness_lufs"][name] == pytest.approx(integrated_lufs(audio, sr), abs=0.006), name
        n = audio.shape[1]
        edges = np.linspace(0, n, 1201).astype(int)
        expected = [float(np.abs(audio[:, lo:max(hi, lo + 1)]).max()) for lo, hi in zip(edges[:-1], edges[1:])]
        np.testing.assert_allclose(a["peaks"][name], expected, atol=1e-4)
    expected = check_report(folder / "stems", folder / "input")
    got = a["quality"]["report"]
    assert got.keys() == expected.keys() - {"stems_dir", "mixture"}  # no server paths in the page

    def same(x, y, where):
        if isinstance(x, dict):
            assert x.keys() == y.keys(), where
            for k in x:
                same(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, list):
            assert len(x) == len(y), where
            for i, (p, q) in enumerate(zip(x, y)):
                same(p, q, f"{where}[{i}]")
        elif isinstance(x, float) and isinstance(y, float):
            assert x == pytest.approx(y, rel=1e-6, abs=1e-9), where
        else:
            assert x == y, where

    same({k: expected[k] for k in got}, got, "report")


def test_ab_match_is_the_lufs_of_the_mix(studio, song_job):
    """The A/B gain is the loudness (pyloudnorm, as `unbake remix`) of the mix as set, minus the original's."""
    from unbake.audio import read_audio
    from unbake.remix import Remix
    from unbake.remix.master import integrated_lufs
    from unbake.stems import StemSet

    client, data = studio
    job, _ = song_job
    folder = data / "jobs" / job["id"]
    stems = StemSet.load(folder / "stems")
    original, sr = read_audio(folder / "input")
    cases = [({"tracks": {"vocals": {"mute": True}}}, Remix(stems).mute("vocals")),
             ({"tracks": {"vocals": {"gain_db": -6.0, "pan": -0.5}, "accompaniment": {"gain_db": 2.0, "pan": 0.3}}},
              Remix(stems).gain("vocals", -6.0).pan("vocals", -0.5).gain("accompaniment", 2.0).pan("accompaniment", 0.3)),
             ({"tracks": {"vocals": {"solo": True}}}, Remix(stems).solo("vocals"))]
    for settings, remix in cases:
        res = client.post(f"/api/jobs/{job['id']}/ab-match", json={"settings": settings})
        assert res.status_code == 200, res.text
        got = res.json()
        mix_lufs = integrated_lufs(remix.render(), sr)
        assert got["mix_lufs"] == pytest.approx(mix_lufs, abs=0.006), settings
        assert got["original_lufs"] == pytest.approx(integrated_lufs(original, sr), abs=0.006)
        assert got["gain_db"] == pytest.approx(mix_lufs - integrated_lufs(original, sr), abs=0.011)
    res = client.post(f"/api/jobs/{job['id']}/ab-match", json={"settings": {"tracks": {"vocals": {"gain_db": 99}}}})
    assert res.status_code == 400 and res.json()["detail"].startswith("tracks.vocals.gain_db")


def test_neutral_settings_render_the_sum_of_the_stems(studio, song_job, tmp_path):
    """The one place the mixer's starting values come from; rendering them changes nothing."""
    from unbake.audio import read_audio
    from unbake.remix import Remix
    from unbake.stems import StemSet

    client, data = studio
    job, _ = song_job
    neutral = client.get("/api/mix/neutral").json()
    assert neutral["track"]["gain_db"] == 0 and neutral["track"]["mute"] is False
    assert neutral["master"]["loudness_lufs"] is None
    settings = {"tracks": {s: neutral["track"] for s in job["stems"]}, "master": neutral["master"]}
    res = client.post(f"/api/jobs/{job['id']}/render", json={"settings": settings, "format": "wav"})
    assert res.status_code == 200, res.text
    (tmp_path / "neutral.wav").write_bytes(client.get(res.json()["url"]).content)
    audio, _ = read_audio(tmp_path / "neutral.wav")
    expected = Remix(StemSet.load(data / "jobs" / job["id"] / "stems")).render()
    np.testing.assert_allclose(audio, np.clip(expected, -1.0, 1.0), atol=2e-6)  # a 24-bit file holds +-1


def test_default_model_is_the_cli_default(studio):
    from unbake.separate import default_model

    client, _ = studio
    assert client.get("/api/config").json()["default_model"] == default_model()
    marked = [m["name"] for m in client.get("/api/models").json() if m["default"]]
    assert marked == [default_model()]


def test_json_bodies_are_capped(studio, song_job):
    client, _ = studio
    job, _ = song_job
    url = f"/api/jobs/{job['id']}/render"
    huge = json.dumps({"settings": {"tracks": {}, "pad": "x" * (2 * 1024 * 1024)}}).encode()
    res = client.post(url, content=huge, headers={"Content-Type": "application/json"})
    assert res.status_code == 413 and "larger than 1 MiB" in res.json()["detail"]
    # without a Content-Length (chunked), the cap holds while the body arrives
    res = client.post(url, content=(huge[i:i + 65536] for i in range(0, len(huge), 65536)),
                      headers={"Content-Type": "application/json"})
    assert res.status_code == 413
    res = client.post(f"/api/jobs/{job['id']}/project/load", content=b"tracks: {}\n" + b"#" * (2 * 1024 * 1024))
    assert res.status_code == 413
    # a body under the cap still works, so the refusals are the cap's
    assert client.post(url, json={"settings": {}, "format": "flac"}).status_code == 200


def test_stems_zip_does_not_follow_a_planted_symlink(tmp_path, wav_file):
    data = tmp_path / "data"
    with client_for(data) as client:
        job = upload(client, wav_file.read_bytes(), name="song.wav").json()
        assert wait_for(client, job["id"], {"done", "failed"})["status"] == "done"
        stems = data / "jobs" / job["id"] / "stems"
        (stems / "vocals.flac").unlink()
        (stems / "vocals.flac").symlink_to(data / "studio.sqlite3")  # inside the data folder
        for url in [f"/api/jobs/{job['id']}/stems.zip", f"/api/jobs/{job['id']}/stems.zip?format=wav",
                    f"/api/jobs/{job['id']}/stems/vocals/audio", f"/api/jobs/{job['id']}/stems/vocals/download"]:
            res = client.get(url)
            assert res.status_code == 404, (url, res.status_code)
            assert b"SQLite format 3" not in res.content
        # a linked folder is refused the same way
        (stems / "vocals.flac").unlink()
        cache = data / "jobs" / job["id"] / "cache"
        cache.mkdir(exist_ok=True)
        elsewhere = data / "jobs" / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "stems-flac.zip").write_bytes(b"SQLite format 3 pretending")
        cache.rmdir()
        cache.symlink_to(elsewhere, target_is_directory=True)
        res = client.get(f"/api/jobs/{job['id']}/stems.zip")
        assert res.status_code == 404 and b"SQLite" not in res.content
        assert not list(data.rglob("*.part*"))


def test_max_duration_is_checked_before_any_work(tmp_path, wav_file):
    data = tmp_path / "data"
    with client_for(data, max_duration_s=1.0) as client:  # wav_file holds 2 s
        res = upload(client, wav_file.read_bytes(), name="long.wav")
        assert res.status_code == 413, res.text
        detail = res.json()["detail"]
        assert detail.startswith("the song is 0:02 long; this studio takes songs up to 0:01") and "--max-duration" in detail
        assert client.get("/api/jobs").json() == []
        assert list((data / "jobs").iterdir()) == [] and list((data / "incoming").iterdir()) == []
    with client_for(data, max_duration_s=2.5) as client:
        assert upload(client, wav_file.read_bytes(), name="short.wav").status_code == 201


def test_a_full_disk_fails_the_job_before_it_writes_audio(tmp_path, wav_file, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    data = tmp_path / "data"
    with client_for(data) as client:
        job = upload(client, wav_file.read_bytes(), name="song.wav").json()
        job = wait_for(client, job["id"], {"done", "failed"})
        assert job["status"] == "failed"
        assert job["error"].startswith("not enough free disk space: this song needs about"), job["error"]
        assert not (data / "jobs" / job["id"] / "stems").exists()


@pytest.mark.slow
def test_studio_pipeline_memory_is_flat_in_track_length(tmp_path):
    """The whole job (separation, original, streamed analysis, a spectrogram) on 20 minutes of
    quiet FLAC, in a subprocess: its peak RSS stays far below the ~11 GB the whole-array
    analysis needed (0.57 GB per minute)."""
    import os
    import subprocess

    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_memory.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    res = subprocess.run([sys.executable, str(bench), "--studio", "--minutes", "20", "--quiet-input"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    peak_mib = float(res.stdout.split("peak RSS")[1].split()[0])
    assert peak_mib < 1500, res.stdout


def test_studio_command_max_duration(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from unbake.cli import app
    from unbake.studio import server

    calls = []
    monkeypatch.setattr(server, "serve", lambda **kw: calls.append(kw))
    runner = CliRunner()
    res = runner.invoke(app, ["studio", "--no-browser", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0 and calls[-1]["max_duration_min"] == 30.0
    res = runner.invoke(app, ["studio", "--no-browser", "--data-dir", str(tmp_path), "--max-duration", "90"])
    assert res.exit_code == 0 and calls[-1]["max_duration_min"] == 90.0
    for bad in ("0", "-5", "inf"):
        res = runner.invoke(app, ["studio", "--max-duration", bad])
        assert res.exit_code == 1 and "--max-duration" in res.output, bad
    assert len(calls) == 2


def test_exports_for_dj_software_and_daws(studio, song_job, example_song, tmp_path):
    """The NI Stems file (four-stem models only) and MIDI of a stem, next to the other exports."""
    import mido

    from unbake.audio.io import info, stream_names

    client, _ = studio
    job, _ = song_job  # center: vocals + accompaniment, not the NI four
    res = client.get(f"/api/jobs/{job['id']}/stems.stem.mp4")
    assert res.status_code == 409 and "stems" in res.json()["detail"].lower()
    res = client.get(f"/api/jobs/{job['id']}/stems/vocals/midi")
    assert res.status_code == 200 and res.content[:4] == b"MThd"
    assert "Falcon 69 - vocals.mid" in unquote(res.headers["content-disposition"])
    assert client.get(f"/api/jobs/{job['id']}/stems/accompaniment/midi").status_code == 400  # kind unknown
    res = client.get(f"/api/jobs/{job['id']}/stems/accompaniment/midi", params={"kind": "drums"})
    assert res.status_code == 200
    midi_path = tmp_path / "drums.mid"
    midi_path.write_bytes(res.content)
    hits = [m for m in mido.MidiFile(str(midi_path)) if m.type == "note_on" and m.velocity > 0]
    assert hits and {m.channel for m in hits} == {9} and {m.note for m in hits} <= {36, 38, 42}

    res = upload(client, example_song.read_bytes(), name="Falcon 69.stem.mp4", model="unbake_small")
    assert res.status_code == 201, res.text
    four = wait_for(client, res.json()["id"], {"done", "failed"})
    assert four["status"] == "done", four
    res = client.get(f"/api/jobs/{four['id']}/stems.stem.mp4", params={"codec": "alac"})
    assert res.status_code == 200
    assert "Falcon 69.stem.mp4" in unquote(res.headers["content-disposition"])
    path = tmp_path / "song.stem.mp4"
    path.write_bytes(res.content)
    assert len(info(path).streams) == 5
    assert stream_names(path) == ["mixture", "drums", "bass", "other", "vocals"]
