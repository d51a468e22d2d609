"""Layers shared by Hybrid Demucs (v3) and Hybrid Transformer Demucs (v4), laid out so that the
official checkpoints load unchanged: module names, registration order and shapes follow the
reference implementation (facebookresearch/demucs, MIT licence).

Axes: ``b`` batch, ``c`` channels, ``f`` frequency bins, ``t`` frames or samples, ``s`` sources,
``n``/``m`` transformer tokens.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError

# ---------------------------------------------------------------------------------------------
# kwargs handling


def parse_segment(segment: Any) -> Fraction | int | float:
    """The reference stores ``segment`` as a Fraction (HTDemucs), an int or a float; catalogues
    that cannot hold a Fraction store ``"39/5"``. Strings become exact fractions; numbers keep
    their type so that ``int(segment * samplerate)`` rounds exactly as the reference does."""
    if isinstance(segment, (Fraction, int, float)) and not isinstance(segment, bool):
        return segment
    if isinstance(segment, str):
        try:
            return Fraction(segment.strip())
        except (ValueError, ZeroDivisionError) as exc:
            raise ModelError(f"segment {segment!r} is not a number or fraction") from exc
    raise ModelError(f"segment must be a number or a fraction string, got {type(segment).__name__}")


def check_reference_kwargs(arch: str, kwargs: dict[str, Any], signature: frozenset[str],
                           unsupported: dict[str, Callable[[Any], bool]]) -> None:
    """Raise :class:`ModelError` for keys the reference constructor does not take, and for
    values whose inference behaviour is not implemented here (``unsupported[key](value)`` is
    true for such values)."""
    unknown = sorted(set(kwargs) - signature)
    if unknown:
        raise ModelError(f"{arch}: unknown constructor argument(s) {unknown}")
    if "sources" not in kwargs:
        raise ModelError(f"{arch}: 'sources' is required")
    for key, bad in unsupported.items():
        if key in kwargs and bad(kwargs[key]):
            raise ModelError(f"{arch}: {key}={kwargs[key]!r} is not supported by this implementation")


# ---------------------------------------------------------------------------------------------
# spectrogram helpers


def pad1d(x: torch.Tensor, left: int, right: int, mode: str = "constant") -> torch.Tensor:
    """``F.pad`` on the last axis. Reflect padding wider than the signal first inserts zeros
    (on the right, then the left), which is what the reference does for very short inputs."""
    length = x.shape[-1]
    if mode == "reflect":
        max_pad = max(left, right)
        if length <= max_pad:
            extra = max_pad - length + 1
            extra_right = min(right, extra)
            extra_left = extra - extra_right
            left, right = left - extra_left, right - extra_right
            x = F.pad(x, (extra_left, extra_right))
    return F.pad(x, (left, right), mode=mode)


def hybrid_stft(x: torch.Tensor, nfft: int) -> torch.Tensor:
    """``(b, c, t)`` -> complex ``(b, c, nfft // 2, ceil(t / hop))`` with hop ``nfft // 4``.

    The signal is reflect-padded so that frame ``k`` is centred on sample ``k * hop + hop / 2``
    and the frame count is exactly ``ceil(t / hop)``: this keeps the frequency branch aligned
    with the strided time branch. The Nyquist bin is dropped.
    """
    hop = nfft // 4
    length = x.shape[-1]
    frames = math.ceil(length / hop)
    pad = hop // 2 * 3
    x = pad1d(x, pad, pad + frames * hop - length, mode="reflect")
    *other, padded = x.shape
    window = torch.hann_window(nfft, device=x.device, dtype=x.dtype)
    z = torch.stft(x.reshape(-1, padded), nfft, hop, window=window, win_length=nfft,
                   normalized=True, center=True, return_complex=True, pad_mode="reflect")
    z = z.view(*other, z.shape[-2], z.shape[-1])
    return z[..., :-1, 2:2 + frames]


def hybrid_istft(z: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of :func:`hybrid_stft`: complex ``(..., f, frames)`` -> ``(..., length)``."""
    *other, freqs, frames = z.shape
    nfft = 2 * freqs
    hop = nfft // 4
    pad = hop // 2 * 3
    # zero Nyquist bin and two empty frames on each side, undoing the cropping of the forward
    full = z.new_zeros(*other, freqs + 1, frames + 4)
    full[..., :freqs, 2:2 + frames] = z
    padded_length = hop * math.ceil(length / hop) + 2 * pad
    window = torch.hann_window(nfft, device=z.device, dtype=z.real.dtype)
    x = torch.istft(full.view(-1, freqs + 1, frames + 4), nfft, hop, window=window,
                    win_length=nfft, normalized=True, length=padded_length, center=True)
    return x.view(*other, padded_length)[..., pad:pad + length]


def complex_as_channels(z: torch.Tensor) -> torch.Tensor:
    """Complex ``(b, c, f, t)`` -> real ``(b, 2c, f, t)``, channel ``2k`` real and ``2k+1``
    imaginary part of input channel ``k``."""
    b, c, f, t = z.shape
    return torch.view_as_real(z).permute(0, 1, 4, 2, 3).reshape(b, c * 2, f, t)


def channels_as_complex(x: torch.Tensor, sources: int) -> torch.Tensor:
    """Real ``(b, s * 2c, f, t)`` -> complex ``(b, s, c, f, t)`` (inverse layout of
    :func:`complex_as_channels`)."""
    b, _, f, t = x.shape
    out = x.float().view(b, sources, -1, 2, f, t).permute(0, 1, 2, 4, 5, 3)
    return torch.view_as_complex(out.contiguous())  # float32: complex numbers have no bfloat16


def standardize(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x - mean) / (1e-5 + std)`` per item over ``dims`` (unbiased std, as trained)."""
    std, mean = torch.std_mean(x, dim=dims, keepdim=True)
    return (x - mean) / (1e-5 + std), mean, std


# ---------------------------------------------------------------------------------------------
# small modules


class ScaledEmbedding(nn.Module):
    """Frequency embedding; the stored weight is scaled by ``scale`` when used."""

    def __init__(self, num_embeddings: int, embedding_dim: int, scale: float = 10.0) -> None:
        super().__init__()
        weight = torch.empty(num_embeddings, embedding_dim)
        if not weight.is_meta:  # nn.Embedding's own init; on the loader's meta-device shape probe
            nn.init.normal_(weight)  # a meta normal_ imports torch's decompositions (sympy)
        self.embedding = nn.Embedding(num_embeddings, embedding_dim, _weight=weight)
        self.scale = scale

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight * self.scale

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.embedding(index) * self.scale


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch; channels on axis 1, or last."""

    def __init__(self, channels: int, init: float = 0.0, channel_last: bool = False) -> None:
        super().__init__()
        self.channel_last = channel_last
        self.scale = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x if self.channel_last else self.scale[:, None] * x


class BLSTM(nn.Module):
    """Bidirectional LSTM with a skip connection, ``(b, c, t) -> (b, c, t)``.

    Sequences longer than ``max_steps`` are cut into windows of ``max_steps`` with 50 % overlap,
    processed independently, and stitched from their central halves (the first window keeps
    its start, the last its end), as the models were trained.
    """

    def __init__(self, dim: int, layers: int = 2, max_steps: int | None = 200, skip: bool = True) -> None:
        super().__init__()
        self.max_steps = max_steps
        self.skip = skip
        self.lstm = nn.LSTM(input_size=dim, hidden_size=dim, num_layers=layers, bidirectional=True)
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        y = x
        framed = self.max_steps is not None and t > self.max_steps
        if framed:
            width = self.max_steps
            stride = width // 2
            nframes = math.ceil(t / stride)
            x = F.pad(x, (0, (nframes - 1) * stride + width - t))
            x = x.unfold(-1, width, stride).permute(0, 2, 1, 3).reshape(b * nframes, c, width)
        x = self.lstm(x.permute(2, 0, 1))[0]
        x = self.linear(x).permute(1, 2, 0)
        if framed:
            frames = x.reshape(b, nframes, c, width)
            limit = stride // 2
            middle = frames[:, 1:-1, :, limit:-limit].permute(0, 2, 1, 3).reshape(b, c, -1)
            x = torch.cat([frames[:, 0, :, :-limit], middle, frames[:, -1, :, limit:]], dim=-1)
            x = x[..., :t]
        return x + y if self.skip else x


class LocalState(nn.Module):
    """Content-based self-attention over time with a learned distance penalty per head,
    ``(b, c, t) -> (b, c, t)`` (residual included). No positional embedding."""

    def __init__(self, channels: int, heads: int = 4, ndecay: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ModelError(f"LocalState: {channels} channels not divisible by {heads} heads")
        self.heads = heads
        self.ndecay = ndecay
        self.content = nn.Conv1d(channels, channels, 1)
        self.query = nn.Conv1d(channels, channels, 1)
        self.key = nn.Conv1d(channels, channels, 1)
        self.query_decay = nn.Conv1d(channels, heads * ndecay, 1)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        h = self.heads
        index = torch.arange(t, device=x.device, dtype=x.dtype)
        distance = (index[:, None] - index[None, :]).abs()
        queries = self.query(x).view(b, h, -1, t)
        keys = self.key(x).view(b, h, -1, t)
        # dots[b, h, key, query]
        dots = torch.einsum("bhct,bhcs->bhts", keys, queries)
        dots /= keys.shape[2] ** 0.5
        decays = torch.arange(1, self.ndecay + 1, device=x.device, dtype=x.dtype)
        decay_q = torch.sigmoid(self.query_decay(x).view(b, h, self.ndecay, t)) / 2
        # sum over the decay terms before touching the (t, t) matrix: one pass instead of ndecay
        rate = torch.einsum("f,bhfs->bhs", decays, decay_q) / self.ndecay ** 0.5
        dots -= distance * rate[:, :, None, :]
        dots.diagonal(dim1=-2, dim2=-1).fill_(-100.0)
        weights = torch.softmax(dots, dim=2)
        content = self.content(x).view(b, h, -1, t)
        result = torch.einsum("bhts,bhct->bhcs", weights, content).reshape(b, -1, t)
        return x + self.proj(result)


class DConv(nn.Module):
    """Residual branch of dilated convolutions (optionally with BiLSTM and local attention),
    ``(b, c, t) -> (b, c, t)``. Index layout of each ``layers.<d>`` Sequential is fixed by the
    checkpoints: conv, norm, GELU, [BLSTM], [LocalState], 1x1 conv, norm, GLU, LayerScale."""

    def __init__(self, channels: int, compress: float = 4, depth: int = 2, init: float = 1e-4,
                 norm: bool = True, attn: bool = False, heads: int = 4, ndecay: int = 4,
                 lstm: bool = False, gelu: bool = True, kernel: int = 3) -> None:
        super().__init__()
        dilate = depth > 0
        hidden = int(channels / compress)

        def norm_fn(d: int) -> nn.Module:
            return nn.GroupNorm(1, d) if norm else nn.Identity()

        layers = []
        for d in range(abs(depth)):
            dilation = 2 ** d if dilate else 1
            mods: list[nn.Module] = [
                nn.Conv1d(channels, hidden, kernel, dilation=dilation, padding=dilation * (kernel // 2)),
                norm_fn(hidden), nn.GELU() if gelu else nn.ReLU(),
                nn.Conv1d(hidden, 2 * channels, 1), norm_fn(2 * channels), nn.GLU(1),
                LayerScale(channels, init),
            ]
            if attn:
                mods.insert(3, LocalState(hidden, heads=heads, ndecay=ndecay))
            if lstm:
                mods.insert(3, BLSTM(hidden, layers=2, max_steps=200, skip=True))
            layers.append(nn.Sequential(*mods))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return x


def conv_transpose_strided(conv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """The frequency decoders' transposed convolution, ``(b, c, f, t)`` with kernel ``(k, 1)``
    and stride ``(s, 1)``, ``k`` a multiple of ``s``, as one matrix product per item and
    ``k / s`` shifted additions.

    Same arithmetic as ``conv(x)``; written out because oneDNN's transposed convolution runs
    these shapes (few channels, long axes) several times below its matrix-product speed.
    Other layers and inputs fall back to ``conv(x)``.
    """
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    if torch.jit.is_tracing():
        # a graph runtime (unbake.engine.backend) has a fast transposed convolution of its own,
        # and would run the shifted additions below as slow scatter updates
        return conv(x)
    plain = (x.dim() == 4 and conv.kernel_size[1:] == (1,) and conv.stride[1:] == (1,)
             and conv.groups == 1 and conv.padding == (0, 0) and conv.output_padding == (0, 0)
             and conv.dilation == (1, 1) and kernel % stride == 0 and x.dtype == conv.weight.dtype)
    if not plain:
        return conv(x)
    ratio = kernel // stride
    b, cin, f, t = x.shape
    cout = conv.out_channels
    w = conv.weight.reshape(cin, cout * kernel).t()  # (cin, cout, k, 1) -> (cout * k, cin)
    out = x.new_empty(b, cout, f + ratio - 1, stride, t)
    bias = conv.bias if conv.bias is not None else x.new_zeros(cout)
    out.copy_(bias.view(1, cout, 1, 1, 1).expand_as(out))
    for i in range(b):
        # one 2-D product per item: a broadcast batched product is far slower on CPU
        y = torch.mm(w, x[i].reshape(cin, f * t)).view(cout, ratio, stride, f, t)
        for j in range(ratio):
            # tap block j of input row p lands on output rows (p + j) * s ... (p + j) * s + s - 1
            out[i, :, j:j + f] += y[:, j].transpose(1, 2)
    return out.view(b, cout, (f + ratio - 1) * stride, t)


def _freq_dconv(dconv: DConv, y: torch.Tensor) -> torch.Tensor:
    """Apply a DConv along time to every frequency row of ``(b, c, f, t)``."""
    b, c, f, t = y.shape
    y = dconv(y.permute(0, 2, 1, 3).reshape(b * f, c, t))
    return y.view(b, f, c, t).permute(0, 2, 1, 3)


class HEncLayer(nn.Module):
    """One encoder layer of either branch: strided conv, norm, GELU, DConv, 1x1 rewrite + GLU.

    Frequency layers take ``(b, c, f, t)`` and stride over ``f``; time layers take ``(b, c, t)``.
    ``empty`` layers are the bare conv of the time branch right before it merges into the
    frequency branch (its output is ``inject``-ed there).
    """

    def __init__(self, chin: int, chout: int, kernel_size: int = 8, stride: int = 4,
                 norm_groups: int = 1, empty: bool = False, freq: bool = True, dconv: bool = True,
                 norm: bool = True, context: int = 0, dconv_kw: dict | None = None,
                 pad: bool = True, rewrite: bool = True) -> None:
        super().__init__()

        def norm_fn(d: int) -> nn.Module:
            return nn.GroupNorm(norm_groups, d) if norm else nn.Identity()

        padding = kernel_size // 4 if pad else 0
        self.freq = freq
        self.kernel_size = kernel_size
        self.stride = stride
        self.empty = empty
        self.pad = padding
        if freq:
            self.conv = nn.Conv2d(chin, chout, (kernel_size, 1), (stride, 1), (padding, 0))
            klass = nn.Conv2d
        else:
            self.conv = nn.Conv1d(chin, chout, kernel_size, stride, padding)
            klass = nn.Conv1d
        self.rewrite = None
        self.dconv = None
        if empty:
            return
        self.norm1 = norm_fn(chout)
        if rewrite:
            self.rewrite = klass(chout, 2 * chout, 1 + 2 * context, 1, context)
            self.norm2 = norm_fn(2 * chout)
        if dconv:
            self.dconv = DConv(chout, **(dconv_kw or {}))

    def forward(self, x: torch.Tensor, inject: torch.Tensor | None = None) -> torch.Tensor:
        if not self.freq:
            if x.dim() == 4:
                x = x.reshape(x.shape[0], -1, x.shape[-1])
            rest = x.shape[-1] % self.stride
            if rest:
                x = F.pad(x, (0, self.stride - rest))
        y = self.conv(x)
        if self.empty:
            return y
        if inject is not None:
            if inject.shape[-1] != y.shape[-1]:
                raise ModelError(f"time branch has {inject.shape[-1]} frames, frequency branch {y.shape[-1]}")
            if inject.dim() == 3 and y.dim() == 4:
                inject = inject[:, :, None]
            y = y + inject
        y = F.gelu(self.norm1(y))
        if self.dconv is not None:
            y = _freq_dconv(self.dconv, y) if self.freq else self.dconv(y)
        if self.rewrite is not None:
            y = F.glu(self.norm2(self.rewrite(y)), dim=1)
        return y


class HDecLayer(nn.Module):
    """One decoder layer: add skip, 3x3 (freq) / 3-tap (time) rewrite + GLU, DConv, transposed
    conv, norm, GELU. Returns ``(output, pre)`` where ``pre`` is the input of the transposed conv
    (the time branch splits off from it)."""

    def __init__(self, chin: int, chout: int, last: bool = False, kernel_size: int = 8,
                 stride: int = 4, norm_groups: int = 1, empty: bool = False, freq: bool = True,
                 dconv: bool = True, norm: bool = True, context: int = 1,
                 dconv_kw: dict | None = None, pad: bool = True, rewrite: bool = True) -> None:
        super().__init__()

        def norm_fn(d: int) -> nn.Module:
            return nn.GroupNorm(norm_groups, d) if norm else nn.Identity()

        self.pad = kernel_size // 4 if pad else 0
        self.last = last
        self.freq = freq
        self.chin = chin
        self.empty = empty
        self.stride = stride
        self.kernel_size = kernel_size
        if freq:
            self.conv_tr = nn.ConvTranspose2d(chin, chout, (kernel_size, 1), (stride, 1))
            klass = nn.Conv2d
        else:
            self.conv_tr = nn.ConvTranspose1d(chin, chout, kernel_size, stride)
            klass = nn.Conv1d
        self.norm2 = norm_fn(chout)
        self.rewrite = None
        self.dconv = None
        if empty:
            return
        if rewrite:
            self.rewrite = klass(chin, 2 * chin, 1 + 2 * context, 1, context)
            self.norm1 = norm_fn(2 * chin)
        if dconv:
            self.dconv = DConv(chin, **(dconv_kw or {}))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.freq and x.dim() == 3:
            x = x.view(x.shape[0], self.chin, -1, x.shape[-1])
        if self.empty:
            y = x
        else:
            x = x + skip
            y = F.glu(self.norm1(self.rewrite(x)), dim=1) if self.rewrite is not None else x
            if self.dconv is not None:
                y = _freq_dconv(self.dconv, y) if self.freq else self.dconv(y)
        z = self.norm2(conv_transpose_strided(self.conv_tr, y))
        if self.freq:
            if self.pad:
                z = z[..., self.pad:-self.pad, :]
        else:
            z = z[..., self.pad:self.pad + length]
        if not self.last:
            z = F.gelu(z)
        return z, y


# ---------------------------------------------------------------------------------------------
# the shared U-Net of both hybrid architectures


class HybridDemucsBase(nn.Module):
    """Frequency and time U-Nets that merge at the first layer where both have the same
    stride. Subclasses add what sits at the bottom (nothing, or a cross-domain transformer)."""

    track_normalize = True

    def _build_unet(self, *, audio_channels: int, n_sources: int, channels: int,
                    channels_time: int | None, growth: float, nfft: int, depth: int,
                    rewrite: bool, freq_emb: float, emb_scale: float, kernel_size: int,
                    time_stride: int, stride: int, context: int, context_enc: int,
                    norm_starts: int, norm_groups: int, dconv_mode: int, dconv_depth: int,
                    dconv_comp: float, dconv_init: float, dconv_attn: int, dconv_lstm: int,
                    dconv_extra: bool) -> int:
        """Create ``encoder``, ``decoder``, ``tencoder``, ``tdecoder`` and ``freq_emb`` in the
        reference order; return the channel count at the bottom of the frequency branch."""
        self.nfft = nfft
        self.hop_length = nfft // 4
        self.depth = depth
        self.freq_emb = None
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.tencoder = nn.ModuleList()
        self.tdecoder = nn.ModuleList()

        chin = audio_channels
        chin_z = chin * 2  # complex as channels
        chout = channels_time or channels
        chout_z = channels
        freqs = nfft // 2
        for index in range(depth):
            norm = index >= norm_starts
            freq = freqs > 1
            stri, ker = stride, kernel_size
            if not freq:
                ker, stri = time_stride * 2, time_stride
            pad = True
            last_freq = False
            if freq and freqs <= kernel_size:
                ker, pad, last_freq = freqs, False, True
            dconv_kw: dict[str, Any] = {"depth": dconv_depth, "compress": dconv_comp,
                                        "init": dconv_init, "gelu": True}
            if dconv_extra:
                dconv_kw["lstm"] = index >= dconv_lstm
                dconv_kw["attn"] = index >= dconv_attn
            kw = {"kernel_size": ker, "stride": stri, "freq": freq, "pad": pad, "norm": norm,
                  "rewrite": rewrite, "norm_groups": norm_groups, "dconv_kw": dconv_kw}
            kwt = dict(kw, freq=False, kernel_size=kernel_size, stride=stride, pad=True)
            if last_freq:
                chout_z = max(chout, chout_z)
                chout = chout_z

            self.encoder.append(HEncLayer(chin_z, chout_z, dconv=bool(dconv_mode & 1),
                                          context=context_enc, **kw))
            if freq:
                self.tencoder.append(HEncLayer(chin, chout, dconv=bool(dconv_mode & 1),
                                               context=context_enc, empty=last_freq, **kwt))
            if index == 0:
                chin = audio_channels * n_sources
                chin_z = chin * 2
            self.decoder.insert(0, HDecLayer(chout_z, chin_z, dconv=bool(dconv_mode & 2),
                                             last=index == 0, context=context, **kw))
            if freq:
                self.tdecoder.insert(0, HDecLayer(chout, chin, dconv=bool(dconv_mode & 2),
                                                  empty=last_freq, last=index == 0,
                                                  context=context, **kwt))
            chin, chin_z = chout, chout_z
            chout, chout_z = int(growth * chout), int(growth * chout_z)
            if freq:
                freqs = 1 if freqs <= kernel_size else freqs // stride
            if index == 0 and freq_emb:
                self.freq_emb = ScaledEmbedding(freqs, chin_z, scale=emb_scale)
                self.freq_emb_scale = freq_emb
        return chin_z

    def _check_input(self, mix: torch.Tensor) -> None:
        if mix.dim() != 3 or mix.shape[1] != self.audio_channels:
            raise ModelError(f"expected input (batch, {self.audio_channels}, time), got {tuple(mix.shape)}")

    def _run(self, mix: torch.Tensor, bottom: Callable | None) -> torch.Tensor:
        """``(b, c, t) -> (b, s, c, t)``. ``bottom(x, xt) -> (x, xt)`` transforms the encoder
        outputs; ``None`` starts the decoder from zeros (Hybrid Demucs)."""
        return self._spectral_out(*self._unet(mix, self._spectral_in(mix), bottom))

    def _spectral_in(self, mix: torch.Tensor) -> torch.Tensor:
        """The spectrogram of ``mix (b, c, t)`` as real channels ``(b, 2c, f, frames)``."""
        # Apple MPS has no complex tensors: the (i)STFT runs on the CPU there
        spectral = torch.device("cpu") if mix.device.type == "mps" else mix.device
        return complex_as_channels(hybrid_stft(mix.to(spectral), self.nfft)).to(mix.device)

    def _unet(self, mix: torch.Tensor, spec: torch.Tensor,
              bottom: Callable | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Both branches from ``mix (b, c, t)`` and its spectrogram ``spec (b, 2c, f, frames)``
        to the frequency branch's output ``(b, s, 2c, f, frames)`` and the time branch's
        ``(b, s, c, t)``. Only real tensors and fixed shapes: this is the part a graph
        runtime can take over (see :mod:`unbake.engine.backend`)."""
        length = mix.shape[-1]
        x, mean, std = standardize(spec, (1, 2, 3))
        b, _, fq, frames = x.shape
        xt, meant, stdt = standardize(mix, (1, 2))

        saved: list[torch.Tensor] = []
        saved_t: list[torch.Tensor] = []
        lengths: list[int] = []
        lengths_t: list[int] = []
        for idx, encode in enumerate(self.encoder):
            lengths.append(x.shape[-1])
            inject = None
            if idx < len(self.tencoder):
                lengths_t.append(xt.shape[-1])
                tenc = self.tencoder[idx]
                xt = tenc(xt)
                if tenc.empty:
                    inject = xt
                else:
                    saved_t.append(xt)
            x = encode(x, inject)
            if idx == 0 and self.freq_emb is not None:
                # frequency embedding: convolutions over frequency are otherwise equivariant
                emb = self.freq_emb.weight.t()[None, :, :, None]
                x = x + self.freq_emb_scale * emb
            saved.append(x)

        if bottom is None:
            # signal reaches the decoder through the skip connections only
            x, xt = torch.zeros_like(x), torch.zeros_like(xt)
        else:
            x, xt = bottom(x, xt)

        offset = self.depth - len(self.tdecoder)
        for idx, decode in enumerate(self.decoder):
            x, pre = decode(x, saved.pop(-1), lengths.pop(-1))
            if idx >= offset:
                tdec = self.tdecoder[idx - offset]
                length_t = lengths_t.pop(-1)
                if tdec.empty:
                    xt, _ = tdec(pre[:, :, 0], None, length_t)
                else:
                    xt, _ = tdec(xt, saved_t.pop(-1), length_t)

        n_sources = len(self.sources)
        x = x.view(b, n_sources, -1, fq, frames) * std[:, None] + mean[:, None]
        xt = xt.view(b, n_sources, -1, length) * stdt[:, None] + meant[:, None]
        return x, xt

    def _spectral_out(self, x: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
        """The sum of both branches ``(b, s, c, t)`` from :meth:`_unet`'s outputs."""
        b, n_sources, _, fq, frames = x.shape
        spectral = torch.device("cpu") if xt.device.type == "mps" else xt.device
        x = x.reshape(b, -1, fq, frames).to(spectral)
        x = hybrid_istft(channels_as_complex(x, n_sources), xt.shape[-1]).to(xt.device)
        return xt + x


# ---------------------------------------------------------------------------------------------
# cross-domain transformer (HT Demucs)


def sin_embedding(length: int, dim: int, device: torch.device, max_period: float) -> torch.Tensor:
    """1-D sinusoidal embedding ``(1, length, dim)``: ``[cos, sin]`` halves."""
    pos = torch.arange(length, device=device).view(-1, 1)
    half = dim // 2
    adim = torch.arange(half, device=device).view(1, -1)
    period = torch.full([], float(max_period), device=device)
    phase = pos / (period ** (adim / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)[None]


def sin_embedding_2d(dim: int, height: int, width: int, device: torch.device,
                     max_period: float) -> torch.Tensor:
    """2-D sinusoidal embedding as tokens ``(1, width * height, dim)`` in time-major order:
    the first half of the channels encodes the time position, the second the frequency."""
    if dim % 4:
        raise ModelError(f"2-D sinusoidal embedding needs a width divisible by 4, got {dim}")
    period = torch.full([], float(max_period), device=device)
    pe = torch.zeros(dim, height, width, device=device)
    half = dim // 2
    div_term = torch.exp(torch.arange(0.0, half, 2, device=device) * -(torch.log(period) / half))
    pos_w = torch.arange(0.0, width, device=device).unsqueeze(1)
    pos_h = torch.arange(0.0, height, device=device).unsqueeze(1)
    pe[0:half:2] = torch.sin(pos_w * div_term).t()[:, None, :]
    pe[1:half:2] = torch.cos(pos_w * div_term).t()[:, None, :]
    pe[half::2] = torch.sin(pos_h * div_term).t()[:, :, None]
    pe[half + 1::2] = torch.cos(pos_h * div_term).t()[:, :, None]
    return pe.permute(2, 1, 0).reshape(1, width * height, dim)


class TokenGroupNorm(nn.GroupNorm):
    """GroupNorm over ``(b, n, c)`` tokens: statistics over channels of a group and all tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_groups == 1:
            # same statistics as group_norm on the transposed tensor, without the two copies
            var, mean = torch.var_mean(x, dim=(1, 2), unbiased=False, keepdim=True)
            return torch.addcmul(self.bias, (x - mean) * torch.rsqrt(var + self.eps), self.weight)
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``torch.nn.MultiheadAttention``'s parameter layout (packed
    ``in_proj_weight`` q, k, v), batch first, no dropout: ``(b, n, c), (b, m, c) -> (b, n, c)``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ModelError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = query.shape
        h = self.heads
        if key is None:
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            w_q, w_kv = self.in_proj_weight.split([c, 2 * c])
            b_q, b_kv = self.in_proj_bias.split([c, 2 * c])
            q = F.linear(query, w_q, b_q)
            k, v = F.linear(key, w_kv, b_kv).chunk(2, dim=-1)
        m = k.shape[1]
        q = q.reshape(b, n, h, c // h).transpose(1, 2)
        k = k.reshape(b, m, h, c // h).transpose(1, 2)
        v = v.reshape(b, m, h, c // h).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


def _token_norm(group_norm: int | bool, dim: int) -> nn.Module:
    return TokenGroupNorm(int(group_norm), dim) if group_norm else nn.LayerNorm(dim)


class _AttentionLayer(nn.Module):
    """What the self- and cross-attention layers share: the attention module (registered first,
    under the checkpoint's name), the GELU feed-forward, ``norms`` token norms, the optional
    output GroupNorm and LayerScale on both residuals."""

    def __init__(self, attn_name: str, dim: int, heads: int, hidden: int, *, norms: int, norm_first: bool,
                 norm_out: int | bool, group_norm: int | bool, layer_scale: bool, gelu: bool) -> None:
        super().__init__()
        setattr(self, attn_name, MultiheadAttention(dim, heads))
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm_first = norm_first
        for i in range(1, norms + 1):
            setattr(self, f"norm{i}", _token_norm(group_norm, dim))
        self.norm_out = TokenGroupNorm(int(norm_out), dim) if norm_first and norm_out else None
        self.gamma_1 = LayerScale(dim, 1e-4, channel_last=True) if layer_scale else nn.Identity()
        self.gamma_2 = LayerScale(dim, 1e-4, channel_last=True) if layer_scale else nn.Identity()
        self.activation = F.gelu if gelu else F.relu

    def _ff(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation(self.linear1(x)))


class SelfAttentionLayer(_AttentionLayer):
    """Transformer encoder layer (self-attention + GELU feed-forward, LayerScale on both
    residuals, optional GroupNorm over all tokens at the end), ``(b, n, c) -> (b, n, c)``."""

    def __init__(self, dim: int, heads: int, hidden: int, **options) -> None:
        super().__init__("self_attn", dim, heads, hidden, norms=2, **options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.gamma_1(self.self_attn(self.norm1(x)))
            x = x + self.gamma_2(self._ff(self.norm2(x)))
            if self.norm_out is not None:
                x = self.norm_out(x)
        else:
            x = self.norm1(x + self.gamma_1(self.self_attn(x)))
            x = self.norm2(x + self.gamma_2(self._ff(x)))
        return x


class CrossAttentionLayer(_AttentionLayer):
    """Like :class:`SelfAttentionLayer` but the queries ``(b, n, c)`` attend to the other
    branch's tokens ``(b, m, c)``."""

    def __init__(self, dim: int, heads: int, hidden: int, **options) -> None:
        super().__init__("cross_attn", dim, heads, hidden, norms=3, **options)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = q + self.gamma_1(self.cross_attn(self.norm1(q), self.norm2(k)))
            x = x + self.gamma_2(self._ff(self.norm3(x)))
            if self.norm_out is not None:
                x = self.norm_out(x)
        else:
            x = self.norm1(q + self.gamma_1(self.cross_attn(q, k)))
            x = self.norm2(x + self.gamma_2(self._ff(x)))
        return x


class CrossTransformerEncoder(nn.Module):
    """Two parallel transformers, one over spectrogram tokens and one over waveform tokens,
    alternating self-attention layers with cross-attention layers between the two.

    ``x (b, c, f, t1), xt (b, c, t2) -> (x, xt)`` with the same shapes.
    """

    def __init__(self, dim: int, *, hidden_scale: float = 4.0, num_heads: int = 8,
                 num_layers: int = 5, cross_first: bool = False, norm_in: bool = True,
                 norm_in_group: int | bool = False, group_norm: int | bool = False,
                 norm_first: bool = True, norm_out: int | bool = True, max_period: float = 10000.0,
                 layer_scale: bool = True, gelu: bool = True, weight_pos_embed: float = 1.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ModelError(f"transformer width {dim} is not divisible by {num_heads} heads")
        hidden = int(dim * hidden_scale)
        self.num_layers = num_layers
        self.classic_parity = 1 if cross_first else 0
        self.max_period = max_period
        self.weight_pos_embed = weight_pos_embed
        if norm_in:
            self.norm_in: nn.Module = nn.LayerNorm(dim)
            self.norm_in_t: nn.Module = nn.LayerNorm(dim)
        elif norm_in_group:
            self.norm_in = TokenGroupNorm(int(norm_in_group), dim)
            self.norm_in_t = TokenGroupNorm(int(norm_in_group), dim)
        else:
            self.norm_in = nn.Identity()
            self.norm_in_t = nn.Identity()
        kw = {"norm_first": norm_first, "norm_out": norm_out, "group_norm": group_norm,
              "layer_scale": layer_scale, "gelu": gelu}
        self.layers = nn.ModuleList()
        self.layers_t = nn.ModuleList()
        for idx in range(num_layers):
            klass = SelfAttentionLayer if idx % 2 == self.classic_parity else CrossAttentionLayer
            self.layers.append(klass(dim, num_heads, hidden, **kw))
            self.layers_t.append(klass(dim, num_heads, hidden, **kw))

    def forward(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, fr, t1 = x.shape
        pos_2d = sin_embedding_2d(c, fr, t1, x.device, self.max_period).to(x.dtype)
        x = x.permute(0, 3, 2, 1).reshape(b, t1 * fr, c)  # time-major tokens
        x = self.norm_in(x) + self.weight_pos_embed * pos_2d

        t2 = xt.shape[-1]
        pos_1d = sin_embedding(t2, c, xt.device, self.max_period).to(xt.dtype)
        xt = self.norm_in_t(xt.transpose(1, 2)) + self.weight_pos_embed * pos_1d

        for idx in range(self.num_layers):
            if idx % 2 == self.classic_parity:
                x = self.layers[idx](x)
                xt = self.layers_t[idx](xt)
            else:
                old_x = x
                x = self.layers[idx](x, xt)
                xt = self.layers_t[idx](xt, old_x)

        x = x.reshape(b, t1, fr, c).permute(0, 3, 2, 1)
        return x, xt.transpose(1, 2)
