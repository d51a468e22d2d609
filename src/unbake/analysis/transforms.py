"""Time-stretch, pitch-shift and tempo/key matching for mash-ups.

Stretching and shifting use the Rubber Band library through ``pedalboard.time_stretch`` (high
quality mode). Each changes only what it says: a stretch keeps the pitch, a shift keeps the
length. :func:`match` plans how to bring song B to song A's tempo and key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UnbakeError
from .analyze import Analysis, Key

# Rubber Band stays clean within roughly an octave of tempo change; beyond that the result is
# rarely what anyone wants from a mash-up, so it is refused rather than rendered badly.
MIN_RATE, MAX_RATE = 0.25, 4.0
MAX_SEMITONES = 24.0


class TransformError(UnbakeError):
    """A stretch or shift outside what the stretcher can do well."""


def _check_audio(audio: np.ndarray) -> np.ndarray:
    from ..audio.dsp import as_channels_first

    return as_channels_first(audio)


def _rubberband(audio: np.ndarray, sample_rate: int, rate: float, semitones: float,
                preserve_formants: bool) -> np.ndarray:
    """One Rubber Band pass over ``(c, t)``; the output is exactly ``round(t / rate)`` long."""
    import pedalboard

    out = pedalboard.time_stretch(np.ascontiguousarray(audio, dtype=np.float32), float(sample_rate),
                                  stretch_factor=float(rate), pitch_shift_in_semitones=float(semitones),
                                  high_quality=True, preserve_formants=bool(preserve_formants))
    # Rubber Band's length can differ from the ideal by a few samples; callers line things up
    # by sample count, so make it exact.
    n = int(round(audio.shape[1] / rate))
    if out.shape[1] > n:
        out = out[:, :n]
    elif out.shape[1] < n:
        out = np.pad(out, ((0, 0), (0, n - out.shape[1])))
    return np.ascontiguousarray(out, dtype=np.float32)


def check_rate(rate: float) -> float:
    rate = float(rate)
    if not math.isfinite(rate) or not MIN_RATE <= rate <= MAX_RATE:
        raise TransformError(f"stretch rate must be between {MIN_RATE} and {MAX_RATE}, got {rate:g}")
    return rate


def check_semitones(semitones: float) -> float:
    semitones = float(semitones)
    if not math.isfinite(semitones) or abs(semitones) > MAX_SEMITONES:
        raise TransformError(f"pitch shift must be within +-{MAX_SEMITONES:g} semitones, got {semitones:g}")
    return semitones


def time_stretch(audio: np.ndarray, sample_rate: int, rate: float) -> np.ndarray:
    """Change tempo, keep pitch: ``(c, t)`` -> ``(c, round(t / rate))``.

    ``rate`` > 1 plays faster (shorter), like a DJ's tempo fader at ``(rate - 1) * 100`` %.
    The input is not modified.
    """
    x = _check_audio(audio)
    rate = check_rate(rate)
    if rate == 1.0:
        return x.copy()
    return _rubberband(x, sample_rate, rate, 0.0, False)


def stretch_to_bpm(audio: np.ndarray, sample_rate: int, from_bpm: float, to_bpm: float) -> np.ndarray:
    """Stretch ``(c, t)`` played at ``from_bpm`` so that it plays at ``to_bpm``."""
    if not (from_bpm > 0 and to_bpm > 0):
        raise TransformError(f"tempi must be positive, got {from_bpm:g} and {to_bpm:g} BPM")
    return time_stretch(audio, sample_rate, to_bpm / from_bpm)


def pitch_shift(audio: np.ndarray, sample_rate: int, semitones: float, *,
                preserve_formants: bool = False) -> np.ndarray:
    """Transpose by ``semitones`` (fractions allowed), keep length: ``(c, t)`` -> ``(c, t)``.

    ``preserve_formants`` keeps a voice's timbre (no "chipmunk" effect) at some cost in
    clarity; leave it off for instruments.
    """
    x = _check_audio(audio)
    semitones = check_semitones(semitones)
    if semitones == 0.0:
        return x.copy()
    return _rubberband(x, sample_rate, 1.0, semitones, preserve_formants)


def stretch_and_shift(audio: np.ndarray, sample_rate: int, *, rate: float = 1.0, semitones: float = 0.0,
                      preserve_formants: bool = False) -> np.ndarray:
    """Both in one Rubber Band pass (less smearing than two passes): ``(c, t)`` -> ``(c, t / rate)``."""
    x = _check_audio(audio)
    rate, semitones = check_rate(rate), check_semitones(semitones)
    if rate == 1.0 and semitones == 0.0:
        return x.copy()
    return _rubberband(x, sample_rate, rate, semitones, preserve_formants)


# ------------------------------------------------------------------------------ matching


@dataclass(frozen=True)
class MatchPlan:
    """How to play song B so it fits song A.

    ``rate`` is the stretch factor for B (B's tempo times ``rate`` = ``target_bpm``) and
    ``semitones`` the shift for B (within +-6). ``tempo_relation`` is ``"same"``, ``"double"``
    (B's tempo is taken to twice A's: its beat falls on A's eighth notes) or ``"half"``;
    ``key_relation`` is ``"same key"``, ``"relative"`` (B moved to A's relative key: same notes,
    other mode) or ``"parallel"`` (same tonic, other mode).
    """

    rate: float
    semitones: int
    source_bpm: float
    target_bpm: float
    source_key: Key
    target_key: Key
    tempo_relation: str
    key_relation: str
    explanation: str

    def to_dict(self) -> dict:
        return {
            "rate": round(self.rate, 5), "semitones": self.semitones,
            "source_bpm": round(self.source_bpm, 2), "target_bpm": round(self.target_bpm, 2),
            "source_key": self.source_key.name, "target_key": self.target_key.name,
            "tempo_relation": self.tempo_relation, "key_relation": self.key_relation,
            "explanation": self.explanation,
        }


def shortest_shift(from_pc: int, to_pc: int) -> int:
    """Semitones from one pitch class to another, the short way round: -6..+5 (a tritone
    goes down, which usually sounds more natural on voices than going up)."""
    d = (to_pc - from_pc) % 12
    return d - 12 if d >= 6 else d


def match(a: Analysis | tuple[float, Key], b: Analysis | tuple[float, Key], *,
          allow_half_double: bool = True, use_relative: bool = True,
          names: tuple[str, str] = ("A", "B")) -> MatchPlan:
    """Plan the stretch and shift that bring B's tempo and key to A's.

    Tempo: B is stretched by ``A.bpm / B.bpm``; with ``allow_half_double`` the ratio is also
    tried against half and double A's tempo, and the one nearest 1 (least stretching) wins.
    Key: with the same mode, B moves to A's tonic. With different modes, B can move to A's
    relative key (the same notes: D minor over F major) or to A's parallel key (same tonic);
    with ``use_relative`` the smaller move wins, the relative key on a tie, otherwise the
    parallel key is used. Every move is the shorter way round the circle, within +-6 semitones.
    ``a`` and ``b`` are analyses or ``(bpm, key)`` pairs; ``names`` are what the explanation
    calls the two songs.
    """
    bpm_a, key_a = (a.bpm, a.key) if isinstance(a, Analysis) else a
    bpm_b, key_b = (b.bpm, b.key) if isinstance(b, Analysis) else b
    for name, bpm in zip(names, (bpm_a, bpm_b)):
        if not (bpm > 0 and math.isfinite(bpm)):
            raise TransformError(f"cannot match tempi: {name} has no steady beat (tempo {bpm})")
    candidates = [("same", bpm_a)]
    if allow_half_double:
        candidates += [("double", 2 * bpm_a), ("half", bpm_a / 2)]
    relation, target_bpm = min(candidates, key=lambda c: abs(math.log(c[1] / bpm_b)))
    rate = target_bpm / bpm_b

    if key_b.mode == key_a.mode:
        target_key, key_relation = key_a, "same key"
    else:
        relative = key_a.relative()  # the key in B's mode sharing A's notes
        parallel = Key(key_a.tonic, key_b.mode)
        options = [(relative, "relative")] if use_relative else []
        options.append((parallel, "parallel"))
        target_key, key_relation = min(options, key=lambda o: abs(shortest_shift(key_b.tonic, o[0].tonic)))
    semitones = shortest_shift(key_b.tonic, target_key.tonic)

    na, nb = names
    tempo_text = {
        "same": f"stretch {nb} from {bpm_b:.1f} to {target_bpm:.1f} BPM (rate {rate:.3f})",
        "double": f"stretch {nb} from {bpm_b:.1f} to {target_bpm:.1f} BPM, double {na}'s {bpm_a:.1f} "
                  f"(rate {rate:.3f}; {nb}'s beat falls on {na}'s eighth notes)",
        "half": f"stretch {nb} from {bpm_b:.1f} to {target_bpm:.1f} BPM, half {na}'s {bpm_a:.1f} "
                f"(rate {rate:.3f}; {nb} plays half-time against {na})",
    }[relation]
    if abs(rate - 1) < 1e-9:
        tempo_text = {"same": f"tempo already matches ({bpm_b:.1f} BPM)",
                      "double": f"no stretch: {nb}'s {bpm_b:.1f} BPM is double {na}'s {bpm_a:.1f}",
                      "half": f"no stretch: {nb}'s {bpm_b:.1f} BPM is half {na}'s {bpm_a:.1f} (half-time)"}[relation]
    plural = "s" if abs(semitones) != 1 else ""
    move = ("no shift" if semitones == 0 else
            f"shift {nb} {'up' if semitones > 0 else 'down'} {abs(semitones)} semitone{plural}")
    if key_relation == "same key":
        key_text = f"{move}: {key_b.name} -> {target_key.name}"
    elif key_relation == "relative":
        par = Key(key_a.tonic, key_b.mode)
        par_shift = shortest_shift(key_b.tonic, par.tonic)
        key_text = (f"{move}: {key_b.name} -> {target_key.name}, the relative {target_key.mode} of {na}'s "
                    f"{key_a.name} (same notes; {abs(semitones)} semitone move instead of {abs(par_shift)} "
                    f"to the parallel {par.name})")
    else:
        key_text = (f"{move}: {key_b.name} -> {target_key.name}, the parallel {target_key.mode} of {na}'s "
                    f"{key_a.name} (same tonic, different mode; expect clashing thirds)")
    return MatchPlan(rate=rate, semitones=semitones, source_bpm=bpm_b, target_bpm=target_bpm,
                     source_key=key_b, target_key=target_key, tempo_relation=relation,
                     key_relation=key_relation, explanation=f"{tempo_text}; {key_text}")
