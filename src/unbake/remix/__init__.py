"""Remix and re-master separated stems: per-stem level, pan, EQ, dynamics and automation, a
mastering bus (loudness + true-peak limiter), A/B renders and YAML project files.

Public API::

    from unbake.remix import Remix
    remix = Remix(stems).gain("vocals", 3).pan("bass", 0.3).mute("other")
    remix.master(loudness_lufs=-14, true_peak_db=-1)
    audio = remix.render()                     # float32 (2, t)
    Remix.from_project("project.yaml").render_project()

Building blocks (used by other front ends too): :mod:`.schema` (the project file format as
pydantic models, and :func:`~.schema.neutral_settings`),
:mod:`.effects` (EQ/compressor/reverb chains), :mod:`.mixer` (pan law, track strips, bus),
:mod:`.master` (meters, limiter, mastering), :mod:`.automation` (envelopes, A/B switching).
"""

from .automation import AbPoint, AutomationPoint, ab_switch, parse_ab, parse_automation, ramp_envelope
from .effects import (CompressorSettings, EqBand, ReverbSettings, TrackFx, apply_chain, build_chain,
                      parse_compressor, parse_eq, parse_reverb)
# the function `master` stays in its module so that `unbake.remix.master` names the module
from .master import MasterSettings, integrated_lufs, limit_true_peak, measure, parse_master, true_peak_db
from .mixer import TrackSettings, balance_gains, mix, pan_gains, place
from .project import Project, Remix, Source, init_project, source_from_path
from .schema import OutputSettings, neutral_settings
from ..separation_cache import separate_cached, separation_cache_dir

__all__ = [
    "AbPoint", "AutomationPoint", "CompressorSettings", "EqBand", "MasterSettings", "OutputSettings", "Project", "Remix",
    "ReverbSettings", "Source", "TrackFx", "TrackSettings", "ab_switch", "apply_chain", "balance_gains",
    "build_chain", "init_project", "integrated_lufs", "limit_true_peak", "measure", "mix", "neutral_settings",
    "pan_gains", "parse_ab", "parse_automation", "parse_compressor", "parse_eq", "parse_master",
    "parse_reverb", "place", "ramp_envelope", "separate_cached", "separation_cache_dir", "source_from_path",
    "true_peak_db",
]
