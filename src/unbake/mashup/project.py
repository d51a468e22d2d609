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
        # sync: b                   # or follow song b's timeline (unbake sync's time map; its key
        #                           #   shift unless semitones is a number), or warp: {to_bpm: 120}
        #                           #   (beats onto a steady grid); sections may then name bars
        #                           #   of that timeline: - {bars: 17-24}
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

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import AudioError, ConfigError, UnbakeError
from ..analysis.analyze import Analysis, Key, analyze_stems, parse_key
from ..analysis.transforms import MAX_RATE, MAX_SEMITONES, MIN_RATE, MatchPlan, match, stretch_and_shift
from ..separation_cache import separate_cached
from ..stems import StemSet
from ..remix.master import MasterSettings, master, parse_master
from ..remix.mixer import TRACK_KEYS, TrackSettings, render_track, to_stereo
from ..remix.project import FORMATS, OUTPUT_KEYS, OutputSettings
from ..remix.schema import (check_keys, check_mapping, fail, get_bool, get_number, get_path, get_str, join, load_yaml,
                     parse_time)

log = logging.getLogger(__name__)

PROJECT_KEYS = ("songs", "reference", "tracks", "length", "fade_ms", "master", "output")
SONG_KEYS = ("path", "model", "bpm", "key")
MASHUP_TRACK_KEYS = ("stem", "semitones", "stretch", "to_bpm", "preserve_formants", "start", "offset", "align",
                     "sections", "channel") + ("sync", "warp")
ALIGN_CHOICES = ("beats", "bars")
CHANNELS = ("left", "right", "both")
AUTO = "auto"
MIX_STEM = "mix"
DEFAULT_FADE_MS = 10.0


# ------------------------------------------------------------------------------ project file


@dataclass
class SongSpec:
    """One song: a file to separate (``path`` + ``model``) or a stems folder (``stems``)."""

    name: str
    path: Path | None = None
    stems: Path | None = None
    model: str | None = None
    bpm: float | None = None
    key: Key | None = None

    def describe(self) -> str:
        return str(self.stems if self.stems is not None else self.path)


@dataclass(frozen=True)
class Section:
    """``from_s``..``to_s`` in source time; ``at_s`` on the timeline (None: after the previous)."""

    from_s: float
    to_s: float
    at_s: float | None = None
    bars: tuple[int, int] | None = None  # first and last bar of the target song (see Follow)


@dataclass
class TrackSpec:
    """One mash-up track. ``semitones``/``to_bpm`` may be ``"auto"``; ``where`` is its key path."""

    where: str
    song: str
    stems: tuple[str, ...]
    semitones: float | str = 0.0
    stretch: float | None = None
    to_bpm: float | str | None = None
    preserve_formants: bool = False
    start_s: float = 0.0
    offset_s: float | None = None
    align: str | None = None
    sections: list[Section] = field(default_factory=list)
    channel: str | None = None
    strip: TrackSettings = field(default_factory=TrackSettings)
    follow: "Follow | None" = None

    @property
    def uses_auto(self) -> bool:
        return self.semitones == AUTO or self.to_bpm == AUTO


@dataclass
class MashupProject:
    """A parsed mash-up project (no audio loaded)."""

    songs: dict[str, SongSpec]
    tracks: list[TrackSpec]
    reference: str | None = None
    length_s: float | None = None
    fade_ms: float = DEFAULT_FADE_MS
    master: MasterSettings = field(default_factory=MasterSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    path: Path | None = None

    @classmethod
    def parse(cls, data: Mapping, base: Path | None = None, *, path: Path | None = None) -> "MashupProject":
        check_keys(data, PROJECT_KEYS, "", required=("songs", "tracks"))
        songs = _parse_songs(data["songs"], base)
        reference = get_str(data, "reference", "")
        if reference is not None and reference not in songs:
            raise fail("reference", f"no song {reference!r}; the songs are {', '.join(songs)}")
        tracks_value = data["tracks"]
        if not isinstance(tracks_value, list) or not tracks_value:
            raise fail("tracks", "must be a non-empty list of tracks (- stem: song:stem ...)")
        tracks = [_parse_track(t, join("tracks", i), songs) for i, t in enumerate(tracks_value)]
        if reference is None:
            for t in tracks:
                if t.uses_auto:
                    raise fail("reference", f"is required: {t.where} matches tempo or key `auto` "
                                            "to a reference song")
        aligned = [t for t in tracks if t.align is not None]
        if aligned and len(aligned) == len(tracks):
            raise fail(join(aligned[0].where, "align"), "needs at least one track without `align` to line up with")
        length = data.get("length")
        return cls(
            songs=songs, tracks=tracks, reference=reference,
            length_s=None if length is None else _positive_time(length, "length"),
            fade_ms=get_number(data, "fade_ms", "", DEFAULT_FADE_MS, 0.0, 1000.0),
            master=parse_master(data.get("master"), "master"),
            output=_parse_output(data.get("output"), base),
            path=path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MashupProject":
        path = Path(path)
        data = load_yaml(path)
        try:
            return cls.parse(data, path.resolve().parent, path=path)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def _positive_time(value: Any, where: str) -> float:
    seconds = parse_time(value, where)
    if seconds <= 0:
        raise fail(where, "must be longer than 0 s")
    return seconds


def _parse_songs(value: Any, base: Path | None) -> dict[str, SongSpec]:
    check_mapping(value, "songs")
    if not value:
        raise fail("songs", "must name at least one song")
    songs: dict[str, SongSpec] = {}
    for name, item in value.items():
        name = str(name)
        where = join("songs", name)
        if ":" in name or "+" in name:
            raise fail(where, "song names cannot contain ':' or '+' (tracks refer to song:stem)")
        if isinstance(item, str):
            item = {"path": item}
        check_keys(item, SONG_KEYS, where, required=("path",))
        p = get_path(item, "path", where, base, required=True)
        if not p.exists():
            raise fail(join(where, "path"), f"no such file or folder: {p}")
        model = get_str(item, "model", where)
        spec = SongSpec(name=name, model=model, bpm=get_number(item, "bpm", where, None, 20.0, 400.0))
        if p.is_dir():
            if model is not None:
                raise fail(join(where, "model"), f"{p} is a folder of stems; a model applies to song files only")
            spec.stems = p
        else:
            spec.path = p
        key_text = get_str(item, "key", where)
        if key_text is not None:
            try:
                spec.key = parse_key(key_text)
            except ValueError as exc:
                raise fail(join(where, "key"), str(exc)) from None
        songs[name] = spec
    return songs


def _parse_track(value: Any, where: str, songs: Mapping[str, SongSpec]) -> TrackSpec:
    check_keys(value, MASHUP_TRACK_KEYS + TRACK_KEYS, where, required=("stem",))
    ref = get_str(value, "stem", where, required=True)
    song, sep, stem_text = ref.partition(":")
    if not sep or not song or not stem_text:
        raise fail(join(where, "stem"), f"must be song:stem (e.g. a:vocals), got {ref!r}")
    if song not in songs:
        raise fail(join(where, "stem"), f"no song {song!r}; the songs are {', '.join(songs)}")
    stems = tuple(s.strip() for s in stem_text.split("+"))
    if any(not s for s in stems):
        raise fail(join(where, "stem"), f"empty stem name in {ref!r}")

    semitones: float | str = 0.0
    if value.get("semitones") == AUTO:
        semitones = AUTO
    else:
        semitones = get_number(value, "semitones", where, 0.0, -MAX_SEMITONES, MAX_SEMITONES)
    if "stretch" in value and "to_bpm" in value:
        raise fail(join(where, "stretch"), "give either stretch (a rate) or to_bpm (a tempo), not both")
    stretch = get_number(value, "stretch", where, None, MIN_RATE, MAX_RATE)
    to_bpm: float | str | None = AUTO if value.get("to_bpm") == AUTO else get_number(value, "to_bpm", where, None,
                                                                                      20.0, 400.0)
    if "offset" in value and "align" in value:
        raise fail(join(where, "offset"), "give either offset (manual, seconds) or align, not both")
    offset = value.get("offset")
    offset_s = None
    if offset is not None:
        if isinstance(offset, str) and offset.strip().startswith("-"):
            offset_s = -parse_time(offset.strip()[1:], join(where, "offset"))
        elif isinstance(offset, (int, float)) and not isinstance(offset, bool) and offset < 0:
            offset_s = -parse_time(-offset, join(where, "offset"))
        else:
            offset_s = parse_time(offset, join(where, "offset"))
    if "pan" in value and "channel" in value:
        raise fail(join(where, "channel"), "give either channel (left|right|both) or pan, not both")
    strip = TrackSettings.parse({k: v for k, v in value.items() if k in TRACK_KEYS}, where)
    return TrackSpec(
        where=where, song=song, stems=stems, semitones=semitones, stretch=stretch, to_bpm=to_bpm,
        preserve_formants=bool(get_bool(value, "preserve_formants", where, False)),
        start_s=parse_time(value.get("start", 0.0), join(where, "start")),
        offset_s=offset_s,
        align=get_str(value, "align", where, choices=ALIGN_CHOICES),
        sections=_parse_sections(value.get("sections"), join(where, "sections")),
        channel=get_str(value, "channel", where, choices=CHANNELS),
        strip=strip,
        follow=_parse_follow(value, where, songs, song),
    )


def _parse_sections(value: Any, where: str) -> list[Section]:
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        raise fail(where, "must be a non-empty list of {from, to, at}")
    sections = []
    for i, item in enumerate(value):
        w = join(where, i)
        if isinstance(item, Mapping) and "bars" in item:
            sections.append(_parse_bar_section(item, w))
            continue
        check_keys(item, ("from", "to", "at"), w, required=("from", "to"))
        start = parse_time(item["from"], join(w, "from"))
        stop = parse_time(item["to"], join(w, "to"))
        if stop <= start:
            raise fail(join(w, "to"), f"must be after `from` ({start:g} s), got {stop:g} s")
        at = None if item.get("at") is None else parse_time(item["at"], join(w, "at"))
        sections.append(Section(start, stop, at))
    return sections


# -------------------------------------------------- following another timeline: sync, warp, bars
#
#   - stem: cover:vocals
#     sync: original            # play on song `original`'s timeline (unbake sync's time map);
#                               # the map's key shift applies unless `semitones` is a number
#     sections:
#       - {bars: 17-24}         # bars of the target song; placed at that bar (or `at`)
#       - {from: 30, to: 45}    # seconds: the track's own song, carried through the map
#   - stem: live:mix
#     warp: {to_bpm: 120}       # beats onto a steady grid (unbake warp); bar 1 starts at 0 s


@dataclass(frozen=True)
class Follow:
    """A track that plays on another timeline: ``sync`` (a song's name) or ``to_bpm`` (a grid)."""

    sync: str | None = None
    to_bpm: float | None = None
    semitones_from_map: bool = True


def _parse_follow(value: Mapping, where: str, songs: Mapping[str, SongSpec], song: str) -> Follow | None:
    has_sync, has_warp = "sync" in value, "warp" in value
    bar_sections = [w for w in (value.get("sections") or []) if isinstance(w, Mapping) and "bars" in w]
    if not has_sync and not has_warp:
        if bar_sections:
            raise fail(join(where, "sections"), "`bars` needs a timeline with bars: give the track `sync: <song>` "
                                                "or `warp: {to_bpm: ...}`")
        return None
    key = "sync" if has_sync else "warp"
    if has_sync and has_warp:
        raise fail(join(where, "warp"), "give either sync (another song's timeline) or warp (a grid), not both")
    for other in ("stretch", "to_bpm", "align"):
        if other in value:
            raise fail(join(where, other), f"does not combine with `{key}`, which sets the track's timing")
    if has_sync:
        target = get_str(value, "sync", where, required=True)
        if target not in songs:
            raise fail(join(where, "sync"), f"no song {target!r}; the songs are {', '.join(songs)}")
        if target == song:
            raise fail(join(where, "sync"), "a song cannot follow itself")
        return Follow(sync=target, semitones_from_map=not isinstance(value.get("semitones"), (int, float)))
    spec = value["warp"]
    check_keys(spec, ("to_bpm",), join(where, "warp"), required=("to_bpm",))
    return Follow(to_bpm=get_number(spec, "to_bpm", join(where, "warp"), None, 20.0, 400.0), semitones_from_map=False)


def _parse_bar_section(item: Mapping, where: str) -> Section:
    """``{bars: 17-24}`` (or ``bars: 17``, ``bars: [17, 24]``), optional ``at``."""
    check_keys(item, ("bars", "at"), where, required=("bars",))
    raw = item["bars"]
    try:
        if isinstance(raw, bool):
            raise ValueError
        if isinstance(raw, int):
            first = last = raw
        elif isinstance(raw, (list, tuple)) and len(raw) == 2:
            first, last = int(raw[0]), int(raw[1])
        else:
            a, _, b = str(raw).partition("-")
            first, last = int(a), int(b or a)
    except (TypeError, ValueError):
        raise fail(join(where, "bars"), f"must be a bar or a range of bars like 17-24, got {raw!r}") from None
    if not 1 <= first <= last:
        raise fail(join(where, "bars"), f"bars count from 1 and the range must not run backwards, got {raw!r}")
    at = None if item.get("at") is None else parse_time(item["at"], join(where, "at"))
    return Section(float("nan"), float("nan"), at, bars=(first, last))


def _parse_output(value: Any, base: Path | None) -> OutputSettings:
    # the same `output:` section as a remix project (unbake.remix.project parses it inline)
    out_map = value or {}
    check_keys(out_map, OUTPUT_KEYS, "output")
    bit_depth = None
    if out_map.get("bit_depth") is not None:
        bit_depth = get_str(out_map, "bit_depth", "output", choices=("16", "24", "32f"))
    return OutputSettings(
        path=get_path(out_map, "path", "output", base), format=get_str(out_map, "format", "output", choices=FORMATS),
        bit_depth=bit_depth, mp3_bitrate=get_number(out_map, "mp3_bitrate", "output", None, 32, 320, integer=True))


# ------------------------------------------------------------------------------ rendering


def load_song(spec: SongSpec) -> StemSet:
    """The stems of a song: its stems folder, or its file separated once (cached)."""
    if spec.stems is not None:
        return StemSet.load(spec.stems)
    return separate_cached(spec.path, spec.model)


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
                out.append(Section(float(lo), float(hi), sec.at_s))
                continue
            starts = self._bar_starts(track, sec.bars[1] + 1)
            first, last = sec.bars
            if first > len(starts) - 1:
                raise ConfigError(f"{join(join(join(track.where, 'sections'), i), 'bars')}: the target has "
                                  f"{len(starts) - 1} bars, not {first}")
            lo, hi = starts[first - 1], starts[min(last, len(starts) - 1)]
            out.append(Section(lo, hi, sec.at_s if sec.at_s is not None else track.start_s + lo))
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
        strip = dataclasses.replace(track.strip, pan={"left": -1.0, "right": 1.0, "both": 0.0}[track.channel])
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
