"""The pre-ML baseline: mid/side. Vocals are usually panned to the centre, so the part common
to both channels approximates them and what is left is the accompaniment. Every learned model
must beat it."""

from __future__ import annotations

import torch
from torch import nn


class CenterExtraction(nn.Module):
    """``(b, 2, t) -> (b, 2, 2, t)``: stems ``vocals`` = mid in both channels, ``accompaniment``
    = mix − vocals (so the two stems always sum to the mix exactly). Mono input has no side
    information: everything goes to ``vocals`` then, which the facade warns about."""

    samplerate = 44100
    audio_channels = 2
    segment_samples = 44100 * 10
    max_segment_samples = None
    track_normalize = False

    def __init__(self, sources: tuple[str, ...] = ("vocals", "accompaniment")) -> None:
        super().__init__()
        if len(sources) != 2:
            raise ValueError("center extraction produces exactly two stems")
        self.sources = tuple(sources)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        mid = mix.mean(dim=1, keepdim=True).expand_as(mix)
        return torch.stack([mid, mix - mid], dim=1)


def from_reference_kwargs(kwargs: dict) -> CenterExtraction:
    return CenterExtraction(**kwargs)
