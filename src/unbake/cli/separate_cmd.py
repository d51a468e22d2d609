"""`unbake separate`, `unbake models`, `unbake info`, `unbake example`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .app import _escape, app, console, error_text, handle_errors, make_progress, out


@app.command()
@handle_errors
def separate(
    inputs: List[Path] = typer.Argument(..., help="Audio or video files to separate.", show_default=False),
    outdir: Path = typer.Option(Path("separated"), "-o", "--out", help="Output folder."),
    name: Optional[List[str]] = typer.Option(None, "-n", "--name", help="Model (catalogue name or checkpoint); repeat for an ensemble."),
    model_file: Optional[Path] = typer.Option(None, "--model-file", help="Local weights file for the catalogue model named by -n."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config of a community checkpoint."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Ensemble weights, one per model, comma-separated."),
    ensemble_method: str = typer.Option("average", "--ensemble-method", help="average | median"),
    two_stems: Optional[str] = typer.Option(None, "--two-stems", help="Write STEM and no_STEM only."),
    other_method: str = typer.Option("add", "--other-method", help="no_STEM as the sum of the other stems (add) or mixture minus STEM (minus)."),
    segment_s: Optional[float] = typer.Option(None, "--segment", help="Chunk length in seconds (default: the model's)."),
    overlap: float = typer.Option(0.25, "--overlap", help="Overlap between chunks, 0..1."),
    shifts: int = typer.Option(0, "--shifts", help="Test-time random shifts (deterministic)."),
    device: str = typer.Option("cpu", "--device", "-d", help="cpu | cuda | mps | auto"),
    batch_size: int = typer.Option(1, "--batch-size", help="Chunks per model call."),
    format: str = typer.Option("wav", "--format", help="wav | flac | mp3 | stems (one NI Stems file, OUTDIR/{track}.stem.mp4)"),
    stems_codec: str = typer.Option("aac", "--stems-codec", help="Codec of --format stems: aac (256 kbit/s) | alac."),
    stems_map: Optional[str] = typer.Option(None, "--stems-map", help="NI slots from other stems, e.g. drums=drums,bass=bass,other=guitar+piano+other,vocals=vocals."),
    tag: Optional[bool] = typer.Option(None, "--tag/--no-tag", help="BPM and key tags in every file, and track.json (default: on when the analysis extra is installed)."),
    bit_depth: Optional[str] = typer.Option(None, "--bit-depth", help="16 | 24 | 32f (wav), 16 | 24 (flac). Default 24."),
    mp3_bitrate: int = typer.Option(320, "--mp3-bitrate", help="kbit/s for mp3 output."),
    filename: str = typer.Option("{track}/{stem}.{ext}", "--filename", help="Output path template: {track} {stem} {ext} {model}."),
    clip: str = typer.Option("rescale", "--clip", help="rescale | clamp | none"),
    downmix: bool = typer.Option(False, "--downmix", help="Fold more than two channels to stereo instead of refusing."),
    enforce_consistency: bool = typer.Option(False, "--enforce-consistency", help="Make the stems sum exactly to the mix."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Separate songs into stems: OUTDIR/{track}/{stem}.{ext}."""
    from ..separate import SeparationRequest, output_stems

    # Parameters named like the request's fields fill it (a new option: a field there and an
    # option of the same name here); every value is checked now, before a model loads.
    request = SeparationRequest.from_fields(locals())
    analyzer = _analyzer(tag)
    runner = _load(name, model_file, config, _weights(weights), ensemble_method)
    output_stems(runner, request.two_stems)  # --two-stems the model lacks: once, not once per file
    failures = _separate_all(inputs, outdir, runner, request, analyzer)
    if len(inputs) > 1 or failures:
        console.print(f"{len(inputs) - failures} separated, {failures} failed", highlight=False)
    if failures:
        raise typer.Exit(1)


def _weights(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        from ..errors import ModelOptionError

        raise ModelOptionError("weights", f"must be numbers separated by commas, not {text!r}") from None


def _separate_all(inputs: list[Path], outdir: Path, runner, request, analyzer=None) -> int:
    """Separate each input in turn (one failure does not stop the others); returns the failures."""
    from ..errors import UnbakeError
    from ..separate import separate_file

    failures = 0
    with make_progress() as progress:
        for path in inputs:
            task = progress.add_task(_short_name(path), total=1.0)
            try:
                _warn_if_long(path, runner, request)
                targets = separate_file(path, outdir, runner, request=request, analyzer=analyzer,
                                        progress=lambda f, t=task: progress.update(t, completed=f))
                progress.update(task, completed=1.0)
                folder = sorted({str(p.parent) for p in targets.values()})
                console.print(f"[green]done[/] {_escape(str(path))} -> {_escape(', '.join(folder))}", highlight=False)
            except UnbakeError as exc:
                progress.remove_task(task)
                failures += 1
                console.print(f"[bold red]error:[/] {_escape(error_text(exc))}", highlight=False)
    return failures


# Inputs longer than this get a warning with the temporary disk space they need.
LONG_INPUT_S = 30 * 60


def _warn_if_long(path: Path, runner, request) -> None:
    import shutil

    from .._common import temp_root
    from ..audio import info as audio_info
    from ..errors import UnbakeError
    from ..separate import temp_disk_bytes

    try:
        meta = audio_info(path)
    except UnbakeError:  # separate_file reports it
        return
    need = temp_disk_bytes(meta, runner, request)
    folder = temp_root()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if not meta.duration_s >= LONG_INPUT_S and need < free:  # (NaN: length unknown)
        return
    short = f" (only {_size(free)} free there)" if need >= free else ""
    length = f"{meta.duration_s / 60:.0f} min" if meta.duration_s >= 60 else f"{meta.duration_s:.0f} s"
    console.print(f"[yellow]warning:[/] {_escape(path.name)} lasts {length}; separating it "
                  f"writes about {_size(need)} of temporary files under {_escape(str(temp_root()))}{short}",
                  highlight=False)


def _size(n_bytes: float | None) -> str:
    if n_bytes is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}" if n_bytes < 10 * scale else f"{n_bytes / scale:.0f} {unit}"
    return f"{n_bytes:.0f} B"


def _load(names, model_file, config, weights, method):
    from ..separate import default_model, load_runner

    chosen = list(names) if names else [default_model()]
    runner = load_runner(chosen if len(chosen) > 1 else chosen[0], weights=weights, method=method,
                         model_file=str(model_file) if model_file else None,
                         config=str(config) if config else None)
    if not names:
        console.print(f"model: {chosen[0]} (the best model available without a download; "
                      "pick another with -n, see `unbake models`)", highlight=False)
    return runner


def _analyzer(tag: Optional[bool]):
    """The tempo/key analyzer for the tags, or None: on by default when librosa (the analysis
    extra) and mutagen are installed; an explicit --tag without them says what to install."""
    import importlib.util

    if tag is False:
        return None
    missing = [m for m in ("librosa", "mutagen") if importlib.util.find_spec(m) is None]
    if missing:
        if tag:
            from ..errors import DependencyError

            raise DependencyError(f"--tag needs {' and '.join(missing)}: pip install unbake[analysis]")
        return None
    from ..transcribe.timing import track_tags

    return track_tags


def _short_name(path: Path) -> str:
    n = path.name
    return n if len(n) <= 40 else n[:37] + "..."


@app.command()
@handle_errors
def models(
    download: Optional[List[str]] = typer.Option(None, "--download", help="Download (and verify) these models."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable list."),
) -> None:
    """List the model catalogue, with which models are cached; download some."""
    from ..hub.catalogue import load_catalogue

    cat = load_catalogue()
    if download:
        from ..hub.download import fetch_entry

        for name in download:
            for e in cat.members(name):
                for p in fetch_entry(e):
                    console.print(f"[green]ok[/] {e.name}: {_escape(str(p))}", highlight=False)
        return
    rows = []
    for name in cat.names():
        e = cat.get(name)
        members = cat.members(name)
        rows.append({
            "name": name,
            "kind": "ensemble" if name in cat.ensembles else members[0].architecture,
            "sources": list(e.sources),
            "available": _available(cat, e),
            "download_bytes": _download_bytes(cat, name),
            "licence": e.licence,
            "description": e.description,
        })
    if as_json:
        out.print_json(json.dumps(rows))
        return
    _print_models(rows)


def _print_models(rows: list[dict]) -> None:
    """A table that fits 80 columns; wider terminals add the licence, then the description.
    Cells wrap between words only: names and architectures never break."""
    from rich.table import Table

    extra = ("licence",) if out.width >= 100 else ()
    extra += ("description",) if out.width >= 140 else ()
    table = Table(box=None, pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("architecture", no_wrap=True)
    table.add_column("stems", min_width=len("accompaniment,"))
    table.add_column("size", no_wrap=True, justify="right")
    table.add_column("available", no_wrap=True)
    for col in extra:
        table.add_column(col)
    for r in rows:
        size = "-" if r["available"] == "built in" else _size(r["download_bytes"])
        cells = [r["name"], r["kind"], ", ".join(r["sources"]), size, r["available"]]
        table.add_row(*cells, *(r[c] for c in extra))
    out.print(table)
    if "description" not in extra:
        out.print("(`unbake models --json` or a wider terminal shows licences and descriptions)", highlight=False)


def _download_bytes(cat, name: str) -> int | None:
    """Bytes a download of ``name`` fetches (all its files), None when the catalogue lacks a size."""
    sizes = [f.size for e in cat.members(name) if not e.package_file for f in e.files]
    return None if any(s is None for s in sizes) else sum(sizes)


def _available(cat, e) -> str:
    if cat.ships_with_package(e.name):
        return "built in"
    return "cached" if cat.available_offline(e.name) else "download"


@app.command()
@handle_errors
def info(
    file: Path = typer.Argument(..., help="Audio or video file."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Duration, sample rate, channels, codec and streams of a file."""
    from ..audio.io import info as audio_info, stream_names

    meta = audio_info(file)
    data = meta.to_dict()
    if len(meta.streams) > 1:
        data["stream_names"] = stream_names(file)
    if as_json:
        out.print_json(json.dumps(data))
        return
    out.print(f"{meta.path}", highlight=False)
    out.print(f"  container  {meta.container}\n  codec      {meta.codec}\n  rate       {meta.sample_rate} Hz\n"
              f"  channels   {meta.channels}\n  duration   {meta.duration_s:.3f} s", highlight=False)
    if len(meta.streams) > 1:
        for s, n in zip(meta.streams, data["stream_names"]):
            out.print(f"  stream {s.index}: {n} ({s.codec}, {s.sample_rate} Hz, {s.channels} ch)", highlight=False)


@app.command()
@handle_errors
def example() -> None:
    """Print the path of a real example song (the stems file that the stempeg package ships)."""
    from ..audio import example_path

    print(example_path())
