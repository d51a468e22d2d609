"""Decoding (PyAV: any container, every stream of NI ``.stem.mp4``) and encoding (pedalboard:
wav/flac/mp3/ogg/aiff), streaming in blocks, and atomic output files."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .._common import CommitOnExit, atomic_path
from .dsp import check_sample_rate
from ..errors import AudioError, InvalidAudioError, OutputError, OutputExistsError, OutputOptionError

# NI stems order when the file carries no stream titles
NI_STEM_NAMES = ("mixture", "drums", "bass", "other", "vocals")

OUTPUT_FORMATS = ("wav", "flac", "mp3")
BIT_DEPTHS = ("16", "24", "32f")
BLOCK_FRAMES = 65536


@dataclass(frozen=True)
class StreamInfo:
    index: int
    codec: str
    sample_rate: int
    channels: int
    frames: int | None
    title: str | None = None


@dataclass(frozen=True)
class AudioInfo:
    """What ``unbake info`` prints: the first audio stream's properties plus every stream."""

    path: str
    container: str
    codec: str
    sample_rate: int
    channels: int
    duration_s: float
    frames: int | None
    streams: tuple[StreamInfo, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "path": self.path, "container": self.container, "codec": self.codec,
            "sample_rate": self.sample_rate, "channels": self.channels,
            "duration_s": self.duration_s, "frames": self.frames,
            "streams": [s.__dict__ for s in self.streams],
        }


def _open(path: str | os.PathLike):
    import av

    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if p.is_dir():
        raise AudioError(f"{p}: is a folder, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: empty file")
    try:
        return av.open(str(p))
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioError(f"{p}: not a readable audio or video file ({_short(exc)})") from exc


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text[:200]


def _audio_streams(container, path) -> list:
    streams = [s for s in container.streams if s.type == "audio"]
    if not streams:
        container.close()
        raise AudioError(f"{path}: contains no audio stream")
    return streams


def _stream_frames(stream) -> int | None:
    if stream.duration is not None and stream.time_base is not None and stream.codec_context.sample_rate:
        return int(round(float(stream.duration * stream.time_base) * stream.codec_context.sample_rate))
    return None


def info(path: str | os.PathLike) -> AudioInfo:
    """Properties of a file without decoding it."""
    container = _open(path)
    try:
        streams = _audio_streams(container, path)
        infos = tuple(
            StreamInfo(
                index=i, codec=s.codec_context.name, sample_rate=int(s.codec_context.sample_rate or 0),
                channels=int(s.codec_context.channels or 0), frames=_stream_frames(s),
                title=(s.metadata or {}).get("title") or (s.metadata or {}).get("handler_name"),
            )
            for i, s in enumerate(streams)
        )
        for s in infos:
            check_sample_rate(s.sample_rate, f"{path} (audio stream {s.index})" if len(infos) > 1 else str(path))
        first = infos[0]
        if container.duration is not None:
            duration = container.duration / 1_000_000
        elif first.frames is not None and first.sample_rate:
            duration = first.frames / first.sample_rate
        else:
            duration = float("nan")
        return AudioInfo(
            path=str(path), container=container.format.name, codec=first.codec,
            sample_rate=first.sample_rate, channels=first.channels, duration_s=float(duration),
            frames=first.frames, streams=infos,
        )
    finally:
        container.close()


def iter_blocks(path: str | os.PathLike, *, stream: int = 0,
                block_frames: int = BLOCK_FRAMES) -> tuple[int, int, Iterator[np.ndarray]]:
    """Decode audio stream ``stream`` in blocks.

    Returns ``(sample_rate, channels, blocks)``; ``blocks`` yields float32 arrays ``(c, n)``
    with ``n == block_frames`` except for the last. Raises :class:`AudioError` for undecodable,
    truncated or sample-less files and :class:`InvalidAudioError` for NaN/inf samples.
    """
    import av

    container = _open(path)
    streams = _audio_streams(container, path)
    if not 0 <= stream < len(streams):
        container.close()
        raise AudioError(f"{path}: has {len(streams)} audio stream(s); stream {stream} requested")
    st = streams[stream]
    sr = int(st.codec_context.sample_rate or 0)
    ch = int(st.codec_context.channels or 0)
    if sr <= 0 or ch <= 0:
        container.close()
        raise AudioError(f"{path}: audio stream has no sample rate or channels")
    try:
        check_sample_rate(sr, str(path))
    except AudioError:
        container.close()
        raise
    declared = _header_frames(path) or _stream_frames(st)

    def gen() -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        pending_n = 0
        total = 0
        try:
            for frame in container.decode(st):
                # planar float keeps channels first whatever the codec's native layout is
                data = frame.to_ndarray()
                if frame.format.is_planar:
                    arr = data
                else:
                    arr = data.reshape(-1, frame.layout.nb_channels if hasattr(frame.layout, "nb_channels") else ch).T
                arr = _to_float32(arr, frame.format.name)
                if arr.shape[0] != ch:
                    raise AudioError(f"{path}: channel count changes inside the stream")
                if not np.isfinite(arr).all():
                    raise InvalidAudioError(f"{path}: contains NaN or infinite samples")
                pending.append(arr)
                pending_n += arr.shape[1]
                while pending_n >= block_frames:
                    buf = np.concatenate(pending, axis=1)
                    yield buf[:, :block_frames]
                    total += block_frames
                    rest = buf[:, block_frames:]
                    pending, pending_n = ([rest], rest.shape[1]) if rest.shape[1] else ([], 0)
        except av.FFmpegError as exc:
            raise AudioError(f"{path}: decoding failed ({_short(exc)}); the file may be damaged") from exc
        finally:
            container.close()
        if pending_n:
            yield np.concatenate(pending, axis=1)
            total += pending_n
        if total == 0:
            raise InvalidAudioError(f"{path}: contains no audio samples")
        # Containers declare their length; a file cut short decodes much less than that.
        if declared and total < 0.9 * declared - 2 * 4096:
            raise AudioError(
                f"{path}: truncated (decoded {total / sr:.2f} s of the declared {declared / sr:.2f} s)"
            )

    return sr, ch, gen()


def _header_frames(path) -> int | None:
    """Frames that a WAV or FLAC header declares. FFmpeg derives a WAV's duration from the file
    size, so a file cut short only shows against its own header."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        pos, block_align = 12, None
        while pos + 8 <= len(head):
            cid, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
            if cid == b"fmt " and pos + 22 <= len(head):
                block_align = struct.unpack("<H", head[pos + 20:pos + 22])[0]
            if cid == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            pos += 8 + size + (size & 1)
        return None
    if head[:4] == b"fLaC" and len(head) >= 42:
        info = int.from_bytes(head[18:26], "big")
        total = info & ((1 << 36) - 1)
        return total or None
    return None


def _to_float32(arr: np.ndarray, fmt: str) -> np.ndarray:
    if arr.dtype == np.float32:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.float64:
        return arr.astype(np.float32)
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    if arr.dtype == np.int32:
        return (arr.astype(np.float64) / 2147483648.0).astype(np.float32)
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    if arr.dtype == np.int64:
        return (arr.astype(np.float64) / 9223372036854775808.0).astype(np.float32)
    raise AudioError(f"unsupported sample format {fmt}")


def read_audio(path: str | os.PathLike, *, stream: int = 0) -> tuple[np.ndarray, int]:
    """Decode a whole stream: ``(audio (c, t) float32, sample_rate)``."""
    sr, ch, blocks = iter_blocks(path, stream=stream)
    parts = list(blocks)
    return np.concatenate(parts, axis=1), sr


def stream_names(path: str | os.PathLike) -> list[str]:
    """Names of the audio streams: ``mixture`` and the names of an NI ``stem`` manifest when the
    file has one for its streams; else the stream titles when every stream has a distinct one;
    else NI order."""
    from .mp4box import manifest_stem_names, read_stem_manifest

    meta = info(path)
    from_manifest = manifest_stem_names(read_stem_manifest(path))
    if from_manifest and len(from_manifest) == len(meta.streams) - 1:
        return ["mixture"] + from_manifest
    titles = [s.title for s in meta.streams]
    if all(titles) and len(set(titles)) == len(titles) and not all(t.startswith("SoundHandler") for t in titles):
        return [t.lower() for t in titles]
    if len(meta.streams) == len(NI_STEM_NAMES):
        return list(NI_STEM_NAMES)
    return ["mixture"] + [f"stem{i}" for i in range(1, len(meta.streams))]


def read_stems(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], int]:
    """Every stream of a multi-stream file (NI stems): ``({name: (c, t)}, sample_rate)``.

    Streams are cut to the shortest one so they can be summed and compared.
    """
    names = stream_names(path)
    out: dict[str, np.ndarray] = {}
    rate = None
    for i, name in enumerate(names):
        audio, sr = read_audio(path, stream=i)
        if rate is not None and sr != rate:
            raise AudioError(f"{path}: streams have different sample rates")
        rate = sr
        out[name] = audio
    n = min(a.shape[1] for a in out.values())
    return {k: v[:, :n] for k, v in out.items()}, int(rate)


# ---------------------------------------------------------------- writing


def format_from_path(path: str | os.PathLike) -> str:
    ext = Path(path).suffix.lower().lstrip(".")
    aliases = {"aif": "aiff", "oga": "ogg"}
    return aliases.get(ext, ext)


def encoder_kwargs(fmt: str, bit_depth: str | int | None, mp3_bitrate: int | None) -> dict:
    bd = str(bit_depth) if bit_depth is not None else None
    if fmt == "wav":
        bd = bd or "24"
        if bd not in BIT_DEPTHS:
            raise OutputOptionError("bit_depth", f"wav bit depth must be one of {', '.join(BIT_DEPTHS)}, not {bd}")
        return {"bit_depth": 32 if bd == "32f" else int(bd)}
    if fmt == "flac":
        bd = bd or "24"
        if bd not in ("16", "24"):
            raise OutputOptionError("bit_depth", f"flac bit depth must be 16 or 24, not {bd}")
        return {"bit_depth": int(bd)}
    if fmt == "mp3":
        try:
            rate = int(mp3_bitrate or 320)
        except (TypeError, ValueError):
            rate = -1
        if not 32 <= rate <= 320:
            raise OutputOptionError("mp3_bitrate", f"must be between 32 and 320 kbit/s, not {mp3_bitrate}")
        return {"quality": rate}
    if fmt in ("ogg", "aiff"):
        return {}
    raise OutputOptionError("format", f"cannot write {fmt!r}; use one of {', '.join(OUTPUT_FORMATS)}")


def check_output_options(format: str, bit_depth: str | int | None = None, mp3_bitrate: int | None = None,
                         *, formats: tuple[str, ...] = OUTPUT_FORMATS) -> None:
    """Refuse an output format (one of ``formats``), bit depth or mp3 bitrate that cannot be
    written, before any work: :class:`OutputOptionError` names the parameter."""
    if format not in formats:
        raise OutputOptionError("format", f"must be one of {', '.join(formats)}, not {format!r}")
    encoder_kwargs(format, bit_depth, mp3_bitrate)


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse, before any work, an output that exists (unless ``overwrite``) or whose folder
    cannot be made. Creates nothing: a failed run leaves no empty folders behind."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p}: already exists (use --overwrite to replace it)")
    if p.is_dir():
        raise OutputError(f"{p}: is a folder, not a file name")
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{folder}: cannot create an output folder there (it is a file)")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{folder}: output folder is not writable")
    return p


def make_parent(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` goes into; an :class:`OutputError` when that is impossible."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{p.parent}: cannot create output folder ({exc.strerror or exc})") from exc
    return p


class AudioWriter(CommitOnExit):
    """Streaming, atomic encoder: blocks go to a hidden temporary file next to the target,
    renamed onto the target only by :meth:`commit`; :meth:`abort` (or an exception inside a
    ``with`` block) deletes it, so a half-written output never exists under the final name.

    ``write`` takes float32 ``(c, n)`` blocks.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int, *,
                 bit_depth: str | int | None = None, mp3_bitrate: int | None = None,
                 overwrite: bool = False) -> None:
        from pedalboard.io import AudioFile

        self.path = make_parent(check_writable(path, overwrite))
        fmt = format_from_path(self.path)
        kwargs = encoder_kwargs(fmt, bit_depth, mp3_bitrate)
        # the one atomic-write context manager, held open across write() calls until commit/abort
        self._atomic = contextlib.ExitStack()
        self.tmp = self._atomic.enter_context(atomic_path(self.path, suffix=self.path.suffix))
        self.channels = channels
        self.frames = 0
        try:
            self._file = AudioFile(str(self.tmp), "w", samplerate=float(sample_rate), num_channels=channels, **kwargs)
        except Exception as exc:
            self._discard(exc)
            raise OutputError(f"{self.path}: cannot open for writing ({_short(exc)})") from exc
        self._done = False

    def _discard(self, exc: BaseException) -> None:
        """Leave the atomic block as an error does: the temporary file is removed."""
        self._atomic.__exit__(type(exc), exc, exc.__traceback__)

    def write(self, block: np.ndarray) -> None:
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise OutputError(f"{self.path}: expected blocks shaped ({self.channels}, n), got {block.shape}")
        try:
            self._file.write(np.ascontiguousarray(block, dtype=np.float32))
        except (OSError, RuntimeError) as exc:  # the encoder reports a full disk as either
            raise OutputError(f"{self.path}: cannot write ({_short(exc)})") from exc
        self.frames += block.shape[1]

    def commit(self, before_rename: Callable[[Path, str], None] | None = None) -> Path:
        """Finish the file and rename it onto the target. ``before_rename(temporary path,
        format)`` runs first, while the file is still under its temporary name (tagging)."""
        if self._done:
            return self.path
        self._file.close()
        if before_rename is not None:
            try:
                before_rename(self.tmp, format_from_path(self.path))
            except BaseException:
                self.abort()
                raise
        _chmod_default(self.tmp)
        self._atomic.close()  # renames the temporary file onto the target
        self._done = True
        return self.path

    def abort(self) -> None:
        if self._done:
            return
        try:
            self._file.close()
        except Exception:
            pass
        self._discard(OutputError(f"{self.path}: aborted"))
        self._done = True



def _chmod_default(path: Path) -> None:
    """Temporary files are created private (0600); a finished output gets the usual mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, *,
                bit_depth: str | int | None = None, mp3_bitrate: int | None = None,
                overwrite: bool = True) -> Path:
    """Write ``audio (c, t)`` atomically."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise OutputError(f"audio to write must be shaped (channels, time), got {audio.shape}")
    with AudioWriter(path, sample_rate, audio.shape[0], bit_depth=bit_depth,
                     mp3_bitrate=mp3_bitrate, overwrite=overwrite) as w:
        for start in range(0, audio.shape[1], BLOCK_FRAMES):
            w.write(audio[:, start:start + BLOCK_FRAMES])
    return Path(path)
