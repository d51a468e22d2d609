"""unbake's own checkpoint format: ``{format, architecture, config, sources, state_dict, meta}``,
saved with ``torch.save`` and read back with ``weights_only=True`` (never executes code).

Weights are stored in float32, float16, or int8: large weight tensors as int8 with one float32
scale per output row (``int8_scales``, a second format name so that a reader that does not know
the scales refuses the file instead of loading raw integers), the rest in float16. Readers get
float32 weights back; the model computes in float32 as always. No library stores a state dict
this way and reads it back with ``weights_only`` loading, hence the few lines here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .._common import atomic_path
from ..errors import CheckpointError, ModelError
from .architectures import model_from_config, resolve_architecture

FORMAT = "unbake-checkpoint-v1"
FORMAT_INT8 = "unbake-checkpoint-int8-v1"  # FORMAT plus int8 weights and their scales
FORMATS = (FORMAT, FORMAT_INT8)
# floating tensors with at least this many values (and two or more dimensions) are stored as int8;
# norms, biases and per-bin tables are small and stay float16
INT8_MIN_NUMEL = 4096


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, *, architecture: str,
                    config: dict[str, Any], meta: dict[str, Any] | None = None,
                    half: bool = False, int8: bool = False) -> Path:
    """Write ``model`` atomically (temporary name, then rename). ``half``: floating-point weights
    in float16; ``int8``: large weight tensors as int8 with per-row scales, the rest float16."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    scales = {}
    for k, v in state.items():
        if int8 and v.is_floating_point() and v.dim() >= 2 and v.numel() >= INT8_MIN_NUMEL:
            state[k], scales[k] = quantize_int8(v)
        elif (half or int8) and v.is_floating_point():
            state[k] = v.half()
    blob = {
        "format": FORMAT_INT8 if int8 else FORMAT,
        "architecture": resolve_architecture(architecture),
        "config": dict(config),
        "sources": list(model.sources),
        "state_dict": state,
        "meta": dict(meta or {}),
    }
    if int8:
        blob["int8_scales"] = scales
    atomic_torch_save(blob, path)
    return path


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(int8 values, float32 scale per row)``, symmetric: each output row (dim 0) keeps its own
    range, so a row of small weights is not rounded to zero by a neighbour's large ones."""
    rows = weight.detach().float().reshape(weight.shape[0], -1)
    scale = rows.abs().amax(dim=1).clamp_min(1e-30) / 127.0
    q = torch.round(rows / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.reshape(weight.shape), scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.float().reshape(-1, *([1] * (q.dim() - 1)))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary name in the target folder, then rename: a process killed
    at any moment leaves either the old file or the new one, never half of one."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_tagged(path: str | os.PathLike, fmt: str | tuple[str, ...], what: str) -> dict[str, Any]:
    """A ``torch.save``d dict whose ``format`` key is ``fmt`` (or one of them), read with
    ``weights_only=True``."""
    formats = (fmt,) if isinstance(fmt, str) else tuple(fmt)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for corrupt files
        raise CheckpointError(f"{path}: not a readable {what} ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") not in formats:
        expected = " or ".join(repr(f) for f in formats)
        raise CheckpointError(f"{path}: not an unbake {what} (format {expected} expected)")
    return blob


def read_blob(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's dict, its weights in float32 where the file stores them as int8."""
    blob = read_tagged(path, FORMATS, "checkpoint")
    if blob["format"] == FORMAT_INT8:
        blob["state_dict"] = _dequantized(blob.get("state_dict"), blob.pop("int8_scales", None), str(path))
    return blob


def _dequantized(state: Any, scales: Any, where: str) -> dict[str, torch.Tensor]:
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{where}: damaged int8 weights ({why})")

    if not isinstance(state, dict) or not isinstance(scales, dict):
        raise bad("the weights or their scales are not mappings")
    state = dict(state)
    for k, scale in scales.items():
        q = state.get(k)
        if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
            raise bad(f"{k!r} has a scale but no int8 weights")
        if not isinstance(scale, torch.Tensor) or scale.dim() != 1 or scale.numel() != q.shape[0] \
                or not scale.is_floating_point():
            raise bad(f"{k!r}: one float scale per row expected")
        state[k] = dequantize_int8(q, scale)
    raw = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.dtype == torch.int8]
    if raw:
        raise bad(f"no scale for {raw[:4]}")
    return state


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
