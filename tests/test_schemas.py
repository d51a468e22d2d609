"""The file formats declared as pydantic models: what is derived from them (the neutral mixer,
the `remix --init` template), hostile YAML, bounded mash-up lengths and the shipped examples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from unbake import StemSet
from unbake._schema import MAX_INT_DIGITS, MAX_YAML_DEPTH, validate, value_type
from unbake.cli import app
from unbake.errors import ConfigError
from unbake.mashup import MashupProject
from unbake.remix import Project, Remix, Source, init_project, neutral_settings
from unbake.remix.schema import CompressorSettings, MasterSettings, MixerSettings, TrackSettings

REPO = Path(__file__).resolve().parents[1]
SR = 44100
runner = CliRunner()


@pytest.fixture
def stems_dir(tmp_path) -> Path:
    rng = np.random.default_rng(5)
    t = np.arange(SR) / SR
    stems = {"vocals": np.stack([0.2 * np.sin(2 * np.pi * 440 * t)] * 2),
             "drums": 0.1 * rng.standard_normal((2, t.size)),
             "bass": np.stack([0.3 * np.sin(2 * np.pi * 55 * t)] * 2)}
    folder = tmp_path / "stems"
    StemSet({k: v.astype(np.float32) for k, v in stems.items()}, SR).save(folder, bit_depth="32f")
    return folder


# ------------------------------------------------------------------------------ derived from the models


def test_neutral_settings_are_the_model_defaults_and_render_the_plain_sum(stems_dir):
    neutral = neutral_settings()
    assert json.loads(json.dumps(neutral)) == neutral  # served as JSON as it is
    assert neutral["track"] == TrackSettings().model_dump(mode="json", by_alias=True)
    assert set(neutral["master"]) == set(MasterSettings.file_keys())
    stems = StemSet.load(stems_dir)
    data = {"tracks": {name: neutral["track"] for name in stems.names}, "master": neutral["master"]}
    project = Project.parse(data, source=Source(stems=stems_dir))
    assert project.master.neutral
    assert np.abs(Remix.from_parsed(project).render() - stems.mixture()).max() <= 1e-6


def test_init_template_follows_the_declaration(stems_dir):
    text = init_project(Source(stems=stems_dir))
    lines = text.splitlines()
    first_track = lines.index(next(line for line in lines if line.strip() == "vocals:"))
    block = lines[first_track + 1: first_track + 1 + len(TrackSettings.file_keys())]
    for key, field in zip(TrackSettings.file_keys(), TrackSettings.model_fields.values()):
        line = next(line for line in block if line.strip().lstrip("# ").startswith(f"{key}:"))
        rule = value_type(field)
        if rule is not None and getattr(rule, "range_text", None) and rule.range_text():
            assert rule.range_text() in line.partition(" # ")[2], line
    parsed = yaml.safe_load(text)
    assert parsed["tracks"]["vocals"]["gain_db"] == TrackSettings.model_fields["gain_db"].default
    project = Project.parse(parsed, stems_dir.parent)
    # every value at its default; the compressor is written out at its (neutral) defaults
    expected = TrackSettings(compressor=CompressorSettings()).model_dump()
    assert all(t.model_dump() == expected for t in project.tracks.values())


def test_studio_settings_body_is_checked_by_the_same_models():
    with pytest.raises(ConfigError, match=r"^tracks\.a\.pan: must be between -1 and 1, got 3$"):
        validate(MixerSettings, {"tracks": {"a": {"pan": 3}}})
    with pytest.raises(ConfigError, match=r"^tracks\.a\.gain_db: must be a finite number, got a 1001-digit number"):
        validate(MixerSettings, {"tracks": {"a": {"gain_db": 10 ** 1000}}})
    with pytest.raises(ConfigError, match=r"^trakcs: unknown key; did you mean 'tracks'\? \(allowed: tracks, master\)"):
        validate(MixerSettings, {"trakcs": {}})


# ------------------------------------------------------------------------------ hostile YAML


HOSTILE = {
    "long integer": ("stems: stems\ntracks:\n  vocals: {gain_db: " + "9" * 1000 + "}\n",
                     f"a 1000-digit number at line 3 (at most {MAX_INT_DIGITS} digits)"),
    "deep nesting": ("stems: stems\ntracks: " + "[" * 50_000 + "]" * 50_000 + "\n",
                     f"nested more than {MAX_YAML_DEPTH} levels deep"),
    "deep block nesting": ("stems: stems\n" + "".join(" " * i + f"k{i}:\n" for i in range(200)),
                           f"nested more than {MAX_YAML_DEPTH} levels deep"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_yaml_is_one_clear_error(tmp_path, stems_dir, kind):
    text, needle = HOSTILE[kind]
    project = tmp_path / "project.yaml"
    project.write_text(text)
    with pytest.raises(ConfigError) as exc:
        Project.load(project)
    assert needle in str(exc.value) and str(exc.value).startswith(str(project))
    for command in ("remix", "mashup"):
        res = runner.invoke(app, [command, str(project), "-o", str(tmp_path / "out.wav")])
        assert res.exit_code != 0 and "Traceback" not in res.output
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and needle in errors[0], res.output


def test_studio_project_upload_refuses_hostile_yaml(stems_dir):
    from unbake.studio.remixing import settings_from_project

    text, needle = HOSTILE["deep nesting"]
    with pytest.raises(ConfigError, match=needle):
        settings_from_project(text, ["vocals"], stems_dir)


# ------------------------------------------------------------------------------ mash-up lengths


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(length="10:00:00"), "length: must be at most 30:00.000 (1800 s), got '10:00:00'"),
    (lambda d: d["tracks"][0].update(start="9:00:00"), "tracks[0].start: must be at most 30:00.000"),
    (lambda d: d["tracks"][0].update(offset=-99999), "tracks[0].offset: must be at most 30:00.000"),
])
def test_mashup_lengths_are_bounded_before_anything_is_allocated(stems_dir, change, message):
    data = {"songs": {"s": str(stems_dir)}, "tracks": [{"stem": "s:vocals"}]}
    change(data)
    with pytest.raises(ConfigError) as exc:
        MashupProject.parse(data)
    assert message in str(exc.value)


# ------------------------------------------------------------------------------ the examples


@pytest.fixture
def examples(tmp_path) -> Path:
    """The shipped examples, with the example song linked next to them as their header says."""
    from unbake.audio import example_path

    folder = tmp_path / "examples"
    shutil.copytree(REPO / "examples", folder)
    (folder / "example.stem.mp4").symlink_to(example_path())
    return folder


def test_examples_validate_on_the_example_song(examples):
    project = Project.load(examples / "remix.yaml")
    assert project.song == examples / "example.stem.mp4"
    assert set(project.tracks) == {"vocals", "drums", "bass", "other"}
    mashup = MashupProject.load(examples / "mashup.yaml")
    assert {s.path for s in mashup.songs.values()} == {examples / "example.stem.mp4"}


def test_examples_name_only_files_a_user_has():
    for name in ("remix.yaml", "mashup.yaml"):
        assert "shared" not in (REPO / "examples" / name).read_text()


@pytest.mark.slow
def test_remix_example_renders(examples, tmp_path, monkeypatch):
    monkeypatch.setenv("UNBAKE_CACHE", str(tmp_path / "cache"))
    res = runner.invoke(app, ["remix", str(examples / "remix.yaml"), "-o", str(tmp_path / "remix.wav")])
    assert res.exit_code == 0, res.output
    from unbake.audio import read_audio

    audio, sr = read_audio(tmp_path / "remix.wav")
    assert sr == SR and audio.shape[0] == 2 and np.abs(audio).max() > 0.01


# ------------------------------------------------------------------------------ the catalogue and the training config


CATALOGUE_MODEL = """
[models.m]
architecture = "htdemucs"
format = "demucs-th"
sources = ["drums", "bass"]
samplerate = 44100
"""


@pytest.mark.parametrize("extra, message", [
    ('descripton = "typo"\n', "catalogue: models.m.descripton: unknown key; did you mean 'description'?"),
    ("config = {channels = 4096}\n", "catalogue: models.m.config: htdemucs setting channels: must be between 1 and 512"),
    ("samplerate = -1\n[models.n]\n", "catalogue: models.m.samplerate: must be between 4000 and 384000, got -1"),
    ('precision = "half"\n', "catalogue: models.m.precision: must be one of float32, bfloat16, float16, int8, fast, got 'half'"),
    ('[ensembles.e]\nmodels = ["m"]\nsources = ["drums"]\nmethod = "mean"\n',
     "catalogue: ensembles.e.method: must be one of average, median, got 'mean'"),
    ('[ensembles.e]\nmodels = ["m"]\nsources = ["drums"]\nweigths = [[1.0]]\n',
     "catalogue: ensembles.e.weigths: unknown key; did you mean 'weights'?"),
])
def test_catalogue_errors_name_the_key(extra, message):
    from unbake.hub.catalogue import parse_catalogue

    text = CATALOGUE_MODEL.replace("samplerate = 44100\n", "") if extra.startswith("samplerate") else CATALOGUE_MODEL
    with pytest.raises(ConfigError) as exc:
        parse_catalogue(text + extra)
    assert message in str(exc.value)


def test_shipped_catalogue_parses_with_every_setting_in_range():
    from unbake.hub.catalogue import CATALOGUE_PATH, parse_catalogue

    cat = parse_catalogue(CATALOGUE_PATH.read_text(encoding="utf-8"))
    assert all(name == entry.name for name, entry in cat.models.items())


@pytest.mark.parametrize("section, key, value, message", [
    ("optim", "lr", "fast", "optim.lr: must be a number, got the text 'fast'"),
    ("optim", "batch_size", 2.5, "optim.batch_size: must be a whole number, got 2.5"),
    ("run", "tensorboard", "yes", "run.tensorboard: must be true or false, got the text 'yes'"),
    ("data", "segment_s", -1, "data.segment_s: must be positive, got -1"),
    ("augment", "remix_p", "often", "augment.remix_p"),
])
def test_training_config_types_are_config_errors(section, key, value, message):
    from unbake.train.config import config_from_dict

    raw = {"data": {"root": "data", "cache_dir": "cache"}}
    raw.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError) as exc:
        config_from_dict(raw)
    assert message in str(exc.value)


def test_shipped_architecture_configs_are_in_range_and_hostile_ones_are_not_read(tmp_path):
    import unbake.hub
    from unbake.hub.architectures import check_settings, resolve_architecture
    from unbake.hub.msst import read_config

    configs = sorted(Path(unbake.hub.__file__).with_name("configs").glob("*.yaml"))
    assert configs
    for path in configs:
        arch, kwargs = read_config(path)
        check_settings(resolve_architecture(arch), kwargs)
    hostile = tmp_path / "deep.yaml"
    hostile.write_text("model: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match=f"nested more than {MAX_YAML_DEPTH} levels deep"):
        read_config(hostile)
