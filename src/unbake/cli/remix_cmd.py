"""`unbake remix`: render a remix project, a quick remix from options, or write a starting project."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import _escape, app, console, handle_errors, make_progress, progress_bar


@app.command()
@handle_errors
def remix(
    target: Path = typer.Argument(..., help="A project file (.yaml/.yml), a folder of stems, or a song.",
                                  show_default=False),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output file (replaces the project's output.path)."),
    gain: Optional[List[str]] = typer.Option(None, "--gain", help="STEM=DB, e.g. vocals=+3 (repeatable)."),
    pan: Optional[List[str]] = typer.Option(None, "--pan", help="STEM=POS, -1 left .. 1 right (repeatable)."),
    mute: Optional[List[str]] = typer.Option(None, "--mute", help="Leave STEM out (repeatable)."),
    solo: Optional[List[str]] = typer.Option(None, "--solo", help="Play only soloed stems (repeatable)."),
    loudness: Optional[float] = typer.Option(None, "--loudness", help="Master to this integrated loudness (LUFS)."),
    true_peak: Optional[float] = typer.Option(None, "--true-peak", help="Limiter ceiling in dBTP (default -1 with --loudness or --reference)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Master like this record: its tonal balance "
                                                                       "and (without --loudness) its loudness."),
    name: Optional[str] = typer.Option(None, "-n", "--name", help="Separation model for a song (default: unbake's default)."),
    bit_depth: Optional[str] = typer.Option(None, "--bit-depth", help="16 | 24 | 32f (default 24)."),
    init: bool = typer.Option(False, "--init", help="Print a starting project file for a song or stems folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Remix stems: per-stem gain/pan/mute/solo/EQ/compression, automation, mastering, A/B.

    \b
    unbake remix project.yaml [-o OUT]
    unbake remix SONG_OR_STEMS --gain vocals=+3 --pan bass=0.3 --mute other --loudness -14 -o out.wav
    unbake remix OLD_SONG --reference MODERN_RECORD.flac -o remaster.wav
    unbake remix --init SONG_OR_STEMS > project.yaml
    """
    from ..errors import ConfigError
    from ..remix.project import PROJECT_SUFFIXES, Remix, init_project, source_from_path

    is_project = target.suffix.lower() in PROJECT_SUFFIXES
    if init:
        if is_project:
            raise ConfigError("--init takes a song or a stems folder, not a project file")
        from ..separation_cache import separate_cached

        source = source_from_path(target, name)
        stems = None
        if source.song is not None:
            with make_progress() as progress:
                stems = separate_cached(source.song, source.model, progress=progress_bar(progress, "separating"))
        typer.echo(init_project(source, stems, output=str(out) if out else _default_out(target).name), nl=False)
        return
    # checked before a song is separated: a typo costs nothing
    masters = _master_options(loudness, true_peak, reference)
    gains = [_pair("--gain", text) for text in gain or []]
    pans = [_pair("--pan", text) for text in pan or []]
    with make_progress() as progress:
        # the bar only appears when a song has to be separated (not when its stems are cached)
        bar = progress_bar(progress, "separating")
        if is_project:
            if name is not None:
                raise ConfigError("-n applies to a song; in a project file set `model:`")
            mixer = Remix.from_project(target, progress=bar)
        else:
            from ..remix.project import Project

            project = Project.parse({}, source=source_from_path(target, name))
            project.output.path = out or _default_out(target)
            mixer = Remix.from_parsed(project, progress=bar)
    _apply_options(mixer, gains, pans, mute or [], solo or [], masters)
    if bit_depth is not None:
        mixer.project.output.bit_depth = bit_depth
    written = mixer.render_project(out, overwrite=overwrite)
    for path in written:
        console.print(f"[green]wrote[/] {_escape(str(path))}{_figures(path)}", highlight=False)


def _default_out(target: Path) -> Path:
    from .._common import track_name

    return Path(f"{track_name(target)}-remix.wav")


def _pair(option: str, text: str) -> tuple[str, float]:
    from ..errors import ConfigError

    stem, sep, value = text.rpartition("=")
    if not sep or not stem:
        raise ConfigError(f"{option} {text}: expected STEM=NUMBER")
    try:
        return stem, float(value)
    except ValueError:
        raise ConfigError(f"{option} {text}: {value!r} is not a number") from None


def _master_options(loudness, true_peak, reference) -> dict:
    """The master keys the options set, checked (before any separation)."""
    options = {}
    if loudness is not None:
        options["loudness_lufs"] = _master_option("--loudness", "loudness_lufs", loudness)
    if reference is not None:
        options["reference"] = _master_option("--reference", "reference", reference)
    if true_peak is not None:
        options["true_peak_db"] = _master_option("--true-peak", "true_peak_db", true_peak)
    return options


def _apply_options(mixer, gains, pans, mutes, solos, masters: dict) -> None:
    """The options on the mixer; a master option that leaves the project without a ceiling
    brings the default one, as a loudness target or a reference does in a project file."""
    from ..remix.schema import DEFAULT_TRUE_PEAK_DB

    for stem, db in gains:
        mixer.gain(stem, db)
    for stem, position in pans:
        mixer.pan(stem, position)
    for stem in mutes:
        mixer.mute(stem)
    for stem in solos:
        mixer.solo(stem)
    settings = mixer.master_settings
    for key, value in masters.items():
        setattr(settings, key, value)
    if masters and settings.true_peak_db is None:
        settings.true_peak_db = DEFAULT_TRUE_PEAK_DB


def _master_option(option: str, key: str, value):
    """``value`` checked against the range the project file declares for ``master.<key>``;
    the message names the flag."""
    from .._schema import field_value
    from ..errors import ConfigError
    from ..remix.schema import MasterSettings

    try:
        return field_value(MasterSettings, key, value)
    except ConfigError as exc:
        raise ConfigError(f"{option}: {str(exc).partition(': ')[2]}") from None


def _figures(path: Path) -> str:
    """`` (-14.0 LUFS, -1.2 dBTP)`` measured on the written file; empty when not measurable."""
    from ..errors import UnbakeError

    try:
        from ..audio import read_audio
        from ..remix.master import integrated_lufs, true_peak_db

        audio, sr = read_audio(path)
        return f" ({integrated_lufs(audio, sr):.1f} LUFS integrated, {true_peak_db(audio, sr):.1f} dBTP true peak)"
    except UnbakeError:
        return ""
