"""Reference architecture names -> our constructors, as data (import paths resolved lazily so
that listing the table never imports torch)."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ModelError

# name -> "module:function". Each function takes the reference constructor kwargs exactly as a
# checkpoint or an MSST YAML ``model:`` section carries them and returns our nn.Module.
ARCHITECTURES: dict[str, str] = {
    "center": "unbake.models.center:from_reference_kwargs",
    "htdemucs": "unbake.models.htdemucs:from_reference_kwargs",
    "hdemucs": "unbake.models.hdemucs:from_reference_kwargs",
    "scnet": "unbake.models.scnet:from_reference_kwargs",
    "bs_roformer": "unbake.models.bs_roformer:from_reference_kwargs",
    "mel_band_roformer": "unbake.models.mel_band_roformer:from_reference_kwargs",
    "masknet": "unbake.models.masknet:from_reference_kwargs",
}

# names the reference code bases use for the same architectures
ALIASES: dict[str, str] = {
    "HTDemucs": "htdemucs",
    "HDemucs": "hdemucs",
    "SCNet": "scnet",
    "BSRoformer": "bs_roformer",
    "MelBandRoformer": "mel_band_roformer",
    "bs_roformer": "bs_roformer",
    "mel_band_roformer": "mel_band_roformer",
}


def resolve_architecture(arch: str) -> str:
    name = ALIASES.get(arch, arch)
    if name not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ModelError(f"unknown architecture {arch!r}; known: {known}")
    return name


def model_from_config(arch: str, kwargs: dict[str, Any]):
    """Build our model for reference architecture ``arch`` from its reference constructor kwargs.

    Every checkpoint reader goes through here. Random weights; load a state dict afterwards.
    """
    name = resolve_architecture(arch)
    module_name, func_name = ARCHITECTURES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # architecture not available in this build
        raise ModelError(f"architecture {name!r} is not available: {exc}") from exc
    return getattr(module, func_name)(dict(kwargs))
