"""Train within a fixed wall-clock budget on a borrowed GPU machine, and export the result.

    python tools/gpu_train.py configs/train_small_gpu.yaml --out /tmp/run --budget-s 480 \\
        --export $OUT/model.pt

A lent machine gives minutes, not hours, and the cosine schedule needs its length up front, so
the script first times ``--calibrate-steps`` steps of the config, then sets ``optim.steps`` to
what fits in the rest of ``--budget-s`` (counted from the script's start, data preparation
included) and trains that schedule from the start. The schedule it chose, the timing and the
training log are written beside the exported checkpoint (float32), so the run can be repeated
exactly with ``unbake train`` and that step count.

Where PyAV is not installed (a bare GPU image), stem files are decoded with pedalboard, which
reads WAV, FLAC, MP3 and Ogg Vorbis: pack the data with ``tools/pack_training_set.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import threading
import time
from pathlib import Path

START = time.monotonic()


def _read_with_pedalboard(path, *, stream: int = 0):
    """``(audio (c, t) float32, sample_rate)`` of a single-stream file, read with pedalboard."""
    import numpy as np
    from pedalboard.io import AudioFile

    if stream != 0:
        raise ValueError(f"{path}: pedalboard reads single-stream files only")
    with AudioFile(str(path)) as fh:
        audio = fh.read(fh.frames)
        return np.ascontiguousarray(audio, dtype=np.float32), int(round(fh.samplerate))


def use_pedalboard_reader_without_av() -> bool:
    """Decode training stems with pedalboard when PyAV is missing; true when it did so."""
    try:
        import av  # noqa: F401
        return False
    except ImportError:
        pass
    import unbake.audio

    unbake.audio.read_audio = _read_with_pedalboard  # what decode_track looks up at each call
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="training config")
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--budget-s", type=float, required=True,
                    help="wall-clock seconds from the script's start to the end of training")
    ap.add_argument("--calibrate-steps", type=int, default=40,
                    help="steps timed before the schedule is fixed (at least 6 per data worker)")
    ap.add_argument("--export", required=True, help="checkpoint to write (float32) with the run's record beside it")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    log = logging.getLogger("gpu_train")

    import torch

    from unbake.train.config import config_from_dict, load_config
    from unbake.train.loop import Trainer

    if use_pedalboard_reader_without_av():
        log.info("PyAV not installed: stems are read with pedalboard")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True  # one input shape for the whole run
    cfg = load_config(args.config)
    raw = cfg.to_dict()
    out = Path(args.out)

    # calibration: every step of a throw-away run timed; the mean of the second half is the
    # steady state. With data workers the first 2 x workers batches are prepared while the
    # model starts, so the calibration runs well past them: timed on those alone, a run whose
    # data workers are the bottleneck looks faster than it is (on an H200 with 14 workers:
    # 0.055 s/step from 40 steps against 0.071 over the whole run)
    calibrate = max(args.calibrate_steps, 6 * raw["run"]["data_workers"])
    t_build = time.monotonic()
    probe = Trainer(config_from_dict({**raw, "optim": {**raw["optim"], "steps": 10**6},
                                      "run": {**raw["run"], "log_every": 1}}), out / "calibration")
    t_build = time.monotonic() - t_build  # the real run is built again (data cached by now)
    probe.fit(max_steps=calibrate)
    with open(out / "calibration" / "train_log.csv", newline="") as fh:
        times = [float(r["s_per_step"]) for r in csv.DictReader(fh)]
    s_per_step = sum(times[len(times) // 2:]) / len(times[len(times) // 2:])
    del probe
    left = args.budget_s - (time.monotonic() - START) - t_build
    # 5 % margin for state saves and the start of the real run (data loading, worker start)
    steps = int(left * 0.95 / s_per_step)
    if steps < 10:
        raise SystemExit(f"budget too small: {left:.0f} s left at {s_per_step:.3f} s/step")
    log.info("calibrated %.4f s/step on %s; %.0f s left: training %d steps", s_per_step, probe_device(), left, steps)
    raw["optim"] = {**raw["optim"], "steps": steps}
    cfg = config_from_dict(raw)
    trainer = Trainer(cfg, out / "run")
    # a guard, should the estimate still be short: stop (state saved) at the budget's end plus
    # the 5 % margin, so something comes back before the machine's own limit
    deadline = threading.Timer(max(1.0, args.budget_s * 1.05 - (time.monotonic() - START)), trainer.request_stop)
    deadline.daemon = True
    deadline.start()
    t_train = time.monotonic()
    trainer.fit()
    deadline.cancel()
    took = time.monotonic() - t_train
    complete = trainer.step == steps
    if not complete:
        log.warning("stopped at the deadline after %d of %d steps", trainer.step, steps)

    from unbake.hub.checkpoint import save_checkpoint

    export = Path(args.export)
    meta = {"step": trainer.step, "scheduled_steps": steps, "selection": "last step of a schedule sized to the time budget"
            if complete else "stopped at the time budget's deadline before the schedule's end",
            "init_from": raw.get("init_from"), "train_segment_s": raw["data"]["segment_s"],
            "augment": raw["augment"], "optim": raw["optim"]}
    save_checkpoint(trainer.model, export, architecture=trainer.architecture, config=trainer.model_config,
                    meta=meta, half=False)
    record = {"config": raw, "steps": steps, "steps_done": trainer.step, "complete": complete,
              "calibrated_s_per_step": s_per_step, "calibration_steps": calibrate, "train_s": took,
              "s_per_step": took / max(1, trainer.step), "device": probe_device(), "torch": torch.__version__,
              "total_s": time.monotonic() - START}
    export.with_suffix(".json").write_text(json.dumps(record, indent=1))
    shutil.copy(out / "run" / "train_log.csv", export.with_name(export.stem + "_train_log.csv"))
    if not complete:
        raise SystemExit(f"{export}: exported after {trainer.step} of {steps} steps (deadline)")
    log.info("exported %s after %d steps (%.0f s training, %.0f s in all)", export, steps, took,
             record["total_s"])


def probe_device() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


if __name__ == "__main__":
    main()
