"""Between the mixer in the browser and the remix engine: the browser's settings are the
``tracks:`` and ``master:`` sections of an ``unbake remix`` project file, validated and rendered
by :mod:`unbake.remix` exactly as the command line does, so both give the same file.

Settings as JSON::

    {"tracks": {"vocals": {"gain_db": -3, "pan": 0, "mute": false, "solo": false, ...}, ...},
     "master": {"loudness_lufs": -14}}

Track keys the studio has no control for (eq, compressor, reverb, automation) pass through
untouched: they are heard in exports, not in the browser preview.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError

# sections of a project file the studio does not carry; a loaded project loses them (and says so)
_DROPPED_ON_LOAD = ("stems", "song", "model", "output", "ab", "ab_output", "ab_crossfade_ms")


def _project(stems_dir: Path, stems: Sequence[str], settings: Mapping[str, Any]):
    """Validate browser settings as a project over the job's stems (a parsed ``Project``)."""
    from .._schema import validate
    from ..remix.project import Project, Source
    from ..remix.schema import MixerSettings

    for name in validate(MixerSettings, settings).tracks:
        if name not in stems:
            raise ConfigError(f"tracks.{name}: unknown stem; the stems are {', '.join(stems)}")
    data = {"tracks": dict(settings.get("tracks") or {}), "master": settings.get("master") or {}}
    return Project.parse(data, None, source=Source(stems=stems_dir))


def render(stems_dir: Path, stems: Sequence[str], settings: Mapping[str, Any], target: Path) -> dict[str, Any]:
    """Render ``settings`` over the stems in ``stems_dir`` into ``target`` (format from its suffix).

    Returns the written file's integrated loudness and true peak.
    """
    from ..remix.master import measure
    from ..remix.project import Remix

    project = _project(stems_dir, stems, settings)
    mixer = Remix.from_parsed(project)
    audio = mixer.render()
    mixer.write(target, audio, overwrite=True)
    figures = measure(audio, mixer.sample_rate)
    return {"integrated_lufs": _finite(figures["integrated_lufs"]), "true_peak_db": _finite(figures["true_peak_db"]),
            "duration_s": audio.shape[1] / mixer.sample_rate}


def ab_match(loudness_path: Path, stems: Sequence[str], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The A/B loudness match for ``settings`` from the job's loudness gram (see
    :func:`unbake.studio.meters.ab_match`); the settings are validated as for a render."""
    from .meters import ab_match as match, load_gram

    project = _project(loudness_path.parent / "stems", stems, settings)
    gram, plan, sample_rate = load_gram(loudness_path)
    tracks = {s: project.tracks[s].to_dict() for s in stems if s in project.tracks}
    return match(gram, plan, sample_rate, stems, tracks)


def project_yaml(stems_dir: Path, stems: Sequence[str], settings: Mapping[str, Any], *, name: str) -> str:
    """The settings as a project file for ``unbake remix`` (pointing at the job's stems folder)."""
    import yaml

    project = _project(stems_dir, stems, settings)
    data: dict[str, Any] = {
        "stems": str(stems_dir),
        "tracks": {s: project.tracks[s].to_dict() for s in stems if s in project.tracks},
        "master": _master_dict(project.master),
        "output": {"path": f"{name} - mix.wav", "format": "wav"},
    }
    header = ("# unbake remix project, saved by unbake studio\n"
              "# render it with:  unbake remix THIS_FILE.yaml   (or load it in the studio)\n")
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def settings_from_project(text: str, stems: Sequence[str], stems_dir: Path) -> dict[str, Any]:
    """Mixer settings from a project file's text, for this job's stems.

    The file's source (``stems:``/``song:``) and output are ignored: the studio applies the mix to
    the open job and never opens a path named in an uploaded file.
    """
    from .._schema import parse_yaml

    data = parse_yaml(text, "the project file")
    if not isinstance(data, dict):
        raise ConfigError("the project file must hold a mapping (tracks:, master:, ...)")
    dropped = [k for k in _DROPPED_ON_LOAD if k in data]
    settings = {k: v for k, v in data.items() if k not in _DROPPED_ON_LOAD}
    project = _project(stems_dir, stems, settings)
    return {
        "tracks": {s: project.tracks[s].to_dict() for s in stems if s in project.tracks},
        "master": _master_dict(project.master),
        "ignored": dropped,
    }


def _master_dict(master) -> dict[str, Any]:
    d = master.to_dict()
    if d.get("loudness_lufs") is not None and d.get("true_peak_db") == -1.0:
        # the default ceiling that comes with a loudness target; left implicit as in hand-written files
        d.pop("true_peak_db")
    return d


def _finite(x: float) -> float | None:
    return round(float(x), 2) if math.isfinite(x) else None
