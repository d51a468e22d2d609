"""Small concepts every part of unbake shares, written once: track names and audio suffixes,
atomic writes, file hashing and the cache root.

Nothing here imports torch or any other heavy module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

__version__ = "0.1.0"

ENV_CACHE = "UNBAKE_CACHE"

# Files unbake reads as audio when it lists a folder (decoding itself takes anything FFmpeg reads).
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif", ".m4a")
# NI Stems files: one file, several streams (mixture first, then the stems)
STEMS_FILE_SUFFIXES = (".stem.mp4", ".stem.m4a")

# Temporary names carry the writer's PID, so that a later start can tell a file left by a killed
# process (PID gone) from one that a live process is still writing.
PART_SUFFIX = ".part"

# Numeric precisions of a model call (unbake.engine.precision); here because the catalogue and the
# request check names without importing torch
PRECISIONS = ("float32", "bfloat16", "float16", "int8", "fast")

_CHUNK_BYTES = 1 << 20


def is_stems_file(path: str | os.PathLike) -> bool:
    """True for an NI Stems file name (``*.stem.mp4`` / ``*.stem.m4a``)."""
    return Path(path).name.lower().endswith(STEMS_FILE_SUFFIXES)


def track_name(path: str | os.PathLike) -> str:
    """The name of the track a file holds: the file name without its extension, and without
    ``.stem.mp4`` as a whole for an NI Stems file (``song.stem.mp4`` -> ``song``). A folder keeps
    its name."""
    path = Path(path)
    name = path.name
    for suffix in STEMS_FILE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.suffix else name


def is_audio_file(path: str | os.PathLike) -> bool:
    """A visible file whose suffix is one of :data:`AUDIO_SUFFIXES` or an NI Stems file."""
    path = Path(path)
    return (not path.name.startswith(".") and path.is_file()
            and (path.suffix.lower() in AUDIO_SUFFIXES or is_stems_file(path)))


def cache_root() -> Path:
    """Where unbake keeps what it can make again (model files, separations, temporary work):
    ``$UNBAKE_CACHE``, else the platform's user cache folder."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("unbake"))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks (memory does not grow with the file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def part_prefix(final: Path) -> str:
    return f".{final.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; when the block ends without an exception the
    temporary file replaces ``final`` in one rename, otherwise it is removed. A reader (or a
    process killed at any moment) never sees half a file under the final name. ``suffix`` is
    appended after ``.part`` for writers that pick the format from the extension."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=part_prefix(final), suffix=PART_SUFFIX + suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path` for a folder: filled under a temporary name, then renamed. If
    ``final`` appeared meanwhile (another process made the same folder), the new one is dropped."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=part_prefix(final), suffix=PART_SUFFIX, dir=final.parent))
    try:
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class CommitOnExit:
    """For writers with ``commit()`` and ``abort()``: a ``with`` block commits the file when it
    ends normally and aborts it (nothing left under the final name) on an exception."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """JSON (indented, non-JSON values as strings) under a temporary name, then renamed.
    Raises :class:`~unbake.errors.OutputError` naming the path when it cannot be written."""
    from .errors import OutputError

    try:
        write_text_atomic(path, json.dumps(data, indent=2, default=str))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def find_dataset_tracks(root: str | os.PathLike) -> list[Path]:
    """The tracks of a MUSDB-format folder, in name order: NI Stems files (``*.stem.mp4``) and
    folders holding one audio file per stem. Training and evaluation read datasets alike.

    Raises :class:`~unbake.errors.ConfigError` when the folder is missing or holds no track."""
    from .errors import ConfigError

    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: dataset folder not found")
    found = []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and is_stems_file(p):
            found.append(p)
        elif p.is_dir() and any(c.suffix.lower() in AUDIO_SUFFIXES for c in p.iterdir()):
            found.append(p)
    if not found:
        raise ConfigError(f"{root}: no tracks (expected *.stem.mp4 files or folders with one file per stem)")
    return found


# ---------------------------------------------------------------- temporary work and stale files

TEMP_DIRNAME = "tmp"
_PROCESS_PREFIX = "pid-"
# ``.<name>.<pid>.<8 random chars>.part[<suffix>]``, as :func:`atomic_path` and friends make them
_PART_RE = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]{8}\.part(\..*)?$")


def temp_root() -> Path:
    """``<cache root>/tmp``: every process keeps its temporary work in a folder of its own here."""
    return cache_root() / TEMP_DIRNAME


_PROCESS_RE = re.compile(r"^pid-(\d+)-(.*)$")


def _host() -> str:
    import socket

    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


def process_dir_name(pid: int | None = None) -> str:
    """``pid-<PID>-<host>``: the PID tells a killed process's folder from a running one's; the
    host keeps machines (or containers) that share a cache from judging each other's PIDs."""
    return f"{_PROCESS_PREFIX}{os.getpid() if pid is None else pid}-{_host()}"


def process_temp_dir() -> Path:
    """This process's temporary folder, ``<cache root>/tmp/pid-<PID>-<host>`` (created on first
    use); a later start deletes it once the process is gone (:func:`sweep_stale`)."""
    name = process_dir_name()
    try:
        folder = temp_root() / name
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only cache: the system's temporary folder, same layout
        folder = _fallback_temp_root() / name
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def _fallback_temp_root() -> Path:
    return Path(tempfile.gettempdir()) / "unbake-tmp"


@contextlib.contextmanager
def temp_workdir(prefix: str = "work-") -> Iterator[Path]:
    """A fresh folder inside :func:`process_temp_dir`, deleted when the block ends (also on
    errors and Ctrl-C; after a kill, the next start sweeps it)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=process_temp_dir()))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """True when a process with this PID exists (on this machine)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


def part_owner(path: str | os.PathLike) -> int | None:
    """The PID in a temporary name made by :func:`atomic_path` / :func:`atomic_dir`, else None."""
    m = _PART_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def sweep_stale_parts(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary ``.part`` files and folders in ``folder`` (not below it) whose
    writer is gone; returns what was deleted. A missing or unreadable folder is left alone."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        pid = part_owner(entry.name)
        if pid is None or pid_alive(pid):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def sweep_stale(extra: tuple[str | os.PathLike, ...] = ()) -> list[Path]:
    """What killed processes left behind: their ``<cache root>/tmp/pid-<PID>-<host>`` folders and the
    ``.part`` files in the cache (downloads, separations) and in ``extra`` folders. Cheap: lists
    a few folders, never walks a tree. Returns the deleted paths."""
    removed: list[Path] = []
    entries = []
    for folder in (temp_root(), _fallback_temp_root()):
        try:
            entries.extend(os.scandir(folder))
        except OSError:
            pass
    host = _host()
    for entry in entries:
        m = _PROCESS_RE.match(entry.name)
        if not m or m.group(2) != host or pid_alive(int(m.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    root = cache_root()
    for folder in (root, root / "separations", *extra):
        removed.extend(sweep_stale_parts(folder))
    return removed
