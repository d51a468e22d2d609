"""Which files a batch separates, and where each one's outputs go: the source tree mirrored
under OUT, ``OUT/<folder relative to its SOURCE>/<track>/<stem>.<ext>``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .._common import is_audio_file, track_name
from ..errors import AudioError


@dataclass(frozen=True)
class Input:
    path: Path        # absolute
    rel_dir: str      # folder relative to its SOURCE, posix, "" for the top


def discover(sources: Iterable[str | os.PathLike], out: str | os.PathLike) -> list[Input]:
    """Every audio file under ``sources`` (folders are walked recursively; hidden files and
    folders, and OUT itself, are left out; a file named directly is taken whatever its suffix),
    each once, in path order.

    Raises :class:`~unbake.errors.AudioError` when a source does not exist."""
    out_abs = Path(os.path.abspath(os.path.expanduser(out)))
    found: dict[Path, Input] = {}
    for src in sources:
        src_path = Path(os.path.abspath(os.path.expanduser(src)))
        if src_path.is_file():
            found.setdefault(src_path, Input(src_path, ""))
            continue
        if not src_path.is_dir():
            raise AudioError(f"{src}: no such file or folder")
        for dirpath, dirnames, filenames in os.walk(src_path):
            here = Path(dirpath)
            # never walk into OUT (a library separated into a folder inside itself) or hidden folders
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and here / d != out_abs)
            for name in sorted(filenames):
                p = here / name
                if is_audio_file(p):
                    rel = here.relative_to(src_path).as_posix()
                    found.setdefault(p, Input(p, "" if rel == "." else rel))
    return [found[p] for p in sorted(found)]


def output_key(inp: Input, filename: str, fmt: str) -> str:
    """The outputs' path template for ``inp`` with the stem and model left open: two inputs with
    the same key would write the same files."""
    from ..separate import render_filename

    rendered = render_filename(filename, track=track_name(inp.path), stem="\0", ext=fmt, model="\0")
    return (Path(inp.rel_dir) / rendered).as_posix()
