"""The facade every front end calls: input -> stems (a :class:`StemSet` or files).

Files are processed as streams: decoded and resampled block by block into a temporary raw file,
separated chunk by chunk, resampled back and encoded block by block, so memory does not grow
with the track's length. Outputs are written under temporary names and renamed only when every
stem of a track is complete.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import string
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from ._common import sweep_stale_parts, track_name
from .audio import dsp
from .audio.io import BLOCK_FRAMES, OUTPUT_FORMATS, AudioWriter, check_output_options, check_writable, iter_blocks
from .audio.stemsfile import STEMS_CODECS
from .errors import InvalidAudioError, ModelOptionError, OutputError, OutputOptionError, ParameterError, UnbakeError
from .stems import StemSet

if TYPE_CHECKING:
    from .hub.ensemble import Member, Runner

log = logging.getLogger(__name__)

OTHER_METHODS = ("add", "minus")
DEFAULT_FILENAME = "{track}/{stem}.{ext}"
STEMS_FORMAT = "stems"  # one NI Stems file (.stem.mp4) instead of one file per stem
FILE_FORMATS = OUTPUT_FORMATS + (STEMS_FORMAT,)  # what separate_file writes
ProgressFn = Callable[[float], None]

# ------------------------------------------------------------------------------ the request


def _one_of(choices: Sequence[str]) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ParameterError(name, f"must be one of {', '.join(map(str, choices))}, not {value!r}")
    return check


def _number(low: float | None = None, high: float | None = None, *, integer: bool = False,
            low_open: bool = False, high_open: bool = False) -> Callable[[str, Any], None]:
    """A check that a value is a number (an int when ``integer``) inside a range."""
    def check(name: str, value: Any) -> None:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ParameterError(name, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high or value != value:
            raise ParameterError(name, f"must be {_range_text(low, high, low_open, high_open)}, got {value}")
    return check


def _range_text(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"{'<' if high_open else '<='} {high:g}"


def _optional(check: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    return lambda name, value: None if value is None else check(name, value)


def _filename(name: str, template: Any) -> None:
    render_filename(str(template), track="t", stem="s", ext="wav", model="m")


def _option(default: Any, check: Callable[[str, Any], None] | None = None, *, output: bool = False) -> Any:
    """One field of :class:`SeparationRequest`: its default, its check, and whether it shapes the
    files written (``output``) rather than the separation (recorded in the stems' provenance)."""
    return field(default=default, metadata={"check": check, "output": output})


@dataclass(frozen=True)
class SeparationRequest:
    """Every option of one separation, validated when the request is made, so a bad value is
    refused before a model loads. Errors name the parameter (:class:`ParameterError`).

    Adding an option is adding a field here (with its check); front ends pass it through.
    ``segment_s`` None means the model's own segment.
    """

    two_stems: str | None = None
    other_method: str = _option("add", _one_of(OTHER_METHODS))
    segment_s: float | None = _option(None, _optional(_number(0, low_open=True)))
    overlap: float = _option(0.25, _number(0, 1, high_open=True))
    shifts: int = _option(0, _number(0, integer=True))
    seed: int = _option(0, _number(integer=True))
    device: str = _option("cpu", lambda name, value: _check_device(value))
    batch_size: int = _option(1, _number(1, integer=True))
    # float32 (exact) | bfloat16 | float16 | int8 | fast: see unbake.engine.precision; None: the
    # model's own (its catalogue entry's ``precision``, else float32)
    precision: str | None = None
    # auto | torch | openvino (None: $UNBAKE_BACKEND, else auto): see unbake.engine.backend
    backend: str | None = None
    downmix: bool = False
    enforce_consistency: bool = False
    clip: str = _option("rescale", _one_of(dsp.CLIP_MODES))
    stream: int = _option(0, _number(0, integer=True))
    # the files separate_file writes
    format: str = _option("wav", output=True)  # checked with bit depth and bitrate below
    bit_depth: str | None = _option(None, output=True)
    mp3_bitrate: int | None = _option(None, output=True)
    filename: str = _option(DEFAULT_FILENAME, _filename, output=True)
    overwrite: bool = _option(False, output=True)
    stems_codec: str = _option("aac", _one_of(STEMS_CODECS), output=True)  # format "stems" only
    stems_map: Any = _option(None, output=True)  # format "stems": "drums=drums,...,other=guitar+piano+other"

    def __post_init__(self) -> None:
        for f in fields(self):
            check = f.metadata.get("check")
            if check is not None:
                check(f.name, getattr(self, f.name))
        if self.precision not in (None, "float32"):  # the defaults need no torch import to check
            from .engine.apply import resolve_device
            from .engine.precision import resolve_precision

            resolve_precision(self.precision, resolve_device(self.device))
        if self.backend is not None:
            from .engine.backend import resolve_backend

            resolve_backend(self.backend)
        if self.format == STEMS_FORMAT:
            if self.filename != DEFAULT_FILENAME:
                raise OutputOptionError("filename", "does not apply to the stems format (one file: OUTDIR/{track}.stem.mp4)")
            from .audio.stemsfile import parse_stems_map

            parse_stems_map(self.stems_map)
        else:
            check_output_options(self.format, self.bit_depth, self.mp3_bitrate, formats=FILE_FORMATS)

    @classmethod
    def from_options(cls, base: "SeparationRequest | None" = None, **options) -> "SeparationRequest":
        """``base`` (or the defaults) with ``options`` replacing fields; unknown names refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ParameterError(unknown[0], f"unknown separation option (known: {', '.join(sorted(known))})")
        return replace(base, **options) if base is not None else cls(**options)

    @classmethod
    def from_fields(cls, values: dict[str, Any]) -> "SeparationRequest":
        """A request from a mapping that may hold other names too (a command's parameters):
        the entries named like fields are taken, the rest ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def separation_options(self) -> dict[str, Any]:
        """The options that shape the stems (not the files): what provenance records."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not f.metadata.get("output") and getattr(self, f.name) is not None}


SeparateOptions = SeparationRequest  # the earlier name


def _check_device(device: Any) -> None:
    if isinstance(device, str) and device.lower() == "cpu":
        return  # the default needs no torch import to check
    if not isinstance(device, str) and not hasattr(device, "type"):  # a torch.device is fine
        raise ParameterError("device", f"must be a name such as 'cpu' or 'cuda', got {device!r}")
    from .engine.apply import resolve_device  # imports torch

    try:
        resolve_device(device)
    except ParameterError:
        raise
    except UnbakeError as exc:
        raise ParameterError("device", str(exc)) from exc


# ------------------------------------------------------------------------------ models


def default_model() -> str:
    """The model used when none is named: the best one that runs without a download
    (catalogue ``default_order``)."""
    from .hub.catalogue import load_catalogue

    return load_catalogue().default()


def resolve_model(model: Any = None, *, weights: Sequence[float] | None = None,
                  method: str = "average", model_file: str | None = None, config: str | None = None):
    """A name, path, model object, or a list of them (an ensemble) -> a model or Ensemble."""
    from .hub.ensemble import combine
    from .hub.loading import load_model

    if model is None:
        model = default_model()
    if isinstance(model, (list, tuple)):
        if len(model) == 1:
            return resolve_model(model[0], weights=weights, method=method, model_file=model_file, config=config)
        if model_file is not None:
            raise ModelOptionError("model_file", "applies to a single model, not to an ensemble")
        return combine([load_model(m) for m in model], weights=weights, method=method,
                       name="+".join(str(m) for m in model))
    if weights is not None:
        raise ModelOptionError("weights", "need several models (one weight per model)")
    return load_model(model, model_file=model_file, config=config)


def load_runner(model: Any = None, **choice) -> Runner:
    """:func:`resolve_model`, as the one runner the facade works with (a model is an ensemble
    of one). ``choice``: ``weights``, ``method``, ``model_file``, ``config``."""
    from .hub.ensemble import as_runner

    return as_runner(resolve_model(model, **choice))


def model_name(model: Any) -> str:
    """The name a separation records for a model, runner or list of them."""
    from .hub.ensemble import as_runner

    return as_runner(model).name


def complement_name(stem: str) -> str:
    return "instrumental" if stem == "vocals" else f"no_{stem}"


def output_stems(model, two_stems: str | None) -> list[str]:
    """Names of the stems a separation writes, in order."""
    from .hub.ensemble import as_runner

    sources = as_runner(model).sources
    if two_stems:
        if two_stems not in sources:
            raise ParameterError("two_stems", f"{two_stems}: the model has no such stem (stems: {', '.join(sources)})")
        return [two_stems, f"no_{two_stems}"]
    if len(sources) == 1:
        return [sources[0], complement_name(sources[0])]
    return list(sources)


# ------------------------------------------------------------------------------ inputs


@dataclass
class _Track:
    """The input as a raw float32 file at its own rate and channel count."""

    name: str
    sample_rate: int
    channels: int
    length: int
    raw: Any  # RawFileSource
    workdir: Path
    prepared: dict = field(default_factory=dict)
    statistics: dict = field(default_factory=dict)
    opened: list = field(default_factory=list)

    def prepare(self, rate: int, channels: int):
        """The track at a model's rate and channel count (a source, cached per pair)."""
        from .engine import RawFileWriter

        key = (rate, channels)
        if key not in self.prepared:
            if rate == self.sample_rate and channels == self.channels:
                src = self.raw
            else:
                writer = RawFileWriter(self.workdir / f"input_{rate}_{channels}.f32", channels)
                rs = dsp.StreamResampler(self.sample_rate, rate, channels)
                try:
                    for block in self.blocks():
                        writer.write(rs.process(dsp.convert_channels(block, channels)))
                    writer.write(rs.flush())
                finally:
                    writer.close()
                src = writer.source()
                self.opened.append(src)
            self.prepared[key] = src
        return self.prepared[key]

    def normalization(self, rate: int, channels: int) -> tuple[float, float]:
        """``(mean, scale)`` of the prepared track's mono mix, for track-normalised models;
        an extra pass over the file, so only computed when a model asks for it."""
        from .engine import track_statistics

        key = (rate, channels)
        if key not in self.statistics:
            mean, std = track_statistics(_iter_source(self.prepare(rate, channels)))
            self.statistics[key] = (mean, std + 1e-8)
        return self.statistics[key]

    def blocks(self, size: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        return _iter_source(self.raw, size)


def _iter_source(src, size: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    for start in range(0, src.length, size):
        yield src.read(start, min(start + size, src.length))


def _track_from_file(path: Path, workdir: Path, options: SeparationRequest) -> _Track:
    from .engine import RawFileWriter

    sr, ch, blocks = iter_blocks(path, stream=options.stream)
    use_ch = dsp.check_input_channels(ch, options.downmix, str(path))
    writer = RawFileWriter(workdir / "input.f32", use_ch)
    try:
        for block in blocks:
            writer.write(dsp.downmix(block, use_ch) if ch > use_ch else block)
    finally:
        writer.close()
    return _Track(track_name(path), sr, use_ch, writer.length, writer.source(), workdir)


def _track_from_array(audio, sample_rate: int, workdir: Path, options: SeparationRequest) -> _Track:
    from .engine import RawFileWriter

    arr = dsp.as_channels_first(audio.detach().cpu().numpy() if hasattr(audio, "detach") else audio)
    use_ch = dsp.check_input_channels(arr.shape[0], options.downmix, "input array")
    if arr.shape[0] > use_ch:
        arr = dsp.downmix(arr, use_ch)
    if not sample_rate or sample_rate <= 0:
        raise ParameterError("sample_rate", "an array input needs its sample rate in Hz")
    dsp.check_sample_rate(sample_rate, "input array")
    writer = RawFileWriter(workdir / "input.f32", use_ch)
    writer.write(arr)
    writer.close()
    return _Track("array", int(sample_rate), use_ch, writer.length, writer.source(), workdir)


# ------------------------------------------------------------------------------ running


class _Progress:
    """Turns per-model chunk counts into one fraction for the whole track."""

    def __init__(self, callback: ProgressFn | None, n_models: int) -> None:
        self.callback = callback
        self.n = n_models

    def member(self, i: int) -> Callable[[int, int], None] | None:
        if self.callback is None:
            return None

        def fn(done: int, total: int) -> None:
            self.callback((i + done / max(total, 1)) / self.n)

        return fn


def precision_for(model, request: SeparationRequest) -> str:
    """The precision ``request`` runs ``model`` at: the request's, else the model's own
    (``default_precision``, set from its catalogue entry), else float32."""
    return request.precision or getattr(model, "default_precision", None) or "float32"


def _run_member(member: Member, track: _Track, request: SeparationRequest, progress, tag: str) -> dict[str, Any]:
    """Separate the track with one member; stems at the track's rate and channels, as raw files."""
    from .engine import RawFileWriter, iter_separate

    model = member.model
    source = track.prepare(model.samplerate, model.audio_channels)
    seg_s = request.segment_s if request.segment_s is not None else member.segment_s
    seg = int(round(seg_s * model.samplerate)) if seg_s else None
    normalize = (track.normalization(model.samplerate, model.audio_channels)
                 if getattr(model, "track_normalize", False) else None)
    writers = {s: RawFileWriter(track.workdir / f"{tag}_{i}.f32", track.channels) for i, s in enumerate(model.sources)}
    resamplers = {s: dsp.StreamResampler(model.samplerate, track.sample_rate, model.audio_channels) for s in model.sources}

    def emit(stem: str, block: np.ndarray, last: bool = False) -> None:
        out = resamplers[stem].process(block, last=last)
        out = dsp.convert_channels(out, track.channels)
        w = writers[stem]
        room = track.length - w.length
        w.write(out[:, :max(room, 0)])

    try:
        for block in iter_separate(model, source, segment_samples=seg, overlap=request.overlap,
                                   shifts=request.shifts, seed=request.seed, batch_size=request.batch_size,
                                   device=request.device, progress=progress, normalize=normalize,
                                   precision=precision_for(model, request), backend=request.backend):
            for k, stem in enumerate(model.sources):
                emit(stem, block[k])
        for stem in model.sources:
            emit(stem, np.zeros((model.audio_channels, 0), np.float32), last=True)
            w = writers[stem]
            if w.length < track.length:  # rounding of the two rate conversions
                w.write(np.zeros((track.channels, track.length - w.length), np.float32))
    finally:
        for w in writers.values():
            w.close()
    sources = {s: w.source() for s, w in writers.items()}
    track.opened.extend(sources.values())
    return sources


def _combine(blocks: list[np.ndarray], weights: list[float], method: str) -> np.ndarray:
    if len(blocks) == 1:
        return blocks[0]
    w = np.asarray(weights, np.float64)
    if method == "median":
        return np.median(np.stack(blocks), axis=0).astype(np.float32)
    stacked = np.stack(blocks).astype(np.float64)
    return (np.tensordot(w, stacked, axes=1) / w.sum()).astype(np.float32)


def _runner_stems(runner: Runner, results: list[dict[str, Any]], start: int, stop: int) -> dict[str, np.ndarray]:
    """Each of the runner's stems over ``[start, stop)``: its members' results combined."""
    stems: dict[str, np.ndarray] = {}
    for k, s in enumerate(runner.sources):
        parts, ws = [], []
        for res, member in zip(results, runner.parts):
            if s in res and member.weights[k] > 0:
                parts.append(res[s].read(start, stop))
                ws.append(member.weights[k])
        stems[s] = _combine(parts, ws, runner.method)
    return stems


def _output_block(stems: dict[str, np.ndarray], mix: np.ndarray, sources: tuple[str, ...],
                  names: list[str], request: SeparationRequest, consistency) -> dict[str, np.ndarray]:
    """The stems to write for one block: the complement of a lone stem, the two-stem split and
    the mixture-consistency projection, as asked."""
    if len(sources) == 1:
        stems[complement_name(sources[0])] = mix - stems[sources[0]]
    if request.two_stems:
        keep = request.two_stems
        if request.other_method == "minus" or len(sources) == 1:
            rest = mix - stems[keep]
        else:
            rest = np.sum([stems[s] for s in sources if s != keep], axis=0)
        stems = {keep: stems[keep], f"no_{keep}": rest}
    if consistency is not None:
        fixed = consistency(mix, np.stack([stems[n] for n in names]))
        stems = {n: np.asarray(fixed[i], np.float32) for i, n in enumerate(names)}
    return {n: stems[n] for n in names}


def _final_blocks(runner: Runner, track: _Track, request: SeparationRequest,
                  progress: ProgressFn | None) -> Iterator[dict[str, np.ndarray]]:
    """Run every member, then yield the output stems block by block."""
    prog = _Progress(progress, len(runner.parts))
    results = [_run_member(m, track, request, prog.member(i), f"m{i}") for i, m in enumerate(runner.parts)]
    names = output_stems(runner, request.two_stems)
    consistency = None
    if request.enforce_consistency:
        from .metrics.consistency import enforce_consistency as consistency

    for start in range(0, track.length, BLOCK_FRAMES):
        stop = min(start + BLOCK_FRAMES, track.length)
        stems = _runner_stems(runner, results, start, stop)
        yield _output_block(stems, track.raw.read(start, stop), runner.sources, names, request, consistency)


# ------------------------------------------------------------------------------ public API


def separate(source, model: Any = None, *, sample_rate: int | None = None,
             progress: ProgressFn | None = None, request: SeparationRequest | None = None,
             weights: Sequence[float] | None = None, ensemble_method: str = "average",
             model_file: str | None = None, config: str | None = None, **options) -> StemSet:
    """Separate a song into stems.

    Args:
        source: a path to any audio/video file, or an array/tensor ``(c, t)`` (or ``(t,)`` mono)
            with ``sample_rate``.
        model: a catalogue name (default: :func:`default_model`), a checkpoint path, a model
            object, an :class:`~unbake.hub.ensemble.Ensemble`, or a list of these (an ensemble).
        progress: called with the fraction done (0..1).
        request: a :class:`SeparationRequest`; keyword ``options`` replace its fields.
        weights, ensemble_method, model_file, config: how the model is chosen
            (see :func:`resolve_model`).
        **options: fields of :class:`SeparationRequest` (``two_stems``, ``other_method``,
            ``segment_s``, ``overlap``, ``shifts``, ``device``, ``batch_size``, ``downmix``,
            ``enforce_consistency``, ``clip``, ``stream``).

    Returns:
        a :class:`StemSet` at the input's sample rate and channel count (mono stays mono).
        The input is never modified.
    """
    req = SeparationRequest.from_options(request, **options)
    runner = load_runner(model, weights=weights, method=ensemble_method, model_file=model_file, config=config)
    with _workdir() as tmp:
        track = _open_track(source, sample_rate, tmp, req)
        parts: dict[str, list[np.ndarray]] = {}
        try:
            for blocks in _final_blocks(runner, track, req, progress):
                for k, v in blocks.items():
                    parts.setdefault(k, []).append(v)
        finally:
            _close(track)
    stems = {k: np.concatenate(v, axis=1) for k, v in parts.items()}
    return StemSet(stems, track.sample_rate, _provenance(source, runner, req))


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    """Temporary work under the cache's per-process folder; a full disk becomes one clear error."""
    from ._common import temp_workdir

    try:
        with temp_workdir("separate-") as tmp:
            yield tmp
    except OSError as exc:
        raise OutputError(_os_error_text(exc, "temporary work")) from exc


def _os_error_text(exc: OSError, what: str) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"no space left on the disk for {what}{where}"
    return f"cannot write {what}{where}: {exc.strerror or exc}"


def _open_track(source, sample_rate, workdir: Path, request: SeparationRequest) -> _Track:
    if isinstance(source, (str, os.PathLike)):
        return _track_from_file(Path(source), workdir, request)
    return _track_from_array(source, sample_rate, workdir, request)


def _close(track: _Track) -> None:
    track.raw.close()
    for src in track.opened:
        src.close()


def _provenance(source, runner: Runner, request: SeparationRequest) -> dict:
    from ._common import __version__

    return {
        "input": os.fspath(source) if isinstance(source, (str, os.PathLike)) else "array",
        "model": runner.name,
        "unbake_version": __version__,
        "options": {**request.separation_options(), "precision": _precisions(runner, request)},
    }


def _precisions(runner: Runner, request: SeparationRequest) -> str | list[str]:
    """The precision the members ran at (:func:`precision_for`): one name, or each distinct one."""
    used = sorted({precision_for(m.model, request) for m in runner.parts})
    return used[0] if len(used) == 1 else used


def render_filename(template: str, *, track: str, stem: str, ext: str, model: str) -> str:
    """Fill ``{track}``, ``{stem}``, ``{ext}``, ``{model}``; other fields are refused."""
    try:
        fields_used = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise OutputOptionError("filename", f"{template!r} is not a valid template ({exc})") from exc
    unknown = fields_used - {"track", "stem", "ext", "model"}
    if unknown:
        raise OutputOptionError("filename", f"unknown field(s) {sorted(unknown)}; use track, stem, ext, model")
    if "{stem}" not in template:
        raise OutputOptionError("filename", "must contain {stem}, or every stem would get the same name")
    return template.format(track=track, stem=stem, ext=ext, model=model)


def separate_file(path: str | os.PathLike, outdir: str | os.PathLike = "separated", model: Any = None, *,
                  format: str | None = None, bit_depth: str | None = None, mp3_bitrate: int | None = None,
                  filename: str | None = None, overwrite: bool | None = None,
                  progress: ProgressFn | None = None, request: SeparationRequest | None = None,
                  weights: Sequence[float] | None = None, ensemble_method: str = "average",
                  model_file: str | None = None, config: str | None = None, analyzer: Callable | None = None,
                  **options) -> dict[str, Path]:
    """Separate one file into one file per stem, streaming; returns ``{stem: path}``.

    ``format="stems"`` writes one NI Stems file ``OUTDIR/{track}.stem.mp4`` instead (returned
    as ``{"stems": path}``): the mixture, then drums, bass, other and vocals, ``stems_codec``
    ``aac`` (256 kbit/s) or ``alac``; a model without exactly those four stems needs
    ``stems_map`` (``"drums=drums,bass=bass,other=guitar+piano+other,vocals=vocals"``).

    ``analyzer`` (e.g. :func:`unbake.transcribe.timing.track_tags`) is called once per track
    with ``({"mixture" and each written stem: a source with .read(start, stop) and .length},
    sample_rate)`` and returns a :class:`~unbake.audio.tags.TrackTags` (or None); its BPM and
    key go into every written file and a ``track.json`` sidecar beside them. An analyzer with a
    ``prepare`` method (:class:`~unbake.transcribe.timing.TagWorker`) is first given
    ``({"mixture": source}, sample_rate)`` before the separation starts.

    ``format`` (default wav), ``bit_depth``, ``mp3_bitrate``, ``filename`` (default
    :data:`DEFAULT_FILENAME`) and ``overwrite`` shape the files; None leaves the request's value.
    ``request`` (a :class:`SeparationRequest`) carries every option at once; the keywords given
    replace its fields. Existing
    outputs are refused before any work unless ``overwrite``; nothing appears under a final name
    unless every stem of the track was written completely, and a failure (or Ctrl-C) leaves no
    folder it created behind.
    """
    given = {k: v for k, v in (("format", format), ("bit_depth", bit_depth), ("mp3_bitrate", mp3_bitrate),
                               ("filename", filename), ("overwrite", overwrite)) if v is not None}
    req = SeparationRequest.from_options(request, **given, **options)
    runner = load_runner(model, weights=weights, method=ensemble_method, model_file=model_file, config=config)
    path = Path(path)
    targets = output_targets(path, outdir, runner, req)
    sidecar = _sidecar_path(targets, req, track_name(path)) if analyzer is not None else None
    if sidecar is not None:
        check_writable(sidecar, req.overwrite)
    for folder in {t.parent for t in targets.values()}:
        sweep_stale_parts(folder)  # half-written stems of a killed earlier run
    created = _missing_folders(targets.values())
    try:
        with _workdir() as tmp:
            track = _track_from_file(path, tmp, req)
            try:
                _write_stems(runner, track, req, targets, tmp, progress, analyzer, sidecar)
            except OSError as exc:
                raise OutputError(_os_error_text(exc, f"the stems of {path.name}")) from exc
            finally:
                _close(track)
    except BaseException:
        for folder in created:  # deepest first; only the ones left empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return targets


def output_targets(path: str | os.PathLike, outdir: str | os.PathLike, model: Any,
                   request: SeparationRequest) -> dict[str, Path]:
    """``{stem: file}`` that :func:`separate_file` would write; refuses clashing names and (unless
    ``request.overwrite``) existing files, before any work."""
    runner_name = model_name(model)
    names = output_stems(model, request.two_stems)
    track = track_name(path)
    if request.format == STEMS_FORMAT:
        from .audio.stemsfile import plan_slots, stems_file_path

        plan_slots(names, request.stems_map)  # refuses stems that do not fill the NI slots
        target = stems_file_path(outdir, track)
        check_writable(target, request.overwrite)
        return {"stems": target}
    targets = {s: Path(outdir) / render_filename(request.filename, track=track, stem=s, ext=request.format,
                                                 model=runner_name)
               for s in names}
    if len(set(targets.values())) != len(targets):
        raise OutputOptionError("filename", "gives several stems the same file name")
    for t in targets.values():
        check_writable(t, request.overwrite)
    return targets


def temp_disk_bytes(meta, model: Any, request: SeparationRequest | None = None, *, files: bool = True) -> int:
    """Temporary disk space a separation of the input described by ``meta`` (an
    :class:`~unbake.audio.io.AudioInfo`) takes at its peak: the decoded input, its copies at
    each member's rate, every member's stems and (``files``) the final stems, as float32."""
    from .hub.ensemble import as_runner

    request = request or SeparationRequest()
    runner = as_runner(model)
    duration_s = meta.duration_s if np.isfinite(meta.duration_s) else 0.0  # unknown: nothing to warn about
    frames = meta.frames or int(duration_s * meta.sample_rate)
    channels = 2 if meta.channels > 2 else meta.channels
    track_bytes = frames * channels * 4
    total = track_bytes
    copies = set()
    for member in runner.parts:
        m = member.model
        if (m.samplerate, m.audio_channels) != (meta.sample_rate, channels):
            copies.add((m.samplerate, m.audio_channels))
        total += len(m.sources) * track_bytes
    total += sum(int(frames * rate / meta.sample_rate) * ch * 4 for rate, ch in copies)
    if files:
        total += len(output_stems(runner, request.two_stems)) * track_bytes
    return int(total)


def _missing_folders(files) -> list[Path]:
    """Folders that writing ``files`` will create, deepest first."""
    missing: set[Path] = set()
    for f in files:
        folder = Path(f).parent
        while not folder.exists() and folder != folder.parent:
            missing.add(folder)
            folder = folder.parent
    return sorted(missing, key=lambda p: len(p.parts), reverse=True)


def _write_stems(runner: Runner, track: _Track, request: SeparationRequest, targets: dict[str, Path],
                 workdir: Path, progress: ProgressFn | None, analyzer: Callable | None = None,
                 sidecar: Path | None = None) -> None:
    """Pass 1: final stems to raw files (their peaks decide the clipping gain); then one
    analysis for the tags (``analyzer``); pass 2: encode every stem (or the one NI Stems file)
    under a temporary name, renamed only when all are complete."""
    from .engine import RawFileWriter

    slots = None
    names = list(targets)
    if request.format == STEMS_FORMAT:
        from .audio.stemsfile import plan_slots

        slots = plan_slots(output_stems(runner, request.two_stems), request.stems_map)
        names = list(slots)
    raws = {s: RawFileWriter(workdir / f"final_{i}.f32", track.channels) for i, s in enumerate(names)}
    if analyzer is not None and hasattr(analyzer, "prepare"):  # the mixture's half of it meanwhile
        analyzer.prepare({"mixture": track.raw}, track.sample_rate)
    try:
        for blocks in _final_blocks(runner, track, request, progress):
            if slots is not None:  # the NI slots, each the sum of the stems mapped to it
                blocks = {slot: np.sum([blocks[s] for s in parts], axis=0) for slot, parts in slots.items()}
            for s, b in blocks.items():
                raws[s].write(b)
    finally:
        for w in raws.values():
            w.close()
    tags = _analyse(analyzer, track, raws) if analyzer is not None else None
    if slots is not None:
        _write_stems_file(targets["stems"], track, raws, names, request, tags)
    else:
        _encode_stems(track, raws, request, targets, tags)
    if sidecar is not None and tags is not None:
        from .audio.tags import write_track_json

        write_track_json(sidecar, tags)


def _encode_stems(track: _Track, raws: dict, request: SeparationRequest, targets: dict[str, Path], tags) -> None:
    tag = None
    if tags is not None:
        from .audio.tags import write_tags

        def tag(tmp, fmt):
            write_tags(tmp, tags, fmt=fmt)
    writers: dict[str, AudioWriter] = {}
    try:
        for s in targets:
            writers[s] = AudioWriter(targets[s], track.sample_rate, track.channels, bit_depth=request.bit_depth,
                                     mp3_bitrate=request.mp3_bitrate, overwrite=request.overwrite)
        for s in targets:
            src = raws[s].source()
            gain = dsp.clip_gain(raws[s].peak, request.clip)
            for block in _iter_source(src):
                writers[s].write(dsp.apply_clip(block, request.clip, gain))
            src.close()
        for s in targets:
            writers[s].commit(tag)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise


def _sidecar_path(targets: dict[str, Path], request: SeparationRequest, track: str) -> Path:
    """``track.json`` in the track's own folder when the layout gives each track one (the
    default ``{track}/{stem}.{ext}``), else ``{track}.track.json`` beside the files."""
    folder = next(iter(targets.values())).parent
    if request.format != STEMS_FORMAT and "{track}" in str(Path(request.filename).parent):
        return folder / "track.json"
    return folder / f"{track}.track.json"


def _analyse(analyzer: Callable, track: _Track, raws: dict) -> Any:
    """One analysis per track, of the separated stems (and the mixture) as the analyzer reads
    them; silence gives no tags rather than a failed separation."""
    sources = {"mixture": track.raw, **{s: w.source() for s, w in raws.items()}}
    try:
        return analyzer(sources, track.sample_rate)
    except InvalidAudioError as exc:
        log.warning("%s: no tempo and key tags (%s)", track.name, exc)
        return None
    finally:
        for s, src in sources.items():
            if s != "mixture":
                src.close()


def _write_stems_file(target: Path, track: _Track, raws: dict, names: list[str], request: SeparationRequest,
                      tags) -> None:
    """The mixture and the slots into one NI Stems file, block by block, interleaved in time."""
    from .audio.stemsfile import StemsFileWriter

    sources = [raws[s].source() for s in names]
    gains = [dsp.clip_gain(raws[s].peak, request.clip) for s in names]
    try:
        with StemsFileWriter(target, track.sample_rate, track.channels, names=names, codec=request.stems_codec,
                             overwrite=request.overwrite, tags=tags) as writer:
            for start in range(0, track.length, BLOCK_FRAMES):
                stop = min(start + BLOCK_FRAMES, track.length)
                writer.write([track.raw.read(start, stop)]
                             + [dsp.apply_clip(src.read(start, stop), request.clip, g) for src, g in zip(sources, gains)])
    finally:
        for src in sources:
            src.close()
