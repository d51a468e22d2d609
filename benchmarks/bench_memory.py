"""Peak memory (RSS) of `unbake separate` for 1-, 10- and 60-minute inputs, generated on the fly.

Usage: python benchmarks/bench_memory.py [--minutes 1 10 60] [-n MODEL] [--keep]

Each run is a separate process so its peak RSS (VmHWM / ru_maxrss) is its own. The input is a
stereo 16-bit WAV written block by block (a chord, noise bursts and a panned melody), so
generating it needs no memory either.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_input(path: Path, minutes: float, sr: int = 44100) -> None:
    from unbake.audio import AudioWriter

    total = int(minutes * 60 * sr)
    block = sr * 10
    rng = np.random.default_rng(0)
    with AudioWriter(path, sr, 2, bit_depth="16", overwrite=True) as w:
        for start in range(0, total, block):
            n = min(block, total - start)
            t = (start + np.arange(n)) / sr
            centre = 0.2 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
            left = 0.1 * np.sin(2 * np.pi * 330 * t) + 0.02 * rng.standard_normal(n)
            right = 0.1 * np.sin(2 * np.pi * 392 * t) + 0.02 * rng.standard_normal(n)
            w.write(np.stack([centre + left, centre + right]).astype(np.float32))


def run(path: Path, out: Path, model: str) -> tuple[float, float]:
    """Wall time and this child's own peak RSS (MiB), read with wait4."""
    import os

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "unbake", "separate", str(path), "-o", str(out), "-n", model,
                             "--overwrite"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"unbake separate failed on {path} (exit {proc.returncode})")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    ap.add_argument("-n", "--model", default="center")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="unbake-bench-") as tmp:
        for minutes in args.minutes:
            src = Path(tmp) / f"input_{minutes:g}min.wav"
            make_input(src, minutes)
            wall, peak = run(src, Path(tmp) / "out", args.model)
            rows.append((minutes, wall, peak))
            print(f"{minutes:>5g} min  wall {wall:7.1f} s  ({minutes * 60 / wall:6.1f}x real time)  peak RSS {peak:7.1f} MiB",
                  flush=True)
            src.unlink()
    base = rows[0][2]
    for minutes, _, peak in rows[1:]:
        print(f"{minutes:g} min vs {rows[0][0]:g} min peak RSS: {100 * (peak - base) / base:+.1f} %")


if __name__ == "__main__":
    main()
