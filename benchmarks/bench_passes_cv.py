"""5-fold A/B of a two-model masknet ensemble separating in one pass or in two ("vocals first").

For each fold, two models trained apart on the fold's training tracks (two runs of one k-fold config
with different seeds, each at its schedule's last step: ``bench_ensemble_cv.fold_setup``) separate
the fold's held-out tracks:

- one pass: their masks averaged over one STFT (``MaskNetEnsemble([a, b])``);
- two passes: one model separates the mixture and its vocals are taken out, the other separates
  what remains (``passes [[0], [1]]``, ``peel [vocals]``); both orders scored and averaged.

Both arms run each model once per window. Prints the per-fold uSDR (dB) of each arm, the paired
difference d_F (two passes - one pass), its mean, std and std/sqrt(folds), and the decision of the
rule in ``configs/cv/fold0_vocals_first.yaml``.

    PYTHONPATH=src python benchmarks/bench_passes_cv.py [--runs A B] [--folds 0 1 2 3 4] [--threads 2] [--json F]

Run by hand; never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench_ensemble_cv import fold_setup

RUNS = ("runs/cv/fold{fold}_real_level", "runs/cv/fold{fold}_real_level_s43")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs=2, default=RUNS, metavar=("A", "B"),
                    help="the two runs of a fold; {fold} stands for the fold number")
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the per-fold figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from unbake.models.masknet import MaskNetEnsemble
    from unbake.train.loop import evaluate

    rows = {}
    for fold in args.folds:
        (a, b), tracks, sources = fold_setup([Path(r.format(fold=fold)) for r in args.runs])
        with torch.inference_mode():
            one = evaluate(MaskNetEnsemble([a, b]).eval(), tracks, sources)["stems"]
            orders = [evaluate(MaskNetEnsemble(pair, [[0], [1]], ["vocals"]).eval(), tracks, sources)["stems"]
                      for pair in ([a, b], [b, a])]
        two = {s: float(np.mean([o[s] for o in orders])) for s in sources}
        rows[fold] = {"one": one, "two": two, "tracks": len(tracks)}
        print(f"fold {fold} ({len(tracks)} tracks): one pass {np.mean(list(one.values())):.3f}, "
              f"two passes {np.mean(list(two.values())):.3f} (orders "
              + " / ".join(f"{np.mean(list(o.values())):.3f}" for o in orders) + ")", flush=True)

    cols = list(sources) + ["mean"]

    def with_mean(d: dict) -> list[float]:
        return [d[s] for s in sources] + [float(np.mean([d[s] for s in sources]))]

    table = {arm: np.array([with_mean(rows[f][arm]) for f in rows]) for arm in ("one", "two")}
    diff = table["two"] - table["one"]
    n = len(rows)
    print("\nuSDR dB per fold, each run at its last step:")
    print(f"  {'':16s}" + "".join(f"{c:>9s}" for c in cols))
    for title, values in (("one pass", table["one"]), ("two passes", table["two"]), ("two - one", diff)):
        for fold, v in zip(rows, values):
            print(f"  {title + ' ' + str(fold):16s}" + "".join(f"{x:9.3f}" for x in v))
        print(f"  {title + ' mean':16s}" + "".join(f"{x:9.3f}" for x in values.mean(0)))
    gain = diff.mean(0)[-1]
    if n < 2:  # the rule needs a spread: one fold shows the difference and decides nothing
        err, verdict = None, None
        print(f"\npaired gain {gain:+.3f} dB on one fold: no spread, so no decision")
    else:
        spread = diff.std(0, ddof=1) / np.sqrt(n)
        print(f"  {'two - one std':16s}" + "".join(f"{x:9.3f}" for x in diff.std(0, ddof=1)))
        print(f"  {'std/sqrt(n)':16s}" + "".join(f"{x:9.3f}" for x in spread))
        err = spread[-1]
        verdict = "two passes" if gain > 0 and gain > err else "one pass"
        print(f"\nmean paired gain {gain:+.3f} dB, std/sqrt({n}) {err:.3f} dB: by the rule, {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({"folds": rows, "gain": gain, "stderr": err, "verdict": verdict},
                                              indent=1))


if __name__ == "__main__":
    main()
