"""MIDI from stems: monophonic lines (a bass line, a lead vocal) and drums (kick, snare, hi-hat),
written with a tempo map from the track's analysis so that they land on a DAW's grid.

Needs the ``transcribe`` extra (librosa, mido): ``pip install unbake[transcribe]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UnbakeError
from .drums import DRUM_NAMES, transcribe_drums
from .midi import TempoMap, parse_quantize, read_midi_notes, write_midi
from .notes import KINDS, Note, transcribe_line

AS_KINDS = ("bass", "melody", "drums")
# how a stem is transcribed when only its name is given
KIND_OF_STEM = {"bass": "bass", "vocals": "melody", "drums": "drums", "guitar": "melody", "piano": "melody",
                "other": "melody"}


@dataclass
class Transcription:
    """Notes of one stem, how they were read (``kind``), and the track's timing (the tempo map)."""

    kind: str
    notes: list[Note]
    tags: object = None  # TrackTags of the analysis the tempo map came from
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"kind": self.kind, **self.info,
               "notes": [dict(n.to_dict(), **({"drum": DRUM_NAMES.get(n.pitch)} if self.kind == "drums" else {}))
                         for n in self.notes]}
        if self.tags is not None:
            out["bpm"] = self.tags.to_json()["bpm"]
            out["key"] = self.tags.key
        return out

    def tempo_map(self) -> TempoMap:
        if self.tags is None:
            return TempoMap()
        return TempoMap(self.tags.beats_s, self.tags.downbeats_s, self.tags.bpm)

    def write_midi(self, path: str | os.PathLike, *, quantize=None) -> Path:
        q = parse_quantize(quantize) if isinstance(quantize, (str, type(None))) else quantize
        program = KINDS[self.kind].program if self.kind in KINDS else 0
        return write_midi(path, self.notes, drums=self.kind == "drums", program=program,
                          tempo=self.tempo_map(), quantize=q, track_name=self.kind)


def transcribe(audio: np.ndarray, sample_rate: int, kind: str, *, timing=None) -> Transcription:
    """Transcribe one stem ``(c, t)`` as ``kind`` (``bass``, ``melody`` or ``drums``).
    ``timing`` is the track's :class:`~unbake.audio.tags.TrackTags` for the tempo map; without
    it the stem itself is analysed."""
    if kind not in AS_KINDS:
        raise UnbakeError(f"--as must be one of {', '.join(AS_KINDS)}, not {kind!r}")
    notes = transcribe_drums(audio, sample_rate) if kind == "drums" else transcribe_line(audio, sample_rate, kind)
    if timing is None:
        from ..errors import InvalidAudioError
        from .timing import tags_from_stems

        try:
            timing = tags_from_stems({"mixture": audio}, sample_rate)
        except InvalidAudioError:
            timing = None
    return Transcription(kind, notes, timing)


def transcribe_file(path: str | os.PathLike, *, as_kind: str | None = None, stem: str | None = None,
                    model=None) -> Transcription:
    """Transcribe a stem file (``as_kind`` says how), or a song's ``stem`` after separating it
    with ``model`` (cached; the kind then follows from the stem's name unless ``as_kind`` is
    given, and the tempo map comes from the analysis of all its stems)."""
    from ..audio import read_audio

    if stem is None:
        if as_kind is None:
            raise UnbakeError("say how to transcribe the file: --as bass|melody|drums, "
                              "or --stem NAME to separate a song first")
        audio, sr = read_audio(path)
        result = transcribe(audio, sr, as_kind)
        result.info = {"input": str(path)}
        return result
    from ..separation_cache import separate_cached
    from .timing import tags_from_stems

    stems = separate_cached(path, model)
    names = list(stems.names)
    if stem not in names:
        raise UnbakeError(f"--stem {stem}: the model gives {', '.join(names)}")
    kind = as_kind or KIND_OF_STEM.get(stem)
    if kind is None:
        raise UnbakeError(f"--stem {stem}: say how to transcribe it with --as bass|melody|drums")
    audio = np.asarray(stems[stem])
    try:
        timing = tags_from_stems({n: np.asarray(stems[n]) for n in names}, stems.sample_rate)
    except UnbakeError:
        timing = None
    result = transcribe(audio, stems.sample_rate, kind, timing=timing)
    result.info = {"input": str(path), "stem": stem}
    return result


__all__ = ["AS_KINDS", "KIND_OF_STEM", "Note", "TempoMap", "Transcription", "parse_quantize", "read_midi_notes",
           "transcribe", "transcribe_drums", "transcribe_file", "transcribe_line", "write_midi"]
