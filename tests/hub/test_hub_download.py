"""Downloads against a local HTTP server: verified, atomic, cached, and offline-aware."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from unbake.errors import ChecksumError, DownloadError, OfflineError
from unbake.hub import download
from unbake.hub.catalogue import FileSpec, ModelEntry

PARITY = Path(__file__).resolve().parents[3] / "shared" / "parity" / "demucs"
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, several chunks


class _Server:
    """A local server: ``/<name>`` serves ``files[name]``; ``/truncated/<name>`` announces the
    full length but sends half and closes."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                server.requests.append(self.path)
                truncated = self.path.startswith("/truncated/")
                name = self.path.removeprefix("/truncated/").lstrip("/")
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if truncated else body)
                if truncated:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("UNBAKE_CACHE", str(folder))
    monkeypatch.delenv("UNBAKE_OFFLINE", raising=False)
    return folder


@pytest.fixture
def server():
    with _Server({"model-1234abcd.th": PAYLOAD}) as srv:
        yield srv


def _spec(server: _Server, *, path: str = "model-1234abcd.th", **kw) -> FileSpec:
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    kw.setdefault("sha256", digest)
    return FileSpec(name="model-1234abcd.th", url=f"{server.url}/{path}", **kw)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_cache_dir_follows_environment(cache):
    assert download.cache_dir() == cache


def test_download_then_cached_without_request(cache, server):
    spec = _spec(server)
    assert download.cached_path(spec) is None
    path = download.fetch(spec)
    assert path == cache / spec.name and path.read_bytes() == PAYLOAD
    assert len(server.requests) == 1
    assert download.fetch(spec) == path
    assert download.cached_path(spec) == path
    entry = ModelEntry(name="m", architecture="htdemucs", format="demucs-th", sources=("a",),
                       samplerate=44100, files=(spec,))
    assert download.is_cached(entry) and download.fetch_entry(entry) == [path]
    assert len(server.requests) == 1
    assert not [n for n in _leftovers(cache) if n.endswith(".part")]


def test_prefix_only_checksum_is_checked(cache, server):
    good = hashlib.sha256(PAYLOAD).hexdigest()[:8]
    assert download.fetch(_spec(server, sha256=None, sha256_prefix=good)).read_bytes() == PAYLOAD


def test_wrong_checksum_leaves_nothing(cache, server):
    with pytest.raises(ChecksumError, match="sha256"):
        download.fetch(_spec(server, sha256="0" * 64))
    assert _leftovers(cache) == []
    with pytest.raises(ChecksumError):
        download.fetch(_spec(server, sha256=None, sha256_prefix="00000000"))
    assert _leftovers(cache) == []


@pytest.mark.parametrize("checksum", [True, False])
def test_truncated_transfer_is_a_download_error(cache, server, checksum):
    spec = _spec(server, path="truncated/model-1234abcd.th", **({} if checksum else {"sha256": None}))
    with pytest.raises(DownloadError) as info:
        download.fetch(spec)
    assert type(info.value) is DownloadError  # the transfer broke off: not a checksum mismatch
    assert _leftovers(cache) == []


def test_wrong_size_is_refused(cache, server):
    with pytest.raises(DownloadError, match="bytes"):
        download.fetch(_spec(server, sha256=None, size=len(PAYLOAD) + 1))
    assert _leftovers(cache) == []


def test_missing_file_on_server(cache, server):
    with pytest.raises(DownloadError, match="404"):
        download.fetch(_spec(server, path="nothing-here.th"))
    assert _leftovers(cache) == []


def test_server_down(cache):
    with socket.socket() as s:  # a port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = FileSpec(name="model-1234abcd.th", url=f"http://127.0.0.1:{port}/model-1234abcd.th",
                    sha256_prefix="1234abcd")
    with pytest.raises(DownloadError, match="could not download"):
        download.fetch(spec)
    assert _leftovers(cache) == []


def test_offline_names_url_and_target_path(cache, server, monkeypatch):
    monkeypatch.setenv("UNBAKE_OFFLINE", "1")
    spec = _spec(server)
    with pytest.raises(OfflineError) as info:
        download.fetch(spec)
    message = str(info.value)
    assert spec.url in message and str(cache / spec.name) in message
    assert server.requests == []


def test_offline_uses_a_hand_copied_file(cache, server, monkeypatch):
    monkeypatch.setenv("UNBAKE_OFFLINE", "1")
    cache.mkdir(parents=True)
    (cache / "model-1234abcd.th").write_bytes(PAYLOAD)
    assert download.fetch(_spec(server)) == cache / "model-1234abcd.th"
    assert server.requests == []


def test_corrupted_cache_file_is_not_used(cache, server):
    spec = _spec(server)
    path = download.fetch(spec)
    path.write_bytes(PAYLOAD[:-1] + b"\x00")  # changed after it was verified
    assert download.cached_path(spec) is None
    assert download.fetch(spec).read_bytes() == PAYLOAD
    assert len(server.requests) == 2


@pytest.mark.needs_shared
@pytest.mark.skipif(not (PARITY / "htdemucs.small.th").exists(), reason="parity data not found")
def test_catalogue_model_downloads_and_loads(cache, monkeypatch):
    """The whole path of a user's first run: catalogue name -> download -> verify -> .th reader."""
    import torch

    from unbake.hub import loading
    from unbake.hub.catalogue import parse_catalogue

    data = (PARITY / "htdemucs.small.th").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with _Server({"small.th": data}) as srv:
        text = f"""
[models.tiny]
architecture = "htdemucs"
format = "demucs-th"
sources = ["drums", "bass", "other", "vocals"]
samplerate = 44100
files = [{{ name = "small.th", url = "{srv.url}/small.th", sha256 = "{digest}" }}]
"""
        monkeypatch.setattr(loading, "load_catalogue", lambda: parse_catalogue(text))
        model = loading.load_model("tiny")
        assert len(srv.requests) == 1
    io = torch.load(PARITY / "htdemucs.small.io.pt", weights_only=True)
    with torch.no_grad():
        out = model(io["inputs"][0])
    assert (out - io["outputs"][0]).abs().max() <= 1e-5 * io["outputs"][0].abs().max()
