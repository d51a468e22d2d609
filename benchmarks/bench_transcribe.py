"""Transcription accuracy on synthesised material with known notes: random bass lines and
melodies (additive synthesizer, the melodies with 25-cent vibrato, a -70 dB noise floor) and
random drum patterns (synthetic kick, snare and hi-hat hits), rendered with the test suite's
synthesizer (tests/test_transcribe.py). Prints mir_eval's note-onset F-measure at 50 ms and the
pitch accuracy of onset-matched notes per line, and the onset F-measure per drum, with means and
minima, and the transcription time per second of audio.

    PYTHONPATH=src python benchmarks/bench_transcribe.py [--n 20] [--bars 4] [--seed 1000] [--noise-db -70]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_transcribe import (HAT, KICK, SNARE, SR, drum_scores, line_scores, random_line,  # noqa: E402
                             random_pattern, render_drums, render_line)


def cpu_description() -> str:
    """The CPU model and its vector extensions (speed figures depend on them)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    vector = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags]
    return f"{model} ({', '.join(vector) or 'no AVX2'})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="lines of each kind and drum patterns")
    ap.add_argument("--bars", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1000, help="first seed (the tests use seeds below 100)")
    ap.add_argument("--noise-db", type=float, default=-70.0, help="white-noise floor added to every signal, dBFS")
    args = ap.parse_args()
    from unbake.transcribe import transcribe_drums, transcribe_line

    print(f"CPU: {cpu_description()}; {args.n} of each kind, {args.bars} bars at 120 BPM, "
          f"noise floor {args.noise_db:g} dBFS")
    for kind, vibrato in (("bass", 0.0), ("melody", 25.0)):
        fs, accs, secs, audio_s = [], [], 0.0, 0.0
        for i in range(args.n):
            rng = np.random.default_rng(args.seed + i)
            ref = random_line(rng, kind, bars=args.bars)
            y = render_line(ref, vibrato_cents=vibrato, noise_db=args.noise_db, seed=args.seed + i)
            t = time.perf_counter()
            est = transcribe_line(y, SR, kind)
            secs += time.perf_counter() - t
            audio_s += y.shape[1] / SR
            f, acc = line_scores(ref, est)
            fs.append(f)
            accs.append(acc)
        print(f"{kind:7s} onset F@50ms mean {np.mean(fs):.3f} min {np.min(fs):.3f} | "
              f"pitch accuracy mean {np.mean(accs):.3f} min {np.min(accs):.3f} | "
              f"{secs / audio_s:.2f} s per s of audio")
    per = {KICK: [], SNARE: [], HAT: []}
    secs, audio_s = 0.0, 0.0
    for i in range(args.n):
        hits = random_pattern(np.random.default_rng(args.seed + 500 + i), bars=args.bars)
        y = render_drums(hits, seed=args.seed + 500 + i)
        y = y + np.float32(10 ** (args.noise_db / 20)) * np.random.default_rng(i).standard_normal(y.shape, np.float32)
        t = time.perf_counter()
        est = transcribe_drums(y, SR)
        secs += time.perf_counter() - t
        audio_s += y.shape[1] / SR
        for drum, f in drum_scores(hits, est).items():
            per[drum].append(f)
    names = {KICK: "kick", SNARE: "snare", HAT: "hi-hat"}
    print("drums   " + " | ".join(f"{names[d]} F@50ms mean {np.mean(v):.3f} min {np.min(v):.3f}" for d, v in per.items())
          + f" | {secs / audio_s:.3f} s per s of audio")


if __name__ == "__main__":
    main()
