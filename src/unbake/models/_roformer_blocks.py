"""Building blocks shared by BS-RoFormer and Mel-Band RoFormer.

Module and parameter names follow the community (MSST) checkpoints, so a state dict from
those files loads with ``strict=True``. Axes: ``b`` batch, ``n`` sequence (frames or bands),
``h`` heads, ``d`` features, ``k`` bands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """``x / ||x||₂ · √dim · gamma`` over the last axis.

    The checkpoints were trained with this L2-normalise form (eps 1e-12 inside
    ``F.normalize``), not with the mean-square-plus-eps form of ``torch.nn.RMSNorm``; the two
    differ for small inputs, so the reference form is kept.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the √dim scale is folded into the gain: one pass over x instead of two
        return F.normalize(x, dim=-1) * (self.gamma * self.scale)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding with the conventions of rotary-embedding-torch 0.3.5.

    Positions ``0..n-1`` in float32, angle ``pos · freq``, each frequency rotating one adjacent
    pair of features ``(d0, d1), (d2, d3), ...``. ``freqs`` is a non-trainable parameter (not a
    buffer) because the checkpoints store it under ``...rotary_embed.freqs``.
    """

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        # on the CPU even inside the loader's meta-device shape probe (as the STFT window)
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, device="cpu")[: dim // 2].float() / dim))
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    def rotation(self, seq_len: int, device: torch.device) -> torch.Tensor:
        """``(n, d/2)`` complex ``cos + i·sin`` of the angle of each (position, feature pair)."""
        pos = torch.arange(seq_len, device=device, dtype=self.freqs.dtype)
        ang = pos[:, None] * self.freqs[None, :]
        return torch.polar(torch.ones_like(ang), ang)

    @staticmethod
    def rotate(t: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
        """Rotate ``t`` ``(..., n, d)`` by :meth:`rotation`.

        Each pair ``(x0, x1)`` is treated as the complex number ``x0 + i·x1``: the product
        ``(x0·cos − x1·sin, x1·cos + x0·sin)`` is, operation for operation, the reference's
        ``t·cos + rotate_half(t)·sin``, without building the rotated copy.
        """
        pairs = torch.view_as_complex(t.float().unflatten(-1, (-1, 2)).contiguous())
        return torch.view_as_real(pairs * rotation).flatten(-2).to(t.dtype)


class Attention(nn.Module):
    """Pre-norm multi-head self-attention with rotary positions and a sigmoid gate per head.

    ``(b, n, d) -> (b, n, d)``.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, rotary_embed: RotaryEmbedding | None,
                 dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        dim_inner = heads * dim_head
        self.rotary_embed = rotary_embed
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, dim_inner * 3, bias=False)
        self.to_gates = nn.Linear(dim, heads)
        self.to_out = nn.Sequential(nn.Linear(dim_inner, dim, bias=False), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.norm(x)
        qkv = self.to_qkv(x).view(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.rotary_embed is not None:
            rotation = self.rotary_embed.rotation(n, x.device)
            q = RotaryEmbedding.rotate(q, rotation)
            k = RotaryEmbedding.rotate(k, rotation)
        # the fused kernel computes softmax(q·kᵀ/√d)·v like the reference einsum path
        # (measured difference ~4e-8) with less memory
        out = F.scaled_dot_product_attention(q, k, v)
        gates = self.to_gates(x).transpose(1, 2).unsqueeze(-1).sigmoid()  # (b, h, n, 1)
        out = (out * gates).transpose(1, 2).reshape(b, n, -1)
        return self.to_out(out)


class LinearAttention(nn.Module):
    """Cross-covariance attention (El-Nouby et al. 2021) over the feature axis, as the
    reference's optional ``linear_transformer_depth`` layers. ``(b, n, d) -> (b, n, d)``."""

    def __init__(self, dim: int, heads: int, dim_head: int, scale: float = 8.0):
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        self.scale = scale
        dim_inner = heads * dim_head
        self.norm = RMSNorm(dim)
        # index positions inside the Sequentials follow the checkpoints (to_qkv.0, to_out.1)
        self.to_qkv = nn.Sequential(nn.Linear(dim, dim_inner * 3, bias=False))
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.to_out = nn.Sequential(nn.Identity(), nn.Linear(dim_inner, dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.norm(x)
        qkv = self.to_qkv(x).view(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 4, 1)
        q, k, v = qkv.unbind(0)  # (b, h, d, n)
        q = F.normalize(q, dim=-1) * self.temperature.exp()
        k = F.normalize(k, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (b, h, d, n)
        out = out.permute(0, 3, 1, 2).reshape(b, n, -1)
        return self.to_out(out)


class FeedForward(nn.Module):
    """RMSNorm → Linear(d, mult·d) → GELU → Linear(mult·d, d). ``(b, n, d) -> (b, n, d)``."""

    def __init__(self, dim: int, mult: float = 4, dropout: float = 0.0):
        super().__init__()
        dim_inner = int(dim * mult)
        self.net = nn.Sequential(
            RMSNorm(dim), nn.Linear(dim, dim_inner), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(dim_inner, dim), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    """``depth`` residual (attention, feed-forward) pairs, optionally followed by an RMSNorm.
    ``(b, n, d) -> (b, n, d)``."""

    def __init__(self, *, dim: int, depth: int, heads: int, dim_head: int,
                 rotary_embed: RotaryEmbedding | None, norm_output: bool,
                 linear_attn: bool = False, attn_dropout: float = 0.0, ff_dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(depth):
            if linear_attn:
                attn: nn.Module = LinearAttention(dim, heads, dim_head)
            else:
                attn = Attention(dim, heads, dim_head, rotary_embed, dropout=attn_dropout)
            self.layers.append(nn.ModuleList([attn, FeedForward(dim, dropout=ff_dropout)]))
        self.norm = RMSNorm(dim) if norm_output else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return self.norm(x)


class BandSplit(nn.Module):
    """Per band: RMSNorm then Linear to ``dim``. ``(b, t, Σ dim_inputs) -> (b, t, k, dim)``."""

    def __init__(self, dim: int, dim_inputs: Sequence[int]):
        super().__init__()
        self.dim_inputs = tuple(int(d) for d in dim_inputs)
        self.to_features = nn.ModuleList(
            nn.Sequential(RMSNorm(d), nn.Linear(d, dim)) for d in self.dim_inputs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.split(self.dim_inputs, dim=-1)
        return torch.stack([net(p) for p, net in zip(parts, self.to_features)], dim=-2)


def mlp(dim_in: int, dim_out: int, dim_hidden: int, num_linear: int) -> nn.Sequential:
    """``num_linear`` Linear layers with Tanh between them."""
    dims = (dim_in, *((dim_hidden,) * (num_linear - 1)), dim_out)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class MaskEstimator(nn.Module):
    """Per band: MLP then GLU, giving that band's mask features.
    ``(b, t, k, dim) -> (b, t, Σ dim_inputs)``.

    ``num_linear`` is ``mask_estimator_depth`` for BS-RoFormer and ``mask_estimator_depth + 1``
    for Mel-Band RoFormer (the two references count layers differently).
    """

    def __init__(self, dim: int, dim_inputs: Sequence[int], num_linear: int,
                 mlp_expansion_factor: int = 4):
        super().__init__()
        self.dim_inputs = tuple(int(d) for d in dim_inputs)
        hidden = dim * mlp_expansion_factor
        self.to_freqs = nn.ModuleList(
            nn.Sequential(mlp(dim, d * 2, hidden, num_linear), nn.GLU(dim=-1)) for d in self.dim_inputs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands = x.unbind(dim=-2)
        return torch.cat([net(band) for band, net in zip(bands, self.to_freqs)], dim=-1)


def build_layers(*, dim: int, depth: int, heads: int, dim_head: int, time_transformer_depth: int,
                 freq_transformer_depth: int, linear_transformer_depth: int,
                 norm_output: bool) -> nn.ModuleList:
    """The axial transformer stack of both RoFormers (checkpoint prefix ``layers.{i}.{j}``): per
    layer an optional linear-attention transformer (j=0 when present), a transformer along time
    and one along the bands."""
    # one rotary table for every time-axis layer and one for every band-axis layer, shared (and
    # repeated under each layer's key in the state dict) as in the reference
    time_rotary = RotaryEmbedding(dim_head)
    freq_rotary = RotaryEmbedding(dim_head)
    common = dict(dim=dim, heads=heads, dim_head=dim_head, norm_output=norm_output)
    layers = nn.ModuleList()
    for _ in range(depth):
        block = []
        if linear_transformer_depth > 0:
            block.append(Transformer(depth=linear_transformer_depth, rotary_embed=None,
                                     linear_attn=True, **common))
        block.append(Transformer(depth=time_transformer_depth, rotary_embed=time_rotary, **common))
        block.append(Transformer(depth=freq_transformer_depth, rotary_embed=freq_rotary, **common))
        layers.append(nn.ModuleList(block))
    return layers


def run_layers(layers: nn.ModuleList, x: torch.Tensor, skip_connection: bool) -> torch.Tensor:
    """Apply :func:`build_layers`' stack. ``(b, n, k, d) -> (b, n, k, d)``."""
    b, t, k, d = x.shape
    store: list[torch.Tensor] = []
    for block in layers:
        if len(block) == 3:
            linear_tr, time_tr, freq_tr = block
            x = linear_tr(x.reshape(b, t * k, d)).view(b, t, k, d)
        else:
            time_tr, freq_tr = block
        if skip_connection:
            for s in store:
                x = x + s
        x = x.transpose(1, 2).reshape(b * k, t, d)
        x = time_tr(x)
        x = x.view(b, k, t, d).transpose(1, 2).reshape(b * t, k, d)
        x = freq_tr(x)
        x = x.view(b, t, k, d)
        if skip_connection:
            store.append(x)
    return x


# --- STFT helpers -------------------------------------------------------------------------------

def stft_features(audio: torch.Tensor, n_fft: int, hop: int, win_length: int, normalized: bool,
                  window: torch.Tensor) -> torch.Tensor:
    """``(b, c, t) -> (b, f·c, frames, 2)``: the complex STFT with channels merged into the
    frequency axis frequency-major (``[f0 c0, f0 c1, f1 c0, ...]``), real/imag innermost."""
    b, c, t = audio.shape
    spec = torch.stft(audio.reshape(b * c, t), n_fft=n_fft, hop_length=hop, win_length=win_length,
                      window=window, center=True, pad_mode="reflect", normalized=normalized,
                      return_complex=True)
    spec = torch.view_as_real(spec)  # (b·c, f, frames, 2)
    f, frames = spec.shape[1], spec.shape[2]
    return spec.view(b, c, f, frames, 2).transpose(1, 2).reshape(b, f * c, frames, 2)


def istft_from_merged(spec: torch.Tensor, channels: int, n_fft: int, hop: int, win_length: int,
                      normalized: bool, window: torch.Tensor, length: int,
                      zero_dc: bool) -> torch.Tensor:
    """``(b, n, f·c, frames)`` complex -> ``(b, n, c, length)`` audio."""
    b, n, fc, frames = spec.shape
    f = fc // channels
    spec = spec.view(b, n, f, channels, frames).transpose(2, 3).reshape(b * n * channels, f, frames)
    if zero_dc:
        # MSST since 2025-09: the DC bin of the masked spectrum is dropped before the iSTFT
        spec = torch.cat([torch.zeros_like(spec[:, :1]), spec[:, 1:]], dim=1)
    audio = torch.istft(spec, n_fft=n_fft, hop_length=hop, win_length=win_length, window=window,
                        center=True, normalized=normalized, length=length)
    return audio.view(b, n, channels, -1)


def default_segment_samples(samplerate: int, hop: int, seconds: float = 8.0) -> int:
    """A chunk of about ``seconds`` that is a whole number of hops (as the MSST configs use)."""
    return hop * max(1, math.floor(seconds * samplerate / hop))


# --- constructor kwargs ---------------------------------------------------------------------------

# Keys our constructors accept next to the reference kwargs. They are not reference constructor
# arguments: the MSST reader fills them from the YAML's other sections (training.instruments,
# training.target_instrument, audio.sample_rate, audio.chunk_size, inference.normalize).
COMMON_OPTIONS = ("instruments", "target_instrument", "samplerate", "segment_samples", "track_normalize")


def split_kwargs(kwargs: dict, arch: str, reference: dict, options: tuple[str, ...]) -> tuple[dict, dict]:
    """Split ``kwargs`` into (reference kwargs with defaults filled in, our options).

    ``reference`` maps every accepted reference kwarg to its default (``...`` = required).
    Unknown keys raise :class:`ConfigError` naming them, as the reference constructor would.
    """
    from ..errors import ConfigError

    unknown = sorted(k for k in kwargs if k not in reference and k not in options)
    if unknown:
        raise ConfigError(f"{arch}: unknown model kwargs {unknown}")
    ref = {k: kwargs.get(k, v) for k, v in reference.items()}
    missing = sorted(k for k, v in ref.items() if v is ...)
    if missing:
        raise ConfigError(f"{arch}: model kwargs lack {missing}")
    opts = {k: kwargs[k] for k in options if k in kwargs and kwargs[k] is not None}
    return ref, opts


def stem_names(arch: str, num_stems: int, opts: dict) -> tuple[tuple[str, ...], str | None]:
    """(output stem names, target instrument) for a RoFormer with ``num_stems`` mask estimators.

    A single-target model (``target_instrument`` set) outputs that stem; a multi-stem model
    outputs ``instruments`` in order; without names the stems are called ``stem0``, ``stem1``...
    """
    from ..errors import ConfigError

    target = opts.get("target_instrument")
    instruments = tuple(str(s) for s in opts.get("instruments", ()))
    if target is not None:
        if num_stems != 1:
            raise ConfigError(f"{arch}: target_instrument {target!r} given but num_stems = {num_stems}")
        return (str(target),), str(target)
    if instruments:
        if len(instruments) != num_stems:
            raise ConfigError(f"{arch}: {len(instruments)} instruments {list(instruments)} for "
                              f"num_stems = {num_stems}; set training.target_instrument for a "
                              "single-target model")
        return instruments, None
    return tuple(f"stem{i}" for i in range(num_stems)), None


@dataclass(frozen=True)
class RoformerConfig:
    """What defines both RoFormers; each architecture's config adds its band layout.
    ``sources`` are the output stem names."""

    dim: int
    depth: int
    stereo: bool = False
    num_stems: int = 1
    time_transformer_depth: int = 2
    freq_transformer_depth: int = 2
    linear_transformer_depth: int = 0
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


def config_kwargs(arch: str, ref: dict, opts: dict, samplerate: int = 44100) -> dict[str, Any]:
    """The :class:`RoformerConfig` fields from the MSST ``model:`` kwargs ``ref`` and our options
    ``opts`` (see :func:`split_kwargs`); ``samplerate`` when the options name none."""
    from ..errors import ConfigError

    if ref["stft_window_fn"] is not None or ref["multi_stft_window_fn"] is not None:
        raise ConfigError(f"{arch}: custom window functions cannot come from a config file")
    sources, target = stem_names(arch, int(ref["num_stems"]), opts)
    return dict(
        dim=int(ref["dim"]), depth=int(ref["depth"]), stereo=bool(ref["stereo"]),
        num_stems=int(ref["num_stems"]),
        time_transformer_depth=int(ref["time_transformer_depth"]),
        freq_transformer_depth=int(ref["freq_transformer_depth"]),
        linear_transformer_depth=int(ref["linear_transformer_depth"]),
        dim_head=int(ref["dim_head"]), heads=int(ref["heads"]),
        stft_n_fft=int(ref["stft_n_fft"]), stft_hop_length=int(ref["stft_hop_length"]),
        stft_win_length=int(ref["stft_win_length"]), stft_normalized=bool(ref["stft_normalized"]),
        mask_estimator_depth=int(ref["mask_estimator_depth"]),
        mlp_expansion_factor=int(ref["mlp_expansion_factor"]),
        skip_connection=bool(ref["skip_connection"]), zero_dc=bool(ref["zero_dc"]),
        sources=sources, target_instrument=target,
        samplerate=int(opts.get("samplerate", samplerate)),
        segment_samples=int(opts["segment_samples"]) if "segment_samples" in opts else None,
        track_normalize=bool(opts.get("track_normalize", False)),
    )


class RoformerBase(nn.Module):
    """The separation contract both RoFormers carry (what the engine reads), set from the
    config; and the STFT settings and input check their ``forward`` share."""

    arch = "roformer"

    def __init__(self, config: RoformerConfig):
        super().__init__()
        from ..errors import ConfigError

        cfg = config
        if len(cfg.sources) != cfg.num_stems:
            raise ConfigError(f"{self.arch}: {len(cfg.sources)} source names for {cfg.num_stems} stems")
        self.config = cfg
        self.sources = tuple(cfg.sources)
        self.target_instrument = cfg.target_instrument
        self.samplerate = int(cfg.samplerate)
        self.audio_channels = 2 if cfg.stereo else 1
        self.segment_samples = cfg.segment_samples or default_segment_samples(self.samplerate,
                                                                              cfg.stft_hop_length)
        self.max_segment_samples = None
        self.track_normalize = bool(cfg.track_normalize)
        # on the CPU even inside a `torch.device("meta")` context (the checkpoint loader's shape
        # probe): a meta hann_window goes through torch's decompositions, whose first use
        # imports sympy and some 800 modules (as in masknet)
        self.register_buffer("window", torch.hann_window(cfg.stft_win_length, device="cpu"), persistent=False)

    def _stft_args(self, mix: torch.Tensor) -> dict[str, Any]:
        """Check ``mix`` ``(b, c, t)`` and return the STFT settings for it."""
        from ..errors import ChannelLayoutError

        if mix.ndim != 3 or mix.shape[1] != self.audio_channels:
            raise ChannelLayoutError(f"{self.arch} expects (batch, {self.audio_channels}, time), "
                                     f"got {tuple(mix.shape)}")
        cfg = self.config
        return dict(n_fft=cfg.stft_n_fft, hop=cfg.stft_hop_length, win_length=cfg.stft_win_length,
                    normalized=cfg.stft_normalized, window=self.window.to(mix.dtype))
