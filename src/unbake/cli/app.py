"""The typer application and what every command shares: error reporting and progress bars.

Only the CLI turns errors into messages and exit codes; it imports nothing heavy at start-up
(``unbake --help`` must not import torch)."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from typing import Callable, Iterator

import typer
from rich.console import Console

app = typer.Typer(
    name="unbake",
    help="Take a finished recording apart into its stems, and put them back together.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


# Library errors name Python parameters; each is the flag of the same name with dashes, except:
_FLAGS = {"segment_s": "--segment"}


def flag_for(parameter: str) -> str:
    """The command-line flag that sets a library parameter (``overlap`` -> ``--overlap``)."""
    return _FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def error_text(exc: BaseException) -> str:
    """One line for an error, naming flags where the library names parameters."""
    from ..errors import ParameterError

    if isinstance(exc, ParameterError):
        return f"{flag_for(exc.parameter)}: {exc.detail}"
    if isinstance(exc, OSError):
        import errno

        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            return f"no space left on the disk{where}"
        return f"{exc.strerror or exc}{where}"
    return str(exc)


def handle_errors(func: Callable) -> Callable:
    """Typed errors (and a full disk) -> one line on stderr and a non-zero exit; Ctrl-C -> one
    line and exit 130; no traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from ..errors import UnbakeError

        try:
            with _ctrl_c_remembered():
                try:
                    result = func(*args, **kwargs)
                except Exception:
                    raise_if_interrupted()  # an error that a Ctrl-C turned into another is the Ctrl-C
                    raise
                raise_if_interrupted()
            return result
        except UnbakeError as exc:
            fail(_escape(error_text(exc)), getattr(exc, "exit_code", 1))
        except OSError as exc:
            fail(_escape(error_text(exc)), 1)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


_ctrl_c: list[int] = []  # a Ctrl-C the running command received


def _on_ctrl_c(signum, frame) -> None:
    _ctrl_c.append(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def _ctrl_c_remembered() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as always, and is remembered meanwhile: a C extension that
    runs Python code where it cannot raise drops a KeyboardInterrupt raised there, or turns it into
    another error (PyAV while it decodes, numpy's ``tofile``), and the work would go on to the end
    or fail with a traceback; commands call :func:`raise_if_interrupted` as they go (each progress
    report) and once they are done, and any error that follows a Ctrl-C is reported as the Ctrl-C.
    A process that ignores Ctrl-C (started in the background) keeps ignoring it."""
    import signal
    import threading

    _ctrl_c.clear()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt again if Ctrl-C came and something swallowed it."""
    if _ctrl_c:
        raise KeyboardInterrupt


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def make_progress():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        disable=not sys.stderr.isatty() and not _force_progress(),
    )


def progress_bar(progress, label: str) -> Callable[[float], None]:
    """A progress callback (fraction done) that adds its bar to ``progress`` on first use, so a
    step that turns out to need no work (a cached separation) shows no bar."""
    task = []

    def update(fraction: float) -> None:
        if not task:
            task.append(progress.add_task(label, total=1.0))
        progress.update(task[0], completed=fraction)

    return update


def _force_progress() -> bool:
    import os

    return os.environ.get("UNBAKE_PROGRESS") == "1"


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    _sweep()


def _sweep() -> None:
    """Every command starts by deleting what killed runs left: their temporary folders under
    the cache and their half-written ``.part`` files there."""
    from .._common import sweep_stale

    try:
        removed = sweep_stale()
    except OSError:  # an unusable cache folder is reported by whatever needs it
        return
    if removed:
        logging.getLogger("unbake").info("removed %d leftover temporary file(s)/folder(s)", len(removed))
