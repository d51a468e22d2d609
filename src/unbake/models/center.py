"""The pre-ML baseline: centre extraction. Lead vocals are usually panned to the centre, so what
both channels share approximates them and the rest is the accompaniment. Every learned model
must beat it.

Two methods:

* ``spectral`` (default): per STFT bin, the inter-channel similarity
  ``psi = 2|L R*| / (|L|^2 + |R|^2)`` (1 for a centred source, 0 for a hard-panned one) raised to
  ``sharpness`` masks the mid signal ``(L + R) / 2`` inside the vocal band
  ``[low_hz, high_hz]``; everything else is accompaniment.
* ``midside``: vocals = mid in both channels, accompaniment = side (the textbook trick; it puts
  bass and drums, also centred, into the vocals).

Either way ``accompaniment = mix - vocals``, so the stems sum to the mix exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

METHODS = ("spectral", "midside")


class CenterExtraction(nn.Module):
    """``(b, 2, t) -> (b, 2, 2, t)``: stems ``vocals`` and ``accompaniment``.

    Mono input (duplicated to two identical channels) has no spatial cue: the whole vocal band
    then goes to ``vocals``.
    """

    samplerate = 44100
    audio_channels = 2
    segment_samples = 44100 * 10
    max_segment_samples = None
    track_normalize = False

    def __init__(self, sources: tuple[str, ...] = ("vocals", "accompaniment"), method: str = "spectral",
                 sharpness: float = 8.0, low_hz: float = 150.0, high_hz: float = 10_000.0,
                 n_fft: int = 4096) -> None:
        super().__init__()
        if len(sources) != 2:
            raise ValueError("center extraction produces exactly two stems")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}")
        self.sources = tuple(sources)
        self.method = method
        self.sharpness = float(sharpness)
        self.low_hz, self.high_hz = float(low_hz), float(high_hz)
        self.n_fft = int(n_fft)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        mid = mix.mean(dim=1, keepdim=True)
        if self.method == "midside":
            vocals = mid.expand_as(mix)
        else:
            vocals = self._spectral(mix).unsqueeze(1).expand_as(mix)
        return torch.stack([vocals, mix - vocals], dim=1)

    def _spectral(self, mix: torch.Tensor) -> torch.Tensor:
        b, c, t = mix.shape
        n_fft = min(self.n_fft, 2 ** max(4, int(math.log2(max(t, 16)))))
        hop = n_fft // 4
        window = torch.hann_window(n_fft, device=mix.device, dtype=mix.dtype)
        spec = torch.stft(mix.reshape(b * c, t), n_fft, hop, window=window, return_complex=True,
                          pad_mode="constant")
        spec = spec.reshape(b, c, *spec.shape[-2:])
        left, right = spec[:, 0], spec[:, -1]
        psi = 2 * (left * right.conj()).abs() / (left.abs() ** 2 + right.abs() ** 2 + 1e-12)
        freqs = torch.fft.rfftfreq(n_fft, 1 / self.samplerate).to(mix.device)[:, None]
        band = ((freqs >= self.low_hz) & (freqs <= self.high_hz)).to(mix.dtype)
        mask = psi.clamp(0, 1) ** self.sharpness * band
        centre = (left + right) / 2 * mask
        return torch.istft(centre, n_fft, hop, window=window, length=t)


def from_reference_kwargs(kwargs: dict) -> CenterExtraction:
    kw = dict(kwargs)
    if "sources" in kw:
        kw["sources"] = tuple(kw["sources"])
    return CenterExtraction(**kw)
