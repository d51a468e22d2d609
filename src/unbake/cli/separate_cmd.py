"""`unbake separate`, `unbake models`, `unbake info`, `unbake example`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .app import _escape, app, console, handle_errors, make_progress, out


@app.command()
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
    segment: Optional[float] = typer.Option(None, "--segment", help="Chunk length in seconds (default: the model's)."),
    overlap: float = typer.Option(0.25, "--overlap", help="Overlap between chunks, 0..1."),
    shifts: int = typer.Option(0, "--shifts", help="Test-time random shifts (deterministic)."),
    device: str = typer.Option("cpu", "--device", "-d", help="cpu | cuda | mps | auto"),
    batch_size: int = typer.Option(1, "--batch-size", help="Chunks per model call."),
    precision: str = typer.Option("float32", "--precision", help="float32 (exact) | bfloat16 | float16 | int8 | fast (the quickest this machine runs natively; output within -30 dB of float32)."),
    fmt: str = typer.Option("wav", "--format", help="wav | flac | mp3"),
    bit_depth: Optional[str] = typer.Option(None, "--bit-depth", help="16 | 24 | 32f (wav), 16 | 24 (flac). Default 24."),
    mp3_bitrate: int = typer.Option(320, "--mp3-bitrate", help="kbit/s for mp3 output."),
    filename: str = typer.Option("{track}/{stem}.{ext}", "--filename", help="Output path template: {track} {stem} {ext} {model}."),
    clip: str = typer.Option("rescale", "--clip", help="rescale | clamp | none"),
    downmix: bool = typer.Option(False, "--downmix", help="Fold more than two channels to stereo instead of refusing."),
    enforce_consistency: bool = typer.Option(False, "--enforce-consistency", help="Make the stems sum exactly to the mix."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Separate songs into stems: OUTDIR/{track}/{stem}.{ext}."""
    from ..errors import UnbakeError

    w = None
    if weights:
        try:
            w = [float(x) for x in weights.split(",")]
        except ValueError:
            from .app import fail

            fail(f"--weights must be numbers separated by commas, not {weights!r}")
    try:
        model = _load(name, model_file, config, w, ensemble_method)
    except UnbakeError as exc:
        from .app import fail

        fail(_escape(str(exc)), 1)
        return
    failures: list[tuple[Path, str]] = []
    done = 0
    from ..separate import separate_file

    with make_progress() as progress:
        for path in inputs:
            task = progress.add_task(_short_name(path), total=1.0)
            try:
                targets = separate_file(
                    path, outdir, model, format=fmt, bit_depth=bit_depth, mp3_bitrate=mp3_bitrate,
                    filename=filename, overwrite=overwrite,
                    progress=lambda f, t=task: progress.update(t, completed=f),
                    two_stems=two_stems, other_method=other_method, segment_s=segment, overlap=overlap,
                    shifts=shifts, device=device, batch_size=batch_size, downmix=downmix,
                    enforce_consistency=enforce_consistency, clip=clip, precision=precision,
                )
                progress.update(task, completed=1.0)
                done += 1
                folder = sorted({str(p.parent) for p in targets.values()})
                console.print(f"[green]done[/] {_escape(str(path))} -> {_escape(', '.join(folder))}", highlight=False)
            except UnbakeError as exc:
                progress.remove_task(task)
                failures.append((path, str(exc)))
                console.print(f"[bold red]error:[/] {_escape(str(exc))}", highlight=False)
    if len(inputs) > 1 or failures:
        console.print(f"{done} separated, {len(failures)} failed", highlight=False)
    if failures:
        raise typer.Exit(1)


def _load(names, model_file, config, weights, method):
    from ..separate import default_model, resolve_model

    chosen = list(names) if names else [default_model()]
    model = resolve_model(chosen if len(chosen) > 1 else chosen[0], weights=weights, method=method,
                          model_file=str(model_file) if model_file else None,
                          config=str(config) if config else None)
    if not names:
        console.print(f"model: {chosen[0]} (the best model available without a download; "
                      "pick another with -n, see `unbake models`)", highlight=False)
    return model


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
    from ..hub.catalogue import EnsembleEntry, load_catalogue

    cat = load_catalogue()
    if download:
        from ..hub.download import fetch_entry

        for name in download:
            entry = cat.get(name)
            entries = [cat.models[m] for m in entry.models] if isinstance(entry, EnsembleEntry) else [entry]
            for e in entries:
                for p in fetch_entry(e):
                    console.print(f"[green]ok[/] {e.name}: {_escape(str(p))}", highlight=False)
        return
    rows = []
    for name in cat.names():
        e = cat.get(name)
        rows.append({
            "name": name,
            "kind": "ensemble" if isinstance(e, EnsembleEntry) else e.architecture,
            "sources": list(e.sources),
            "available": _available(cat, e),
            "licence": e.licence,
            "description": e.description,
        })
    if as_json:
        out.print_json(json.dumps(rows))
        return
    from rich.table import Table

    wide = out.width >= 140
    table = Table(box=None, pad_edge=False)
    for col in ("name", "architecture", "stems", "available", "licence") + (("description",) if wide else ()):
        table.add_column(col, no_wrap=col in ("name", "available"), overflow="fold")
    for r in rows:
        cells = [r["name"], r["kind"], ", ".join(r["sources"]), r["available"], r["licence"]]
        table.add_row(*cells, *([r["description"]] if wide else []))
    out.print(table)
    if not wide:
        out.print("(`unbake models --json` or a wider terminal shows descriptions)", highlight=False)


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
