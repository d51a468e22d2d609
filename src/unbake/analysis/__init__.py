"""Music analysis for matching songs: tempo (and tempo curves), beats, downbeats, key, onset
envelopes, alignment between recordings, time maps between two performances of one song, and
the time-stretch / pitch-shift / warp transforms that act on what was found.

Needs only numpy, scipy and soxr: the features are :mod:`unbake.audio.features`, computed as
librosa computes them (librosa itself is left to the MIDI transcription, :mod:`unbake.transcribe`).
"""

from .align import find_offset
from .analyze import Analysis, Key, analyze, analyze_stems, parse_key
from .timemap import LowConfidenceError, TimeMap, time_map
from .transforms import MatchPlan, TransformError, match, pitch_shift, stretch_and_shift, time_stretch
from .warp import warp, warp_to_bpm

__all__ = ["Analysis", "Key", "LowConfidenceError", "MatchPlan", "TimeMap", "TransformError", "analyze",
           "analyze_stems", "find_offset", "match", "parse_key", "pitch_shift", "stretch_and_shift", "time_map",
           "time_stretch", "warp", "warp_to_bpm"]
