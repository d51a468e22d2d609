"""StemSet: named stems of one recording, their sample rate and where they came from."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ._common import AUDIO_SUFFIXES, write_json_atomic
from .errors import AudioError

PROVENANCE_FILE = "unbake.json"


@dataclass
class StemSet:
    """Stems as float32 arrays ``(c, t)`` of equal shape, in a fixed order.

    ``provenance`` records the input, the model and the options (saved as ``unbake.json``).
    """

    stems: dict[str, np.ndarray]
    sample_rate: int
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.stems:
            raise AudioError("a StemSet needs at least one stem")
        shapes = {k: np.shape(v) for k, v in self.stems.items()}
        first = next(iter(shapes.values()))
        if len(first) != 2 or any(s != first for s in shapes.values()):
            raise AudioError(f"stems must all be shaped (channels, time) alike; got {shapes}")
        self.stems = {k: np.asarray(v, dtype=np.float32) for k, v in self.stems.items()}

    # -- mapping-like access
    @property
    def names(self) -> list[str]:
        return list(self.stems)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.stems[name]
        except KeyError:
            raise KeyError(f"no stem {name!r}; stems are {', '.join(self.stems)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.stems

    def __iter__(self) -> Iterator[str]:
        return iter(self.stems)

    def __len__(self) -> int:
        return len(self.stems)

    def items(self):
        return self.stems.items()

    @property
    def channels(self) -> int:
        return next(iter(self.stems.values())).shape[0]

    @property
    def frames(self) -> int:
        return next(iter(self.stems.values())).shape[1]

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    def as_array(self) -> np.ndarray:
        """``(s, c, t)`` in :attr:`names` order."""
        return np.stack(list(self.stems.values()))

    def mixture(self) -> np.ndarray:
        """Sum of all stems ``(c, t)``."""
        return np.sum(self.as_array(), axis=0, dtype=np.float64).astype(np.float32)

    def __repr__(self) -> str:
        return (f"StemSet({', '.join(self.stems)}; {self.channels} ch, {self.duration_s:.2f} s "
                f"at {self.sample_rate} Hz)")

    # -- files
    def save(self, folder: str | os.PathLike, *, format: str = "wav", bit_depth: str | int | None = None,
             mp3_bitrate: int | None = None, overwrite: bool = False) -> dict[str, Path]:
        """Write ``folder/{stem}.{format}`` plus ``unbake.json``; nothing is written when any
        target exists and ``overwrite`` is false."""
        from .audio.io import check_writable, write_audio

        folder = Path(folder)
        targets = {name: folder / f"{name}.{format}" for name in self.stems}
        for path in targets.values():
            check_writable(path, overwrite)
        for name, path in targets.items():
            write_audio(path, self.stems[name], self.sample_rate, bit_depth=bit_depth,
                        mp3_bitrate=mp3_bitrate, overwrite=True)
        meta = {"sample_rate": self.sample_rate, "stems": list(self.stems),
                "files": {k: v.name for k, v in targets.items()}, "provenance": self.provenance}
        write_json_atomic(folder / PROVENANCE_FILE, meta)
        return targets

    @classmethod
    def load(cls, folder: str | os.PathLike, *, names: list[str] | None = None) -> "StemSet":
        """Read a folder of stems (ours, or one file per stem from any other tool)."""
        from .audio.io import read_audio

        folder = Path(folder)
        if not folder.is_dir():
            raise AudioError(f"{folder}: not a folder of stems")
        meta_path = folder / PROVENANCE_FILE
        provenance: dict = {}
        files: dict[str, Path] = {}
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            provenance = meta.get("provenance", {})
            files = {k: folder / v for k, v in meta.get("files", {}).items()}
        if not files:
            files = {p.stem: p for p in sorted(folder.iterdir())
                     if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".")}
        if names is not None:
            files = {k: v for k, v in files.items() if k in names}
        if not files:
            raise AudioError(f"{folder}: no stem files found")
        stems: dict[str, np.ndarray] = {}
        rate = None
        for name, path in files.items():
            audio, sr = read_audio(path)
            if rate is not None and sr != rate:
                raise AudioError(f"{folder}: stems have different sample rates ({rate} and {sr} Hz)")
            rate = sr
            stems[name] = audio
        n = min(a.shape[1] for a in stems.values())
        c = max(a.shape[0] for a in stems.values())
        stems = {k: (np.repeat(v, c, axis=0) if v.shape[0] == 1 and c > 1 else v)[:, :n] for k, v in stems.items()}
        return cls(stems, int(rate), provenance)



