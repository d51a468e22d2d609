"""Per-track and master effects (EQ bands, compressor, reverb): parsing from project files and
building a pedalboard chain. Audio is float32 ``(c, t)`` at ``sample_rate``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .schema import check_keys, fail, get_number, get_str, join

EQ_TYPES = ("low_shelf", "high_shelf", "peak", "low_pass", "high_pass")
# pedalboard's low/high-pass filters are first order (6 dB/octave): they take no gain and no Q
_SHAPED = ("low_shelf", "high_shelf", "peak")
FREQ_RANGE_HZ = (10.0, 22000.0)
DEFAULT_Q = 0.7071


@dataclass(frozen=True)
class EqBand:
    """One EQ band. ``gain_db`` and ``q`` apply to shelves and peaks only."""

    type: str
    freq_hz: float
    gain_db: float = 0.0
    q: float = DEFAULT_Q

    def effect(self):
        import pedalboard as pb

        if self.type == "low_shelf":
            return pb.LowShelfFilter(cutoff_frequency_hz=self.freq_hz, gain_db=self.gain_db, q=self.q)
        if self.type == "high_shelf":
            return pb.HighShelfFilter(cutoff_frequency_hz=self.freq_hz, gain_db=self.gain_db, q=self.q)
        if self.type == "peak":
            return pb.PeakFilter(cutoff_frequency_hz=self.freq_hz, gain_db=self.gain_db, q=self.q)
        if self.type == "low_pass":
            return pb.LowpassFilter(cutoff_frequency_hz=self.freq_hz)
        return pb.HighpassFilter(cutoff_frequency_hz=self.freq_hz)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"type": self.type, "freq_hz": self.freq_hz}
        if self.type in _SHAPED:
            d.update(gain_db=self.gain_db, q=self.q)
        return d


@dataclass(frozen=True)
class CompressorSettings:
    """Downward compressor; ``ratio`` 1 (the default) is no compression."""

    threshold_db: float = 0.0
    ratio: float = 1.0
    attack_ms: float = 10.0
    release_ms: float = 100.0

    @property
    def neutral(self) -> bool:
        return self.ratio == 1.0

    def effect(self):
        import pedalboard as pb

        return pb.Compressor(threshold_db=self.threshold_db, ratio=self.ratio,
                             attack_ms=self.attack_ms, release_ms=self.release_ms)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ReverbSettings:
    """Freeverb-style reverb as an insert: ``dry`` 1 keeps the track at its level."""

    room_size: float = 0.5
    damping: float = 0.5
    wet: float = 0.2
    dry: float = 1.0
    width: float = 1.0

    def effect(self):
        import pedalboard as pb

        return pb.Reverb(room_size=self.room_size, damping=self.damping, wet_level=self.wet,
                         dry_level=self.dry, width=self.width)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def parse_eq(value: Any, path: str) -> list[EqBand]:
    """A list of bands ``{type, freq_hz, gain_db, q}``; ``None`` is no EQ."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(path, "must be a list of bands (- type: peak ...)")
    bands = []
    for i, item in enumerate(value):
        where = join(path, i)
        band_type = get_str(check_keys(item, ("type", "freq_hz", "gain_db", "q"), where), "type", where,
                            required=True, choices=EQ_TYPES)
        if band_type not in _SHAPED:
            for key in ("gain_db", "q"):
                if key in item:
                    raise fail(join(where, key), f"not used by {band_type} (a first-order 6 dB/octave filter)")
        freq = get_number(item, "freq_hz", where, lo=FREQ_RANGE_HZ[0], hi=FREQ_RANGE_HZ[1], required=True)
        gain = get_number(item, "gain_db", where, 0.0, -36.0, 36.0)
        q = get_number(item, "q", where, DEFAULT_Q, 0.05, 20.0)
        bands.append(EqBand(band_type, freq, gain, q))
    return bands


def parse_compressor(value: Any, path: str) -> CompressorSettings | None:
    """``{threshold_db, ratio, attack_ms, release_ms}``; ``None`` is no compressor."""
    if value is None:
        return None
    check_keys(value, ("threshold_db", "ratio", "attack_ms", "release_ms"), path)
    d = CompressorSettings()
    return CompressorSettings(
        threshold_db=get_number(value, "threshold_db", path, d.threshold_db, -80.0, 0.0),
        ratio=get_number(value, "ratio", path, d.ratio, 1.0, 100.0),
        attack_ms=get_number(value, "attack_ms", path, d.attack_ms, 0.01, 1000.0),
        release_ms=get_number(value, "release_ms", path, d.release_ms, 1.0, 10000.0),
    )


def parse_reverb(value: Any, path: str) -> ReverbSettings | None:
    """``{room_size, damping, wet, dry, width}`` each 0..1; ``None`` is no reverb."""
    if value is None:
        return None
    check_keys(value, ("room_size", "damping", "wet", "dry", "width"), path)
    d = ReverbSettings()
    return ReverbSettings(**{k: get_number(value, k, path, getattr(d, k), 0.0, 1.0)
                             for k in ("room_size", "damping", "wet", "dry", "width")})


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
    def parse(cls, mapping: Mapping, path: str) -> "TrackFx":
        """Reads ``eq``, ``compressor`` and ``reverb`` from a track's (already key-checked) mapping."""
        return cls(parse_eq(mapping.get("eq"), join(path, "eq")),
                   parse_compressor(mapping.get("compressor"), join(path, "compressor")),
                   parse_reverb(mapping.get("reverb"), join(path, "reverb")))

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

    def to_dict(self) -> dict:
        d: dict[str, Any] = {}
        if self.eq:
            d["eq"] = [b.to_dict() for b in self.eq]
        if self.compressor is not None:
            d["compressor"] = self.compressor.to_dict()
        if self.reverb is not None:
            d["reverb"] = self.reverb.to_dict()
        return d
