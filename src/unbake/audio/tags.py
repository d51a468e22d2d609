"""Tempo and key tags in written audio files (through mutagen), and the ``track.json`` sidecar.

Fields, per container:

* ID3 (mp3; an ``id3 `` chunk in WAV; AIFF): ``TBPM`` (whole BPM, as ID3 defines it), ``TKEY``
  (``Am``, the notation ID3 defines), and ``TXXX:CAMELOT`` (``8A``).
* Vorbis comments (flac, ogg): ``BPM`` (two decimals), ``INITIALKEY`` (``Am``), ``CAMELOT``.
* MP4 atoms (m4a, NI ``.stem.mp4``): ``tmpo`` (whole BPM; the atom is an integer),
  ``----:com.apple.iTunes:initialkey`` (``Am``), ``----:com.apple.iTunes:BPM`` (two
  decimals) and ``----:com.apple.iTunes:CAMELOT``.

Traktor, Mixxx, Rekordbox and Serato read the BPM and key fields above; the Camelot fields are
freeform, for people who sort by them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DependencyError, OutputError

TAG_FORMATS = ("mp3", "wav", "aiff", "flac", "ogg", "m4a", "mp4")


def mutagen_module():
    """mutagen, or a :class:`DependencyError` saying how to install it."""
    try:
        import mutagen
    except ImportError as exc:
        raise DependencyError("writing tags needs mutagen: pip install mutagen") from exc
    return mutagen


def camelot_key(tonic: int, mode: str) -> str:
    """The Camelot wheel code of a key: C major ``8B``, A minor ``8A``; a fifth up is one step
    clockwise (G major ``9B``)."""
    if mode not in ("major", "minor"):
        raise ValueError(f"mode must be major or minor, not {mode!r}")
    major_tonic = tonic % 12 if mode == "major" else (tonic + 3) % 12  # the relative major
    number = (7 * major_tonic + 7) % 12 + 1  # C (0) -> 8, G (7) -> 9, F (5) -> 7
    return f"{number}{'B' if mode == 'major' else 'A'}"


def short_key(pitch_name: str, mode: str) -> str:
    """``("A", "minor")`` -> ``Am``: the key notation of ID3's ``TKEY``."""
    return f"{pitch_name}{'m' if mode == 'minor' else ''}"


@dataclass(frozen=True)
class TrackTags:
    """What one analysis of a track says, as tags and as the ``track.json`` sidecar.

    ``key`` in the short notation (``Am``, ``F#``), ``camelot`` as ``8A``; ``beats_s`` and
    ``downbeats_s`` in seconds from the track's start. ``info`` carries how it was measured
    (the analysed excerpt, key confidence) into the sidecar only.
    """

    bpm: float | None
    key: str | None = None
    camelot: str | None = None
    key_name: str | None = None
    beats_s: tuple[float, ...] = ()
    downbeats_s: tuple[float, ...] = ()
    info: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> dict:
        return {
            "bpm": None if self.bpm is None else round(float(self.bpm), 2),
            "key": self.key,
            "camelot": self.camelot,
            "key_name": self.key_name,
            "beats": [round(float(b), 4) for b in self.beats_s],
            "downbeats": [round(float(b), 4) for b in self.downbeats_s],
            **self.info,
        }


def write_track_json(path: str | os.PathLike, tags: TrackTags) -> Path:
    """The ``track.json`` sidecar (bpm, key, camelot, beats, downbeats), written atomically."""
    from .._common import atomic_path
    from .io import _chmod_default

    text = json.dumps(tags.to_json(), indent=2)
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
            _chmod_default(tmp)  # a sidecar is read by other programs, not private like a temp file
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    return Path(path)


def _bpm_text(bpm: float) -> str:
    return f"{bpm:.2f}".rstrip("0").rstrip(".")


def write_tags(path: str | os.PathLike, tags: TrackTags, *, fmt: str | None = None) -> None:
    """Write BPM and key tags into an audio file in place (callers pass the temporary file of
    an atomic write). ``fmt`` is the container (default: from the suffix)."""
    from .io import format_from_path

    fmt = fmt or format_from_path(path)
    if fmt not in TAG_FORMATS:
        raise OutputError(f"cannot tag {fmt!r} files; taggable: {', '.join(TAG_FORMATS)}")
    mutagen_module()
    try:
        if fmt in ("mp3", "wav", "aiff"):
            _write_id3(path, tags, fmt)
        elif fmt in ("flac", "ogg"):
            _write_vorbis(path, tags, fmt)
        else:
            _write_mp4(path, tags)
    except DependencyError:
        raise
    except Exception as exc:  # mutagen raises its own error types per container
        raise OutputError(f"{path}: cannot write tags ({exc})") from exc


def _write_id3(path, tags: TrackTags, fmt: str) -> None:
    from mutagen import id3

    if fmt == "wav":
        from mutagen.wave import WAVE as Kind
    elif fmt == "aiff":
        from mutagen.aiff import AIFF as Kind
    else:
        from mutagen.mp3 import MP3 as Kind
    f = Kind(str(path))
    if f.tags is None:
        f.add_tags()
    t = f.tags
    if tags.bpm is not None:
        t.setall("TBPM", [id3.TBPM(encoding=3, text=[str(int(round(tags.bpm)))])])
    if tags.key:
        t.setall("TKEY", [id3.TKEY(encoding=3, text=[tags.key])])
    if tags.camelot:
        t.setall("TXXX:CAMELOT", [id3.TXXX(encoding=3, desc="CAMELOT", text=[tags.camelot])])
    f.save()


def _write_vorbis(path, tags: TrackTags, fmt: str) -> None:
    if fmt == "flac":
        from mutagen.flac import FLAC as Kind
    else:
        from mutagen.oggvorbis import OggVorbis as Kind
    f = Kind(str(path))
    if f.tags is None:
        f.add_tags()
    if tags.bpm is not None:
        f["BPM"] = _bpm_text(tags.bpm)
    if tags.key:
        f["INITIALKEY"] = tags.key
    if tags.camelot:
        f["CAMELOT"] = tags.camelot
    f.save()


def _write_mp4(path, tags: TrackTags) -> None:
    from mutagen.mp4 import MP4, MP4FreeForm

    f = MP4(str(path))
    if f.tags is None:
        f.add_tags()
    if tags.bpm is not None:
        f["tmpo"] = [int(round(tags.bpm))]
        f["----:com.apple.iTunes:BPM"] = [MP4FreeForm(_bpm_text(tags.bpm).encode())]
    if tags.key:
        f["----:com.apple.iTunes:initialkey"] = [MP4FreeForm(tags.key.encode())]
    if tags.camelot:
        f["----:com.apple.iTunes:CAMELOT"] = [MP4FreeForm(tags.camelot.encode())]
    f.save()


def read_tags(path: str | os.PathLike) -> dict:
    """``{"bpm", "key", "camelot"}`` as text from a file's tags (None where absent): what a DJ
    program sees, used by the tests and ``unbake info``."""
    mutagen = mutagen_module()
    f = mutagen.File(str(path))
    out = {"bpm": None, "key": None, "camelot": None}
    if f is None or f.tags is None:
        return out
    t = f.tags
    keys = set(t.keys())

    def first(name):
        v = t[name]
        v = getattr(v, "text", v)
        v = v[0] if isinstance(v, (list, tuple)) and v else v
        return bytes(v).decode() if isinstance(v, (bytes, bytearray)) else str(v)

    for field_, names in (("bpm", ("TBPM", "BPM", "bpm", "tmpo")),
                          ("key", ("TKEY", "INITIALKEY", "initialkey", "----:com.apple.iTunes:initialkey")),
                          ("camelot", ("TXXX:CAMELOT", "CAMELOT", "camelot", "----:com.apple.iTunes:CAMELOT"))):
        for n in names:
            if n in keys:
                out[field_] = first(n)
                break
    return out
