"""The facade every front end calls: input -> stems (a :class:`StemSet` or files).

Files are processed as streams: decoded and resampled block by block into a temporary raw file,
separated chunk by chunk, resampled back and encoded block by block, so memory does not grow
with the track's length. Outputs are written under temporary names and renamed only when every
stem of a track is complete.
"""

from __future__ import annotations

import logging
import os
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .audio import dsp
from .audio.io import BLOCK_FRAMES, OUTPUT_FORMATS, AudioWriter, check_writable, iter_blocks
from .errors import AudioError, ModelError, OutputError, UnbakeError
from .stems import StemSet

log = logging.getLogger(__name__)

OTHER_METHODS = ("add", "minus")
DEFAULT_FILENAME = "{track}/{stem}.{ext}"
ProgressFn = Callable[[float], None]


@dataclass
class SeparateOptions:
    """Everything that shapes one separation. ``segment_s`` None = the model's own."""

    two_stems: str | None = None
    other_method: str = "add"
    segment_s: float | None = None
    overlap: float = 0.25
    shifts: int = 0
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 1
    downmix: bool = False
    enforce_consistency: bool = False
    clip: str = "rescale"
    stream: int = 0
    precision: str = "float32"

    def check(self) -> None:
        if self.other_method not in OTHER_METHODS:
            raise UnbakeError(f"--other-method must be one of {OTHER_METHODS}, not {self.other_method!r}")
        if not 0.0 <= self.overlap < 1.0:
            raise UnbakeError(f"--overlap must be in [0, 1), got {self.overlap}")
        if self.shifts < 0:
            raise UnbakeError("--shifts must be >= 0")
        if self.segment_s is not None and self.segment_s <= 0:
            raise UnbakeError("--segment must be positive")
        if self.clip not in dsp.CLIP_MODES:
            raise UnbakeError(f"--clip must be one of {dsp.CLIP_MODES}")
        from .engine import resolve_device, resolve_precision

        resolve_precision(self.precision, resolve_device(self.device))  # refused before any decoding


# ------------------------------------------------------------------------------ models


def default_model() -> str:
    """The model used when none is named: the best one that runs without a download
    (catalogue ``default_order``)."""
    from .hub.catalogue import load_catalogue

    return load_catalogue().default()


def resolve_model(model: Any = None, *, weights: Sequence[float] | None = None,
                  method: str = "average", model_file: str | None = None, config: str | None = None):
    """A name, path, model object, or a list of them (an ensemble) -> a model or Ensemble."""
    from .hub.ensemble import Ensemble
    from .hub.loading import load_model

    if model is None:
        model = default_model()
    if isinstance(model, (list, tuple)):
        if len(model) == 1:
            return resolve_model(model[0], weights=weights, method=method, model_file=model_file, config=config)
        if model_file is not None:
            raise ModelError("--model-file applies to a single model, not to an ensemble")
        members = [load_model(m) for m in model]
        flat = []
        for m in members:
            if isinstance(m, Ensemble):
                raise ModelError("an ensemble cannot contain another ensemble; list its models instead")
            flat.append(m)
        return Ensemble.uniform(flat, method=method, member_weights=weights,
                                name="+".join(str(m) for m in model))
    if weights is not None:
        raise ModelError("--weights needs several models (-n A -n B ...)")
    return load_model(model, model_file=model_file, config=config)


def _members(model) -> tuple[list, list[list[float]], tuple[str, ...], str, list]:
    from .hub.ensemble import Ensemble

    if isinstance(model, Ensemble):
        return model.members, model.weights, model.sources, model.method, model.segment_s
    return [model], [[1.0] * len(model.sources)], tuple(model.sources), "average", [None]


def complement_name(stem: str) -> str:
    return "instrumental" if stem == "vocals" else f"no_{stem}"


def output_stems(model, two_stems: str | None) -> list[str]:
    """Names of the stems a separation writes, in order."""
    _, _, sources, _, _ = _members(model)
    if two_stems:
        if two_stems not in sources:
            raise UnbakeError(f"--two-stems {two_stems}: the model has no such stem (stems: {', '.join(sources)})")
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


def _track_from_file(path: Path, workdir: Path, options: SeparateOptions) -> _Track:
    from .engine import RawFileWriter

    sr, ch, blocks = iter_blocks(path, stream=options.stream)
    use_ch = dsp.check_input_channels(ch, options.downmix, str(path))
    writer = RawFileWriter(workdir / "input.f32", use_ch)
    try:
        for block in blocks:
            writer.write(dsp.downmix(block, use_ch) if ch > use_ch else block)
    finally:
        writer.close()
    return _Track(_track_name(path), sr, use_ch, writer.length, writer.source(), workdir)


def _track_from_array(audio, sample_rate: int, workdir: Path, options: SeparateOptions) -> _Track:
    from .engine import RawFileWriter

    arr = dsp.as_channels_first(audio.detach().cpu().numpy() if hasattr(audio, "detach") else audio)
    use_ch = dsp.check_input_channels(arr.shape[0], options.downmix, "input array")
    if arr.shape[0] > use_ch:
        arr = dsp.downmix(arr, use_ch)
    if not sample_rate or sample_rate <= 0:
        raise AudioError("an array input needs its sample_rate")
    writer = RawFileWriter(workdir / "input.f32", use_ch)
    writer.write(arr)
    writer.close()
    return _Track("array", int(sample_rate), use_ch, writer.length, writer.source(), workdir)


def _track_name(path: Path) -> str:
    name = path.name
    for suffix in (".stem.mp4", ".stem.m4a"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


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


def _run_member(model, track: _Track, options: SeparateOptions, segment_s: float | None,
                progress, tag: str) -> dict[str, Any]:
    """Separate the track with one model; stems at the track's rate and channels, as raw files."""
    from .engine import RawFileWriter, iter_separate

    source = track.prepare(model.samplerate, model.audio_channels)
    seg_s = options.segment_s if options.segment_s is not None else segment_s
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
        for block in iter_separate(model, source, segment_samples=seg, overlap=options.overlap,
                                   shifts=options.shifts, seed=options.seed, batch_size=options.batch_size,
                                   device=options.device, progress=progress, normalize=normalize,
                                   precision=options.precision):
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


def _final_blocks(model, track: _Track, options: SeparateOptions,
                  progress: ProgressFn | None) -> Iterator[dict[str, np.ndarray]]:
    """Run every member, then yield the output stems block by block."""
    members, weights, sources, method, segs = _members(model)
    prog = _Progress(progress, len(members))
    results = []
    for i, (m, seg) in enumerate(zip(members, segs)):
        results.append(_run_member(m, track, options, seg, prog.member(i), f"m{i}"))
    names = output_stems(model, options.two_stems)
    consistency = None
    if options.enforce_consistency:
        from .metrics.consistency import enforce_consistency as consistency

    for start in range(0, track.length, BLOCK_FRAMES):
        stop = min(start + BLOCK_FRAMES, track.length)
        mix = track.raw.read(start, stop)
        stems: dict[str, np.ndarray] = {}
        for k, s in enumerate(sources):
            parts, ws = [], []
            for res, row, m in zip(results, weights, members):
                if s in res and row[k] > 0:
                    parts.append(res[s].read(start, stop))
                    ws.append(row[k])
            stems[s] = _combine(parts, ws, method)
        if len(sources) == 1:
            only = sources[0]
            stems[complement_name(only)] = mix - stems[only]
        if consistency is not None and not options.two_stems:
            fixed = consistency(mix, np.stack([stems[n] for n in names]))
            stems = {n: np.asarray(fixed[i], np.float32) for i, n in enumerate(names)}
        if options.two_stems:
            keep = options.two_stems
            if options.other_method == "minus" or len(sources) == 1:
                rest = mix - stems[keep]
            else:
                rest = np.sum([stems[s] for s in sources if s != keep], axis=0)
            stems = {keep: stems[keep], f"no_{keep}": rest}
            if consistency is not None:
                fixed = consistency(mix, np.stack([stems[n] for n in names]))
                stems = {n: np.asarray(fixed[i], np.float32) for i, n in enumerate(names)}
        yield {n: stems[n] for n in names}


# ------------------------------------------------------------------------------ public API


def separate(source, model: Any = None, *, sample_rate: int | None = None,
             progress: ProgressFn | None = None, **options) -> StemSet:
    """Separate a song into stems.

    Args:
        source: a path to any audio/video file, or an array/tensor ``(c, t)`` (or ``(t,)`` mono)
            with ``sample_rate``.
        model: a catalogue name (default ``"center"``), a checkpoint path, a model object, an
            :class:`~unbake.hub.ensemble.Ensemble`, or a list of these (an ensemble).
        progress: called with the fraction done (0..1).
        **options: fields of :class:`SeparateOptions` (``two_stems``, ``other_method``,
            ``segment_s``, ``overlap``, ``shifts``, ``device``, ``batch_size``, ``downmix``,
            ``enforce_consistency``, ``weights``, ``ensemble_method``, ``stream``, ``precision``:
            ``float32`` (exact, default), ``bfloat16``, ``float16``, ``int8`` or ``fast``).

    Returns:
        a :class:`StemSet` at the input's sample rate and channel count (mono stays mono).
        The input is never modified.
    """
    mdl, opts = _model_and_options(model, options)
    with tempfile.TemporaryDirectory(prefix="unbake-") as tmp:
        track = _open_track(source, sample_rate, Path(tmp), opts)
        parts: dict[str, list[np.ndarray]] = {}
        try:
            for blocks in _final_blocks(mdl, track, opts, progress):
                for k, v in blocks.items():
                    parts.setdefault(k, []).append(v)
        finally:
            _close(track)
    stems = {k: np.concatenate(v, axis=1) for k, v in parts.items()}
    return StemSet(stems, track.sample_rate, _provenance(source, mdl, opts))


def _model_and_options(model, options: dict) -> tuple[Any, SeparateOptions]:
    """Split the keyword options into model-loading ones and :class:`SeparateOptions`."""
    options = dict(options)
    weights = options.pop("weights", None)
    method = options.pop("ensemble_method", "average")
    model_file = options.pop("model_file", None)
    config = options.pop("config", None)
    try:
        opts = SeparateOptions(**options)
    except TypeError as exc:
        raise UnbakeError(f"unknown separation option: {exc}") from exc
    opts.check()
    mdl = resolve_model(model, weights=weights, method=method, model_file=model_file, config=config)
    return mdl, opts


def _open_track(source, sample_rate, workdir: Path, opts: SeparateOptions) -> _Track:
    if isinstance(source, (str, os.PathLike)):
        return _track_from_file(Path(source), workdir, opts)
    return _track_from_array(source, sample_rate, workdir, opts)


def _close(track: _Track) -> None:
    track.raw.close()
    for src in track.opened:
        src.close()


def _model_name(model) -> str:
    from .hub.ensemble import Ensemble

    if isinstance(model, Ensemble):
        return model.name
    info = getattr(model, "info", None)
    return getattr(info, "name", None) or getattr(model, "name", None) or model.__class__.__name__


def _provenance(source, model, opts: SeparateOptions) -> dict:
    from . import __version__

    return {
        "input": os.fspath(source) if isinstance(source, (str, os.PathLike)) else "array",
        "model": _model_name(model),
        "unbake_version": __version__,
        "options": {k: v for k, v in opts.__dict__.items() if v is not None},
    }


def render_filename(template: str, *, track: str, stem: str, ext: str, model: str) -> str:
    """Fill ``{track}``, ``{stem}``, ``{ext}``, ``{model}``; other fields are refused."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    unknown = fields - {"track", "stem", "ext", "model"}
    if unknown:
        raise OutputError(f"--filename: unknown field(s) {sorted(unknown)}; use track, stem, ext, model")
    if "{stem}" not in template:
        raise OutputError("--filename must contain {stem}, or every stem would get the same name")
    return template.format(track=track, stem=stem, ext=ext, model=model)


def separate_file(path: str | os.PathLike, outdir: str | os.PathLike = "separated", model: Any = None, *,
                  format: str = "wav", bit_depth: str | None = None, mp3_bitrate: int | None = None,
                  filename: str = DEFAULT_FILENAME, overwrite: bool = False,
                  progress: ProgressFn | None = None, **options) -> dict[str, Path]:
    """Separate one file into one file per stem, streaming; returns ``{stem: path}``.

    Existing outputs are refused before any work unless ``overwrite``; nothing appears under a
    final name unless every stem of the track was written completely.
    """
    if format not in OUTPUT_FORMATS:
        raise OutputError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}, not {format!r}")
    mdl, opts = _model_and_options(model, options)
    path = Path(path)
    names = output_stems(mdl, opts.two_stems)
    mname = _model_name(mdl)
    targets = {s: Path(outdir) / render_filename(filename, track=_track_name(path), stem=s, ext=format, model=mname)
               for s in names}
    if len(set(targets.values())) != len(targets):
        raise OutputError("--filename gives several stems the same file name")
    for t in targets.values():
        check_writable(t, overwrite)
    with tempfile.TemporaryDirectory(prefix="unbake-") as tmp:
        track = _track_from_file(path, Path(tmp), opts)
        try:
            # pass 1: final stems to raw files (peaks for clipping); pass 2: encode atomically
            from .engine import RawFileWriter

            raws = {s: RawFileWriter(Path(tmp) / f"final_{i}.f32", track.channels) for i, s in enumerate(names)}
            try:
                for blocks in _final_blocks(mdl, track, opts, progress):
                    for s, b in blocks.items():
                        raws[s].write(b)
            finally:
                for w in raws.values():
                    w.close()
            writers: dict[str, AudioWriter] = {}
            try:
                for s in names:
                    writers[s] = AudioWriter(targets[s], track.sample_rate, track.channels, bit_depth=bit_depth,
                                             mp3_bitrate=mp3_bitrate, overwrite=overwrite)
                for s in names:
                    src = raws[s].source()
                    gain = dsp.clip_gain(raws[s].peak, opts.clip)
                    for block in _iter_source(src):
                        writers[s].write(dsp.apply_clip(block, opts.clip, gain))
                    src.close()
                for s in names:
                    writers[s].commit()
            except BaseException:
                for w in writers.values():
                    w.abort()
                raise
        finally:
            _close(track)
    return targets
