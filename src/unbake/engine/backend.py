"""Which runtime runs the model: PyTorch, or OpenVINO for models that can hand their network
to a graph runtime (``graph_export``; HT Demucs), on the CPU in float32 or bfloat16.

OpenVINO is the optional extra ``unbake[fast]``. ``auto`` (the default) uses it when it is
installed and the model, device and precision allow it, else PyTorch; ``torch`` forces PyTorch
(also through the environment variable ``UNBAKE_BACKEND``), ``openvino`` refuses to run
without it. The model splits its forward pass into ``graph_inputs`` (the STFT, in PyTorch),
``graph_core`` (the network, converted once) and ``graph_outputs`` (the iSTFT, in PyTorch).
The converted network is cached under ``cache_root()/openvino``, keyed by the weights, the
segment shape, the code and runtime versions; compiled blobs are cached there per precision.
Measured on full-size HT Demucs, float32 stays within 2e-5 of PyTorch relative to the peak.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
import weakref
from pathlib import Path

import torch
from torch import nn

from .._common import __version__, atomic_dir, cache_root
from ..errors import ParameterError

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "openvino")
ENV_BACKEND = "UNBAKE_BACKEND"
# precisions OpenVINO's CPU plug-in runs as asked; the others stay with PyTorch
_OV_PRECISION = {"float32": "f32", "bfloat16": "bf16"}
_INSTALL_HINT = "pip install 'unbake[fast]'"

_missing_logged = False
_compiled: dict[tuple, object] = {}  # (key, precision, threads) -> compiled model, per process
_keys: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]]" = weakref.WeakKeyDictionary()


def resolve_backend(backend: str | None) -> str:
    """``backend``, or ``$UNBAKE_BACKEND`` when it is None, or ``auto``; raises
    :class:`~unbake.errors.ParameterError` for an unknown name."""
    name = (backend or os.environ.get(ENV_BACKEND) or "auto").lower()
    if name not in BACKENDS:
        where = "backend" if backend else ENV_BACKEND
        raise ParameterError(where, f"must be one of {', '.join(BACKENDS)}, not {name!r}")
    return name


def _import_openvino():
    import openvino

    return openvino


def for_backend(model, precision: str, device: torch.device, backend: str | None = None):
    """The callable that runs ``model`` (already on ``device``, in eval mode) at ``precision``
    (resolved): ``model`` itself, or an OpenVINO runner with the same contract."""
    name = resolve_backend(backend)
    if name == "torch":
        return model
    why = None
    if not getattr(model, "graph_export", False):
        why = "this model does not export its network to a graph runtime"
    elif device.type != "cpu":
        why = f"OpenVINO runs on the CPU here, not on {device.type}"
    elif precision not in _OV_PRECISION:
        why = f"precision {precision} runs on PyTorch; OpenVINO takes {' or '.join(_OV_PRECISION)}"
    if why:
        if name == "openvino":
            raise ParameterError("backend", f"openvino: {why}")
        return model
    try:
        ov = _import_openvino()
    except ImportError:
        if name == "openvino":
            raise ParameterError("backend", f"openvino is not installed ({_INSTALL_HINT})") from None
        global _missing_logged
        if not _missing_logged:
            _missing_logged = True
            log.warning("OpenVINO is not installed: running %s on PyTorch (%s runs it faster on the CPU)",
                        type(model).__name__, _INSTALL_HINT)
        return model
    return OpenVinoRunner(model, _compile(ov, model, precision), precision)


class OpenVinoRunner:
    """Calls a compiled network between the model's own ``graph_inputs`` and
    ``graph_outputs``: ``(b, c, t) -> (b, s, c, t)`` like the model. One item at a time, as the
    network is compiled for a batch of one."""

    def __init__(self, model, compiled, precision: str) -> None:
        self.model = model
        self.compiled = compiled
        self.precision = precision
        self.request = compiled.create_infer_request()

    def __call__(self, mix: torch.Tensor) -> torch.Tensor:
        outs = []
        for item in mix:
            inputs = self.model.graph_inputs(item[None])
            result = self.request.infer([t.detach().cpu().float().numpy() for t in inputs])
            # the request reuses its output buffers: copy before the next call
            outputs = tuple(torch.from_numpy(result[o].copy()) for o in self.compiled.outputs)
            outs.append(self.model.graph_outputs(outputs, mix.shape[-1]))
        return torch.cat(outs)

    def __repr__(self) -> str:
        return f"OpenVinoRunner({type(self.model).__name__}, {self.precision})"


class _GraphCore(nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        return self.model.graph_core(*inputs)


def _example_inputs(model) -> tuple[torch.Tensor, ...]:
    length = getattr(model, "segment_samples", None) or model.max_segment_samples
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(1, model.audio_channels, length, generator=gen)
    return tuple(t.detach() for t in model.graph_inputs(mix))


def model_key(model, example: tuple[torch.Tensor, ...], ov_version: str) -> str:
    """What the converted network depends on: unbake's and OpenVINO's versions, the class, the
    input shapes and every weight (hashed; memoised while no tensor changes)."""
    tensors = list(model.state_dict().items())
    versions = tuple(t._version for _, t in tensors)
    memo = _keys.get(model)
    if memo is None or memo[0] != versions:
        digest = hashlib.sha256()
        for name, t in tensors:
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
        memo = (versions, digest.hexdigest())
        _keys[model] = memo
    shapes = ";".join(str(tuple(t.shape)) for t in example)
    head = f"{__version__}|{ov_version}|{type(model).__module__}.{type(model).__qualname__}|{shapes}|"
    return hashlib.sha256(head.encode() + memo[1].encode()).hexdigest()[:32]


def _compile(ov, model, precision: str):
    example = _example_inputs(model)
    key = model_key(model, example, ov.__version__)
    threads = torch.get_num_threads()
    compiled = _compiled.get((key, precision, threads))
    if compiled is not None:
        return compiled
    folder = cache_root() / "openvino" / key
    xml = folder / "model.xml"
    if not xml.is_file():
        convert(ov, model, example, folder)
    config = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[precision], "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_NUM_THREADS": threads, "CACHE_DIR": str(folder / f"compiled-{precision}")}
    compiled = ov.Core().compile_model(str(xml), "CPU", config)
    _compiled[(key, precision, threads)] = compiled
    return compiled


def convert(ov, model, example: tuple[torch.Tensor, ...], folder: Path) -> None:
    """Convert ``model.graph_core`` at the shapes of ``example`` and save it into ``folder``
    (written under a temporary name, then renamed)."""
    log.info("converting %s to OpenVINO (once; cached in %s)", type(model).__name__, folder)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # tracing warns about Python branches on shapes; the shapes are fixed by design
        warnings.simplefilter("ignore")
        example = tuple(t.clone() for t in example)
        graph = ov.convert_model(_GraphCore(model).eval(), example_input=example)
        graph.reshape({port: ov.PartialShape(list(t.shape)) for port, t in zip(graph.inputs, example)})
    with atomic_dir(folder) as tmp:
        ov.save_model(graph, str(tmp / "model.xml"), compress_to_fp16=False)
