"""Mash-ups: stems of several songs, matched in tempo and key, placed and mixed through the
remix master bus. The project format is described in :mod:`unbake.mashup.project`."""

from .project import Mashup, MashupProject
from .quick import VocalsOverBand, project_text, vocals_over_band

__all__ = ["Mashup", "MashupProject", "VocalsOverBand", "project_text", "vocals_over_band"]
