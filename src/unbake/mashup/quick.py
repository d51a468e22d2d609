"""The mash-up most people ask for first: one song's vocals over another song's band.

:func:`vocals_over_band` makes it a project, the same data a project file holds: song ``a``'s
vocals brought to song ``b``'s tempo and key (``auto``, the match plan, formants kept), lined up on
``b``'s beats (``align: beats``), at the loudness ``b``'s own vocals had; ``b``'s other stems as its
band; the timeline as long as ``b``; a master bus at a streaming level. :func:`project_text` writes
it as a commented project file to edit (``unbake mashup --init``); ``unbake mashup --vocals A
--band B`` renders it as it is.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .._common import track_name
from .._schema import validate
from ..errors import AudioError, ConfigError
from ..remix.loudness import integrated_lufs
from ..remix.schema import yaml_value
from ..stems import StemSet
from .project import SongSpec, load_song

VOCALS = "vocals"
VOCALS_SONG, BAND_SONG = "a", "b"
# a stem named so in a stems folder is the whole song, not a part of the band
MIXTURE = "mixture"
LOUDNESS_LUFS = -14.0   # where streaming services play music back
TRUE_PEAK_DB = -1.0
# the vocal gain is kept inside this range: beyond it the two loudness figures are not comparable
# (a near-silent vocals stem, a stem of clicks)
MAX_VOCAL_GAIN_DB = 24.0


@dataclass
class VocalsOverBand:
    """A two-song mash-up: :attr:`data` is the project (what a project file parses to),
    :attr:`stems` the two songs' stems already loaded (``{"a": ..., "b": ...}``, for
    :class:`~unbake.mashup.project.Mashup`'s ``stems``), :attr:`notes` how the choices were made."""

    data: dict
    stems: dict[str, StemSet]
    band_note: str
    gain_note: str

    @property
    def notes(self) -> list[str]:
        return [self.band_note, self.gain_note]


def vocals_over_band(vocals: str | os.PathLike, band: str | os.PathLike, *, model: str | None = None,
                     output: str | os.PathLike | None = None,
                     progress: Callable[[str], Callable[[float], None] | None] | None = None) -> VocalsOverBand:
    """The project that puts the vocals of song ``vocals`` over the band of song ``band``.

    Each song is a song file (separated by ``model``, once, cached) or a folder of stems. The
    band is every stem of ``band`` except ``vocals``; the vocals get the gain that gives them
    the integrated loudness of ``band``'s own vocals (0 dB when ``band`` has none, or either is
    silent). ``output`` defaults to ``A-over-B.wav``. ``progress(song name)`` may return a
    callback for that song's separation progress."""
    paths = {VOCALS_SONG: Path(vocals), BAND_SONG: Path(band)}
    flags = {VOCALS_SONG: "--vocals", BAND_SONG: "--band"}
    specs, stems = {}, {}
    for name, path in paths.items():
        if not path.exists():
            raise AudioError(f"{flags[name]} {path}: no such file or folder")
        spec_data = {"path": str(path.resolve())}
        if not path.is_dir():
            from ..separate import default_model

            spec_data["model"] = model or default_model()
        specs[name] = spec_data
        stems[name] = load_song(validate(SongSpec, spec_data), progress=progress(name) if progress else None)
    sa, sb = stems[VOCALS_SONG], stems[BAND_SONG]
    if VOCALS not in sa:
        raise ConfigError(f"--vocals {paths[VOCALS_SONG]}: has no {VOCALS} stem; its stems are {', '.join(sa.names)}")
    band_stems = [n for n in sb.names if n not in (VOCALS, MIXTURE)]
    if not band_stems:
        raise ConfigError(f"--band {paths[BAND_SONG]}: has no stem besides {VOCALS}")
    band_track = f"{BAND_SONG}:{'+'.join(band_stems)}"

    gain_db = 0.0
    if VOCALS in sb:
        target, own = _loudness(sb[VOCALS], sb.sample_rate), _loudness(sa[VOCALS], sa.sample_rate)
        if math.isfinite(target) and math.isfinite(own):
            gain_db = round(max(-MAX_VOCAL_GAIN_DB, min(MAX_VOCAL_GAIN_DB, target - own)), 1)
            gain_note = (f"vocals {gain_db:+.1f} dB: from {own:.1f} LUFS to {target:.1f} LUFS, "
                         f"the loudness of {BAND_SONG}'s own vocals")
        else:
            gain_note = "vocals at their own level: a vocals stem is silent or too short to measure"
    else:
        gain_note = f"vocals at their own level: {BAND_SONG} has no {VOCALS} stem to match"
    out = Path(output) if output is not None else default_output(vocals, band)
    data = {
        "songs": specs,
        "reference": BAND_SONG,
        "tracks": [
            {"stem": f"{VOCALS_SONG}:{VOCALS}", "to_bpm": "auto", "semitones": "auto",
             "preserve_formants": True, "align": "beats", "gain_db": gain_db},
            {"stem": band_track},
        ],
        # b's length (the timeline runs at b's rate; 1 µs is a fiftieth of a sample at 44.1 kHz)
        "length": round(sb.frames / sb.sample_rate, 6),
        "master": {"loudness_lufs": LOUDNESS_LUFS, "true_peak_db": TRUE_PEAK_DB},
        "output": {"path": str(out)},
    }
    return VocalsOverBand(data, stems, f"band: {band_track}", gain_note)


def default_output(vocals: str | os.PathLike, band: str | os.PathLike) -> Path:
    """``A-over-B.wav`` in the working folder."""
    return Path(f"{track_name(vocals)}-over-{track_name(band)}.wav")


def _loudness(audio, sample_rate: int) -> float:
    try:
        return integrated_lufs(audio, sample_rate)
    except AudioError:
        return -math.inf


def project_text(mashup: VocalsOverBand) -> str:
    """:attr:`VocalsOverBand.data` as a project file with comments; it parses to the same project."""
    d = mashup.data
    vocals, band = d["tracks"]

    def song(name: str) -> str:
        return f"  {name}: {yaml_value(d['songs'][name])}"

    lines = [
        "# unbake mash-up project: render with `unbake mashup THIS_FILE.yaml`",
        "# (see examples/mashup.yaml for every key: sections, channels, sync, warp, bars)",
        "songs:",
        song(VOCALS_SONG) + "   # the vocals come from here",
        song(BAND_SONG) + "   # the band comes from here",
        "  # bpm: 92.5 / key: \"D minor\" in a song's entry replace what the analysis finds",
        f"reference: {BAND_SONG}                # `auto` brings the other song to this one's tempo and key",
        "tracks:",
        f"  - stem: {vocals['stem']}",
        "    to_bpm: auto             # the reference's tempo (or half/double it: the smaller stretch)",
        "    semitones: auto          # the reference's key (or its relative key: the smaller move)",
        f"    preserve_formants: {yaml_value(vocals['preserve_formants'])}  # keeps the voice's timbre when shifting",
        f"    align: {vocals['align']}             # line the beats up (moves at most half a beat)",
        f"    gain_db: {vocals['gain_db']:g}             # {mashup.gain_note}",
        "    # sections: [{from: \"0:30\", to: \"1:00\", at: \"0:15\"}]   # parts of the vocals only",
        f"  - stem: {yaml_value(band['stem'])}",
        f"length: {d['length']!r}         # seconds: the band's length",
        "master:",
        f"  loudness_lufs: {d['master']['loudness_lufs']:g}",
        f"  true_peak_db: {d['master']['true_peak_db']:g}",
        "output:",
        f"  path: {yaml_value(d['output']['path'])}",
    ]
    return "\n".join(lines) + "\n"


__all__ = ["VocalsOverBand", "default_output", "project_text", "vocals_over_band"]
