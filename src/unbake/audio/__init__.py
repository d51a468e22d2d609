"""Audio in and out: decoding, encoding, resampling and channel layout live only here."""

from .dsp import (CLIP_MODES, StreamResampler, apply_clip, as_channels_first, clip_gain,
                  convert_channels, downmix, resample)
from .io import (BIT_DEPTHS, OUTPUT_FORMATS, AudioInfo, AudioWriter, info, iter_blocks,
                 read_audio, read_stems, stream_names, write_audio)


def example_path():
    """The example NI stems file that the ``stempeg`` package ships (a real 6 s song).

    Found without importing stempeg (its import needs ffmpeg binaries).
    """
    import importlib.util
    from pathlib import Path

    from ..errors import DependencyError

    spec = importlib.util.find_spec("stempeg")
    if spec is None or spec.origin is None:
        raise DependencyError("the example song comes with the stempeg package: pip install stempeg")
    files = sorted((Path(spec.origin).parent / "data").glob("*.stem.mp4"))
    if not files:
        raise DependencyError("the installed stempeg package has no example stems file")
    return files[0]


__all__ = [
    "AudioInfo", "AudioWriter", "BIT_DEPTHS", "CLIP_MODES", "OUTPUT_FORMATS", "StreamResampler",
    "apply_clip", "as_channels_first", "clip_gain", "convert_channels", "downmix", "example_path",
    "info", "iter_blocks", "read_audio", "read_stems", "resample", "stream_names", "write_audio",
]
