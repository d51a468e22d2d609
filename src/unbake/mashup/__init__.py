"""Mash-ups: stems of several songs, matched in tempo and key, placed and mixed through the
remix master bus. The project format is described in :mod:`unbake.mashup.project`."""

from .project import Mashup, MashupProject

__all__ = ["Mashup", "MashupProject"]
