"""The level a training recipe feeds its network: RMS of the mixtures its sampler draws.

    PYTHONPATH=src python tools/training_level.py configs/train_small_member_gpu_synth2.yaml [--batches 300]

Draws ``--batches`` batches of the config's batch size from its training split with its
augmentation (cross-song remixing, gains, effects; without the cached pitch/tempo variants and the
extra synthetic sets, which take long to prepare and are a minority of the picks) and prints the
median and the 10th/90th percentiles of the mixtures' RMS (over channels and samples), beside the
same figures for the whole training and validation tracks as they are. The median is what a
masknet's ``input_rms`` is set to: the level the network heard most.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def describe(name: str, values: list[float]) -> None:
    v = np.asarray(values)
    print(f"{name:22s} median {np.median(v):.4f} ({20 * np.log10(np.median(v)):.1f} dBFS), "
          f"10th-90th percentile {np.percentile(v, 10):.4f}-{np.percentile(v, 90):.4f}, n={v.size}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()

    from unbake.data.cache import AudioCache
    from unbake.data.datasets import ExcerptSampler, load_tracks
    from unbake.train.config import load_config
    from unbake.train.loop import split_data

    cfg = load_config(args.config)
    d = cfg.data
    train_paths, valid_paths = split_data(cfg)
    cache = AudioCache(d.cache_dir)
    train = load_tracks(train_paths, d.sources, d.samplerate, cache)
    valid = load_tracks(valid_paths, d.sources, d.samplerate, cache)
    augment = dataclasses.replace(cfg.augment, pitch_tempo_p=0.0)
    sampler = ExcerptSampler(train, cfg.segment_samples, augment, seed=args.seed, sample_rate=d.samplerate)
    drawn = [rms(m) for step in range(args.batches) for m in sampler.batch(step, 0, cfg.optim.batch_size)[0]]
    describe("sampler mixtures", drawn)
    describe("training tracks", [rms(t.mix()) for t in train])
    describe("validation tracks", [rms(t.mix()) for t in valid])


if __name__ == "__main__":
    main()
