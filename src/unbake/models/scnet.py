"""SCNet (sparse compression network, Tong et al. 2024) with the parameter layout of the
starrytong / MSST checkpoints.

Axes: ``b`` batch, ``c`` audio channels, ``t`` samples, ``s`` stems, ``f`` STFT bins,
``n`` frames, ``ch`` feature channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ChannelLayoutError, ConfigError
from ._roformer_blocks import COMMON_OPTIONS, split_kwargs

# Reference constructor kwargs (``SCNet`` of MSST / starrytong) and their defaults.
REFERENCE_KWARGS: dict[str, Any] = {
    "sources": ("drums", "bass", "other", "vocals"), "audio_channels": 2,
    "dims": (4, 32, 64, 128), "nfft": 4096, "hop_size": 1024, "win_size": 4096,
    "normalized": True, "band_SR": (0.175, 0.392, 0.433), "band_stride": (1, 4, 16),
    "band_kernel": (3, 4, 16), "conv_depths": (3, 2, 1), "compress": 4, "conv_kernel": 3,
    "num_dplayer": 6, "expand": 1,
}
# ``normalize_spectrum``: standardise the STFT features per item inside ``forward`` and undo it
# on the output (starrytong's code since 2024-09); False is the MSST class the checkpoints run in.
OPTIONS = (*COMMON_OPTIONS, "normalize_spectrum")


@dataclass(frozen=True)
class SCNetConfig:
    """Everything that defines an SCNet; ``sources`` are the output stem names."""

    sources: tuple[str, ...] = ("drums", "bass", "other", "vocals")
    audio_channels: int = 2
    dims: tuple[int, ...] = (4, 32, 64, 128)
    nfft: int = 4096
    hop_size: int = 1024
    win_size: int = 4096
    normalized: bool = True
    band_SR: tuple[float, float, float] = (0.175, 0.392, 0.433)
    band_stride: tuple[int, int, int] = (1, 4, 16)
    band_kernel: tuple[int, int, int] = (3, 4, 16)
    conv_depths: tuple[int, int, int] = (3, 2, 1)
    compress: int = 4
    conv_kernel: int = 3
    num_dplayer: int = 6
    expand: int = 1
    normalize_spectrum: bool = False
    samplerate: int = 44100
    segment_samples: int | None = None
    track_normalize: bool = False


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x.sigmoid()


class ConvolutionModule(nn.Module):
    """Residual stack of (GroupNorm, conv, GLU, depthwise conv, GroupNorm, Swish, 1x1 conv)
    along time. ``(B, ch, n) -> (B, ch, n)``."""

    def __init__(self, channels: int, depth: int, compress: int, kernel: int):
        super().__init__()
        if kernel % 2 != 1:
            raise ConfigError(f"scnet: conv_kernel must be odd, got {kernel}")
        hidden = int(channels / compress)
        pad = kernel // 2
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.GroupNorm(1, channels),
                nn.Conv1d(channels, hidden * 2, kernel, padding=pad),
                nn.GLU(1),
                nn.Conv1d(hidden, hidden, kernel, padding=pad, groups=hidden),
                nn.GroupNorm(1, hidden),
                Swish(),
                nn.Conv1d(hidden, channels, 1),
            )
            for _ in range(abs(depth))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return x


@dataclass(frozen=True)
class _Band:
    """One band at one encoder level: input bin range, padding, conv geometry, output size."""

    start: int
    stop: int
    pad_left: int
    pad_right: int
    kernel: int
    stride: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def out_length(self) -> int:
        return (self.length + self.pad_left + self.pad_right - self.kernel) // self.stride + 1


def band_layout(n_bins: int, band_sr: tuple[float, ...], strides: tuple[int, ...],
                kernels: tuple[int, ...]) -> tuple[_Band, _Band, _Band]:
    """Low/mid/high bands of an ``n_bins``-bin input as the reference splits them (float
    ``ceil`` of the proportions; stride-1 bands padded by ``kernel - 1``, strided bands padded up
    to a multiple of the stride, left half rounded down)."""
    a = math.ceil(n_bins * band_sr[0])
    b = math.ceil(n_bins * (band_sr[0] + band_sr[1]))
    bands = []
    for (start, stop), stride, kernel in zip(((0, a), (a, b), (b, n_bins)), strides, kernels):
        length = stop - start
        total = kernel - stride if stride == 1 else (stride - length % stride) % stride
        bands.append(_Band(start, stop, total // 2, total - total // 2, kernel, stride))
    return tuple(bands)  # type: ignore[return-value]


class SDLayer(nn.Module):
    """Sparse down-sampling: one strided conv over frequency per band.
    ``(b, ch_in, f, n) -> [(b, ch_out, f_band, n)] * 3``."""

    def __init__(self, channels_in: int, channels_out: int, bands: tuple[_Band, ...]):
        super().__init__()
        self.bands = bands
        self.convs = nn.ModuleList(
            nn.Conv2d(channels_in, channels_out, (bd.kernel, 1), (bd.stride, 1)) for bd in bands
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [conv(F.pad(x[:, :, bd.start:bd.stop], (0, 0, bd.pad_left, bd.pad_right)))
                for conv, bd in zip(self.convs, self.bands)]


class SDBlock(nn.Module):
    """Encoder level: SD layer, per-band convolution modules along time, GELU, then a 3x3
    conv over the re-joined bands. ``(b, ch_in, f, n) -> (out, skip)``, both ``(b, ch_out, f', n)``."""

    def __init__(self, channels_in: int, channels_out: int, bands: tuple[_Band, ...],
                 depths: tuple[int, ...], compress: int, conv_kernel: int, kernel_size: int = 3):
        super().__init__()
        self.SDlayer = SDLayer(channels_in, channels_out, bands)
        self.conv_modules = nn.ModuleList(
            ConvolutionModule(channels_out, d, compress, conv_kernel) for d in depths
        )
        self.globalconv = nn.Conv2d(channels_out, channels_out, kernel_size, 1, (kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = []
        for conv, band in zip(self.conv_modules, self.SDlayer(x)):
            b, ch, f, n = band.shape
            y = conv(band.permute(0, 2, 1, 3).reshape(b * f, ch, n))
            outs.append(F.gelu(y.view(b, f, ch, n).permute(0, 2, 1, 3)))
        skip = torch.cat(outs, dim=2)
        return self.globalconv(skip), skip


class FusionLayer(nn.Module):
    """Adds the skip, then a 3x3 conv with GLU. ``(b, ch, f, n) -> (b, ch, f, n)``."""

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(channels * 2, channels * 2, kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = x + skip
        # The reference convolves [x; x] (input repeated on channels); summing the two halves of
        # the weight gives the same result with half the work.
        c = x.shape[1]
        w = self.conv.weight[:, :c] + self.conv.weight[:, c:]
        x = F.conv2d(x, w, self.conv.bias, stride=self.conv.stride, padding=self.conv.padding)
        return F.glu(x, dim=1)


class SULayer(nn.Module):
    """Sparse up-sampling: one transposed conv per band, trimmed symmetrically back to the
    encoder's input band lengths. ``(b, ch_in, f', n) -> (b, ch_out, f, n)``."""

    def __init__(self, channels_in: int, channels_out: int, bands: tuple[_Band, ...]):
        super().__init__()
        self.bands = bands
        self.convtrs = nn.ModuleList(
            nn.ConvTranspose2d(channels_in, channels_out, (bd.kernel, 1), (bd.stride, 1)) for bd in bands
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.split([bd.out_length for bd in self.bands], dim=2)
        outs = []
        for convtr, bd, part in zip(self.convtrs, self.bands, parts):
            y = convtr(part)
            start = abs(bd.length - y.shape[2]) // 2
            outs.append(y[:, :, start:start + bd.length])
        return torch.cat(outs, dim=2)


class DualPathRNN(nn.Module):
    """GroupNorm → BiLSTM over frequency → Linear → residual, then the same over time.
    ``(b, ch, f, n) -> (b, ch, f, n)``."""

    def __init__(self, d_model: int, expand: int):
        super().__init__()
        hidden = d_model * expand
        self.lstm_layers = nn.ModuleList(
            nn.LSTM(d_model, hidden, num_layers=1, bidirectional=True, batch_first=True) for _ in range(2)
        )
        self.linear_layers = nn.ModuleList(nn.Linear(hidden * 2, d_model) for _ in range(2))
        self.norm_layers = nn.ModuleList(nn.GroupNorm(1, d_model) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, f, n = x.shape
        y = self.norm_layers[0](x).permute(0, 3, 2, 1).reshape(b * n, f, ch)
        y = self.linear_layers[0](self.lstm_layers[0](y)[0])
        x = x + y.view(b, n, f, ch).permute(0, 3, 2, 1)
        y = self.norm_layers[1](x).permute(0, 2, 3, 1).reshape(b * f, n, ch)
        y = self.linear_layers[1](self.lstm_layers[1](y)[0])
        return x + y.view(b, f, n, ch).permute(0, 3, 1, 2)


class SeparationNet(nn.Module):
    """Dual-path layers alternating between the frame domain and its Fourier transform over time:
    even layers are followed by an rfft (``[real; imag]`` on channels), odd ones by the irfft."""

    def __init__(self, channels: int, expand: int, num_layers: int):
        super().__init__()
        self.dp_modules = nn.ModuleList(
            DualPathRNN(channels * (2 if i % 2 == 1 else 1), expand) for i in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, dp in enumerate(self.dp_modules):
            x = dp(x).float()
            if i % 2 == 0:
                z = torch.fft.rfft(x, dim=3, norm="ortho")
                x = torch.cat([z.real, z.imag], dim=1)
            else:
                half = x.shape[1] // 2
                x = torch.fft.irfft(torch.complex(x[:, :half], x[:, half:]), dim=3, norm="ortho")
        return x


class SCNet(nn.Module):
    """``(b, c, t) -> (b, s, c, t)``: complex STFT as real channels, an encoder of sparse
    band-wise down-sampling blocks, the dual-path separation net, a mirrored decoder, iSTFT.

    The input is right-padded so that the STFT has an even number of frames (the separation
    net's rfft/irfft pair over frames needs it) and the pad is cut off the output.
    """

    def __init__(self, config: SCNetConfig):
        super().__init__()
        cfg = config
        self.config = cfg
        if not (len(cfg.band_SR) == len(cfg.band_stride) == len(cfg.band_kernel) == len(cfg.conv_depths) == 3):
            raise ConfigError("scnet: band_SR, band_stride, band_kernel and conv_depths need 3 values each")
        if cfg.dims[0] != 2 * cfg.audio_channels:
            raise ConfigError(f"scnet: dims[0] must be 2 x audio_channels = {2 * cfg.audio_channels}, "
                              f"got {cfg.dims[0]}")
        self.sources = tuple(cfg.sources)
        self.target_instrument = None
        self.samplerate = int(cfg.samplerate)
        self.audio_channels = int(cfg.audio_channels)
        self.segment_samples = cfg.segment_samples or 485100
        self.max_segment_samples = None
        self.track_normalize = bool(cfg.track_normalize)

        levels = []
        n_bins = cfg.nfft // 2 + 1
        for _ in range(len(cfg.dims) - 1):
            bands = band_layout(n_bins, cfg.band_SR, cfg.band_stride, cfg.band_kernel)
            levels.append(bands)
            n_bins = sum(bd.out_length for bd in bands)

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i, bands in enumerate(levels):
            self.encoder.append(SDBlock(cfg.dims[i], cfg.dims[i + 1], bands, cfg.conv_depths,
                                        cfg.compress, cfg.conv_kernel))
            out_ch = cfg.dims[i] if i != 0 else cfg.dims[i] * len(cfg.sources)
            # decoder[0] is the deepest level, as in the checkpoints
            self.decoder.insert(0, nn.Sequential(FusionLayer(cfg.dims[i + 1]),
                                                 SULayer(cfg.dims[i + 1], out_ch, bands)))
        self.separation_net = SeparationNet(cfg.dims[-1], cfg.expand, cfg.num_dplayer)
        self.register_buffer("window", torch.ones(cfg.win_size), persistent=False)

    def _stft_kwargs(self, dtype: torch.dtype) -> dict:
        cfg = self.config
        # the reference passes no window: torch then uses a rectangular one
        return dict(n_fft=cfg.nfft, hop_length=cfg.hop_size, win_length=cfg.win_size,
                    window=self.window.to(dtype), center=True, normalized=cfg.normalized)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix`` ``(b, c, t)`` -> stems ``(b, s, c, t)``."""
        if mix.ndim != 3 or mix.shape[1] != self.audio_channels:
            raise ChannelLayoutError(f"scnet expects (batch, {self.audio_channels}, time), got {tuple(mix.shape)}")
        cfg = self.config
        b, c, t = mix.shape
        hop = cfg.hop_size
        pad = hop - t % hop
        if (t + pad) // hop % 2 == 0:
            pad += hop
        x = F.pad(mix, (0, pad))
        stft = self._stft_kwargs(mix.dtype)
        spec = torch.view_as_real(torch.stft(x.reshape(b * c, -1), return_complex=True, **stft))
        f, n = spec.shape[1], spec.shape[2]
        # channels ordered [c0 re, c0 im, c1 re, c1 im]
        x = spec.permute(0, 3, 1, 2).reshape(b, c * 2, f, n)
        if cfg.normalize_spectrum:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) / (1e-5 + std)

        skips = []
        for block in self.encoder:
            x, skip = block(x)
            skips.append(skip)
        x = self.separation_net(x)
        for (fusion, su), skip in zip(self.decoder, reversed(skips)):
            x = su(fusion(x, skip))

        if cfg.normalize_spectrum:
            x = x * std + mean
        # output channels ordered [stem][audio channel][re, im]
        x = x.reshape(b * len(self.sources) * c, 2, f, n).permute(0, 2, 3, 1).contiguous()
        audio = torch.istft(torch.view_as_complex(x.float()), **stft)  # float32 whatever the autocast
        return audio.view(b, len(self.sources), c, -1)[..., :t]


def from_reference_kwargs(kwargs: dict) -> SCNet:
    """Build from the SCNet ``model:`` kwargs (lists or tuples) plus our options
    ``normalize_spectrum`` (default False: the MSST class), ``samplerate``,
    ``segment_samples`` and ``track_normalize``."""
    ref, opts = split_kwargs(kwargs, "scnet", REFERENCE_KWARGS, OPTIONS)
    cfg = SCNetConfig(
        sources=tuple(str(s) for s in ref["sources"]), audio_channels=int(ref["audio_channels"]),
        dims=tuple(int(d) for d in ref["dims"]), nfft=int(ref["nfft"]), hop_size=int(ref["hop_size"]),
        win_size=int(ref["win_size"]), normalized=bool(ref["normalized"]),
        band_SR=tuple(float(v) for v in ref["band_SR"]),  # type: ignore[arg-type]
        band_stride=tuple(int(v) for v in ref["band_stride"]),  # type: ignore[arg-type]
        band_kernel=tuple(int(v) for v in ref["band_kernel"]),  # type: ignore[arg-type]
        conv_depths=tuple(int(v) for v in ref["conv_depths"]),  # type: ignore[arg-type]
        compress=int(ref["compress"]), conv_kernel=int(ref["conv_kernel"]),
        num_dplayer=int(ref["num_dplayer"]), expand=int(ref["expand"]),
        normalize_spectrum=bool(opts.get("normalize_spectrum", False)),
        samplerate=int(opts.get("samplerate", 44100)),
        segment_samples=int(opts["segment_samples"]) if "segment_samples" in opts else None,
        track_normalize=bool(opts.get("track_normalize", False)),
    )
    return SCNet(cfg)
