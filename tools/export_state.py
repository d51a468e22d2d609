"""Export the model of a training state (a run's ``state.pt`` or ``state_stepNNNNNN.pt``) as a
shippable checkpoint, float16 by default, with the step and how it was chosen in its metadata.

    PYTHONPATH=src python tools/export_state.py runs/small_rnn/state.pt src/unbake/weights/unbake_small.pt \\
        --selection "last step of the schedule (fixed in advance; not picked on validation)"

A run's ``best_model.pt`` is the checkpoint that scored best on the run's validation tracks: once
picked that way, those tracks no longer measure it fairly. Exporting a state chosen by a rule
fixed beforehand (e.g. the last step) keeps them held out.
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("state", help="training state file")
    ap.add_argument("dest", help="checkpoint to write")
    ap.add_argument("--selection", required=True, help="how this state was chosen (stored in the metadata)")
    ap.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16)")
    args = ap.parse_args()

    from unbake.hub.architectures import model_from_config
    from unbake.hub.checkpoint import load_state_strict, save_checkpoint
    from unbake.train.loop import read_state

    state = read_state(args.state)
    model = model_from_config(state["architecture"], state["model_config"])
    load_state_strict(model, state["model"], args.state)
    cfg = state["config"]
    meta = {"step": int(state["step"]), "selection": args.selection, "init_from": cfg.get("init_from"),
            "train_segment_s": cfg["data"]["segment_s"], "augment": cfg["augment"], "optim": cfg["optim"]}
    path = save_checkpoint(model, args.dest, architecture=state["architecture"], config=state["model_config"],
                           meta=meta, half=not args.float32)
    print(f"{path}: {state['architecture']} at step {state['step']}")


if __name__ == "__main__":
    main()
