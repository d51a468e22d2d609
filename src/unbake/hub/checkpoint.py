"""unbake's own checkpoint format: ``{format, architecture, config, sources, state_dict, meta}``,
saved with ``torch.save`` and read back with ``weights_only=True`` (never executes code)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .._common import atomic_path
from ..errors import CheckpointError, ModelError
from .architectures import model_from_config, resolve_architecture

FORMAT = "unbake-checkpoint-v1"


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, *, architecture: str,
                    config: dict[str, Any], meta: dict[str, Any] | None = None,
                    half: bool = False) -> Path:
    """Write ``model`` atomically (temporary name, then rename)."""
    path = Path(path)
    state = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    blob = {
        "format": FORMAT,
        "architecture": resolve_architecture(architecture),
        "config": dict(config),
        "sources": list(model.sources),
        "state_dict": state,
        "meta": dict(meta or {}),
    }
    atomic_torch_save(blob, path)
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary name in the target folder, then rename: a process killed
    at any moment leaves either the old file or the new one, never half of one."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_tagged(path: str | os.PathLike, fmt: str, what: str) -> dict[str, Any]:
    """A ``torch.save``d dict whose ``format`` key is ``fmt``, read with ``weights_only=True``."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for corrupt files
        raise CheckpointError(f"{path}: not a readable {what} ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise CheckpointError(f"{path}: not an unbake {what} (format {fmt!r} expected)")
    return blob


def read_blob(path: str | os.PathLike) -> dict[str, Any]:
    return read_tagged(path, FORMAT, "checkpoint")


def build_for_state(arch: str, kwargs: dict[str, Any], state: Any, where: str) -> torch.nn.Module:
    """Our model for ``arch`` built from ``kwargs`` with the weights ``state`` loaded strictly.

    The settings are checked against their declared ranges, then the model is built on the
    ``meta`` device (no memory) and its parameter shapes compared with the file's, so a small
    file that claims a huge model is refused before anything is allocated."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{where}: the weights are not a mapping of parameter names to tensors")
    try:
        with torch.device("meta"):
            probe = model_from_config(arch, kwargs)
        _check_shapes(probe.state_dict(), state, where)
        model = model_from_config(arch, kwargs)
    except CheckpointError:
        raise
    except ModelError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc
    load_state_strict(model, state, where)
    return model


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists what does not match."""
    own = model.state_dict()
    _check_shapes(own, state, where)
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def _check_shapes(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], where: str) -> None:
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" ... ({len(items)} in all)" if len(items) > 8 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if wrong:
            parts.append(f"shape mismatches: {show(wrong)}")
        raise CheckpointError(f"{where}: weights do not match the architecture; " + "; ".join(parts))


def load_checkpoint(path: str | os.PathLike) -> torch.nn.Module:
    return model_from_blob(read_blob(path), str(path))


def model_from_blob(blob: dict[str, Any], where: str) -> torch.nn.Module:
    """The model a checkpoint dict (see :func:`read_blob`) describes, weights loaded strictly."""
    return build_for_state(blob["architecture"], blob["config"], blob["state_dict"], where).eval()


def read(path: Path, *, entry=None, config=None) -> torch.nn.Module:
    """Format reader for the catalogue (format ``unbake``)."""
    return load_checkpoint(path)
