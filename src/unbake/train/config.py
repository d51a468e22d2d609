"""The training configuration: a YAML file parsed into frozen dataclasses, with every unknown
key and every out-of-range value reported as a :class:`~unbake.errors.ConfigError`."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data.augment import AugmentConfig
from ..errors import ConfigError
from .losses import LossConfig


def _take(cls, raw: dict | None, section: str):
    raw = dict(raw or {})
    known = set(cls.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown keys in {section}: {sorted(unknown)}; known: {sorted(known)}")
    return cls(**raw)


@dataclass(frozen=True)
class ModelSection:
    architecture: str = "masknet"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataSection:
    root: str = ""
    cache_dir: str = ""
    sources: tuple[str, ...] = ("drums", "bass", "other", "vocals")
    samplerate: int = 44100
    segment_s: float = 3.0
    valid_every: int = 9
    valid_count: int = 10
    # a separate held-out folder; when set, no tracks are taken out of ``root``
    valid_root: str | None = None
    # k-fold cross-validation: with folds > 0, track i of ``root`` (name order) is held out in
    # fold i % folds, replacing the valid_every/valid_count rule
    folds: int = 0
    fold: int = 0
    # folders of extra training-only tracks (e.g. a synthetic set from `unbake data synth`)
    extra_roots: tuple[str, ...] = ()


@dataclass(frozen=True)
class OptimSection:
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    steps: int = 1000
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    batch_size: int = 8


@dataclass(frozen=True)
class RunSection:
    threads: int = 1
    device: str = "auto"
    log_every: int = 10
    valid_every_steps: int = 100
    checkpoint_every_s: float = 180.0
    checkpoint_every_steps: int = 0
    # keep a copy of the training state at every validation (for picking checkpoints later)
    keep_validated: bool = False
    # also log to TensorBoard (run folder ``tb/``) when the tensorboard package is installed
    tensorboard: bool = True


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    out_dir: str = "train_runs/run"
    init_from: str | None = None
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunSection = field(default_factory=RunSection)

    @property
    def segment_samples(self) -> int:
        return int(round(self.data.segment_s * self.data.samplerate))

    def to_dict(self) -> dict:
        def plain(v):
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            return v
        return plain(asdict(self))


def config_from_dict(raw: dict, base_dir: str | os.PathLike | None = None) -> TrainConfig:
    """Build and check a :class:`TrainConfig`; relative paths are taken from ``base_dir``."""
    if not isinstance(raw, dict):
        raise ConfigError("the training config must be a mapping")
    sections = {"model", "data", "augment", "optim", "loss", "run"}
    top = {"seed", "out_dir", "init_from"} | sections
    unknown = set(raw) - top
    if unknown:
        raise ConfigError(f"unknown top-level config keys {sorted(unknown)}; known: {sorted(top)}")
    data_raw = dict(raw.get("data") or {})
    base = Path(base_dir) if base_dir else None

    def path(p: str | None) -> str | None:
        if p is None or p == "":
            return p
        q = Path(os.path.expanduser(str(p)))
        return str(q if q.is_absolute() or base is None else (base / q))

    for key in ("root", "cache_dir", "valid_root"):
        if key in data_raw:
            data_raw[key] = path(data_raw[key])
    if "sources" in data_raw:
        data_raw["sources"] = tuple(data_raw["sources"])
    if "extra_roots" in data_raw:
        data_raw["extra_roots"] = tuple(path(p) for p in (data_raw["extra_roots"] or ()))
    optim_raw = dict(raw.get("optim") or {})
    if "betas" in optim_raw:
        optim_raw["betas"] = tuple(float(b) for b in optim_raw["betas"])
    for key in ("lr", "weight_decay", "min_lr_ratio", "grad_clip"):
        if key in optim_raw:
            optim_raw[key] = float(optim_raw[key])
    init_from = raw.get("init_from")
    if init_from and (os.sep in str(init_from) or str(init_from).endswith((".pt", ".th", ".ckpt"))):
        init_from = path(init_from)
    cfg = TrainConfig(
        seed=int(raw.get("seed", 0)),
        out_dir=path(raw.get("out_dir", "train_runs/run")),
        init_from=init_from,
        model=_take(ModelSection, raw.get("model"), "model"),
        data=_take(DataSection, data_raw, "data"),
        augment=AugmentConfig.from_dict(raw.get("augment")),
        optim=_take(OptimSection, optim_raw, "optim"),
        loss=LossConfig.from_dict(raw.get("loss")),
        run=_take(RunSection, raw.get("run"), "run"),
    )
    _check(cfg)
    return cfg


def _check(cfg: TrainConfig) -> None:
    if not cfg.data.root:
        raise ConfigError("data.root (the training data folder) is required")
    if not cfg.data.cache_dir:
        raise ConfigError("data.cache_dir (where decoded audio is cached) is required")
    o = cfg.optim
    if o.lr <= 0 or o.steps <= 0 or o.batch_size <= 0 or o.warmup_steps < 0:
        raise ConfigError("optim.lr, optim.steps and optim.batch_size must be positive, warmup_steps >= 0")
    if not 0.0 <= o.min_lr_ratio <= 1.0:
        raise ConfigError("optim.min_lr_ratio must be in [0, 1]")
    if cfg.data.folds < 0 or (cfg.data.folds and not 0 <= cfg.data.fold < cfg.data.folds):
        raise ConfigError("data.folds must be >= 0 and data.fold in [0, folds)")
    if cfg.data.segment_s <= 0:
        raise ConfigError("data.segment_s must be positive")
    if cfg.run.threads < 0:
        raise ConfigError("run.threads must be >= 0 (0 leaves torch's default)")


def load_config(path: str | os.PathLike) -> TrainConfig:
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the training config ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return config_from_dict(raw or {}, base_dir=path.parent)
