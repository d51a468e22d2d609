"""Reader for community checkpoints in the Music-Source-Separation-Training (MSST) layout: a bare
state dict (``.ckpt``/``.pth``/``.pt``/``.safetensors``) plus a YAML config whose ``model:``
section holds the reference constructor kwargs.

Nothing from these files is executed: the YAML is read with a safe loader that only adds the
``!!python/tuple`` tag, and the weights with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from .._schema import parse_yaml
from ..errors import CheckpointError, ConfigError, DependencyError, UnsafeCheckpointError
from .architectures import resolve_architecture

_TUPLE_TAG = "tag:yaml.org,2002:python/tuple"
# wrapper keys seen around the state dict, best first: starrytong's training packages hold
# both 'best_state' and the last 'state'
_WRAPPER_KEYS = ("best_state", "state_dict", "model_state_dict", "model", "state")
_PREFIXES = ("module.", "_orig_mod.", "model.")
_CONFIG_SUFFIXES = (".yaml", ".yml")


class _MSSTLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` plus ``!!python/tuple`` (built as a plain tuple of safe values).
    Every other ``!!python/...`` tag stays refused."""


def _construct_tuple(loader: _MSSTLoader, node: yaml.Node) -> tuple:
    return tuple(loader.construct_sequence(node, deep=True))


_MSSTLoader.add_constructor(_TUPLE_TAG, _construct_tuple)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The whole MSST YAML as a dict (tuples for ``!!python/tuple``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from exc
    try:
        # bounded like every settings file (depth, integer length), with the tuple tag added
        data = parse_yaml(text, str(path), syntax="not valid YAML", loader=_MSSTLoader)
    except ConfigError as exc:
        cause = exc.__context__
        if isinstance(cause, yaml.constructor.ConstructorError):
            mark = cause.problem_mark
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise ConfigError(f"{path}{where}: config uses a YAML tag that is not allowed (only "
                              f"!!python/tuple is): {cause.problem}") from None
        raise
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config is not a mapping")
    return data


def infer_architecture(model_kwargs: dict[str, Any], model_type: str | None = None) -> str:
    """Architecture name for an MSST ``model:`` section. MSST configs do not name their
    architecture (it is a command-line argument there), so it is recognised by its kwargs."""
    if model_type:
        return resolve_architecture(str(model_type))
    keys = set(model_kwargs)
    if {"sources", "dims", "band_SR"} <= keys:
        return "scnet"
    if "freqs_per_bands" in keys:
        return "bs_roformer"
    if "num_bands" in keys:
        return "mel_band_roformer"
    if {"dim", "depth", "stft_hop_length"} <= keys:
        # BS-RoFormer's freqs_per_bands has a default; Mel-Band's num_bands too, but every
        # Mel config sets it
        return "bs_roformer"
    raise ConfigError("cannot tell the architecture from the config's model section "
                      f"(keys {sorted(keys)}); add `model_type: <scnet|bs_roformer|mel_band_roformer>`")


def config_to_kwargs(data: dict[str, Any], where: str = "config") -> tuple[str, dict[str, Any]]:
    """``(architecture, kwargs)`` from a parsed MSST config: the ``model:`` kwargs plus our
    options taken from the other sections (``instruments``, ``target_instrument``,
    ``samplerate``, ``segment_samples``, ``track_normalize``)."""
    model = data.get("model")
    if not isinstance(model, dict):
        raise ConfigError(f"{where}: no `model:` section")
    arch = infer_architecture(model, data.get("model_type"))
    kwargs = copy.deepcopy(model)
    audio = data.get("audio") or {}
    training = data.get("training") or {}
    inference = data.get("inference") or {}
    if audio.get("sample_rate"):
        kwargs["samplerate"] = int(audio["sample_rate"])
    if audio.get("chunk_size"):
        kwargs["segment_samples"] = int(audio["chunk_size"])
    if inference.get("normalize") is not None:
        # MSST standardises the whole track (mono mean / std) before chunking when set
        kwargs["track_normalize"] = bool(inference["normalize"])
    if arch != "scnet":  # SCNet names its outputs with its own `sources` kwarg
        if training.get("target_instrument"):
            kwargs["target_instrument"] = str(training["target_instrument"])
        elif training.get("instruments"):
            kwargs["instruments"] = [str(s) for s in training["instruments"]]
    return arch, kwargs


def read_config(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """``(architecture, kwargs)`` for :func:`unbake.hub.architectures.model_from_config` from an
    MSST YAML (see :func:`config_to_kwargs`)."""
    return config_to_kwargs(read_yaml(path), str(path))


def find_config(checkpoint: Path) -> Path | None:
    """The config beside a checkpoint: same name with ``.yaml``/``.yml``, else ``config.yaml``
    (or ``.yml``) in the same folder."""
    for suffix in _CONFIG_SUFFIXES:
        candidate = checkpoint.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    for name in ("config.yaml", "config.yml"):
        candidate = checkpoint.parent / name
        if candidate.is_file():
            return candidate
    return None


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """The state dict of a community checkpoint: unwrapped from ``{'state_dict': ...}``-style
    packages and with ``module.`` / ``model.`` / ``_orig_mod.`` prefixes removed."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise DependencyError(f"{path}: reading .safetensors needs the `safetensors` package "
                                  "(pip install safetensors)") from exc
        try:
            blob: Any = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    else:
        import pickle

        import torch

        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise UnsafeCheckpointError(
                f"{path}: the checkpoint holds Python objects beyond tensors and plain values; "
                f"refusing to unpickle it ({str(exc).splitlines()[0]})") from exc
        except Exception as exc:  # torch raises many kinds for corrupt files
            raise CheckpointError(f"{path}: not a readable checkpoint ({exc.__class__.__name__}: {exc})") from exc
    return unwrap_state(blob, str(path))


def unwrap_state(blob: Any, where: str) -> dict[str, Any]:
    """Find the tensor dict inside a checkpoint package and strip wrapper prefixes."""
    import torch

    for _ in range(3):
        if not isinstance(blob, dict):
            raise CheckpointError(f"{where}: expected a state dict, found {type(blob).__name__}")
        if blob and all(isinstance(v, torch.Tensor) for v in blob.values()):
            break
        inner = next((blob[k] for k in _WRAPPER_KEYS if isinstance(blob.get(k), dict)), None)
        if inner is None:
            raise CheckpointError(f"{where}: no state dict found (top-level keys: {sorted(map(str, blob))[:10]})")
        blob = inner
    else:
        raise CheckpointError(f"{where}: state dict nested too deeply")
    if not blob or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise CheckpointError(f"{where}: state dict holds values that are not tensors")
    state = dict(blob)
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    return state


def _entry_kwargs(entry: Any, checkpoint: Path) -> tuple[str, dict[str, Any]] | None:
    """``(arch, kwargs)`` from a catalogue entry's ``config_file`` or inline ``config``."""
    if entry is None:
        return None
    if getattr(entry, "config_file", None):
        shipped = Path(__file__).with_name("configs") / entry.config_file
        beside = checkpoint.parent / entry.config_file
        path = shipped if shipped.is_file() else beside
        arch, kwargs = read_config(path)
    elif getattr(entry, "config", None):
        arch, kwargs = resolve_architecture(entry.architecture), copy.deepcopy(dict(entry.config))
    else:
        return None
    if entry.architecture and resolve_architecture(entry.architecture) != arch:
        raise ConfigError(f"catalogue entry {entry.name!r}: architecture {entry.architecture!r} "
                          f"but its config describes {arch!r}")
    if getattr(entry, "target", None) and "target_instrument" not in kwargs and arch != "scnet":
        kwargs["target_instrument"] = entry.target
        kwargs.pop("instruments", None)
    kwargs.setdefault("samplerate", int(entry.samplerate))
    return arch, kwargs


def read(path: str | os.PathLike, *, entry: Any = None, config: str | os.PathLike | None = None):
    """Format reader ``msst``: the model for a community checkpoint, in eval mode.

    The config comes from ``config`` if given, else from the catalogue ``entry``, else from a
    YAML beside the checkpoint (see :func:`find_config`). Weights load strictly.
    """
    from .checkpoint import build_for_state

    path = Path(path)
    if config is not None:
        arch, kwargs = read_config(config)
    else:
        found = _entry_kwargs(entry, path)
        if found is None:
            beside = find_config(path)
            if beside is None:
                raise ConfigError(
                    f"{path}: no config found; community checkpoints need their YAML config "
                    f"(put it beside the checkpoint as {path.with_suffix('.yaml').name} or config.yaml, "
                    "or pass config=)")
            found = read_config(beside)
        arch, kwargs = found
    return build_for_state(arch, kwargs, load_state(path), str(path)).eval()
