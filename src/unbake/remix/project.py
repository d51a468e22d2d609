"""Remix projects: the YAML file format, where the stems come from (a folder, or a song separated
once and cached), and :class:`Remix`, the mixer object behind both the project file and the
Python API.

Project file (every key optional unless marked; relative paths resolve against the project
file's folder)::

    stems: stems/song            # a folder of stems ...
    song: song.mp3               # ... or a song, separated first (cached, see separation_cache_dir)
    model: center                # model for `song:` (default: unbake's default model)
    tracks:                      # one entry per stem; stems not listed play unchanged
      vocals:
        gain_db: 3               # -120..24
        pan: 0                   # -1..1, constant-power balance (see unbake.remix.mixer)
        mute: false
        solo: false              # when any track is soloed only soloed tracks play; mute wins
        eq:                      # bands in order; type: low_shelf|high_shelf|peak|low_pass|high_pass
          - {type: peak, freq_hz: 3000, gain_db: 2, q: 1.0}
        compressor: {threshold_db: -20, ratio: 3, attack_ms: 10, release_ms: 120}
        reverb: {room_size: 0.4, wet: 0.15}
        ramp_ms: 20              # default ramp of this track's automation
        automation:              # sample-accurate, ramped (see unbake.remix.automation)
          - {at: "0:15", gain_db: -6}
          - {at: 30.5, mute: true, ramp_ms: 50}
    master:
      eq: [...]
      compressor: {...}
      loudness_lufs: -14         # integrated loudness target (null: none)
      true_peak_db: -1           # limiter ceiling in dBTP (default -1 when loudness_lufs is set)
    output: {path: remix.wav, format: wav, bit_depth: 24}
    ab: [{at: 0, use: remix}, {at: 15, use: original}]   # A/B comparison render
    ab_output: ab.wav            # where the A/B goes; without it, the A/B replaces the remix
    ab_crossfade_ms: 20

A/B render: the original is the song (``song:``) or the sum of the stems (``stems:``), gain-
matched to the remix's integrated loudness, and the two alternate at the ``ab`` times with
equal-power cross-fades; if the matched original would peak above the master's ceiling
(0 dBTP without one) the whole comparison is turned down so nothing clips. With ``ab_output``
both the remix (``output.path``) and the A/B (``ab_output``) are written; without it only the
A/B is written, to ``output.path``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from pydantic import PrivateAttr

from .._schema import fail, field_value, join, load_settings_file, validate
from ..errors import AudioError, ConfigError
from ..separation_cache import separate_cached
from ..stems import StemSet
from .automation import ab_switch, parse_ab, parse_automation
from .effects import parse_compressor, parse_eq, parse_reverb
from .master import integrated_lufs, master, parse_master, true_peak_db
from .mixer import mix, to_stereo
from .schema import (DEFAULT_CROSSFADE_MS, AbPoint, EqBand, MasterSettings, OutputSettings, ProjectFile,
                     TrackSettings, template_lines, yaml_value)

log = logging.getLogger(__name__)

PROJECT_SUFFIXES = (".yaml", ".yml")


# ------------------------------------------------------------------------------ sources


@dataclass
class Source:
    """Where the stems come from: a stems folder, or a song plus a model."""

    stems: Path | None = None
    song: Path | None = None
    model: str | None = None

    def describe(self) -> str:
        return str(self.stems) if self.stems is not None else f"{self.song} ({self.model or 'default model'})"

    def load(self, progress=None) -> tuple[StemSet, np.ndarray | None]:
        """``(stems, original)``; the original is the decoded song, or None for a stems folder."""
        if self.stems is not None:
            return StemSet.load(self.stems), None
        from ..audio import read_audio

        stems = separate_cached(self.song, self.model, progress=progress)
        original, sr = read_audio(self.song)
        if sr != stems.sample_rate:
            from ..audio import resample

            original = resample(original, sr, stems.sample_rate)
        return stems, original


def source_from_path(path: str | os.PathLike, model: str | None = None) -> Source:
    """A folder is a stems folder; any other file is a song to separate."""
    p = Path(path)
    if p.is_dir():
        if model is not None:
            raise ConfigError(f"{p}: is a stems folder; a model (-n) applies to songs only")
        return Source(stems=p)
    if not p.exists():
        raise AudioError(f"{p}: no such file or folder")
    return Source(song=p, model=model)


# ------------------------------------------------------------------------------ project file


class Project(ProjectFile):
    """A parsed project file (no audio loaded): :attr:`source` says where the stems come from,
    :attr:`path` is the file it came from."""

    _source: Source | None = PrivateAttr(None)
    _path: Path | None = PrivateAttr(None)

    @property
    def source(self) -> Source:
        if self._source is not None:
            return self._source
        return Source(stems=self.stems) if self.stems is not None else Source(song=self.song, model=self.model)

    @property
    def path(self) -> Path | None:
        return self._path

    @classmethod
    def parse(cls, data: Mapping, base: Path | None = None, *, path: Path | None = None,
              source: Source | None = None) -> "Project":
        """Validate a project mapping; ``source`` replaces ``stems:``/``song:`` when given."""
        project = validate(cls, data, base=base, check_source=source is None)
        project._source, project._path = source, path
        return project

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Project":
        return load_settings_file(path, cls.parse)


# ------------------------------------------------------------------------------ the mixer object


class Remix:
    """A mixer over a :class:`StemSet`: per-track settings, master settings, rendering.

    Chainable setters return the object::

        from unbake.remix import Remix
        r = Remix(stems).gain("vocals", 3).pan("bass", 0.3).mute("other")
        r.eq("drums", [{"type": "low_shelf", "freq_hz": 100, "gain_db": 2}])
        r.compressor("drums", threshold_db=-18, ratio=3)
        r.automate("vocals", "0:15", gain_db=-6)     # ramped, sample-accurate
        r.master(loudness_lufs=-14, true_peak_db=-1)
        audio = r.render()                           # float32 (2, t) at stems.sample_rate
        ab = r.render_ab([{"at": 0, "use": "remix"}, {"at": 15, "use": "original"}])
        r.write("remix.wav")

        Remix.from_project("project.yaml").render()

    Values are checked with the same rules as the project file (errors are
    :class:`~unbake.errors.ConfigError` naming the key, e.g. ``tracks.vocals.pan``).

    Args:
        stems: the stems ``(c, t)`` each, c = 1 or 2.
        tracks: ``{stem: TrackSettings}``; stems not named play unchanged.
        master: master bus settings (default: none).
        original: the original recording ``(c, t)`` for A/B renders; default: the sum of the stems.
    """

    def __init__(self, stems: StemSet, tracks: Mapping[str, TrackSettings] | None = None,
                 master: MasterSettings | None = None, *, original: np.ndarray | None = None,
                 ab: Sequence[AbPoint] = (), ab_crossfade_ms: float = DEFAULT_CROSSFADE_MS) -> None:
        if not isinstance(stems, StemSet):
            raise TypeError("Remix takes a StemSet (unbake.StemSet or unbake.separate(...))")
        self.stems = stems
        self.tracks: dict[str, TrackSettings] = {}
        for name, settings in (tracks or {}).items():
            self._check_name(name)
            self.tracks[name] = settings
        self.master_settings = master or MasterSettings()
        if original is not None:
            original = np.asarray(original, dtype=np.float32)
            if original.ndim != 2:
                raise AudioError(f"the original must be shaped (channels, time), got {original.shape}")
        self._original = original
        self.ab_points = list(ab)
        self.ab_crossfade_ms = ab_crossfade_ms
        self.project: Project | None = None

    # -- construction
    @classmethod
    def from_project(cls, path: str | os.PathLike, *, progress=None) -> "Remix":
        """Load a project file and its stems (separating ``song:`` once, cached; ``progress``
        is called with the fraction of that separation done)."""
        return cls.from_parsed(Project.load(path), progress=progress)

    @classmethod
    def from_parsed(cls, project: Project, *, progress=None) -> "Remix":
        stems, original = project.source.load(progress)
        where = f"{project.path}: " if project.path is not None else ""
        for name in project.tracks:
            if name not in stems:
                raise ConfigError(f"{where}tracks.{name}: unknown stem; the stems of "
                                  f"{project.source.describe()} are {', '.join(stems.names)}")
        remix = cls(stems, project.tracks, project.master, original=original, ab=project.ab,
                    ab_crossfade_ms=project.ab_crossfade_ms)
        remix.project = project
        return remix

    # -- settings
    def _check_name(self, name: str) -> None:
        if name not in self.stems:
            raise ConfigError(f"tracks.{name}: unknown stem; the stems are {', '.join(self.stems.names)}")

    def track(self, name: str) -> TrackSettings:
        """The settings of stem ``name`` (created neutral on first use)."""
        self._check_name(name)
        return self.tracks.setdefault(name, TrackSettings())

    def _set(self, name: str, key: str, value: Any) -> "Remix":
        """Set one track setting, checked as the project file checks it."""
        track = self.track(name)
        setattr(track, key, field_value(TrackSettings, key, value, join("tracks", name)))
        return self

    def gain(self, name: str, gain_db: float) -> "Remix":
        return self._set(name, "gain_db", gain_db)

    def pan(self, name: str, pan: float) -> "Remix":
        """-1 (left) .. +1 (right); 0 leaves the stem's stereo image unchanged."""
        return self._set(name, "pan", pan)

    def mute(self, name: str, on: bool = True) -> "Remix":
        self.track(name).mute = bool(on)
        return self

    def solo(self, name: str, on: bool = True) -> "Remix":
        """When any track is soloed, only soloed tracks play."""
        self.track(name).solo = bool(on)
        return self

    def eq(self, name: str, bands: Iterable[EqBand | Mapping]) -> "Remix":
        """Replace the EQ of a track: :class:`EqBand` objects or ``{type, freq_hz, gain_db, q}``."""
        where = join(join("tracks", name), "eq")
        self.track(name).eq = [b if isinstance(b, EqBand) else parse_eq([b], where)[0] for b in bands]
        return self

    def compressor(self, name: str, **settings: Any) -> "Remix":
        """``threshold_db``, ``ratio``, ``attack_ms``, ``release_ms``; no arguments removes it."""
        self.track(name).compressor = (parse_compressor(settings, join(join("tracks", name), "compressor"))
                                       if settings else None)
        return self

    def reverb(self, name: str, **settings: Any) -> "Remix":
        """``room_size``, ``damping``, ``wet``, ``dry``, ``width`` (0..1); ``enabled=False`` removes it."""
        if settings.pop("enabled", True) is False:
            self.track(name).reverb = None
        else:
            self.track(name).reverb = parse_reverb(settings, join(join("tracks", name), "reverb"))
        return self

    def automate(self, name: str, at: float | str, *, gain_db: float | None = None, pan: float | None = None,
                 mute: bool | None = None, ramp_ms: float | None = None) -> "Remix":
        """From ``at`` (seconds or ``"m:ss"``) on, move to the given values with a ramp."""
        item: dict[str, Any] = {"at": at}
        for key, value in (("gain_db", gain_db), ("pan", pan), ("mute", mute), ("ramp_ms", ramp_ms)):
            if value is not None:
                item[key] = value
        settings = self.track(name)
        where = join(join("tracks", name), "automation")
        new = parse_automation([item], where)
        settings.automation = sorted(settings.automation + new, key=lambda p: p.at_s)
        return self

    def master(self, *, eq: Iterable[EqBand | Mapping] | None = None, compressor: Mapping | None = None,
               loudness_lufs: float | None = None, true_peak_db: float | None | str = "default",
               limiter_release_ms: float | None = None, reference: str | os.PathLike | None = None,
               reference_max_db: float | None = None) -> "Remix":
        """Set the master bus: the EQ that matches a ``reference`` record's tonal balance -> EQ ->
        compressor -> loudness to ``loudness_lufs`` (the reference's without it) -> true-peak
        limiter at ``true_peak_db`` (-1 dBTP by default when a loudness target or a reference is
        set; None: no limiter). See :mod:`unbake.remix.master` for the order and guarantees."""
        raw: dict[str, Any] = {}
        if reference is not None:
            raw["reference"] = os.fspath(reference)
        if reference_max_db is not None:
            raw["reference_max_db"] = reference_max_db
        if eq is not None:
            raw["eq"] = [b.to_dict() if isinstance(b, EqBand) else dict(b) for b in eq]
        if compressor is not None:
            raw["compressor"] = dict(compressor)
        if loudness_lufs is not None:
            raw["loudness_lufs"] = loudness_lufs
        if true_peak_db != "default":
            raw["true_peak_db"] = true_peak_db
        if limiter_release_ms is not None:
            raw["limiter_release_ms"] = limiter_release_ms
        self.master_settings = parse_master(raw, "master")
        return self

    # -- rendering
    @property
    def sample_rate(self) -> int:
        return self.stems.sample_rate

    @property
    def original(self) -> np.ndarray:
        """The original recording ``(2, t)``: the song, or the sum of the stems."""
        ref = self._original if self._original is not None else self.stems.mixture()
        ref = to_stereo(ref)
        frames = self.stems.frames
        if ref.shape[1] >= frames:
            return np.array(ref[:, :frames], dtype=np.float32)
        return np.pad(ref, ((0, 0), (0, frames - ref.shape[1]))).astype(np.float32)

    def mix(self) -> np.ndarray:
        """The mix bus before mastering, ``(2, t)`` float32."""
        return mix(self.stems.stems, self.sample_rate, self.tracks)

    def render(self, *, mastering: bool = True) -> np.ndarray:
        """The remix, ``(2, t)`` float32 at :attr:`sample_rate`: every track through its strip,
        summed, then (with ``mastering``) through the master bus."""
        bus = self.mix()
        if not mastering or self.master_settings.neutral:
            return bus
        return master(bus, self.sample_rate, self.master_settings)

    def render_ab(self, points: Sequence[AbPoint | Mapping] | None = None, *,
                  crossfade_ms: float | None = None, remix: np.ndarray | None = None) -> np.ndarray:
        """A/B comparison ``(2, t)``: the remix and the original alternate at the given times
        (``[{"at": 0, "use": "remix"}, {"at": 15, "use": "original"}, ...]``; default: the
        project's ``ab:``) with equal-power cross-fades. The original is gain-matched to the
        remix's integrated loudness so the comparison is not won by level; when that would put
        the comparison's true peak above the master ceiling (0 dBTP without one) both are turned
        down together. ``remix`` reuses an already rendered remix."""
        if points is None:
            pts = self.ab_points
        else:
            pts = parse_ab([p.to_dict() if isinstance(p, AbPoint) else dict(p) for p in points], "ab")
        if not pts:
            raise ConfigError("ab: no switch points given")
        frames = self.stems.frames
        for i, p in enumerate(pts):
            if p.at_s * self.sample_rate >= frames:
                raise fail(f"ab[{i}].at", f"{p.at_s:g} s is after the end of the audio "
                                          f"({frames / self.sample_rate:.3f} s)")
        new = self.render() if remix is None else np.asarray(remix, dtype=np.float32)
        ref = self.original
        gain_db = loudness_match_db(new, ref, self.sample_rate)
        ref = ref * np.float32(10.0 ** (gain_db / 20.0))
        fade = self.ab_crossfade_ms if crossfade_ms is None else crossfade_ms
        out = ab_switch(new, ref, self.sample_rate, pts, fade)
        # a gain-matched original is often more dynamic than the mastered remix: rather than
        # clip (or limit it, which would change its sound) the whole comparison is turned down
        ceiling = self.master_settings.true_peak_db
        ceiling = 0.0 if ceiling is None else ceiling
        peak = true_peak_db(out)
        if peak > ceiling:
            out = (out * np.float32(10.0 ** ((ceiling - peak - 0.05) / 20.0))).astype(np.float32)
        return out

    def write(self, path: str | os.PathLike, audio: np.ndarray | None = None, *, bit_depth: str | int | None = None,
              mp3_bitrate: int | None = None, overwrite: bool = False) -> Path:
        """Render (unless ``audio`` is given) and write atomically; returns the path."""
        from ..audio import write_audio

        audio = self.render() if audio is None else audio
        return write_audio(path, audio, self.sample_rate, bit_depth=bit_depth, mp3_bitrate=mp3_bitrate,
                           overwrite=overwrite)

    def render_project(self, output: str | os.PathLike | None = None, *, overwrite: bool = False) -> list[Path]:
        """Render and write what the project asks for (see the module docstring for the A/B
        rule); ``output`` replaces ``output.path``. Returns the written paths. Existing files are
        refused before any rendering unless ``overwrite``."""
        from ..audio.io import check_writable

        settings = self.project.output if self.project is not None else OutputSettings()
        path, _ = settings.resolved(output)
        targets = [path]
        ab_path = self.project.ab_output if self.project is not None else None
        if ab_path is not None:
            ab_path, _ = OutputSettings(path=ab_path).resolved(None, "ab_output")
            targets.append(ab_path)
        if len(set(targets)) != len(targets):
            raise fail("ab_output", "is the same file as output.path")
        for t in targets:
            check_writable(t, overwrite)
        kw = dict(bit_depth=settings.bit_depth, mp3_bitrate=settings.mp3_bitrate, overwrite=overwrite)
        try:
            audio = self.render()
            ab = self.render_ab(remix=audio) if self.ab_points else None
        except ConfigError as exc:
            if self.project is None or self.project.path is None or str(exc).startswith(str(self.project.path)):
                raise
            raise ConfigError(f"{self.project.path}: {exc}") from None
        if ab is None:
            return [self.write(path, audio, **kw)]
        if ab_path is None:
            return [self.write(path, ab, **kw)]
        return [self.write(path, audio, **kw), self.write(ab_path, ab, **kw)]

    def __repr__(self) -> str:
        return f"Remix({self.stems!r}, tracks={sorted(self.tracks)})"


def loudness_match_db(target: np.ndarray, audio: np.ndarray, sample_rate: int) -> float:
    """Gain in dB that gives ``audio`` the integrated loudness of ``target`` (0 when either is
    silent or too short to measure)."""
    try:
        a, b = integrated_lufs(target, sample_rate), integrated_lufs(audio, sample_rate)
    except AudioError:
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return 0.0
    return a - b


# ------------------------------------------------------------------------------ --init


def init_project(source: Source, stems: StemSet | None = None, *, output: str = "remix.wav") -> str:
    """YAML text of a starting project for ``source``: every stem listed with every key at its
    neutral value (rendering it gives the sum of the stems), with comments; both come from the
    declaration of the format (:mod:`unbake.remix.schema`)."""
    if stems is None:
        stems = separate_cached(source.song, source.model) if source.song is not None else StemSet.load(source.stems)
    fields = ProjectFile.model_fields
    lines = ["# unbake remix project: render with `unbake remix THIS_FILE.yaml`",
             "# relative paths resolve against this file's folder"]
    if source.stems is not None:
        lines.append(f"stems: {yaml_value(str(source.stems.resolve()))}   # {fields['stems'].description}")
    else:
        from ..separate import default_model

        lines.append(f"song: {yaml_value(str(source.song.resolve()))}   # {fields['song'].description}")
        lines.append(f"model: {yaml_value(source.model or default_model())}   # {fields['model'].description}")
    lines.append(f"tracks:   # {fields['tracks'].description}; every value below is neutral")
    for name in stems.names:
        lines.append(f"  {_yaml_key(name)}:")
        lines += template_lines(TrackSettings, 4)
    lines.append("master:")
    lines += template_lines(MasterSettings, 2)
    lines.append("output:")
    lines += template_lines(OutputSettings, 2, values={"path": output, "format": "wav", "bit_depth": "24"})
    lines += template_lines(ProjectFile, values={}, comment_out=("ab", "ab_output"), only=("ab", "ab_output"))
    return "\n".join(lines) + "\n"


def _yaml_key(text: str) -> str:
    import re

    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", text) else yaml_value(text)


__all__ = ["OutputSettings", "Project", "Remix", "Source", "init_project", "loudness_match_db",
           "source_from_path"]
