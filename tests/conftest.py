"""Shared fixtures: synthetic audio written in many formats, the real example song, shared data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("UNBAKE_OFFLINE", "1")  # tests never reach the network
# PyTorch unless a test asks for another runtime (tests/engine/test_backend.py): a converted
# graph would otherwise land in the user's cache for every model a test separates with
os.environ.setdefault("UNBAKE_BACKEND", "torch")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MUSDB_PREVIEWS = SHARED / "data" / "musdb18-7s" / "train"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``needs_shared`` read ../shared (development data outside the repository):
    each one is skipped, with the reason, where that folder is missing."""
    if SHARED.is_dir():
        return
    skip = pytest.mark.skip(reason=f"needs the development data at {SHARED}")
    for item in items:
        if "needs_shared" in item.keywords:
            item.add_marker(skip)


class FakeModel(torch.nn.Module):
    """A separation model for tests: stem ``k`` is ``gains[k]`` times the mixture, exactly, at
    any rate and chunking (the contract ``(b, c, t) -> (b, s, c, t)`` and nothing more)."""

    audio_channels = 2
    max_segment_samples = None
    track_normalize = False

    def __init__(self, sources=("vocals", "accompaniment"), gains=None, samplerate=44100, segment=8000):
        super().__init__()
        self.sources = tuple(sources)
        gains = [1.0 / len(self.sources)] * len(self.sources) if gains is None else gains
        self.gains = torch.tensor(gains, dtype=torch.float32)
        self.samplerate = samplerate
        self.segment_samples = segment

    def forward(self, x):
        return self.gains.to(x.dtype)[None, :, None, None] * x[:, None]


@pytest.fixture
def fake_model():
    """Two stems, each half the mixture: they sum to the input exactly."""
    return FakeModel()


TRACK_SR = 8000  # small tracks decode and train fast


def make_folder_tracks(root: Path, n_tracks: int = 3, seconds: float = 1.0, with_mixture: bool = True,
                       constant: bool = False, tonal: bool = False) -> list[Path]:
    """Tracks as folders of ``drums.wav`` ...; with ``constant`` stem ``s`` of track ``k`` is the
    constant ``(k + 1) / 10 + (s + 1) / 100`` so every sample says where it came from; with
    ``tonal`` each stem is a tone in its own frequency band (separable, so a model can learn)."""
    from unbake.audio import write_audio
    from unbake.data.datasets import MUSDB_SOURCES, find_tracks

    rng = np.random.default_rng(0)
    n = int(seconds * TRACK_SR)
    for k in range(n_tracks):
        folder = root / f"Artist {k} - Song"
        folder.mkdir(parents=True)
        stems = []
        for s, name in enumerate(MUSDB_SOURCES):
            if constant:
                x = np.full((2, n), (k + 1) / 10 + (s + 1) / 100, np.float32)
            elif tonal:
                f_hz = rng.uniform(150, 250) * 2.5 ** s
                t = np.arange(n) / TRACK_SR
                tone = 0.2 * np.sin(2 * np.pi * f_hz * t + rng.uniform(0, 6.28, (2, 1)))
                x = (tone + 0.002 * rng.standard_normal((2, n))).astype(np.float32)
            else:
                x = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
            stems.append(x)
            write_audio(folder / f"{name}.wav", x, TRACK_SR, bit_depth="32f")
        if with_mixture:
            write_audio(folder / "mixture.wav", np.sum(stems, axis=0), TRACK_SR, bit_depth="32f")
    return find_tracks(root)


def tone_mix(seconds: float = 2.0, sr: int = 44100, seed: int = 0) -> np.ndarray:
    """A stereo test signal: a centred 'voice' tone plus a hard-panned 'band' with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    voice = 0.3 * np.sin(2 * np.pi * 440 * t)
    left = 0.2 * np.sin(2 * np.pi * 110 * t) + 0.05 * rng.standard_normal(t.size)
    right = 0.2 * np.sin(2 * np.pi * 165 * t) + 0.05 * rng.standard_normal(t.size)
    return np.stack([voice + left, voice + right]).astype(np.float32)


@pytest.fixture
def mix() -> np.ndarray:
    return tone_mix()


@pytest.fixture
def wav_file(tmp_path, mix) -> Path:
    from unbake.audio import write_audio

    p = tmp_path / "song.wav"
    write_audio(p, mix, 44100, bit_depth="32f")
    return p


def make_bad_audio_files(folder: Path, mix: np.ndarray) -> dict[str, Path]:
    """Inputs every reader must refuse with a typed error naming the file: text posing as mp3,
    an empty file, a truncated WAV, a WAV with no frames, one holding a NaN, and a missing path."""
    from pedalboard.io import AudioFile

    from unbake.audio import write_audio

    text = folder / "text.mp3"
    text.write_text("not audio at all\n" * 100)
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    good = write_audio(folder / "full.wav", mix, 44100, bit_depth="16")
    cut = folder / "truncated.wav"
    cut.write_bytes(good.read_bytes()[:5000])
    good.unlink()
    zero = folder / "zero.wav"
    with AudioFile(str(zero), "w", 44100, 2) as f:
        f.write(np.zeros((2, 0), np.float32))
    nan = mix.copy()
    nan[0, 10] = np.nan
    nanf = write_audio(folder / "nan.wav", nan, 44100, bit_depth="32f")
    return {"text": text, "empty": empty, "truncated": cut, "zero": zero, "nan": nanf,
            "missing": folder / "missing.wav"}


@pytest.fixture(scope="session")
def example_song() -> Path:
    from unbake.audio import example_path

    try:
        return example_path()
    except Exception as exc:  # pragma: no cover - stempeg is a test dependency
        pytest.skip(f"example song unavailable: {exc}")


def encode_with_av(path: Path, audio: np.ndarray, sr: int, codec: str, *, video: bool = False) -> Path:
    """Encode ``audio (c, t)`` with PyAV (formats pedalboard does not write: m4a, opus, video)."""
    import av

    layout = "stereo" if audio.shape[0] == 2 else "mono"
    with av.open(str(path), "w") as out:
        if video:
            vs = out.add_stream("mpeg4", rate=10)
            vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        rate = 48000 if codec in ("libopus", "opus") else sr
        st = out.add_stream(codec, rate=rate)
        st.layout = layout
        data = audio
        if rate != sr:
            from unbake.audio import resample

            data = resample(audio, sr, rate)
        fmt = st.codec_context.format.name if st.codec_context.format else "fltp"
        frame_size = 1024
        pts = 0
        if video:
            import numpy as _np

            for i in range(int(audio.shape[1] / sr * 10) + 1):
                img = av.VideoFrame.from_ndarray(_np.zeros((48, 64, 3), _np.uint8), format="rgb24")
                img.pts = i
                for p in vs.encode(img):
                    out.mux(p)
        for start in range(0, data.shape[1], frame_size):
            block = np.ascontiguousarray(data[:, start:start + frame_size], dtype=np.float32)
            if fmt.endswith("p"):
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
            else:
                frame = av.AudioFrame.from_ndarray(block.T.reshape(1, -1), format="flt", layout=layout)
            frame.sample_rate = rate
            frame.pts = pts
            pts += block.shape[1]
            for p in st.encode(frame):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
        if video:
            for p in vs.encode(None):
                out.mux(p)
    return path
