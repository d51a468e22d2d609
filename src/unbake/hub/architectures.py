"""Reference architecture names -> our constructors, as data (import paths resolved lazily so
that listing the table never imports torch)."""

from __future__ import annotations

import importlib
import numbers
import re
from fractions import Fraction
from typing import Any

from pydantic_core import PydanticCustomError

from .._schema import Number
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


# Ranges of the settings that decide a model's size and arithmetic, checked before anything is
# built: far beyond every released model (HT Demucs: channels 48, depth 4; BS-RoFormer: dim 512,
# depth 12), far below what exhausts memory. A checkpoint or config outside them is refused.
_INT = dict(integer=True)
_DEMUCS = {
    "audio_channels": Number(1, 8, **_INT), "channels": Number(1, 512, **_INT), "channels_time": Number(1, 512, **_INT),
    "growth": Number(0.5, 4.0), "nfft": Number(16, 32768, **_INT), "depth": Number(1, 10, **_INT),
    "kernel_size": Number(1, 64, **_INT), "stride": Number(1, 16, **_INT), "time_stride": Number(1, 16, **_INT),
    "context": Number(0, 16, **_INT), "context_enc": Number(0, 16, **_INT), "norm_starts": Number(0, 64, **_INT),
    "norm_groups": Number(1, 64, **_INT), "dconv_depth": Number(0, 16, **_INT), "dconv_comp": Number(0.1, 64.0),
    "dconv_attn": Number(0, 16, **_INT), "dconv_lstm": Number(0, 16, **_INT), "bottom_channels": Number(0, 4096, **_INT),
    "t_layers": Number(0, 32, **_INT), "t_hidden_scale": Number(0.1, 16.0), "t_heads": Number(1, 64, **_INT),
    "emb_scale": Number(0.0, 1000.0), "freq_emb": Number(0.0, 100.0), "samplerate": Number(4000, 384000, **_INT), "segment": Number(0.01, 3600.0),
}
_ROFORMER = {
    "dim": Number(1, 4096, **_INT), "depth": Number(1, 64, **_INT), "num_stems": Number(1, 32, **_INT),
    "time_transformer_depth": Number(0, 32, **_INT), "freq_transformer_depth": Number(0, 32, **_INT),
    "linear_transformer_depth": Number(0, 32, **_INT), "dim_head": Number(1, 1024, **_INT),
    "heads": Number(1, 128, **_INT), "dim_freqs_in": Number(1, 32769, **_INT), "stft_n_fft": Number(16, 65536, **_INT),
    "stft_hop_length": Number(1, 65536, **_INT), "stft_win_length": Number(16, 65536, **_INT),
    "mask_estimator_depth": Number(1, 16, **_INT), "mlp_expansion_factor": Number(1, 16, **_INT),
    "num_bands": Number(1, 1024, **_INT), "sample_rate": Number(4000, 384000, **_INT),
}
SETTING_RANGES: dict[str, dict[str, Number]] = {
    "htdemucs": _DEMUCS,
    "hdemucs": _DEMUCS,
    "bs_roformer": _ROFORMER,
    "mel_band_roformer": _ROFORMER,
    "scnet": {
        "audio_channels": Number(1, 8, **_INT), "nfft": Number(16, 65536, **_INT), "hop_size": Number(1, 65536, **_INT),
        "win_size": Number(16, 65536, **_INT), "compress": Number(1, 64, **_INT), "conv_kernel": Number(1, 64, **_INT),
        "num_dplayer": Number(0, 64, **_INT), "expand": Number(1, 16, **_INT),
    },
    "masknet": {
        "samplerate": Number(4000, 384000, **_INT), "audio_channels": Number(1, 8, **_INT),
        "n_fft": Number(16, 65536, **_INT), "hop_length": Number(1, 65536, **_INT), "hidden": Number(1, 4096, **_INT),
        "depth": Number(1, 64, **_INT), "kernel_size": Number(1, 64, **_INT), "full_res_bins": Number(0, 32769, **_INT),
        "high_group": Number(1, 1024, **_INT), "segment_s": Number(0.01, 3600.0),
        "input_rms": Number(0.0, 1.0),
    },
}
# a fraction as text: "39/5", "7.8", "78e-1"; anything longer is refused before Fraction parses
# it (Fraction("1e1000000000") computes a billion-digit power of ten)
_FRACTION_TEXT = re.compile(r"^\s*[-+]?(\d{1,12}(/\d{1,12})?|\d{0,12}\.\d{0,12}([eE][-+]?\d{1,2})?|\d{1,12}[eE][-+]?\d{1,2})\s*$")


def parse_fraction(value: Any) -> Fraction:
    """A :class:`Fraction` from a number or short text; long or odd text is a :class:`ModelError`
    (the reference checkpoints store ``segment`` as a pickled Fraction, i.e. as text)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, numbers.Rational) and not isinstance(value, bool):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(value).limit_denominator(10**6)
    if isinstance(value, str) and _FRACTION_TEXT.match(value):
        return Fraction(value)
    raise ModelError(f"not a fraction: {str(value)[:40]!r}")


def check_settings(name: str, kwargs: dict[str, Any]) -> None:
    """Every setting with a declared range must be a number inside it (a :class:`ModelError`
    naming the setting otherwise); called before a model is built."""
    if name == "masknet" and isinstance(kwargs.get("members"), (list, tuple)):
        # an ensemble of masknets: each member's settings are a masknet's (one level: a member
        # that is itself an ensemble is refused when it is built)
        for member in kwargs["members"]:
            if isinstance(member, dict):
                _check_flat(name, member)
    _check_flat(name, kwargs)


def _check_flat(name: str, kwargs: dict[str, Any]) -> None:
    for key, rule in SETTING_RANGES.get(name, {}).items():
        if key not in kwargs or kwargs[key] is None:
            continue
        value = kwargs[key]
        try:
            if isinstance(value, (Fraction, str)) and key == "segment":
                value = float(parse_fraction(value))
            rule.check(value)
        except ModelError as exc:
            raise ModelError(f"{name} setting {key}: {exc}") from None
        except PydanticCustomError as exc:
            raise ModelError(f"{name} setting {key}: {exc.message()}") from None


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
    if not isinstance(kwargs, dict):
        raise ModelError(f"{name} settings must be a mapping, got {type(kwargs).__name__}")
    check_settings(name, kwargs)
    module_name, func_name = ARCHITECTURES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # architecture not available in this build
        raise ModelError(f"architecture {name!r} is not available: {exc}") from exc
    try:
        return getattr(module, func_name)(dict(kwargs))
    except ModelError:
        raise
    except (TypeError, ValueError, RuntimeError, ArithmeticError, AttributeError, KeyError, IndexError) as exc:
        # a setting of the wrong type or value that no range covers: one line, not a traceback
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(f"cannot build {name} from these settings ({exc.__class__.__name__}: {text[:200]})") from exc
