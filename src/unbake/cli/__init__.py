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
    try:
        app()
    except SystemExit as done:
        _exit(done.code)
    _exit(0)


def _exit(code) -> None:
    """Leave as ``sys.exit(code)`` would, without the interpreter's teardown when torch is loaded:
    freeing its modules and tensors one by one takes longer than encoding a song's stems
    (model card, "Speed and memory"). The exit handlers (temporary files, worker processes,
    logging) still run first, after the threads that are not daemons, as at a normal exit; only
    the freeing that the operating system does anyway is skipped."""
    import sys

    if "torch" not in sys.modules:
        sys.exit(code)
    import atexit
    import os
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a broken pipe: nothing more can be said
            pass
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message goes to stderr, the status is 1
        print(code, file=sys.stderr)
        status = 1
    os._exit(status)


__all__ = ["app", "main"]
