"""Running the studio: uvicorn on a host and port, the browser opened on it once it listens."""

from __future__ import annotations

import logging
import os
import threading
import webbrowser
from pathlib import Path

from ..errors import DependencyError
from .settings import DEFAULT_MAX_DURATION_MIN, DEFAULT_MAX_UPLOAD_MB, LOOPBACK_HOSTS

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def default_data_dir() -> Path:
    """Where jobs live unless ``--data-dir`` says otherwise (the user's data folder)."""
    from platformdirs import user_data_path

    return user_data_path("unbake") / "studio"


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def build_server(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, data_dir: str | os.PathLike | None = None,
                 max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_duration_min: float = DEFAULT_MAX_DURATION_MIN,
                 workers: int = 1, log_level: str = "warning"):
    """A configured ``uvicorn.Server`` (not started) serving the studio app."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise DependencyError(f"the studio needs {exc.name}: pip install 'unbake[studio]'") from exc
    from .app import create_app

    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    # bound to loopback, only loopback names may reach it (DNS rebinding); bound wider, any name
    allowed = tuple(LOOPBACK_HOSTS) + ((host,) if is_loopback(host) and host not in LOOPBACK_HOSTS else ())
    app = create_app(folder, max_upload_mb=max_upload_mb, max_duration_s=max_duration_min * 60, workers=workers,
                     allowed_hosts=allowed if is_loopback(host) else None)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=5, lifespan="on")
    return uvicorn.Server(config)


def serve(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, data_dir: str | os.PathLike | None = None,
          open_browser: bool = True, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
          max_duration_min: float = DEFAULT_MAX_DURATION_MIN, workers: int = 1, on_ready=None) -> None:
    """Serve until interrupted; ``on_ready(url)`` is called once the socket listens."""
    server = build_server(host=host, port=port, data_dir=data_dir, max_upload_mb=max_upload_mb,
                          max_duration_min=max_duration_min, workers=workers)
    url = url_for(host, port)

    def announce() -> None:
        # uvicorn sets `started` after binding; the browser must not race the socket
        while not server.started and not server.should_exit:
            threading.Event().wait(0.05)
        if server.started:
            if on_ready is not None:
                on_ready(url)
            if open_browser:
                webbrowser.open(url)

    threading.Thread(target=announce, name="unbake-studio-announce", daemon=True).start()
    server.run()
