"""`unbake separate`, `unbake models`, `unbake info`, `unbake example`."""

from __future__ import annotations

import functools
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import typer

from .app import _escape, app, console, handle_errors, make_progress, out


@dataclass(frozen=True)
class SeparationArgs:
    """The options `unbake separate` and `unbake batch` share, as given on the command line."""

    name: Optional[List[str]]
    model_file: Optional[Path]
    config: Optional[Path]
    weights: Optional[str]
    ensemble_method: str
    two_stems: Optional[str]
    other_method: str
    segment: Optional[float]
    overlap: float
    shifts: int
    device: str
    batch_size: int
    fmt: str
    bit_depth: Optional[str]
    mp3_bitrate: int
    filename: str
    clip: str
    downmix: bool
    enforce_consistency: bool
    overwrite: bool

    def weight_list(self) -> Optional[list[float]]:
        """``--weights`` as numbers; a malformed list ends the command with a message."""
        if not self.weights:
            return None
        try:
            return [float(x) for x in self.weights.split(",")]
        except ValueError:
            from .app import fail

            fail(f"--weights must be numbers separated by commas, not {self.weights!r}")

    def file_options(self) -> dict:
        """Keyword arguments of :func:`unbake.separate.separate_file` other than the model."""
        return dict(
            format=self.fmt, bit_depth=self.bit_depth, mp3_bitrate=self.mp3_bitrate,
            filename=self.filename, overwrite=self.overwrite,
            two_stems=self.two_stems, other_method=self.other_method, segment_s=self.segment,
            overlap=self.overlap, shifts=self.shifts, device=self.device, batch_size=self.batch_size,
            downmix=self.downmix, enforce_consistency=self.enforce_consistency, clip=self.clip,
        )


def _param(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


# Declared once; every command decorated with `separation_options` takes them.
_SEPARATION_PARAMS = [
    _param("name", Optional[List[str]], typer.Option(None, "-n", "--name", help="Model (catalogue name or checkpoint); repeat for an ensemble.")),
    _param("model_file", Optional[Path], typer.Option(None, "--model-file", help="Local weights file for the catalogue model named by -n.")),
    _param("config", Optional[Path], typer.Option(None, "--config", help="YAML config of a community checkpoint.")),
    _param("weights", Optional[str], typer.Option(None, "--weights", help="Ensemble weights, one per model, comma-separated.")),
    _param("ensemble_method", str, typer.Option("average", "--ensemble-method", help="average | median")),
    _param("two_stems", Optional[str], typer.Option(None, "--two-stems", help="Write STEM and no_STEM only.")),
    _param("other_method", str, typer.Option("add", "--other-method", help="no_STEM as the sum of the other stems (add) or mixture minus STEM (minus).")),
    _param("segment", Optional[float], typer.Option(None, "--segment", help="Chunk length in seconds (default: the model's).")),
    _param("overlap", float, typer.Option(0.25, "--overlap", help="Overlap between chunks, 0..1.")),
    _param("shifts", int, typer.Option(0, "--shifts", help="Test-time random shifts (deterministic).")),
    _param("device", str, typer.Option("cpu", "--device", "-d", help="cpu | cuda | mps | auto")),
    _param("batch_size", int, typer.Option(1, "--batch-size", help="Chunks per model call.")),
    _param("fmt", str, typer.Option("wav", "--format", help="wav | flac | mp3")),
    _param("bit_depth", Optional[str], typer.Option(None, "--bit-depth", help="16 | 24 | 32f (wav), 16 | 24 (flac). Default 24.")),
    _param("mp3_bitrate", int, typer.Option(320, "--mp3-bitrate", help="kbit/s for mp3 output.")),
    _param("filename", str, typer.Option("{track}/{stem}.{ext}", "--filename", help="Output path template: {track} {stem} {ext} {model}.")),
    _param("clip", str, typer.Option("rescale", "--clip", help="rescale | clamp | none")),
    _param("downmix", bool, typer.Option(False, "--downmix", help="Fold more than two channels to stereo instead of refusing.")),
    _param("enforce_consistency", bool, typer.Option(False, "--enforce-consistency", help="Make the stems sum exactly to the mix.")),
    _param("overwrite", bool, typer.Option(False, "--overwrite", help="Replace existing output files.")),
]


def separation_options(func: Callable) -> Callable:
    """Give a command every option of `unbake separate` (after its own parameters); the command
    receives them as one :class:`SeparationArgs` in its keyword argument ``sep``."""
    sig = inspect.signature(func)
    own = [p for n, p in sig.parameters.items() if n != "sep"]
    names = [p.name for p in _SEPARATION_PARAMS]

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        sep = SeparationArgs(**{n: kwargs.pop(n) for n in names})
        return func(*args, sep=sep, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=own + _SEPARATION_PARAMS)
    return wrapper


@app.command()
@separation_options
def separate(
    inputs: List[Path] = typer.Argument(..., help="Audio or video files to separate.", show_default=False),
    outdir: Path = typer.Option(Path("separated"), "-o", "--out", help="Output folder."),
    *,
    sep: SeparationArgs,
) -> None:
    """Separate songs into stems: OUTDIR/{track}/{stem}.{ext}."""
    from ..errors import UnbakeError

    w = sep.weight_list()
    try:
        model = load_model_args(sep, w)
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
                    path, outdir, model, progress=lambda f, t=task: progress.update(t, completed=f),
                    **sep.file_options(),
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


def chosen_model(sep: SeparationArgs):
    """The model named by ``-n`` (one name, or a list for an ensemble), else the default model's
    name."""
    from ..separate import default_model

    chosen = list(sep.name) if sep.name else [default_model()]
    return chosen if len(chosen) > 1 else chosen[0]


def announce_default(sep: SeparationArgs, chosen) -> None:
    if not sep.name:
        console.print(f"model: {chosen} (the best model available without a download; "
                      "pick another with -n, see `unbake models`)", highlight=False)


def load_model_args(sep: SeparationArgs, weights):
    from ..separate import resolve_model

    chosen = chosen_model(sep)
    model = resolve_model(chosen, weights=weights, method=sep.ensemble_method,
                          model_file=str(sep.model_file) if sep.model_file else None,
                          config=str(sep.config) if sep.config else None)
    announce_default(sep, chosen)
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
