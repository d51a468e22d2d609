"""Training losses for separation: waveform L1, multi-resolution STFT loss and the negated uSDR.

Every loss takes estimates and references of the same shape ``(b, s, c, t)`` and returns a
scalar tensor (mean over everything), so they can be weighted and summed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..metrics.sdr import USDR_EPS


def l1_wave(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean absolute sample error."""
    _check(est, ref)
    return (est - ref).abs().mean()


# the metric's own epsilon, so the loss is exactly the negated per-excerpt uSDR that validation
# averages; it also keeps log and gradient finite when a reference stem is silent
SDR_EPS = USDR_EPS


def sdr(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Negated uSDR in dB, averaged over (batch, stem): per excerpt and stem,
    ``-10 log10((‖s‖² + eps) / (‖s − ŝ‖² + eps))`` with the sums over channels and time and
    ``eps = SDR_EPS`` (:data:`unbake.metrics.USDR_EPS`). Unlike L1 it weighs every stem of
    every excerpt equally whatever its level, as the metric does."""
    _check(est, ref)
    num = ref.pow(2).sum(dim=(-2, -1)) + SDR_EPS
    den = (ref - est).pow(2).sum(dim=(-2, -1)) + SDR_EPS
    return -10.0 * torch.log10(num / den).mean()


def _stft_mag(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, n_fft // 4, window=window,
                      center=True, return_complex=True)
    # the floor keeps the log and the sqrt gradient finite in digital silence
    return spec.abs().clamp_min(1e-5)


def mrstft(est: torch.Tensor, ref: torch.Tensor, n_ffts: tuple[int, ...] = (512, 1024, 2048)) -> torch.Tensor:
    """Multi-resolution STFT loss: per resolution, spectral convergence
    ``‖|R| − |E|‖_F / ‖|R|‖_F`` plus mean ``|log|R| − log|E||``; averaged over resolutions."""
    _check(est, ref)
    total = est.new_zeros(())
    for n_fft in n_ffts:
        e, r = _stft_mag(est, n_fft), _stft_mag(ref, n_fft)
        sc = torch.linalg.vector_norm(r - e) / torch.linalg.vector_norm(r).clamp_min(1e-8)
        total = total + sc + (r.log() - e.log()).abs().mean()
    return total / len(n_ffts)


def _check(est: torch.Tensor, ref: torch.Tensor) -> None:
    if est.shape != ref.shape:
        raise ValueError(f"estimate shape {tuple(est.shape)} != reference shape {tuple(ref.shape)}")


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms (0 disables one) and the STFT sizes of ``mrstft``."""

    l1_wave: float = 1.0
    mrstft: float = 0.0
    mrstft_ffts: tuple[int, ...] = (512, 1024, 2048)
    sdr: float = 0.0

    @classmethod
    def from_dict(cls, raw: dict | None) -> "LossConfig":
        raw = dict(raw or {})
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown loss keys {sorted(unknown)}")
        if "mrstft_ffts" in raw:
            raw["mrstft_ffts"] = tuple(int(n) for n in raw["mrstft_ffts"])
        cfg = cls(**raw)
        if cfg.l1_wave < 0 or cfg.mrstft < 0 or cfg.sdr < 0 or cfg.l1_wave + cfg.mrstft + cfg.sdr == 0:
            raise ConfigError("loss weights must be >= 0 and not all zero")
        return cfg


def separation_loss(est: torch.Tensor, ref: torch.Tensor, cfg: LossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted sum, and each term as a float for the logs."""
    parts: dict[str, torch.Tensor] = {}
    if cfg.l1_wave:
        parts["l1_wave"] = l1_wave(est, ref)
    if cfg.mrstft:
        parts["mrstft"] = mrstft(est, ref, cfg.mrstft_ffts)
    if cfg.sdr:
        parts["sdr"] = sdr(est, ref)
    weights = {"l1_wave": cfg.l1_wave, "mrstft": cfg.mrstft, "sdr": cfg.sdr}
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}
