"""The remix project file format, declared once as pydantic models: every key's type, range,
default and meaning. Validation errors name the key path and the allowed range
(``tracks.vocals.eq[1].freq_hz: must be between 10 and 22000, got 50000``); ``unbake remix
--init`` (:func:`template_lines`) and the studio's neutral mixer (:func:`neutral_settings`) are
derived from these models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterator

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

from .._schema import (ConfigModel, FilePath, Flag, Items, Number, Text, Time, fail, format_time, internal, invalid,
                       is_internal, join, neutral, parse_time, value_type)

EQ_TYPES = ("low_shelf", "high_shelf", "peak", "low_pass", "high_pass")
# pedalboard's low/high-pass filters are first order (6 dB/octave): they take no gain and no Q
SHAPED_EQ_TYPES = ("low_shelf", "high_shelf", "peak")
FREQ_RANGE_HZ = (10.0, 22000.0)
DEFAULT_Q = 0.7071
GAIN_RANGE_DB = (-120.0, 24.0)
DEFAULT_RAMP_MS = 20.0
MAX_RAMP_MS = 10000.0
DEFAULT_CROSSFADE_MS = 20.0
DEFAULT_TRUE_PEAK_DB = -1.0
DEFAULT_REFERENCE_MAX_DB = 12.0
AB_CHOICES = ("remix", "original")
FORMATS = ("wav", "flac", "mp3")
BIT_DEPTHS = ("16", "24", "32f")

Gain = Annotated[float, Number(*GAIN_RANGE_DB)]
Pan = Annotated[float, Number(-1.0, 1.0)]
RampMs = Annotated[float, Number(0.0, MAX_RAMP_MS)]
Unit = Annotated[float, Number(0.0, 1.0)]


class _Frozen(ConfigModel):
    model_config = ConfigDict(frozen=True)


# ------------------------------------------------------------------------------ effects


class EqBand(_Frozen):
    """One EQ band. ``gain_db`` and ``q`` apply to shelves and peaks only."""

    type: Annotated[str, Text(EQ_TYPES)] = Field(description="low_shelf, high_shelf, peak, low_pass, high_pass")
    freq_hz: Annotated[float, Number(*FREQ_RANGE_HZ)] = Field(description="centre or corner frequency")
    gain_db: Annotated[float, Number(-36.0, 36.0)] = Field(0.0, description="shelves and peaks only")
    q: Annotated[float, Number(0.05, 20.0)] = Field(DEFAULT_Q, description="shelves and peaks only")

    @classmethod
    def before(cls, data: dict) -> dict:
        kind = data.get("type")
        if kind in EQ_TYPES and kind not in SHAPED_EQ_TYPES:
            for key in ("gain_db", "q"):
                if key in data:
                    raise invalid(f"not used by {kind} (a first-order 6 dB/octave filter)", key)
        return data

    def effect(self):
        import pedalboard as pb

        if self.type == "low_shelf":
            return pb.LowShelfFilter(cutoff_frequency_hz=self.freq_hz, gain_db=self.gain_db, q=self.q)
        if self.type == "high_shelf":
            return pb.HighShelfFilter(cutoff_frequency_hz=self.freq_hz, gain_db=self.gain_db, q=self.q)
        if self.type == "peak":
            return pb.PeakFilter(cutoff_frequency_hz=self.freq_hz, gain_db=self.gain_db, q=self.q)
        if self.type == "low_pass":
            return pb.LowpassFilter(cutoff_frequency_hz=self.freq_hz)
        return pb.HighpassFilter(cutoff_frequency_hz=self.freq_hz)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"type": self.type, "freq_hz": self.freq_hz}
        if self.type in SHAPED_EQ_TYPES:
            d.update(gain_db=self.gain_db, q=self.q)
        return d


class CompressorSettings(_Frozen):
    """Downward compressor; ``ratio`` 1 (the default) is no compression."""

    threshold_db: Annotated[float, Number(-80.0, 0.0)] = 0.0
    ratio: Annotated[float, Number(1.0, 100.0)] = Field(1.0, description="1 is no compression")
    attack_ms: Annotated[float, Number(0.01, 1000.0)] = 10.0
    release_ms: Annotated[float, Number(1.0, 10000.0)] = 100.0

    @property
    def neutral(self) -> bool:
        return self.ratio == 1.0

    def effect(self):
        import pedalboard as pb

        return pb.Compressor(threshold_db=self.threshold_db, ratio=self.ratio,
                             attack_ms=self.attack_ms, release_ms=self.release_ms)

    def to_dict(self) -> dict:
        return self.model_dump()


class ReverbSettings(_Frozen):
    """Freeverb-style reverb as an insert: ``dry`` 1 keeps the track at its level."""

    room_size: Unit = 0.5
    damping: Unit = 0.5
    wet: Unit = 0.2
    dry: Unit = 1.0
    width: Unit = 1.0

    def effect(self):
        import pedalboard as pb

        return pb.Reverb(room_size=self.room_size, damping=self.damping, wet_level=self.wet,
                         dry_level=self.dry, width=self.width)

    def to_dict(self) -> dict:
        return self.model_dump()


EqList = Annotated[list[EqBand], Items("must be a list of bands (- type: peak ...)")]


# ------------------------------------------------------------------------------ automation and A/B


class AutomationPoint(_Frozen):
    """From ``at_s`` on: the values that are not None. ``ramp_ms`` None: the track's default."""

    at_s: Annotated[float, Time()] = Field(alias="at", description="seconds or \"m:ss\"")
    gain_db: Gain | None = None
    pan: Pan | None = None
    mute: Annotated[bool, Flag()] | None = None
    ramp_ms: RampMs | None = None

    @model_validator(mode="after")
    def _sets_something(self) -> "AutomationPoint":
        if self.gain_db is None and self.pan is None and self.mute is None:
            raise invalid("an automation point must set gain_db, pan or mute")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(by_alias=True, exclude_none=True)


def _in_time_order(points: list[AutomationPoint]) -> list[AutomationPoint]:
    # points at the same time keep their order: the later one wins
    return sorted(points, key=lambda p: p.at_s)


AutomationList = Annotated[list[AutomationPoint], Items("must be a list of points (- at: \"0:15\" ...)"),
                           AfterValidator(_in_time_order)]


class AbPoint(_Frozen):
    at_s: Annotated[float, Time()] = Field(alias="at")
    use: Annotated[str, Text(AB_CHOICES)]

    def to_dict(self) -> dict:
        return {"at": self.at_s, "use": self.use}


def _increasing(points: list[AbPoint]) -> list[AbPoint]:
    for i in range(1, len(points)):
        if points[i].at_s <= points[i - 1].at_s:
            raise invalid(f"times must increase ({format_time(points[i].at_s)} is not after "
                          f"{format_time(points[i - 1].at_s)})", (i, "at"))
    return points


AbList = Annotated[list[AbPoint], Items("must be a non-empty list of {at: TIME, use: remix|original}", non_empty=True),
                   AfterValidator(_increasing)]


# ------------------------------------------------------------------------------ tracks and the master bus


class TrackSettings(ConfigModel):
    """One stem's channel strip: insert effects (EQ -> compressor -> reverb), then the fader
    (``gain_db`` and automation), then the pan. ``mute`` wins over ``solo``."""

    gain_db: Gain = Field(0.0, description="fader, dB")
    pan: Pan = Field(0.0, description="-1 left .. 1 right; 0 keeps the stereo image (constant-power balance)")
    mute: Annotated[bool, Flag()] = False
    solo: Annotated[bool, Flag()] = Field(False, description="when any track is soloed, only soloed tracks play")
    eq: EqList = Field(default_factory=list, description="bands: - {type: peak, freq_hz: 3000, gain_db: 2.0, "
                                                          "q: 1.0}; types: low_shelf, high_shelf, peak, "
                                                          "low_pass, high_pass (freq_hz only)")
    compressor: CompressorSettings | None = None
    reverb: ReverbSettings | None = None
    automation: AutomationList = Field(default_factory=list, description="- {at: \"0:15\", gain_db: -6.0, "
                                                                          "pan: 0.3, mute: false, ramp_ms: 50}")
    ramp_ms: RampMs = Field(DEFAULT_RAMP_MS, description="ramp length of automation changes, ms")

    @property
    def silent(self) -> bool:
        """Muted for the whole song (so it is left out entirely)."""
        return self.mute and not any(p.mute is False for p in self.automation)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"gain_db": self.gain_db, "pan": self.pan, "mute": self.mute, "solo": self.solo}
        if self.eq:
            d["eq"] = [b.to_dict() for b in self.eq]
        if self.compressor is not None:
            d["compressor"] = self.compressor.to_dict()
        if self.reverb is not None:
            d["reverb"] = self.reverb.to_dict()
        if self.automation:
            d["automation"] = [p.to_dict() for p in self.automation]
        if self.ramp_ms != DEFAULT_RAMP_MS:
            d["ramp_ms"] = self.ramp_ms
        return d


class MasterSettings(ConfigModel):
    """Master bus settings. ``loudness_lufs`` None: no normalisation; ``true_peak_db`` None:
    no limiter (in a file, a loudness target without ``true_peak_db`` brings a -1 dBTP ceiling;
    ``true_peak_db: null`` switches the limiter off)."""

    keep_null: ClassVar[tuple[str, ...]] = ("true_peak_db",)

    eq: EqList = Field(default_factory=list)
    compressor: CompressorSettings | None = None
    loudness_lufs: Annotated[float, Number(-70.0, 0.0)] | None = Field(
        None, description="integrated loudness target, LUFS", examples=[-14.0])
    true_peak_db: Annotated[float, Number(-30.0, 0.0)] | None = Field(
        None, description="limiter ceiling in dBTP (default -1 once loudness_lufs or reference is set)", examples=[-1.0])
    release_ms: Annotated[float, Number(1.0, 5000.0)] = Field(100.0, alias="limiter_release_ms",
                                                               description="limiter release, ms")
    reference: Annotated[Path, FilePath("file")] | None = Field(
        None, description="a finished record to match: its tonal balance (a linear-phase EQ, before the "
                          "master EQ) and its loudness (unless loudness_lufs is set)", examples=["reference.wav"])
    reference_max_db: Annotated[float, Number(0.0, 24.0)] = Field(
        DEFAULT_REFERENCE_MAX_DB, description="the most the reference EQ boosts or cuts, dB")
    lookahead_ms: float = internal(5.0)

    @model_validator(mode="after")
    def _default_ceiling(self, info: ValidationInfo) -> "MasterSettings":
        if info.context is not None and "true_peak_db" not in self.model_fields_set and \
                (self.loudness_lufs is not None or self.reference is not None):
            self.true_peak_db = DEFAULT_TRUE_PEAK_DB
        return self

    @property
    def neutral(self) -> bool:
        return (not self.eq and (self.compressor is None or self.compressor.neutral)
                and self.loudness_lufs is None and self.true_peak_db is None and self.reference is None)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {}
        if self.eq:
            d["eq"] = [b.to_dict() for b in self.eq]
        if self.compressor is not None:
            d["compressor"] = self.compressor.to_dict()
        d["loudness_lufs"] = self.loudness_lufs
        d["true_peak_db"] = self.true_peak_db
        if self.release_ms != 100.0:
            d["limiter_release_ms"] = self.release_ms
        if self.reference is not None:
            d["reference"] = str(self.reference)
        if self.reference_max_db != DEFAULT_REFERENCE_MAX_DB:
            d["reference_max_db"] = self.reference_max_db
        return d


class OutputSettings(ConfigModel):
    """Where and how a render is written; ``format`` defaults to the path's suffix (wav without one)."""

    path: Annotated[Path, FilePath()] | None = Field(None, description="relative to the project file")
    format: Annotated[str, Text(FORMATS)] | None = Field(None, description=" | ".join(FORMATS), examples=["wav"])
    bit_depth: Annotated[str, Text(BIT_DEPTHS)] | None = Field(None, description=" | ".join(BIT_DEPTHS),
                                                               examples=["24"])
    mp3_bitrate: Annotated[int, Number(32, 320, integer=True)] | None = Field(None, description="kbit/s")

    @model_validator(mode="after")
    def _suffix_matches(self) -> "OutputSettings":
        # a path whose suffix contradicts `format` is refused now, not after rendering
        if self.path is not None:
            suffix = self.path.suffix.lower().lstrip(".")
            if suffix in FORMATS and self.format is not None and self.format != suffix:
                raise invalid(f"{self.format} does not match the file name {self.path.name}", "format")
        return self

    def resolved(self, override=None, where: str = "output") -> tuple[Path, str]:
        """``(path, format)``: the path gets the format's suffix when it has none; a path whose
        suffix contradicts ``format`` is refused."""
        path = Path(override) if override is not None else self.path
        if path is None:
            raise fail(join(where, "path"), "is required (or give -o OUT)")
        suffix = path.suffix.lower().lstrip(".")
        fmt = self.format
        if suffix in FORMATS:
            if fmt is not None and fmt != suffix and override is None:
                raise fail(join(where, "format"), f"{fmt} does not match the file name {path.name}")
            fmt = suffix
        else:
            fmt = fmt or "wav"
            path = path.with_name(path.name + "." + fmt)
        return path, fmt


def _text_keys(value: Any) -> Any:
    # YAML reads `1:` as an integer key; stem names are text
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


Tracks = Annotated[dict[str, TrackSettings], BeforeValidator(_text_keys)]


class MixerSettings(ConfigModel):
    """The mixer of a project alone (``tracks:`` and ``master:``): the studio's settings body."""

    tracks: Tracks = Field(default_factory=dict)
    master: MasterSettings = Field(default_factory=MasterSettings)


class ProjectFile(ConfigModel):
    """A remix project file (see :mod:`unbake.remix.project` for the rendering rules)."""

    stems: Annotated[Path, FilePath("folder")] | None = Field(None, description="a folder of stems")
    song: Annotated[Path, FilePath("file")] | None = Field(None, description="a song, separated once, then cached")
    model: Annotated[str, Text()] | None = Field(None, description="separation model for `song:` (`unbake models`)")
    tracks: Tracks = Field(default_factory=dict, description="one entry per stem; stems not listed play unchanged")
    master: MasterSettings = Field(default_factory=MasterSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    ab: AbList = Field(default_factory=list, description="A/B comparison (the original loudness-matched to "
                                                         "the remix), written to output.path or ab_output",
                       examples=[[{"at": 0, "use": "remix"}, {"at": 15, "use": "original"},
                                  {"at": 25, "use": "remix"}]])
    ab_output: Annotated[Path, FilePath()] | None = Field(None, description="where the A/B goes",
                                                          examples=["ab.wav"])
    ab_crossfade_ms: Annotated[float, Number(0.0, 2000.0)] = Field(DEFAULT_CROSSFADE_MS,
                                                                   description="A/B cross-fades, ms")

    @model_validator(mode="after")
    def _one_source(self, info: ValidationInfo) -> "ProjectFile":
        if info.context is not None and info.context.get("check_source", True):
            if (self.stems is None) == (self.song is None):
                raise invalid("give exactly one source: `stems:` (a folder of stems) or `song:` (a file)", "stems")
            if self.stems is not None and self.model is not None:
                raise invalid("applies to `song:` only (the stems are already separated)", "model")
        if self.ab_output is not None and not self.ab:
            raise invalid("needs an `ab:` list of switch points", "ab_output")
        return self


# ------------------------------------------------------------------------------ derived from the models


def neutral_settings() -> dict[str, dict[str, Any]]:
    """The neutral mixer, ``{"track": {...}, "master": {...}}``, as JSON-able data under the
    project file's key names: the settings at which a render is the plain sum of the stems."""
    return {"track": neutral(TrackSettings), "master": neutral(MasterSettings)}


def yaml_value(value: Any) -> str:
    """``value`` as flow-style YAML (JSON scalars are YAML; a model at its neutral values)."""
    if isinstance(value, BaseModel):
        value = neutral(type(value))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    return json.dumps(value)


def _comment(field, example: bool = True) -> str:
    parts = []
    vt = value_type(field)
    if isinstance(vt, Number) and vt.range_text():
        parts.append(vt.range_text())
    if field.description:
        parts.append(field.description)
    if example and field.examples and field.get_default(call_default_factory=True) in (None, []):
        parts.append(f"e.g. {yaml_value(field.examples[0])}")
    return ", ".join(parts)


def template_lines(model: type[ConfigModel], indent: int = 0, *, values: dict[str, Any] | None = None,
                   comment_out: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> Iterator[str]:
    """YAML lines of ``model`` at its defaults (``values`` replace some), each key with a
    comment from its declaration (range, meaning, an example). An optional sub-section whose
    defaults are not neutral (a reverb) is written commented out, as are ``comment_out`` keys
    (shown with their example); ``only`` limits the keys written."""
    pad = " " * indent
    values = values or {}
    for name, field in model.model_fields.items():
        if is_internal(field):
            continue
        key = field.alias or name
        if only is not None and key not in only:
            continue
        value = values.get(key, field.get_default(call_default_factory=True))
        prefix = ""
        annotation = getattr(field.annotation, "__args__", (field.annotation,))
        section = next((a for a in annotation if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if value is None and section is not None:
            value = section()
            if not getattr(value, "neutral", False):
                prefix = "# "
        if key in comment_out:
            prefix, value = "# ", field.examples[0] if field.examples else value
        line = f"{pad}{prefix}{key}: {yaml_value(value)}"
        comment = _comment(field, example=key not in values) if key not in comment_out else field.description or ""
        yield f"{line:<24} # {comment}" if comment else line


__all__ = ["AbPoint", "AutomationPoint", "CompressorSettings", "EqBand", "MasterSettings", "MixerSettings",
           "OutputSettings", "ProjectFile", "ReverbSettings", "TrackSettings", "neutral_settings", "parse_time",
           "template_lines", "yaml_value"]
