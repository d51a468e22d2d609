"""`unbake check` (is a separation plausible?) and `unbake eval` (scores on a dataset)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .app import app, handle_errors, make_progress, out


@app.command()
@handle_errors
def check(
    stems_dir: Path = typer.Argument(..., help="Folder with one audio file per stem (from any tool)."),
    mixture: Path = typer.Option(..., "--mixture", "-m", help="The original recording."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
) -> None:
    """Do the stems sum back to the mix, and is the answer non-trivial?"""
    from ..metrics.report import check_report

    report = check_report(stems_dir, mixture)
    if as_json:
        out.print_json(json.dumps(report, allow_nan=False))
        return
    out.print(f"stems sum to mix: SNR {_db(report['consistency_snr_db'])}"
              f" ({'consistent' if report['consistent'] else 'NOT consistent'})", highlight=False)
    out.print(f"trivial answer: {'YES — ' + report['trivial_reason'] if report['trivial'] else 'no'}",
              highlight=False)
    for name, s in report["stems"].items():
        out.print(f"  {name:<14} energy share {_percent(s.get('energy_share'))}   "
                  f"leakage {_fraction(s.get('leakage'))}", highlight=False)


def _db(v) -> str:
    return "exact" if v is None else f"{v:.1f} dB"


# Silent stems have no energy share or leakage (the report says None): print that, not a crash.
def _percent(v) -> str:
    return "    - %" if v is None else f"{100 * v:5.1f} %"


def _fraction(v) -> str:
    return "- (silent)" if v is None else f"{v:.2f}"


@app.command("eval")
@handle_errors
def evaluate(
    dataset: Path = typer.Argument(..., help="MUSDB-format folder: *.stem.mp4 files or folders of stem files."),
    name: Optional[List[str]] = typer.Option(None, "-n", "--name", help="Model (repeat for an ensemble)."),
    outdir: Path = typer.Option(Path("eval"), "-o", "--out", help="Where estimates, scores and plots go."),
    mixture_from_stems: bool = typer.Option(False, "--mixture-from-stems", help="Use the sum of the stems as the mixture."),
    track: Optional[List[str]] = typer.Option(None, "--track", help="Only these tracks (repeatable)."),
    device: str = typer.Option("cpu", "--device", "-d"),
    shifts: int = typer.Option(0, "--shifts"),
) -> None:
    """Separate every track of a dataset and score each stem (SDR family); resumable."""
    from ..metrics.dataset import evaluate_dataset
    from ..separate import default_model

    model = list(name) if name and len(name) > 1 else (name[0] if name else default_model())
    with make_progress() as progress:
        task = progress.add_task("evaluating", total=None)

        def cb(done, total, track_name):
            progress.update(task, total=total, completed=done, description=track_name[:40] or "done")

        summary = evaluate_dataset(dataset, model, outdir, mixture_from_stems=mixture_from_stems,
                                   progress=cb, tracks=track, device=device, shifts=shifts)
    out.print((outdir / "summary.md").read_text(), highlight=False)
    out.print(f"{summary['tracks']} tracks ({summary['reused_estimates']} reused estimates); "
              f"results in {outdir}", highlight=False)
