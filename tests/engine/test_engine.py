import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from unbake.engine import ArraySource, apply_model, iter_separate, plan_chunks, track_statistics
from unbake.errors import ModelError


class Identity(torch.nn.Module):
    """Returns the mix as every stem (and counts calls)."""

    samplerate = 44100
    max_segment_samples = None
    track_normalize = False

    def __init__(self, segment=1000, stems=2, channels=2):
        super().__init__()
        self.segment_samples = segment
        self.sources = tuple(f"s{i}" for i in range(stems))
        self.audio_channels = channels
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.stack([x] * len(self.sources), dim=1)


class Nonlinear(Identity):
    """Output depends on the whole window, so chunking and shifts change the result."""

    def forward(self, x):
        self.calls += 1
        scale = x.abs().mean(dim=(1, 2), keepdim=True)
        return torch.stack([torch.tanh(3 * x) * scale, x - torch.tanh(3 * x) * scale], dim=1)


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 6000), segment=st.integers(8, 3000), overlap=st.floats(0.0, 0.95),
       shifts=st.integers(0, 2), seed=st.integers(0, 3))
def test_identity_reconstructs_any_length(length, segment, overlap, shifts, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, length)).astype(np.float32)
    model = Identity(segment=segment)
    y = apply_model(model, x, overlap=overlap, shifts=shifts, seed=seed)
    assert y.shape == (2, 2, length)
    assert np.abs(y - x[None]).max() <= 1e-6


def test_plan_covers_track_once_per_grid():
    chunks = plan_chunks(10_000, 1000, 0.25, [0, 300])
    for g, delay in enumerate([0, 300]):
        covered = np.zeros(10_000 + delay, bool)
        for c in (c for c in chunks if c.grid == g):
            covered[c.start + delay:c.start + delay + c.length] = True
        assert covered.all()
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)


def test_shifts_are_deterministic_and_change_output():
    x = np.random.default_rng(1).standard_normal((2, 30_000)).astype(np.float32)
    m = Nonlinear(segment=4000)
    a = apply_model(m, x, shifts=2)
    b = apply_model(m, x, shifts=2)
    c = apply_model(m, x, shifts=0)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_batching_gives_same_result_and_fewer_calls():
    x = np.random.default_rng(2).standard_normal((2, 20_000)).astype(np.float32)
    m1, m4 = Nonlinear(segment=3000), Nonlinear(segment=3000)
    a = apply_model(m1, x, batch_size=1)
    b = apply_model(m4, x, batch_size=4)
    assert np.allclose(a, b, atol=1e-6)
    assert m4.calls < m1.calls


def test_streaming_blocks_and_progress():
    x = np.random.default_rng(3).standard_normal((2, 12_345)).astype(np.float32)
    seen = []
    blocks = list(iter_separate(Identity(segment=2000), ArraySource(x), progress=lambda d, t: seen.append((d, t))))
    assert len(blocks) > 3  # emitted progressively, not at the end
    assert sum(b.shape[-1] for b in blocks) == 12_345
    assert seen[-1][0] == seen[-1][1]


def test_normalisation_is_undone():
    x = (np.random.default_rng(4).standard_normal((2, 5000)) * 3 + 1).astype(np.float32)
    mean, std = track_statistics([x[:, :2000], x[:, 2000:]])
    assert np.isclose(mean, x.mean(axis=0).mean(), atol=1e-6)
    assert np.isclose(std, x.mean(axis=0).std(ddof=1), rtol=1e-6)
    y = apply_model(Identity(segment=1000), x, normalize=(mean, std))
    assert np.abs(y - x[None]).max() < 1e-5


def test_tensor_in_tensor_out_and_input_untouched():
    x = torch.randn(3, 2, 4000)
    before = x.clone()
    y = apply_model(Identity(segment=1500), x)
    assert isinstance(y, torch.Tensor) and y.shape == (3, 2, 2, 4000)
    assert torch.equal(x, before)


def test_contract_violations_are_typed_errors():
    class Bad(Identity):
        def forward(self, x):
            return x

    with pytest.raises(ModelError, match="stems"):
        apply_model(Bad(), np.zeros((2, 3000), np.float32))
    with pytest.raises(ModelError, match="channel"):
        apply_model(Identity(channels=2), np.zeros((1, 3000), np.float32))


def test_segment_capped_by_model_limit():
    seen = []

    class Spy(Identity):
        max_segment_samples = 1000

        def forward(self, x):
            seen.append(x.shape[-1])
            return super().forward(x)

    apply_model(Spy(segment=1000), np.zeros((2, 5000), np.float32), segment_samples=4000)
    assert set(seen) == {1000}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
@pytest.mark.parametrize("env,expected", [("1", "True"), ("0", "False")])
def test_allocator_setting_follows_environment(env, expected):
    code = "from unbake.engine.allocator import keep_freed_memory as k; print(k(), k())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "UNBAKE_KEEP_FREED_MEMORY": env}).stdout.split()
    assert out == [expected, expected]


class VariableNonlinear(Nonlinear):
    """A window-dependent model that takes windows of any length (and records their lengths)."""

    variable_length = True

    def __init__(self, segment=1000):
        super().__init__(segment=segment)
        self.window_lengths = []

    def forward(self, x):
        self.window_lengths.append(x.shape[-1])
        return super().forward(x)


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 6000), segment=st.integers(8, 3000), overlap=st.floats(0.0, 0.95),
       delays=st.lists(st.integers(0, 500), min_size=1, max_size=3))
def test_inside_windows_stay_on_the_grid_and_cover_their_chunk(length, segment, overlap, delays):
    for c in plan_chunks(length, segment, overlap, delays, inside=True):
        origin, end = -delays[c.grid], length
        assert origin <= c.window_start and c.window_start + c.window_length <= end
        assert c.window_length == min(segment, end - origin)
        assert c.window_start <= c.start and c.start + c.length <= c.window_start + c.window_length


@settings(max_examples=40, deadline=None)
@given(length=st.integers(1, 6000), segment=st.integers(8, 3000), overlap=st.floats(0.0, 0.95),
       shifts=st.integers(0, 2), batch=st.integers(1, 3))
def test_identity_reconstructs_with_inside_windows(length, segment, overlap, shifts, batch):
    x = np.random.default_rng(length).standard_normal((2, length)).astype(np.float32)
    model = Identity(segment=segment)
    model.variable_length = True
    y = apply_model(model, x, overlap=overlap, shifts=shifts, batch_size=batch)
    assert np.abs(y - x[None]).max() <= 1e-6


def test_variable_length_model_never_hears_padding():
    x = np.random.default_rng(3).standard_normal((2, 700)).astype(np.float32)
    fixed, free = Nonlinear(segment=1000), VariableNonlinear(segment=1000)
    # a track shorter than the segment: one window, the track itself, exactly the model's output
    y = apply_model(free, x)
    assert free.window_lengths == [700]
    assert np.allclose(y, free(torch.from_numpy(x)[None])[0].numpy(), atol=1e-6)
    # a model without the attribute still gets a segment-long window padded with silence
    assert not np.allclose(apply_model(fixed, x), y, atol=1e-3)
    # longer tracks: every window is a full segment of the track (the last moved back to its end)
    free.window_lengths.clear()
    apply_model(free, np.random.default_rng(4).standard_normal((2, 2600)).astype(np.float32), batch_size=2)
    assert free.window_lengths and set(free.window_lengths) == {1000}


def test_shifted_short_track_mixes_window_lengths_in_batches():
    x = np.random.default_rng(5).standard_normal((2, 900)).astype(np.float32)
    models = [VariableNonlinear(segment=1000) for _ in range(2)]
    for m in models:
        m.samplerate = 400  # shifts of up to 200 samples: delayed grids of 900 to 1100 samples
    y1 = apply_model(models[0], x, shifts=3, seed=1, batch_size=1)
    y3 = apply_model(models[1], x, shifts=3, seed=1, batch_size=3)
    assert set(models[0].window_lengths) == {994, 1000}  # delays 94, 102, 151
    assert np.allclose(y1, y3, atol=1e-6)
