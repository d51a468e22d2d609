"""Command-line front end: parse, call the facade, print. Nothing else."""

from .app import app

# each module registers its commands on `app`; none imports torch at import time
from . import separate_cmd  # noqa: E402,F401
from . import eval_cmd  # noqa: E402,F401
from . import mashup_cmd  # noqa: E402,F401
from . import sync_cmd  # noqa: E402,F401
from . import train_cmd  # noqa: E402,F401
from . import remix_cmd  # noqa: E402,F401
from . import studio_cmd  # noqa: E402,F401
from . import transcribe_cmd  # noqa: E402,F401
from . import batch_cmd  # noqa: E402,F401
from . import data_cmd  # noqa: E402,F401


def main() -> None:
    app()


__all__ = ["app", "main"]
