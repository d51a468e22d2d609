"""Whole libraries: resumable batch separation into a mirrored folder tree, with a SQLite
manifest (``OUT/.unbake/batch.sqlite``), on local worker processes or a Ray cluster.

    report = unbake.batch.run(["~/Music"], "stems", model="unbake_small", two_stems="vocals")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["run", "status", "BatchReport", "BatchProgress", "BatchStatus"]

if TYPE_CHECKING:
    from .report import BatchReport, BatchStatus
    from .runner import BatchProgress


def __getattr__(name: str):
    # lazy: `unbake --help` imports the CLI, which must not pull in the engines
    if name in ("run", "BatchProgress"):
        from . import runner

        return getattr(runner, name)
    if name in ("status", "BatchReport", "BatchStatus"):
        from . import report

        return getattr(report, name)
    raise AttributeError(name)
