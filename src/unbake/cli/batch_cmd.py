"""`unbake batch`: separate whole libraries, resumably (thin: the work is in unbake.batch)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import _escape, app, console, fail, handle_errors, out
from .separate_cmd import SeparationArgs, announce_default, chosen_model, separation_options


@app.command()
@handle_errors
@separation_options
def batch(
    sources: Optional[List[Path]] = typer.Argument(None, help="Files and folders (walked recursively).", show_default=False),
    outdir: Optional[Path] = typer.Option(None, "-o", "--out", help="Output folder: the source tree mirrored, and the manifest in OUT/.unbake/."),
    engine: str = typer.Option("local", "--engine", help="local (worker processes) | ray (a Ray cluster)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join (default: start one on this machine)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes or Ray actors (default: one per core up to 8, or one per GPU)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Torch threads per worker (default: the cores shared out)."),
    retries: int = typer.Option(1, "--retries", help="Further attempts for a file that fails."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write one row per input to FILE.csv or FILE.json."),
    status: Optional[Path] = typer.Option(None, "--status", help="Print where the batch in this OUT folder stands, and exit."),
    *,
    sep: SeparationArgs,
) -> None:
    """Separate a whole library into OUT, resumably: rerun to finish or update it."""
    if status is not None:
        from ..batch.report import report_from_manifest, status as batch_status

        out.print(batch_status(status).text(), highlight=False, markup=False)
        if report is not None:
            report_from_manifest(status).write(report)
        return
    if not sources or outdir is None:
        fail("give SOURCE... and -o OUT (or --status OUT)", 2)
    from ..batch import run

    sep.request()  # every option checked before any work
    choice = sep.model_choice()
    model = chosen_model(sep)
    announce_default(sep, model)
    try:
        with _Display() as display:
            result = run(sources, outdir, model, engine=engine, workers=workers, threads=threads, retries=retries,
                         ray_address=ray_address, progress=display.update, weights=choice["weights"],
                         ensemble_method=choice["method"], model_file=choice["model_file"], config=choice["config"],
                         **sep.request_options())
    except KeyboardInterrupt:
        fail("interrupted: the files in flight are left for the next run (run the same command again)", 130)
    for inp, err in result.failures:
        console.print(f"[bold red]failed:[/] {_escape(err if err.startswith(inp) else f'{inp}: {err}')}", highlight=False)
    console.print(_escape(result.summary()), highlight=False)
    if report is not None:
        result.write(report)
    if result.failed:
        raise typer.Exit(1)


class _Display:
    """Files done/total, hours of audio, x real time and ETA, on one rich progress line."""

    def __enter__(self) -> "_Display":
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

        from .app import make_progress

        self._progress = make_progress()
        self._progress.columns = (TextColumn("[bold]files"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"))
        self._progress.__enter__()
        self._task = self._progress.add_task("files", total=None, info="")
        return self

    def update(self, p) -> None:
        from ..batch.report import hms as _hms

        speed = f"{p.x_realtime:.1f}x real time" if p.x_realtime else "-"
        eta = f"ETA {_hms(p.eta_s)}" if p.eta_s is not None else ""
        failed = f", {p.failed} failed" if p.failed else ""
        self._progress.update(self._task, total=p.files_total, completed=p.files_done + p.failed,
                              info=f"{p.audio_s / 3600:.2f} h audio, {speed}{failed} {eta}")

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)
