"""`unbake transcribe`: a stem (or a song's stem) to a MIDI file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import app, console, handle_errors, out


@app.command()
@handle_errors
def transcribe(
    file: Path = typer.Argument(..., help="A stem (with --as), or a song (with --stem)."),
    output: Optional[Path] = typer.Option(None, "-o", "--out", help="MIDI file to write."),
    as_kind: Optional[str] = typer.Option(None, "--as", help="bass | melody | drums: how to read FILE."),
    stem: Optional[str] = typer.Option(None, "--stem", help="Separate the song FILE and transcribe this stem."),
    name: Optional[str] = typer.Option(None, "-n", "--name", help="Model for --stem (default: the best available)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="Snap notes to a grid, e.g. 1/16."),
    as_json: bool = typer.Option(False, "--json", help="Print the notes as JSON."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing MIDI file."),
) -> None:
    """Transcribe a bass line, a melody or drums to MIDI, on the track's tempo map."""
    from ..audio.io import check_writable
    from ..errors import UnbakeError
    from ..transcribe import parse_quantize, transcribe_file

    if output is None and not as_json:
        raise UnbakeError("give -o OUT.mid, --json, or both")
    q = parse_quantize(quantize)
    if output is not None:
        check_writable(output, overwrite)
    result = transcribe_file(file, as_kind=as_kind, stem=stem, model=name)
    if output is not None:
        result.write_midi(output, quantize=q)
        console.print(f"[green]done[/] {len(result.notes)} {result.kind} notes -> {output}", highlight=False)
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
