import numpy as np
import pytest

from conftest import encode_with_av, make_bad_audio_files
from unbake.audio import (AudioWriter, StreamResampler, apply_clip, clip_gain, convert_channels, downmix,
                          info, iter_blocks, read_audio, read_stems, resample, write_audio)
from unbake.audio.dsp import as_channels_first, check_input_channels
from unbake.errors import AudioError, ChannelLayoutError, InvalidAudioError, OutputError, OutputExistsError


def _snr(ref, est):
    n = min(ref.shape[-1], est.shape[-1])
    ref, est = ref[..., :n], est[..., :n]
    return 10 * np.log10((ref ** 2).sum() / max(((ref - est) ** 2).sum(), 1e-30))


@pytest.mark.parametrize("ext,kwargs,min_snr", [
    ("wav", {"bit_depth": "16"}, 80), ("wav", {"bit_depth": "24"}, 120), ("wav", {"bit_depth": "32f"}, 200),
    ("flac", {"bit_depth": "16"}, 80), ("flac", {"bit_depth": "24"}, 120), ("aiff", {}, 80),
])
def test_lossless_round_trip(tmp_path, mix, ext, kwargs, min_snr):
    p = write_audio(tmp_path / f"x.{ext}", mix, 44100, **kwargs)
    back, sr = read_audio(p)
    assert sr == 44100 and back.shape == mix.shape
    assert _snr(mix, back) > min_snr


def test_mp3_bitrate_and_ogg(tmp_path, mix):
    lo = write_audio(tmp_path / "lo.mp3", mix, 44100, mp3_bitrate=64)
    hi = write_audio(tmp_path / "hi.mp3", mix, 44100, mp3_bitrate=320)
    assert lo.stat().st_size < hi.stat().st_size
    back, sr = read_audio(hi)
    assert sr == 44100 and back.shape[0] == 2 and abs(back.shape[1] - mix.shape[1]) < 4096
    ogg = write_audio(tmp_path / "x.ogg", mix, 44100)
    assert read_audio(ogg)[0].shape[0] == 2


@pytest.mark.parametrize("name,codec,video", [
    ("x.m4a", "aac", False), ("x.opus", "libopus", False), ("x.mp4", "aac", True), ("x.mkv", "flac", True),
])
def test_containers_read_with_pyav(tmp_path, mix, name, codec, video):
    p = encode_with_av(tmp_path / name, mix, 44100, codec, video=video)
    audio, sr = read_audio(p)
    assert audio.shape[0] == 2 and audio.shape[1] > 0.9 * mix.shape[1]
    meta = info(p)
    assert meta.channels == 2 and meta.sample_rate == sr and meta.duration_s > 1.5


def test_reads_every_stream_of_stems_file(example_song):
    stems, sr = read_stems(example_song)
    assert list(stems) == ["mixture", "drums", "bass", "other", "vocals"]
    assert sr == 44100
    shapes = {v.shape for v in stems.values()}
    assert len(shapes) == 1 and next(iter(shapes))[0] == 2
    meta = info(example_song)
    assert len(meta.streams) == 5


def test_blocks_are_fixed_size(wav_file):
    sr, ch, blocks = iter_blocks(wav_file, block_frames=10000)
    sizes = [b.shape[1] for b in blocks]
    assert all(s == 10000 for s in sizes[:-1]) and sum(sizes) == 88200 and ch == 2


def test_bad_files(tmp_path, mix):
    bad = make_bad_audio_files(tmp_path, mix)
    flac = write_audio(tmp_path / "good.flac", mix, 44100, bit_depth="16")
    cut_flac = tmp_path / "cut.flac"
    cut_flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 3])
    for p in (bad["text"], bad["empty"], bad["missing"], bad["truncated"], cut_flac):
        with pytest.raises(AudioError) as err:
            read_audio(p)
        assert str(p.name) in str(err.value)


def test_zero_length_and_nan(tmp_path, mix):
    bad = make_bad_audio_files(tmp_path, mix)
    with pytest.raises(InvalidAudioError):
        read_audio(bad["zero"])
    with pytest.raises(InvalidAudioError, match="NaN"):
        read_audio(bad["nan"])


def test_writer_is_atomic(tmp_path, mix):
    target = tmp_path / "out.wav"
    with pytest.raises(RuntimeError):
        with AudioWriter(target, 44100, 2) as w:
            w.write(mix[:, :1000])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    write_audio(target, mix, 44100)
    with pytest.raises(OutputExistsError):
        AudioWriter(target, 44100, 2)
    with pytest.raises(OutputError):
        write_audio(tmp_path / "x.wav", mix, 44100, bit_depth="12")


def test_resample_stream_matches_length_and_whole(mix):
    for sr_out in (48000, 22050, 44100):
        whole = resample(mix, 44100, sr_out)
        rs = StreamResampler(44100, sr_out, 2)
        parts = [rs.process(mix[:, i:i + 7000]) for i in range(0, mix.shape[1], 7000)] + [rs.flush()]
        streamed = np.concatenate(parts, axis=1)
        assert streamed.shape[1] == round(mix.shape[1] * sr_out / 44100)
        n = min(whole.shape[1], streamed.shape[1])
        assert _snr(whole[:, 1000:n - 1000], streamed[:, 1000:n - 1000]) > 60


def test_channels():
    mono = np.ones((1, 10), np.float32)
    assert convert_channels(mono, 2).shape == (2, 10)
    assert convert_channels(np.ones((2, 10), np.float32), 1).shape == (1, 10)
    with pytest.raises(ChannelLayoutError, match="downmix"):
        check_input_channels(6, downmix=False)
    assert check_input_channels(6, downmix=True) == 2
    six = np.ones((6, 10), np.float32)
    assert np.allclose(downmix(six, 2), 1.0)
    with pytest.raises(ChannelLayoutError):
        as_channels_first(np.zeros((44100, 2), np.float32))
    with pytest.raises(InvalidAudioError):
        as_channels_first(np.zeros((2, 0), np.float32))


def test_clip_modes():
    x = np.array([[0.5, 2.0, -3.0]], np.float32)
    g = clip_gain(3.0, "rescale")
    assert np.abs(apply_clip(x, "rescale", g)).max() < 1.0
    assert np.abs(apply_clip(x, "clamp")).max() <= 0.99
    assert np.array_equal(apply_clip(x, "none"), x)
    assert clip_gain(0.5, "rescale") == 1.0
