"""Seconds of CPU wall time per minute of audio for each separation architecture at its
full-size configuration (random weights, no download), through the engine.

    PYTHONPATH=src python benchmarks/bench_architectures.py [--seconds 20] [--threads N] [names...]

Prints one table row per model. Run by hand; never part of the test suite.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np
import torch

DEFAULT_MODELS = (
    "htdemucs", "scnet", "scnet_xl_ihf", "bs_roformer_vocals", "bs_roformer_4stem",
    "mel_roformer_vocals_kj",
)


def bench(name: str, seconds: float, overlap: float) -> dict:
    from unbake.engine import apply_model, segment_for
    from unbake.hub.catalogue import load_catalogue
    from unbake.hub.loading import load_model

    entry = load_catalogue().get(name)
    model = load_model(name, pretrained=False).eval()
    sr = model.samplerate
    rng = np.random.default_rng(0)
    mix = (0.1 * rng.standard_normal((model.audio_channels, int(seconds * sr)))).astype(np.float32)
    params = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    with torch.inference_mode():
        out = apply_model(model, mix, overlap=overlap, device="cpu")
    elapsed = time.perf_counter() - start
    assert out.shape == (len(model.sources), mix.shape[0], mix.shape[1])
    row = dict(name=name, arch=entry.architecture, params_m=params / 1e6,
               segment_s=segment_for(model) / sr, elapsed_s=elapsed,
               s_per_min=elapsed * 60.0 / seconds)
    del model, out
    gc.collect()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=list(DEFAULT_MODELS))
    ap.add_argument("--seconds", type=float, default=20.0, help="input length (s)")
    ap.add_argument("--overlap", type=float, default=0.25, help="engine chunk overlap")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.seconds:g} s input, "
          f"overlap {args.overlap}")
    print(f"{'model':<24} {'architecture':<18} {'params (M)':>10} {'segment (s)':>11} "
          f"{'wall (s)':>9} {'s / min audio':>13}")
    for name in args.names:
        try:
            r = bench(name, args.seconds, args.overlap)
        except Exception as exc:  # one missing architecture must not hide the others
            print(f"{name:<24} skipped: {exc.__class__.__name__}: {exc}")
            continue
        print(f"{r['name']:<24} {r['arch']:<18} {r['params_m']:>10.1f} {r['segment_s']:>11.2f} "
              f"{r['elapsed_s']:>9.1f} {r['s_per_min']:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
