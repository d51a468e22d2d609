"""Reads official Demucs ``.th`` checkpoints without the reference package and without running
code from the file.

A ``.th`` file is a ``torch.save`` zip of ``{"klass", "args", "kwargs", "state",
"training_args", "metrics"}`` where ``klass`` is the model class pickled by reference. The file
is first scanned for the globals its pickle names; anything outside a short allow-list is
refused before unpickling starts. Unpickling then runs in torch's weights-only unpickler, with
the allowed names mapped to inert stand-ins (the model classes to markers, OmegaConf and numpy
objects in the training metadata to :class:`_Inert`), so no constructor of the original code is
ever called.
"""

from __future__ import annotations

import collections
import logging
import os
import pickle
import typing
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, DependencyError, ModelError, UnsafeCheckpointError
from .architectures import parse_fraction
from .checkpoint import build_for_state

log = logging.getLogger(__name__)


class _ReferenceClass:
    """Marker for a reference model class named by ``klass``; never instantiated."""

    architecture: str | None = None
    reference_name: str = ""


class _HTDemucsClass(_ReferenceClass):
    architecture = "htdemucs"
    reference_name = "demucs.htdemucs.HTDemucs"


class _HDemucsClass(_ReferenceClass):
    architecture = "hdemucs"
    reference_name = "demucs.hdemucs.HDemucs"


class _DemucsV2Class(_ReferenceClass):
    architecture = None  # the time-domain Demucs v2, not implemented here
    reference_name = "demucs.demucs.Demucs"


class _Inert:
    """Stands in for a metadata class (OmegaConf containers, numpy scalars): keeps the
    arguments and state the pickle hands it and does nothing else."""

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state


_MODEL_CLASSES: dict[str, type[_ReferenceClass]] = {
    c.reference_name: c for c in (_HTDemucsClass, _HDemucsClass, _DemucsV2Class)
}

def _fraction(*args: Any) -> Fraction:
    """Unpickles a Fraction (pickled as its text) only from short text: ``Fraction`` itself
    would compute a billion-digit power for ``"1e1000000000"``."""
    try:
        return parse_fraction(*args) if len(args) == 1 else Fraction(*(parse_fraction(a) for a in args))
    except ModelError as exc:
        raise pickle.UnpicklingError(f"Fraction: {exc}") from None


# plain values the official files carry; each is harmless to construct
_PLAIN_GLOBALS: dict[str, Any] = {
    "fractions.Fraction": _fraction,
    "collections.OrderedDict": collections.OrderedDict,
    "collections.defaultdict": collections.defaultdict,
    "builtins.dict": dict,
    "builtins.list": list,
    "builtins.tuple": tuple,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "typing.Any": typing.Any,
}

# training metadata: whole modules whose classes only ever become _Inert
_INERT_PREFIXES = ("omegaconf.", "numpy.dtypes.")
_INERT_NAMES = frozenset({
    "numpy.dtype", "numpy.ndarray",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
})


def _stand_in(name: str) -> Any | None:
    """The object an allowed global name maps to, or ``None`` when it is not allowed."""
    if name in _MODEL_CLASSES:
        return _MODEL_CLASSES[name]
    if name in _PLAIN_GLOBALS:
        return _PLAIN_GLOBALS[name]
    if name in _INERT_NAMES or name.startswith(_INERT_PREFIXES):
        return _Inert
    return None


def read_package(path: str | os.PathLike) -> dict[str, Any]:
    """Unpickle a ``.th`` file safely and return its dict (``klass`` is a marker class)."""
    path = Path(path)
    if not hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):
        raise DependencyError("reading official Demucs checkpoints safely needs torch >= 2.6 "
                              f"(this is {torch.__version__})")
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # not a zip, truncated, not a torch archive
        raise CheckpointError(f"{path}: not a readable Demucs checkpoint "
                              f"({exc.__class__.__name__}: {exc})") from exc
    refused = sorted(n for n in names if _stand_in(n) is None)
    if refused:
        raise UnsafeCheckpointError(
            f"{path}: refused: its pickle asks for {', '.join(refused)}, outside the allow-list "
            "of official Demucs checkpoints (loading it could run code)")
    allowed = [(_stand_in(n), n) for n in names]
    try:
        with torch.serialization.safe_globals(allowed):
            pkg = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch wraps the unpickler's own reason (a refused value) in a long paragraph
        reason = exc.__context__ if isinstance(exc.__context__, pickle.UnpicklingError) else exc
        text = " ".join(str(reason).split())
        raise UnsafeCheckpointError(f"{path}: refused by the restricted unpickler: {text}") from exc
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(pkg, dict) or not {"klass", "kwargs", "state"} <= pkg.keys():
        raise CheckpointError(f"{path}: not a Demucs checkpoint (expected a dict with "
                              "'klass', 'kwargs' and 'state')")
    return pkg


def _architecture_kwargs(arch: str, kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    """Drop kwargs the reference class does not take, as the reference loader does."""
    from importlib import import_module

    signature = import_module(f"unbake.models.{arch}").REFERENCE_KWARGS
    dropped = sorted(set(kwargs) - signature)
    if dropped:
        log.warning("%s: ignoring constructor arguments unknown to %s: %s", where, arch, dropped)
    return {k: v for k, v in kwargs.items() if k in signature}


def read(path: str | os.PathLike, *, entry=None, config=None) -> torch.nn.Module:
    """Format reader ``demucs-th``: an official Demucs checkpoint -> our model in eval mode.

    ``config`` is ignored (the file carries its constructor arguments); ``entry`` is only used
    to notice a catalogue whose source list disagrees with the file (the file wins).
    """
    where = str(path)
    pkg = read_package(path)
    klass = pkg["klass"]
    if not (isinstance(klass, type) and issubclass(klass, _ReferenceClass)):
        raise CheckpointError(f"{where}: 'klass' is {klass!r}, not a Demucs model class")
    if klass.architecture is None:
        raise CheckpointError(f"{where}: {klass.reference_name} (Demucs v2, time domain only) "
                              "checkpoints are not supported; use htdemucs or hdemucs_mmi")
    if pkg.get("args"):
        raise CheckpointError(f"{where}: positional constructor arguments are not supported")
    kwargs = pkg["kwargs"]
    state = pkg["state"]
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{where}: 'kwargs' is not a dict")
    if isinstance(state, dict) and state.get("__quantized"):
        raise CheckpointError(f"{where}: DiffQ-quantized checkpoints (the *_q models) are not "
                              "supported; use the full-precision model of the same name")
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{where}: 'state' is not a mapping of parameter names to tensors")
    model = build_for_state(klass.architecture, _architecture_kwargs(klass.architecture, kwargs, where), state,
                            where)
    if entry is not None and tuple(entry.sources) != tuple(model.sources):
        log.warning("%s: the file's sources %s differ from the catalogue's %s; using the file's",
                    where, list(model.sources), list(entry.sources))
    return model.eval()
