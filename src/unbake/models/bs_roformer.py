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

from ..errors import ConfigError
from ._roformer_blocks import (
    COMMON_OPTIONS, BandSplit, MaskEstimator, RMSNorm, RoformerBase, RoformerConfig, build_layers, config_kwargs,
    istft_from_merged, run_layers, split_kwargs, stft_features,
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
class BSRoformerConfig(RoformerConfig):
    """A BS-RoFormer: the shared RoFormer settings and its bands (bins per band, low to high)."""

    freqs_per_bands: tuple[int, ...] = DEFAULT_FREQS_PER_BANDS


class BSRoformer(RoformerBase):
    """``(b, c, t) -> (b, s, c, t)``: STFT, band split, axial transformers, one complex mask per
    stem, iSTFT back to exactly ``t`` samples. The stem axis is kept for one stem."""

    arch = "bs_roformer"

    def __init__(self, config: BSRoformerConfig):
        super().__init__(config)
        cfg = config
        n_bins = cfg.stft_n_fft // 2 + 1
        if sum(cfg.freqs_per_bands) != n_bins:
            raise ConfigError(f"bs_roformer: freqs_per_bands sum to {sum(cfg.freqs_per_bands)}, "
                              f"the STFT (n_fft {cfg.stft_n_fft}) has {n_bins} bins")

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

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix`` ``(b, c, t)`` -> stems ``(b, s, c, t)``."""
        stft = self._stft_args(mix)
        cfg = self.config
        b, c, t = mix.shape
        spec = stft_features(mix, **stft)  # (b, f·c, n, 2)
        fc, frames = spec.shape[1], spec.shape[2]
        x = spec.transpose(1, 2).reshape(b, frames, fc * 2)
        x = self.band_split(x)
        x = run_layers(self.layers, x, cfg.skip_connection)
        x = self.final_norm(x)
        masks = torch.stack([est(x) for est in self.mask_estimators], dim=1)  # (b, s, n, f·c·2)
        masks = masks.view(b, -1, frames, fc, 2).transpose(2, 3).contiguous()
        # float32 whatever the autocast made of the masks: complex numbers have no bfloat16
        out = torch.view_as_complex(spec.contiguous()).unsqueeze(1) * torch.view_as_complex(masks.float())
        return istft_from_merged(out, c, length=t, zero_dc=cfg.zero_dc, **stft)


def from_reference_kwargs(kwargs: dict) -> BSRoformer:
    """Build from the MSST ``model:`` kwargs (lists or tuples) plus our options
    ``instruments``, ``target_instrument``, ``samplerate``, ``segment_samples``,
    ``track_normalize`` and ``zero_dc`` (default False)."""
    ref, opts = split_kwargs(kwargs, "bs_roformer", REFERENCE_KWARGS, COMMON_OPTIONS)
    cfg = BSRoformerConfig(**config_kwargs("bs_roformer", ref, opts),
                           freqs_per_bands=tuple(int(f) for f in ref["freqs_per_bands"]))
    return BSRoformer(cfg)
