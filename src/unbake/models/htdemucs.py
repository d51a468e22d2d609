"""Hybrid Transformer Demucs (Demucs v4): a spectrogram U-Net and a waveform U-Net joined at the
bottom by a cross-domain transformer. Loads the official ``htdemucs*`` checkpoints unchanged.

Contract: ``(b, c, t) -> (b, s, c, t)`` with ``t <= segment_samples`` (the model pads shorter
inputs to its training length internally, so its statistics see that padding, as trained).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ._demucs_blocks import CrossTransformerEncoder, HybridDemucsBase, check_reference_kwargs, parse_segment

# every argument of the reference constructor, so that checkpoint kwargs are checked by name
REFERENCE_KWARGS = frozenset({
    "sources", "audio_channels", "channels", "channels_time", "growth", "nfft", "wiener_iters",
    "end_iters", "wiener_residual", "cac", "depth", "rewrite", "multi_freqs", "multi_freqs_depth",
    "freq_emb", "emb_scale", "emb_smooth", "kernel_size", "time_stride", "stride", "context",
    "context_enc", "norm_starts", "norm_groups", "dconv_mode", "dconv_depth", "dconv_comp",
    "dconv_init", "bottom_channels", "t_layers", "t_emb", "t_hidden_scale", "t_heads",
    "t_dropout", "t_max_positions", "t_norm_in", "t_norm_in_group", "t_group_norm",
    "t_norm_first", "t_norm_out", "t_max_period", "t_weight_decay", "t_lr", "t_layer_scale",
    "t_gelu", "t_weight_pos_embed", "t_sin_random_shift", "t_cape_mean_normalize",
    "t_cape_augment", "t_cape_glob_loc_scale", "t_sparse_self_attn", "t_sparse_cross_attn",
    "t_mask_type", "t_mask_random_seed", "t_sparse_attn_window", "t_global_window",
    "t_sparsity", "t_auto_sparsity", "t_cross_first", "rescale", "samplerate", "segment",
    "use_train_segment",
})

# arguments with no effect on inference: initialisation, optimiser settings, dropout, options
# of code paths that are switched off (sparse attention, CAPE/learned position embeddings), and
# the random position shift, a training augmentation
_INFERENCE_IRRELEVANT = frozenset({
    "wiener_iters", "end_iters", "wiener_residual", "multi_freqs_depth", "emb_smooth",
    "dconv_init", "t_dropout", "t_max_positions", "t_weight_decay", "t_lr",
    "t_sin_random_shift", "t_cape_mean_normalize", "t_cape_augment", "t_cape_glob_loc_scale",
    "t_mask_type", "t_mask_random_seed", "t_sparse_attn_window", "t_global_window",
    "t_sparsity", "t_auto_sparsity", "rescale",
})

_UNSUPPORTED = {
    "cac": lambda v: not v,  # magnitude masking / Wiener filtering
    "multi_freqs": bool,
    "t_emb": lambda v: v != "sin",
    "t_sparse_self_attn": bool,
    "t_sparse_cross_attn": bool,
}


class HTDemucs(HybridDemucsBase):
    """HT Demucs. Attributes follow :class:`unbake.models.base.SeparationModel`; ``segment``
    keeps the reference value (a Fraction of seconds for the official models)."""

    def __init__(self, sources: tuple[str, ...] | list[str], *, audio_channels: int = 2,
                 channels: int = 48, channels_time: int | None = None, growth: float = 2,
                 nfft: int = 4096, depth: int = 4, rewrite: bool = True, freq_emb: float = 0.2,
                 emb_scale: float = 10, kernel_size: int = 8, time_stride: int = 2,
                 stride: int = 4, context: int = 1, context_enc: int = 0, norm_starts: int = 4,
                 norm_groups: int = 4, dconv_mode: int = 1, dconv_depth: int = 2,
                 dconv_comp: float = 8, dconv_init: float = 1e-3, bottom_channels: int = 0,
                 t_layers: int = 5, t_hidden_scale: float = 4.0, t_heads: int = 8,
                 t_norm_in: bool = True, t_norm_in_group: int | bool = False,
                 t_group_norm: int | bool = False, t_norm_first: bool = True,
                 t_norm_out: int | bool = True, t_max_period: float = 10000.0,
                 t_layer_scale: bool = True, t_gelu: bool = True, t_weight_pos_embed: float = 1.0,
                 t_cross_first: bool = False, samplerate: int = 44100,
                 segment: Fraction | int | float | str = Fraction(39, 5),
                 use_train_segment: bool = True) -> None:
        super().__init__()
        if nfft % 4:
            raise ModelError(f"nfft must be a multiple of 4, got {nfft}")
        self.sources = tuple(sources)
        self.audio_channels = int(audio_channels)
        self.samplerate = int(samplerate)
        self.segment = parse_segment(segment)
        self.use_train_segment = bool(use_train_segment)
        self.bottom_channels = bottom_channels
        # int() of the exact product, as the reference computes its training length
        self.segment_samples = int(self.segment * self.samplerate)
        self.max_segment_samples = self.segment_samples if self.use_train_segment else None

        self._build_unet(
            audio_channels=self.audio_channels, n_sources=len(self.sources), channels=channels,
            channels_time=channels_time, growth=growth, nfft=nfft, depth=depth, rewrite=rewrite,
            freq_emb=freq_emb, emb_scale=emb_scale, kernel_size=kernel_size,
            time_stride=time_stride, stride=stride, context=context, context_enc=context_enc,
            norm_starts=norm_starts, norm_groups=norm_groups, dconv_mode=dconv_mode,
            dconv_depth=dconv_depth, dconv_comp=dconv_comp, dconv_init=dconv_init,
            dconv_attn=depth + 1, dconv_lstm=depth + 1, dconv_extra=False)

        transformer_channels = int(channels * growth ** (depth - 1))
        if bottom_channels:
            self.channel_upsampler = nn.Conv1d(transformer_channels, bottom_channels, 1)
            self.channel_downsampler = nn.Conv1d(bottom_channels, transformer_channels, 1)
            self.channel_upsampler_t = nn.Conv1d(transformer_channels, bottom_channels, 1)
            self.channel_downsampler_t = nn.Conv1d(bottom_channels, transformer_channels, 1)
            transformer_channels = bottom_channels
        self.crosstransformer = None
        if t_layers > 0:
            self.crosstransformer = CrossTransformerEncoder(
                transformer_channels, hidden_scale=t_hidden_scale, num_heads=t_heads,
                num_layers=t_layers, cross_first=t_cross_first, norm_in=t_norm_in,
                norm_in_group=t_norm_in_group, group_norm=t_group_norm, norm_first=t_norm_first,
                norm_out=t_norm_out, max_period=t_max_period, layer_scale=t_layer_scale,
                gelu=t_gelu, weight_pos_embed=t_weight_pos_embed)

    def _bottom(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-domain transformer between ``x (b, c, f, t1)`` and ``xt (b, c, t2)``."""
        if self.crosstransformer is None:
            return x, xt
        if self.bottom_channels:
            b, c, f, t = x.shape
            x = self.channel_upsampler(x.reshape(b, c, f * t)).view(b, -1, f, t)
            xt = self.channel_upsampler_t(xt)
        x, xt = self.crosstransformer(x, xt)
        if self.bottom_channels:
            b, c, f, t = x.shape
            x = self.channel_downsampler(x.reshape(b, c, f * t)).view(b, -1, f, t)
            xt = self.channel_downsampler_t(xt)
        return x, xt

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``(b, c, t) -> (b, s, c, t)``; ``t`` at most :attr:`max_segment_samples`."""
        self._check_input(mix)
        return self.graph_outputs(self.graph_core(*self.graph_inputs(mix)), mix.shape[-1])

    # The three parts of ``forward`` for graph runtimes (unbake.engine.backend): the STFT and
    # iSTFT (complex tensors, which graph exporters do not take) stay in PyTorch, the network
    # between them has fixed shapes when the model runs on its training segment.

    @property
    def graph_export(self) -> bool:
        """Whether :meth:`graph_core` sees the same shapes for every input (the padded
        training segment), so that a graph runtime can compile it once."""
        return self.use_train_segment

    def graph_inputs(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mix (b, c, t)`` -> the inputs of :meth:`graph_core`: the mix padded to the
        training segment ``(b, c, T)`` and its spectrogram as real channels."""
        length = mix.shape[-1]
        if self.use_train_segment:
            if length > self.segment_samples:
                raise ModelError(f"input of {length} samples is longer than this model's "
                                 f"segment of {self.segment_samples} samples; chunk it first")
            if length < self.segment_samples:
                # the model was trained on exactly this length: pad, then crop the result
                mix = torch.nn.functional.pad(mix, (0, self.segment_samples - length))
        return mix, self._spectral_in(mix)

    def graph_core(self, mix: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network between the spectral transforms (real tensors only)."""
        return self._unet(mix, spec, self._bottom)

    def graph_outputs(self, outputs: tuple[torch.Tensor, ...], length: int) -> torch.Tensor:
        """:meth:`graph_core`'s outputs -> the separation ``(b, s, c, length)``."""
        out = self._spectral_out(*outputs)
        return out[..., :length] if out.shape[-1] != length else out


def from_reference_kwargs(kwargs: dict[str, Any]) -> HTDemucs:
    """Build from the kwargs an official checkpoint stores (``segment`` may be a Fraction, a
    number or a string such as ``"39/5"``). Raises :class:`ModelError` for arguments this
    implementation does not support."""
    check_reference_kwargs("HTDemucs", kwargs, REFERENCE_KWARGS, _UNSUPPORTED)
    kw = {k: v for k, v in kwargs.items()
          if k not in _INFERENCE_IRRELEVANT and k not in _UNSUPPORTED}
    sources = kw.pop("sources")
    return HTDemucs(sources, **kw)
