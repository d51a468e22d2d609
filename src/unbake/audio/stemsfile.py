"""NI Stems files (``.stem.mp4``): the mixture as the master stream followed by four stem
streams (drums, bass, other, vocals, the order the NI Stems specification fixes), AAC or ALAC,
with the NI ``stem`` manifest (stem names and colours, the master's DSP left neutral) in
``moov/udta``, which Traktor and Mixxx read to offer the file as a Stems file.

The streams are encoded and muxed by PyAV block by block, interleaved in time, so memory does not
grow with the track's length. The manifest box is then added to the finished file (see
:func:`add_stem_manifest` for why it is written here) and the file renamed onto its final name.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .._common import CommitOnExit
from ..errors import OutputError
from .mp4box import add_stem_manifest, manifest_stem_names, read_stem_manifest  # noqa: F401  (re-exported)

# the four stem slots of an NI Stems file, in the order the specification fixes
NI_STEM_SLOTS = ("drums", "bass", "other", "vocals")
# the colours NI's own stem creator gives the four slots
NI_STEM_COLOURS = {"drums": "#009E73", "bass": "#D55E00", "other": "#CC79A7", "vocals": "#56B4E9"}
STEMS_CODECS = ("aac", "alac")
AAC_BITRATE = 256_000
STEMS_FILE_SUFFIX = ".stem.mp4"


def stem_manifest(names: Sequence[str] = NI_STEM_SLOTS) -> dict:
    """The NI ``stem`` manifest: version 1, one ``{name, color}`` per stem stream, and the
    master's compressor and limiter switched off, so that Traktor plays the master as it is."""
    return {
        "version": 1,
        "mastering_dsp": {
            "compressor": {"enabled": False, "input_gain": 0.5, "output_gain": 0.5, "threshold": 0,
                           "dry_wet": 50, "attack": 0.003, "release": 0.3, "ratio": 3, "hp_cutoff": 300},
            "limiter": {"enabled": False, "threshold": 0, "ceiling": -0.35, "release": 0.05},
        },
        "stems": [{"name": n.capitalize(), "color": NI_STEM_COLOURS.get(n, "#FFFFFF")} for n in names],
    }


# ------------------------------------------------------------------------------ slot mapping


def parse_stems_map(text: str | Mapping[str, object] | None) -> dict[str, tuple[str, ...]] | None:
    """``"drums=drums,bass=bass,other=guitar+piano+other,vocals=vocals"`` (or a mapping) ->
    ``{slot: (model stems summed into it)}``."""
    if text is None:
        return None
    if isinstance(text, Mapping):
        items = [(str(k), v) for k, v in text.items()]
    else:
        items = []
        for part in str(text).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise OutputError(f"--stems-map: {part.strip()!r} is not SLOT=STEM[+STEM...]")
            k, v = part.split("=", 1)
            items.append((k, v))
    out: dict[str, tuple[str, ...]] = {}
    for k, v in items:
        slot = k.strip().lower()
        stems = tuple(s.strip() for s in (v.split("+") if isinstance(v, str) else v) if s.strip())
        if slot not in NI_STEM_SLOTS:
            raise OutputError(f"--stems-map: {slot!r} is not an NI stem slot ({', '.join(NI_STEM_SLOTS)})")
        if slot in out:
            raise OutputError(f"--stems-map: slot {slot!r} given twice")
        if not stems:
            raise OutputError(f"--stems-map: slot {slot!r} names no stem")
        out[slot] = stems
    return out


def plan_slots(model_stems: Sequence[str], stems_map=None) -> dict[str, tuple[str, ...]]:
    """Which model stems go into each NI slot. A model with exactly the NI four needs no map;
    any other is refused unless ``stems_map`` names a stem (or several, summed) for every slot."""
    model_stems = list(model_stems)
    mapping = parse_stems_map(stems_map)
    if mapping is None:
        if sorted(model_stems) == sorted(NI_STEM_SLOTS):
            return {s: (s,) for s in NI_STEM_SLOTS}
        raise OutputError(
            f"an NI Stems file holds drums, bass, other and vocals; this model gives "
            f"{', '.join(model_stems)}. Pick a four-stem model, or map its stems with e.g. "
            f"--stems-map drums=drums,bass=bass,other=guitar+piano+other,vocals=vocals")
    missing = [s for s in NI_STEM_SLOTS if s not in mapping]
    if missing:
        raise OutputError(f"--stems-map must fill every NI slot; missing: {', '.join(missing)}")
    used: list[str] = []
    for slot, stems in mapping.items():
        for s in stems:
            if s not in model_stems:
                raise OutputError(f"--stems-map {slot}={'+'.join(stems)}: the model has no stem {s!r} "
                                  f"(stems: {', '.join(model_stems)})")
            if s in used:
                raise OutputError(f"--stems-map: stem {s!r} is used in two slots")
            used.append(s)
    return {s: mapping[s] for s in NI_STEM_SLOTS}


# ------------------------------------------------------------------------------ writing


class StemsFileWriter(CommitOnExit):
    """Streaming, atomic NI Stems writer.

    :meth:`write` takes one float32 block ``(c, n)`` per stream, the mixture first, then the
    stems in ``names`` order, all of the same length ``n``; blocks of the five streams are
    muxed together, so the file is interleaved in time. :meth:`commit` finishes the streams,
    adds the ``stem`` manifest and ``tags`` (a :class:`~unbake.audio.tags.TrackTags`), and
    renames the temporary file onto ``path``; :meth:`abort` (or an exception in a ``with``
    block) removes it.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int, channels: int, *,
                 names: Sequence[str] = NI_STEM_SLOTS, codec: str = "aac", overwrite: bool = False,
                 tags=None) -> None:
        import av

        from .._common import atomic_path
        from .io import check_writable

        if codec not in STEMS_CODECS:
            raise OutputError(f"--stems-codec must be one of {', '.join(STEMS_CODECS)}, not {codec!r}")
        if channels not in (1, 2):
            raise OutputError(f"an NI Stems file holds mono or stereo streams, not {channels} channels")
        if codec == "aac" and sample_rate > 96000:
            raise OutputError(f"AAC cannot carry {sample_rate} Hz; use --stems-codec alac")
        self.path = check_writable(path, overwrite)
        self.names = tuple(names)
        self.channels = channels
        self.sample_rate = int(sample_rate)
        self.tags = tags
        self._ctx = atomic_path(self.path, suffix=".mp4")
        self.tmp = self._ctx.__enter__()
        self._done = False
        layout = "stereo" if channels == 2 else "mono"
        try:
            # major brand "M4A " as in NI's own files; FFmpeg's default for .mp4 is "isom"
            self._container = av.open(str(self.tmp), "w", format="mp4", options={"brand": "M4A "})
            self._streams = []
            for name in ("mixture",) + self.names:
                st = self._container.add_stream(codec, rate=self.sample_rate)
                st.layout = layout
                if codec == "aac":
                    st.bit_rate = AAC_BITRATE
                st.metadata["handler_name"] = name.capitalize()
                self._streams.append(st)
        except Exception as exc:
            self._fail()
            raise OutputError(f"{self.path}: cannot open for writing ({exc})") from exc
        self.frames = 0

    def write(self, blocks: Sequence[np.ndarray]) -> None:
        import av

        if len(blocks) != len(self._streams):
            raise OutputError(f"{self.path}: expected {len(self._streams)} blocks (mixture + stems), got {len(blocks)}")
        n = blocks[0].shape[1]
        layout = "stereo" if self.channels == 2 else "mono"
        for st, block in zip(self._streams, blocks):
            if block.ndim != 2 or block.shape != (self.channels, n):
                raise OutputError(f"{self.path}: expected blocks shaped ({self.channels}, {n}), got {block.shape}")
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, dtype=np.float32), format="fltp",
                                               layout=layout)
            frame.sample_rate = self.sample_rate
            frame.pts = self.frames
            for packet in st.encode(frame):
                self._container.mux(packet)
        self.frames += n

    def commit(self) -> Path:
        if self._done:
            return self.path
        try:
            for st in self._streams:
                for packet in st.encode(None):
                    self._container.mux(packet)
            self._container.close()
            add_stem_manifest(self.tmp, stem_manifest(self.names))
            if self.tags is not None:
                from .tags import write_tags

                write_tags(self.tmp, self.tags, fmt="mp4")
            from .io import _chmod_default

            _chmod_default(self.tmp)
        except BaseException as exc:
            self._fail(exc)
            raise
        self._done = True
        self._ctx.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        if not self._done:
            with contextlib.suppress(Exception):
                self._container.close()
            self._fail()

    def _fail(self, exc: BaseException | None = None) -> None:
        self._done = True
        err = exc or OutputError("aborted")
        # the temporary file goes; atomic_path re-raises what it is given, which is ours to raise
        with contextlib.suppress(BaseException):
            self._ctx.__exit__(type(err), err, None)



def stems_file_path(outdir: str | os.PathLike, track: str) -> Path:
    return Path(outdir) / f"{track}{STEMS_FILE_SUFFIX}"


def write_stems_file(path: str | os.PathLike, mixture: np.ndarray, stems: Mapping[str, np.ndarray],
                     sample_rate: int, *, codec: str = "aac", stems_map=None, overwrite: bool = False,
                     tags=None, block_frames: int = 65536) -> Path:
    """Write an NI Stems file from arrays already in memory (a :class:`~unbake.stems.StemSet`'s
    stems and its mixture, all ``(c, t)``); ``stems_map`` as for :func:`plan_slots`. For files,
    :func:`unbake.separate.separate_file` with ``format="stems"`` streams instead."""
    slots = plan_slots(list(stems), stems_map)
    mixture = np.asarray(mixture, np.float32)
    parts = [mixture] + [np.sum([np.asarray(stems[s], np.float32) for s in slots[slot]], axis=0)
                         for slot in NI_STEM_SLOTS]
    n = min(p.shape[1] for p in parts)
    with StemsFileWriter(path, sample_rate, mixture.shape[0], codec=codec, overwrite=overwrite, tags=tags) as w:
        for start in range(0, n, block_frames):
            stop = min(start + block_frames, n)
            w.write([p[:, start:stop] for p in parts])
    return Path(path)
