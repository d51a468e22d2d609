"""The few MP4 boxes unbake reads and writes itself: the NI Stems ``moov/udta/stem`` manifest
(see :func:`add_stem_manifest` for why it is not left to a tool)."""

from __future__ import annotations

import json
import os
import struct
from typing import Mapping

from ..errors import AudioError

# names other tools give a slot, read back as ours
_NAME_ALIASES = {"vox": "vocals", "vocal": "vocals", "voice": "vocals"}


def _box_header(fh) -> tuple[int, bytes, int] | None:
    """``(size, type, header length)`` of the box at the file position, or None at the end."""
    head = fh.read(8)
    if len(head) < 8:
        return None
    size, kind = struct.unpack(">I4s", head)
    header = 8
    if size == 1:
        size = struct.unpack(">Q", fh.read(8))[0]
        header = 16
    elif size == 0:  # extends to the end of the file
        here = fh.tell()
        fh.seek(0, os.SEEK_END)
        size = fh.tell() - here + 8
        fh.seek(here)
    return size, kind, header


def _children(data: bytes) -> list[tuple[bytes, bytes]]:
    """The boxes directly inside a box body: ``[(type, whole box bytes)]``."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        elif size == 0:
            size = len(data) - pos
        if size < 8 or pos + size > len(data):
            raise AudioError("malformed MP4 box inside moov")
        out.append((kind, data[pos:pos + size]))
        pos += size
    return out


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _find_top_level(fh, kind: bytes) -> tuple[int, int, int] | None:
    """``(offset, size, header length)`` of the last top-level box of ``kind``."""
    fh.seek(0)
    found = None
    while True:
        offset = fh.tell()
        head = _box_header(fh)
        if head is None:
            return found
        size, k, header = head
        if size < header:
            raise AudioError("malformed MP4 file")
        if k == kind:
            found = (offset, size, header)
        fh.seek(offset + size)


def add_stem_manifest(path: str | os.PathLike, manifest: Mapping) -> None:
    """Add (or replace) the ``moov/udta/stem`` box holding ``manifest`` as JSON.

    Written here rather than by a tool: the tool NI's stem creator and stempeg use for this box
    (gpac's ``MP4Box -udta``) is not packaged for Debian 12, FFmpeg's muxer writes no custom
    ``udta`` children, and mutagen edits only the iTunes ``ilst`` list. The edit is small
    because FFmpeg writes ``moov`` after the media data: growing ``moov`` moves no sample, so
    no chunk offset changes; a file with ``moov`` before ``mdat`` is refused rather than
    rewritten.
    """
    payload = json.dumps(dict(manifest), separators=(",", ":")).encode("utf-8")
    with open(path, "r+b") as fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        where = _find_top_level(fh, b"moov")
        if where is None:
            raise AudioError(f"{path}: no moov box")
        offset, size, header = where
        if offset + size != end:
            raise AudioError(f"{path}: moov is not the last box; cannot add the stem manifest in place")
        fh.seek(offset + header)
        children = _children(fh.read(size - header))
        stem = _box(b"stem", payload)
        out, placed = [], False
        for kind, raw in children:
            if kind == b"udta":
                inner = [r for k, r in _children(raw[8:]) if k != b"stem"]
                raw = _box(b"udta", b"".join(inner) + stem)
                placed = True
            out.append(raw)
        if not placed:
            out.append(_box(b"udta", stem))
        moov = _box(b"moov", b"".join(out))
        fh.seek(offset)
        fh.write(moov)
        fh.truncate()


def read_stem_manifest(path: str | os.PathLike) -> dict | None:
    """The NI ``stem`` manifest of an MP4 file as a dict, or None when it has none."""
    try:
        with open(path, "rb") as fh:
            where = _find_top_level(fh, b"moov")
            if where is None:
                return None
            offset, size, header = where
            fh.seek(offset + header)
            body = fh.read(size - header)
    except (OSError, AudioError, struct.error):
        return None
    try:
        for kind, raw in _children(body):
            if kind == b"udta":
                for k, r in _children(raw[8:]):
                    if k == b"stem":
                        data = json.loads(r[8:].decode("utf-8"))
                        return data if isinstance(data, dict) else None
    except (AudioError, ValueError):
        return None
    return None


def manifest_stem_names(manifest: Mapping | None) -> list[str] | None:
    """The stem names a manifest gives, lower-cased, ``vox`` read as ``vocals``; None when the
    manifest lists no usable, distinct names."""
    if not manifest or not isinstance(manifest.get("stems"), list):
        return None
    names = []
    for entry in manifest["stems"]:
        name = str(entry.get("name", "")).strip().lower() if isinstance(entry, dict) else ""
        names.append(_NAME_ALIASES.get(name, name))
    if not all(names) or len(set(names)) != len(names) or "mixture" in names:
        return None
    return names
