"""Peak memory (RSS) of `unbake separate`, and of a whole studio job, for 1-, 10- and 60-minute
inputs generated on the fly.

Usage: python benchmarks/bench_memory.py [--minutes 1 10 60] [-n MODEL] [--studio] [--quiet-input]

Each run is a separate process so its peak RSS (VmHWM / ru_maxrss) is its own. The input is a
stereo 16-bit file written block by block (a chord, noise bursts and a panned melody), so
generating it needs no memory either. ``--studio`` runs what a studio job does instead of the
command line: separation into a job folder, the original as FLAC, the streamed analysis (peaks,
loudness, the check report) and a spectrogram picture. ``--quiet-input`` writes a quiet FLAC
(two soft tones, no noise: small on disk, like the 20-minute file of issue 17).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_input(path: Path, minutes: float, sr: int = 44100, *, quiet: bool = False) -> None:
    from unbake.audio import AudioWriter

    total = int(minutes * 60 * sr)
    block = sr * 10
    rng = np.random.default_rng(0)
    with AudioWriter(path, sr, 2, bit_depth="16", overwrite=True) as w:
        for start in range(0, total, block):
            n = min(block, total - start)
            t = (start + np.arange(n)) / sr
            if quiet:
                tone = 0.01 * np.sin(2 * np.pi * 220 * t)
                w.write(np.stack([tone, tone + 0.005 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32))
                continue
            centre = 0.2 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
            left = 0.1 * np.sin(2 * np.pi * 330 * t) + 0.02 * rng.standard_normal(n)
            right = 0.1 * np.sin(2 * np.pi * 392 * t) + 0.02 * rng.standard_normal(n)
            w.write(np.stack([centre + left, centre + right]).astype(np.float32))


def studio_job(path: Path, folder: Path, model: str) -> None:
    """What a studio worker does with an upload (run in the measured child process)."""
    import shutil

    from unbake.studio.jobs import Job
    from unbake.studio.pipeline import JobFiles, run_separation, spectrogram_png

    class Report:
        def __call__(self, fraction, stage=None):
            pass

        def check(self):
            pass

    files = JobFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, files.input)
    result = run_separation(Job(id="bench", name=path.name, model=model, status="running"), files, Report())
    spectrogram_png(files.original, files.cache / "spectrogram-original.png")
    print(f"stems {result['stems']}, {result['duration_s']:.0f} s", file=sys.stderr)


def run(path: Path, out: Path, model: str, studio: bool) -> tuple[float, float, float, float]:
    """Wall time, this child's own peak RSS (MiB, read with wait4), the sum of the peak RSS of
    the processes it starts (MiB; the tags' analysis worker of `unbake separate`), which wait4
    does not count, and the largest total RSS of the child and those processes at one moment
    (MiB, sampled every 0.1 s). The last two are read from /proc while it runs (Linux; NaN
    elsewhere)."""
    import threading

    if studio:
        cmd = [sys.executable, __file__, "--child-studio", str(path), str(out), model]
    else:
        cmd = [sys.executable, "-m", "unbake", "separate", str(path), "-o", str(out), "-n", model, "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks: dict[int, float] = {}
    done = threading.Event()
    watcher = threading.Thread(target=_watch_descendants, args=(proc.pid, peaks, done), daemon=True)
    watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    watcher.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{'the studio job' if studio else 'unbake separate'} failed on {path} "
                         f"(exit {proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    if not Path("/proc").is_dir():
        return wall, usage.ru_maxrss / 1024, float("nan"), float("nan")
    total = peaks.pop(TOTAL, float("nan"))
    return wall, usage.ru_maxrss / 1024, sum(peaks.values()), total


TOTAL = -1  # the key of the largest sampled total in the peaks of _watch_descendants


def _watch_descendants(root: int, peaks: dict[int, float], done) -> None:
    """Every 0.1 s, the peak RSS (VmHWM, MiB) of each process below ``root`` into ``peaks``, and
    under :data:`TOTAL` the largest sum of the current RSS (VmRSS) of ``root`` and those."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    while not done.wait(0.1):
        parents = {}
        for entry in proc.iterdir():
            if entry.name.isdigit():
                try:
                    # the parent pid follows the command name, which is in parentheses
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        below, grown = {root}, True
        while grown:
            more = {pid for pid, ppid in parents.items() if ppid in below} - below
            below |= more
            grown = bool(more)
        now = 0.0
        for pid in below:
            try:
                for line in (proc / str(pid) / "status").read_text().splitlines():
                    if line.startswith("VmHWM:") and pid != root:
                        peaks[pid] = max(peaks.get(pid, 0.0), int(line.split()[1]) / 1024)
                    elif line.startswith("VmRSS:"):
                        now += int(line.split()[1]) / 1024
            except OSError:
                continue
        peaks[TOTAL] = max(peaks.get(TOTAL, 0.0), now)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child-studio":
        studio_job(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    ap.add_argument("-n", "--model", default="center")
    ap.add_argument("--studio", action="store_true", help="measure a whole studio job instead of `unbake separate`")
    ap.add_argument("--quiet-input", action="store_true", help="a quiet FLAC input (small on disk)")
    args = ap.parse_args()
    rows = []
    what = "studio job" if args.studio else "unbake separate"
    with tempfile.TemporaryDirectory(prefix="unbake-bench-") as tmp:
        for minutes in args.minutes:
            src = Path(tmp) / f"input_{minutes:g}min.{'flac' if args.quiet_input else 'wav'}"
            make_input(src, minutes, quiet=args.quiet_input)
            wall, peak, helpers, total = run(src, Path(tmp) / f"out_{minutes:g}", args.model, args.studio)
            rows.append((minutes, wall, peak))
            print(f"{what}: {minutes:>5g} min  wall {wall:7.1f} s  ({minutes * 60 / wall:6.1f}x real time)  "
                  f"peak RSS {peak:7.1f} MiB (+ {helpers:.1f} MiB in the processes it starts; together at "
                  f"most {total:.1f} MiB at once)", flush=True)
            src.unlink()
    base = rows[0][2]
    for minutes, _, peak in rows[1:]:
        print(f"{minutes:g} min vs {rows[0][0]:g} min peak RSS: {100 * (peak - base) / base:+.1f} %")


if __name__ == "__main__":
    main()
