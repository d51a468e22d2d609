"""Export the model of a training state (a run's ``state.pt`` or ``state_stepNNNNNN.pt``) as a
shippable checkpoint, float16 by default (``--int8``: int8 weights with per-row scales, half that
size), with the step and how it was chosen in its metadata.

    PYTHONPATH=src python tools/export_state.py runs/small_rnn/state.pt src/unbake/weights/unbake_small.pt \\
        --selection "last step of the schedule (fixed in advance; not picked on validation)"

Several states of one run (``--average``) are exported as the uniform average of their weights
(stochastic weight averaging over checkpoints): the averaged model usually sits in a flatter, better
part of the loss surface than any single noisy step of a small-batch run.

    PYTHONPATH=src python tools/export_state.py runs/small_ft/state_step00{3250..6000..250}.pt OUT.pt --average \\
        --selection "mean of the validated states of the second half (rule fixed in advance)"

Checkpoints of fine-tunes that started from the same weights average the same way (a "model
soup": their weights stay close enough for the mean to be a good model too):

    PYTHONPATH=src python tools/export_state.py src/unbake/weights/unbake_small.pt gpu.pt soup.pt --average \
        --selection "uniform soup of the shipped model and its GPU fine-tune (rule fixed in advance)"

Checkpoints of masknets trained apart export as one output ensemble (``--ensemble``): a
``MaskNetEnsemble`` whose members share one STFT and average their masks. An ensemble given as an
input contributes its members, so a member is added to the shipped ensemble with

    PYTHONPATH=src python tools/export_state.py src/unbake/weights/unbake_small.pt runs/cand/new.pt OUT.pt \
        --ensemble --selection "shipped ensemble + member R (rule fixed in advance)"

An ensemble separates in passes with ``--passes 0,1,2/3,4,5 --peel vocals`` (members 0-2 take the
vocals out, 3-5 separate what remains; model card, "Vocals first"); ``--passes ""`` returns it to one.

A run's ``best_model.pt`` is the checkpoint that scored best on the run's validation tracks: once
picked that way, those tracks no longer measure it fairly. Exporting a state chosen by a rule
fixed beforehand (e.g. the last step) keeps them held out.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def average_states(states: list[dict]) -> dict:
    """The uniform average of the model weights of ``states`` (training states of one architecture
    and model config); the last state's other fields are kept. Integer buffers (counters) are taken
    from the last state."""
    import torch

    last = states[-1]
    for st in states:
        if (st["architecture"], st["model_config"]) != (last["architecture"], last["model_config"]):
            raise SystemExit("states of different models cannot be averaged")
    avg = {}
    for key, value in last["model"].items():
        if value.is_floating_point():
            avg[key] = torch.stack([st["model"][key].double() for st in states]).mean(0).to(value.dtype)
        else:
            avg[key] = value
    return {**last, "model": avg}


def read_state_or_checkpoint(path: str) -> dict:
    """A training state, or an unbake checkpoint seen as one (its weights in float32, no training
    config): fine-tunes of one model exported as checkpoints can be averaged too (a "model soup")."""
    import torch

    from unbake.errors import CheckpointError
    from unbake.hub.checkpoint import read_blob
    from unbake.train.loop import read_state

    try:
        return read_state(path)
    except CheckpointError:
        blob = read_blob(path)
    weights = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    return {"architecture": blob["architecture"], "model_config": blob["config"], "model": weights,
            "step": int(blob.get("meta", {}).get("step", 0)), "config": None, "meta": blob.get("meta", {})}


def ensemble_state(states: list[dict]) -> dict:
    """One masknet ensemble state from masknet states and masknet ensembles (their members in
    order); the last state's other fields are kept."""
    configs, weights = [], {}
    for st in states:
        if st["architecture"] != "masknet":
            raise SystemExit(f"only masknets form an ensemble, not {st['architecture']}")
        cfg = st["model_config"]
        parts = ([(m, f"members.{i}.") for i, m in enumerate(cfg["members"])] if "members" in cfg
                 else [(cfg, "")])
        for member_cfg, prefix in parts:
            out = f"members.{len(configs)}."
            weights.update({out + k[len(prefix):]: v for k, v in st["model"].items() if k.startswith(prefix)})
            configs.append(member_cfg)
    return {**states[-1], "model_config": {"members": configs}, "model": weights}


def _passes(text: str) -> list[list[int]]:
    """``"0,1,2/3,4,5"`` -> ``[[0, 1, 2], [3, 4, 5]]``; ``""`` -> ``[]`` (one pass)."""
    try:
        return [[int(i) for i in part.split(",")] for part in text.split("/")] if text else []
    except ValueError:
        raise argparse.ArgumentTypeError(f"member indices like 0,1,2/3,4,5, got {text!r}") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("state", nargs="+", help="training state file(s), or unbake checkpoints to average")
    ap.add_argument("dest", help="checkpoint to write")
    ap.add_argument("--selection", required=True, help="how this state was chosen (stored in the metadata)")
    ap.add_argument("--average", action="store_true", help="export the mean of the weights of all the states given")
    ap.add_argument("--ensemble", action="store_true",
                    help="export the masknets given (or the members of ensembles given) as one ensemble")
    ap.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16)")
    ap.add_argument("--int8", action="store_true",
                    help="store the large weight tensors as int8 with per-row scales (half the size of "
                         "float16; the model still computes in float32)")
    ap.add_argument("--input-rms", type=float, default=None,
                    help="masknets: the level (RMS) each window is brought to before the network hears "
                         "it, in every member (0: the level as given; default: as in the states); "
                         "tools/training_level.py prints the level a recipe trained at")
    ap.add_argument("--passes", type=_passes, default=None, metavar="0,1,2/3,4,5",
                    help="masknet ensembles: separate in passes, the member indices of each pass "
                         "separated by '/' ('': one pass of every member)")
    ap.add_argument("--peel", nargs="*", default=None, metavar="STEM",
                    help="with --passes: the stem each pass but the last takes out of what the next hears")
    args = ap.parse_args()
    if args.peel is not None and args.passes is None:
        ap.error("--peel needs --passes")
    if args.passes and args.peel is None:
        ap.error("--passes needs --peel: the stem each pass but the last takes out")
    if args.float32 and args.int8:
        ap.error("--float32 and --int8 exclude each other")
    if len(args.state) > 1 and not (args.average or args.ensemble):
        ap.error("several states need --average or --ensemble")
    if args.average and args.ensemble:
        ap.error("--average and --ensemble exclude each other")

    from unbake.errors import ModelError
    from unbake.hub.architectures import model_from_config
    from unbake.hub.checkpoint import load_state_strict, save_checkpoint

    states = [read_state_or_checkpoint(p) for p in args.state]
    state = (average_states(states) if args.average else ensemble_state(states) if args.ensemble
             else states[0])
    if args.input_rms is not None:
        if state["architecture"] != "masknet":
            ap.error(f"--input-rms is a masknet setting, not one of {state['architecture']}")
        cfg_ = state["model_config"]
        members = [{**m, "input_rms": args.input_rms} for m in cfg_.get("members", [cfg_])]
        state = {**state, "model_config": {**cfg_, "members": members} if "members" in cfg_ else members[0]}
    if args.passes is not None:
        if "members" not in state["model_config"]:
            ap.error("--passes is a setting of masknet ensembles (--ensemble, or an ensemble given)")
        cfg_ = {k: v for k, v in state["model_config"].items() if k not in ("passes", "peel")}
        state = {**state, "model_config": {**cfg_, **({"passes": args.passes, "peel": args.peel} if args.passes else {})}}
    try:
        model = model_from_config(state["architecture"], state["model_config"])
    except ModelError as exc:
        ap.error(str(exc))
    load_state_strict(model, state["model"], args.state[-1])
    cfg = state["config"]
    # one checkpoint re-exported (another storage, passes, level) keeps what its metadata says
    # of how it was made
    kept = states[0].get("meta", {}) if len(states) == 1 else {}
    meta = {**kept, "step": int(state["step"]), "selection": args.selection}
    if cfg is not None:
        meta.update(init_from=cfg.get("init_from"), train_segment_s=cfg["data"]["segment_s"],
                    augment=cfg["augment"], optim=cfg["optim"])
    if args.input_rms is not None:
        meta["input_rms"] = args.input_rms
    if args.ensemble:
        meta["member_files"] = [Path(p).name for p in args.state]
    if args.average:
        meta["averaged_steps"] = [int(st["step"]) for st in states]
        meta["averaged_files"] = [Path(p).name for p in args.state]
    path = save_checkpoint(model, args.dest, architecture=state["architecture"], config=state["model_config"],
                           meta=meta, half=not args.float32, int8=args.int8)
    what = (f"mean of steps {meta['averaged_steps']}" if args.average
            else f"ensemble of {len(state['model_config']['members'])} members" if args.ensemble
            else f"at step {state['step']}")
    print(f"{path}: {state['architecture']} {what}")


if __name__ == "__main__":
    main()
