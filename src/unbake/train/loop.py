"""The training loop: AdamW with warm-up + cosine decay, validation uSDR per stem, CSV logs and
learning-curve plots, and training states that resume bit for bit.

A training state (``state.pt`` in the run folder) holds the model, optimiser, scheduler, the
python/numpy/torch random states, the step and the sampler's position; it is written under a
temporary name and renamed, so a process killed at any moment leaves the previous state
intact. Batches are a pure function of ``(seed, step, rank)`` (see
:class:`~unbake.data.datasets.ExcerptSampler`), so the sampler position is the step itself.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._common import sweep_stale_parts
from ..hub.checkpoint import atomic_torch_save, read_tagged
from ..data.cache import AudioCache
from ..engine.precision import autocast
from ..data.datasets import (ExcerptSampler, Track, find_tracks, fold_split, load_tracks, split_tracks,
                             track_name)
from ..errors import CheckpointError, ConfigError, ModelError
from . import ddp
from .config import TrainConfig
from .losses import separation_loss

log = logging.getLogger(__name__)

STATE_FORMAT = "unbake-train-state-v1"
STATE_NAME = "state.pt"
BEST_NAME = "best_model.pt"
TRAIN_LOG = "train_log.csv"
VALID_LOG = "valid_log.csv"


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then cosine decay to ``min_ratio`` at
    ``total_steps`` (and flat after)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ------------------------------------------------------------------ random states


def get_rng_state() -> dict[str, Any]:
    """Every random state a step could touch, as plain containers (loadable with
    ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    return read_tagged(path, STATE_FORMAT, "training state")


# ------------------------------------------------------------------ data


def split_data(cfg: TrainConfig) -> tuple[list[Path], list[Path]]:
    """The training and held-out tracks of ``data.root`` (the extra roots not included): a
    separate ``valid_root``, else the k-fold split, else the fixed held-out rule."""
    d = cfg.data
    paths = find_tracks(d.root)
    if d.valid_root:
        return paths, find_tracks(d.valid_root)
    if d.folds:
        return fold_split(paths, d.folds, d.fold)
    return split_tracks(paths, d.valid_every, d.valid_count)


# ------------------------------------------------------------------ model construction


def build_model(cfg: TrainConfig) -> tuple[torch.nn.Module, str, dict[str, Any]]:
    """The model to train, its architecture name and constructor config.

    With ``init_from`` the weights come from any checkpoint :func:`unbake.load_model` reads (a
    path or a catalogue name); architecture and config come from the checkpoint when it carries
    them (unbake checkpoints, catalogue entries), else from the ``model:`` section.
    """
    from ..hub.architectures import model_from_config, resolve_architecture

    arch = resolve_architecture(cfg.model.architecture)
    kwargs = dict(cfg.model.config)
    if not cfg.init_from:
        kwargs.setdefault("sources", list(cfg.data.sources))
        kwargs.setdefault("samplerate", cfg.data.samplerate)
        return model_from_config(arch, kwargs), arch, kwargs
    from .. import load_model
    from ..hub.catalogue import load_catalogue
    from ..hub.checkpoint import read_blob

    src = cfg.init_from
    cat = load_catalogue()
    if src in cat.models and cat.models[src].config:
        arch, kwargs = resolve_architecture(cat.models[src].architecture), dict(cat.models[src].config)
    elif Path(src).is_file():
        try:
            blob = read_blob(src)
            arch, kwargs = blob["architecture"], dict(blob["config"])
        except CheckpointError:
            pass  # another format: the model: section describes it
    elif src in cat.models and cat.models[src].package_file:
        blob = read_blob(Path(__file__).parent.parent / cat.models[src].package_file)
        arch, kwargs = blob["architecture"], dict(blob["config"])
    loaded = load_model(src)
    if not isinstance(loaded, torch.nn.Module) or not hasattr(loaded, "sources"):
        raise ModelError(f"init_from {src!r} is not a single model (ensembles cannot be fine-tuned)")
    if cfg.init_member is not None:
        members = kwargs.get("members")
        if not isinstance(members, list):
            raise ConfigError(f"init_member is set, but init_from {src!r} is not an ensemble of masknets")
        if cfg.init_member >= len(members):
            raise ConfigError(f"init_member {cfg.init_member}: {src!r} has {len(members)} members (0-{len(members) - 1})")
        kwargs = dict(members[cfg.init_member])
        loaded = loaded.members[cfg.init_member]
    grown = {k: v for k, v in cfg.model.config.items() if kwargs.get(k) != v}
    kwargs.update(grown)
    model = model_from_config(arch, kwargs)
    from ..hub.checkpoint import load_state_strict

    state = loaded.state_dict()
    new_keys = set(model.state_dict()) - set(state) if grown else set()
    if grown:
        # a model grown from a trained one (e.g. a block added): the new parameters keep their
        # initialisation, or what the model's start_grown makes of it; every tensor the
        # checkpoint has must still fit exactly, once the model's grown_state has widened those
        # that a new input takes
        state = {**{k: v for k, v in model.state_dict().items() if k not in state}, **state}
        if hasattr(model, "grown_state"):
            state = model.grown_state(state)
    load_state_strict(model, state, f"init_from {src}")
    if new_keys and hasattr(model, "start_grown"):
        model.start_grown(new_keys)
    if tuple(model.sources) != tuple(cfg.data.sources):
        raise ConfigError(f"init_from model has stems {list(model.sources)}, data.sources are {list(cfg.data.sources)}")
    return model, arch, kwargs


# ------------------------------------------------------------------ CSV logs


class CsvLog:
    """An append-only CSV that, on resume, first drops the rows of steps not yet reached again."""

    def __init__(self, path: Path, fields: list[str], resume_step: int | None) -> None:
        self.path, self.fields = path, fields
        rows: list[dict] = []
        if resume_step is not None and path.is_file():
            with path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fields)
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k, "") for k in fields})

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, self.fields).writerow({k: row.get(k, "") for k in self.fields})


def _tensorboard(out: Path):
    """A TensorBoard writer under ``out/tb`` when the optional ``tensorboard`` package is
    installed, else ``None`` (the CSV logs are the record either way)."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tb"))


# ------------------------------------------------------------------ validation


def evaluate(model: torch.nn.Module, tracks: list[Track], sources: tuple[str, ...],
             device: torch.device | str = "cpu") -> dict[str, Any]:
    """Mean over ``tracks`` of each stem's uSDR (dB) for ``model``, for the mixture as the
    estimate of every stem (the floor), and their means over stems."""
    from ..engine import apply_model
    from ..metrics.sdr import usdr

    est_scores = {s: [] for s in sources}
    floor_scores = {s: [] for s in sources}
    for track in tracks:
        mix = track.mix()
        # PyTorch: the weights change between validations, a converted graph would not be reused
        est = apply_model(model, mix, device=device, backend="torch")
        refs = np.asarray(track.stems, dtype=np.float32)
        for i, s in enumerate(sources):
            est_scores[s].append(usdr(refs[i], est[i]))
            floor_scores[s].append(usdr(refs[i], mix))
    stems = {s: float(np.mean(v)) for s, v in est_scores.items()}
    floor = {s: float(np.mean(v)) for s, v in floor_scores.items()}
    return {"stems": stems, "mean": float(np.mean(list(stems.values()))),
            "floor": floor, "floor_mean": float(np.mean(list(floor.values())))}


# ------------------------------------------------------------------ the trainer


class Trainer:
    """One process of a (possibly data-parallel) training run.

    ``fit()`` trains up to ``optim.steps``; ``resume()`` first restores the state of the run
    folder. Only rank 0 writes files.
    """

    def __init__(self, cfg: TrainConfig, out_dir: str | os.PathLike | None = None,
                 dist_info: ddp.DistInfo | None = None) -> None:
        self.cfg = cfg
        self.out = Path(out_dir or cfg.out_dir)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        self.device = self._device(cfg.run.device)
        self.dist = dist_info or ddp.DistInfo()
        seed_everything(cfg.seed)
        self.model, self.architecture, self.model_config = build_model(cfg)
        if tuple(self.model.sources) != tuple(cfg.data.sources):
            raise ConfigError(f"model stems {list(self.model.sources)} differ from data.sources {list(cfg.data.sources)}")
        self.model.to(self.device)
        self.net = ddp.wrap(self.model, self.dist, self.device)
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr, betas=o.betas,
                                           weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, o.warmup_steps, o.steps, o.min_lr_ratio))
        self.step = 0
        self.best: dict[str, Any] | None = None
        self._stop = False
        self._prefetch = None  # a BatchPrefetcher while fit() runs with run.data_workers
        self._load_data()

    @staticmethod
    def _device(name: str) -> torch.device:
        from ..engine.apply import resolve_device

        dev = resolve_device(name)
        if dev.type == "cuda" and "LOCAL_RANK" in os.environ:
            dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(dev)
        return dev

    def _load_data(self) -> None:
        d = self.cfg.data
        cache = AudioCache(d.cache_dir)
        train_paths, valid_paths = split_data(self.cfg)
        extra_from = len(train_paths)
        train_paths = train_paths + [p for root in d.extra_roots for p in find_tracks(root)]
        self.valid_names = [track_name(p) for p in valid_paths]
        self.train_tracks = load_tracks(train_paths, d.sources, d.samplerate, cache,
                                        augment=self.cfg.augment, seed=self.cfg.seed)
        self.valid_tracks = load_tracks(valid_paths, d.sources, d.samplerate, cache) if self.dist.is_main else []
        self.sampler = ExcerptSampler(self.train_tracks, self.cfg.segment_samples, self.cfg.augment,
                                      seed=self.cfg.seed, sample_rate=d.samplerate,
                                      extra_from=extra_from, extra_p=d.extra_p,
                                      extra_stems=None if d.extra_stems is None
                                      else tuple(d.sources.index(s) for s in d.extra_stems))

    # -------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "step": self.step,
            "config": self.cfg.to_dict(),
            "architecture": self.architecture,
            "model_config": dict(self.model_config),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": get_rng_state(),
            "sampler": {"seed": self.sampler.seed, "next_step": self.step},
            "best": dict(self.best) if self.best else None,
            "world_size": self.dist.world_size,
        }

    def load_state_dict(self, state: dict[str, Any], where: str = "training state") -> None:
        from ..hub.checkpoint import load_state_strict

        if state["architecture"] != self.architecture:
            raise CheckpointError(f"{where}: architecture {state['architecture']!r}, this run builds {self.architecture!r}")
        load_state_strict(self.model, state["model"], where)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        if state["sampler"]["seed"] != self.sampler.seed:
            raise CheckpointError(f"{where}: data seed {state['sampler']['seed']} differs from the config's {self.sampler.seed}")
        self.step = int(state["step"])
        self.best = state.get("best")

    def save_state(self) -> Path | None:
        if not self.dist.is_main:
            return None
        path = self.out / STATE_NAME
        atomic_torch_save(self.state_dict(), path)
        return path

    def resume(self) -> bool:
        """Restore ``state.pt`` of the run folder if there is one; true when it did."""
        path = self.out / STATE_NAME
        if not path.is_file():
            return False
        self.load_state_dict(read_state(path), str(path))
        log.info("resumed from %s at step %d", path, self.step)
        return True

    # -------------------------------------------------------------- training

    def train_step(self) -> dict[str, float]:
        if self._prefetch is not None:
            stems = self._prefetch.get(self.step)
        else:
            stems = self.sampler.batch_stems(self.step, self.dist.rank, self.cfg.optim.batch_size)
        if self.device.type == "cuda":
            ref_t = torch.from_numpy(stems).pin_memory().to(self.device, non_blocking=True)
        else:
            ref_t = torch.from_numpy(stems)
        mix_t = ref_t.sum(dim=1)
        self.net.train()
        with autocast(self.cfg.run.precision, self.device):
            est = self.net(mix_t)
        loss, parts = separation_loss(est.float(), ref_t, self.cfg.loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float("nan")
        if self.cfg.optim.grad_clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {"loss": float(loss.detach()), "lr": lr, "grad_norm": grad_norm, **parts}

    def validate(self) -> dict[str, Any] | None:
        if not self.valid_tracks:
            return None
        self.model.eval()
        result = evaluate(self.model, self.valid_tracks, tuple(self.cfg.data.sources), self.device)
        self.model.train()
        return result

    def _export_best(self, result: dict[str, Any]) -> None:
        from ..hub.checkpoint import save_checkpoint

        meta = {"step": self.step, "valid_usdr": result["stems"], "valid_mean": result["mean"],
                "valid_floor": result["floor"], "valid_tracks": self.valid_names}
        save_checkpoint(self.model, self.out / BEST_NAME, architecture=self.architecture,
                        config=self.model_config, meta=meta)

    def request_stop(self, *_: Any) -> None:
        """Finish the current step, save the state and return from :meth:`fit`."""
        self._stop = True

    def fit(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train until ``optim.steps`` (or ``max_steps`` in this call). Returns the last losses
        and the best validation."""
        end = self.cfg.optim.steps if max_steps is None else min(self.cfg.optim.steps, self.step + max_steps)
        run = self.cfg.run
        main = self.dist.is_main
        sources = list(self.cfg.data.sources)
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            tlog = CsvLog(self.out / TRAIN_LOG, ["step", "time_s", "lr", "loss", "l1_wave", "mrstft", "sdr",
                                                 "grad_norm", "s_per_step"], self.step)
            vlog = CsvLog(self.out / VALID_LOG, ["step", "mean", *sources, "floor_mean",
                                                 *[f"floor_{s}" for s in sources]], self.step)
        tb = _tensorboard(self.out) if main and run.tensorboard else None
        old_handler = None
        if main and hasattr(signal, "SIGTERM"):
            try:
                old_handler = signal.signal(signal.SIGTERM, self.request_stop)
            except ValueError:  # not the main thread
                old_handler = None
        last_save = time.monotonic()
        t0 = time.monotonic()
        window: list[dict[str, float]] = []
        last: dict[str, float] = {}
        if run.data_workers and self.step < end:
            from ..data.datasets import BatchPrefetcher

            self._prefetch = BatchPrefetcher(self.sampler, run.data_workers, self.dist.rank,
                                             self.cfg.optim.batch_size, end)
        try:
            while self.step < end and not self._stop:
                t_step = time.monotonic()
                last = self.train_step()
                last["s_per_step"] = time.monotonic() - t_step
                window.append(last)
                if main and (self.step % run.log_every == 0 or self.step == end):
                    avg = {k: float(np.mean([w[k] for w in window if k in w])) for k in window[-1]}
                    tlog.write({"step": self.step, "time_s": round(time.monotonic() - t0, 2), **avg})
                    if tb is not None:
                        for k, v in avg.items():
                            tb.add_scalar(f"train/{k}", v, self.step)
                    log.info("step %d loss %.5f lr %.2e %.2fs/step", self.step, avg["loss"], avg["lr"], avg["s_per_step"])
                    window = []
                validated = False
                if main and run.valid_every_steps and (self.step % run.valid_every_steps == 0 or self.step == end):
                    res = self.validate()
                    if res is not None:
                        validated = True
                        vlog.write({"step": self.step, "mean": res["mean"], **res["stems"],
                                    "floor_mean": res["floor_mean"],
                                    **{f"floor_{s}": v for s, v in res["floor"].items()}})
                        if tb is not None:
                            tb.add_scalar("valid/mean_usdr_db", res["mean"], self.step)
                            for s, v in res["stems"].items():
                                tb.add_scalar(f"valid/usdr_db/{s}", v, self.step)
                        log.info("valid step %d mean uSDR %.2f dB %s", self.step, res["mean"],
                                 " ".join(f"{s}={v:.2f}" for s, v in res["stems"].items()))
                        if self.best is None or res["mean"] > self.best["mean"]:
                            self.best = {"step": self.step, "mean": res["mean"], "stems": res["stems"]}
                            self._export_best(res)
                        self._plot()
                save_due = (run.checkpoint_every_steps and self.step % run.checkpoint_every_steps == 0) or \
                    (run.checkpoint_every_s and time.monotonic() - last_save >= run.checkpoint_every_s)
                if save_due or validated or self.step == end or self._stop:
                    self.save_state()
                    if validated and run.keep_validated and main:
                        atomic_torch_save(self.state_dict(), self.out / f"state_step{self.step:06d}.pt")
                    last_save = time.monotonic()
        finally:
            if self._prefetch is not None:
                self._prefetch.close()
                self._prefetch = None
            if old_handler is not None:
                signal.signal(signal.SIGTERM, old_handler)
            if tb is not None:
                tb.close()
        if main:
            self._plot()
        return {"step": self.step, "last": last, "best": self.best}

    def _plot(self) -> None:
        try:
            from .plots import plot_curves

            plot_curves(self.out)
        except Exception as exc:  # a plot must never stop a training run
            log.warning("could not draw the learning curves: %s", exc)


def run_training(cfg: TrainConfig, out_dir: str | os.PathLike | None = None, *, resume: bool = False,
                 max_steps: int | None = None) -> dict[str, Any]:
    """What ``unbake train`` does in each process (also under ``torchrun``)."""
    device = Trainer._device(cfg.run.device)
    info = ddp.init_from_env(device)
    try:
        # the trainer (and its DistributedDataParallel wrapper, which holds the process group) is
        # gone when the group is destroyed: see ddp.shutdown
        return _fit(cfg, out_dir, info, resume, max_steps)
    finally:
        ddp.shutdown(info)


def _fit(cfg: TrainConfig, out_dir, info: ddp.DistInfo, resume: bool, max_steps: int | None) -> dict[str, Any]:
    trainer = Trainer(cfg, out_dir, info)
    sweep_stale_parts(trainer.out)  # half-written states and plots of a killed earlier run
    if resume:
        trainer.resume()
    elif (trainer.out / STATE_NAME).is_file():
        raise ConfigError(f"{trainer.out} already holds a training state; pass --resume to continue it "
                          "or choose another --out")
    return trainer.fit(max_steps)


def export_weights(model_path: str | os.PathLike, dest: str | os.PathLike, *, half: bool = True) -> Path:
    """Re-save an unbake checkpoint (e.g. a run's ``best_model.pt``) for shipping: same
    architecture, config and metadata, floating-point weights in float16 when ``half``."""
    from ..hub.checkpoint import model_from_blob, read_blob, save_checkpoint

    blob = read_blob(model_path)
    model = model_from_blob(blob, str(model_path))
    return save_checkpoint(model, dest, architecture=blob["architecture"], config=blob["config"],
                           meta=blob.get("meta", {}), half=half)
