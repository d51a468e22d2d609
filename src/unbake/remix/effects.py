"""Per-track and master effects (EQ bands, compressor, reverb): parsing from project files and
building a pedalboard chain. Audio is float32 ``(c, t)`` at ``sample_rate``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .._schema import fail, join, validate
from .schema import CompressorSettings, EqBand, EqList, ReverbSettings, TrackSettings


def parse_eq(value: Any, path: str) -> list[EqBand]:
    """A list of bands ``{type, freq_hz, gain_db, q}``; ``None`` is no EQ."""
    return validate(EqList, value, path)


def parse_compressor(value: Any, path: str) -> CompressorSettings | None:
    """``{threshold_db, ratio, attack_ms, release_ms}``; ``None`` is no compressor."""
    return None if value is None else validate(CompressorSettings, value, path)


def parse_reverb(value: Any, path: str) -> ReverbSettings | None:
    """``{room_size, damping, wet, dry, width}`` each 0..1; ``None`` is no reverb."""
    return None if value is None else validate(ReverbSettings, value, path)


def build_chain(eq: Sequence[EqBand] = (), compressor: CompressorSettings | None = None,
                reverb: ReverbSettings | None = None):
    """A ``pedalboard.Pedalboard``: EQ bands in order, then the compressor, then the reverb.
    Neutral parts (a 1:1 compressor) are left out, so an empty chain means "no processing"."""
    import pedalboard as pb

    plugins = [band.effect() for band in eq]
    if compressor is not None and not compressor.neutral:
        plugins.append(compressor.effect())
    if reverb is not None:
        plugins.append(reverb.effect())
    return pb.Pedalboard(plugins)


def check_nyquist(eq: Sequence[EqBand], sample_rate: int, path: str) -> None:
    """Bands must sit below half the sample rate of the audio they are applied to."""
    for i, band in enumerate(eq):
        if band.freq_hz >= sample_rate / 2:
            raise fail(join(join(path, i), "freq_hz"),
                       f"{band.freq_hz:g} Hz is not below half the sample rate ({sample_rate} Hz audio)")


def apply_chain(board, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Run ``board`` on ``audio (c, t)``; returns a new float32 ``(c, t)``. The input is not
    modified; an empty board returns the input values unchanged (a copy)."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise ValueError(f"audio must be shaped (channels, time), got {audio.shape}")
    if len(board) == 0:
        return audio.copy()
    if audio.shape[1] <= audio.shape[0]:
        # pedalboard infers the layout from the shape; pad so (c, t) cannot be read as (t, c)
        padded = np.zeros((audio.shape[0], audio.shape[0] + 1), np.float32)
        padded[:, : audio.shape[1]] = audio
        return apply_chain(board, padded, sample_rate)[:, : audio.shape[1]]
    out = board(np.ascontiguousarray(audio), float(sample_rate), reset=True)
    return np.asarray(out, dtype=np.float32)


@dataclass
class TrackFx:
    """The insert effects of one track; ``fx(audio (c, t), sample_rate) -> (c, t)``."""

    eq: list[EqBand] = field(default_factory=list)
    compressor: CompressorSettings | None = None
    reverb: ReverbSettings | None = None

    @classmethod
    def of(cls, settings: TrackSettings) -> "TrackFx":
        return cls(list(settings.eq), settings.compressor, settings.reverb)

    @property
    def neutral(self) -> bool:
        return not self.eq and (self.compressor is None or self.compressor.neutral) and self.reverb is None

    def board(self):
        return build_chain(eq=self.eq, compressor=self.compressor, reverb=self.reverb)

    def __call__(self, audio: np.ndarray, sample_rate: int, *, path: str = "") -> np.ndarray:
        if self.neutral:
            return np.array(audio, dtype=np.float32, copy=True)
        check_nyquist(self.eq, sample_rate, join(path, "eq"))
        return apply_chain(self.board(), audio, sample_rate)


__all__ = ["CompressorSettings", "EqBand", "ReverbSettings", "TrackFx", "apply_chain", "build_chain", "check_nyquist", "parse_compressor", "parse_eq", "parse_reverb"]
