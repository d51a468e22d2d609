"""Speed and validation quality of unbake's shipped four-stem model.

    PYTHONPATH=src python benchmarks/bench_default_model.py [--model unbake_small] [--seconds 60]
        [--threads N] [--data ../shared/data/musdb18-7s/train] [--valid-every 9] [--valid-count 10]
        [--memory-minutes 1 5] [--level-db -12 6] [--precisions bfloat16 int8] [--cv runs/cv/fold*_synth [--cv-against runs/cv/fold*_real] [--cv-only]]

Speed: times ``unbake.separate`` on a ``--seconds`` long stereo input (the validation mixtures
played one after the other, repeated) and prints how many times faster than real time it ran,
at the model's default precision (its catalogue entry's). Quality: per-stem uSDR on the held-out
validation tracks (the fixed rule of ``unbake.data.datasets.split_tracks``) at float32, the mean
again at ``--precisions`` (default: the model's own when that is another), the mixture-as-estimate
floor and the ``center`` baseline's vocals. Peak memory: peak RSS of ``unbake separate`` (a child process per length, see
``bench_memory.py``) on generated inputs of ``--memory-minutes``; flat in the length is the target.
Cross-validation: ``--cv`` run folders (``unbake train`` outputs, one per fold) are summarised
from their ``valid_log.csv``: each run's validation at its schedule's last step (``optim.steps``,
never the best step; a run that has not reached it is refused), per stem mean ± standard deviation
(ddof=1) across the folds. ``--cv-against`` the other arm's run folders: the paired per-fold
difference (``--cv`` minus ``--cv-against``, paired by ``data.fold``), its mean, standard deviation
and standard error (std/sqrt(folds)). ``--cv-only``: nothing else is measured.
Run by hand; never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "musdb18-7s" / "train")


def valid_tracks(data: Path, every: int, count: int, samplerate: int, sources: tuple[str, ...], cache_dir: Path,
                 side: str = "valid"):
    from unbake.data.cache import AudioCache
    from unbake.data.datasets import find_tracks, load_tracks, split_tracks

    train, valid = split_tracks(find_tracks(data), every, count)
    return load_tracks(valid if side == "valid" else train, sources, samplerate, AudioCache(cache_dir))


def speed(model, mix: np.ndarray, samplerate: int) -> float:
    import unbake

    unbake.separate(mix[:, : 2 * samplerate], model, sample_rate=samplerate)  # warm-up
    start = time.perf_counter()
    stems = unbake.separate(mix, model, sample_rate=samplerate)
    elapsed = time.perf_counter() - start
    assert set(model.sources) <= set(stems.names)
    return mix.shape[-1] / samplerate / elapsed


def precision_text(model) -> str:
    """The precision a separation that names none runs ``model`` at, resolved on this machine."""
    from unbake.engine import resolve_precision

    name = getattr(model, "default_precision", "float32")
    concrete = resolve_precision(name, torch.device("cpu"))
    return name if concrete == name else f"{name} = {concrete} here"


def cpu_description() -> str:
    """The CPU's name and the vector extensions torch can use: speed figures mean little without."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    vec = sorted(f for f in flags if f in ("avx2", "fma", "amx_tile", "amx_bf16") or f.startswith("avx512"))
    import os

    return f"{name}, {os.cpu_count()} cores, {' '.join(vec) or 'no AVX2/AVX-512'}"


def peak_memory(model: str, minutes: list[float]) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_memory import make_input, run

    with tempfile.TemporaryDirectory(prefix="unbake-bench-mem-") as tmp:
        for m in minutes:
            wav = Path(tmp) / f"in_{m:g}min.wav"
            make_input(wav, m)
            wall, rss_mib, helpers_mib, total_mib = run(wav, Path(tmp) / f"out_{m:g}", model, studio=False)
            wav.unlink()
            print(f"peak memory: {total_mib:.0f} MiB for a {m:g} min input (`unbake separate` and its tags "
                  f"worker together, sampled; their own peaks {rss_mib:.0f} and {helpers_mib:.0f} MiB; "
                  f"{m * 60 / wall:.1f}x real time through `unbake separate`, decoding and encoding included)")


def last_validations(run_dirs: list[str]) -> dict[int, dict[str, float]]:
    """Per fold (``data.fold`` of the run's state), the validation row at the schedule's last step;
    runs of one fold with different seeds are averaged (every fold must have as many)."""
    import csv

    from unbake.train.loop import STATE_NAME, read_state

    runs: dict[int, dict[int, dict[str, float]]] = {}
    for d in run_dirs:
        cfg = read_state(Path(d) / STATE_NAME)["config"]
        fold, steps, seed = cfg["data"]["fold"], cfg["optim"]["steps"], cfg["seed"]
        with open(Path(d) / "valid_log.csv", newline="") as f:
            last = {k: float(v) for k, v in list(csv.DictReader(f))[-1].items()}
        if int(last["step"]) != steps:
            raise SystemExit(f"{d}: last validation at step {int(last['step'])}, the schedule ends at {steps}: "
                             "not finished")
        if not cfg["data"]["folds"] or seed in runs.get(fold, {}):
            raise SystemExit(f"{d}: not one fold of a k-fold run, or fold {fold} with seed {seed} given twice")
        runs.setdefault(fold, {})[seed] = last
    counts = {len(r) for r in runs.values()}
    if len(counts) > 1:
        raise SystemExit(f"the folds have different numbers of runs: {({f: len(r) for f, r in runs.items()})}")
    return {fold: {k: float(np.mean([r[k] for r in by_seed.values()])) for k in next(iter(by_seed.values()))}
            for fold, by_seed in runs.items()}


def cross_validation(run_dirs: list[str], against: list[str]) -> None:
    rows = last_validations(run_dirs)
    stems = [k for k in next(iter(rows.values())) if k not in ("step", "mean") and not k.startswith("floor")]
    cols = stems + ["mean"]

    def table(title: str, per_fold: dict[int, dict[str, float]]) -> None:
        print(title)
        print(f"  {'fold':8s}" + "".join(f"{c:>9s}" for c in cols))
        for fold in sorted(per_fold):
            print(f"  {fold:<8d}" + "".join(f"{per_fold[fold][c]:9.2f}" for c in cols))
        v = np.array([[per_fold[f][c] for c in cols] for f in sorted(per_fold)])
        n = len(v)
        print(f"  {'mean':8s}" + "".join(f"{x:9.2f}" for x in v.mean(0)))
        if n > 1:
            print(f"  {'std':8s}" + "".join(f"{x:9.2f}" for x in v.std(0, ddof=1)))
            print(f"  {'std/√n':8s}" + "".join(f"{x:9.2f}" for x in v.std(0, ddof=1) / np.sqrt(n)))
        else:
            print("  (one fold: no spread)")

    steps = sorted({int(r["step"]) for r in rows.values()})
    table(f"cross-validation, {len(rows)} folds ({', '.join(run_dirs)}; seeds of a fold averaged), uSDR dB at step "
          f"{'/'.join(map(str, steps))} (each run's last):", rows)
    if against:
        base = last_validations(against)
        if sorted(base) != sorted(rows):
            raise SystemExit(f"--cv has folds {sorted(rows)}, --cv-against {sorted(base)}: not paired")
        diff = {f: {c: rows[f][c] - base[f][c] for c in cols} for f in rows}
        table(f"paired difference per fold, ({', '.join(run_dirs)}) - ({', '.join(against)}), dB:", diff)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="unbake_small", help="catalogue name or checkpoint path")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--valid-every", type=int, default=9)
    ap.add_argument("--valid-count", type=int, default=10)
    ap.add_argument("--memory-minutes", type=float, nargs="*", default=[],
                    help="input lengths (minutes) for the peak-memory measurement; none: skipped")
    ap.add_argument("--cv", nargs="*", default=[], help="run folders of a cross-validation, one per fold")
    ap.add_argument("--cv-against", nargs="*", default=[],
                    help="the other arm's run folders: paired per-fold differences (--cv minus these)")
    ap.add_argument("--cv-only", action="store_true", help="only the cross-validation summary")
    ap.add_argument("--training-side", action="store_true",
                    help="measure on the training side of the split instead: tracks the shipped model "
                         "was trained on, for checking the direction of an inference change only")
    ap.add_argument("--padded-windows", action="store_true",
                    help="run the model in windows padded with silence past the track's ends, as "
                         "models without `variable_length` are (for comparing the two)")
    ap.add_argument("--level-db", type=float, nargs="*", default=[],
                    help="also the mean uSDR with the validation tracks played this many dB louder "
                         "(negative: quieter); a model that takes the level as given drifts with it")
    ap.add_argument("--precisions", nargs="*", default=None,
                    help="also the mean uSDR with the model run at these precisions (default: the model's "
                         "own when it is not float32)")
    ap.add_argument("--json", help="also write the validation figures, unrounded, to this JSON file "
                                   "(for comparing two models closer than the printed 0.01 dB)")
    args = ap.parse_args()
    if args.cv:
        cross_validation(args.cv, args.cv_against)
    if args.cv_only:
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    from unbake import load_model
    from unbake.engine import apply_model
    from unbake.metrics.sdr import usdr
    from unbake.train.loop import evaluate

    model = load_model(args.model).eval()
    if args.padded_windows:
        model.variable_length = False
    sr = model.samplerate
    params = sum(p.numel() for p in model.parameters())
    print(f"CPU: {cpu_description()}")
    print(f"model {args.model}: {type(model).__name__}, {params / 1e6:.2f} M parameters, "
          f"stems {', '.join(model.sources)}; torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory(prefix="unbake-bench-") as tmp:
        data = Path(args.data)
        tracks = valid_tracks(data, args.valid_every, args.valid_count, sr, tuple(model.sources), Path(tmp),
                              "train" if args.training_side else "valid") \
            if data.is_dir() else []
        n = int(args.seconds * sr)
        if tracks:
            music = np.concatenate([t.mix() for t in tracks], axis=1)
            mix = np.tile(music, (1, -(-n // music.shape[1])))[:, :n].astype(np.float32)
        else:
            mix = (0.1 * np.random.default_rng(0).standard_normal((2, n))).astype(np.float32)
        x_rt = speed(model, mix, sr)
        print(f"speed: {x_rt:.1f}x real time ({args.seconds:.0f} s stereo input through unbake.separate, "
              f"at {precision_text(model)})")
        if not tracks:
            print(f"no validation data at {data}; quality not measured")
            return
        res = evaluate(model, tracks, tuple(model.sources))
        default = getattr(model, "default_precision", "float32")
        precisions = args.precisions if args.precisions is not None else [p for p in [default] if p != "float32"]
        at_precision = {p: float(np.mean([
            np.mean([usdr(np.asarray(ref), est) for ref, est in zip(t.stems, apply_model(model, t.mix(), precision=p))])
            for t in tracks])) for p in precisions}
        center = load_model("center")
        vi = list(center.sources).index("vocals")
        center_vocals = float(np.mean([
            usdr(np.asarray(t.stems[list(model.sources).index("vocals")]), apply_model(center, t.mix())[vi])
            for t in tracks]))
        levels = {}
        for db in args.level_db:
            g = np.float32(10 ** (db / 20))
            levels[db] = float(np.mean([
                np.mean([usdr(np.asarray(ref) * g, est) for ref, est in zip(t.stems, apply_model(model, t.mix() * g))])
                for t in tracks]))
    print(f"{'training side (heard in training)' if args.training_side else 'validation'}: {len(tracks)} tracks ({', '.join(t.name for t in tracks)})")
    print(f"{'stem':8s} {'uSDR dB':>8s} {'floor dB':>9s} {'gain dB':>8s}")
    for s in model.sources:
        print(f"{s:8s} {res['stems'][s]:8.2f} {res['floor'][s]:9.2f} {res['stems'][s] - res['floor'][s]:8.2f}")
    print(f"{'mean':8s} {res['mean']:8.2f} {res['floor_mean']:9.2f} {res['mean'] - res['floor_mean']:8.2f}")
    for p, value in at_precision.items():
        print(f"mean uSDR at precision {p} (float32 above; the model's default: {precision_text(model)}): {value:.2f} dB")
    print(f"center baseline vocals uSDR: {center_vocals:.2f} dB")
    for db, value in levels.items():
        print(f"tracks played {db:+g} dB: mean uSDR {value:.2f} dB")
    if args.json:
        figures = {"model": args.model, "cpu": cpu_description(), "tracks": [t.name for t in tracks],
                   "stems": res["stems"], "mean": res["mean"], "floor": res["floor"],
                   "center_vocals": center_vocals, "speed_x_realtime": x_rt, "precision": precision_text(model),
                   "mean_at_precision": at_precision,
                   "level_db": {f"{db:g}": v for db, v in levels.items()}}
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    if args.memory_minutes:
        peak_memory(args.model, args.memory_minutes)


if __name__ == "__main__":
    main()
