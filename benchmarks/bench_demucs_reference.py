"""HT Demucs: unbake against the reference ``demucs`` package on the same 60 s input, with the
same full-size random weights, segment (7.8 s), overlap (0.25) and no random shifts.

Prints wall time and peak RSS of each side (each runs in its own subprocess), and the largest
difference between their outputs, for one direct model call on a single segment and for the
whole track.

Needs the reference package, for this benchmark only (it is not a dependency of unbake):
    pip install --no-deps demucs einops julius openunmix
(``demucs.apply`` and ``demucs.htdemucs`` import without torchaudio, so nothing is stubbed.)

Run: PYTHONPATH=src python benchmarks/bench_demucs_reference.py [--seconds 60] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

SAMPLERATE = 44100
REPO = Path(__file__).resolve().parents[1]


def _config() -> dict:
    sys.path.insert(0, str(REPO / "src"))
    from unbake.hub.catalogue import load_catalogue

    return dict(load_catalogue().models["htdemucs"].config)


def _prepare(folder: Path, seconds: float) -> None:
    """Random full-size weights and a standardised synthetic stereo track."""
    import torch

    from unbake.hub.architectures import model_from_config

    torch.manual_seed(0)
    save_inputs(model_from_config("htdemucs", _config()), folder, seconds)


def save_inputs(model, folder: Path, seconds: float) -> None:
    """``model``'s weights (LayerScale raised so every residual branch counts; float16-rounded
    so both sides load the same numbers) and a standardised synthetic stereo track, as
    ``folder/state.pt`` and ``folder/mix.pt``. Also used by bench_speed.py."""
    import numpy as np
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale"):  # LayerScale: make every residual branch count
                p.uniform_(0.2, 0.5)
    torch.save({k: v.half().float() for k, v in model.state_dict().items()}, folder / "state.pt")

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLERATE)) / SAMPLERATE
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) * a
                for f, a in ((55, 0.3), (220, 0.2), (440, 0.15), (1760, 0.05)))
    mix = np.stack([tones + 0.1 * rng.standard_normal(t.size),
                    0.8 * tones + 0.1 * rng.standard_normal(t.size)]).astype(np.float32)
    mono = mix.mean(0)
    mix = (mix - mono.mean()) / (mono.std(ddof=1) + 1e-8)  # what the Demucs front end does
    torch.save(torch.from_numpy(mix.astype(np.float32)), folder / "mix.pt")


def _child(side: str, folder: Path, threads: int) -> None:
    """One side: load weights and input, separate, save outputs, report time and memory."""
    import torch

    torch.set_num_threads(threads)
    state = torch.load(folder / "state.pt", weights_only=True)
    mix = torch.load(folder / "mix.pt", weights_only=True)
    kwargs = _config()
    segment = int(Fraction(kwargs["segment"]) * SAMPLERATE)
    if side == "reference":
        from demucs.apply import apply_model
        from demucs.htdemucs import HTDemucs

        kwargs["segment"] = Fraction(kwargs["segment"])
        model = HTDemucs(**kwargs)
        model.load_state_dict(state)
        model.eval()

        def separate(x):
            return apply_model(model, x[None], shifts=0, split=True, overlap=0.25,
                               progress=False, num_workers=0)[0]
    else:
        from unbake.engine import apply_model
        from unbake.hub.architectures import model_from_config

        model = model_from_config("htdemucs", kwargs)
        model.load_state_dict(state)
        model.eval()

        def separate(x):
            return apply_model(model, x, segment_samples=segment, overlap=0.25, shifts=0)

    with torch.inference_mode():
        t0 = time.perf_counter()
        one = model(mix[None, :, :segment])[0]
        direct_s = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        out = separate(mix)
        track_s, track_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    torch.save({"one": one, "track": out}, folder / f"{side}.out.pt")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"side": side, "direct_s": direct_s, "track_s": track_s,
                      "track_cpu_s": track_cpu_s, "peak_rss_mib": peak_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--side", choices=["reference", "unbake"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        _child(args.side, args.folder, args.threads)
        return

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _prepare(folder, args.seconds)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(REPO / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        results = {}
        for side in ("reference", "unbake"):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--side", side, "--folder", str(folder),
                                   "--threads", str(args.threads)],
                                  env=env, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{side} failed:\n{proc.stderr}")
            results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
            results[side]["process_s"] = time.perf_counter() - t0
        ref = torch.load(folder / "reference.out.pt", weights_only=True)
        ours = torch.load(folder / "unbake.out.pt", weights_only=True)

    print(f"HT Demucs, full size, random weights; {args.seconds:g} s stereo at {SAMPLERATE} Hz, "
          f"segment 7.8 s, overlap 0.25, no shifts, {args.threads} thread(s), CPU")
    # CPU time is the steadier figure when other work shares the machine
    print(f"{'side':<10} {'one segment s':>14} {'track wall s':>13} {'track CPU s':>12} "
          f"{'x realtime':>11} {'peak RSS MiB':>13}")
    for side, r in results.items():
        print(f"{side:<10} {r['direct_s']:>14.2f} {r['track_s']:>13.2f} {r['track_cpu_s']:>12.2f} "
              f"{args.seconds / r['track_s']:>11.2f} {r['peak_rss_mib']:>13.0f}")
    for what in ("one", "track"):
        diff = (ref[what] - ours[what]).abs().max().item()
        scale = ref[what].abs().max().item()
        label = "one segment (model only)" if what == "one" else "whole track (with chunking)"
        print(f"max abs diff, {label}: {diff:.3g} ({diff / scale:.3g} of max |reference| {scale:.3g})")


if __name__ == "__main__":
    main()
