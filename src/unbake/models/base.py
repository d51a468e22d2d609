"""The separation contract every architecture implements, and what the engine may ask of it.

Axes: ``b`` batch, ``c`` audio channels, ``t`` time samples, ``s`` stems.
A model maps ``(b, c, t)`` float32 at ``samplerate`` to ``(b, s, c, t)`` with the same ``t``;
it never drops the stem axis and never returns anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class SeparationModel(Protocol):
    """What the engine knows about a model. Architectures are ``torch.nn.Module`` subclasses
    that carry these attributes; nothing else about them is inspected.

    Attributes:
        sources: stem names in output order, length ``s``.
        samplerate: the rate (Hz) the model expects and returns.
        audio_channels: ``c`` the model expects (1 or 2).
        segment_samples: preferred chunk length in samples at ``samplerate``; ``None`` means the
            model takes a whole track in one call.
        max_segment_samples: hard upper limit of ``t`` for one call, or ``None``.
        track_normalize: when true, the caller standardises the whole track with the mean and
            standard deviation of its mono mix before separating, and undoes it afterwards
            (what the Demucs models were trained with).

    Optional: a model whose ``graph_export`` is true also offers ``graph_inputs(mix)``,
    ``graph_core(*inputs)`` and ``graph_outputs(outputs, length)``, its forward pass in three
    parts of which the middle one has real tensors and fixed shapes only; the engine can then run
    that part on a graph runtime (:mod:`unbake.engine.backend`). See :class:`~unbake.models.htdemucs.HTDemucs`.

    Optional: ``start_grown(new_keys)``, called by training after a larger configuration of a
    trained model (a block added) was loaded with the trained tensors; the parameters named in
    ``new_keys`` are the new ones, and the model sets them so that its output starts equal to the
    trained model's. See :class:`~unbake.models.masknet.MaskNet`.

    Optional: ``variable_length``, true when the model separates a window of any length as well
    as one of ``segment_samples``; the engine then never pads a window with silence past the
    track's ends (a short track is one window of its own length, the last window ends at the
    track's end: :func:`~unbake.engine.overlap_add.plan_chunks`'s ``inside``).

    Optional: ``int8_float_modules``, names of submodules that ``precision="int8"`` leaves in
    float32 (parts where quantisation error accumulates, e.g. a deep residual stack).
    """

    sources: tuple[str, ...]
    samplerate: int
    audio_channels: int
    segment_samples: int | None
    max_segment_samples: int | None
    track_normalize: bool

    def __call__(self, mix: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class ModelInfo:
    """Provenance that travels with a loaded model (not used by the engine)."""

    name: str
    architecture: str
    source: str = ""
    extra: dict = field(default_factory=dict)


def check_output(model: SeparationModel, mix: torch.Tensor, out: torch.Tensor) -> None:
    """Raise if ``out`` breaks the contract for ``mix`` (used by the engine and tests)."""
    b, c, t = mix.shape
    expected = (b, len(model.sources), c, t)
    if tuple(out.shape) != expected:
        from ..errors import ModelError

        raise ModelError(
            f"model returned shape {tuple(out.shape)}, expected (batch, stems, channels, time) = {expected}"
        )
