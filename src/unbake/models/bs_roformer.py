"""BS-RoFormer (band-split RoFormer, Lu et al. 2023) with the parameter layout of the community
(MSST / viperx) checkpoints.

Axes: ``b`` batch, ``c`` audio channels, ``t`` samples, ``s`` stems, ``f`` STFT bins,
``n`` frames, ``k`` bands, ``d`` features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ChannelLayoutError, ConfigError
from ._roformer_blocks import (
    COMMON_OPTIONS, BandSplit, MaskEstimator, RMSNorm, build_layers, default_segment_samples,
    istft_from_merged, run_layers, split_kwargs, stem_names, stft_features,
)

DEFAULT_FREQS_PER_BANDS = (
    (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
)

# Reference constructor kwargs (MSST ``BSRoformer``) and their defaults; ``...`` = required.
# Training-only kwargs (dropouts, multi-resolution loss, checkpointing, attention kernels) are
# accepted so that any MSST config loads, and have no effect on inference.
REFERENCE_KWARGS: dict[str, Any] = {
    "dim": ..., "depth": ..., "stereo": False, "num_stems": 1,
    "time_transformer_depth": 2, "freq_transformer_depth": 2, "linear_transformer_depth": 0,
    "freqs_per_bands": DEFAULT_FREQS_PER_BANDS, "dim_head": 64, "heads": 8,
    "attn_dropout": 0.0, "ff_dropout": 0.0, "flash_attn": True, "dim_freqs_in": 1025,
    "stft_n_fft": 2048, "stft_hop_length": 512, "stft_win_length": 2048, "stft_normalized": False,
    "stft_window_fn": None, "mask_estimator_depth": 2, "multi_stft_resolution_loss_weight": 1.0,
    "multi_stft_resolutions_window_sizes": (4096, 2048, 1024, 512, 256),
    "multi_stft_hop_size": 147, "multi_stft_normalized": False, "multi_stft_window_fn": None,
    "mlp_expansion_factor": 4, "use_torch_checkpoint": False, "skip_connection": False,
    "sage_attention": False,
    # MSST HEAD's default is True; the public checkpoints were trained without zeroing the DC
    # bin, so unless a config asks for it we do not zero it.
    "zero_dc": False,
}


@dataclass(frozen=True)
class BSRoformerConfig:
    """Everything that defines a BS-RoFormer; ``sources`` are the output stem names."""

    dim: int
    depth: int
    stereo: bool = False
    num_stems: int = 1
    time_transformer_depth: int = 2
    freq_transformer_depth: int = 2
    linear_transformer_depth: int = 0
    freqs_per_bands: tuple[int, ...] = DEFAULT_FREQS_PER_BANDS
    dim_head: int = 64
    heads: int = 8
    stft_n_fft: int = 2048
    stft_hop_length: int = 512
    stft_win_length: int = 2048
    stft_normalized: bool = False
    mask_estimator_depth: int = 2
    mlp_expansion_factor: int = 4
    skip_connection: bool = False
    zero_dc: bool = False
    sources: tuple[str, ...] = ("stem0",)
    target_instrument: str | None = None
    samplerate: int = 44100
    segment_samples: int | None = None
    track_normalize: bool = False


class BSRoformer(nn.Module):
    """``(b, c, t) -> (b, s, c, t)``: STFT, band split, axial transformers, one complex mask per
    stem, iSTFT back to exactly ``t`` samples. The stem axis is kept for one stem."""

    def __init__(self, config: BSRoformerConfig):
        super().__init__()
        cfg = config
        self.config = cfg
        n_bins = cfg.stft_n_fft // 2 + 1
        if sum(cfg.freqs_per_bands) != n_bins:
            raise ConfigError(f"bs_roformer: freqs_per_bands sum to {sum(cfg.freqs_per_bands)}, "
                              f"the STFT (n_fft {cfg.stft_n_fft}) has {n_bins} bins")
        if len(cfg.sources) != cfg.num_stems:
            raise ConfigError(f"bs_roformer: {len(cfg.sources)} source names for {cfg.num_stems} stems")
        self.sources = tuple(cfg.sources)
        self.target_instrument = cfg.target_instrument
        self.samplerate = int(cfg.samplerate)
        self.audio_channels = 2 if cfg.stereo else 1
        self.segment_samples = cfg.segment_samples or default_segment_samples(self.samplerate,
                                                                              cfg.stft_hop_length)
        self.max_segment_samples = None
        self.track_normalize = bool(cfg.track_normalize)

        # BS-RoFormer's transformers have no output norm; one final norm follows the stack
        self.layers = build_layers(
            dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, dim_head=cfg.dim_head,
            time_transformer_depth=cfg.time_transformer_depth,
            freq_transformer_depth=cfg.freq_transformer_depth,
            linear_transformer_depth=cfg.linear_transformer_depth, norm_output=False,
        )
        self.final_norm = RMSNorm(cfg.dim)
        dim_inputs = tuple(2 * f * self.audio_channels for f in cfg.freqs_per_bands)
        self.band_split = BandSplit(cfg.dim, dim_inputs)
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(cfg.dim, dim_inputs, num_linear=cfg.mask_estimator_depth,
                          mlp_expansion_factor=cfg.mlp_expansion_factor)
            for _ in range(cfg.num_stems)
        )
        self.register_buffer("window", torch.hann_window(cfg.stft_win_length), persistent=False)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix`` ``(b, c, t)`` -> stems ``(b, s, c, t)``."""
        if mix.ndim != 3 or mix.shape[1] != self.audio_channels:
            raise ChannelLayoutError(f"bs_roformer expects (batch, {self.audio_channels}, time), "
                                     f"got {tuple(mix.shape)}")
        cfg = self.config
        b, c, t = mix.shape
        stft = dict(n_fft=cfg.stft_n_fft, hop=cfg.stft_hop_length, win_length=cfg.stft_win_length,
                    normalized=cfg.stft_normalized, window=self.window.to(mix.dtype))
        spec = stft_features(mix, **stft)  # (b, f·c, n, 2)
        fc, frames = spec.shape[1], spec.shape[2]
        x = spec.transpose(1, 2).reshape(b, frames, fc * 2)
        x = self.band_split(x)
        x = run_layers(self.layers, x, cfg.skip_connection)
        x = self.final_norm(x)
        masks = torch.stack([est(x) for est in self.mask_estimators], dim=1)  # (b, s, n, f·c·2)
        masks = masks.view(b, -1, frames, fc, 2).transpose(2, 3).contiguous()
        out = torch.view_as_complex(spec.contiguous()).unsqueeze(1) * torch.view_as_complex(masks)
        return istft_from_merged(out, c, length=t, zero_dc=cfg.zero_dc, **stft)


def from_reference_kwargs(kwargs: dict) -> BSRoformer:
    """Build from the MSST ``model:`` kwargs (lists or tuples) plus our options
    ``instruments``, ``target_instrument``, ``samplerate``, ``segment_samples``,
    ``track_normalize`` and ``zero_dc`` (default False)."""
    ref, opts = split_kwargs(kwargs, "bs_roformer", REFERENCE_KWARGS, COMMON_OPTIONS)
    if ref["stft_window_fn"] is not None or ref["multi_stft_window_fn"] is not None:
        raise ConfigError("bs_roformer: custom window functions cannot come from a config file")
    sources, target = stem_names("bs_roformer", int(ref["num_stems"]), opts)
    cfg = BSRoformerConfig(
        dim=int(ref["dim"]), depth=int(ref["depth"]), stereo=bool(ref["stereo"]),
        num_stems=int(ref["num_stems"]),
        time_transformer_depth=int(ref["time_transformer_depth"]),
        freq_transformer_depth=int(ref["freq_transformer_depth"]),
        linear_transformer_depth=int(ref["linear_transformer_depth"]),
        freqs_per_bands=tuple(int(f) for f in ref["freqs_per_bands"]),
        dim_head=int(ref["dim_head"]), heads=int(ref["heads"]),
        stft_n_fft=int(ref["stft_n_fft"]), stft_hop_length=int(ref["stft_hop_length"]),
        stft_win_length=int(ref["stft_win_length"]), stft_normalized=bool(ref["stft_normalized"]),
        mask_estimator_depth=int(ref["mask_estimator_depth"]),
        mlp_expansion_factor=int(ref["mlp_expansion_factor"]),
        skip_connection=bool(ref["skip_connection"]), zero_dc=bool(ref["zero_dc"]),
        sources=sources, target_instrument=target,
        samplerate=int(opts.get("samplerate", 44100)),
        segment_samples=int(opts["segment_samples"]) if "segment_samples" in opts else None,
        track_normalize=bool(opts.get("track_normalize", False)),
    )
    return BSRoformer(cfg)
