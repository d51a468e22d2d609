"""Hybrid Demucs (Demucs v3): a spectrogram U-Net and a waveform U-Net that merge in the inner
layers, with BiLSTM and local attention in the innermost residual branches. Loads the official
``hdemucs_mmi`` checkpoint unchanged.

Contract: ``(b, c, t) -> (b, s, c, t)`` for any ``t``; ``segment_samples`` is the chunk length
the model was meant to be run on.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ModelError
from ._demucs_blocks import HybridDemucsBase, check_reference_kwargs, parse_segment

REFERENCE_KWARGS = frozenset({
    "sources", "audio_channels", "channels", "channels_time", "growth", "nfft", "wiener_iters",
    "end_iters", "wiener_residual", "cac", "depth", "rewrite", "hybrid", "hybrid_old",
    "multi_freqs", "multi_freqs_depth", "freq_emb", "emb_scale", "emb_smooth", "kernel_size",
    "time_stride", "stride", "context", "context_enc", "norm_starts", "norm_groups",
    "dconv_mode", "dconv_depth", "dconv_comp", "dconv_attn", "dconv_lstm", "dconv_init",
    "rescale", "samplerate", "segment",
})

# initialisation, and options of code paths that are switched off (Wiener filtering is only
# used without complex-as-channels, which is refused below)
_INFERENCE_IRRELEVANT = frozenset({
    "wiener_iters", "end_iters", "wiener_residual", "multi_freqs_depth", "emb_smooth",
    "dconv_init", "rescale",
})

_UNSUPPORTED = {
    "cac": lambda v: not v,  # magnitude masking / Wiener filtering
    "hybrid": lambda v: not v,  # spectrogram-only variant
    "hybrid_old": bool,  # the padding of some early MDX-challenge models
    "multi_freqs": bool,
}


class HDemucs(HybridDemucsBase):
    """Hybrid Demucs. Attributes follow :class:`unbake.models.base.SeparationModel`."""

    max_segment_samples = None

    def __init__(self, sources: tuple[str, ...] | list[str], *, audio_channels: int = 2,
                 channels: int = 48, channels_time: int | None = None, growth: float = 2,
                 nfft: int = 4096, depth: int = 6, rewrite: bool = True, freq_emb: float = 0.2,
                 emb_scale: float = 10, kernel_size: int = 8, time_stride: int = 2,
                 stride: int = 4, context: int = 1, context_enc: int = 0, norm_starts: int = 4,
                 norm_groups: int = 4, dconv_mode: int = 1, dconv_depth: int = 2,
                 dconv_comp: float = 4, dconv_attn: int = 4, dconv_lstm: int = 4,
                 dconv_init: float = 1e-4, samplerate: int = 44100,
                 segment: int | float | str = 40) -> None:
        super().__init__()
        if nfft % 4:
            raise ModelError(f"nfft must be a multiple of 4, got {nfft}")
        self.sources = tuple(sources)
        self.audio_channels = int(audio_channels)
        self.samplerate = int(samplerate)
        self.segment = parse_segment(segment)
        self.segment_samples = int(self.segment * self.samplerate)
        self._build_unet(
            audio_channels=self.audio_channels, n_sources=len(self.sources), channels=channels,
            channels_time=channels_time, growth=growth, nfft=nfft, depth=depth, rewrite=rewrite,
            freq_emb=freq_emb, emb_scale=emb_scale, kernel_size=kernel_size,
            time_stride=time_stride, stride=stride, context=context, context_enc=context_enc,
            norm_starts=norm_starts, norm_groups=norm_groups, dconv_mode=dconv_mode,
            dconv_depth=dconv_depth, dconv_comp=dconv_comp, dconv_init=dconv_init,
            dconv_attn=dconv_attn, dconv_lstm=dconv_lstm, dconv_extra=True)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``(b, c, t) -> (b, s, c, t)``."""
        self._check_input(mix)
        return self._run(mix, None)


def from_reference_kwargs(kwargs: dict[str, Any]) -> HDemucs:
    """Build from the kwargs an official checkpoint stores. Raises :class:`ModelError` for
    arguments this implementation does not support."""
    check_reference_kwargs("HDemucs", kwargs, REFERENCE_KWARGS, _UNSUPPORTED)
    kw = {k: v for k, v in kwargs.items()
          if k not in _INFERENCE_IRRELEVANT and k not in _UNSUPPORTED}
    sources = kw.pop("sources")
    return HDemucs(sources, **kw)
