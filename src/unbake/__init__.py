"""unbake: take a finished recording apart into its stems, and put them back together.

Public API::

    import unbake
    stems = unbake.separate("song.mp3")                # StemSet, default model
    stems = unbake.separate(audio, sample_rate=44100, model="htdemucs")
    model = unbake.load_model("htdemucs", pretrained=False)
"""

from __future__ import annotations

from ._common import __version__

__all__ = ["StemSet", "UnbakeError", "load_model", "separate", "separate_file", "__version__"]


# separate.py imports torch only inside its functions; binding the function here also hides the
# submodule of the same name, so `unbake.separate(...)` is always the function.
from .errors import UnbakeError
from .separate import separate, separate_file
from .stems import StemSet


def __getattr__(name: str):
    # Lazy: importing unbake (and running `unbake --help`) must not import torch.
    if name == "load_model":
        from .hub.loading import load_model

        return load_model
    raise AttributeError(f"module 'unbake' has no attribute {name!r}")
