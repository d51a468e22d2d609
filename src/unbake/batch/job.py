"""What a worker does with one input, wherever it runs: separate it through the facade into a
staging folder and hash what it wrote. The only place the batch runner calls the facade.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._common import sha256_file

# Options that change how fast a separation runs, or whether it may replace files, but not what
# it writes: a change of these does not redo finished files.
NOT_SHAPING = frozenset({"device", "batch_size", "overwrite", "progress"})
ENCODER_OPTIONS = frozenset({"bit_depth", "mp3_bitrate"})


@dataclass(frozen=True)
class ModelSpec:
    """How to load the model in a worker: a catalogue name, a checkpoint path, a list of them
    (an ensemble) or a model object, with the loading options of
    :func:`unbake.separate.resolve_model`."""

    model: Any
    weights: tuple[float, ...] | None = None
    ensemble_method: str = "average"
    model_file: str | None = None
    config: str | None = None

    def load(self):
        from ..separate import resolve_model

        model = list(self.model) if isinstance(self.model, tuple) else self.model
        return resolve_model(model, weights=list(self.weights) if self.weights else None,
                             method=self.ensemble_method, model_file=self.model_file, config=self.config)

    def display_name(self) -> str:
        m = self.model
        if isinstance(m, (list, tuple)):
            return "+".join(os.fspath(x) if isinstance(x, (str, os.PathLike)) else type(x).__name__ for x in m)
        if isinstance(m, (str, os.PathLike)):
            return os.fspath(m)
        return getattr(getattr(m, "info", None), "name", None) or type(m).__name__

    def identity(self) -> dict:
        """What identifies the model's output: names plus the content of the files it loads
        (a checkpoint rewritten under the same name is a different model)."""
        members = list(self.model) if isinstance(self.model, (list, tuple)) else [self.model]
        return {
            "members": [_member_identity(m) for m in members],
            "weights": list(self.weights) if self.weights else None,
            "ensemble_method": self.ensemble_method if len(members) > 1 else None,
            "model_file": _file_digest(self.model_file),
            "config": _file_digest(self.config),
        }


def _file_digest(path) -> str | None:
    return sha256_file(path) if path and Path(path).is_file() else None


# fields of a catalogue entry that decide what the model outputs (not its description or licence)
_ENTRY_FIELDS = ("architecture", "format", "files", "config", "config_file", "sources", "samplerate",
                 "target", "package_file", "segment_s")


def _member_identity(m) -> dict:
    if not isinstance(m, (str, os.PathLike)):
        return {"object": type(m).__qualname__, "parameters": _parameter_digest(m)}
    text = os.fspath(m)
    from ..hub.catalogue import load_catalogue

    cat = load_catalogue()
    if text in cat:
        entries = cat.members(text)
        # a file shipped inside the package changes with the package, under the same name
        package_root = Path(__file__).resolve().parent.parent
        return {"name": text, "entries": [{k: getattr(e, k) for k in _ENTRY_FIELDS} for e in entries],
                "package_files": [_file_digest(package_root / e.package_file) for e in entries if e.package_file]}
    return {"path": text, "sha256": _file_digest(text)}


def _parameter_digest(model) -> str | None:
    state = getattr(model, "state_dict", None)
    if state is None:
        return None
    h = hashlib.sha256()
    for k, v in sorted(state().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def settings_key(identity: dict, options: dict) -> str:
    """One digest of the model and of the options that shape the output (``options`` as
    :func:`normalized_options` gives them)."""
    from ..audio.io import encoder_kwargs
    from ..separate import STEMS_FORMAT

    shaping = {k: v for k, v in sorted(options.items()) if k not in NOT_SHAPING | ENCODER_OPTIONS}
    # what the encoder is told: an mp3 bitrate does not change a wav, 24 bit is 24 bit however asked
    if options["format"] != STEMS_FORMAT:
        shaping["encoder"] = encoder_kwargs(options["format"], options["bit_depth"], options["mp3_bitrate"])
    text = json.dumps({"model": identity, "options": shaping}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


SHARED_STORAGE = "every worker must see SOURCE and OUT at the same paths"

# Loading options of the facade: they go into the ModelSpec, not into each call.
MODEL_OPTIONS = ("weights", "ensemble_method", "model_file", "config")


def normalized_options(options: dict) -> dict:
    """``options`` as every field of :class:`unbake.separate.SeparationRequest`, defaults filled
    in, so that a run that spells a default out and one that leaves it alone share their
    finished files; unknown or invalid options are refused before any work.

    Raises :class:`~unbake.errors.UnbakeError` (or a subclass) naming the bad option."""
    import dataclasses

    from ..separate import SeparationRequest

    request = SeparationRequest.from_options(None, **options)
    return {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}


def output_paths(rel_dir: str, input: str | os.PathLike, stems: list[str], options: dict, model_label: str) -> dict[str, str]:
    """``{stem: path relative to OUT}`` of an input's outputs, named as the facade names them
    (``{"stems": ...}``: one NI Stems file for the stems format)."""
    from .._common import track_name
    from ..audio.stemsfile import stems_file_path
    from ..separate import STEMS_FORMAT, render_filename

    if options["format"] == STEMS_FORMAT:
        return {"stems": stems_file_path(rel_dir, track_name(input)).as_posix()}
    return {s: (Path(rel_dir) / render_filename(options["filename"], track=track_name(input), stem=s,
                                                 ext=options["format"], model=model_label)).as_posix()
            for s in stems}


@dataclass(frozen=True)
class Job:
    """One input to separate: ``staging`` is a folder of its own under OUT."""

    row_id: int
    input: str
    staging: str
    attempt: int = 1


@dataclass
class Outcome:
    """What came of a job. ``outputs`` maps paths relative to the staging folder to their stem
    and SHA-256, ``{path: {"stem": ..., "sha256": ...}}``; ``model_label`` is what ``{model}``
    stood for in the file names."""

    row_id: int
    ok: bool
    error: str | None = None
    outputs: dict[str, dict] = field(default_factory=dict)
    model_label: str = ""
    audio_s: float | None = None
    elapsed_s: float | None = None
    worker: str = ""
    fatal: bool = False  # the worker could not load the model: no file can succeed


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    from ..errors import UnbakeError

    return text if isinstance(exc, UnbakeError) else f"{type(exc).__name__}: {text}"


def separate_one(model, job: Job, options: dict) -> Outcome:
    """Separate ``job.input`` with a loaded ``model`` into ``job.staging``; never raises for a
    bad input (the outcome carries the one-line error)."""
    from ..audio.io import info
    from ..errors import AudioError, OutputError
    from ..separate import model_name, separate_file

    worker = f"{socket.gethostname()}:{os.getpid()}"
    start = time.perf_counter()
    try:
        src, staging = Path(job.input), Path(job.staging)
        if not src.exists():
            raise AudioError(f"{src}: not found on {socket.gethostname()} ({SHARED_STORAGE})")
        if not staging.parent.is_dir():
            raise OutputError(f"{staging.parent}: not found on {socket.gethostname()} ({SHARED_STORAGE})")
        audio_s = info(src).duration_s
        targets = separate_file(src, staging, model, **{**options, "overwrite": True})
        outputs = {p.relative_to(staging).as_posix(): {"stem": stem, "sha256": sha256_file(p)}
                   for stem, p in targets.items()}
    except Exception as exc:  # a batch goes on: every failure becomes a recorded one-line error
        return Outcome(job.row_id, False, error=one_line(exc), elapsed_s=time.perf_counter() - start,
                       worker=worker)
    return Outcome(job.row_id, True, outputs=outputs, model_label=model_name(model), audio_s=audio_s,
                   elapsed_s=time.perf_counter() - start, worker=worker)


def cpu_split(cpus: int, workers: int | None = None, threads: int | None = None) -> tuple[int, int]:
    """``(workers, threads each)`` for ``cpus`` cores. Several single-threaded processes beat one
    process with many threads on this pipeline (decoding, resampling and encoding are serial:
    `benchmarks/bench_batch.py` measured 4.9x against 2.1x real time on two cores), so by default
    one worker per core; past eight workers the cores are shared out as threads instead, to keep
    the number of loaded models (memory) in bounds."""
    if workers is None:
        workers = max(1, min(cpus, 8) if threads is None else cpus // threads)
    return workers, threads or max(1, cpus // workers)


def set_threads(threads: int | None) -> None:
    """Give this worker process its share of the machine's cores (before torch is imported,
    the environment variables reach the thread pools as well)."""
    if not threads:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
