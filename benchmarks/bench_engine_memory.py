"""Peak memory of the engine with a large model, for several track lengths.

Runs full-size ``htdemucs`` (random weights, no download) through ``unbake.engine.iter_separate``
on random stereo of each length, each length in its own process, and prints the peak RSS. The
input array is held in memory (so it adds ``length * 2 * 4`` bytes); the stems are discarded as
they come out. ``UNBAKE_KEEP_FREED_MEMORY=0`` compares with the C library's default allocator
settings.

Run: PYTHONPATH=src python benchmarks/bench_engine_memory.py [--seconds 30 120 240 480] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def _child(seconds: float, threads: int, model_name: str) -> None:
    import numpy as np
    import torch

    from unbake.engine import ArraySource, iter_separate
    from unbake.hub.architectures import model_from_config
    from unbake.hub.catalogue import load_catalogue

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    entry = load_catalogue().models[model_name]
    model = model_from_config(entry.architecture, dict(entry.config)).eval()
    mix = np.random.default_rng(0).standard_normal((2, int(seconds * model.samplerate))).astype(np.float32) * 0.1
    samples = sum(block.shape[-1] for block in iter_separate(model, ArraySource(mix), overlap=0.25))
    assert samples == mix.shape[-1]
    print(json.dumps({"seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "input_mib": mix.nbytes / 2 ** 20}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[30, 120, 240, 480])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-n", "--model", default="htdemucs", help="a catalogue name (random weights)")
    ap.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        _child(args.child, args.threads, args.model)
        return
    print(f"{args.model}, random weights, engine in memory, {args.threads} thread(s)")
    for seconds in args.seconds:
        out = subprocess.run([sys.executable, __file__, "--child", str(seconds), "--threads", str(args.threads),
                              "-n", args.model], capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{seconds:8g} s  peak RSS {r['peak_rss_mib']:8.0f} MiB  (input array {r['input_mib']:.0f} MiB)")


if __name__ == "__main__":
    main()
