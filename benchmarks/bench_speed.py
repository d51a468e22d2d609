"""Speed of each large architecture: its reference implementation, unbake exact and unbake fast.

Exact is float32, fast is ``precision="fast"``, each on PyTorch (``exact``, ``fast``) and, where
OpenVINO is installed (``unbake[fast]``) and the model exports its network, on OpenVINO
(``exact_openvino``, ``fast_openvino``); same random full-size weights, same chunk length and
overlap, each side in its own process, median of several runs. An OpenVINO side converts the
network once (cached in the benchmark's folder) and compiles it once per process before the
clock starts (printed as "load", as a batch job pays it once); the timed part is the separation.

Architectures and their references:
  htdemucs      the ``demucs`` package's ``apply_model`` (segment 7.8 s, overlap 0.25)
  scnet, bs_roformer, mel_roformer
                MSST's ``demix`` (ZFTurbo/Music-Source-Separation-Training) with the catalogue
                config's chunk size, ``num_overlap`` 2 (unbake: overlap 0.5), batch size 1

The references are for this benchmark only, never dependencies of unbake:
    pip install --no-deps demucs einops julius openunmix
    pip install --no-deps beartype rotary-embedding-torch ml-collections absl-py einops
and a checkout of the MSST repository (its ``models/`` and ``utils/`` folders) given with
``--msst DIR`` or ``UNBAKE_MSST_DIR``. A reference that is missing is reported as such.

Printed per architecture: median wall time of each side, the speed-ups, the exact output's
largest difference from the reference relative to the reference's peak (for the MSST models on
one direct model call, since their cross-fades differ from unbake's), the fast output's SNR
against unbake's exact output (worst stem), and the arithmetic lower bound of the float32 and
bfloat16 matrix products for the track (``bench_demucs_floor.py``'s method) next to the
targets (exact >= 1.5x / 1x the reference, fast >= 2.5x / 2x).

Run: PYTHONPATH=src python benchmarks/bench_speed.py [--seconds 20] [--runs 3] [--threads N]
     [--msst DIR] [htdemucs scnet bs_roformer mel_roformer]
On a machine shared with other work, time single sides in pairs instead:
     bench_speed.py --prepare DIR htdemucs          (weights and track into DIR)
     farm-bench --vs 'python bench_speed.py --child htdemucs --side reference --folder DIR' -- \
         python bench_speed.py --child htdemucs --side exact --folder DIR
(sides: reference, exact, fast, exact_openvino, fast_openvino; each child prints its track_s)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLERATE = 44100
# name -> (catalogue entry, reference kind, MSST model_type, target speed-ups exact / fast)
ARCHS = {
    "htdemucs": ("htdemucs", "demucs", None, (1.5, 2.5)),
    "scnet": ("scnet", "msst", "scnet", (1.0, 2.0)),
    "bs_roformer": ("bs_roformer_vocals", "msst", "bs_roformer", (1.0, 2.0)),
    "mel_roformer": ("mel_roformer_vocals_kj", "msst", "mel_band_roformer", (1.0, 2.0)),
}
MSST_CLASSES = {
    "scnet": ("models.scnet.scnet", "SCNet"),
    "bs_roformer": ("models.bs_roformer.bs_roformer", "BSRoformer"),
    "mel_band_roformer": ("models.bs_roformer.mel_band_roformer", "MelBandRoformer"),
}


def vector_extensions() -> str:
    """The CPU model and the vector extensions that matter for these products (/proc/cpuinfo)."""
    flags, model = set(), "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
    except OSError:
        return "unknown (no /proc/cpuinfo)"
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
              "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")
    have = [f for f in wanted if f in flags]
    return f"{model}; {' '.join(have) or 'no AVX2'}" + ("" if "amx_tile" in flags else "; no AMX")


# ----------------------------------------------------------------------------- set-up


def _entry(arch: str):
    sys.path.insert(0, str(REPO / "src"))
    from unbake.hub.catalogue import load_catalogue

    return load_catalogue().get(ARCHS[arch][0])


def _msst_config(arch: str) -> dict:
    from unbake.hub.msst import read_yaml

    entry = _entry(arch)
    return read_yaml(REPO / "src" / "unbake" / "hub" / "configs" / entry.config_file)


def _chunk(arch: str, model) -> int:
    if ARCHS[arch][1] == "demucs":
        return model.segment_samples
    return int(_msst_config(arch)["audio"]["chunk_size"])


def _overlap(arch: str) -> float:
    return 0.25 if ARCHS[arch][1] == "demucs" else 0.5


def _prepare(arch: str, folder: Path, seconds: float) -> None:
    """Random full-size weights and a standardised synthetic stereo track."""
    import torch

    from bench_demucs_reference import save_inputs  # this script's folder is on sys.path
    from unbake.hub.loading import load_model

    torch.manual_seed(0)
    save_inputs(load_model(ARCHS[arch][0], pretrained=False), folder, seconds)


# ----------------------------------------------------------------------------- one side


def _reference_model(arch: str, state: dict, msst: Path | None):
    import torch

    kind, model_type = ARCHS[arch][1], ARCHS[arch][2]
    if kind == "demucs":
        from demucs.apply import apply_model
        from demucs.htdemucs import HTDemucs

        kwargs = dict(_entry(arch).config)
        kwargs["segment"] = Fraction(kwargs["segment"])
        model = HTDemucs(**kwargs)
        model.load_state_dict(state)

        def separate(x):
            return apply_model(model, x[None], shifts=0, split=True, overlap=0.25,
                               progress=False, num_workers=0)[0]
        return model.eval(), separate

    import importlib
    import inspect

    import numpy as np
    from ml_collections import ConfigDict

    sys.path.insert(0, str(msst))
    from utils.model_utils import demix, prefer_target_instrument

    data = _msst_config(arch)
    data.setdefault("inference", {})
    data["inference"].update(num_overlap=2, batch_size=1)
    data.setdefault("training", {}).setdefault("use_amp", False)
    config = ConfigDict(data)
    module, cls = MSST_CLASSES[model_type]
    # sequences as tuples: MSST's runtime type checks refuse lists where its hints say tuple
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data["model"].items()}
    ref_class = getattr(importlib.import_module(module), cls)
    if "zero_dc" in inspect.signature(ref_class.__init__).parameters:
        # newer MSST defaults zero_dc to True where a config does not say; unbake's model for this
        # config has its own value (False unless the catalogue sets it): compare like with like
        kwargs.setdefault("zero_dc", bool(getattr(_model_for_chunk(arch).config, "zero_dc", False)))
    model = ref_class(**kwargs)
    model.load_state_dict(state)
    names = prefer_target_instrument(config)

    def separate(x):
        out = demix(config, model, x.numpy(), torch.device("cpu"), model_type)
        return torch.from_numpy(np.stack([out[n] for n in names]))

    return model.eval(), separate


SIDES = ("reference", "exact", "fast", "exact_openvino", "fast_openvino")


def _child(arch: str, side: str, folder: Path, threads: int, direct: bool, msst: Path | None) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ["UNBAKE_CACHE"] = str(folder / "cache")  # the converted graph stays with the inputs
    load_s = 0.0
    state = torch.load(folder / "state.pt", weights_only=True)
    mix = torch.load(folder / "mix.pt", weights_only=True)
    if side == "reference":
        model, separate = _reference_model(arch, state, msst)
    else:
        from unbake.engine import apply_model
        from unbake.hub.loading import load_model

        model = load_model(ARCHS[arch][0], pretrained=False)
        model.load_state_dict(state)
        model.eval()
        chunk, overlap = _chunk(arch, model), _overlap(arch)
        precision = "fast" if side.startswith("fast") else "float32"
        backend = "openvino" if side.endswith("openvino") else "torch"
        if backend == "openvino":
            from unbake.engine import resolve_precision
            from unbake.engine.backend import for_backend

            t0 = time.perf_counter()  # convert (first run only) and compile, kept for the process
            for_backend(model, resolve_precision(precision, torch.device("cpu")), torch.device("cpu"), backend)
            load_s = time.perf_counter() - t0

        def separate(x):
            return apply_model(model, x, segment_samples=chunk, overlap=overlap, precision=precision,
                               backend=backend)

    result = {}
    with torch.inference_mode():
        if direct:
            chunk = _chunk(arch, _model_for_chunk(arch))
            result["one"] = model(mix[None, :, :chunk])[0]
        t0 = time.perf_counter()
        out = separate(mix)
        track_s = time.perf_counter() - t0
    result["track"] = out
    torch.save(result, folder / f"{side}.out.pt")
    print(json.dumps({"track_s": track_s, "load_s": load_s}))


# ----------------------------------------------------------------------------- bound


def _bounds(arch: str, seconds: float) -> tuple[float, float]:
    """Lower bounds (s) of the track's matrix products at the best float32 and bfloat16 rates."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_demucs_floor import best_matmul_rate, count_flops, lower_precision

    from unbake.engine import plan_chunks
    from unbake.hub.loading import load_model

    with torch.device("cpu"):
        model = load_model(ARCHS[arch][0], pretrained=False).eval()
    chunk = _chunk(arch, model)
    flops = sum(count_flops(model, torch.randn(1, model.audio_channels, chunk)).values())
    n_chunks = len(plan_chunks(int(seconds * SAMPLERATE), chunk, _overlap(arch), [0]))
    f32, _ = best_matmul_rate()
    bf16 = max([rate for path, rate, _ in lower_precision() if path.startswith("bfloat16")] + [f32])
    return n_chunks * flops / (f32 * 1e9), n_chunks * flops / (bf16 * 1e9)


# ----------------------------------------------------------------------------- driver


def _run_side(arch, side, folder, threads, direct, msst) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    cmd = [sys.executable, __file__, "--child", arch, "--side", side, "--folder", str(folder),
           "--threads", str(threads)] + (["--direct"] if direct else []) + (["--msst", str(msst)] if msst else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["track_s"], result["load_s"]


def _reference_available(arch: str, msst: Path | None) -> str | None:
    """None when the reference can run, else why not."""
    import importlib.util

    if ARCHS[arch][1] == "demucs":
        return None if importlib.util.find_spec("demucs") else "the demucs package is not installed"
    if msst is None or not (msst / "utils" / "model_utils.py").is_file():
        return "no MSST checkout (--msst DIR or UNBAKE_MSST_DIR)"
    for mod in ("ml_collections", "beartype", "rotary_embedding_torch", "einops"):
        if importlib.util.find_spec(mod) is None:
            return f"MSST needs {mod}, not installed"
    return None


def _snr_db(ref, est) -> float:
    import torch

    worst = float("inf")
    for r, e in zip(ref, est):
        err = (r.double() - e.double()).pow(2).sum()
        worst = min(worst, float(10 * torch.log10(r.double().pow(2).sum() / err)) if err > 0 else float("inf"))
    return worst


def bench(arch: str, args) -> None:
    import torch

    import importlib.util

    why = _reference_available(arch, args.msst)
    sides = (["reference"] if why is None else []) + ["exact", "fast"]
    if importlib.util.find_spec("openvino") and getattr(_model_for_chunk(arch), "graph_export", False):
        sides += ["exact_openvino", "fast_openvino"]
    times: dict[str, list[float]] = {s: [] for s in sides}
    loads: dict[str, list[float]] = {s: [] for s in sides}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _prepare(arch, folder, args.seconds)
        for run in range(args.runs):  # sides interleaved, so that drifting load hits all alike
            for side in sides:
                track_s, load_s = _run_side(arch, side, folder, args.threads, run == 0, args.msst)
                times[side].append(track_s)
                loads[side].append(load_s)
        outs = {s: torch.load(folder / f"{s}.out.pt", weights_only=True) for s in sides}
    med = {s: statistics.median(v) for s, v in times.items()}
    from unbake.engine import resolve_precision

    fast_is = resolve_precision("fast", torch.device("cpu"))
    print(f"\n{arch} ({ARCHS[arch][0]}, random full-size weights), {args.seconds:g} s stereo, "
          f"chunk {_chunk(arch, _model_for_chunk(arch)) / SAMPLERATE:.2f} s, overlap {_overlap(arch)}, "
          f"{args.threads} thread(s), median of {args.runs}; fast = {fast_is} here")
    for s in sides:
        runs = ", ".join(f"{t:.1f}" for t in times[s])
        extra = f"  ({med['reference'] / med[s]:.2f}x the reference)" if "reference" in med and s != "reference" else ""
        if s.endswith("openvino"):  # the first run's load includes the one-time conversion
            extra += f"  load {statistics.median(loads[s][1:] or loads[s]):.1f} s per process"
        print(f"  {s:<14} {med[s]:8.2f} s   runs: {runs}{extra}")
    if why:
        print(f"  reference  not available: {why}")
    else:
        what = "track" if ARCHS[arch][1] == "demucs" else "one"
        label = "whole track" if what == "track" else "one direct model call"
        for s in ("exact", "exact_openvino"):
            if s in outs and what in outs[s]:
                ref, ours = outs["reference"][what], outs[s][what]
                diff = float((ref - ours).abs().max() / ref.abs().max())
                print(f"  {s} vs reference: max |diff| = {diff:.2e} of the reference's peak ({label})")
    for s in ("fast", "fast_openvino"):
        if s in outs:
            print(f"  {s} vs exact: SNR {_snr_db(outs['exact']['track'], outs[s]['track']):.1f} dB (worst stem)")
    f32_bound, bf16_bound = _bounds(arch, args.seconds)
    print(f"  bound, matrix products only: float32 {f32_bound:.1f} s, bfloat16 {bf16_bound:.1f} s")
    if "reference" in med:
        want_exact, want_fast = ARCHS[arch][3]
        for label, want, bound in (("exact", want_exact, f32_bound), ("fast", want_fast, bf16_bound)):
            side = min((s for s in med if s.startswith(label)), key=med.get)  # the quicker runtime
            got = med[side]
            budget = med["reference"] / want
            verdict = "met" if got <= budget else ("out of reach: the bound alone exceeds it" if bound > budget
                                                  else f"missed by {got / budget:.2f}x")
            print(f"  target {label} >= {want:g}x: <= {budget:.1f} s; {side} {verdict} "
                  f"(bound is {100 * bound / budget:.0f} % of the budget)")


def _model_for_chunk(arch: str):
    from unbake.hub.loading import load_model
    import torch

    with torch.device("meta"):
        return load_model(ARCHS[arch][0], pretrained=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archs", nargs="*", default=list(ARCHS), help=f"any of {', '.join(ARCHS)}")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--msst", type=Path, default=os.environ.get("UNBAKE_MSST_DIR"))
    parser.add_argument("--prepare", type=Path, metavar="DIR",
                        help="write the weights and track of the (first) architecture into DIR and stop")
    parser.add_argument("--child", choices=list(ARCHS), help="run one side only (with --side, --folder)")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--direct", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.msst is not None:
        args.msst = Path(args.msst)
    unknown = sorted(set(args.archs) - set(ARCHS))
    if unknown:
        parser.error(f"unknown architecture(s) {unknown}; choose from {', '.join(ARCHS)}")
    if args.child:
        _child(args.child, args.side, args.folder, args.threads, args.direct, args.msst)
        return
    sys.path.insert(0, str(REPO / "src"))
    if args.prepare:
        args.prepare.mkdir(parents=True, exist_ok=True)
        _prepare(args.archs[0], args.prepare, args.seconds)
        return
    import torch

    print(f"CPU: {vector_extensions()}")
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    for arch in args.archs:
        try:
            bench(arch, args)
        except RuntimeError as exc:  # one failing side must not hide the other architectures
            print(f"\n{arch}: failed: {exc}")


if __name__ == "__main__":
    main()
