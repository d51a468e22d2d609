"""One pass over a finished separation, block by block: waveform peaks, BS.1770 loudness (the
figures pyloudnorm gives, as ``unbake remix`` measures) and the ``unbake check`` report, so the
studio's memory stays flat in the track length however long the song is.

Loudness is kept as K-weighted inner products of every pair of signals per 100 ms gating segment
and channel (:class:`LoudnessGram`): the loudness of the original, of each stem and of any mix of
the stems with gains and pans (the A/B match) follows from them without reading the audio again.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

PEAK_BUCKETS = 1200
# BS.1770-4 gating, as pyloudnorm implements it: 400 ms blocks every 100 ms
GATE_BLOCK_S = 0.4
GATE_STEP = 0.25
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)
# the Welch segment of the residual band report (unbake.metrics.consistency)
WELCH_SEGMENT_SAMPLES = 8192


# ------------------------------------------------------------------------------ peaks


class PeakMeter:
    """Largest absolute sample over all channels in ``buckets`` equal spans of ``frames``."""

    def __init__(self, frames: int, buckets: int = PEAK_BUCKETS) -> None:
        edges = np.linspace(0, frames, buckets + 1).astype(np.int64)
        self.starts = np.minimum(edges[:-1], max(frames - 1, 0))
        self.values = np.zeros(buckets, np.float32)
        self.pos = 0

    def add(self, block: np.ndarray) -> None:
        n = block.shape[1]
        if n == 0:
            return
        mag = np.abs(block).max(axis=0)
        s, e = self.pos, self.pos + n
        lo = int(np.searchsorted(self.starts, s, "left"))
        if lo == len(self.starts) or self.starts[lo] > s:
            lo -= 1  # the bucket that began in an earlier block
        hi = int(np.searchsorted(self.starts, e, "left"))
        local = np.clip(self.starts[lo:hi] - s, 0, n - 1)
        self.values[lo:hi] = np.maximum(self.values[lo:hi], np.maximum.reduceat(mag, local))
        self.pos = e

    def result(self) -> list[float]:
        return [round(float(v), 4) for v in self.values]


# ------------------------------------------------------------------------------ loudness


class KWeighting:
    """pyloudnorm's K-weighting filter stages run block by block (filter state carried over)."""

    def __init__(self, sample_rate: int) -> None:
        import pyloudnorm

        # the meter's own stages, so the streamed figure is the meter's figure
        self.stages = [(f.b, f.a, f.passband_gain) for f in pyloudnorm.Meter(sample_rate)._filters.values()]
        self.state: list[np.ndarray | None] = [None] * len(self.stages)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x (..., n)`` float64 -> the K-weighted signal, same shape."""
        from scipy.signal import lfilter

        for k, (b, a, gain) in enumerate(self.stages):
            if self.state[k] is None:
                self.state[k] = np.zeros(x.shape[:-1] + (max(len(a), len(b)) - 1,))
            y, self.state[k] = lfilter(b, a, x, axis=-1, zi=self.state[k])
            x = gain * y
        return x


def gating_plan(frames: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Segment edges and, per gating block, its first and end segment index; None when the
    audio is shorter than a gating block (no loudness is defined)."""
    if frames < int(GATE_BLOCK_S * sample_rate) + 1:
        return None
    # the expressions pyloudnorm evaluates, so block bounds fall on the same samples
    duration_s = frames / sample_rate
    n_blocks = int(np.round((duration_s - GATE_BLOCK_S) / (GATE_BLOCK_S * GATE_STEP))) + 1
    j = np.arange(n_blocks)
    lo = np.minimum((GATE_BLOCK_S * (j * GATE_STEP) * sample_rate).astype(np.int64), frames)
    hi = np.minimum((GATE_BLOCK_S * (j * GATE_STEP + 1) * sample_rate).astype(np.int64), frames)
    edges = np.unique(np.concatenate([lo, hi, [0, frames]]))
    return edges, np.searchsorted(edges, lo), np.searchsorted(edges, hi)


def gated_lufs(z: np.ndarray) -> float | None:
    """Integrated loudness from mean squares ``z (channels, blocks)`` of the gating blocks;
    None for silence or more than five channels."""
    if z.shape[0] > len(CHANNEL_WEIGHTS) or z.shape[1] == 0:
        return None
    weights = np.asarray(CHANNEL_WEIGHTS[: z.shape[0]])[:, None]
    with np.errstate(divide="ignore"):
        block = -0.691 + 10.0 * np.log10(np.sum(weights * z, axis=0))
        above = block >= ABSOLUTE_GATE_LUFS
        if not above.any():
            return None
        relative = -0.691 + 10.0 * math.log10(float(np.sum(weights[:, 0] * z[:, above].mean(axis=1)))) \
            + RELATIVE_GATE_LU
        keep = (block > relative) & above
        if not keep.any():
            return None
        value = -0.691 + 10.0 * math.log10(float(np.sum(weights[:, 0] * z[:, keep].mean(axis=1))))
    return value if math.isfinite(value) else None


class LoudnessGram:
    """K-weighted inner products ``<x_i, x_j>`` of ``k`` signals per gating segment and channel.

    ``gram`` is ``(segments, channels, k, k)``; the energy of any per-channel linear mix of the
    signals in a segment is ``w^T gram w``, so the loudness of every mix follows from it.
    """

    def __init__(self, frames: int, sample_rate: int, channels: int, k: int) -> None:
        self.sample_rate = sample_rate
        self.frames = frames
        self.plan = gating_plan(frames, sample_rate)
        segments = 0 if self.plan is None else len(self.plan[0]) - 1
        self.gram = np.zeros((segments, channels, k, k))
        self.filter = KWeighting(sample_rate)
        self.pos = 0

    def add(self, signals: np.ndarray) -> None:
        """``signals (k, c, n)`` float64, the next ``n`` frames of every signal."""
        n = signals.shape[-1]
        weighted = self.filter(signals)
        if self.plan is not None and n:
            edges = self.plan[0]
            s, e = self.pos, self.pos + n
            inner = edges[(edges > s) & (edges < e)]
            local = np.concatenate([[0], inner - s]).astype(np.int64)
            segs = int(np.searchsorted(edges, s, "right")) - 1 + np.arange(len(local))
            bounds = np.append(local, n)
            for seg, a, b in zip(segs, bounds[:-1], bounds[1:]):
                x = weighted[:, :, a:b].transpose(1, 0, 2)  # (c, k, m)
                self.gram[seg] += x @ x.transpose(0, 2, 1)
        self.pos += n

    def lufs(self, weights: np.ndarray, sources: Sequence[int] | None = None) -> float | None:
        """Loudness of the mix ``sum_i weights[c, i] * x_i[sources[c]]`` for each output channel
        ``c`` (``sources`` default: channel c from channel c)."""
        return lufs_from_gram(self.gram, self.plan, self.sample_rate, weights, sources)

    def save(self, path) -> None:
        from .._common import atomic_path

        edges = np.zeros(0, np.int64) if self.plan is None else self.plan[0]
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, gram=self.gram, edges=edges, frames=self.frames, sample_rate=self.sample_rate)


def lufs_from_gram(gram: np.ndarray, plan, sample_rate: int, weights: np.ndarray,
                   sources: Sequence[int] | None = None) -> float | None:
    if plan is None or gram.shape[0] == 0:
        return None
    _, first, end = plan
    weights = np.asarray(weights, np.float64)
    sources = list(range(weights.shape[0])) if sources is None else list(sources)
    energy = np.stack([np.einsum("i,sij,j->s", w, gram[:, src], w) for w, src in zip(weights, sources)])
    cumulative = np.concatenate([np.zeros((energy.shape[0], 1)), np.cumsum(energy, axis=1)], axis=1)
    z = (cumulative[:, end] - cumulative[:, first]) / (GATE_BLOCK_S * sample_rate)
    return gated_lufs(z)


def load_gram(path) -> tuple[np.ndarray, Any, int]:
    """``(gram, plan, sample_rate)`` as :meth:`LoudnessGram.save` wrote them."""
    with np.load(path) as data:
        gram, frames, rate = data["gram"], int(data["frames"]), int(data["sample_rate"])
    return gram, gating_plan(frames, rate), rate


def ab_match(gram: np.ndarray, plan, sample_rate: int, stems: Sequence[str],
             tracks: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """Loudness of the stems mixed with their faders, pans, mutes and solos (as the browser plays
    them, effects and master left out) and of the original (signal 0 of the gram), and the gain
    that brings the original to the mix. Mono plays as dual mono, as in the remix engine."""
    from ..remix.mixer import balance_gains

    channels = gram.shape[1]
    sources = [0, min(1, channels - 1)]
    any_solo = any(bool((tracks.get(s) or {}).get("solo")) for s in stems)
    weights = np.zeros((2, len(stems) + 1))
    for i, name in enumerate(stems, start=1):
        t = tracks.get(name) or {}
        if t.get("mute") or (any_solo and not t.get("solo")):
            continue
        gain = 10.0 ** (float(t.get("gain_db", 0.0)) / 20.0)
        left, right = balance_gains(float(t.get("pan", 0.0)))
        weights[:, i] = gain * float(left), gain * float(right)
    original = np.zeros_like(weights)
    original[:, 0] = 1.0
    mix_lufs = lufs_from_gram(gram, plan, sample_rate, weights, sources)
    original_lufs = lufs_from_gram(gram, plan, sample_rate, original, sources)
    gain_db = mix_lufs - original_lufs if mix_lufs is not None and original_lufs is not None else None
    return {"mix_lufs": round_or_none(mix_lufs), "original_lufs": round_or_none(original_lufs),
            "gain_db": round_or_none(gain_db)}


def round_or_none(x: float | None, digits: int = 2) -> float | None:
    """A figure for JSON: rounded, or None when undefined or infinite."""
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


# ------------------------------------------------------------------------------ the check report


class WelchSum:
    """scipy's Welch spectra (``nperseg`` = 8192 or the whole signal, half overlap, Hann, no
    detrending, "spectrum" scaling) of ``(..., n)`` signals fed block by block."""

    def __init__(self, frames: int, sample_rate: int) -> None:
        self.nperseg = max(1, min(WELCH_SEGMENT_SAMPLES, frames))
        self.step = self.nperseg - self.nperseg // 2
        self.sample_rate = sample_rate
        self.carry: np.ndarray | None = None
        self.power: np.ndarray | None = None
        self.freqs: np.ndarray | None = None
        self.count = 0

    def add(self, x: np.ndarray) -> None:
        from scipy.signal import welch

        buf = x if self.carry is None else np.concatenate([self.carry, x], axis=-1)
        length = buf.shape[-1]
        if length < self.nperseg:
            self.carry = buf
            return
        k = (length - self.nperseg) // self.step + 1
        used = (k - 1) * self.step + self.nperseg
        self.freqs, p = welch(buf[..., :used], fs=self.sample_rate, nperseg=self.nperseg,
                              noverlap=self.nperseg // 2, detrend=False, scaling="spectrum", axis=-1)
        self.power = p * k if self.power is None else self.power + p * k
        self.count += k
        self.carry = buf[..., k * self.step:]

    def mean(self) -> tuple[np.ndarray, np.ndarray]:
        return self.freqs, self.power / self.count


class CheckStats:
    """Sums behind the ``unbake check`` report of a mixture and ``k`` stems, fed block by block."""

    def __init__(self, names: Sequence[str], frames: int, sample_rate: int) -> None:
        k = len(names)
        self.names = tuple(names)
        self.sample_rate = sample_rate
        self.frames = 0
        self.mix_energy = 0.0
        self.residual_energy = 0.0
        self.residual_peak = 0.0
        self.gram = np.zeros((k, k))          # stems, all channels
        self.distance = np.zeros(k)           # sum((mix - stem_i)^2), for uSDR
        self.mono_sum = np.zeros(k)
        self.mono_gram = np.zeros((k, k))     # mono sums, for correlations
        self.welch = WelchSum(frames, sample_rate)

    def add(self, mix: np.ndarray, stems: np.ndarray) -> None:
        """``mix (c, n)`` and ``stems (k, c, n)``, float64."""
        residual = mix - stems.sum(axis=0)
        flat = stems.reshape(stems.shape[0], -1)
        mono = stems.sum(axis=1)
        self.frames += mix.shape[-1]
        self.mix_energy += float(np.sum(mix ** 2))
        self.residual_energy += float(np.sum(residual ** 2))
        self.residual_peak = max(self.residual_peak, float(np.max(np.abs(residual), initial=0.0)))
        self.gram += flat @ flat.T
        self.distance += np.sum((mix[None] - stems) ** 2, axis=(1, 2))
        self.mono_sum += mono.sum(axis=-1)
        self.mono_gram += mono @ mono.T
        self.welch.add(np.stack([mix, residual]))

    def report(self) -> dict[str, Any]:
        """The dict :func:`unbake.metrics.report.check_stemset` returns, from the sums."""
        from ..metrics.report import CONSISTENT_SNR_DB
        from ..metrics.sdr import db_or_none, energy_db

        snr = db_or_none(energy_db(self.mix_energy, self.residual_energy))
        triv = self._triviality()
        return {
            "consistency_snr_db": snr if snr is not None else 0.0,
            "consistent": bool(snr is not None and snr >= CONSISTENT_SNR_DB),
            "consistency_threshold_db": CONSISTENT_SNR_DB,
            "residual_bands": self._bands(),
            "trivial": triv["trivial"],
            "trivial_reason": ", ".join(triv["reasons"]),
            "stems": triv["stems"],
            "correlations": triv["correlations"],
            "thresholds": triv["thresholds"],
            "duration_s": self.frames / self.sample_rate,
            "sample_rate": self.sample_rate,
        }

    def _bands(self) -> list[dict[str, Any]]:
        from ..metrics import OCTAVE_BAND_EDGES_HZ
        from ..metrics.sdr import db_or_none, energy_db

        freqs, power = self.welch.mean()
        power = power.sum(axis=1)  # (2, f): mixture, residual; channels summed
        nyquist = self.sample_rate / 2.0
        bands = []
        for low, high in zip(OCTAVE_BAND_EDGES_HZ[:-1], OCTAVE_BAND_EDGES_HZ[1:]):
            if low >= nyquist:
                break
            high = min(high, nyquist)
            inside = (freqs >= low) & ((freqs < high) | ((high == nyquist) & (freqs <= high)))
            mix_band, res_band = float(power[0, inside].sum()), float(power[1, inside].sum())
            residual_db = None if mix_band == 0.0 else db_or_none(energy_db(res_band, mix_band))
            bands.append({"low_hz": float(low), "high_hz": float(high), "residual_db": residual_db})
        return bands

    def _triviality(self) -> dict[str, Any]:
        from ..metrics import DOMINANT_USDR_DB, IDENTICAL_CORRELATION, SILENT_STEM_DB, USDR_EPS
        from ..metrics.sdr import db_or_none, energy_db, finite_or_none
        from ..metrics.triviality import _leakage

        names, energies = self.names, np.diag(self.gram).copy()
        total = float(energies.sum())
        levels = {n: energy_db(float(energies[i]), self.mix_energy) for i, n in enumerate(names)}
        usdrs = {n: 10.0 * math.log10((self.mix_energy + USDR_EPS) / (float(self.distance[i]) + USDR_EPS))
                 for i, n in enumerate(names)}
        per_stem = {n: {"energy_share": float(energies[i] / total) if total > 0 else None,
                        "level_db": db_or_none(levels[n]), "usdr_vs_mixture_db": usdrs[n],
                        "leakage": _leakage(self.gram, i)} for i, n in enumerate(names)}
        # centred mono sums: sum((x - mean x)(y - mean y)) = sum(xy) - sum(x) sum(y) / n
        centred = self.mono_gram - np.outer(self.mono_sum, self.mono_sum) / max(self.frames, 1)
        norms = np.sqrt(np.maximum(np.diag(centred), 0.0))
        correlations: dict[str, dict[str, float | None]] = {n: {} for n in names}
        reasons: list[str] = []
        for i, j in itertools.combinations(range(len(names)), 2):
            r = None if norms[i] == 0.0 or norms[j] == 0.0 else \
                finite_or_none(np.clip(centred[i, j] / (norms[i] * norms[j]), -1.0, 1.0))
            correlations[names[i]][names[j]] = correlations[names[j]][names[i]] = r
            if r is not None and r > IDENTICAL_CORRELATION:
                reasons.append(f"identical_stems:{names[i]},{names[j]}")
        if self.mix_energy == 0.0:
            reasons.append("silent_mixture")
        elif total == 0.0:
            reasons.append("silent_stems")
        else:
            for n in names:
                quiet = all(not math.isnan(levels[o]) and levels[o] <= SILENT_STEM_DB for o in names if o != n)
                if usdrs[n] >= DOMINANT_USDR_DB and quiet:
                    reasons.append(f"dominant_stem:{n}")
        return {"trivial": bool(reasons), "reasons": reasons, "stems": per_stem, "correlations": correlations,
                "thresholds": {"dominant_usdr_db": DOMINANT_USDR_DB, "silent_stem_db": SILENT_STEM_DB,
                               "identical_correlation": IDENTICAL_CORRELATION}}


# ------------------------------------------------------------------------------ lockstep reading


def lockstep_blocks(paths: Sequence, frames: int) -> Iterator[list[np.ndarray]]:
    """The first ``frames`` frames of several files of one sample rate, as aligned blocks
    (one ``(c, n)`` float32 array per file)."""
    from ..audio import iter_blocks
    from ..errors import AudioError

    iterators = []
    try:
        rates = set()
        for p in paths:
            sr, _, blocks = iter_blocks(p)
            rates.add(sr)
            iterators.append(blocks)
        if len(rates) != 1:
            raise AudioError(f"the stems and the original have different sample rates ({sorted(rates)})")
        done = 0
        for blocks in zip(*iterators):
            n = min(min(b.shape[1] for b in blocks), frames - done)
            if n <= 0:
                return
            yield [b[:, :n] for b in blocks]
            done += n
    finally:
        for it in iterators:
            it.close()
