"""Mash-up projects: validation errors name the key, placement is sample-exact, routing puts
tracks where asked, and a real two-song mash-up renders to spec."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from unbake.errors import ConfigError
from unbake.mashup.project import Mashup, MashupProject
from unbake.stems import StemSet

SR = 44100
MUSDB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "musdb18-7s" / "train"


@pytest.fixture
def clicks_song(tmp_path) -> Path:
    """A 3 s stereo 'song': stem `click` holds one impulse at 1.0 s, stem `pad` a quiet tone."""
    click = np.zeros((2, 3 * SR), np.float32)
    click[:, SR] = 0.5
    t = np.arange(3 * SR) / SR
    pad = np.stack([0.1 * np.sin(2 * np.pi * 220 * t)] * 2).astype(np.float32)
    folder = tmp_path / "song"
    StemSet({"click": click, "pad": pad}, SR).save(folder, bit_depth="32f")
    return folder


def parse(data: dict, base: Path | None = None) -> MashupProject:
    return MashupProject.parse(data, base)


def write_project(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "mashup.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("songs"), "songs: is required"),
    (lambda d: d.update(tempo=120), "tempo: unknown key"),
    (lambda d: d["songs"].update(b={"path": "nowhere.wav"}), "songs.b.path: no such file or folder"),
    (lambda d: d["songs"]["s"].update(model="htdemucs"), "songs.s.model: "),
    (lambda d: d["songs"]["s"].update(key="H major"), "songs.s.key: not a key"),
    (lambda d: d["songs"]["s"].update(bpm=-3), "songs.s.bpm: must be between"),
    (lambda d: d.update(reference="zz"), "reference: no song 'zz'"),
    (lambda d: d.update(tracks=[]), "tracks: must be a non-empty list"),
    (lambda d: d["tracks"][0].update(stem="click"), "tracks[0].stem: must be song:stem"),
    (lambda d: d["tracks"][0].update(stem="x:click"), "tracks[0].stem: no song 'x'"),
    (lambda d: d["tracks"][0].update(chanel="left"), "tracks[0].chanel: unknown key; did you mean 'channel'?"),
    (lambda d: d["tracks"][0].update(channel="middle"), "tracks[0].channel: must be one of left, right, both"),
    (lambda d: d["tracks"][0].update(channel="left", pan=0.5), "tracks[0].channel: give either channel"),
    (lambda d: d["tracks"][0].update(stretch=1.1, to_bpm=120), "tracks[0].stretch: give either"),
    (lambda d: d["tracks"][0].update(stretch=9), "tracks[0].stretch: must be between"),
    (lambda d: d["tracks"][0].update(semitones=30), "tracks[0].semitones: must be between"),
    (lambda d: d["tracks"][0].update(semitones="up"), "tracks[0].semitones: must be a number"),
    (lambda d: d["tracks"][0].update(offset=0.1, align="beats"), "tracks[0].offset: give either"),
    (lambda d: d["tracks"][0].update(align="bar"), "tracks[0].align: must be one of beats, bars"),
    (lambda d: d["tracks"][0].update(align="beats"), "tracks[0].align: needs at least one track without"),
    (lambda d: d["tracks"][0].update(to_bpm="auto"), "reference: is required"),
    (lambda d: d["tracks"][0].update(sections=[{"from": 2, "to": 1}]), "tracks[0].sections[0].to: must be after"),
    (lambda d: d["tracks"][0].update(sections=[{"from": "1:75", "to": 3}]), "tracks[0].sections[0].from: "),
    (lambda d: d["tracks"][0].update(sections=[{"from": 0}]), "tracks[0].sections[0].to: is required"),
    (lambda d: d["tracks"][0].update(gain_db=50), "tracks[0].gain_db: must be between"),
    (lambda d: d["tracks"][0].update(eq=[{"type": "peak"}]), "tracks[0].eq[0].freq_hz: is required"),
    (lambda d: d.update(master={"loudness_lufs": 3}), "master.loudness_lufs: must be between"),
    (lambda d: d.update(output={"format": "ogg"}), "output.format: must be one of"),
])
def test_validation_errors_name_the_key(clicks_song, change, message):
    data = {"songs": {"s": {"path": str(clicks_song)}}, "tracks": [{"stem": "s:click"}]}
    change(data)
    with pytest.raises(ConfigError) as err:
        parse(data, clicks_song.parent)
    assert message in str(err.value)


def test_unknown_stem_and_late_section_are_reported_at_render(clicks_song):
    data = {"songs": {"s": str(clicks_song)}, "tracks": [{"stem": "s:vocals"}]}
    with pytest.raises(ConfigError, match=r"tracks\[0\]\.stem: song 's' has no stem 'vocals'; its stems are"):
        Mashup(parse(data)).render()
    data["tracks"] = [{"stem": "s:click", "sections": [{"from": 1, "to": 9}]}]
    with pytest.raises(ConfigError, match=r"tracks\[0\]\.sections\[0\]\.to: 9 s is after the end"):
        Mashup(parse(data)).render()


def test_project_file_errors_name_the_file(tmp_path, clicks_song):
    p = write_project(tmp_path, {"songs": {"s": str(clicks_song)}, "tracks": [{"stem": "s:click", "pan": 3}]})
    with pytest.raises(ConfigError, match=r"mashup\.yaml: tracks\[0\]\.pan: must be between"):
        MashupProject.load(p)


# ------------------------------------------------------------------------------ placement and routing


def test_sections_are_cut_in_source_time_and_placed_in_timeline_time(clicks_song):
    data = {
        "songs": {"s": str(clicks_song)}, "fade_ms": 0,
        "tracks": [
            # source 0.5..1.5 s placed at 3.0 s, moved by a manual offset: the click lands at 3.75 s
            {"stem": "s:click", "sections": [{"from": 0.5, "to": 1.5, "at": 3.0}], "offset": 0.25},
            # whole song from 1.0 s, 0.5 s earlier: the click lands at 1.5 s
            {"stem": "s:click", "start": 1.0, "offset": -0.5, "gain_db": -6},
        ],
    }
    job = Mashup(parse(data))
    out = job.render()
    assert out.shape == (2, int(round(4.25 * SR)))
    loud = np.flatnonzero(np.abs(out[0]) > 1e-4)
    assert list(loud) == [int(1.5 * SR), int(3.75 * SR)]
    assert out[0, int(3.75 * SR)] == pytest.approx(0.5)
    assert out[0, int(1.5 * SR)] == pytest.approx(0.5 * 10 ** (-6 / 20), rel=1e-4)


def test_sections_follow_each_other_and_stretch_maps_source_times(clicks_song):
    data = {
        "songs": {"s": str(clicks_song)}, "fade_ms": 0,
        "tracks": [{"stem": "s:click", "stretch": 0.5, "start": 0.2,
                    "sections": [{"from": 0, "to": 0.5}, {"from": 0.5, "to": 1.5}]}],
    }
    out = Mashup(parse(data)).render()
    # at rate 0.5 the sections last 1 s and 2 s; the second starts at 1.2 s and holds the click
    # (source 1.0 s = 1.0 s into the section at half speed)
    assert out.shape[1] == int(round(3.2 * SR))
    peak = int(np.argmax(np.abs(out[0])))
    assert abs(peak - int(2.2 * SR)) < 0.010 * SR  # Rubber Band moves a lone click by a few ms


@pytest.mark.parametrize("channel, side", [("left", 0), ("right", 1)])
def test_channel_routing_puts_the_fold_down_on_one_side(clicks_song, channel, side):
    data = {"songs": {"s": str(clicks_song)}, "tracks": [{"stem": "s:pad", "channel": channel}]}
    out = Mashup(parse(data)).render()
    assert np.all(out[1 - side] == 0.0)
    t = np.arange(3 * SR) / SR
    expected = np.sqrt(2) * 0.1 * np.sin(2 * np.pi * 220 * t)  # constant-power law, hard side
    assert np.allclose(out[side], expected, atol=1e-5)


def test_cli_mashup_writes_and_refuses_to_overwrite(tmp_path, clicks_song):
    from typer.testing import CliRunner

    from unbake.audio import read_audio
    from unbake.cli import app

    p = write_project(tmp_path, {"songs": {"s": str(clicks_song)},
                                 "tracks": [{"stem": "s:mix", "semitones": 2, "channel": "both"}],
                                 "output": {"path": "from-project.wav"}})
    target = tmp_path / "out.wav"
    res = CliRunner().invoke(app, ["mashup", str(p), "-o", str(target)])
    assert res.exit_code == 0, res.output
    audio, sr = read_audio(target)
    assert sr == SR and audio.shape == (2, 3 * SR)
    assert np.allclose(audio[0], audio[1])
    res = CliRunner().invoke(app, ["mashup", str(p), "-o", str(target)])
    assert res.exit_code == 1 and "already exists" in res.output
    res = CliRunner().invoke(app, ["mashup", str(p)])
    assert res.exit_code == 0 and (tmp_path / "from-project.wav").is_file()


# ------------------------------------------------------------------------------ real songs


SONG_A = "Actions - Devil's Words"   # vocals taken from here
SONG_B = "AvaLuna - Waterduct"       # drums, bass and other taken from here


def _stems_folder(name: str, folder: Path) -> Path:
    from unbake.audio import read_stems

    stems, sr = read_stems(MUSDB / f"{name}.stem.mp4")  # mixture, drums, bass, other, vocals
    stems.pop("mixture")
    StemSet(stems, sr).save(folder, bit_depth="32f")
    return folder


@pytest.mark.slow
@pytest.mark.needs_shared
@pytest.mark.skipif(not (MUSDB / f"{SONG_A}.stem.mp4").is_file() or not (MUSDB / f"{SONG_B}.stem.mp4").is_file(),
                    reason="musdb18-7s previews not available")
def test_real_mashup_vocals_right_band_left(tmp_path):
    from unbake.audio import read_audio
    from unbake.remix.master import integrated_lufs
    from unbake.analysis.transforms import stretch_and_shift

    a = _stems_folder(SONG_A, tmp_path / "a")
    b = _stems_folder(SONG_B, tmp_path / "b")
    data = {
        "songs": {"a": {"path": str(a)}, "b": {"path": str(b)}},
        "reference": "b",
        "tracks": [
            {"stem": "a:vocals", "semitones": "auto", "to_bpm": "auto", "preserve_formants": True,
             "align": "beats", "channel": "right"},
            {"stem": "b:drums+bass+other", "channel": "left"},
        ],
        "master": {"loudness_lufs": -16, "true_peak_db": -1},
        "output": {"path": "mashup.wav"},
    }
    job = Mashup(MashupProject.load(write_project(tmp_path, data)))
    written = job.render_project(tmp_path / "out.wav")
    out, sr = read_audio(written)
    assert np.isfinite(out).all() and out.shape[0] == 2

    sa, sb = job.stems("a"), job.stems("b")
    plan = job.match_plan("a")
    assert abs(plan.semitones) <= 6 and 0.8 < plan.rate < 1.25
    assert job.analyses["b"].bpm > 0 and job.analyses["a"].key.mode in ("major", "minor")
    offset_s = job.placements[0]["offset_s"]
    assert job.placements[0]["rate"] == plan.rate and job.placements[0]["semitones"] == plan.semitones
    assert abs(offset_s) <= 0.5 * 60 / job.analyses["b"].bpm + 1e-3  # align: beats moves < 1/2 beat

    # length: the later of the band's end and the stretched, shifted vocals' end
    vocals = stretch_and_shift(sa["vocals"], sr, rate=plan.rate, semitones=plan.semitones,
                               preserve_formants=True).mean(axis=0)
    start = int(round(offset_s * sr))
    assert out.shape[1] == max(sb.frames, start + vocals.size)

    # channel placement: the right channel is the vocals, the left one the band
    lane = np.zeros(out.shape[1])
    lo = max(start, 0)
    lane[lo:start + vocals.size] = vocals[lo - start:]
    band = np.zeros(out.shape[1])
    band[: sb.frames] = (sb["drums"] + sb["bass"] + sb["other"]).mean(axis=0)

    def corr(x, y):
        return float(np.corrcoef(x, y)[0, 1])

    assert corr(out[1], lane) > 0.95
    assert corr(out[0], band) > 0.95
    assert abs(corr(out[0], lane)) < 0.2 and abs(corr(out[1], band)) < 0.2

    # the master bus met its loudness target and ceiling
    assert integrated_lufs(out, sr) == pytest.approx(-16.0, abs=0.5)
    from unbake.remix.master import true_peak_db

    assert true_peak_db(out) <= -1.0 + 0.05


def test_align_beats_finds_a_known_delay(tmp_path):
    """Song A is song B's beat (kick on the beat, hi-hat between) started 0.1 s late, plus a
    'vocals' stem; aligning A's vocals to B must move them 0.1 s earlier, not onto the off-beat."""
    rng = np.random.default_rng(7)
    n = 5 * SR
    t = np.arange(int(0.2 * SR)) / SR
    kick = np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-t * 30)) / SR) * np.exp(-t * 15)
    hat = 0.3 * np.diff(rng.standard_normal(t.size), prepend=0) * np.exp(-t * 150)
    beat = np.zeros(n, np.float32)
    for i in range(10):                                  # 120 BPM
        for sound, at_s in ((kick, 0.5 * i), (hat, 0.5 * i + 0.25)):
            p = int(at_s * SR)
            beat[p:p + t.size] += sound[: n - p]
    delay = int(0.1 * SR)
    late = np.concatenate([np.zeros(delay, np.float32), beat[:-delay]])
    tone = 0.05 * np.sin(2 * np.pi * 330 * np.arange(n) / SR).astype(np.float32)
    StemSet({"drums": np.stack([beat] * 2), "bass": np.stack([tone] * 2)}, SR).save(tmp_path / "b")
    StemSet({"drums": np.stack([late] * 2), "vocals": np.stack([tone] * 2)}, SR).save(tmp_path / "a")
    data = {"songs": {"a": str(tmp_path / "a"), "b": str(tmp_path / "b")},
            "tracks": [{"stem": "b:drums"}, {"stem": "a:vocals", "align": "beats"}]}
    job = Mashup(parse(data))
    job.render()
    assert job.placements[1]["offset_s"] == pytest.approx(-0.1, abs=0.010)
    assert re.search(r"offset -0\.(09\d|10\d) s \(align: beats\)", job.notes[1])


# ------------------------------------------------------------------------------ sync, warp, bars


def test_sync_warp_and_bars_validation(clicks_song):
    songs = {"a": str(clicks_song), "b": str(clicks_song)}
    cases = [
        ({"stem": "a:click", "sync": "c"}, r"tracks\[0\]\.sync: no song 'c'"),
        ({"stem": "a:click", "sync": "a"}, r"tracks\[0\]\.sync: a song cannot follow itself"),
        ({"stem": "a:click", "sync": "b", "to_bpm": 100}, r"tracks\[0\]\.to_bpm: does not combine with `sync`"),
        ({"stem": "a:click", "sync": "b", "warp": {"to_bpm": 100}}, r"tracks\[0\]\.warp: give either"),
        ({"stem": "a:click", "warp": {"bpm": 100}}, r"tracks\[0\]\.warp"),
        ({"stem": "a:click", "sections": [{"bars": "3-4"}]}, r"tracks\[0\]\.sections: `bars` needs"),
        ({"stem": "a:click", "sync": "b", "sections": [{"bars": "4-3"}]}, r"sections\[0\]\.bars: bars count from 1"),
        ({"stem": "a:click", "sync": "b", "sections": [{"bars": "x"}]}, r"sections\[0\]\.bars: must be a bar"),
    ]
    for track, message in cases:
        with pytest.raises(ConfigError, match=message):
            parse({"songs": songs, "tracks": [track, {"stem": "b:pad"}]})


def _sync_test_module():
    """tests/analysis/test_sync.py (its synthetic performances), loaded by path: importable by
    name only when pytest has collected that folder too."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "analysis" / "test_sync.py"
    spec = importlib.util.spec_from_file_location("_sync_performances", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cover_songs(tmp_path_factory):
    """Song b: a tune on piano at a steady 100 BPM (stems band); song a: the same tune sung
    ('vocals', another timbre) 3 semitones up with rubato, a fermata and a rushed phrase."""
    sync = _sync_test_module()
    SYNC_SR, render, rubato, score, steady = sync.SR, sync.render, sync.rubato, sync.score, sync.steady
    root = tmp_path_factory.mktemp("cover")
    notes = score()
    b = render(notes, steady(100, 0.5), timbre="piano")
    a = render(notes, rubato(100, seed=1), timbre="reed", transpose=3, seed=5)
    StemSet({"band": np.stack([b, b])}, SYNC_SR).save(root / "b")
    StemSet({"vocals": np.stack([a, a])}, SYNC_SR).save(root / "a")
    return root, SYNC_SR


@pytest.mark.slow
def test_project_sync_places_bars_at_the_target_bar(cover_songs):
    import librosa

    root, sr = cover_songs
    data = {"songs": {"a": str(root / "a"), "b": str(root / "b")},
            "tracks": [{"stem": "a:vocals", "sync": "b", "channel": "left", "sections": [{"bars": "3-4"}]},
                       {"stem": "b:band", "channel": "right"}]}
    job = Mashup(parse(data))
    out = job.render(mastering=False)
    assert "synced to b" in job.notes[0] and "shift -3 semitones" in job.notes[0]
    bar3_s, bar5_s = 0.5 + 8 * 0.6, 0.5 + 16 * 0.6  # b: 100 BPM from 0.5 s, 4 beats a bar
    left = np.abs(out[0])
    on = np.flatnonzero(left > 1e-4)
    assert on[0] / sr == pytest.approx(bar3_s, abs=0.020) and on[-1] / sr == pytest.approx(bar5_s, abs=0.020)
    # the notes of A's bars 3-4 sound on B's beats there
    found = librosa.onset.onset_detect(y=out[0], sr=sr, hop_length=128, units="time")
    beats = bar3_s + 0.6 * np.arange(8)
    err = np.array([np.min(np.abs(found - t)) for t in beats])
    assert np.median(err) <= 0.030, err


@pytest.mark.slow
def test_project_warp_to_a_grid_renders_bars_from_zero(cover_songs):
    root, sr = cover_songs
    data = {"songs": {"a": str(root / "a")},
            "tracks": [{"stem": "a:vocals", "warp": {"to_bpm": 120}, "sections": [{"bars": 2}]}]}
    job = Mashup(parse(data))
    out = job.render(mastering=False)
    on = np.flatnonzero(np.abs(out[0]) > 1e-4)
    assert on[0] / sr == pytest.approx(2.0, abs=0.005) and on[-1] / sr == pytest.approx(4.0, abs=0.005)
    assert "120 BPM grid" in job.notes[0]


# ------------------------------------------------------------------------------ --vocals A --band B


def _beat(n: int, delay_s: float, rng) -> np.ndarray:
    """Kick on the beat, hi-hat between, at 120 BPM, starting ``delay_s`` late: ``(2, n)``."""
    t = np.arange(int(0.2 * SR)) / SR
    kick = np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-t * 30)) / SR) * np.exp(-t * 15)
    hat = 0.3 * np.diff(rng.standard_normal(t.size), prepend=0) * np.exp(-t * 150)
    beat = np.zeros(n, np.float32)
    for i in range(int(n / SR * 2)):
        for sound, at_s in ((kick, delay_s + 0.5 * i), (hat, delay_s + 0.5 * i + 0.25)):
            p = int(at_s * SR)
            if p < n:
                beat[p:p + t.size] += sound[: n - p]
    return np.stack([beat] * 2)


def _tone(n: int, hz: float, level: float) -> np.ndarray:
    return np.stack([level * np.sin(2 * np.pi * hz * np.arange(n) / SR)] * 2).astype(np.float32)


@pytest.fixture
def two_songs(tmp_path) -> tuple[Path, Path]:
    """Song A (5 s): a beat and 'vocals'; song B (4 s): a beat, a bass and its own vocals at a
    quarter of A's amplitude (12.04 dB lower)."""
    rng = np.random.default_rng(3)
    a, b = tmp_path / "song a", tmp_path / "song b"
    StemSet({"drums": _beat(5 * SR, 0.1, rng), "vocals": _tone(5 * SR, 440, 0.2)}, SR).save(a, bit_depth="32f")
    StemSet({"drums": _beat(4 * SR, 0.0, rng), "bass": _tone(4 * SR, 110, 0.2),
             "vocals": _tone(4 * SR, 440, 0.05)}, SR).save(b, bit_depth="32f")
    return a, b


def test_vocals_over_band_project(two_songs, tmp_path):
    from unbake.mashup.quick import project_text, vocals_over_band

    a, b = two_songs
    plan = vocals_over_band(a, b, output=tmp_path / "out.wav")
    vocals, band = plan.data["tracks"]
    assert vocals["stem"] == "a:vocals" and band["stem"] == "b:drums+bass"   # every stem of B but its vocals
    assert vocals["to_bpm"] == vocals["semitones"] == "auto" and vocals["align"] == "beats"
    assert plan.data["reference"] == "b"
    # A's vocals brought to the loudness of B's own (same signal shape, 1/4 the amplitude)
    assert vocals["gain_db"] == pytest.approx(20 * np.log10(0.25), abs=0.06)
    # the written project file is the same project
    assert (MashupProject.parse(yaml.safe_load(project_text(plan))).model_dump()
            == MashupProject.parse(plan.data).model_dump())

    job = Mashup(MashupProject.parse(plan.data), stems=plan.stems)
    out = job.render()
    assert out.shape == (2, 4 * SR)                      # the band's length
    # A's beat is 0.1 s late: moved back onto B's (not onto the off-beat, 0.25 s away); the two
    # tempo estimates differ by about 1 %, so the beats drift by some 20 ms over the song
    assert -0.13 < job.placements[0]["offset_s"] < -0.08


def test_vocals_over_band_without_vocals(tmp_path, two_songs):
    from unbake.mashup.quick import vocals_over_band

    a, b = two_songs
    no_vocals = tmp_path / "instrumental"
    StemSet({"drums": _beat(3 * SR, 0.0, np.random.default_rng(1))}, SR).save(no_vocals)
    plan = vocals_over_band(a, no_vocals)
    assert plan.data["tracks"][0]["gain_db"] == 0.0 and plan.data["tracks"][1]["stem"] == "b:drums"
    assert "no vocals stem to match" in plan.gain_note
    with pytest.raises(ConfigError, match=r"--vocals .*instrumental: has no vocals stem; its stems are drums"):
        vocals_over_band(no_vocals, b)
    only_vocals = tmp_path / "a cappella"
    StemSet({"vocals": _tone(SR, 220, 0.1)}, SR).save(only_vocals)
    with pytest.raises(ConfigError, match="has no stem besides vocals"):
        vocals_over_band(a, only_vocals)


def test_cli_mashup_vocals_band_and_init(tmp_path, two_songs, monkeypatch):
    from typer.testing import CliRunner

    from unbake.audio import read_audio
    from unbake.cli import app

    a, b = two_songs
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke
    res = run(app, ["mashup", "--vocals", str(a), "--band", str(b)])
    assert res.exit_code == 0, res.output
    written = tmp_path / "song a-over-song b.wav"          # the default name
    audio, sr = read_audio(written)
    assert sr == SR and audio.shape == (2, 4 * SR)
    assert "vocals -12.0 dB" in res.output and re.search(r"offset -0\.(08|09|1[0-2])\d s", res.output)

    res = run(app, ["mashup", "--init", "--vocals", str(a), "--band", str(b), "-o", "again.wav"])
    assert res.exit_code == 0, res.output
    (tmp_path / "m.yaml").write_text(res.stdout)
    res = run(app, ["mashup", "m.yaml"])
    assert res.exit_code == 0, res.output
    again, _ = read_audio(tmp_path / "again.wav")
    assert np.array_equal(again, audio)                   # the project file renders the same mash-up

    before = sorted(p.name for p in tmp_path.iterdir())
    for args, message in [
        (["--vocals", str(a), "--band", str(b)], "already exists"),
        (["m.yaml", "--vocals", str(a), "--band", str(b)], "not both"),
        (["--vocals", str(a)], "--vocals and --band go together"),
        ([], "give a project file, or --vocals A --band B"),
        (["m.yaml", "--init"], "--init goes with --vocals/--band"),
        (["m.yaml", "-n", "htdemucs"], "-n goes with --vocals/--band"),
        (["--vocals", str(tmp_path / "missing.mp3"), "--band", str(b), "-o", "x.wav"], "no such file"),
    ]:
        res = run(app, ["mashup", *args])
        assert res.exit_code != 0 and message in res.output, (args, res.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == before   # nothing written by the failures
