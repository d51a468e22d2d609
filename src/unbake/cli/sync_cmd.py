"""`unbake sync` (warp one performance onto another's timeline) and `unbake warp` (onto a steady grid)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import _escape, app, console, handle_errors


@app.command()
@handle_errors
def sync(
    a: Path = typer.Argument(..., help="Performance A: the one to warp (a song, stems folder or stems file).",
                             show_default=False),
    b: Path = typer.Argument(..., help="Performance B: the timeline to follow.", show_default=False),
    output: Path = typer.Option(..., "-o", "--out", help="The warped A (audio file).", show_default=False),
    stem: Optional[str] = typer.Option(None, "--stem", help="Warp this stem of A, mapped against the same stem of B."),
    name: Optional[str] = typer.Option(None, "-n", "--name", help="Separation model for --stem."),
    map_path: Optional[Path] = typer.Option(None, "--map", help="Write the time map (JSON) here."),
    keep_pitch: bool = typer.Option(False, "--keep-pitch", help="Do not shift A into B's key."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of the warp path over the similarity matrix."),
    force: bool = typer.Option(False, "--force", help="Warp even when the map's confidence is low."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Warp performance A onto performance B's timeline (a cover onto its original).

    \b
    unbake sync cover.mp3 original.mp3 -o cover_on_original.wav --map map.json
    unbake sync cover.mp3 original.mp3 --stem vocals -o vocals_on_original.wav --plot warp.png
    """
    from ..audio import write_audio
    from ..audio.io import check_writable
    from .._common import write_json_atomic
    from ..analysis.timemap import low_confidence_lines, plot_time_map, require_confidence, time_map
    from ..analysis.warp import warp
    from .mashup_cmd import _load_for_analysis

    for p in (output, map_path, plot):
        if p is not None:
            check_writable(p, overwrite)
    audio_a, sr_a, _ = _load_for_analysis(a, stem, name)
    audio_b, sr_b, _ = _load_for_analysis(b, stem, name)
    tm = time_map(audio_a, audio_b, sr_a, sr_b)
    lines = low_confidence_lines(tm)
    console.print(f"{_escape(a.name)} -> {_escape(b.name)}: key shift {tm.semitones:+d} semitones"
                  f"{' (kept: --keep-pitch)' if keep_pitch and tm.semitones else ''}, "
                  f"confidence {tm.confidence:.2f}, {len(tm.anchors)} anchors", highlight=False)
    for line in lines:
        console.print(f"  {line}", highlight=False)
    if map_path is not None:
        write_json_atomic(map_path, {"a": str(a), "b": str(b), **({"stem": stem} if stem else {}), **tm.to_dict()})
        console.print(f"[green]wrote[/] {_escape(str(map_path))}", highlight=False)
    if plot is not None:
        plot_time_map(tm, plot, names=(a.name, b.name))
        console.print(f"[green]wrote[/] {_escape(str(plot))}", highlight=False)
    if not force:
        require_confidence(tm)
    out = warp(audio_a, sr_a, tm.anchors, semitones=0.0 if keep_pitch else tm.semitones,
               preserve_formants=stem == "vocals", length_s=tm.duration_b_s)
    write_audio(output, out, sr_a, overwrite=overwrite)
    console.print(f"[green]wrote[/] {_escape(str(output))}", highlight=False)


@app.command()
@handle_errors
def warp(
    file: Path = typer.Argument(..., help="A song, stems folder or stems file.", show_default=False),
    to_bpm: float = typer.Option(..., "--to-bpm", help="The steady tempo to put the beats on.", show_default=False),
    output: Path = typer.Option(..., "-o", "--out", help="The warped audio file.", show_default=False),
    stem: Optional[str] = typer.Option(None, "--stem", help="Warp this stem (beats are tracked on the whole song)."),
    name: Optional[str] = typer.Option(None, "-n", "--name", help="Separation model for --stem."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Put a free-tempo performance on a steady beat grid (a click-aligned stem).

    \b
    unbake warp live.mp3 --to-bpm 120 -o live_120.wav
    unbake warp live.mp3 --to-bpm 120 --stem vocals -o vocals_120.wav
    """
    from ..audio import write_audio
    from ..audio.io import check_writable
    from ..analysis.warp import warp_to_bpm
    from .mashup_cmd import _load_for_analysis

    check_writable(output, overwrite)
    guide = None
    if stem is not None:
        guide, _, _ = _load_for_analysis(file, None, None)
    audio, sr, _ = _load_for_analysis(file, stem, name)
    if guide is not None and guide.shape[-1] != audio.shape[-1]:
        guide = None  # a stems file whose mix is not sample-aligned with its stems: track the stem itself
    out, anchors = warp_to_bpm(audio, sr, to_bpm, guide=guide, preserve_formants=stem == "vocals")
    console.print(f"{len(anchors)} beats put on a {to_bpm:g} BPM grid (first beat at "
                  f"{anchors[0][1]:.3f} s)", highlight=False)
    write_audio(output, out, sr, overwrite=overwrite)
    console.print(f"[green]wrote[/] {_escape(str(output))}", highlight=False)
