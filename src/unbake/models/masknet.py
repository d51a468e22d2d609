"""MaskNet: a small, CPU-fast spectrogram masking model (unbake's own default four-stem model).

Axes: ``b`` batch, ``c`` audio channels, ``t`` samples, ``s`` stems, ``n`` STFT frames,
``f`` frequency bins, ``d`` hidden features.

The stereo log-magnitude spectrogram (bins above ``full_res_bins`` averaged in groups of
``high_group``: masks need less frequency detail up there, and the per-frame projections are
most of the cost) is projected per frame to ``d`` features, mixed over time
by a stack of dilated temporal convolutions (receptive field ``1 + (k-1)·Σ dilations`` frames),
and decoded to one mask per stem, channel and bin. The masks are a softmax over the stems, so
they sum to one and the stems always sum to the mixture; they multiply the complex mixture
STFT (mixture phase) and an inverse STFT returns the waveforms.

:class:`MaskNetEnsemble` averages the masks of several masknets over one STFT (the shipped
``unbake_small`` is one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError


@dataclass(frozen=True)
class MaskNetConfig:
    sources: tuple[str, ...] = ("drums", "bass", "other", "vocals")
    samplerate: int = 44100
    audio_channels: int = 2
    n_fft: int = 2048
    hop_length: int = 512
    hidden: int = 256
    depth: int = 6
    kernel_size: int = 3
    full_res_bins: int = 384
    high_group: int = 4
    segment_s: float = 10.0
    # hidden size per direction of a residual bidirectional LSTM after the convolutions (0: none);
    # it sees the whole chunk, where the convolutions see 127 frames
    rnn_hidden: int = 0
    # the level the network hears: each window's mixture is scaled to this RMS (over channels and
    # samples) before the features are taken, and the masks are applied to the mixture as given;
    # 0: as given. Separation depends on the input level through the log-magnitude features, and
    # music is mastered at levels a model trained on remixed stems rarely saw (model card, "Windows and level")
    input_rms: float = 0.0
    # stereo only: the log magnitude of the side signal (L - R) / 2 joins the features. |L| and |R|
    # say how loud each channel is in a bin, not whether the two carry the same sound there: a
    # voice panned to the centre leaves the side empty where a wide guitar or a reverb does not.
    # Not used by unbake_small: its 5-fold A/B did not adopt it (model card, "The side signal")
    stereo_side: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sources"] = list(self.sources)
        return d


class _TemporalBlock(nn.Module):
    """``(b, n, d) -> (b, n, d)``: pre-norm residual block, dilated conv over frames then a
    per-frame projection. Per-frame LayerNorm (not a norm over time) keeps the output independent
    of the chunk length the engine uses."""

    def __init__(self, hidden: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.conv = nn.Conv1d(hidden, hidden, kernel_size, dilation=dilation,
                              padding=dilation * (kernel_size - 1) // 2)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.norm(h).transpose(1, 2)).transpose(1, 2)
        return h + self.proj(F.gelu(y))


class _RecurrentBlock(nn.Module):
    """``(b, n, d) -> (b, n, d)``: pre-norm residual bidirectional LSTM over frames. The output
    projection starts at zero, so adding the block to a trained model leaves its output unchanged
    until fine-tuning moves it."""

    def __init__(self, hidden: int, rnn_hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.rnn = nn.LSTM(hidden, rnn_hidden, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * rnn_hidden, hidden)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.norm(h))
        return h + self.proj(y)


class MaskNet(nn.Module):
    """``(b, c, t) -> (b, s, c, t)`` float32 at ``samplerate``."""

    track_normalize = False
    max_segment_samples = None
    # trained on excerpts cut anywhere in tracks and made of convolutions over time only: a
    # window of any length separates as well, and silence padded past a track's end costs
    # quality near it (the engine's ``inside`` windows; model card, "Windows and level")
    variable_length = True
    # int8: the residual blocks stay float32. Each block's int8 projection adds its rounding to the
    # running sum, and the shipped weights lost up to 1.5 dB of SNR to float32 there (28.5 dB on
    # the example song, "other"), against 39-42 dB with the blocks kept (encode/decode still int8)
    int8_float_modules = ("blocks",)

    def __init__(self, config: MaskNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or MaskNetConfig()
        if cfg.kernel_size % 2 != 1:
            raise ModelError("masknet kernel_size must be odd (centred temporal convolutions)")
        self.config = cfg
        self.sources = tuple(cfg.sources)
        self.samplerate = int(cfg.samplerate)
        self.audio_channels = int(cfg.audio_channels)
        self.segment_samples = int(round(cfg.segment_s * cfg.samplerate))
        self.n_bins = cfg.n_fft // 2 + 1
        if not 0 < cfg.full_res_bins <= self.n_bins or cfg.high_group < 1:
            raise ModelError("masknet needs 0 < full_res_bins <= n_fft // 2 + 1 and high_group >= 1")
        if not 0.0 <= cfg.input_rms <= 1.0:
            raise ModelError(f"masknet input_rms must be in [0, 1] (0: the level as given), got {cfg.input_rms}")
        if cfg.stereo_side and cfg.audio_channels != 2:
            raise ModelError(f"masknet stereo_side needs audio_channels 2, got {cfg.audio_channels}")
        self.n_high = self.n_bins - cfg.full_res_bins
        self.n_groups = -(-self.n_high // cfg.high_group)
        c, s, d = self.audio_channels, len(self.sources), cfg.hidden
        f = cfg.full_res_bins + self.n_groups  # compressed bins
        self.n_masked = c * f  # the channels' own features, the first ones of a frame
        planes = c + int(cfg.stereo_side)  # feature planes: the channels, then the side
        # on the CPU even inside a `torch.device("meta")` context (the checkpoint loader's shape
        # probe): a meta hann_window goes through torch's decompositions, whose first use
        # imports sympy and some 800 modules (model card, "Speed and memory")
        self.register_buffer("window", torch.hann_window(cfg.n_fft, device="cpu"), persistent=False)
        # per-bin input standardisation, learned (log magnitudes differ by tens of dB across bins)
        self.in_shift = nn.Parameter(torch.zeros(planes, f))
        self.in_scale = nn.Parameter(torch.ones(planes, f))
        self.encode = nn.Linear(planes * f, d)
        self.enc_norm = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(
            _TemporalBlock(d, cfg.kernel_size, 2 ** i) for i in range(cfg.depth))
        self.recurrent = _RecurrentBlock(d, cfg.rnn_hidden) if cfg.rnn_hidden > 0 else None
        self.out_norm = nn.LayerNorm(d)
        self.decode = nn.Linear(d, s * c * f)
        # a per-(stem, channel, bin) affine function of the input level, added to the logits:
        # lets each bin lean towards the stem that usually owns it (e.g. bass at low bins)
        self.bin_gain = nn.Parameter(torch.zeros(s, c, f))

    def spectrogram(self, mix: torch.Tensor) -> torch.Tensor:
        """``(b, c, t)`` -> complex ``(b, c, f, n)``."""
        b, c, t = mix.shape
        spec = torch.stft(mix.reshape(b * c, t), self.config.n_fft, self.config.hop_length,
                          window=self.window, center=True, return_complex=True)
        return spec.reshape(b, c, self.n_bins, -1)

    def _compress(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, c, f, n)`` -> ``(b, c, f', n)``: high bins averaged in groups."""
        lo, hi = x[:, :, :self.config.full_res_bins], x[:, :, self.config.full_res_bins:]
        if self.n_high == 0:
            return lo
        pad = self.n_groups * self.config.high_group - self.n_high
        if pad:
            hi = torch.cat([hi, hi[:, :, -1:].expand(-1, -1, pad, -1)], dim=2)
        b, c, _, n = hi.shape
        hi = hi.reshape(b, c, self.n_groups, self.config.high_group, n).mean(dim=3)
        return torch.cat([lo, hi], dim=2)

    def _expand(self, m: torch.Tensor) -> torch.Tensor:
        """``(..., f')`` -> ``(..., f)``: each group's value repeated over its bins."""
        k = self.config.full_res_bins
        hi = m[..., k:].repeat_interleave(self.config.high_group, dim=-1)[..., :self.n_high]
        return torch.cat([m[..., :k], hi], dim=-1)

    def start_grown(self, new_keys: set[str]) -> None:
        """After growing from a trained masknet (``depth`` raised, an RNN added): each new temporal
        block's output projection is zeroed, so the block is the identity and the grown model
        separates exactly as the trained one until training moves it (the new recurrent block
        already starts that way)."""
        with torch.no_grad():
            for i, block in enumerate(self.blocks):
                if f"blocks.{i}.proj.weight" in new_keys:
                    block.proj.weight.zero_()
                    block.proj.bias.zero_()

    def grown_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A trained masknet's ``state`` made to fit this one when this one adds ``stereo_side``:
        the side plane's standardisation starts neutral and its encoder weights at zero, so the
        grown model separates exactly as the trained one until training moves them."""
        if not self.config.stereo_side or state["encode.weight"].shape == self.encode.weight.shape:
            return state
        state = dict(state)
        state["in_shift"] = torch.cat([state["in_shift"], torch.zeros_like(state["in_shift"][:1])])
        state["in_scale"] = torch.cat([state["in_scale"], torch.ones_like(state["in_scale"][:1])])
        w = state["encode.weight"]
        state["encode.weight"] = torch.cat([w, w.new_zeros(w.shape[0], self.encode.in_features - w.shape[1])], dim=1)
        return state

    @property
    def compression(self) -> tuple[int, int]:
        """How the bins are grouped: members of an ensemble that agree add their masks before
        expanding them to every bin."""
        return self.config.full_res_bins, self.config.high_group

    @property
    def feature_kind(self) -> tuple[int, int, bool]:
        """What the input features are: members of an ensemble that agree share them."""
        return *self.compression, self.config.stereo_side

    def level_gain(self, mix: torch.Tensor) -> torch.Tensor | None:
        """``(b, c, t)`` -> the gain ``(b, 1, 1, 1)`` that brings each item to ``input_rms``, or
        None when the model takes the level as given."""
        target = self.config.input_rms
        if not target:
            return None
        rms = mix.float().pow(2).mean(dim=(1, 2)).sqrt()
        # silence stays silence: the gain of a (near-)silent window is capped at +120 dB
        return (target / rms.clamp_min(target * 1e-6))[:, None, None, None]

    def features(self, spec: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """complex ``(b, c, f, n)`` -> the network's input ``(b, c', f', n)``: log magnitudes
        (of the spectrogram times ``gain``, see :meth:`level_gain`), the high bins averaged in groups;
        with ``stereo_side`` a third plane, the side signal's (``c' = c + 1``)."""
        if self.config.stereo_side:
            spec = torch.cat([spec, 0.5 * (spec[:, :1] - spec[:, 1:])], dim=1)
        mag = spec.abs() if gain is None else spec.abs() * gain
        return self._compress(torch.log1p(mag))

    @staticmethod
    def frames(x: torch.Tensor) -> torch.Tensor:
        """features ``(b, c', f', n)`` -> the same values frame by frame, ``(b, n, c'·f')``: the
        layout the per-frame projections read."""
        b, c, f, n = x.shape
        return x.permute(0, 3, 1, 2).reshape(b, n, c * f)

    def frame_logits(self, xt: torch.Tensor) -> torch.Tensor:
        """features frame by frame ``(b, n, c'·f')`` (:meth:`frames`) -> mask logits ``(b, n, s, c·f')``.

        Everything stays in the frame layout the projections produce: the softmax over the stems
        and an ensemble's sum of masks need no transposed copy of the (large) decoder output."""
        b, n, _ = xt.shape
        xt = (xt - self.in_shift.reshape(-1)) * self.in_scale.reshape(-1)  # standardised per bin
        h = F.gelu(self.enc_norm(self.encode(xt)))  # (b, n, d)
        for block in self.blocks:
            h = block(h)
        if self.recurrent is not None:
            h = self.recurrent(h)
        out = self.decode(self.out_norm(h)).reshape(b, n, len(self.sources), -1)
        return torch.addcmul(out, self.bin_gain.reshape(len(self.sources), -1), xt[:, :, None, :self.n_masked])

    def frame_probabilities(self, xt: torch.Tensor) -> torch.Tensor:
        """features frame by frame -> masks ``(b, n, s, c·f')`` summing to one over ``s``."""
        return torch.softmax(self.frame_logits(xt), dim=2)

    def expanded(self, frame_masks: torch.Tensor) -> torch.Tensor:
        """masks frame by frame ``(b, n, s, c·f')`` -> ``(b, s, c, f, n)`` over every bin."""
        b, n, s, _ = frame_masks.shape
        m = self._expand(frame_masks.reshape(b, n, s, self.audio_channels, -1))
        return m.permute(0, 2, 3, 4, 1)

    def masks(self, spec: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """complex ``(b, c, f, n)`` -> masks ``(b, s, c, f, n)`` summing to one over ``s``."""
        return self.expanded(self.frame_probabilities(self.frames(self.features(spec, gain))))

    def check_input(self, mix: torch.Tensor) -> None:
        if mix.dim() != 3 or mix.shape[1] != self.audio_channels:
            raise ModelError(f"masknet expects (batch, {self.audio_channels}, time), got {tuple(mix.shape)}")

    def waveforms(self, est: torch.Tensor, length: int) -> torch.Tensor:
        """complex ``(b, s, c, f, n)`` -> ``(b, s, c, t)`` with ``t = length``."""
        b, s, c = est.shape[:3]
        wav = torch.istft(est.reshape(b * s * c, self.n_bins, -1), self.config.n_fft,
                          self.config.hop_length, window=self.window, center=True, length=length)
        return wav.reshape(b, s, c, length)

    def padded(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix`` with silence appended up to the shortest input the centred STFT takes (its
        reflection padding needs more than ``n_fft // 2`` samples); the caller trims the output."""
        short = self.config.n_fft // 2 + 1 - mix.shape[-1]
        return F.pad(mix, (0, short)) if short > 0 else mix

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        self.check_input(mix)
        length = mix.shape[-1]
        gain = self.level_gain(mix)
        mix = self.padded(mix)
        spec = self.spectrogram(mix)
        return self.waveforms(self.masks(spec, gain) * spec[:, None], mix.shape[-1])[..., :length]


# what the members of an ensemble must share: one STFT of the mixture serves them all
_SHARED = ("sources", "samplerate", "audio_channels", "n_fft", "hop_length", "segment_s", "input_rms")
MAX_MEMBERS = 16


@dataclass(frozen=True)
class MaskNetEnsembleConfig:
    members: tuple[MaskNetConfig, ...]
    # the members of each pass (indices); () is one pass of every member
    passes: tuple[tuple[int, ...], ...] = ()
    # the stem each pass but the last takes out of what the next pass hears
    peel: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d: dict = {"members": [m.to_dict() for m in self.members]}
        if self.passes:
            d.update(passes=[list(p) for p in self.passes], peel=list(self.peel))
        return d


class MaskNetEnsemble(nn.Module):
    """Several masknets over one STFT: every member computes its masks from the same mixture
    spectrogram, the masks are averaged and one inverse STFT returns the stems.

    The output is exactly the mean of the members' own outputs (the inverse STFT is linear), for one
    STFT pair instead of one per member. The mean of masks that each sum to one sums to one, so the
    stems still sum to the mixture. Members trained apart (other data, other runs) make errors that
    partly cancel in the mean; the mean mask is also less extreme where the members disagree, which
    is what a squared-error measure such as the SDR rewards on music none of them has heard.

    With ``passes`` the members separate in turn instead of all at once: the first pass's members
    separate the mixture and its estimate of the stem ``peel[0]`` is taken out; the next pass
    separates what remains, its estimates of the stems already taken out are added to them and
    taken out too, and so on; the last pass keeps every stem. A pass that no longer hears the
    voice has the instruments' bins to itself, but members with soft masks give the voice a share
    of what remains too: whether it pays depends on the members (model card, "Vocals first").
    Each pass's stems sum to what it heard, so the stems still sum to the mixture; the cost is
    that of one pass of every member when each member runs once.
    """

    track_normalize = False
    max_segment_samples = None
    variable_length = True

    def __init__(self, members: list[MaskNet], passes=(), peel=()) -> None:
        super().__init__()
        if not 1 <= len(members) <= MAX_MEMBERS:
            raise ModelError(f"a masknet ensemble has 1 to {MAX_MEMBERS} members, got {len(members)}")
        first = members[0].config
        for i, m in enumerate(members[1:], start=1):
            differ = [k for k in _SHARED if getattr(m.config, k) != getattr(first, k)]
            if differ:
                raise ModelError(f"masknet ensemble member {i} differs from member 0 in {differ}: "
                                 f"the members share one STFT, so {list(_SHARED)} must be equal")
        self.members = nn.ModuleList(members)
        self.config = MaskNetEnsembleConfig(tuple(m.config for m in members),
                                            *_checked_passes(passes, peel, len(members), first.sources))
        self.sources = members[0].sources
        self.samplerate = members[0].samplerate
        self.audio_channels = members[0].audio_channels
        self.segment_samples = members[0].segment_samples
        self.int8_float_modules = tuple(f"members.{i}.{name}" for i, m in enumerate(members)
                                        for name in m.int8_float_modules)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        self.members[0].check_input(mix)
        passes = self.config.passes or (tuple(range(len(self.members))),)
        out = None  # the stems taken out so far
        taken: list[int] = []
        for indices, stem in zip(passes, self.config.peel):
            est = self._separate(mix, [self.members[j] for j in indices])
            taken.append(self.sources.index(stem))
            kept = torch.zeros_like(est)
            kept[:, taken] = est[:, taken]
            out = kept if out is None else out + kept
            mix = mix - kept.sum(dim=1)
        est = self._separate(mix, [self.members[j] for j in passes[-1]])
        return est if out is None else out + est

    def _separate(self, mix: torch.Tensor, members: list[MaskNet]) -> torch.Tensor:
        """One pass: the mean of ``members``' masks over one STFT of ``mix``."""
        lead = members[0]
        length = mix.shape[-1]
        gain = lead.level_gain(mix)
        mix = lead.padded(mix)
        spec = lead.spectrogram(mix)
        # members that take the same features share them, and members that group the bins alike
        # add their masks before the expansion back to every bin (a repetition, so linear)
        features: dict[tuple, torch.Tensor] = {}
        summed: dict[tuple[int, int], tuple[MaskNet, torch.Tensor]] = {}
        for member in members:
            kind = member.feature_kind
            if kind not in features:
                features[kind] = member.frames(member.features(spec, gain))
            p = member.frame_probabilities(features[kind])
            group = member.compression
            summed[group] = (summed[group][0], summed[group][1] + p) if group in summed else (member, p)
        masks = None
        for member, p in summed.values():
            expanded = member.expanded(p)
            masks = expanded if masks is None else masks + expanded
        return lead.waveforms(masks * (spec[:, None] / len(members)), mix.shape[-1])[..., :length]


def _checked_passes(passes, peel, count: int, sources: tuple[str, ...]) -> tuple[tuple, tuple]:
    """``passes`` as tuples of member indices and ``peel`` as stem names, or a :class:`ModelError`
    saying what is wrong: every member in some pass, one stem taken out per pass but the last."""
    if not passes:
        if peel:
            raise ModelError("masknet ensemble 'peel' needs 'passes'")
        return (), ()
    if not isinstance(passes, (list, tuple)) or not all(isinstance(p, (list, tuple)) and p for p in passes):
        raise ModelError("masknet ensemble 'passes' must be a list of non-empty lists of member indices")
    flat = [j for p in passes for j in p]
    if not all(isinstance(j, int) and not isinstance(j, bool) and 0 <= j < count for j in flat):
        raise ModelError(f"masknet ensemble 'passes' must hold member indices 0-{count - 1}, got {list(passes)}")
    unused = sorted(set(range(count)) - set(flat))
    if unused:
        raise ModelError(f"masknet ensemble members {unused} are in no pass")
    if not isinstance(peel, (list, tuple)) or len(peel) != len(passes) - 1:
        raise ModelError(f"masknet ensemble 'peel' names one stem for each pass but the last "
                         f"({len(passes) - 1}), got {peel!r}")
    unknown = [s for s in peel if s not in sources]
    if unknown or len(set(peel)) != len(peel):
        raise ModelError(f"masknet ensemble 'peel' must name distinct stems of {list(sources)}, got {list(peel)}")
    return tuple(tuple(p) for p in passes), tuple(peel)


def _config(kwargs: dict) -> MaskNetConfig:
    known = {f.name for f in fields(MaskNetConfig)}
    unknown = set(kwargs) - known
    if unknown:
        raise ModelError(f"unknown masknet config keys {sorted(unknown)}; known: {sorted(known)}")
    kw = dict(kwargs)
    if "sources" in kw:
        kw["sources"] = tuple(kw["sources"])
    return MaskNetConfig(**kw)


def from_reference_kwargs(kwargs: dict) -> MaskNet | MaskNetEnsemble:
    """One masknet from its config keys, or ``{"members": [config, ...]}``: an ensemble of
    masknets sharing one STFT (:class:`MaskNetEnsemble`)."""
    if "members" not in kwargs:
        return MaskNet(_config(kwargs))
    members = kwargs["members"]
    extra = set(kwargs) - {"members", "passes", "peel"}
    if extra:
        raise ModelError(f"a masknet ensemble config has only 'members', 'passes' and 'peel'; also got {sorted(extra)}")
    if not isinstance(members, (list, tuple)) or not all(isinstance(m, dict) for m in members):
        raise ModelError("masknet 'members' must be a list of masknet configs (mappings)")
    if not 1 <= len(members) <= MAX_MEMBERS:
        raise ModelError(f"a masknet ensemble has 1 to {MAX_MEMBERS} members, got {len(members)}")
    return MaskNetEnsemble([MaskNet(_config(m)) for m in members], kwargs.get("passes", ()), kwargs.get("peel", ()))
