        # sync: b                   # or follow song b's timeline (unbake sync's time map; its key
        #                           #   shift unless semitones is a number), or warp: {to_bpm: 120}
        #                           #   (beats onto a steady grid); sections may then name bars
        #                           #   of that timeline: - {bars: 17-24}
"""Mash-ups: stems of several songs, stretched and shifted to one tempo and key, placed on one
timeline (whole, or section by section), routed, mixed and mastered; the YAML project format.

Project file (relative paths resolve against the project file's folder)::

    songs:                          # required: name -> song
      a: {path: a.mp3, model: htdemucs}   # a song file, separated once (cached) ...
      b: {path: stems/b}                  # ... or a folder of stems
      c: c.flac                           # shorthand for {path: c.flac}
      # optional per song: bpm: 92.5, key: "D minor"  (skip / correct the analysis)
    reference: b                    # the song whose tempo and key `auto` matches (required by auto)
    tracks:                         # required: a list; each plays one stem (or a sum: b:drums+bass)
      - stem: a:vocals              # song:stem; `song:mix` is the whole song
        semitones: auto             # a number (-24..24) or auto (the match plan's shift)
        to_bpm: auto                # a number or auto; or `stretch: 1.05` (rate, >1 faster)
        preserve_formants: true     # keep a voice's timbre when shifting
        start: 0                    # timeline time where the track (or its first section) starts
        offset: 0.12                # seconds added to every position (manual alignment) ...
        align: beats                # ... or computed: beats (moves < 1/2 beat) | bars (< 2 beats)
        sections:                   # optional: parts of the song instead of all of it
          - {from: "0:30", to: "0:45"}          # SOURCE times: the song before stretching
          - {from: 60, to: 75, at: "0:20"}      # `at`: TIMELINE time (default: after the previous)
        channel: right              # left | right | both: the track's mono fold-down there only
        # pan: -0.3                 # or a balance position (unbake.remix.mixer's law); not both
        gain_db: -2                 # and every other remix track key: eq, compressor, reverb,
        eq: [{type: high_pass, freq_hz: 120}]  # mute, solo, automation (timeline times), ramp_ms
    length: "1:30"                  # optional: cut or pad the timeline to this length
    fade_ms: 10                     # fades at section edges (default 10)
    master: {loudness_lufs: -14, true_peak_db: -1}   # the remix master bus
    output: {path: mashup.wav, format: wav, bit_depth: 24}

Times are seconds or ``m:ss(.fff)``. ``from``/``to`` are source times because they are read
off the original song; ``start``/``at`` are timeline times (the output's clock). The output
runs at the reference song's sample rate (the first song's without a reference), stereo.

Analysis (:mod:`.analysis`) of a song runs on its full mix for the tempo and on the mix without
``drums`` for the key, only when something needs it (``auto``, a numeric ``to_bpm`` or
``align``). ``align`` lines up beat grids: the onsets of the track's whole song, stretched and
placed like the track, and of the sum of the tracks that do not align (what the track has to
fit) are folded onto one beat (``beats``) or one 4/4 bar (``bars``) at the track's stretched
tempo and cross-correlated (:func:`unbake.analysis.align.find_offset` with ``period_s``), so the
track moves by less than half a beat (half a bar).
"""

from __future__ import annotations

import logging
import math
import os
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Mapping

import numpy as np
from pydantic import BeforeValidator, Field, PrivateAttr, ValidationInfo, model_validator

from .._schema import (ConfigModel, FilePath, Flag, Items, Number, Text, Time, ValueType, describe, format_time,
                       internal, invalid, join, load_settings_file, validate)
from ..analysis.analyze import Analysis, Key, analyze_stems, parse_key
from ..analysis.transforms import MAX_RATE, MAX_SEMITONES, MIN_RATE, MatchPlan, match, stretch_and_shift
from ..errors import AudioError, ConfigError, UnbakeError
from ..remix.master import master
from ..remix.mixer import TrackSettings, render_track, to_stereo
from ..remix.schema import MasterSettings, OutputSettings
from ..separation_cache import separate_cached
from ..stems import StemSet

log = logging.getLogger(__name__)

ALIGN_CHOICES = ("beats", "bars")
CHANNELS = ("left", "right", "both")
AUTO = "auto"
MIX_STEM = "mix"
DEFAULT_FADE_MS = 10.0
# the longest timeline rendered: the bus holds it whole (float64 stereo, about 42 MB a minute at
# 44.1 kHz), so a typo such as `length: "10:00:00"` must not become an allocation of gigabytes
MAX_LENGTH_S = 30 * 60.0
Bpm = Annotated[float, Number(20.0, 400.0)]
TimelineTime = Annotated[float, Time(max_s=MAX_LENGTH_S)]


# ------------------------------------------------------------------------------ project file


class _KeyName(Text):
    """A musical key as text (``"D minor"``, ``"Am"``) -> :class:`Key`."""

    def check(self, value: Any, info: ValidationInfo | None = None) -> Key:
        if isinstance(value, Key):
            return value
        try:
            return parse_key(super().check(value, info))
        except ValueError as exc:
            raise invalid(str(exc)) from None


class _Auto(Number):
    """A number in range, or ``auto`` (taken from the match plan)."""

    def check(self, value: Any, info: ValidationInfo | None = None) -> float | str:
        return AUTO if value == AUTO else super().check(value, info)


class SongSpec(ConfigModel):
    """One song: a file to separate (``path`` + ``model``) or a stems folder (``stems``)."""

    path: Annotated[Path, FilePath("any")] | None = Field(description="a song file, or a folder of stems")
    model: Annotated[str, Text()] | None = Field(None, description="separation model for a song file")
    bpm: Bpm | None = Field(None, description="the song's tempo (skips the analysis)")
    key: Annotated[Key, _KeyName()] | None = Field(None, description="the song's key, e.g. \"D minor\"")
    name: str = internal("")
    stems: Path | None = internal(None)

    @model_validator(mode="after")
    def _folder_or_file(self) -> "SongSpec":
        if self.path is not None and self.path.is_dir():
            if self.model is not None:
                raise invalid(f"{self.path} is a folder of stems; a model applies to song files only", "model")
            self.stems, self.path = self.path, None
        return self

    def describe(self) -> str:
        return str(self.stems if self.stems is not None else self.path)


class _Bars(ValueType):
    """``17-24``, ``17`` or ``[17, 24]``: the first and last bar, counted from 1."""

    json: ClassVar[dict] = {"type": ["string", "integer", "array"], "examples": ["17-24"]}

    def check(self, value: Any, info: ValidationInfo | None = None) -> tuple[int, int]:
        try:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                first = last = value
            elif isinstance(value, (list, tuple)) and len(value) == 2:
                first, last = int(value[0]), int(value[1])
            else:
                a, _, b = str(value).partition("-")
                first, last = int(a), int(b or a)
        except (TypeError, ValueError):
            raise invalid(f"must be a bar or a range of bars like 17-24, got {value!r}") from None
        if not 1 <= first <= last:
            raise invalid(f"bars count from 1 and the range must not run backwards, got {value!r}")
        return first, last


class Section(ConfigModel):
    """``from_s``..``to_s`` in source time, or ``bars`` of the timeline a ``sync``/``warp`` track
    follows; ``at_s`` on the timeline (None: after the previous section, or at the bar)."""

    from_s: Annotated[float, Time()] | None = Field(None, alias="from", description="source time")
    to_s: Annotated[float, Time()] | None = Field(None, alias="to", description="source time")
    at_s: TimelineTime | None = Field(None, alias="at", description="timeline time (default: after the previous)")
    bars: Annotated[tuple[int, int], _Bars()] | None = Field(
        None, description="bars of the followed timeline, e.g. 17-24 (tracks with sync or warp)")

    @model_validator(mode="after")
    def _ordered(self) -> "Section":
        if self.bars is not None:
            for key, value in (("from", self.from_s), ("to", self.to_s)):
                if value is not None:
                    raise invalid("give either bars or from/to, not both", key)
            return self
        for key, value in (("from", self.from_s), ("to", self.to_s)):
            if value is None:
                raise invalid("is required", key)
        if self.to_s <= self.from_s:
            raise invalid(f"must be after `from` ({self.from_s:g} s), got {self.to_s:g} s", "to")
        return self

    @classmethod
    def on_timeline(cls, from_s: float, to_s: float, at_s: float | None) -> "Section":
        """A section computed by the renderer (already checked): no validation."""
        return cls.model_construct(from_s=from_s, to_s=to_s, at_s=at_s, bars=None)


class Warp(ConfigModel):
    """``warp:``: the track's beats onto a steady grid (``unbake warp``)."""

    to_bpm: Bpm = Field(description="the grid's tempo")


@dataclass(frozen=True)
class Follow:
    """A track that plays on another timeline: ``sync`` (a song's name) or ``to_bpm`` (a grid)."""

    sync: str | None = None
    to_bpm: float | None = None
    semitones_from_map: bool = True


class TrackSpec(TrackSettings):
    """One mash-up track: a remix track strip (every key of a remix track) plus where its audio
    comes from and how it is placed. ``semitones``/``to_bpm`` may be ``"auto"``; ``where`` is
    its key path. New placement keys are new fields here."""

    exclusive: ClassVar = (
        ("stretch", "to_bpm", "give either stretch (a rate) or to_bpm (a tempo), not both"),
        ("offset", "align", "give either offset (manual, seconds) or align, not both"),
        ("channel", "pan", "give either channel (left|right|both) or pan, not both"),
    )

    stem: Annotated[str, Text()] = Field(description="song:stem, or a sum (b:drums+bass); song:mix is the whole song")
    semitones: Annotated[float | str, _Auto(-MAX_SEMITONES, MAX_SEMITONES)] = Field(0.0, description="or auto")
    stretch: Annotated[float, Number(MIN_RATE, MAX_RATE)] | None = Field(None, description="rate, > 1 faster")
    to_bpm: Annotated[float | str, _Auto(20.0, 400.0)] | None = Field(None, description="a tempo, or auto")
    preserve_formants: Annotated[bool, Flag()] = False
    start_s: TimelineTime = Field(0.0, alias="start", description="timeline time of the track's start")
    offset_s: Annotated[float, Time(max_s=MAX_LENGTH_S, signed=True)] | None = Field(
        None, alias="offset", description="seconds added to every position (manual alignment)")
    align: Annotated[str, Text(ALIGN_CHOICES)] | None = None
    sections: Annotated[list[Section], Items("must be a non-empty list of {from, to, at}", non_empty=True)] | None = None
    channel: Annotated[str, Text(CHANNELS)] | None = None
    sync: Annotated[str, Text()] | None = Field(None, description="follow this song's timeline (unbake sync's time map)")
    warp: Warp | None = Field(None, description="beats onto a steady grid: {to_bpm: 120}")
    where: str = internal("")
    song: str = internal("")
    stems: tuple[str, ...] = internal(())

    @model_validator(mode="after")
    def _song_and_stems(self) -> "TrackSpec":
        song, sep, stem_text = self.stem.partition(":")
        if not sep or not song or not stem_text:
            raise invalid(f"must be song:stem (e.g. a:vocals), got {self.stem!r}", "stem")
        stems = tuple(s.strip() for s in stem_text.split("+"))
        if any(not s for s in stems):
            raise invalid(f"empty stem name in {self.stem!r}", "stem")
        self.song, self.stems = song, stems
        self.sections = self.sections or []
        self._check_follow()
        return self

    def _check_follow(self) -> None:
        if self.sync is None and self.warp is None:
            if any(sec.bars is not None for sec in self.sections):
                raise invalid("`bars` needs a timeline with bars: give the track `sync: <song>` "
                              "or `warp: {to_bpm: ...}`", "sections")
            return
        if self.sync is not None and self.warp is not None:
            raise invalid("give either sync (another song's timeline) or warp (a grid), not both", "warp")
        key = "sync" if self.sync is not None else "warp"
        for other in ("stretch", "to_bpm", "align"):
            if getattr(self, other) is not None:
                raise invalid(f"does not combine with `{key}`, which sets the track's timing", other)
        if self.sync == self.song:
            raise invalid("a song cannot follow itself", "sync")

    @property
    def follow(self) -> Follow | None:
        """The timeline this track plays on, when it has ``sync`` or ``warp``."""
        if self.sync is not None:
            given = "semitones" in self.model_fields_set and isinstance(self.semitones, (int, float))
            return Follow(sync=self.sync, semitones_from_map=not given)
        if self.warp is not None:
            return Follow(to_bpm=self.warp.to_bpm, semitones_from_map=False)
        return None

    @property
    def strip(self) -> TrackSettings:
        """The remix track strip (effects, fader, pan, automation) of this track."""
        return self

    @property
    def uses_auto(self) -> bool:
        return self.semitones == AUTO or self.to_bpm == AUTO


def _song_map(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise invalid(f"must be a mapping of keys to values, got {describe(value)}")
    if not value:
        raise invalid("must name at least one song")
    songs = {}
    for name, item in value.items():
        name = str(name)
        if ":" in name or "+" in name:
            raise invalid("song names cannot contain ':' or '+' (tracks refer to song:stem)", name)
        songs[name] = {"path": item} if isinstance(item, str) else item
    return songs


class MashupProject(ConfigModel):
    """A parsed mash-up project (no audio loaded); :attr:`path` is the file it came from."""

    songs: Annotated[dict[str, SongSpec], BeforeValidator(_song_map)] = Field(description="name -> song")
    reference: Annotated[str, Text()] | None = Field(None, description="the song whose tempo and key `auto` matches")
    tracks: Annotated[list[TrackSpec], Items("must be a non-empty list of tracks (- stem: song:stem ...)",
                                             non_empty=True)]
    length_s: Annotated[float, Time(max_s=MAX_LENGTH_S, positive=True)] | None = Field(
        None, alias="length", description="cut or pad the timeline to this length")
    fade_ms: Annotated[float, Number(0.0, 1000.0)] = Field(DEFAULT_FADE_MS, description="fades at section edges")
    master: MasterSettings = Field(default_factory=MasterSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)

    _path: Path | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _references(self) -> "MashupProject":
        for name, song in self.songs.items():
            song.name = name
        if self.reference is not None and self.reference not in self.songs:
            raise invalid(f"no song {self.reference!r}; the songs are {', '.join(self.songs)}", "reference")
        for i, t in enumerate(self.tracks):
            t.where = join("tracks", i)
            if t.song not in self.songs:
                raise invalid(f"no song {t.song!r}; the songs are {', '.join(self.songs)}", ("tracks", i, "stem"))
            if t.sync is not None and t.sync not in self.songs:
                raise invalid(f"no song {t.sync!r}; the songs are {', '.join(self.songs)}", ("tracks", i, "sync"))
        if self.reference is None:
            for t in self.tracks:
                if t.uses_auto:
                    raise invalid(f"is required: {t.where} matches tempo or key `auto` to a reference song",
                                  "reference")
        aligned = [i for i, t in enumerate(self.tracks) if t.align is not None]
        if aligned and len(aligned) == len(self.tracks):
            raise invalid("needs at least one track without `align` to line up with", ("tracks", aligned[0], "align"))
        return self

    @property
    def path(self) -> Path | None:
        return self._path

    @classmethod
    def parse(cls, data: Mapping, base: Path | None = None, *, path: Path | None = None) -> "MashupProject":
        project = validate(cls, data, base=base)
        project._path = path
        return project

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MashupProject":
        return load_settings_file(path, cls.parse)


# ------------------------------------------------------------------------------ rendering


def load_song(spec: SongSpec, *, progress=None) -> StemSet:
    """The stems of a song: its stems folder, or its file separated once (cached); ``progress``
    (called with the fraction done) only while separating."""
    if spec.stems is not None:
        return StemSet.load(spec.stems)
    return separate_cached(spec.path, spec.model, progress=progress)


def song_analysis(stems: StemSet, *, bpm: float | None = None, key: Key | None = None,
                  path: Path | None = None) -> Analysis:
    """Tempo and beats from the full mix, key from the mix without drums (when there is a
    ``drums`` stem and something else); ``bpm``/``key`` given by the user win. With the song's
    ``path`` the analysis is :func:`unbake.analysis.analyze.analyze_file`'s, the same as
    ``unbake analyze`` gives for that file."""
    if path is not None:
        from ..analysis.analyze import analyze_file

        found = analyze_file(path)
    else:
        found = analyze_stems(dict(stems.items()), stems.sample_rate)
    if bpm is None and key is None:
        return found
    return dataclasses.replace(found, bpm=bpm if bpm is not None else found.bpm,
                               key=key if key is not None else found.key,
                               key_confidence=1.0 if key is not None else found.key_confidence)


@dataclass
class _Plan:
    rate: float
    semitones: float
    note: str


class Mashup:
    """Renders a :class:`MashupProject`.

    ``stems`` supplies songs already in memory (``{song name: StemSet}``), skipping their
    loading. After :meth:`render`, :attr:`notes` says what was done to each track (match plans,
    computed offsets), :attr:`placements` holds each track's ``rate``, ``semitones`` and
    ``offset_s`` (exact, in whole samples) and :attr:`analyses` the songs that were analysed.
    """

    def __init__(self, project: MashupProject, *, stems: Mapping[str, StemSet] | None = None) -> None:
        self.project = project
        self._stems: dict[str, StemSet] = dict(stems or {})
        self.analyses: dict[str, Analysis] = {}
        self.notes: list[str] = []
        self.placements: list[dict[str, float]] = []
        self._transformed: dict[tuple, np.ndarray] = {}

    @classmethod
    def from_project(cls, path: str | os.PathLike) -> "Mashup":
        return cls(MashupProject.load(path))

    # -- songs
    def stems(self, song: str) -> StemSet:
        if song not in self._stems:
            spec = self.project.songs[song]
            log.info("loading song %s (%s)", song, spec.describe())
            self._stems[song] = load_song(spec)
        return self._stems[song]

    def analysis(self, song: str) -> Analysis:
        if song not in self.analyses:
            spec = self.project.songs[song]
            self.analyses[song] = song_analysis(self.stems(song), bpm=spec.bpm, key=spec.key,
                                                path=spec.stems if spec.stems is not None else spec.path)
        return self.analyses[song]

    @property
    def sample_rate(self) -> int:
        first = self.project.reference or next(iter(self.project.songs))
        return self.stems(first).sample_rate

    def match_plan(self, song: str) -> MatchPlan:
        """How ``song`` is brought to the reference song's tempo and key."""
        ref = self.project.reference
        if ref is None:
            raise ConfigError("reference: is required to match songs")
        return match(self.analysis(ref), self.analysis(song), names=(ref, song))

    # -- tracks
    def _source(self, track: TrackSpec) -> np.ndarray:
        stems = self.stems(track.song)
        if track.stems == (MIX_STEM,) and MIX_STEM not in stems:
            audio = stems.mixture()
        else:
            for name in track.stems:
                if name not in stems:
                    raise ConfigError(f"{join(track.where, 'stem')}: song {track.song!r} has no stem {name!r}; "
                                      f"its stems are {', '.join(stems.names)}")
            audio = np.sum([stems[n] for n in track.stems], axis=0, dtype=np.float32)
        return to_stereo(_at_rate(audio, stems.sample_rate, self.sample_rate))

    def _plan(self, track: TrackSpec) -> _Plan:
        if track.follow is not None:
            return self._follow_plan(track)
        where = track.where
        notes = []
        rate = 1.0
        plan = self.match_plan(track.song) if track.uses_auto else None
        if track.stretch is not None:
            rate = track.stretch
            notes.append(f"stretch rate {rate:.3f}")
        elif track.to_bpm is not None:
            source_bpm = self.analysis(track.song).bpm
            if not (source_bpm and math.isfinite(source_bpm)):
                raise ConfigError(f"{join(where, 'to_bpm')}: no tempo found in song {track.song!r}; "
                                  f"give songs.{track.song}.bpm")
            target = plan.target_bpm if track.to_bpm == AUTO else float(track.to_bpm)
            rate = target / source_bpm
            if not MIN_RATE <= rate <= MAX_RATE:
                raise ConfigError(f"{join(where, 'to_bpm')}: {source_bpm:.1f} -> {target:.1f} BPM is a stretch "
                                  f"by {rate:.2f}, outside {MIN_RATE}..{MAX_RATE}")
            if track.to_bpm != AUTO or track.semitones != AUTO:
                notes.append(f"tempo {source_bpm:.1f} -> {target:.1f} BPM (rate {rate:.3f})")
        semitones = float(plan.semitones) if track.semitones == AUTO else float(track.semitones)
        if plan is not None and track.to_bpm == AUTO and track.semitones == AUTO:
            notes.append(f"matched to {self.project.reference}: {plan.explanation}")
        elif track.semitones == AUTO:
            notes.append(f"key {plan.source_key.name} -> {plan.target_key.name} ({plan.key_relation}): "
                         f"shift {semitones:+g} semitones")
        elif semitones:
            notes.append(f"shift {semitones:+g} semitones")
        return _Plan(rate, semitones, "; ".join(notes))

    def _transformed_audio(self, track: TrackSpec, plan: _Plan, *, whole_song: bool = False) -> np.ndarray:
        if track.follow is not None:
            return self._follow_audio(track, plan)
        stems = (MIX_STEM,) if whole_song else track.stems
        key = (track.song, stems, plan.rate, 0.0 if whole_song else plan.semitones,
               track.preserve_formants and not whole_song)
        if key not in self._transformed:
            if whole_song:
                s = self.stems(track.song)
                src = to_stereo(_at_rate(s.mixture(), s.sample_rate, self.sample_rate))
            else:
                src = self._source(track)
            # the whole-song copy only guides alignment: onsets do not care about pitch
            self._transformed[key] = stretch_and_shift(src, self.sample_rate, rate=plan.rate,
                                                       semitones=key[3], preserve_formants=key[4])
        return self._transformed[key]

    def _segments(self, track: TrackSpec, plan: _Plan, audio: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """``[(timeline start sample, (c, n))]`` before any offset, with edge fades."""
        sr = self.sample_rate
        fade = int(round(self.project.fade_ms * 1e-3 * sr))
        if not track.sections:
            return [(int(round(track.start_s * sr)), audio)]
        out = []
        duration_s = audio.shape[1] / sr * plan.rate  # source duration
        cursor = track.start_s
        sections = self._follow_sections(track) if track.follow is not None else track.sections
        for i, sec in enumerate(sections):
            w = join(join(track.where, "sections"), i)
            if sec.from_s >= duration_s:
                raise ConfigError(f"{join(w, 'from')}: {sec.from_s:g} s is after the end of song "
                                  f"{track.song!r} ({duration_s:.3f} s)")
            if sec.to_s > duration_s + 1e-3:
                raise ConfigError(f"{join(w, 'to')}: {sec.to_s:g} s is after the end of song "
                                  f"{track.song!r} ({duration_s:.3f} s)")
            a = int(round(sec.from_s / plan.rate * sr))
            b = min(int(round(sec.to_s / plan.rate * sr)), audio.shape[1])
            at = sec.at_s if sec.at_s is not None else cursor
            out.append((int(round(at * sr)), _fade(audio[:, a:b], fade)))
            cursor = at + (b - a) / sr
        return out

    # -- tracks on another timeline (sync, warp): see `Follow`
    def _time_map(self, song: str, target: str):
        from ..analysis.timemap import require_confidence, time_map

        key = ("map", song, target)
        if key not in self._transformed:
            a, b = self.stems(song), self.stems(target)
            tm = time_map(a.mixture(), b.mixture(), a.sample_rate, b.sample_rate)
            try:
                require_confidence(tm)
            except UnbakeError as exc:
                raise ConfigError(f"sync: {song} -> {target}: {exc}") from None
            self._transformed[key] = tm
        return self._transformed[key]

    def _follow_plan(self, track: TrackSpec) -> _Plan:
        from ..analysis.timemap import low_confidence_lines

        f = track.follow
        if f.sync is not None:
            tm = self._time_map(track.song, f.sync)
            semitones = float(tm.semitones) if f.semitones_from_map else float(track.semitones)
            weak = low_confidence_lines(tm)
            note = (f"synced to {f.sync} (time map confidence {tm.confidence:.2f}, shift {semitones:+g} semitones)"
                    + (": " + "; ".join(weak) if weak else ""))
            return _Plan(1.0, semitones, note)
        semitones = float(self.match_plan(track.song).semitones) if track.semitones == AUTO else float(track.semitones)
        return _Plan(1.0, semitones, f"beats warped onto a {f.to_bpm:g} BPM grid"
                     + (f", shift {semitones:+g} semitones" if semitones else ""))

    def _follow_anchors(self, track: TrackSpec) -> tuple[tuple[float, float], ...]:
        from ..analysis.warp import grid_map

        f = track.follow
        if f.sync is not None:
            return self._time_map(track.song, f.sync).anchors
        key = ("grid", track.song, f.to_bpm)
        if key not in self._transformed:
            s = self.stems(track.song)
            mix = to_stereo(_at_rate(s.mixture(), s.sample_rate, self.sample_rate))
            try:
                self._transformed[key] = grid_map(mix, self.sample_rate, f.to_bpm)
            except UnbakeError as exc:
                raise ConfigError(f"{join(track.where, 'warp')}: {exc}") from None
        return self._transformed[key]

    def _follow_audio(self, track: TrackSpec, plan: _Plan) -> np.ndarray:
        from ..analysis.warp import warp

        key = ("follow", track.song, track.stems, track.follow, plan.semitones, track.preserve_formants)
        if key not in self._transformed:
            length_s = None
            if track.follow.sync is not None:
                length_s = self._time_map(track.song, track.follow.sync).duration_b_s
            self._transformed[key] = warp(self._source(track), self.sample_rate, self._follow_anchors(track),
                                          semitones=plan.semitones, preserve_formants=track.preserve_formants,
                                          length_s=length_s)
        return self._transformed[key]

    def _follow_sections(self, track: TrackSpec) -> list[Section]:
        """Sections on the target timeline: bars of the target (placed at that bar unless
        ``at``), seconds of the track's own song carried through the map."""
        anchors = np.asarray(self._follow_anchors(track), float)
        out = []
        for i, sec in enumerate(track.sections):
            if sec.bars is None:
                lo, hi = np.interp([sec.from_s, sec.to_s], anchors[:, 0], anchors[:, 1])
                out.append(Section.on_timeline(float(lo), float(hi), sec.at_s))
                continue
            starts = self._bar_starts(track, sec.bars[1] + 1)
            first, last = sec.bars
            if first > len(starts) - 1:
                raise ConfigError(f"{join(join(join(track.where, 'sections'), i), 'bars')}: the target has "
                                  f"{len(starts) - 1} bars, not {first}")
            lo, hi = starts[first - 1], starts[min(last, len(starts) - 1)]
            out.append(Section.on_timeline(lo, hi, sec.at_s if sec.at_s is not None else track.start_s + lo))
        return out

    def _bar_starts(self, track: TrackSpec, count: int) -> list[float]:
        """Start times of bars 1..count-1 and the end of the last (one more than the bars)."""
        f = track.follow
        if f.to_bpm is not None:
            return [k * 4 * 60.0 / f.to_bpm for k in range(count)]
        down = list(self.analysis(f.sync).downbeats_s)
        if len(down) < 2:
            raise ConfigError(f"{join(track.where, 'sections')}: no bars found in song {f.sync!r}")
        bar = float(np.median(np.diff(down)))
        while len(down) < count:
            down.append(down[-1] + bar)  # past the last found downbeat: whole bars of the median length
        return down

    def render(self, *, mastering: bool = True) -> np.ndarray:
        """The mash-up ``(2, t)`` float32 at :attr:`sample_rate`. Problems found only with the
        audio at hand (a stem a song lacks, a section past its end) are :class:`ConfigError`
        naming the key, like the file's own errors."""
        try:
            return self._render(mastering)
        except ConfigError as exc:
            if self.project.path is not None:
                raise ConfigError(f"{self.project.path}: {exc}") from None
            raise

    def _render(self, mastering: bool) -> np.ndarray:
        sr = self.sample_rate
        self.notes = []
        self.placements = []
        placed: list[tuple[TrackSpec, _Plan, list[tuple[int, np.ndarray]]]] = []
        for track in self.project.tracks:
            plan = self._plan(track)
            audio = self._transformed_audio(track, plan)
            placed.append((track, plan, self._segments(track, plan, audio)))

        offsets: dict[int, int] = {}
        for i, (track, plan, _) in enumerate(placed):
            if track.offset_s is not None:
                offsets[i] = int(round(track.offset_s * sr))
        fixed = [i for i, (t, _, _) in enumerate(placed) if t.align is None]
        if any(t.align is not None for t, _, _ in placed):
            bed = _lay([(segs, offsets.get(i, 0)) for i, (_, _, segs) in enumerate(placed) if i in fixed])
            for i, (track, plan, _) in enumerate(placed):
                if track.align is None:
                    continue
                offsets[i] = self._align(track, plan, bed)

        length = max(start + off + seg.shape[1] for i, (_, _, segs) in enumerate(placed)
                     for off in [offsets.get(i, 0)] for start, seg in segs)
        if self.project.length_s is not None:
            length = int(round(self.project.length_s * sr))
        elif length > MAX_LENGTH_S * sr:
            raise ConfigError(f"tracks: the timeline would be {format_time(length / sr)} long; at most "
                              f"{format_time(MAX_LENGTH_S)} (check start, at and offset times)")
        if length <= 0:
            raise ConfigError("tracks: every track ends before the timeline starts (check offsets)")
        any_solo = any(t.strip.solo for t in self.project.tracks)
        bus = np.zeros((2, length), np.float64)
        for i, (track, plan, segs) in enumerate(placed):
            note = plan.note
            if track.offset_s is not None or track.align is not None:
                note = (note + "; " if note else "") + f"offset {offsets[i] / sr:+.3f} s" + (
                    f" (align: {track.align})" if track.align else "")
            self.notes.append(f"{track.where} {track.song}:{'+'.join(track.stems)}: {note or 'as is'}")
            self.placements.append({"rate": plan.rate, "semitones": plan.semitones,
                                    "offset_s": offsets.get(i, 0) / sr})
            if (any_solo and not track.strip.solo) or track.strip.silent:
                continue
            lane = _lay([(segs, offsets.get(i, 0))], length)
            bus += self._route(track, lane)
        out = bus.astype(np.float32)
        if mastering and not self.project.master.neutral:
            out = master(out, sr, self.project.master)
        return out

    def _route(self, track: TrackSpec, lane: np.ndarray) -> np.ndarray:
        """Channel routing, then the remix track strip (effects, fader, pan): ``(2, t)``."""
        if track.channel is None:
            return render_track(lane, self.sample_rate, track.strip, path=track.where)
        # `channel` is a pan position for the track's mono fold-down (pan and channel exclude
        # each other, so the strip's own pan is still its neutral 0)
        mono = lane.mean(axis=0, keepdims=True)
        strip = track.strip.model_copy(update={"pan": {"left": -1.0, "right": 1.0, "both": 0.0}[track.channel]})
        out = render_track(mono, self.sample_rate, strip, path=track.where)
        if track.channel != "both" and not any(p.pan is not None for p in strip.automation):
            # the sin/cos law leaves ~1e-17 of a hard-panned track on the far side: make it silence
            out[1 if track.channel == "left" else 0] = 0.0
        return out

    def _align(self, track: TrackSpec, plan: _Plan, bed: np.ndarray) -> int:
        from ..analysis.align import find_offset

        sr = self.sample_rate
        whole = self._transformed_audio(track, plan, whole_song=True)
        guide = _lay([(self._segments(track, plan, whole), 0)], bed.shape[1])
        bpm = self.analysis(track.song).bpm * plan.rate
        if not (bpm > 0 and math.isfinite(bpm)):
            raise ConfigError(f"{join(track.where, 'align')}: no tempo found in song {track.song!r}")
        beat_s = 60.0 / bpm
        try:
            offset_s = find_offset(bed, guide, sr, period_s=beat_s if track.align == "beats" else 4 * beat_s)
        except AudioError as exc:
            raise ConfigError(f"{join(track.where, 'align')}: {exc}") from None
        return int(round(offset_s * sr))

    def render_project(self, output: str | os.PathLike | None = None, *, overwrite: bool = False) -> Path:
        """Render and write to ``output`` (default: the project's ``output.path``)."""
        from ..audio import write_audio
        from ..audio.io import check_writable

        settings = self.project.output
        path, _ = settings.resolved(output)
        check_writable(path, overwrite)
        audio = self.render()
        return write_audio(path, audio, self.sample_rate, bit_depth=settings.bit_depth,
                           mp3_bitrate=settings.mp3_bitrate, overwrite=overwrite)


def _at_rate(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    from ..audio import resample

    return resample(np.asarray(audio, np.float32), rate_in, rate_out)


def _fade(segment: np.ndarray, n: int) -> np.ndarray:
    """Raised-cosine fade-in and -out of ``n`` samples, so section cuts do not click."""
    seg = np.array(segment, dtype=np.float32, copy=True)
    n = min(n, seg.shape[1] // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
        seg[:, :n] *= ramp
        seg[:, -n:] *= ramp[::-1]
    return seg


def _lay(lanes: list[tuple[list[tuple[int, np.ndarray]], int]], length: int | None = None) -> np.ndarray:
    """Sum segments ``(start, (c, n))`` shifted by their lane's offset onto one ``(2, length)``
    timeline; parts before 0 or after ``length`` are cut."""
    if length is None:
        length = max((s + off + seg.shape[1] for segs, off in lanes for s, seg in segs), default=0)
    out = np.zeros((2, max(length, 0)), np.float32)
    for segs, off in lanes:
        for start, seg in segs:
            a = start + off
            lo, hi = max(a, 0), min(a + seg.shape[1], length)
            if hi <= lo:
                continue
            piece = seg[:, lo - a: hi - a]
            out[:, lo:hi] += piece
    return out
