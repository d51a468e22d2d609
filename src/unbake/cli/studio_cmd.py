"""`unbake studio`: the local web app (separate, mix, compare, export)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import _escape, app, console, handle_errors


@app.command()
@handle_errors
def studio(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but loopback exposes your files to the network."),
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where uploads, stems and the job database live (default: the user data folder)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
    max_upload_mb: float = typer.Option(1024, "--max-upload-mb", help="Refuse uploads larger than this (MiB)."),
    max_duration: float = typer.Option(30.0, "--max-duration", help="Refuse songs longer than this (minutes), read from the file's header before any work."),
    workers: int = typer.Option(1, "--workers", help="Separations that run at the same time."),
) -> None:
    """Open the studio in your browser: separate a song, mix the stems, compare with the original, export."""
    from ..errors import UnbakeError
    from ..studio.server import default_data_dir, is_loopback, serve

    if not 1 <= port <= 65535:
        raise UnbakeError(f"--port must be between 1 and 65535, not {port}")
    if workers < 1:
        raise UnbakeError("--workers must be at least 1")
    if max_upload_mb <= 0:
        raise UnbakeError("--max-upload-mb must be positive")
    if not 0 < max_duration < float("inf"):
        raise UnbakeError("--max-duration must be a positive number of minutes")
    if not is_loopback(host):
        console.print(f"[bold yellow]warning:[/] listening on {_escape(host)}: anyone who can reach this machine "
                      "can upload files and read your separations (there is no login)", highlight=False)
    folder = data_dir or default_data_dir()
    console.print(f"data folder: {_escape(str(folder))}", highlight=False)
    serve(host=host, port=port, data_dir=folder, open_browser=not no_browser, max_upload_mb=max_upload_mb,
          max_duration_min=max_duration, workers=workers,
          on_ready=lambda url: console.print(f"unbake studio at [bold]{url}[/] (Ctrl-C stops it)", highlight=False))
