"""Changes over time: per-track automation points (gain, pan, mute) turned into sample-accurate
envelopes with short linear ramps, and the A/B switch between the remix and the original.

A point ``{at, gain_db, pan, mute, ramp_ms}`` sets the named values from ``at`` on; values it
does not name keep their current setting. Each change starts at the point's sample
(``round(at * sample_rate)``) and reaches its target ``ramp_ms`` later, moving by the same
amount every sample, so the envelope's largest sample-to-sample step is
``|target - current| / ramp_samples``. A point arriving while an earlier ramp is still moving
starts from wherever that ramp has got to: envelopes never jump (``ramp_ms: 0`` asks for a jump).

Gain ramps are linear in amplitude (so a mute can fade to exactly 0); pan ramps are linear in
pan position and go through the constant-power law of :mod:`unbake.remix.mixer`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .._schema import fail, format_time, join, validate
from .schema import DEFAULT_CROSSFADE_MS, DEFAULT_RAMP_MS, AbList, AbPoint, AutomationList, AutomationPoint


def parse_automation(value: Any, path: str) -> list[AutomationPoint]:
    """A list of ``{at, gain_db?, pan?, mute?, ramp_ms?}``, returned in time order (points at the
    same time keep their order: the later one wins)."""
    return validate(AutomationList, value, path)


def ramp_envelope(initial: float, events: Sequence[tuple[int, float, int]], frames: int) -> np.ndarray:
    """``(frames,)`` float64 starting at ``initial``; each event ``(start_sample, target,
    ramp_samples)`` (in time order) moves linearly from the envelope's value just before
    ``start_sample`` to ``target``, arriving at ``start_sample + ramp_samples - 1``."""
    env = np.empty(frames, np.float64)
    pos = 0
    # the ramp in force: value(i) = a + (b - a) * min(1, (i - s + 1) / n) for i >= s
    s, a, b, n = 0, float(initial), float(initial), 0

    def fill(lo: int, hi: int) -> None:
        if hi <= lo:
            return
        if n <= 0:
            env[lo:hi] = b
            return
        idx = np.arange(lo, hi, dtype=np.float64)
        env[lo:hi] = a + (b - a) * np.minimum(1.0, (idx - s + 1) / n)

    for start, target, ramp in events:
        start = min(max(int(start), 0), frames)
        fill(pos, start)
        pos = start
        current = env[start - 1] if start > 0 else float(initial)
        s, a, b, n = start, current, float(target), max(int(ramp), 0)
    fill(pos, frames)
    return env


def _samples(seconds: float, sample_rate: int) -> int:
    return int(round(seconds * sample_rate))


def check_times(points: Sequence[AutomationPoint], frames: int, sample_rate: int, path: str) -> None:
    """Points must fall inside the audio."""
    for i, p in enumerate(points):
        if _samples(p.at_s, sample_rate) >= frames:
            raise fail(join(join(path, i), "at"),
                       f"{format_time(p.at_s)} is after the end of the audio ({format_time(frames / sample_rate)})")


def track_envelopes(gain_db: float, pan: float, mute: bool, points: Sequence[AutomationPoint], frames: int,
                    sample_rate: int, ramp_ms: float = DEFAULT_RAMP_MS):
    """``(gain, pan)``: linear gain and pan position, each a float when constant or a
    ``(frames,)`` envelope when automated."""
    def linear(db: float, muted: bool) -> float:
        return 0.0 if muted else 10.0 ** (db / 20.0)

    start_gain = linear(gain_db, mute)
    if not points:
        return start_gain, pan
    gain_events, pan_events = [], []
    cur_db, cur_mute = gain_db, mute
    for p in points:
        start = _samples(p.at_s, sample_rate)
        ramp = _samples((p.ramp_ms if p.ramp_ms is not None else ramp_ms) / 1000.0, sample_rate)
        if p.gain_db is not None or p.mute is not None:
            cur_db = p.gain_db if p.gain_db is not None else cur_db
            cur_mute = p.mute if p.mute is not None else cur_mute
            gain_events.append((start, linear(cur_db, cur_mute), ramp))
        if p.pan is not None:
            pan_events.append((start, p.pan, ramp))
    gain = ramp_envelope(start_gain, gain_events, frames) if gain_events else start_gain
    pan_env = ramp_envelope(pan, pan_events, frames) if pan_events else pan
    return gain, pan_env


# ------------------------------------------------------------------------------ A/B


def parse_ab(value: Any, path: str = "ab") -> list[AbPoint]:
    """``[{at, use: remix|original}, ...]`` with strictly increasing times. Before the first
    point the first point's choice plays."""
    return [] if value is None else validate(AbList, value, path)


def ab_switch(remix: np.ndarray, original: np.ndarray, sample_rate: int, points: Sequence[AbPoint],
              crossfade_ms: float = DEFAULT_CROSSFADE_MS) -> np.ndarray:
    """Alternate between ``remix (c, t)`` and ``original (c, t)`` (already level-matched) with
    equal-power cross-fades (cos/sin) of ``crossfade_ms`` centred on each switch time."""
    if remix.shape != original.shape:
        raise ValueError(f"remix {remix.shape} and original {original.shape} must have the same shape")
    frames = remix.shape[1]
    if not points:
        return np.array(remix, dtype=np.float32, copy=True)
    n = max(_samples(crossfade_ms / 1000.0, sample_rate), 0)
    events = []
    state = 1.0 if points[0].use == "original" else 0.0
    first = state
    for p in points[1:]:
        target = 1.0 if p.use == "original" else 0.0
        if target != state:
            events.append((_samples(p.at_s, sample_rate) - n // 2, target, n))
            state = target
    position = ramp_envelope(first, events, frames)
    angle = position * (math.pi / 2)
    # exact 1 and 0 away from the fades: cos(pi/2) is 6e-17, not 0
    keep = np.where(position == 0.0, 1.0, np.where(position == 1.0, 0.0, np.cos(angle)))
    take = np.where(position == 1.0, 1.0, np.where(position == 0.0, 0.0, np.sin(angle)))
    out = remix * keep + original * take
    return out.astype(np.float32)


__all__ = ["AbPoint", "AutomationPoint", "ab_switch", "check_times", "parse_ab", "parse_automation", "ramp_envelope", "track_envelopes"]
