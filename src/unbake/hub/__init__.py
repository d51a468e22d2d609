"""Model catalogue, downloads and checkpoint readers.

``model_from_config(arch, kwargs)`` builds any supported architecture from the reference
constructor kwargs that a checkpoint or an MSST YAML carries; ``load_model`` turns a catalogue
name or a checkpoint path into a ready model."""

from .architectures import ARCHITECTURES, model_from_config
from .catalogue import load_catalogue
from .ensemble import Ensemble
from .loading import load_model

__all__ = ["ARCHITECTURES", "Ensemble", "load_catalogue", "load_model", "model_from_config"]
