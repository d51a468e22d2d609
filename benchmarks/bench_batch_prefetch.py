"""Training batches per second: the sampler alone against `run.data_workers` threads.

Usage: PYTHONPATH=src python benchmarks/bench_batch_prefetch.py [CONFIG] [--batch 8] [--workers 1 2 4] [--steps 24]

Uses the config's training tracks and augmentations (decoded into its cache on the first run).
A dozen untimed batches first warm the memory-mapped tracks; the threaded figure includes
starting the threads and filling their look-ahead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_default_model import cpu_description  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="configs/train_small_deep_nosynthbass.yaml")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=24)
    args = ap.parse_args()

    import logging

    from unbake.data.datasets import BatchPrefetcher
    from unbake.train.config import load_config
    from unbake.train.loop import Trainer

    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.config)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        sampler = Trainer(cfg, tmp).sampler
    for step in range(10**6, 10**6 + 12):  # warm the memory-mapped tracks
        sampler.batch_stems(step, 0, args.batch)
    print(f"CPU: {cpu_description()}")
    print(f"{args.config}: batches of {args.batch} x {cfg.data.segment_s:g} s, {args.steps} timed")
    t = time.perf_counter()
    for step in range(args.steps):
        sampler.batch_stems(step, 0, args.batch)
    serial = (time.perf_counter() - t) / args.steps
    print(f"serial      {serial:.3f} s/batch")
    for n in args.workers:
        with BatchPrefetcher(sampler, n, 0, args.batch, 10**6) as pre:
            t = time.perf_counter()  # start-up and filling the look-ahead included
            for step in range(args.steps):
                pre.get(step)
            took = (time.perf_counter() - t) / args.steps
        print(f"{n} thread(s) {took:.3f} s/batch ({serial / took:.2f}x serial)")


if __name__ == "__main__":
    main()
