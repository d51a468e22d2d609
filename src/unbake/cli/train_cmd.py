"""`unbake train CONFIG.yaml [--data DIR] [--fold N] [--resume] [--out DIR]` (also one process of a `torchrun` run)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, handle_errors, out


@app.command()
@handle_errors
def train(
    config: Path = typer.Argument(..., help="Training config (YAML), e.g. configs/train_small.yaml."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the output folder from its last state."),
    outdir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: out_dir of the config)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many steps in this call."),
    data: Optional[Path] = typer.Option(None, "--data", help="Training data folder (replaces data.root of the config)."),
    fold: Optional[int] = typer.Option(None, "--fold", help="Fold of a k-fold config (replaces data.fold; "
                                       "{fold} in out_dir and data.extra_roots stands for it)."),
    verbose: bool = typer.Option(True, "--verbose/--quiet", help="Log progress to stderr."),
) -> None:
    """Train or fine-tune a separation model; states in OUT/state.pt, best weights in OUT/best_model.pt."""
    import logging

    from ..train.config import check_data_folder, load_config
    from ..train.loop import run_training

    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    cfg = load_config(config, data_root=data, fold=fold)
    check_data_folder(cfg)
    result = run_training(cfg, outdir, resume=resume, max_steps=max_steps)
    best = result.get("best")
    if best:
        stems = " ".join(f"{s}={v:.2f}" for s, v in best["stems"].items())
        out.print(f"step {result['step']}; best validation at step {best['step']}: "
                  f"mean uSDR {best['mean']:.2f} dB ({stems})", highlight=False)
    else:
        out.print(f"step {result['step']}", highlight=False)
