"""Seconds per training step of one member of the shipped ``unbake_small`` (its architecture and
weights), with the forward pass in float32 and under bfloat16 autocast (``run.precision``).

    PYTHONPATH=src python benchmarks/bench_train_step.py [--batch 8] [--seconds 6] [--steps 4] [--threads 2]

Random batches (the arithmetic does not depend on the music), the members' uSDR loss and
AdamW; the two precisions alternate, and the first step of each is a warm-up, not counted.
Prints the median seconds per step of each and their ratio. Run by hand; never part of the tests.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench_default_model import cpu_description


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=6.0, help="excerpt length")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per precision and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from unbake import load_model
    from unbake.engine.precision import autocast
    from unbake.models.masknet import MaskNet
    from unbake.train.losses import LossConfig, separation_loss

    member = load_model("unbake_small").members[0]
    model = MaskNet(member.config)
    model.load_state_dict(member.state_dict())
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-5)
    loss_cfg = LossConfig(l1_wave=0.0, sdr=1.0)  # the uSDR loss of the members' recipes
    gen = torch.Generator().manual_seed(0)
    stems = 0.05 * torch.randn(args.batch, len(model.sources), 2, int(args.seconds * model.samplerate), generator=gen)
    mix = stems.sum(dim=1)
    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(args.rounds):
        for precision in times:
            for i in range(args.steps + 1):
                start = time.perf_counter()
                with autocast(precision, torch.device("cpu")):
                    est = model(mix)
                loss, _ = separation_loss(est.float(), stems, loss_cfg)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if i:  # the first step of each turn warms up
                    times[precision].append(time.perf_counter() - start)
    print(f"CPU: {cpu_description()}; torch threads {torch.get_num_threads()}")
    print(f"one unbake_small member ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters), "
          f"batch {args.batch} x {args.seconds:g} s")
    med = {p: float(np.median(v)) for p, v in times.items()}
    for p, v in times.items():
        print(f"{p:9s} median {med[p]:.2f} s/step (min {min(v):.2f}, max {max(v):.2f}, {len(v)} steps)")
    print(f"bfloat16 / float32: {med['bfloat16'] / med['float32']:.3f}")


if __name__ == "__main__":
    main()
