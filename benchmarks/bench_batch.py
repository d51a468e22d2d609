"""Throughput of `unbake batch` on a generated library, against `unbake separate` on the same files.

    PYTHONPATH=src python benchmarks/bench_batch.py [--files 40] [--seconds 30] [-n unbake_small]
        [--workers 1,2] [--no-ray] [--repeat 1] [--keep DIR]

Makes ``--files`` stereo tracks of ``--seconds`` (tones, a beat and noise; 44.1 kHz, 16-bit wav) in
nested folders, then times, each as a fresh command line (start-up included):
``unbake separate`` on all the files, ``unbake batch`` with the local engine for each ``--workers``
count, the rerun (nothing left to do) and ``--engine ray`` on this one machine (cluster start-up
included); with ``--repeat`` the commands take turns and the best time of each counts. Prints
files/hour and x real time, the manifest's cost per file (its SQL transactions,
and hashing one input), and the CPU's vector extensions. Run by hand; never part of the tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def cpu_line() -> str:
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", "unknown CPU", "x86_64"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"]
    have = [f for f in wanted if f in flags]
    return f"{model}; {os.cpu_count()} logical CPUs; vector extensions: {', '.join(have) or 'none found'}" + (
        "" if "amx_tile" in flags else " (no AMX)")


def make_library(root: Path, files: int, seconds: float, sr: int = 44100) -> list[Path]:
    from unbake.audio import write_audio

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    paths = []
    for i in range(files):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        voice = 0.25 * np.sin(2 * np.pi * 2 * f0 * t + 3 * np.sin(2 * np.pi * 5 * t))
        bass = 0.3 * np.sin(2 * np.pi * f0 / 2 * t)
        beat = 0.4 * (np.sin(2 * np.pi * 2 * t) > 0.95) * rng.standard_normal(t.size)
        pan = rng.uniform(0.2, 0.8)
        left = voice + bass * pan + beat + 0.02 * rng.standard_normal(t.size)
        right = voice + bass * (1 - pan) + beat + 0.02 * rng.standard_normal(t.size)
        p = root / f"artist{i % 4}" / f"album{i % 3}" / f"track{i:03d}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        write_audio(p, np.stack([left, right]).astype(np.float32) * 0.8, sr, bit_depth="16")
        paths.append(p)
    return paths


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return elapsed


def manifest_overhead(tmp: Path, sample: Path, n: int = 200) -> tuple[float, float]:
    """ms per file of the driver's manifest transactions (insert, running, done), and of hashing
    one input file."""
    from unbake._common import sha256_file
    from unbake.batch.manifest import Manifest

    out = tmp / "manifest-only"
    with Manifest(out, write=True) as m:
        start = time.perf_counter()
        for i in range(n):
            row = m.upsert(f"/x/{i}.wav", rel_dir="x", size=1, mtime_ns=1, sha256=f"{i:064x}", model="m",
                           options="{}", settings_key="k", state="pending")
            m.set_state(row, "running", attempt=True)
            m.by_id(row)
            m.mark_done(row, outputs={f"x/{i}/vocals.wav": {"stem": "vocals", "sha256": "0" * 64}},
                        model_label="m", how="separated", audio_s=30.0, elapsed_s=1.0)
        sql_ms = (time.perf_counter() - start) / n * 1000
    start = time.perf_counter()
    for _ in range(5):
        sha256_file(sample)
    return sql_ms, (time.perf_counter() - start) / 5 * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("-n", "--model", default="unbake_small")
    ap.add_argument("--workers", default="1,2", help="local worker counts to time, comma-separated")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    ap.add_argument("--repeat", type=int, default=1, help="time each command this many times; the best counts")
    ap.add_argument("--keep", help="build the library and outputs here, and keep them")
    args = ap.parse_args()

    print(cpu_line())
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-batch-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        lib = tmp / "lib"
        files = make_library(lib, args.files, args.seconds)
        audio_h = args.files * args.seconds / 3600
        print(f"library: {args.files} files x {args.seconds:g} s = {audio_h * 60:.1f} min of audio; model {args.model}")
        py = [sys.executable, "-m", "unbake"]

        def line(label: str, seconds: float) -> None:
            print(f"{label:<34} {seconds:8.1f} s  {args.files / seconds * 3600:8.0f} files/h  "
                  f"{audio_h * 3600 / seconds:6.1f}x real time", flush=True)

        runs: dict[str, list[str]] = {
            "unbake separate (one process)": py + ["separate", *map(str, files), "-n", args.model],
        }
        for w in [int(x) for x in args.workers.split(",")]:
            runs[f"unbake batch --workers {w}"] = py + ["batch", str(lib), "-n", args.model, "--workers", str(w)]
        if not args.no_ray:
            runs["unbake batch --engine ray"] = py + ["batch", str(lib), "-n", args.model, "--engine", "ray"]
        best: dict[str, float] = {}
        for r in range(args.repeat):  # interleaved, so that a busy spell of the machine hits all alike
            for i, (label, cmd) in enumerate(runs.items()):
                out = tmp / f"out-{r}-{i}"
                best[label] = min(best.get(label, float("inf")), timed(cmd + ["-o", str(out)]))
                if label.startswith("unbake batch --workers"):
                    rerun = timed(cmd + ["-o", str(out)])
                    best["rerun"] = min(best.get("rerun", float("inf")), rerun)
        for label in runs:
            line(label, best[label])
        print(f"{'rerun (nothing to do)':<34} {best['rerun']:8.1f} s")
        sql_ms, hash_ms = manifest_overhead(tmp, files[0])
        print(f"manifest per file: {sql_ms:.2f} ms of SQL (insert, running, done); hashing one "
              f"{files[0].stat().st_size / 1e6:.1f} MB input: {hash_ms:.1f} ms (skipped on a rerun of an unchanged file)")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
