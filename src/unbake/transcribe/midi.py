"""Standard MIDI files (through mido) whose tempo map follows the track's beats, so that the notes
land on a DAW's grid.

The map puts one MIDI beat (480 ticks) between consecutive analysed beats, with a tempo change at
every beat whose length differs, and 4/4 bars whose first beat is the analysed downbeat. Audio time
0 is tick 0; the stretch before the first downbeat gets whole beats at an even tempo, in a
short pickup bar when they are not a whole 4/4 bar. Without beats the map is a constant 120 BPM.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DependencyError, UnbakeError
from .notes import Note

TICKS_PER_BEAT = 480
DEFAULT_BPM = 120.0
DRUM_CHANNEL = 9  # General MIDI channel 10, counted from 0


def mido_module():
    try:
        import mido
    except ImportError as exc:
        raise DependencyError("writing MIDI files needs mido: pip install unbake[transcribe]") from exc
    return mido


def parse_quantize(text: str | None) -> Fraction | None:
    """``"1/16"`` -> the grid as a fraction of a whole note (4 beats); None or ``""`` -> None."""
    if not text:
        return None
    try:
        q = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError) as exc:
        raise UnbakeError(f"--quantize takes a note value such as 1/16, not {text!r}") from exc
    if q <= 0 or q > 1:
        raise UnbakeError(f"--quantize must be a note value between 1/128 and 1, not {text}")
    return q


class TempoMap:
    """Seconds <-> ticks along the analysed beats (see the module docstring)."""

    def __init__(self, beats_s: Sequence[float] = (), downbeats_s: Sequence[float] = (),
                 bpm: float | None = None) -> None:
        beats = np.asarray([b for b in beats_s if b >= 0], dtype=np.float64)
        if len(beats) < 2:
            period = 60.0 / (bpm or DEFAULT_BPM)
            self.seconds = np.array([0.0, period])
            self.beats = np.array([0.0, 1.0])
            self.lead = 0
            return
        if len(downbeats_s):
            # beats before the first downbeat fall inside the pickup below
            beats = beats[int(np.argmin(np.abs(beats - downbeats_s[0]))):]
        if len(beats) < 2:
            beats = np.asarray([b for b in beats_s if b >= 0], dtype=np.float64)
        period = float(beats[1] - beats[0])
        self.lead = max(int(round(beats[0] / period)), 1) if beats[0] > 1e-3 else 0
        self.seconds = np.concatenate([[0.0], beats]) if self.lead else beats
        steps = self.lead + np.arange(len(beats), dtype=np.float64)
        self.beats = np.concatenate([[0.0], steps]) if self.lead else steps

    def meter_events(self) -> list[tuple[int, int]]:
        """``(tick, beats per bar)``: a short pickup bar when the lead-in is not whole bars,
        then 4/4 from the first downbeat."""
        short = self.lead % 4
        return [(0, short), (short * TICKS_PER_BEAT, 4)] if short else [(0, 4)]

    def ticks(self, t_s: float | np.ndarray) -> np.ndarray:
        t = np.asarray(t_s, dtype=np.float64)
        s, b = self.seconds, self.beats
        inside = np.interp(t, s, b)
        after = b[-1] + (t - s[-1]) / (s[-1] - s[-2]) * (b[-1] - b[-2])
        return np.round(np.where(t > s[-1], after, inside) * TICKS_PER_BEAT).astype(np.int64)

    def tempo_events(self) -> list[tuple[int, int]]:
        """``(tick, microseconds per beat)`` at every beat where the tempo changes."""
        out: list[tuple[int, int]] = []
        for i in range(len(self.seconds) - 1):
            us = int(round((self.seconds[i + 1] - self.seconds[i]) / (self.beats[i + 1] - self.beats[i]) * 1e6))
            if not out or out[-1][1] != us:
                out.append((int(round(self.beats[i] * TICKS_PER_BEAT)), us))
        return out


def write_midi(path: str | os.PathLike, notes: Sequence[Note], *, drums: bool = False, program: int = 0,
               tempo: TempoMap | None = None, quantize: Fraction | None = None,
               track_name: str = "unbake") -> Path:
    """Write ``notes`` as a type-1 MIDI file (a tempo track and a note track), atomically.
    ``drums`` puts them on General MIDI channel 10; ``quantize`` (a fraction of a whole note)
    snaps starts and ends to that grid of the tempo map."""
    from .._common import atomic_path

    mido = mido_module()
    tempo = tempo or TempoMap()
    mf = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    meta = mido.MidiTrack()
    timeline = [(tick, 0, mido.MetaMessage("time_signature", numerator=n, denominator=4))
                for tick, n in tempo.meter_events()]
    timeline += [(tick, 1, mido.MetaMessage("set_tempo", tempo=us)) for tick, us in tempo.tempo_events()]
    last = 0
    for tick, _, msg in sorted(timeline, key=lambda e: e[:2]):
        meta.append(msg.copy(time=tick - last))
        last = tick
    mf.tracks.append(meta)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=track_name, time=0))
    channel = DRUM_CHANNEL if drums else 0
    if not drums:
        track.append(mido.Message("program_change", program=program, channel=channel, time=0))
    step = int(quantize * 4 * TICKS_PER_BEAT) if quantize else 0
    events = []
    for n in notes:
        a, b = (int(x) for x in tempo.ticks([n.start_s, n.end_s]))
        if step:
            a = int(round(a / step)) * step
            b = max(int(round(b / step)) * step, a + step)
        b = max(b, a + 1)
        events.append((a, 1, n.pitch, n.velocity))
        events.append((b, 0, n.pitch, 0))
    events.sort()  # at one tick, note-offs (0) before note-ons (1): a repeated note restarts
    now = 0
    for tick, on, pitch, vel in events:
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=int(pitch), velocity=int(vel), channel=channel, time=tick - now))
        now = tick
    mf.tracks.append(track)
    with atomic_path(path, suffix=".mid") as tmp:
        mf.save(str(tmp))
    return Path(path)


def read_midi_notes(path: str | os.PathLike) -> list[Note]:
    """The notes of a MIDI file with times in seconds through its own tempo map (for tests and
    round trips)."""
    mido = mido_module()
    mf = mido.MidiFile(str(path))
    t = 0.0
    open_: dict[tuple[int, int], tuple[float, int]] = {}
    out: list[Note] = []
    for msg in mf:  # merged tracks, delta times in seconds
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            open_[(msg.channel, msg.note)] = (t, msg.velocity)
        elif msg.type in ("note_off", "note_on"):
            start = open_.pop((msg.channel, msg.note), None)
            if start is not None:
                out.append(Note(start[0], t, msg.note, start[1]))
    return sorted(out, key=lambda n: (n.start_s, n.pitch))
