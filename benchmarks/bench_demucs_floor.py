"""How fast can one HT Demucs segment possibly run on this CPU in float32?

Counts the arithmetic of one full-size ``htdemucs`` call on a 7.8 s segment (convolutions and
linear layers with torch's FLOP counter, attention from its shapes: 4·n·m·d per head), measures
the best float32 matrix-product rate this machine reaches with the given threads, and prints the
lower bound ``FLOPs / best rate``: the time of the matrix products alone, with every
normalisation, activation and copy for free. It then times one segment of unbake's model and,
when the reference ``demucs`` package is installed, of the reference model (same random
weights), compares the bound with half the reference time (a 2x speed-up), and shows the rate
and error of the lower-precision products the CPU offers. ``UNBAKE_KEEP_FREED_MEMORY=0`` times
both models with the C library's default allocator settings.

Run: PYTHONPATH=src python benchmarks/bench_demucs_floor.py [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def count_flops(model, x) -> dict[str, float]:
    import torch
    from torch.nn import functional as F
    from torch.utils.flop_counter import FlopCounterMode

    attention = 0.0
    sdpa = F.scaled_dot_product_attention

    def counted(q, k, v, *args, **kwargs):
        nonlocal attention
        b, h, n, d = q.shape
        attention += 4.0 * b * h * n * k.shape[-2] * d  # q·kᵀ and weights·v
        return sdpa(q, k, v, *args, **kwargs)

    F.scaled_dot_product_attention = counted
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        F.scaled_dot_product_attention = sdpa
    by_op = {str(op): float(n) for op, n in counter.get_flop_counts()["Global"].items()}
    by_op["attention (from shapes)"] = attention
    return by_op


def best_matmul_rate(repeats: int = 5) -> tuple[float, str]:
    """Best GFLOP/s over a few float32 products, the transformer's own shapes included."""
    import torch

    best, where = 0.0, ""
    for m, k, n in ((2688, 512, 2048), (2688, 2048, 512), (4032, 512, 1536), (4096, 4096, 4096)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        rate = 2 * m * k * n / min(times) / 1e9
        if rate > best:
            best, where = rate, f"{m}x{k} @ {k}x{n}"
    return best, where


def lower_precision(repeats: int = 5) -> list[tuple[str, float, float | None]]:
    """``(path, G(FL)OP/s, relative error or None)`` of the faster, lower-precision products this
    CPU offers, on the transformer's largest product; the error is the largest entry's distance
    from a float64 product, relative to the largest entry."""
    import torch

    m, k, n = 2688, 512, 2048
    a, b = torch.randn(m, k), torch.randn(k, n)
    exact = a.double() @ b.double()

    def run(fn):
        out = fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 2 * m * k * n / min(times) / 1e9, out

    rows = []
    ab, bb = a.bfloat16(), b.bfloat16()
    rate, out = run(lambda: ab @ bb)
    rows.append(("bfloat16 inputs and output", rate, float((out.double() - exact).abs().max() / exact.abs().max())))
    mkldnn = getattr(torch.backends, "mkldnn", None)
    if mkldnn is not None and hasattr(getattr(mkldnn, "matmul", None), "fp32_precision"):
        old = mkldnn.matmul.fp32_precision
        try:
            mkldnn.matmul.fp32_precision = "bf16"
            rate, out = run(lambda: a @ b)
            rows.append(("float32 with fp32_precision=bf16", rate,
                         float((out.double() - exact).abs().max() / exact.abs().max())))
        finally:
            mkldnn.matmul.fp32_precision = old
    ai = torch.randint(-127, 128, (m, k), dtype=torch.int8)
    bi = torch.randint(-127, 128, (k, n), dtype=torch.int8)
    try:
        rate, _ = run(lambda: torch._int_mm(ai, bi))
        rows.append(("int8 -> int32 (torch._int_mm)", rate, None))
    except RuntimeError:
        pass
    return rows


def time_forward(model, x, repeats: int = 3) -> float:
    import torch

    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=60.0, help="track length for the per-track figures")
    args = parser.parse_args()

    import torch

    from unbake.engine.allocator import keep_freed_memory
    from unbake.hub.architectures import model_from_config
    from unbake.hub.catalogue import load_catalogue

    torch.set_num_threads(args.threads)
    keep_freed_memory()  # what unbake's engine does before separating
    kwargs = dict(load_catalogue().models["htdemucs"].config)
    torch.manual_seed(0)
    ours = model_from_config("htdemucs", kwargs).eval()
    x = torch.randn(1, 2, ours.segment_samples)

    flops = count_flops(ours, x)
    total = sum(flops.values())
    rate, shape = best_matmul_rate()
    floor = total / (rate * 1e9)
    t_ours = time_forward(ours, x)

    t_ref = None
    try:
        from demucs.htdemucs import HTDemucs
    except ImportError:
        pass
    else:
        ref = HTDemucs(**dict(kwargs, segment=Fraction(kwargs["segment"]))).eval()
        ref.load_state_dict(ours.state_dict())
        t_ref = time_forward(ref, x)

    samplerate = ours.samplerate
    stride = int(0.75 * ours.segment_samples)
    segments = -(-int(args.seconds * samplerate) // stride)

    print(f"HT Demucs, one {ours.segment_samples / samplerate:.2f} s segment, float32, "
          f"{args.threads} thread(s), CPU")
    for op, n in sorted(flops.items(), key=lambda kv: -kv[1]):
        print(f"  {op:<28} {n / 1e9:8.1f} GFLOP")
    print(f"  {'total':<28} {total / 1e9:8.1f} GFLOP")
    print(f"best float32 matrix product here: {rate:.0f} GFLOP/s ({shape})")
    print(f"lower bound, matrix products only: {floor:.2f} s per segment")
    print(f"unbake, measured:                  {t_ours:.2f} s per segment "
          f"({100 * floor / t_ours:.0f} % of it is the bound)")
    if t_ref is not None:
        budget = t_ref / 2
        print(f"reference, measured:               {t_ref:.2f} s per segment "
              f"(unbake {t_ref / t_ours:.2f}x faster)")
        print(f"a 2x speed-up needs <= {budget:.2f} s per segment: the bound alone is "
              f"{100 * floor / budget:.0f} % of that, leaving {max(0.0, budget - floor):.2f} s for "
              f"every normalisation, activation, copy and (i)STFT")
    print("lower-precision products on the same shape (the tolerance is 1e-4 of the output):")
    for path, rate, err in lower_precision():
        print(f"  {path:<34} {rate:7.0f} G(FL)OP/s" + (f"  relative error {err:.1e}" if err is not None else ""))
    print(f"a {args.seconds:g} s track is {segments} segments at overlap 0.25: "
          f"bound {segments * floor:.1f} s, unbake {segments * t_ours:.1f} s"
          + (f", reference {segments * t_ref:.1f} s" if t_ref is not None else ""))


if __name__ == "__main__":
    main()
