"""The training configuration: a YAML file declared as frozen pydantic models (types, ranges,
defaults), with every unknown key and every out-of-range value reported as a
:class:`~unbake.errors.ConfigError`. The ``augment`` and ``loss`` sections take the fields their
dataclasses (:class:`~unbake.data.augment.AugmentConfig`, :class:`~unbake.train.losses.LossConfig`)
declare."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Mapping

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

from .._schema import ConfigModel, Flag, Number, Text, ValueType, describe, invalid, load_yaml, validate
from ..data.augment import AugmentConfig
from ..errors import ConfigError
from .losses import LossConfig

# how to give the data folder, for the messages that ask for it
DATA_HINT = ("give the folder of training tracks with `unbake train CONFIG --data PATH` or set data.root in the "
             "config (MUSDB18-style: one folder per track holding mixture/drums/bass/other/vocals audio, "
             "or .stem.mp4 files)")
Count = Annotated[int, Number(0, integer=True)]
PositiveInt = Annotated[int, Number(integer=True, positive=True)]


class _RelPath(ValueType):
    """A path as text; relative paths are taken from the config file's folder (context ``base``).
    The empty text stays empty (not set)."""

    json: ClassVar[dict] = {"type": "string"}

    def check(self, value: Any, info: ValidationInfo | None = None) -> str:
        text = Text().check(value)
        if not text:
            return text
        p = Path(os.path.expanduser(text))
        base = (info.context or {}).get("base") if info is not None else None
        return str(p if p.is_absolute() or base is None else Path(base) / p)


RelPath = Annotated[str, _RelPath()]


class _Section(ConfigModel):
    """A section of the training config: frozen; unknown keys are named with the section."""

    model_config = ConfigDict(frozen=True)
    section: ClassVar[str] = ""

    @classmethod
    def unknown_keys(cls, unknown: list[str], allowed: list[str]):
        return invalid(f"unknown keys in {cls.section}: {sorted(unknown)}; known: {sorted(allowed)}")


def _dataclass_section(cls, name: str):
    """A section declared by a dataclass elsewhere: its fields typed by pydantic, unknown keys
    refused, then the dataclass's own checks (``from_dict``)."""

    def check(raw: Any) -> Any:
        if isinstance(raw, cls):
            return raw
        if raw is not None and not isinstance(raw, Mapping):
            raise invalid(f"must be a mapping of keys to values, got {describe(raw)}")
        raw = dict(raw or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise invalid(f"unknown {name} keys {unknown}; known: {sorted(known)}")
        typed = validate(cls, raw, name)
        return cls.from_dict(dataclasses.asdict(typed))

    return BeforeValidator(check)


class ModelSection(_Section):
    section: ClassVar[str] = "model"

    architecture: Annotated[str, Text()] = "masknet"
    config: dict[str, Any] = Field(default_factory=dict, description="the architecture's constructor arguments")


class DataSection(_Section):
    section: ClassVar[str] = "data"

    root: RelPath = Field("", description="the training data folder")
    cache_dir: RelPath = Field("", description="where decoded audio is cached")
    sources: tuple[Annotated[str, Text()], ...] = ("drums", "bass", "other", "vocals")
    samplerate: Annotated[int, Number(8000, 192000, integer=True)] = 44100
    segment_s: Annotated[float, Number(positive=True, hi=600.0)] = 3.0
    valid_every: PositiveInt = 9
    valid_count: Count = 10
    # a separate held-out folder; when set, no tracks are taken out of ``root``
    valid_root: RelPath | None = None
    # k-fold cross-validation: with folds > 0, track i of ``root`` (name order) is held out in
    # fold i % folds, replacing the valid_every/valid_count rule
    folds: Count = 0
    fold: Count = 0
    # folders of extra training-only tracks (e.g. a synthetic set from `unbake data synth`)
    extra_roots: tuple[RelPath, ...] = ()
    # probability that an excerpt (or a remixed stem) is drawn from extra_roots; unset: every
    # track, regular or extra, is equally likely
    extra_p: Annotated[float, Number(0.0, 1.0)] | None = None
    # the stems ever taken from extra_roots (unset: all); e.g. [drums, other, vocals] keeps every
    # bass stem real
    extra_stems: tuple[Annotated[str, Text()], ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "DataSection":
        if self.folds and self.fold >= self.folds:
            raise invalid(f"must be in [0, folds) = [0, {self.folds}), got {self.fold}", "fold")
        if self.extra_p is not None and not self.extra_roots:
            raise invalid("needs data.extra_roots to draw from", "extra_p")
        if self.extra_stems is not None:
            if not self.extra_roots:
                raise invalid("needs data.extra_roots to draw from", "extra_stems")
            unknown = [s for s in self.extra_stems if s not in self.sources]
            if unknown:
                raise invalid(f"{unknown} are not among data.sources {list(self.sources)}", "extra_stems")
        return self


class OptimSection(_Section):
    section: ClassVar[str] = "optim"

    lr: Annotated[float, Number(positive=True)] = 1e-3
    weight_decay: Annotated[float, Number(0.0)] = 0.01
    betas: tuple[Annotated[float, Number(0.0, 1.0)], Annotated[float, Number(0.0, 1.0)]] = (0.9, 0.999)
    warmup_steps: Count = 100
    steps: PositiveInt = 1000
    min_lr_ratio: Annotated[float, Number(0.0, 1.0)] = 0.05
    grad_clip: Annotated[float, Number(0.0)] = 5.0
    batch_size: PositiveInt = 8


class RunSection(_Section):
    section: ClassVar[str] = "run"

    threads: Annotated[int, Number(0, integer=True)] = Field(1, description="0 leaves torch's default")
    device: Annotated[str, Text()] = "auto"
    # the arithmetic of the model's forward pass: bfloat16 autocasts its matrix products and
    # convolutions (the weights, the optimiser and the loss stay float32); pays on GPUs and on CPUs
    # with bfloat16 units (model card, "Training in bfloat16")
    precision: Annotated[str, Text(("float32", "bfloat16"))] = "float32"
    # threads that prepare the next batches while the model trains (0: the training loop does it
    # between steps); the batches are the same either way
    data_workers: Count = 0
    log_every: PositiveInt = 10
    valid_every_steps: Count = 100
    checkpoint_every_s: Annotated[float, Number(0.0)] = 180.0
    checkpoint_every_steps: Count = 0
    # keep a copy of the training state at every validation (for picking checkpoints later)
    keep_validated: Annotated[bool, Flag()] = False
    # also log to TensorBoard (run folder ``tb/``) when the tensorboard package is installed
    tensorboard: Annotated[bool, Flag()] = True


class _CheckpointOrName(_RelPath):
    """A checkpoint path (it has a folder separator or a checkpoint suffix; relative to the
    config file) or a catalogue name."""

    def check(self, value: Any, info: ValidationInfo | None = None) -> str:
        text = Text().check(value)
        if os.sep in text or text.endswith((".pt", ".th", ".ckpt")):
            return super().check(text, info)
        return text


class TrainConfig(_Section):
    section: ClassVar[str] = "the training config"

    seed: Annotated[int, Number(0, 2**32 - 1, integer=True)] = 0
    out_dir: RelPath = "train_runs/run"
    init_from: Annotated[str, _CheckpointOrName()] | None = Field(
        None, description="a checkpoint path or catalogue name to fine-tune from")
    init_member: Annotated[int, Number(0, 15, integer=True)] | None = Field(
        None, description="with init_from an ensemble of masknets (unbake_small): start from this member alone")
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    augment: Annotated[AugmentConfig, _dataclass_section(AugmentConfig, "augment")] = Field(
        default_factory=AugmentConfig)
    optim: OptimSection = Field(default_factory=OptimSection)
    loss: Annotated[LossConfig, _dataclass_section(LossConfig, "loss")] = Field(default_factory=LossConfig)
    run: RunSection = Field(default_factory=RunSection)

    @classmethod
    def unknown_keys(cls, unknown: list[str], allowed: list[str]):
        return invalid(f"unknown top-level config keys {sorted(unknown)}; known: {sorted(allowed)}")

    @property
    def segment_samples(self) -> int:
        return int(round(self.data.segment_s * self.data.samplerate))

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


# stands for data.fold in out_dir and data.extra_roots, so one config serves every fold
FOLD_FIELD = "{fold}"


def _fill_fold(raw: dict) -> dict:
    """``raw`` with :data:`FOLD_FIELD` in out_dir and data.extra_roots replaced by data.fold
    (its default 0 when unset; a wrong value is refused by the validation that follows)."""
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    fold = str(data.get("fold", DataSection.model_fields["fold"].default))
    out = {**raw}
    if isinstance(raw.get("out_dir"), str):
        out["out_dir"] = raw["out_dir"].replace(FOLD_FIELD, fold)
    if isinstance(data.get("extra_roots"), list):
        out["data"] = {**data, "extra_roots": [r.replace(FOLD_FIELD, fold) if isinstance(r, str) else r
                                               for r in data["extra_roots"]]}
    return out


def config_from_dict(raw: dict, base_dir: str | os.PathLike | None = None, *,
                     data_root: str | os.PathLike | None = None, fold: int | None = None) -> TrainConfig:
    """Build and check a :class:`TrainConfig`; relative paths are taken from ``base_dir``.
    ``data_root`` (relative to the working folder) replaces ``data.root``; ``fold`` replaces
    ``data.fold``. ``{fold}`` in ``out_dir`` and ``data.extra_roots`` stands for ``data.fold``
    (only in a k-fold config, ``data.folds`` > 0)."""
    if not isinstance(raw, dict):
        raise ConfigError("the training config must be a mapping")
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    if data_root is not None:
        data = {**data, "root": str(Path(data_root).resolve())}
        raw = {**raw, "data": data}
    if fold is not None:
        raw = {**raw, "data": {**data, "fold": fold}}
    filled = _fill_fold(raw)
    cfg = validate(TrainConfig, filled, base=Path(base_dir) if base_dir else None, root="the training config")
    if (fold is not None or filled != raw) and not cfg.data.folds:
        what = "a fold" if fold is not None else f"{FOLD_FIELD} in out_dir or data.extra_roots"
        raise ConfigError(f"data.folds: {what} needs a k-fold config (data.folds > 0)")
    if not cfg.data.root:
        raise ConfigError(f"data.root: no training data folder; {DATA_HINT}")
    if not cfg.data.cache_dir:
        raise ConfigError("data.cache_dir (where decoded audio is cached) is required")
    return cfg


def check_data_folder(cfg: TrainConfig) -> None:
    """The data folder must exist before anything is built (a fresh clone has no data)."""
    root = Path(cfg.data.root)
    if not root.is_dir():
        raise ConfigError(f"data.root: no such folder: {root}; {DATA_HINT}")


def load_config(path: str | os.PathLike, *, data_root: str | os.PathLike | None = None,
                fold: int | None = None) -> TrainConfig:
    """Read a training config file (``data_root``, ``fold``: see :func:`config_from_dict`)."""
    path = Path(path)
    raw = load_yaml(path, "training config", shape="(model:, data:, optim:, ...)", syntax="not valid YAML")
    try:
        return config_from_dict(raw, base_dir=path.parent, data_root=data_root, fold=fold)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
