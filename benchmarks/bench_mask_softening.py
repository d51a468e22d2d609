"""How much softer masks alone, or a channel-swapped second pass, change a masknet's validation uSDR.

    PYTHONPATH=src python benchmarks/bench_mask_softening.py MODEL [--temperatures 1 1.25 1.5 2] [--threads 1]

MODEL: a masknet or masknet-ensemble checkpoint (or catalogue name). Temperature T divides every
member's mask logits before the softmax (T > 1: softer masks; T = 1 is the model itself). "swap"
also separates the input with its channels swapped, swaps the result back and averages the two.
Scored on the held-out validation tracks of ``bench_default_model.py`` (same rule). A diagnostic of
what an ensemble's gain is made of (weights/MODEL_CARD.md, "Ensemble"); it chooses nothing.
Run by hand; never part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_default_model import DEFAULT_DATA, cpu_description, valid_tracks  # noqa: E402


def softened(model, temperature: float):
    """``model`` with each member's masks computed from logits / ``temperature`` (same weights)."""
    members = getattr(model, "members", [model])
    for m in members:
        m.frame_probabilities = lambda xt, m=m: torch.softmax(m.frame_logits(xt) / temperature, dim=2)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--temperatures", nargs="+", type=float, default=[1.0, 1.25, 1.5, 2.0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--data", default=DEFAULT_DATA)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from unbake import load_model
    from unbake.engine import apply_model
    from unbake.metrics.sdr import usdr

    sources = tuple(load_model(args.model).sources)
    with tempfile.TemporaryDirectory() as tmp:
        tracks = valid_tracks(Path(args.data), 9, 10, 44100, sources, Path(tmp))
    print(f"CPU: {cpu_description()}\n{args.model}, {len(tracks)} held-out tracks")

    def report(label: str, estimate) -> None:
        scores = {s: [] for s in sources}
        for t in tracks:
            est, refs = estimate(t.mix()), np.asarray(t.stems, dtype=np.float32)
            for i, s in enumerate(sources):
                scores[s].append(usdr(refs[i], est[i]))
        stems = {s: float(np.mean(v)) for s, v in scores.items()}
        print(f"{label:12s} mean {np.mean(list(stems.values())):.4f}  "
              + "  ".join(f"{s} {v:.2f}" for s, v in stems.items()), flush=True)

    for temperature in args.temperatures:
        model = softened(load_model(args.model).eval(), temperature)
        report(f"T {temperature:g}", lambda mix: apply_model(model, mix, backend="torch"))
    model = load_model(args.model).eval()
    report("swap", lambda mix: (apply_model(model, mix, backend="torch")
                                + apply_model(model, mix[::-1].copy(), backend="torch")[:, ::-1]) / 2)


if __name__ == "__main__":
    main()
