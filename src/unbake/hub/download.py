"""Model files: download (pooch over HTTP) into the user cache, verify by SHA-256 before anything
uses them, and find them again offline.

The cache is ``$UNBAKE_CACHE`` or the platform's user cache folder for ``unbake``; a file lives
there under its catalogue name. ``UNBAKE_OFFLINE=1`` forbids the network: a missing file is then
an :class:`OfflineError` that says where to put a hand-copied file.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from .._common import atomic_path, cache_root, sha256_file
from ..errors import ChecksumError, DownloadError, OfflineError

if TYPE_CHECKING:  # types only: the catalogue asks this module what is cached, not the reverse
    from .catalogue import FileSpec, ModelEntry

log = logging.getLogger(__name__)

ENV_OFFLINE = "UNBAKE_OFFLINE"
_CHUNK_BYTES = 1 << 20
# written next to a verified file so that later look-ups need not hash it again
_STAMP_SUFFIX = ".verified"


def cache_dir() -> Path:
    """Where model files are kept: the cache root (``$UNBAKE_CACHE``, else the user cache folder)."""
    return cache_root()


def offline() -> bool:
    """True when ``UNBAKE_OFFLINE`` forbids downloads."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


def target_path(spec: FileSpec) -> Path:
    """The path a file of the catalogue has in the cache (present or not)."""
    name = Path(spec.name).name
    if not name or name != spec.name:
        raise DownloadError(f"catalogue file name {spec.name!r} must be a plain file name")
    return cache_dir() / name


def _expected(spec: FileSpec) -> str:
    if spec.sha256:
        return f"sha256 {spec.sha256.lower()}"
    if spec.sha256_prefix:
        return f"sha256 starting with {spec.sha256_prefix.lower()}"
    return "no checksum listed"


def _digest_matches(spec: FileSpec, digest: str) -> bool:
    if spec.sha256 and digest != spec.sha256.lower():
        return False
    if spec.sha256_prefix and not digest.startswith(spec.sha256_prefix.lower()):
        return False
    return True


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + _STAMP_SUFFIX)


def _write_stamp(path: Path, digest: str) -> None:
    st = path.stat()
    try:
        _stamp_path(path).write_text(json.dumps(
            {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}))
    except OSError:  # read-only cache: verification is simply repeated next time
        pass


def _stamped_digest(path: Path) -> str | None:
    """The digest recorded when ``path`` was last verified, if the file has not changed since."""
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return None
    if stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns:
        return stamp.get("sha256")
    return None


def _verified(spec: FileSpec, path: Path) -> bool:
    """Size and checksum of ``path`` match ``spec``; hashes only when no valid stamp exists."""
    if spec.size is not None and path.stat().st_size != spec.size:
        return False
    digest = _stamped_digest(path)
    if digest is None:
        digest = sha256_file(path)
        if _digest_matches(spec, digest):
            _write_stamp(path, digest)
    return _digest_matches(spec, digest)


def cached_path(spec: FileSpec) -> Path | None:
    """The cached file for ``spec`` if it is present and verified, else ``None``."""
    path = target_path(spec)
    if not path.is_file():
        return None
    return path if _verified(spec, path) else None


def _downloader(url: str, progress: bool):
    import pooch

    # pooch draws its bar with tqdm; without tqdm, download silently rather than fail
    bar = progress and importlib.util.find_spec("tqdm") is not None
    if urlparse(url).scheme in ("http", "https"):
        return pooch.HTTPDownloader(progressbar=bar, chunk_size=_CHUNK_BYTES)
    return pooch.downloaders.choose_downloader(url, progressbar=bar)


class _CappedFile:
    """The download's output file, refusing bytes past the catalogue's size: a server that sends
    more stops at the listed size instead of filling the disk."""

    def __init__(self, fh, limit: int | None) -> None:
        self.fh = fh
        self.limit = limit
        self.written = 0

    def write(self, data: bytes) -> int:
        if self.limit is not None and self.written + len(data) > self.limit:
            raise _TooLarge(self.limit)
        self.written += len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


class _TooLarge(Exception):
    pass


def _manual_hint(spec: FileSpec, target: Path) -> str:
    return f"Download {spec.url} and save it as {target}"


def _reason(exc: BaseException) -> str:
    """The root cause of a network error in a few words (requests wraps it three levels deep,
    in a 400-character message that repeats the URL and an object's address)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__
        if inner is None and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        if not isinstance(inner, BaseException):
            break
        exc = inner
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    m = re.search(r"\[Errno -?\d+\] (.*)", text)
    if m:
        text = m.group(1)
    text = re.sub(r"^<[^>]*>: ", "", text)
    return text[:120]


def fetch(spec: FileSpec, *, progress: bool = False) -> Path:
    """Return the verified local copy of ``spec``, downloading it when needed.

    The download goes to a temporary name in the cache folder and is renamed only once its
    size and checksum are right, so a partial or corrupt file is never used; a transfer longer
    than the listed size is cut off there.

    Raises:
        OfflineError: not cached and ``UNBAKE_OFFLINE`` is set.
        ChecksumError: the downloaded content does not match the catalogue (file removed).
        DownloadError: the server could not be reached, refused, or the transfer broke off.
    """
    hit = cached_path(spec)
    if hit is not None:
        return hit
    target = target_path(spec)
    if offline():
        why = " (the file there failed verification)" if target.exists() else ""
        raise OfflineError(
            f"{spec.name} is not in the cache{why} and downloads are off ({ENV_OFFLINE}=1). "
            f"{_manual_hint(spec, target)}, or unset {ENV_OFFLINE}.")
    log.info("downloading %s -> %s", spec.url, target)
    try:
        with atomic_path(target) as tmp:
            _download(spec, tmp, target, progress)
            size = tmp.stat().st_size
            if spec.size is not None and size != spec.size:
                raise DownloadError(f"download of {spec.url} is incomplete or wrong: {size} bytes "
                                    f"received, {spec.size} expected")
            digest = sha256_file(tmp)
            if not _digest_matches(spec, digest):
                raise ChecksumError(f"{spec.url}: content has sha256 {digest}, the catalogue lists "
                                    f"{_expected(spec)}; the file was discarded")
    except OSError as exc:
        why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise DownloadError(f"cannot write to the model cache {target.parent}: {why}") from exc
    _write_stamp(target, digest)
    return target


def _download(spec: FileSpec, tmp: Path, target: Path, progress: bool) -> None:
    with open(tmp, "w+b") as fh:
        out = _CappedFile(fh, spec.size)
        try:
            _downloader(spec.url, progress)(spec.url, out, None)
        except _TooLarge:
            raise DownloadError(f"{spec.url} sends more than the {spec.size} bytes the catalogue lists; "
                                "stopped there and discarded the file") from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            raise DownloadError(f"could not download {spec.name} ({_reason(exc)}). "
                                f"{_manual_hint(spec, target)}.") from exc
        except Exception as exc:  # requests, urllib3, ftplib errors all mean the same here
            raise DownloadError(f"could not download {spec.name} ({_reason(exc)}). "
                                f"{_manual_hint(spec, target)}.") from exc


def fetch_entry(entry: ModelEntry, *, progress: bool = False) -> list[Path]:
    """Verified local paths of all files of a catalogue model, downloading what is missing."""
    return [fetch(spec, progress=progress) for spec in entry.files]


def is_cached(entry: ModelEntry) -> bool:
    """True when every file of ``entry`` is present and verified in the cache."""
    return all(cached_path(spec) is not None for spec in entry.files)
