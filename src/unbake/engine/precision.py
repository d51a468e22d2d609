"""Numeric precision of the model call: ``float32`` (exact, the default), ``bfloat16`` or
``float16`` (autocast around the call), ``int8`` (dynamic quantisation of the linear and
recurrent layers) or ``fast`` (the quickest of these that this machine runs natively).

Nothing here knows an architecture: autocast lowers the matrix products and convolutions of any
model and leaves the rest in float32. The STFT and iSTFT see float32 inputs (the mix, and mask
or decoder outputs promoted by their float32 spectrogram, statistics or window), so the
spectral transforms and the final mask products stay float32; the engine casts every output
back to float32.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings

import torch
from torch import nn

from .._common import PRECISIONS
from ..errors import ParameterError

log = logging.getLogger(__name__)
_AUTOCAST = {"bfloat16": torch.bfloat16, "float16": torch.float16}
# module types dynamic quantisation replaces: the weight products that run on int8 kernels.
# (Convolutions have no dynamic int8 kernel in PyTorch; static quantisation would need
# calibration data per model.)
_INT8_MODULES = {nn.Linear, nn.LSTM, nn.GRU}


@functools.lru_cache(maxsize=None)
def cpu_features() -> dict[str, bool]:
    """What the CPU offers for lower-precision products, as PyTorch's kernels see it."""
    cpu = torch.cpu
    feats = {
        "avx2": bool(cpu._is_avx2_supported()),
        "avx512": bool(cpu._is_avx512_supported()),
        "avx512_bf16": bool(cpu._is_avx512_bf16_supported()),
        "vnni": bool(cpu._is_vnni_supported()),
        "amx": bool(cpu._is_amx_tile_supported()),
        "amx_fp16": bool(cpu._is_amx_fp16_supported()),
    }
    engines = torch.backends.quantized.supported_engines
    feats["int8_kernels"] = any(e in engines for e in ("x86", "fbgemm", "onednn"))
    return feats


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """The concrete precision (never ``fast``) for ``device``; raises :class:`~unbake.errors.ParameterError` for
    an unknown name or a precision the device cannot run."""
    name = (precision or "float32").lower()
    if name not in PRECISIONS:
        raise ParameterError("precision", f"must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if name == "fast":
        name = _fastest(device)
    if name == "int8" and device.type != "cpu":
        raise ParameterError("precision", "int8 (dynamic quantisation) runs on the CPU only; "
                                          "use float16 or bfloat16 on a GPU")
    if name == "int8" and not cpu_features()["int8_kernels"]:
        raise ParameterError("precision", "int8: this PyTorch build has no int8 CPU kernels")
    if name == "float16" and device.type == "cpu" and not cpu_features()["amx_fp16"]:
        # without AMX-FP16 every half-precision product is emulated: tens of times slower than
        # float32, and oneDNN has no half-precision LSTM on such CPUs
        raise ParameterError("precision", "float16 needs a GPU or a CPU with AMX-FP16; "
                                          "on this CPU use bfloat16, int8 or fast")
    if name == "bfloat16" and device.type == "cpu" and not (cpu_features()["avx512_bf16"] or cpu_features()["amx"]):
        # measured on HT Demucs with AVX2 only: about 7x slower than float32
        log.warning("this CPU has no bfloat16 instructions: bfloat16 is emulated and slower than "
                    "float32; --precision fast picks int8 here")
    return name


def _fastest(device: torch.device) -> str:
    if device.type in ("cuda", "mps"):
        return "float16"
    feats = cpu_features()
    if feats["amx"] or feats["avx512_bf16"]:  # bfloat16 products in hardware
        return "bfloat16"
    if feats["int8_kernels"]:
        return "int8"
    return "float32"


def for_precision(model, precision: str):
    """The module to call for ``precision`` (already resolved): ``model`` itself, except for
    ``int8``, which returns a quantised copy (``model`` is not changed)."""
    if precision != "int8" or not isinstance(model, nn.Module):
        return model
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; its eager dynamic quantisation is
        # still what runs without extra packages or compilation
        warnings.simplefilter("ignore")
        from torch.ao.quantization import (default_dynamic_qconfig, per_channel_dynamic_qconfig,
                                           quantize_dynamic)

        # per output channel scales for the linear weights (one scale per tensor loses the small
        # rows next to the large ones); the model's float32-only parts are left out
        keep = tuple(getattr(model, "int8_float_modules", ()))
        spec = {name: per_channel_dynamic_qconfig if isinstance(mod, nn.Linear) else default_dynamic_qconfig
                for name, mod in model.named_modules()
                if isinstance(mod, tuple(_INT8_MODULES)) and name
                and not any(name == k or name.startswith(k + ".") for k in keep)}
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=False)


def autocast(precision: str, device: torch.device):
    """The context the model call runs in for ``precision`` (already resolved)."""
    dtype = _AUTOCAST.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
