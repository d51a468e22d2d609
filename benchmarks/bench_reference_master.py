"""Reference mastering on real music: how close a dulled, quiet mix comes to a record's tonal
balance and loudness.

Usage: python benchmarks/bench_reference_master.py [--data ../shared/data/musdb18-7s/train] [--pairs 3]

For pairs of MUSDB18 previews (A, B) in name order, A's mixture through a 2nd-order low-pass at
4 kHz and 12 dB quieter plays the old recording, B's mixture the record. Printed per pair: the rms
difference between the third-octave spectra (50 Hz-12 kHz, levels equalised) of the record and of
the old recording, the mastered one and A's original mix, and the loudness before and after.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "musdb18-7s" / "train"


def shape_error_db(audio: np.ndarray, record: np.ndarray, sample_rate: int) -> float:
    from unbake.remix.reference import smoothed_spectrum_db

    a, r = smoothed_spectrum_db(audio, sample_rate), smoothed_spectrum_db(record, sample_rate)
    f = np.fft.rfftfreq(2 * (a.size - 1), 1 / sample_rate)
    d = (a - r)[(f >= 50) & (f <= 12000)]
    return float(np.sqrt(np.mean((d - d.mean()) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    from scipy.signal import butter, sosfilt

    from unbake.audio import read_stems, write_audio
    from unbake.remix import MasterSettings, integrated_lufs
    from unbake.remix.master import master

    files = sorted(args.data.glob("*.stem.mp4"))
    if len(files) < 2 * args.pairs:
        raise SystemExit(f"{args.data}: needs {2 * args.pairs} .stem.mp4 files")
    with tempfile.TemporaryDirectory() as tmp:
        for old_file, record_file in zip(files[0:2 * args.pairs:2], files[1:2 * args.pairs:2]):
            a, sr = read_stems(old_file)
            b, _ = read_stems(record_file)
            old = (10 ** (-12 / 20) * sosfilt(butter(2, 4000, "low", fs=sr, output="sos"), a["mixture"]))
            old = old.astype(np.float32)
            record = b["mixture"]
            path = write_audio(Path(tmp) / "record.wav", record, sr, bit_depth="32f", overwrite=True)
            out = master(old, sr, MasterSettings.model_validate({"reference": str(path)}, context={}))
            print(f"{old_file.name[:-9]} -> {record_file.name[:-9]}: spectral shape error "
                  f"{shape_error_db(old, record, sr):.2f} dB -> {shape_error_db(out, record, sr):.2f} dB "
                  f"(A's original mix {shape_error_db(a['mixture'], record, sr):.2f}); loudness "
                  f"{integrated_lufs(old, sr):.1f} -> {integrated_lufs(out, sr):.1f} LUFS "
                  f"(record {integrated_lufs(record, sr):.1f})")


if __name__ == "__main__":
    main()
