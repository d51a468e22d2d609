"""Placing tracks in the stereo field and summing them: the pan law, per-track settings
(gain, pan, mute, solo, insert effects, automation) and the mix bus.

Pan law (sin/cos, constant power)::

    theta = (pan + 1) * pi / 4                 pan in -1 (left) .. +1 (right)
    pan_gains(pan) = (cos theta, sin theta)    left² + right² = 1; centre = 1/√2 each

:func:`place` applies it as a *balance* control scaled by √2, ``(√2 cos theta, √2 sin theta)``,
to the left and right channels, so that:

* ``pan = 0`` is the identity for stereo sources (gains exactly 1 and 1), which keeps
  "every track at unity = the sum of the stems" exact;
* a mono source is first duplicated to both channels (dual mono), so its total power
  ``left² + right²`` stays ``2·x²`` over the whole range: constant power;
* at ``pan = +1`` the left channel is silent and the right one is 3 dB up (and mirrored for -1);
  as with any balance control, a wide stereo source loses the content of the silenced side.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from .._schema import fail, join
from ..errors import ChannelLayoutError
from .automation import check_times, track_envelopes
from .effects import TrackFx
from .schema import TrackSettings

SQRT_HALF = math.sqrt(0.5)
SQRT_TWO = math.sqrt(2.0)


def pan_gains(pan):
    """Constant-power sin/cos law: ``(left, right)`` with ``left² + right² == 1``.

    ``pan`` is a float or an array in -1..1; centre gives ``1/√2`` each, exactly.
    """
    p = np.clip(np.asarray(pan, dtype=np.float64), -1.0, 1.0)
    theta = (p + 1.0) * (math.pi / 4.0)
    left, right = np.cos(theta), np.sin(theta)
    centre = p == 0.0
    left = np.where(centre, SQRT_HALF, left)
    right = np.where(centre, SQRT_HALF, right)
    # cos(pi/2) is 6e-17, not 0: a hard-panned source must leave the far side silent
    left = np.where(p == 1.0, 0.0, left)
    right = np.where(p == -1.0, 0.0, right)
    if left.ndim == 0:
        return float(left), float(right)
    return left, right


def balance_gains(pan):
    """``√2 · pan_gains(pan)``: exactly ``(1, 1)`` at the centre (see the module docstring)."""
    left, right = pan_gains(pan)
    if np.ndim(left) == 0:
        return (1.0, 1.0) if float(np.asarray(pan)) == 0.0 else (SQRT_TWO * left, SQRT_TWO * right)
    p = np.asarray(pan)
    return np.where(p == 0, 1.0, SQRT_TWO * left), np.where(p == 0, 1.0, SQRT_TWO * right)


def to_stereo(audio: np.ndarray) -> np.ndarray:
    """``(1, t)`` -> dual mono ``(2, t)``; ``(2, t)`` as it is; more channels are refused."""
    audio = np.asarray(audio)
    if audio.ndim != 2:
        raise ChannelLayoutError(f"audio must be shaped (channels, time), got {audio.shape}")
    if audio.shape[0] == 2:
        return audio
    if audio.shape[0] == 1:
        return np.repeat(audio, 2, axis=0)
    raise ChannelLayoutError(f"the mixer takes mono or stereo tracks, not {audio.shape[0]} channels")


def place(audio: np.ndarray, pan) -> np.ndarray:
    """Put ``audio (c, t)`` (c = 1 or 2) in the stereo field: ``(2, t)`` float32.

    ``pan`` is a float or a per-sample envelope ``(t,)`` in -1..1; ``0`` leaves stereo audio
    unchanged and duplicates mono audio to both channels. The input is not modified.
    """
    stereo = to_stereo(audio)
    if np.ndim(pan) == 0 and float(pan) == 0.0:
        return np.array(stereo, dtype=np.float32, copy=True)
    left, right = balance_gains(pan)
    out = np.empty(stereo.shape, np.float32)
    out[0] = stereo[0] * left
    out[1] = stereo[1] * right
    return out


# ------------------------------------------------------------------------------ tracks and the bus

def render_track(audio: np.ndarray, sample_rate: int, settings: TrackSettings, *, path: str = "") -> np.ndarray:
    """One track through its strip: ``audio (c, t)`` -> ``(2, t)`` float32."""
    frames = audio.shape[1]
    check_times(settings.automation, frames, sample_rate, join(path, "automation"))
    processed = TrackFx.of(settings)(audio, sample_rate, path=path)
    gain, pan = track_envelopes(settings.gain_db, settings.pan, settings.mute, settings.automation, frames,
                                sample_rate, settings.ramp_ms)
    placed = place(processed, pan)
    if np.ndim(gain) == 0:
        return placed if gain == 1.0 else (placed * np.float32(gain)).astype(np.float32)
    return (placed * gain).astype(np.float32)


def mix(stems: Mapping[str, np.ndarray], sample_rate: int, tracks: Mapping[str, TrackSettings], *,
        path: str = "tracks") -> np.ndarray:
    """Sum of every audible track: ``{name: (c, t)}`` -> ``(2, t)`` float32.

    Stems without settings play at unity. When any track is soloed only soloed tracks play;
    muted tracks are left out (exactly absent). With every track neutral the result is the
    plain sum of the stems (mono stems duplicated to both channels).
    """
    unknown = [n for n in tracks if n not in stems]
    if unknown:
        raise fail(join(path, unknown[0]), f"unknown stem; the stems are {', '.join(stems)}")
    any_solo = any(t.solo for t in tracks.values())
    frames = next(iter(stems.values())).shape[1]
    bus = np.zeros((2, frames), np.float64)
    for name, audio in stems.items():
        settings = tracks.get(name) or TrackSettings()
        if (any_solo and not settings.solo) or settings.silent:
            continue
        bus += render_track(audio, sample_rate, settings, path=join(path, name))
    return bus.astype(np.float32)


__all__ = ["TrackSettings", "balance_gains", "mix", "pan_gains", "place",
           "render_track", "to_stereo"]
