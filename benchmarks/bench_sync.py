"""Accuracy of `unbake sync` and `unbake warp` on synthesised performances with random tempo curves.

Sync: for each case, B is the tune of tests/analysis/test_sync.py on piano at a steady 100 BPM; A is the
same notes in another timbre, transposed by a random -5..+5 semitones, at a random overall
tempo (80..120 BPM) with a random rubato curve (depth 5..20 %), a fermata on a random beat and
a rushed phrase at a random place. Printed: how often the transposition is found, and the
onset errors (ms) of A's notes against B's, (1) through the time map (true note times), (2) in
the warped audio (the same onset detector on the warped A and on B) for every fourth case
(``--audio-every``: the warp is the slow part).

Warp: a free-tempo melody over a shaker (random drift depth 5..15 %, random tempo 80..110 BPM)
put on a 120 BPM grid; printed: the distance (ms) from each grid line to the nearest onset in
the output, less the detector's lateness measured on the input.

    PYTHONPATH=src nice -n 10 python benchmarks/bench_sync.py [--cases 20] [--part sync|grid]

Speed figures depend on the CPU; it is printed with its vector extensions.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "analysis"))

from test_sync import SR, nearest_ms, onsets_s, render, rubato, score, steady  # noqa: E402

from unbake.analysis.timemap import time_map  # noqa: E402
from unbake.analysis.warp import warp, warp_to_bpm  # noqa: E402


def cpu_line() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
        name = next(line for line in open("/proc/cpuinfo") if line.startswith("model name")).split(":")[1].strip()
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"
    ext = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if f in flags]
    return f"{name} ({', '.join(ext) or 'no AVX2'})"


def sync_case(rng: np.random.Generator, notes, with_audio: bool) -> dict:
    beats = np.array(sorted({n[0] for n in notes}))
    fb = steady(100, 0.5)
    bpm_a = rng.uniform(80, 120)
    fermata = int(rng.integers(4, 44))
    rush_start = int(rng.integers(0, 36))
    fa = rubato(bpm_a, lead_s=rng.uniform(0.2, 1.5), depth=rng.uniform(0.05, 0.2), fermata_beat=fermata,
                rush=(rush_start, rush_start + 8), seed=int(rng.integers(1 << 30)))
    shift = int(rng.integers(-5, 6))
    b = render(notes, fb, timbre="piano")
    a = render(notes, fa, timbre="reed", transpose=shift, seed=int(rng.integers(1 << 30)))
    t0 = time.perf_counter()
    tm = time_map(a, b, SR)
    t_map = time.perf_counter() - t0
    map_err = np.abs(tm.to_b(np.array([fa(x) for x in beats])) - np.array([fb(x) for x in beats])) * 1000
    t_warp, audio_err = 0.0, None
    if with_audio:
        t0 = time.perf_counter()
        y = warp(a[None], SR, tm.anchors, semitones=tm.semitones, length_s=len(b) / SR)[0]
        t_warp = time.perf_counter() - t0
        audio_err = nearest_ms(onsets_s(y), onsets_s(b))
    return {"shift_ok": tm.semitones == ((-shift + 6) % 12) - 6, "map": map_err, "audio": audio_err,
            "t_map": t_map, "t_warp": t_warp, "seconds": len(a) / SR, "confidence": tm.confidence}


def grid_case(rng: np.random.Generator, notes) -> np.ndarray:
    fa = rubato(rng.uniform(80, 110), depth=rng.uniform(0.05, 0.15), fermata_beat=1000, rush=(1000, 1000),
                seed=int(rng.integers(1 << 30)))
    y = render(notes, fa, timbre="piano", seed=int(rng.integers(1 << 30))).astype(np.float64)
    th = np.arange(int(0.03 * SR)) / SR
    for k in range(52):
        i = int(round(fa(k) * SR))
        hit = (0.25 if k % 4 == 0 else 0.12) * rng.standard_normal(th.size) * np.exp(-th * 120)
        y[i:i + th.size] += hit[: len(y) - i]
    y = (0.5 * y / np.abs(y).max()).astype(np.float32)
    inp = onsets_s(y)
    late_s = np.median([inp[np.argmin(np.abs(inp - fa(k)))] - fa(k) for k in range(48)])
    out, _ = warp_to_bpm(y[None], SR, 120.0)
    found = onsets_s(out[0]) - late_s
    grid = np.arange(np.ceil(found[0] / 0.5) * 0.5, found[-1] - 0.5, 0.5)
    return nearest_ms(found, grid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--part", choices=("both", "sync", "grid"), default="both")
    ap.add_argument("--audio-every", type=int, default=4,
                    help="warp the audio of every n-th sync case (the warp is the slow part)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    notes = score()
    print(f"CPU: {cpu_line()}")
    if args.part != "grid":
        bench_sync(rng, notes, args.cases, args.audio_every)
    if args.part != "sync":
        bench_grid(np.random.default_rng(args.seed + 1), notes, args.cases)


def bench_sync(rng: np.random.Generator, notes, cases: int, audio_every: int) -> None:
    rows = []
    for i in range(cases):
        r = sync_case(rng, notes, with_audio=i % audio_every == 0)
        rows.append(r)
        audio = ("" if r["audio"] is None else
                 f", audio median {np.median(r['audio']):5.1f} ms p95 {np.percentile(r['audio'], 95):6.1f} ms, "
                 f"warp {r['t_warp']:.1f} s")
        print(f"sync case {i:2d}: shift {'ok' if r['shift_ok'] else 'WRONG'}, confidence {r['confidence']:.2f}, "
              f"map median {np.median(r['map']):5.1f} ms p95 {np.percentile(r['map'], 95):6.1f} ms "
              f"({r['seconds']:.1f} s of audio, map {r['t_map']:.1f} s){audio}", flush=True)
    map_all = np.concatenate([r["map"] for r in rows])
    warped = [r for r in rows if r["audio"] is not None]
    audio_all = np.concatenate([r["audio"] for r in warped])
    print(f"\nsync over {len(rows)} cases: transposition found in {sum(r['shift_ok'] for r in rows)}/{len(rows)}")
    print(f"  onset error through the map : median {np.median(map_all):.1f} ms, p95 {np.percentile(map_all, 95):.1f} ms"
          f" (per-case medians: worst {max(np.median(r['map']) for r in rows):.1f} ms)")
    print(f"  onset error in warped audio : median {np.median(audio_all):.1f} ms, "
          f"p95 {np.percentile(audio_all, 95):.1f} ms ({len(warped)} cases warped)")
    secs = sum(r["seconds"] for r in rows)
    print(f"  time per second of audio: map {sum(r['t_map'] for r in rows) / secs:.2f} s, warp "
          f"{sum(r['t_warp'] for r in warped) / sum(r['seconds'] for r in warped):.2f} s (22.05 kHz mono)")


def bench_grid(rng: np.random.Generator, notes, cases: int) -> None:
    grid = []
    for i in range(cases):
        e = grid_case(rng, notes)
        grid.append(e)
        print(f"grid case {i:2d}: median {np.median(e):5.1f} ms, p95 {np.percentile(e, 95):6.1f} ms", flush=True)
    g = np.concatenate(grid)
    print(f"\nwarp --to-bpm 120 over {len(grid)} cases: beat-to-grid error median {np.median(g):.1f} ms, "
          f"p95 {np.percentile(g, 95):.1f} ms")


if __name__ == "__main__":
    main()
