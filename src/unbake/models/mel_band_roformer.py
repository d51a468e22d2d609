"""Mel-Band RoFormer (Wang et al. 2023) with the parameter layout of the community (MSST /
Kimberley Jensen / viperx) checkpoints: overlapping mel-scale bands instead of BS-RoFormer's
contiguous ones.

Axes: ``b`` batch, ``c`` audio channels, ``t`` samples, ``s`` stems, ``f`` STFT bins,
``n`` frames, ``k`` bands, ``g`` gathered (band, bin, channel) entries, ``d`` features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..audio.features import mel_filterbank
from ..errors import ConfigError
from ._roformer_blocks import (
    COMMON_OPTIONS, BandSplit, MaskEstimator, RoformerBase, RoformerConfig, build_layers, config_kwargs,
    istft_from_merged, run_layers, split_kwargs, stft_features,
)

# Reference constructor kwargs (MSST ``MelBandRoformer``) and their defaults; ``...`` = required.
REFERENCE_KWARGS: dict[str, Any] = {
    "dim": ..., "depth": ..., "stereo": False, "num_stems": 1,
    "time_transformer_depth": 2, "freq_transformer_depth": 2, "linear_transformer_depth": 0,
    "num_bands": 60, "dim_head": 64, "heads": 8, "attn_dropout": 0.1, "ff_dropout": 0.1,
    "flash_attn": True, "dim_freqs_in": 1025, "sample_rate": 44100, "stft_n_fft": 2048,
    "stft_hop_length": 512, "stft_win_length": 2048, "stft_normalized": False,
    "stft_window_fn": None, "mask_estimator_depth": 1, "multi_stft_resolution_loss_weight": 1.0,
    "multi_stft_resolutions_window_sizes": (4096, 2048, 1024, 512, 256),
    "multi_stft_hop_size": 147, "multi_stft_normalized": False, "multi_stft_window_fn": None,
    "match_input_audio_length": False, "mlp_expansion_factor": 4, "use_torch_checkpoint": False,
    "skip_connection": False, "sage_attention": False,
    # see bs_roformer.REFERENCE_KWARGS: the public checkpoints were trained without DC zeroing
    "zero_dc": False,
}


# --- mel filterbank -------------------------------------------------------------------------------
# The band layout is fixed by librosa.filters.mel (Slaney scale, Slaney area normalisation), computed
# in numpy by unbake.audio.features (librosa is not needed at run time for a 60 x 1025 table).

def mel_band_masks(sample_rate_hz: float, n_fft: int, num_bands: int) -> np.ndarray:
    """``(k, f)`` bool: which STFT bins each band covers (nonzero filter weight).

    The first and last weights are forced on as in the reference: librosa gives -0.0 at
    ``[0, 0]`` and a ~1e-18 value at ``[-1, -1]`` that some platforms round to 0, and every bin
    must belong to some band.
    """
    fb = mel_filterbank(sample_rate_hz, n_fft, num_bands)
    fb[0, 0] = 1.0
    fb[-1, -1] = 1.0
    bands = fb > 0
    if not bands.any(axis=0).all():
        raise ConfigError(f"mel_band_roformer: {num_bands} mel bands leave some STFT bins uncovered")
    return bands


@dataclass(frozen=True)
class MelBandRoformerConfig(RoformerConfig):
    """A Mel-Band RoFormer: the shared RoFormer settings and its mel bands."""

    num_bands: int = 60
    mel_sample_rate: int = 44100
    mask_estimator_depth: int = 1


class MelBandRoformer(RoformerBase):
    """``(b, c, t) -> (b, s, c, t)``.

    Each band gathers the bins under one mel filter (neighbouring bands overlap); the mask values
    a bin receives from several bands are averaged. The reference's iSTFT returns
    ``hop · ⌊t / hop⌋`` samples; here the iSTFT is asked for exactly ``t`` samples instead (the
    reference's ``match_input_audio_length=True`` behaviour), which leaves the first
    ``hop · ⌊t / hop⌋`` samples unchanged and fills the tail from the same overlap-add.
    """

    arch = "mel_band_roformer"

    def __init__(self, config: MelBandRoformerConfig):
        super().__init__(config)
        cfg = config
        bands = mel_band_masks(cfg.mel_sample_rate, cfg.stft_n_fft, cfg.num_bands)  # (k, f)
        ch = self.audio_channels
        # index tables built in numpy: they are fixed by the config, and this keeps them valid
        # when the model is constructed under a `torch.device("meta")` context
        bin_idx = np.nonzero(bands)[1]  # band-major, bins ascending within a band
        # index into the merged (f c) axis: each bin's channels stay adjacent
        freq_indices = (bin_idx[:, None] * ch + np.arange(ch)).reshape(-1)
        bands_per_bin = bands.sum(axis=0).repeat(ch).astype(np.float32)  # (f·c,)
        self.register_buffer("freq_indices", torch.as_tensor(freq_indices, dtype=torch.long),
                             persistent=False)
        self.register_buffer("bands_per_bin", torch.as_tensor(bands_per_bin)[:, None], persistent=False)
        self.num_bins = bands.shape[1]
        dim_inputs = tuple(2 * int(f) * ch for f in bands.sum(axis=1).tolist())

        # Mel-Band RoFormer's transformers each end with an RMSNorm; there is no final norm
        self.layers = build_layers(
            dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, dim_head=cfg.dim_head,
            time_transformer_depth=cfg.time_transformer_depth,
            freq_transformer_depth=cfg.freq_transformer_depth,
            linear_transformer_depth=cfg.linear_transformer_depth, norm_output=True,
        )
        self.band_split = BandSplit(cfg.dim, dim_inputs)
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(cfg.dim, dim_inputs, num_linear=cfg.mask_estimator_depth + 1,
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
        if fc != self.num_bins * c:
            raise ConfigError(f"mel_band_roformer: STFT has {fc // c} bins, mel bands were built for "
                              f"{self.num_bins}")
        x = spec[:, self.freq_indices]  # (b, g, n, 2)
        g = x.shape[1]
        x = x.transpose(1, 2).reshape(b, frames, g * 2)
        x = self.band_split(x)
        x = run_layers(self.layers, x, cfg.skip_connection)
        masks = torch.stack([est(x) for est in self.mask_estimators], dim=1)  # (b, s, n, g·2)
        s = masks.shape[1]
        # float32 whatever the autocast made of the masks: complex numbers have no bfloat16
        masks = torch.view_as_complex(masks.float().view(b, s, frames, g, 2).transpose(2, 3).contiguous())
        summed = masks.new_zeros(b, s, fc, frames).index_add_(2, self.freq_indices, masks)
        mask = summed / self.bands_per_bin
        out = torch.view_as_complex(spec.contiguous()).unsqueeze(1) * mask
        return istft_from_merged(out, c, length=t, zero_dc=cfg.zero_dc, **stft)


def from_reference_kwargs(kwargs: dict) -> MelBandRoformer:
    """Build from the MSST ``model:`` kwargs (lists or tuples) plus our options
    ``instruments``, ``target_instrument``, ``samplerate``, ``segment_samples``,
    ``track_normalize`` and ``zero_dc`` (default False)."""
    ref, opts = split_kwargs(kwargs, "mel_band_roformer", REFERENCE_KWARGS, COMMON_OPTIONS)
    cfg = MelBandRoformerConfig(**config_kwargs("mel_band_roformer", ref, opts, samplerate=int(ref["sample_rate"])),
                                num_bands=int(ref["num_bands"]), mel_sample_rate=int(ref["sample_rate"]))
    return MelBandRoformer(cfg)
