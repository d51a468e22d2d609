"""`unbake analyze` (tempo, beats, key; a match plan between two songs) and `unbake mashup`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .app import _escape, app, console, handle_errors, make_progress, out, progress_bar


def _load_for_analysis(path: Path, stem: Optional[str], model: Optional[str]):
    """``(audio (c, t), sample_rate, key_audio or None)`` for a file, stems folder or stem."""
    from ..analysis.analyze import pitched_mix
    from ..audio import read_audio
    from ..errors import ConfigError
    from ..stems import StemSet

    if stem is None:
        if model is not None:
            raise ConfigError("-n picks the model that separates the song for --stem; give --stem too")
        if path.is_dir():
            stems = StemSet.load(path)
            return stems.mixture(), stems.sample_rate, pitched_mix(stems)
        stems = _stems_file(path)
        if stems is not None and "mixture" in stems:
            return stems["mixture"], stems.sample_rate, pitched_mix(stems)
        audio, sr = read_audio(path)
        return audio, sr, None
    if path.is_dir():
        if model is not None:
            raise ConfigError(f"{path}: is a folder of stems; -n applies to songs only")
        stems = StemSet.load(path)
    else:
        stems = _stems_of_file(path, stem, model)
    if stem not in stems:
        raise ConfigError(f"--stem {stem}: not a stem of {path}; its stems are {', '.join(stems.names)}")
    return stems[stem], stems.sample_rate, None


def _stems_of_file(path: Path, stem: str, model: Optional[str]):
    """A multi-stream stems file (NI .stem.mp4) holds its stems already (unless -n asks for a
    separation); anything else is separated (once, cached)."""
    from ..separation_cache import separate_cached

    if model is None:
        stems = _stems_file(path)
        if stems is not None:
            return stems
    return separate_cached(path, model)


def _stems_file(path: Path):
    """The streams of a multi-stream stems file as a StemSet; None for an ordinary file."""
    from ..audio.io import info, read_stems
    from ..stems import StemSet

    if not path.is_file() or len(info(path).streams) < 2:
        return None
    stems, sr = read_stems(path)
    return StemSet(stems, sr)


def _analyse(path: Path, stem, model, prior_bpm, bpm_range):
    from ..analysis import analyze
    from ..analysis.analyze import analyze_file

    if stem is None and model is None:
        return analyze_file(path, prior_bpm=prior_bpm, bpm_range=bpm_range)  # what `unbake mashup` uses too
    audio, sr, key_audio = _load_for_analysis(path, stem, model)
    return analyze(audio, sr, prior_bpm=prior_bpm, bpm_range=bpm_range, key_audio=key_audio)


@app.command()
@handle_errors
def analyze(
    file: Path = typer.Argument(..., help="A song, a folder of stems, or a stems file (.stem.mp4).",
                                show_default=False),
    stem: Optional[str] = typer.Option(None, "--stem", help="Analyse this stem only (separating the song first if needed)."),
    name: Optional[str] = typer.Option(None, "-n", "--name", help="Separation model for --stem (default: unbake's default)."),
    match_with: Optional[Path] = typer.Option(None, "--match", help="Song B: print how to bring B to FILE's tempo and key."),
    prior_bpm: float = typer.Option(120.0, "--bpm-prior", help="Centre of the tempo prior: where octave doubt is resolved."),
    min_bpm: float = typer.Option(60.0, "--min-bpm", help="Lowest tempo reported."),
    max_bpm: float = typer.Option(200.0, "--max-bpm", help="Highest tempo reported."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Tempo (BPM), beat times and musical key of a song or one of its stems.

    \b
    unbake analyze song.mp3
    unbake analyze song.mp3 --stem vocals -n htdemucs --json
    unbake analyze A.mp3 --match B.mp3      # stretch and shift that bring B to A
    """
    from ..errors import ConfigError

    if not 0 < min_bpm < max_bpm:
        raise ConfigError(f"--min-bpm and --max-bpm must satisfy 0 < min < max, got {min_bpm:g} and {max_bpm:g}")
    if not min_bpm <= prior_bpm <= max_bpm:
        raise ConfigError(f"--bpm-prior {prior_bpm:g} must lie between --min-bpm and --max-bpm")
    bpm_range = (min_bpm, max_bpm)
    a = _analyse(file, stem, name, prior_bpm, bpm_range)
    data = {"file": str(file), **({"stem": stem} if stem else {}), **a.to_dict()}
    plan = None
    if match_with is not None:
        from ..analysis import match

        b = _analyse(match_with, stem, name, prior_bpm, bpm_range)
        plan = match(a, b)
        data["match"] = {"file": str(match_with), **b.to_dict(), "plan": plan.to_dict()}
    if as_json:
        out.print_json(json.dumps(data))
        return
    _print_analysis(file, stem, a)
    if plan is not None:
        _print_analysis(match_with, stem, b)
        # the explanation names the stretch (with its rate) and the shift: said once, one wording
        out.print(f"match (B = {match_with.name} to A = {file.name}): {plan.explanation}",
                  highlight=False, soft_wrap=True)


def _print_analysis(path: Path, stem, a) -> None:
    title = str(path) + (f" (stem {stem})" if stem else "")
    beats = " ".join(f"{b:.2f}" for b in a.beats_s[:16]) + (" ..." if len(a.beats_s) > 16 else "")
    out.print(title, highlight=False)
    tempo = f"{a.bpm:.1f} BPM ({len(a.beats_s)} beats)" if a.bpm == a.bpm else "no beat found"
    out.print(f"  tempo     {tempo}\n"
              f"  key       {a.key.name} (confidence {a.key_confidence:.2f})\n"
              f"  duration  {a.duration_s:.2f} s\n"
              f"  beats     {beats}", highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def mashup(
    project: Optional[Path] = typer.Argument(None, help="A mash-up project file (.yaml).", show_default=False),
    vocals: Optional[Path] = typer.Option(None, "--vocals", help="Song A (or its stems folder): its vocals go on top."),
    band: Optional[Path] = typer.Option(None, "--band", help="Song B (or its stems folder): its stems but the vocals; "
                                                             "A's vocals are matched to its tempo and key."),
    name: Optional[str] = typer.Option(None, "-n", "--name", help="Separation model for --vocals/--band songs "
                                                                  "(default: unbake's default)."),
    init: bool = typer.Option(False, "--init", help="Print the --vocals/--band project file instead of rendering it."),
    output: Optional[Path] = typer.Option(None, "-o", "--out", help="Output file (replaces the project's output.path)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Render a mash-up: stems of several songs, matched in tempo and key, placed and mixed.

    \b
    unbake mashup mashup.yaml -o out.wav
    unbake mashup --vocals A.mp3 --band B.mp3 -o out.wav  # A's vocals, B's band
    unbake mashup --init --vocals A.mp3 --band B.mp3 > mashup.yaml
    (the project format is described in `unbake.mashup.project`; see examples/mashup.yaml)
    """
    from ..errors import ConfigError
    from ..mashup import Mashup, MashupProject

    quick = vocals is not None or band is not None
    if project is not None and quick:
        raise ConfigError("give a project file or --vocals/--band, not both")
    if project is None and not quick:
        raise ConfigError("give a project file, or --vocals A --band B")
    if quick and (vocals is None or band is None):
        raise ConfigError("--vocals and --band go together: the vocals of one song over the band of another")
    if project is not None and (init or name is not None):
        raise ConfigError(f"{'--init' if init else '-n'} goes with --vocals/--band; in a project file set `model:`")
    if project is not None:
        job = Mashup.from_project(project)
        path = job.render_project(output, overwrite=overwrite)
    else:
        from ..audio.io import check_writable
        from ..mashup.quick import default_output, project_text, vocals_over_band
        from ..remix.schema import OutputSettings

        target, _ = OutputSettings().resolved(output or default_output(vocals, band), where="-o")
        if not init:
            check_writable(target, overwrite)  # before any separation
        with make_progress() as progress:
            # a bar per song only while it is separated (not when its stems are cached)
            plan = vocals_over_band(vocals, band, model=name, output=target,
                                    progress=lambda song: progress_bar(progress, f"separating {song}"))
        if init:
            typer.echo(project_text(plan), nl=False)
            return
        job = Mashup(MashupProject.parse(plan.data), stems=plan.stems)
        for note in plan.notes:
            console.print(_escape(note), highlight=False, soft_wrap=True)
        path = job.render_project(overwrite=overwrite)
    for song, a in job.analyses.items():
        console.print(f"{_escape(song)}: {a.bpm:.1f} BPM, {a.key.name} (confidence {a.key_confidence:.2f})",
                      highlight=False)
    for note in job.notes:
        console.print(_escape(note), highlight=False, soft_wrap=True)
    console.print(f"[green]wrote[/] {_escape(str(path))}{_figures(path)}", highlight=False)


def _figures(path: Path) -> str:
    from ..errors import UnbakeError

    try:
        from ..audio import read_audio
        from ..remix.master import measure

        audio, sr = read_audio(path)
        m = measure(audio, sr)
    except UnbakeError:
        return ""
    return f" ({m['integrated_lufs']:.1f} LUFS, {m['true_peak_db']:.1f} dBTP)"
