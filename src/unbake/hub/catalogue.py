"""Reads the model catalogue (``catalogue.toml``): names, files, checksums, configs, licences."""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UnknownModelError
from .download import is_cached

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CATALOGUE_PATH = Path(__file__).with_name("catalogue.toml")


@dataclass(frozen=True)
class FileSpec:
    """One downloadable file of a model."""

    name: str
    url: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    architecture: str
    format: str
    sources: tuple[str, ...]
    samplerate: int
    licence: str = "unstated"
    description: str = ""
    files: tuple[FileSpec, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    config_file: str | None = None
    target: str | None = None
    package_file: str | None = None
    segment_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnsembleEntry:
    name: str
    models: tuple[str, ...]
    sources: tuple[str, ...]
    weights: tuple[tuple[float, ...], ...] | None = None
    method: str = "average"
    segment_s: tuple[float | None, ...] | None = None
    description: str = ""
    licence: str = "unstated"


_MODEL_KEYS = {
    "architecture", "format", "sources", "samplerate", "licence", "description", "files",
    "config", "config_file", "target", "package_file", "segment_s",
}
_ENSEMBLE_KEYS = {"models", "sources", "weights", "method", "segment_s", "description", "licence"}


def _model(name: str, raw: dict[str, Any]) -> ModelEntry:
    missing = {"architecture", "format", "sources", "samplerate"} - raw.keys()
    if missing:
        raise ConfigError(f"catalogue model {name!r} lacks {sorted(missing)}")
    files = tuple(FileSpec(**f) for f in raw.get("files", []))
    extra = {k: v for k, v in raw.items() if k not in _MODEL_KEYS}
    return ModelEntry(
        name=name,
        architecture=raw["architecture"],
        format=raw["format"],
        sources=tuple(raw["sources"]),
        samplerate=int(raw["samplerate"]),
        licence=raw.get("licence", "unstated"),
        description=raw.get("description", ""),
        files=files,
        config=dict(raw.get("config", {})),
        config_file=raw.get("config_file"),
        target=raw.get("target"),
        package_file=raw.get("package_file"),
        segment_s=float(raw["segment_s"]) if raw.get("segment_s") else None,
        extra=extra,
    )


def _ensemble(name: str, raw: dict[str, Any]) -> EnsembleEntry:
    unknown = set(raw) - _ENSEMBLE_KEYS
    if unknown:
        raise ConfigError(f"catalogue ensemble {name!r} has unknown keys {sorted(unknown)}")
    weights = raw.get("weights")
    seg = raw.get("segment_s")
    return EnsembleEntry(
        name=name,
        models=tuple(raw["models"]),
        sources=tuple(raw["sources"]),
        weights=tuple(tuple(float(x) for x in row) for row in weights) if weights else None,
        method=raw.get("method", "average"),
        segment_s=tuple(seg) if seg else None,
        description=raw.get("description", ""),
        licence=raw.get("licence", "unstated"),
    )


@dataclass(frozen=True)
class Catalogue:
    models: dict[str, ModelEntry]
    ensembles: dict[str, EnsembleEntry]
    default_order: tuple[str, ...] = ("center",)

    def names(self) -> list[str]:
        return list(self.models) + list(self.ensembles)

    def __contains__(self, name: object) -> bool:
        return name in self.models or name in self.ensembles

    def members(self, name: str) -> list[ModelEntry]:
        entry = self.get(name)
        return [self.models[m] for m in entry.models] if isinstance(entry, EnsembleEntry) else [entry]

    def ships_with_package(self, name: str) -> bool:
        """Built in or shipped inside the package: nothing to download, ever."""
        return all(not e.files or e.package_file for e in self.members(name))

    def available_offline(self, name: str) -> bool:
        """Ships with the package, or every file already in the cache."""
        if self.ships_with_package(name):
            return True
        return all(e.package_file or not e.files or is_cached(e) for e in self.members(name))

    def default(self) -> str:
        """The first model of ``default_order`` that runs without a download."""
        for name in self.default_order:
            if self.available_offline(name):
                return name
        return "center"

    def get(self, name: str) -> ModelEntry | EnsembleEntry:
        if name in self.models:
            return self.models[name]
        if name in self.ensembles:
            return self.ensembles[name]
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else " See `unbake models`."
        raise UnknownModelError(f"unknown model {name!r}.{hint}")


def parse_catalogue(text: str) -> Catalogue:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"catalogue is not valid TOML: {exc}") from exc
    models = {n: _model(n, v) for n, v in raw.get("models", {}).items()}
    ensembles = {n: _ensemble(n, v) for n, v in raw.get("ensembles", {}).items()}
    for e in ensembles.values():
        for m in e.models:
            if m not in models:
                raise ConfigError(f"ensemble {e.name!r} names unknown model {m!r}")
    order = tuple(raw.get("default_order", [n for n in ("center",) if n in models]))
    for name in order:
        if name not in models and name not in ensembles:
            raise ConfigError(f"default_order names unknown model {name!r}")
    return Catalogue(models, ensembles, order)


@lru_cache(maxsize=4)
def load_catalogue(path: str | None = None) -> Catalogue:
    """The catalogue shipped with the package (or the TOML file at ``path``)."""
    p = Path(path) if path else CATALOGUE_PATH
    return parse_catalogue(p.read_text(encoding="utf-8"))
