"""NI Stems export: the written file reads back as five streams named by its stem manifest."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from unbake.audio import read_stems
from unbake.audio.stemsfile import (NI_STEM_SLOTS, StemsFileWriter, plan_slots, read_stem_manifest,
                                    write_stems_file)
from unbake.errors import OutputError, OutputExistsError

SR = 44100


def four_stems(seconds=2.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    freqs = {"drums": 80.0, "bass": 110.0, "other": 330.0, "vocals": 440.0}
    return {n: np.stack([0.15 * np.sin(2 * np.pi * f * t), 0.1 * np.sin(2 * np.pi * f * t)]).astype(np.float32)
            for n, f in freqs.items()}


def snr_db(ref, est):
    n = min(ref.shape[1], est.shape[1])
    return 10 * np.log10((ref[:, :n] ** 2).sum() / max(((ref[:, :n] - est[:, :n]) ** 2).sum(), 1e-20))


@pytest.mark.parametrize("codec,min_snr_db", [("aac", 15.0), ("alac", 80.0)])
def test_round_trip_streams_names_and_manifest(tmp_path, codec, min_snr_db):
    stems = four_stems()
    mix = sum(stems.values())
    path = write_stems_file(tmp_path / "song.stem.mp4", mix, stems, SR, codec=codec)
    manifest = read_stem_manifest(path)
    assert manifest["version"] == 1
    assert [s["name"] for s in manifest["stems"]] == ["Drums", "Bass", "Other", "Vocals"]
    assert all(s["color"].startswith("#") for s in manifest["stems"])
    dsp = manifest["mastering_dsp"]
    assert dsp["compressor"]["enabled"] is False and dsp["limiter"]["enabled"] is False
    back, sr = read_stems(path)
    assert sr == SR and list(back) == ["mixture", *NI_STEM_SLOTS]
    assert snr_db(mix, back["mixture"]) > min_snr_db
    for name in NI_STEM_SLOTS:
        assert snr_db(stems[name], back[name]) > min_snr_db, name
    # the manifest is JSON in moov/udta/stem, as Traktor and Mixxx look for it
    raw = path.read_bytes()
    at = raw.rindex(b"stem{")
    size = int.from_bytes(raw[at - 4:at], "big")
    assert json.loads(raw[at + 4:at - 4 + size])["stems"][3]["name"] == "Vocals"


def test_names_come_from_the_manifest(tmp_path):
    stems = four_stems(1.0)
    path = write_stems_file(tmp_path / "x.stem.mp4", sum(stems.values()), stems, SR,
                            stems_map={"drums": "drums", "bass": "bass", "other": "other", "vocals": "vocals"})
    from unbake.audio.mp4box import add_stem_manifest

    manifest = read_stem_manifest(path)
    manifest["stems"][2]["name"] = "Synth"
    add_stem_manifest(path, manifest)  # replaces the box, does not add a second one
    assert path.read_bytes().count(b"stem{") == 1
    back, _ = read_stems(path)
    assert list(back) == ["mixture", "drums", "bass", "synth", "vocals"]


def test_info_cli_lists_the_streams(tmp_path):
    stems = four_stems(1.0)
    path = write_stems_file(tmp_path / "song.stem.mp4", sum(stems.values()), stems, SR)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-m", "unbake", "info", str(path), "--json"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert len(data["streams"]) == 5
    assert data["stream_names"] == ["mixture", "drums", "bass", "other", "vocals"]


def test_slots_refuse_other_models_unless_mapped():
    assert plan_slots(["vocals", "drums", "bass", "other"]) == {s: (s,) for s in NI_STEM_SLOTS}
    with pytest.raises(OutputError, match="--stems-map"):
        plan_slots(["vocals", "instrumental"])
    six = ["drums", "bass", "other", "vocals", "guitar", "piano"]
    with pytest.raises(OutputError, match="--stems-map"):
        plan_slots(six)
    mapped = plan_slots(six, "drums=drums,bass=bass,other=guitar+piano+other,vocals=vocals")
    assert mapped["other"] == ("guitar", "piano", "other")
    with pytest.raises(OutputError, match="missing: vocals"):
        plan_slots(six, "drums=drums,bass=bass,other=other")
    with pytest.raises(OutputError, match="no stem 'keys'"):
        plan_slots(six, "drums=drums,bass=bass,other=keys,vocals=vocals")
    with pytest.raises(OutputError, match="two slots"):
        plan_slots(six, "drums=drums,bass=bass,other=other+bass,vocals=vocals")
    with pytest.raises(OutputError, match="not an NI stem slot"):
        plan_slots(six, "drums=drums,bass=bass,other=other,vocals=vocals,keys=piano")


def test_mapped_slots_are_sums(tmp_path):
    stems = four_stems(1.0)
    six = {"drums": stems["drums"], "bass": stems["bass"], "guitar": stems["other"] * 0.5,
           "piano": stems["other"] * 0.5, "vocals": stems["vocals"], "other": np.zeros_like(stems["other"])}
    path = write_stems_file(tmp_path / "six.stem.mp4", sum(stems.values()), six, SR, codec="alac",
                            stems_map="drums=drums,bass=bass,other=guitar+piano+other,vocals=vocals")
    back, _ = read_stems(path)
    assert snr_db(stems["other"], back["other"]) > 80


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "bad.stem.mp4"
    with pytest.raises(OutputError):
        with StemsFileWriter(target, SR, 2) as w:
            w.write([np.zeros((2, 100), np.float32)] * 5)
            w.write([np.zeros((2, 100), np.float32)] * 4)  # one stream short: refused
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        StemsFileWriter(target, SR, 2)
    assert target.read_bytes() == b"old"


def test_separate_file_writes_a_stems_file(tmp_path):
    """The facade's ``format="stems"``: the mixture stream is the input, the four slots the
    model's stems; a model without the NI four is refused before any work."""
    import unbake
    from unbake.separate import separate_file

    stems = four_stems(2.0)
    mix = sum(stems.values())
    src = tmp_path / "song.wav"
    unbake.audio.write_audio(src, mix, SR, bit_depth="32f")
    with pytest.raises(OutputError, match="drums, bass, other and vocals"):
        separate_file(src, tmp_path / "out", "center", format="stems")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    model = unbake.load_model("unbake_small")
    out = separate_file(src, tmp_path / "out", model, format="stems", stems_codec="alac")
    assert out == {"stems": tmp_path / "out" / "song.stem.mp4"}
    back, sr = read_stems(out["stems"])
    assert list(back) == ["mixture", *NI_STEM_SLOTS] and sr == SR
    assert snr_db(mix, back["mixture"]) > 80  # the master is the input itself
    direct = unbake.separate(src, model)
    for name in NI_STEM_SLOTS:
        assert snr_db(direct[name], back[name]) > 60, name
    with pytest.raises(OutputExistsError):
        separate_file(src, tmp_path / "out", model, format="stems")
