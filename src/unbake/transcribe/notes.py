"""Monophonic lines (a bass line, a lead vocal) to notes: pYIN pitch tracking, then note
segmentation.

Method
------
* The stem is folded to mono at the analysis rate (22.05 kHz) and tracked with librosa's pYIN
  (hop 256 samples = 11.6 ms) in the range of the line's kind (:data:`KINDS`).
* Frames get a MIDI pitch (median-filtered over :data:`MEDIAN_FRAMES` frames so that vibrato and
  pYIN's octave blips do not split notes); a note is a run of voiced frames with one rounded
  pitch. A run is also split where the onset detector (spectral flux) finds a new attack, so
  repeated notes of the same pitch stay separate notes; inside a held pitch an attack counts only
  where the level rises by :data:`ATTACK_RISE_DB` (flux also fires on noise).
* A note's start is moved to an attack the onset detector found within :data:`SNAP_S` of it:
  pYIN's voicing decision needs most of a 93 ms window to be periodic, so it lags the attack.
* Frames more than :data:`GATE_DB` below the loudest frame, or less than :data:`FLOOR_MARGIN_DB`
  above the quietest tenth (a noise floor), are unvoiced whatever pYIN says.
* Pieces of one held note that no attack separates are joined again (a voicing dropout, a
  pitch blip shorter than :data:`BLIP_S`).
* Runs shorter than the kind's ``min_note_s`` are dropped (slides, breaths, attack noise).
* Pitches are whole semitones (no pitch bends), the median of the note's frames.
* Velocity follows the note's loudness: its peak RMS level in dB relative to the loudest note,
  :data:`VELOCITY_PER_DB` velocity steps per dB below :data:`TOP_VELOCITY`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

HOP = 256
MEDIAN_FRAMES = 5
SNAP_S = 0.06
TOP_VELOCITY = 112
VELOCITY_PER_DB = 2.0
GATE_DB = 40.0
ATTACK_RISE_DB = 1.5
FLOOR_MARGIN_DB = 6.0
BRIDGE_S = 0.06
BLIP_S = 0.1


@dataclass(frozen=True)
class LineKind:
    fmin_hz: float
    fmax_hz: float
    min_note_s: float
    frame_length: int
    program: int  # General MIDI program (0-based) of the track


KINDS = {
    # E1 (41 Hz) minus a margin, up to the G of a bass's highest frets; a frame holds two
    # periods of the lowest pitch, as YIN needs, and no more (a longer one smears attacks)
    "bass": LineKind(fmin_hz=30.0, fmax_hz=420.0, min_note_s=0.06, frame_length=2048, program=33),
    # a singing voice or a lead instrument: C2 to C7
    "melody": LineKind(fmin_hz=65.0, fmax_hz=2100.0, min_note_s=0.05, frame_length=1024, program=0),
}


@dataclass(frozen=True)
class Note:
    """One note: times in seconds, MIDI ``pitch`` (for drums the General MIDI drum number),
    ``velocity`` 1..127."""

    start_s: float
    end_s: float
    pitch: int
    velocity: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["start_s"], d["end_s"] = round(self.start_s, 4), round(self.end_s, 4)
        return d


def librosa_module():
    """librosa (pYIN for the lines), or a :class:`DependencyError` saying how to install it."""
    from ..errors import DependencyError

    try:
        import librosa
    except ImportError as exc:
        raise DependencyError(
            "transcription needs librosa: pip install unbake[transcribe]"
        ) from exc
    return librosa


def _velocities(levels_db: np.ndarray) -> list[int]:
    if len(levels_db) == 0:
        return []
    top = float(np.max(levels_db))
    v = np.round(TOP_VELOCITY - VELOCITY_PER_DB * (top - levels_db))
    return [int(x) for x in np.clip(v, 1, 127)]


def transcribe_line(audio: np.ndarray, sample_rate: int, kind: str = "bass") -> list[Note]:
    """Notes of a monophonic line in ``audio (c, t)`` (or mono ``(t,)``); ``kind`` is ``bass``
    or ``melody``. See the module docstring for the method."""
    from ..analysis.analyze import ANALYSIS_RATE_HZ, to_mono_analysis_rate
    from ..errors import UnbakeError

    if kind not in KINDS:
        raise UnbakeError(f"a line is transcribed as one of {', '.join(KINDS)}, not {kind!r}")
    spec = KINDS[kind]
    librosa = librosa_module()
    sr = ANALYSIS_RATE_HZ
    y = to_mono_analysis_rate(audio, sample_rate)
    if not np.any(np.abs(y) > 1e-5):
        return []
    f0, voiced, _ = librosa.pyin(y, fmin=spec.fmin_hz, fmax=spec.fmax_hz, sr=sr,
                                 frame_length=spec.frame_length, hop_length=HOP)
    n = len(f0)
    rms = librosa.feature.rms(y=y, frame_length=2048, hop_length=HOP)[0][:n]
    level_db = 20 * np.log10(np.maximum(rms, 1e-9))
    midi = np.full(n, np.nan)
    # YIN finds digital silence and faint tails "periodic"; a pitch needs some level
    # ... and so do noise floors: the gate also sits above the quietest tenth of the frames
    gate_db = max(level_db.max() - GATE_DB, np.percentile(level_db, 10) + FLOOR_MARGIN_DB)
    ok = voiced & np.isfinite(f0) & (level_db > gate_db)
    midi[ok] = librosa.hz_to_midi(f0[ok])
    midi = _median_voiced(midi, MEDIAN_FRAMES)
    env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=HOP)
    onsets = librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=HOP, units="frames",
                                        backtrack=False)

    pitch = np.where(np.isfinite(midi), np.round(midi), -1).astype(int)
    snap = int(round(SNAP_S * sr / HOP))
    # inside a note an attack counts only where the level rises (a re-struck note); spectral
    # flux alone also fires on noise and on the beating of a low note's partials
    rise = np.array([level_db[min(o + 3, n - 1)] - level_db[max(o - 2, 0)] if o < n else 0.0 for o in onsets])
    held = np.array([0 < o < n and pitch[o - 1] >= 0 and pitch[o - 1] == pitch[min(o + 2, n - 1)] for o in onsets],
                    dtype=bool)
    onsets = np.asarray(onsets)[~held | (rise >= ATTACK_RISE_DB)] if len(onsets) else np.asarray(onsets)
    cuts = _boundaries(pitch, onsets, snap)
    times = librosa.frames_to_time(np.arange(n + 1), sr=sr, hop_length=HOP)
    min_s = spec.min_note_s
    found: list[tuple[float, float, int, float]] = []
    for (a, a_is_onset), (b, _) in zip(cuts[:-1], cuts[1:]):
        frames = np.flatnonzero(pitch[a:b] >= 0) + a
        if len(frames) < 2:
            continue
        # the first voiced run only: what follows a gap inside the span is not this note
        run_end = np.flatnonzero(np.diff(frames) > 1)
        frames = frames[:run_end[0] + 1] if len(run_end) else frames
        # an attack long before the voicing starts was not this note's
        t0 = float(times[a]) if a_is_onset and frames[0] - a <= snap else float(times[frames[0]])
        t1 = float(times[frames[-1] + 1])
        if t1 - t0 < min_s:
            continue
        level = 20 * np.log10(max(float(rms[a:b].max()), 1e-9))
        found.append((t0, t1, int(np.round(np.median(midi[frames]))), level, a_is_onset))
    found = _join_unstruck(found)
    levels = np.array([f[3] for f in found])
    return [Note(t0, t1, p, v) for (t0, t1, p, _, _), v in zip(found, _velocities(levels))]


def _join_unstruck(found: list[tuple]) -> list[tuple]:
    """Join pieces of one held note that no attack separates: a voicing dropout shorter than
    :data:`BRIDGE_S` between two pieces of the same pitch, and a pitch blip shorter than
    :data:`BLIP_S` between them. ``found``: ``(start, end, pitch, level, struck)``."""
    out = list(found)
    i = 1
    while i < len(out):
        prev, cur = out[i - 1], out[i]
        nxt = out[i + 1] if i + 1 < len(out) else None
        if not cur[4] and cur[2] == prev[2] and cur[0] - prev[1] <= BRIDGE_S:
            out[i - 1:i + 1] = [(prev[0], cur[1], prev[2], max(prev[3], cur[3]), prev[4])]
            continue
        if (nxt is not None and not cur[4] and not nxt[4] and cur[1] - cur[0] < BLIP_S and nxt[2] == prev[2]
                and cur[0] - prev[1] <= BRIDGE_S and nxt[0] - cur[1] <= BRIDGE_S):
            out[i - 1:i + 2] = [(prev[0], nxt[1], prev[2], max(prev[3], nxt[3]), prev[4])]
            continue
        i += 1
    return out


def _boundaries(pitch: np.ndarray, onsets: np.ndarray, snap: int) -> list[tuple[int, bool]]:
    """Frames where a note may start or end, ``(frame, is an attack)``: attacks, the ends of
    voiced runs, and the starts of voiced runs and changes of the rounded pitch unless an
    attack lies within ``snap`` frames (pYIN's voicing and pitch changes lead or lag the attack
    by up to half a window; the attack is the better time)."""
    n = len(pitch)
    voiced = pitch >= 0
    step = np.diff(voiced.astype(int))
    ends = set(np.flatnonzero(step < 0) + 1) | {0, n}
    soft = set(np.flatnonzero(step > 0) + 1) | set(np.flatnonzero((pitch[1:] != pitch[:-1]) & voiced[1:] & voiced[:-1]) + 1)
    attacks = sorted(int(o) for o in onsets if 0 <= o < n)
    out: dict[int, bool] = {f: True for f in attacks}
    for f in sorted(ends):
        out.setdefault(f, False)
    for f in sorted(soft):
        if not any(abs(o - f) <= snap for o in attacks):
            out.setdefault(f, False)
    return sorted(out.items())


def _median_voiced(midi: np.ndarray, size: int) -> np.ndarray:
    """Median filter over the voiced frames of each voiced run (unvoiced frames stay NaN)."""
    out = midi.copy()
    half = size // 2
    for t in np.flatnonzero(np.isfinite(midi)):
        window = midi[max(t - half, 0):t + half + 1]
        out[t] = np.median(window[np.isfinite(window)])
    return out
