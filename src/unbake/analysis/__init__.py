"""Music analysis for matching songs: tempo, beats, key, onset envelopes, alignment between
recordings, and the time-stretch / pitch-shift transforms that act on what was found.

librosa is an optional extra (``pip install unbake[analysis]``), imported only when called.
"""

from .align import find_offset
from .analyze import Analysis, Key, analyze, analyze_stems, parse_key
from .transforms import MatchPlan, TransformError, match, pitch_shift, stretch_and_shift, time_stretch

__all__ = ["Analysis", "Key", "MatchPlan", "TransformError", "analyze", "analyze_stems", "find_offset", "match",
           "parse_key", "pitch_shift", "stretch_and_shift", "time_stretch"]
