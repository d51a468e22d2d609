"""A drum stem to kick, snare and hi-hat hits (General MIDI drum notes on channel 10).

Method
------
* Attacks: peaks (librosa's peak picking, as :func:`unbake.audio.features.pick_onsets` computes
  it) of the largest of the three bands' log-spectral flux, each band's flux scaled to its own
  maximum, on the mono stem at 44.1 kHz (or the stem's own rate when lower).
* Each attack is described by how much the energy in three bands rises over the
  :data:`WINDOW_S` after it compared with the :data:`WINDOW_S` before it: the kick band
  (:data:`KICK_HZ`, the drum's body), the snare band (:data:`SNARE_HZ`, the wires' noise, above
  a kick's body and below most of a hi-hat) and the hi-hat band (:data:`HAT_HZ`).
* Each drum leaks into the next band up (a kick's beater click into the snare band, the snare
  wires' noise into the hi-hat band). The leak ratio is measured on the track itself: the
  lowest ratio (10th percentile) of upper-band to lower-band rise among attacks that are
  strong in the lower band, because those are the attacks with the least of the upper drum
  in them. That share of the lower band's rise is taken off before the upper band is judged.
* An attack holds a drum when the drum's (leak-corrected) rise is at least
  :data:`PRESENT_RATIO` of the strongest rise of that drum in the track: several drums can
  sound together.
* Velocity follows the drum's rise in dB relative to its strongest hit, as for notes.
"""

from __future__ import annotations

import numpy as np

from .notes import Note, _velocities

KICK, SNARE, HAT = 36, 38, 42  # General MIDI: bass drum 1, acoustic snare, closed hi-hat
DRUM_NAMES = {KICK: "kick", SNARE: "snare", HAT: "hihat"}
KICK_HZ = (25.0, 150.0)
SNARE_HZ = (1000.0, 5000.0)
HAT_HZ = (8000.0, 16000.0)
RATE_HZ = 44100  # hi-hats live above 8 kHz: not the 22.05 kHz the other analyses use
WINDOW_S = 0.04
PRESENT_RATIO = 0.1
HIT_S = 0.1  # the length written for a hit; drum machines ignore it
N_FFT = 1024
HOP = 128


def _leak(lower: np.ndarray, upper: np.ndarray) -> float:
    strong = lower >= 0.3 * lower.max() if lower.size and lower.max() > 0 else np.zeros(lower.shape, bool)
    if not strong.any():
        return 0.0
    return float(np.percentile(upper[strong] / lower[strong], 10))


def transcribe_drums(audio: np.ndarray, sample_rate: int) -> list[Note]:
    """Kick (36), snare (38) and closed hi-hat (42) hits in a drum stem ``(c, t)`` or ``(t,)``;
    see the module docstring for the method."""
    from ..audio.dsp import as_channels_first, resample
    from ..audio.features import pick_onsets, power_to_db, stft

    x = as_channels_first(audio).mean(axis=0, keepdims=True)
    sr = min(int(sample_rate), RATE_HZ)
    y = resample(x, int(sample_rate), sr)[0]
    if not np.any(np.abs(y) > 1e-5):
        return []
    spec = np.abs(stft(y, N_FFT, HOP))
    power = spec ** 2
    freqs = np.fft.rfftfreq(n=N_FFT, d=1.0 / sr)
    bands = [(freqs >= lo) & (freqs < min(hi, sr / 2)) for lo, hi in (KICK_HZ, SNARE_HZ, HAT_HZ)]
    # attacks from each band's own flux, each scaled to its loudest: a quiet hi-hat between
    # loud kicks is an attack too
    log_spec = power_to_db(power, ref=None)
    flux = np.maximum(np.diff(log_spec, axis=1, prepend=log_spec[:, :1]), 0.0)
    envs = [flux[b].mean(axis=0) for b in bands if b.any()]
    env = np.max([e / e.max() if e.max() > 0 else e for e in envs], axis=0)
    onsets = pick_onsets(env, sr, HOP)
    if len(onsets) == 0:
        return []
    w = max(1, int(round(WINDOW_S * sr / HOP)))
    rises = []
    for b in bands:
        band = power[b].sum(axis=0) if b.any() else np.zeros(power.shape[1])
        # the attack's peak frame can fall a frame before the reported onset
        rise = [max(band[max(o - 1, 0):o + w].mean() - band[max(o - 1 - w, 0):max(o - 1, 0)].mean()
                    if o > 1 else band[:o + w].mean(), 0.0) for o in onsets]
        rises.append(np.asarray(rise))
    kick, snare, hat = rises
    snare = np.maximum(snare - _leak(kick, snare) * kick, 0.0)
    hat = np.maximum(hat - _leak(snare, hat) * snare, 0.0)
    # a centred frame sees an attack before its centre does: a quarter window on average
    times = onsets * HOP / sr + N_FFT / 4 / sr
    notes: list[Note] = []
    for drum, rise in ((KICK, kick), (SNARE, snare), (HAT, hat)):
        if rise.max() <= 0:
            continue
        hit = rise >= PRESENT_RATIO * rise.max()
        levels = 10 * np.log10(np.maximum(rise[hit], 1e-20))
        for t, v in zip(times[hit], _velocities(levels)):
            notes.append(Note(float(t), float(t) + HIT_S, drum, v))
    return sorted(notes, key=lambda n: (n.start_s, n.pitch))
