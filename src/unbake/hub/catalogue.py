"""Reads the model catalogue (``catalogue.toml``): names, files, checksums, configs, licences."""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from .._common import PRECISIONS
from .._schema import ConfigModel, Number, Text, internal, invalid, validate
from ..errors import ConfigError, ModelError, UnknownModelError
from .architectures import check_settings, resolve_architecture
from .download import is_cached

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CATALOGUE_PATH = Path(__file__).with_name("catalogue.toml")
FORMATS = ("builtin", "demucs-th", "msst", "unbake")
Name = Annotated[str, Text()]


class _Entry(ConfigModel):
    model_config = ConfigDict(frozen=True)


class FileSpec(_Entry):
    """One downloadable file of a model."""

    name: Name
    url: Name
    sha256: Annotated[str, Text()] | None = Field(None, description="the whole SHA-256, hex")
    sha256_prefix: Annotated[str, Text()] | None = Field(None, description="its first hex digits")
    size: Annotated[int, Number(0, integer=True)] | None = Field(None, description="bytes")


class ModelEntry(_Entry):
    """A model of the catalogue (the comment at the top of ``catalogue.toml`` says what each
    key means)."""

    name: str = internal("")
    architecture: Name
    format: Annotated[str, Text(FORMATS)]
    sources: tuple[Name, ...]
    samplerate: Annotated[int, Number(4000, 384000, integer=True)]
    licence: Name = "unstated"
    description: Name = ""
    files: tuple[FileSpec, ...] = ()
    config: dict[str, Any] = Field(default_factory=dict)
    config_file: Annotated[str, Text()] | None = None
    target: Annotated[str, Text()] | None = None
    package_file: Annotated[str, Text()] | None = None
    segment_s: Annotated[float, Number(positive=True, hi=3600.0)] | None = None
    # the precision a separation runs the model at unless told otherwise (None: float32, exact)
    precision: Annotated[str, Text(PRECISIONS)] | None = None

    @model_validator(mode="after")
    def _settings_in_range(self) -> "ModelEntry":
        # the architecture's settings are checked when the catalogue is read, not when a model is built
        try:
            check_settings(resolve_architecture(self.architecture), self.config)
        except ModelError as exc:
            raise invalid(str(exc), "config") from None
        return self


class EnsembleEntry(_Entry):
    """Models whose outputs are combined per source (rows of ``weights`` = models)."""

    name: str = internal("")
    models: tuple[Name, ...]
    sources: tuple[Name, ...]
    weights: tuple[tuple[Annotated[float, Number(0.0)], ...], ...] | None = None
    method: Annotated[str, Text(("average", "median"))] = "average"
    segment_s: tuple[Annotated[float, Number(positive=True, hi=3600.0)] | None, ...] | None = None
    description: Name = ""
    licence: Name = "unstated"


class _CatalogueFile(ConfigModel):
    default_order: tuple[Name, ...] | None = None
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    ensembles: dict[str, EnsembleEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> "_CatalogueFile":
        for kind in (self.models, self.ensembles):
            for name, entry in kind.items():
                object.__setattr__(entry, "name", name)
        for e in self.ensembles.values():
            for m in e.models:
                if m not in self.models:
                    raise invalid(f"names unknown model {m!r}", ("ensembles", e.name, "models"))
        for name in self.default_order or ():
            if name not in self.models and name not in self.ensembles:
                raise invalid(f"names unknown model {name!r}", "default_order")
        return self


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
    """A catalogue from TOML text; unknown keys, missing keys and values out of range are a
    :class:`ConfigError` naming the key (``catalogue: models.x.samplerate: ...``)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"catalogue is not valid TOML: {exc}") from exc
    try:
        parsed = validate(_CatalogueFile, raw, root="the top level")
    except ConfigError as exc:
        raise ConfigError(f"catalogue: {exc}") from None
    order = parsed.default_order
    if order is None:
        order = tuple(n for n in ("center",) if n in parsed.models)
    return Catalogue(parsed.models, parsed.ensembles, order)


@lru_cache(maxsize=4)
def load_catalogue(path: str | None = None) -> Catalogue:
    """The catalogue shipped with the package (or the TOML file at ``path``)."""
    p = Path(path) if path else CATALOGUE_PATH
    return parse_catalogue(p.read_text(encoding="utf-8"))
