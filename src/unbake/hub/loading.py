"""``load_model``: a catalogue name, a checkpoint path or a model object -> a ready model."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from ..errors import ModelError, ModelOptionError, UnknownModelError
from .architectures import model_from_config
from .catalogue import EnsembleEntry, ModelEntry, load_catalogue
from .ensemble import Ensemble

# catalogue ``format`` -> reader "module:function"; a reader takes (path, entry=, config=).
FORMAT_READERS: dict[str, str] = {
    "unbake": "unbake.hub.checkpoint:read",
    "demucs-th": "unbake.hub.demucs_checkpoint:read",
    "msst": "unbake.hub.msst:read",
}

# file suffix -> format, for paths given directly
SUFFIX_FORMATS: dict[str, str] = {
    ".th": "demucs-th",
    ".ckpt": "msst",
    ".pth": "msst",
    ".pt": "msst",
    ".safetensors": "msst",
    ".unbake": "unbake",
}


def _reader(fmt: str):
    if fmt not in FORMAT_READERS:
        raise ModelError(f"no reader for checkpoint format {fmt!r}")
    module_name, func = FORMAT_READERS[fmt].split(":")
    return getattr(importlib.import_module(module_name), func)


_TORCH_SUFFIXES = (".th", ".pt", ".pth", ".ckpt", ".unbake")


def _check_complete(path: Path) -> None:
    """A torch checkpoint is a zip archive whose directory sits at the end: a copy cut short
    loses it. Say so, instead of the misleading errors a reader gives for half a file."""
    import zipfile

    from ..errors import CheckpointError

    if path.suffix not in _TORCH_SUFFIXES:
        return
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if size == 0:
        raise CheckpointError(f"{path}: empty file")
    if magic == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path):
                pass
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(f"{path}: truncated or corrupt file ({size} bytes; the checkpoint archive "
                                  "is incomplete) - download or copy it again") from exc


def _guess_format(path: Path) -> str:
    if path.suffix == ".th":
        return "demucs-th"
    if path.suffix in (".pt", ".unbake"):
        # our own checkpoints are also .pt files: peek at the format key safely
        from .checkpoint import FORMATS

        try:
            import torch

            blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            if isinstance(blob, dict) and blob.get("format") in FORMATS:
                return "unbake"
        except Exception:
            pass
    return SUFFIX_FORMATS.get(path.suffix, "msst")


def _build_entry(entry: ModelEntry, pretrained: bool, model_file: Path | None):
    model = _build_entry_weights(entry, pretrained, model_file)
    _tag(model, entry.name, entry.architecture, str(model_file) if model_file else "catalogue")
    if entry.segment_s:  # the catalogue's chunk length (e.g. the official Demucs bag settings)
        model.segment_samples = int(entry.segment_s * model.samplerate)
    if entry.precision:  # what a separation that names no precision runs it at
        model.default_precision = entry.precision
    return model


def _build_entry_weights(entry: ModelEntry, pretrained: bool, model_file: Path | None):
    if entry.format == "builtin" or not pretrained:
        if entry.format != "builtin" and not entry.config and entry.config_file:
            from .msst import read_config  # configs shipped as YAML next to the catalogue

            arch, kwargs = read_config(Path(__file__).with_name("configs") / entry.config_file)
            model = model_from_config(arch, kwargs)
        else:
            model = model_from_config(entry.architecture, entry.config)
        return model.eval()
    if entry.package_file:
        path = Path(__file__).parent.parent / entry.package_file
        return _reader(entry.format)(path, entry=entry, config=None)
    if model_file is not None:
        paths = [Path(model_file)]
    else:
        from .download import fetch_entry

        paths = fetch_entry(entry)
    if len(paths) != 1:
        raise ModelError(f"model {entry.name!r} lists {len(paths)} files; expected one")
    _check_complete(paths[0])
    return _reader(entry.format)(paths[0], entry=entry, config=None)


def _build_ensemble(entry: EnsembleEntry, pretrained: bool):
    cat = load_catalogue()
    members = [_build_entry(cat.models[m], pretrained, None) for m in entry.models]
    if entry.weights is None:
        ens = Ensemble.uniform(members, method=entry.method, name=entry.name)
        weights = ens.weights
    else:
        weights = [list(r) for r in entry.weights]
    return Ensemble(members, tuple(entry.sources), weights, method=entry.method,
                    segment_s=list(entry.segment_s) if entry.segment_s else [], name=entry.name)


def load_model(source: Any, pretrained: bool = True, *, config: str | os.PathLike | None = None,
               model_file: str | os.PathLike | None = None):
    """Return a model (or an :class:`Ensemble`) ready for :func:`unbake.separate`.

    Args:
        source: a catalogue name (``"center"``, ``"htdemucs"``, ...), a checkpoint path (``.th``
            official Demucs, ``.ckpt``/``.pth`` with an MSST YAML config, an unbake ``.pt``), or
            an already-built model, returned unchanged.
        pretrained: for catalogue names, ``False`` builds the architecture with random weights
            (no download) so shapes and speed can be checked.
        config: the YAML config of a community checkpoint; by default a ``.yaml`` with the
            checkpoint's name next to it.
        model_file: a local copy of a catalogue model's weights (skips the download).
    """
    if not isinstance(source, (str, os.PathLike)):
        return source
    text = os.fspath(source)
    cat = load_catalogue()
    if text in cat:
        entry = cat.get(text)
        if isinstance(entry, EnsembleEntry):
            if model_file is not None:
                raise ModelOptionError("model_file", f"{text!r} is an ensemble; a model file stands in for a "
                                                     "single model's weights")
            return _build_ensemble(entry, pretrained)
        return _build_entry(entry, pretrained, Path(model_file) if model_file else None)
    path = Path(text)
    if path.is_dir():
        return _load_folder(path)
    if path.is_file():
        _check_complete(path)
        fmt = _guess_format(path)
        model = _reader(fmt)(path, entry=None, config=Path(config) if config else None).eval()
        return _tag(model, path.stem, fmt, str(path))
    if path.suffix or os.sep in text:
        raise ModelError(f"{text}: no such checkpoint file")
    cat.get(text)  # raises UnknownModelError with suggestions
    raise UnknownModelError(text)  # pragma: no cover


def _tag(model, name: str, architecture: str, source: str):
    """Attach provenance (the name users gave) without touching the weights."""
    from ..models.base import ModelInfo

    if getattr(model, "info", None) is None:
        model.info = ModelInfo(name=name, architecture=architecture, source=source)
    return model


def _load_folder(folder: Path):
    """A folder of hand-copied weights: one checkpoint (plus its YAML) is loaded; several
    checkpoints become a uniform ensemble."""
    ckpts = sorted(p for p in folder.iterdir() if p.suffix in SUFFIX_FORMATS)
    if not ckpts:
        raise ModelError(f"{folder}: no checkpoint files ({', '.join(sorted(SUFFIX_FORMATS))}) in this folder")
    models = [load_model(p) for p in ckpts]
    return models[0] if len(models) == 1 else Ensemble.uniform(models, name=folder.name)
