"""`unbake separate`, `unbake models`, `unbake info`, `unbake example`; the options `unbake
separate` shares with `unbake batch`, declared once."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from .app import _escape, app, console, error_text, handle_errors, make_progress, out, raise_if_interrupted


@dataclass(frozen=True)
class SeparationArgs:
    """The options `unbake separate` and `unbake batch` share, as given on the command line.
    Those named like a field of :class:`unbake.separate.SeparationRequest` fill it; the others
    choose the model (``name`` ... ``ensemble_method``) or the tags (``tag``)."""

    name: Optional[List[str]]
    model_file: Optional[Path]
    config: Optional[Path]
    weights: Optional[str]
    ensemble_method: str
    two_stems: Optional[str]
    other_method: str
    segment_s: Optional[float]
    overlap: float
    shifts: int
    device: str
    batch_size: int
    precision: Optional[str]
    backend: Optional[str]
    format: str
    stems_codec: str
    stems_map: Optional[str]
    tag: Optional[bool]
    bit_depth: Optional[str]
    mp3_bitrate: int
    filename: str
    clip: str
    downmix: bool
    enforce_consistency: bool
    overwrite: bool

    def request(self):
        """The :class:`~unbake.separate.SeparationRequest` these options make; every value is
        checked now, before a model loads."""
        from ..separate import SeparationRequest

        return SeparationRequest.from_fields(asdict(self))

    def request_options(self) -> dict[str, Any]:
        """The request's fields as keyword arguments (what :func:`unbake.batch.run` takes)."""
        from dataclasses import fields

        req = self.request()
        return {f.name: getattr(req, f.name) for f in fields(req)}

    def model_choice(self) -> dict[str, Any]:
        """Keyword arguments of :func:`unbake.separate.load_runner` besides the model."""
        return dict(weights=_weights(self.weights), method=self.ensemble_method,
                    model_file=str(self.model_file) if self.model_file else None,
                    config=str(self.config) if self.config else None)


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
    _param("segment_s", Optional[float], typer.Option(None, "--segment", help="Chunk length in seconds (default: the model's).")),
    _param("overlap", float, typer.Option(0.25, "--overlap", help="Overlap between chunks, 0..1.")),
    _param("shifts", int, typer.Option(0, "--shifts", help="Test-time random shifts (deterministic).")),
    _param("device", str, typer.Option("cpu", "--device", "-d", help="cpu | cuda | mps | auto")),
    _param("batch_size", int, typer.Option(1, "--batch-size", help="Chunks per model call.")),
    _param("precision", Optional[str], typer.Option(None, "--precision", help="float32 (exact) | bfloat16 | float16 | int8 | fast (the quickest this machine runs natively; output within -30 dB of float32). Default: the model's own (its catalogue entry's precision, else float32).")),
    _param("backend", Optional[str], typer.Option(None, "--backend", help="auto | torch | openvino: the runtime of models that support OpenVINO (pip install 'unbake\\[fast]'), on the CPU in float32/bfloat16. Default: $UNBAKE_BACKEND, else auto.")),
    _param("format", str, typer.Option("wav", "--format", help="wav | flac | mp3 | stems (one NI Stems file, OUTDIR/{track}.stem.mp4)")),
    _param("stems_codec", str, typer.Option("aac", "--stems-codec", help="Codec of --format stems: aac (256 kbit/s) | alac.")),
    _param("stems_map", Optional[str], typer.Option(None, "--stems-map", help="NI slots from other stems, e.g. drums=drums,bass=bass,other=guitar+piano+other,vocals=vocals.")),
    _param("tag", Optional[bool], typer.Option(None, "--tag/--no-tag", help="BPM and key tags in every file, and track.json (default: on when the analysis extra is installed).")),
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
@handle_errors
@separation_options
def separate(
    inputs: List[Path] = typer.Argument(..., help="Audio or video files to separate.", show_default=False),
    outdir: Path = typer.Option(Path("separated"), "-o", "--out", help="Output folder."),
    *,
    sep: SeparationArgs,
) -> None:
    """Separate songs into stems: OUTDIR/{track}/{stem}.{ext}."""
    from ..separate import load_runner, output_stems

    request = sep.request()
    with contextlib.ExitStack() as stack:
        analyzer = _analyzer(sep.tag)
        if analyzer is not None:  # before the model loads: see TagWorker
            from ..transcribe.timing import TagWorker

            if "torch" not in sys.modules:
                # the worker shares the two cores with the separation while it starts: torch's
                # OpenMP threads then sleep when they wait instead of spinning on a core the worker
                # needs (read when torch loads, so only before that; model card, "Speed and memory")
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

            analyzer = stack.enter_context(TagWorker())
        chosen = chosen_model(sep)
        runner = load_runner(chosen, **sep.model_choice())
        announce_default(sep, chosen)
        output_stems(runner, request.two_stems)  # --two-stems the model lacks: once, not once per file
        failures = _separate_all(inputs, outdir, runner, request, analyzer)
    if len(inputs) > 1 or failures:
        console.print(f"{len(inputs) - failures} separated, {failures} failed", highlight=False)
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
            raise_if_interrupted()
            task = progress.add_task(_short_name(path), total=1.0)
            try:
                _warn_if_long(path, runner, request)
                targets = separate_file(path, outdir, runner, request=request, analyzer=analyzer,
                                        progress=lambda f, t=task: _report(progress, t, f))
                progress.update(task, completed=1.0)
                folder = sorted({str(p.parent) for p in targets.values()})
                console.print(f"[green]done[/] {_escape(str(path))} -> {_escape(', '.join(folder))}", highlight=False)
            except UnbakeError as exc:
                progress.remove_task(task)
                failures += 1
                console.print(f"[bold red]error:[/] {_escape(error_text(exc))}", highlight=False)
    return failures


def _report(progress, task, fraction: float) -> None:
    raise_if_interrupted()  # a Ctrl-C that the decoding swallowed stops the separation here
    progress.update(task, completed=fraction)


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


def _analyzer(tag: Optional[bool]):
    """The tempo/key analyzer for the tags, or None: on by default (the analysis needs numpy,
    scipy and soxr; the tags need mutagen, a dependency that a broken install may lack, so an
    explicit --tag without it says what to install)."""
    import importlib.util

    if tag is False:
        return None
    if importlib.util.find_spec("mutagen") is None:
        if tag:
            from ..errors import DependencyError

            raise DependencyError("--tag needs mutagen: pip install mutagen")
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
