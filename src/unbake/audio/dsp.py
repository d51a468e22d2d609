"""Sample-rate conversion (soxr), channel layout and clipping: the only place that changes them."""

from __future__ import annotations

import numpy as np

from ..errors import AudioError, ChannelLayoutError, InvalidAudioError

CLIP_MODES = ("rescale", "clamp", "none")

# Sample rates outside this range are damaged or hostile headers, not music: a 1 Hz header on a
# 100 KB file would otherwise claim hours of audio and a 44 100-fold resampling. Keeping both
# ends of every conversion inside it also bounds the resampling ratio (at most 96).
MIN_SAMPLE_RATE_HZ = 4_000
MAX_SAMPLE_RATE_HZ = 384_000
MAX_RESAMPLE_RATIO = MAX_SAMPLE_RATE_HZ / MIN_SAMPLE_RATE_HZ


def check_sample_rate(sample_rate_hz, where: str = "audio") -> int:
    """``sample_rate_hz`` as an int, or an :class:`AudioError` when it lies outside
    :data:`MIN_SAMPLE_RATE_HZ`..:data:`MAX_SAMPLE_RATE_HZ`."""
    try:
        rate = int(sample_rate_hz)
    except (TypeError, ValueError):
        rate = 0
    if rate != sample_rate_hz or not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        raise AudioError(f"{where}: sample rate {sample_rate_hz} Hz is outside the supported range "
                         f"{MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz")
    return rate


def as_channels_first(audio, *, max_channels: int = 64) -> np.ndarray:
    """Validate ``(c, t)`` float audio; a 1-D array is mono. Never guesses the axis order."""
    arr = np.asarray(audio, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ChannelLayoutError(f"audio must be shaped (channels, time); got shape {arr.shape}")
    if arr.shape[0] > max_channels or (arr.shape[0] > arr.shape[1] and arr.shape[1] > 0 and arr.shape[0] > 8):
        raise ChannelLayoutError(
            f"audio shaped {arr.shape} looks like (time, channels); pass it as (channels, time)"
        )
    if arr.shape[1] == 0:
        raise InvalidAudioError("audio has zero length")
    if not np.isfinite(arr).all():
        raise InvalidAudioError("audio contains NaN or infinite samples")
    return arr


def convert_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Mono<->stereo for a model's needs: duplicate mono, average stereo to mono."""
    c = audio.shape[0]
    if c == channels:
        return audio
    if c == 1:
        return np.repeat(audio, channels, axis=0)
    if channels == 1:
        return audio.mean(axis=0, keepdims=True)
    raise ChannelLayoutError(f"cannot convert {c} channels to {channels}")


def check_input_channels(channels: int, downmix: bool, where: str = "input") -> int:
    """Channels the separation will run on: 1 and 2 as they are; more only with ``downmix``."""
    if channels <= 2:
        return channels
    if downmix:
        return 2
    raise ChannelLayoutError(
        f"{where}: has {channels} channels; only mono and stereo are separated "
        "(pass --downmix to fold it to stereo)"
    )


def downmix(audio: np.ndarray, channels: int) -> np.ndarray:
    """Fold ``c > 2`` channels to stereo: even-indexed channels left, odd right, centre-ish
    channels (index 2 of 5.1-style layouts) to both, each side normalised by its count."""
    c = audio.shape[0]
    if c <= channels:
        return audio
    left = np.zeros(audio.shape[1], np.float32)
    right = np.zeros(audio.shape[1], np.float32)
    nl = nr = 0.0
    for i in range(c):
        if i == 2:
            left += 0.7071 * audio[i]
            right += 0.7071 * audio[i]
            nl += 0.7071
            nr += 0.7071
        elif i % 2 == 0:
            left += audio[i]
            nl += 1
        else:
            right += audio[i]
            nr += 1
    out = np.stack([left / max(nl, 1), right / max(nr, 1)])
    return out if channels == 2 else out.mean(axis=0, keepdims=True)


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Whole-array resampling ``(c, t)`` with soxr (VHQ)."""
    if sr_in == sr_out:
        return audio
    check_sample_rate(sr_in, "resampling input")
    check_sample_rate(sr_out, "resampling output")
    import soxr

    out = soxr.resample(np.ascontiguousarray(audio.T), sr_in, sr_out, quality="VHQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


class StreamResampler:
    """Block-wise resampling ``(c, n)`` -> ``(c, m)``; call :meth:`flush` after the last block.

    The total output length is ``round(total_in * sr_out / sr_in)`` exactly, so a round trip
    gives back the input's length.
    """

    def __init__(self, sr_in: int, sr_out: int, channels: int) -> None:
        self.sr_in, self.sr_out, self.channels = sr_in, sr_out, channels
        if sr_in != sr_out:
            check_sample_rate(sr_in, "resampling input")
            check_sample_rate(sr_out, "resampling output")
        self.identity = sr_in == sr_out
        self.n_in = 0
        self.n_out = 0
        if not self.identity:
            import soxr

            self._rs = soxr.ResampleStream(sr_in, sr_out, channels, dtype="float32", quality="VHQ")

    def _target(self) -> int:
        return int(round(self.n_in * self.sr_out / self.sr_in))

    def process(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        self.n_in += block.shape[1]
        if self.identity:
            self.n_out += block.shape[1]
            return block
        out = self._rs.resample_chunk(np.ascontiguousarray(block.T, dtype=np.float32), last=last).T
        if last:
            target = self._target() - self.n_out
            if out.shape[1] > target:
                out = out[:, :target]
            elif out.shape[1] < target:
                out = np.pad(out, ((0, 0), (0, target - out.shape[1])))
        else:
            # never run past the exact target length
            room = self._target() - self.n_out
            if out.shape[1] > room:
                out = out[:, :max(room, 0)]
        self.n_out += out.shape[1]
        return np.ascontiguousarray(out, dtype=np.float32)

    def flush(self) -> np.ndarray:
        return self.process(np.zeros((self.channels, 0), np.float32), last=True)


def clip_gain(peak: float, mode: str) -> float:
    """Gain that ``rescale`` applies to a stem with this peak (Demucs's rule: keep 1 % headroom)."""
    if mode not in CLIP_MODES:
        raise ValueError(f"clip mode must be one of {CLIP_MODES}")
    if mode == "rescale":
        return 1.0 / max(1.01 * peak, 1.0)
    return 1.0


def apply_clip(block: np.ndarray, mode: str, gain: float = 1.0) -> np.ndarray:
    if mode == "clamp":
        return np.clip(block, -0.99, 0.99)
    if mode == "rescale":
        return block * np.float32(gain)
    return block
