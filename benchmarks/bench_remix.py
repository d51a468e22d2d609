"""Time and peak memory (RSS) of `unbake remix` on a folder of four stems, and the speed of the
integrated-loudness measurement against pyloudnorm's.

Usage: python benchmarks/bench_remix.py [--minutes 1 10] [--reference]

The stems (four stereo 32-bit float WAVs of noise and tones) are written block by block into a
temporary folder; each remix runs in its own process (`/usr/bin/time`-free: the child reports its
own ru_maxrss), with a gain, a pan, a loudness target and the true-peak limiter; ``--reference``
adds reference mastering against a generated one-minute record. The remix holds the whole song in
memory: the figure grows with the length, and this script prints by how much.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 44100
STEMS = ("drums", "bass", "other", "vocals")


def make_stems(folder: Path, minutes: float) -> None:
    from unbake.audio import AudioWriter

    folder.mkdir(parents=True, exist_ok=True)
    total = int(minutes * 60 * SR)
    rng = np.random.default_rng(0)
    for i, name in enumerate(STEMS):
        with AudioWriter(folder / f"{name}.wav", SR, 2, bit_depth="32f", overwrite=True) as w:
            for start in range(0, total, 10 * SR):
                n = min(10 * SR, total - start)
                t = (start + np.arange(n)) / SR
                tone = 0.1 * np.sin(2 * np.pi * 110 * (i + 1) * t)
                w.write(np.stack([tone + 0.02 * rng.standard_normal(n)] * 2).astype(np.float32))


def child(folder: str, out: str, reference: str | None) -> None:
    import resource

    from typer.testing import CliRunner

    from unbake.cli import app

    args = ["remix", folder, "--gain", "vocals=+3", "--pan", "bass=0.3", "--loudness", "-14", "-o", out, "--overwrite"]
    if reference:
        args += ["--reference", reference]
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, args)
    if res.exit_code != 0:
        raise SystemExit(res.output)
    print(f"{time.perf_counter() - t0:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


def loudness_speed(minutes: float) -> None:
    import pyloudnorm

    from unbake.remix import integrated_lufs

    x = (0.1 * np.random.default_rng(1).standard_normal((2, int(minutes * 60 * SR)))).astype(np.float32)
    t0 = time.perf_counter()
    ours = integrated_lufs(x, SR)
    t1 = time.perf_counter()
    theirs = pyloudnorm.Meter(SR).integrated_loudness(x.T.astype(np.float64))
    t2 = time.perf_counter()
    print(f"integrated loudness of {minutes:g} min stereo: unbake {t1 - t0:.2f} s, pyloudnorm {t2 - t1:.2f} s "
          f"(ratio {(t2 - t1) / (t1 - t0):.1f}x), difference {abs(ours - theirs):.1e} LU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--reference", action="store_true", help="also match a reference record")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2] or None)
        return
    # imported here, not at the top: the measured child process must not load what it imports
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_default_model import cpu_description

    print(f"CPU: {cpu_description()}")
    with tempfile.TemporaryDirectory() as tmp:
        ref = ""
        if args.reference:
            from unbake.audio import write_audio

            noise = 0.1 * np.random.default_rng(2).standard_normal((2, 60 * SR))
            ref = str(write_audio(Path(tmp) / "record.wav", noise.astype(np.float32), SR, bit_depth="32f"))
        for minutes in args.minutes:
            folder = Path(tmp) / f"stems{minutes:g}"
            make_stems(folder, minutes)
            res = subprocess.run([sys.executable, __file__, "--child", str(folder), str(Path(tmp) / "out.wav"), ref],
                                 capture_output=True, text=True, check=True)
            seconds, rss = res.stdout.split()[-2:]
            stems_mib = 4 * 2 * minutes * 60 * SR * 4 / 2**20
            print(f"remix of {minutes:g} min, 4 stereo stems ({stems_mib:.0f} MiB as float32): {seconds} s, "
                  f"peak RSS {rss} MiB ({float(rss) / stems_mib:.1f}x the stems)")
        loudness_speed(max(args.minutes))


if __name__ == "__main__":
    main()
