"""Mixer invariants: identity, mute, solo, pan law, effects, automation ramps, A/B switching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unbake import StemSet
from unbake.errors import ConfigError
from unbake.remix import (Remix, TrackSettings, build_chain, integrated_lufs, pan_gains, parse_eq, place,
                          ramp_envelope)
from unbake.remix.automation import ab_switch, parse_ab, track_envelopes
from unbake.remix.mixer import balance_gains
from unbake.remix.schema import parse_time
from unbake._schema import validate

SR = 44100


def make_stems(seconds: float = 2.0, channels: int = 2, seed: int = 0) -> StemSet:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    stems = {
        "vocals": 0.2 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(t.size),
        "drums": 0.1 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0),
        "bass": 0.3 * np.sin(2 * np.pi * 55 * t),
        "other": 0.1 * np.sin(2 * np.pi * 660 * t + 1.0),
    }
    out = {}
    for i, (k, v) in enumerate(stems.items()):
        if channels == 2:
            out[k] = np.stack([v, np.roll(v, 7 * (i + 1)) * 0.8]).astype(np.float32)
        else:
            out[k] = v[None].astype(np.float32)
    return StemSet(out, SR)


# ------------------------------------------------------------------------------ identity / mute / solo


@pytest.mark.parametrize("channels", [2, 1])
def test_neutral_remix_is_the_sum_of_the_stems(channels):
    stems = make_stems(channels=channels)
    before = {k: v.copy() for k, v in stems.items()}
    explicit = {n: TrackSettings() for n in stems.names}
    for remix in (Remix(stems), Remix(stems, explicit), Remix(stems).gain("vocals", 0).pan("bass", 0)):
        out = remix.render()
        assert out.shape == (2, stems.frames) and out.dtype == np.float32
        expected = np.repeat(stems.mixture(), 2, axis=0) if channels == 1 else stems.mixture()
        assert np.abs(out - expected).max() <= 1e-6
    for k in stems.names:  # the input is never modified
        assert np.array_equal(stems[k], before[k])


def test_muted_stem_is_exactly_absent_even_with_effects():
    stems = make_stems()
    remix = Remix(stems).mute("drums").reverb("drums", wet=0.9, room_size=0.9).gain("vocals", 2)
    without = Remix(StemSet({k: v for k, v in stems.items() if k != "drums"}, SR)).gain("vocals", 2)
    assert np.array_equal(remix.render(), without.render())
    # and a mute does change something
    assert np.abs(Remix(stems).render() - remix.render()).max() > 0.01


def test_solo_plays_only_soloed_tracks_and_mute_wins():
    stems = make_stems()
    out = Remix(stems).solo("vocals").solo("bass").gain("bass", -3).render()
    ref = Remix(StemSet({"vocals": stems["vocals"], "bass": stems["bass"]}, SR)).gain("bass", -3).render()
    assert np.array_equal(out, ref)
    only_bass = Remix(stems).solo("vocals").solo("bass").mute("vocals").render()
    assert np.abs(only_bass - stems["bass"]).max() <= 1e-7


def test_gain_is_in_db():
    stems = make_stems()
    out = Remix(StemSet({"bass": stems["bass"]}, SR)).gain("bass", -6).render()
    assert np.allclose(out, stems["bass"] * 10 ** (-6 / 20), atol=1e-7)


def test_unknown_stem_is_refused():
    with pytest.raises(ConfigError, match=r"tracks\.voclas: unknown stem; the stems are vocals, drums"):
        Remix(make_stems()).gain("voclas", 3)


# ------------------------------------------------------------------------------ pan law


def test_pan_gains_keep_power_constant():
    pans = np.linspace(-1, 1, 201)
    left, right = pan_gains(pans)
    assert np.allclose(left ** 2 + right ** 2, 1.0, atol=1e-12)
    assert pan_gains(0.0) == (math.sqrt(0.5), math.sqrt(0.5))
    assert np.allclose(pan_gains(-1.0), (1.0, 0.0)) and np.allclose(pan_gains(1.0), (0.0, 1.0))
    assert np.all(np.diff(left) < 0) and np.all(np.diff(right) > 0)
    assert balance_gains(0.0) == (1.0, 1.0)


def test_place_is_identity_at_centre_and_constant_power_for_mono():
    rng = np.random.default_rng(1)
    stereo = rng.standard_normal((2, 1000)).astype(np.float32)
    assert np.array_equal(place(stereo, 0.0), stereo)
    mono = rng.standard_normal((1, 1000)).astype(np.float32)
    power = [float(np.sum(place(mono, p).astype(np.float64) ** 2)) for p in np.linspace(-1, 1, 21)]
    assert np.allclose(power, power[0], rtol=1e-5)
    assert np.allclose(place(mono, 0.0), np.repeat(mono, 2, axis=0))
    hard_right = place(mono, 1.0)
    assert np.abs(hard_right[0]).max() < 1e-7 and np.allclose(hard_right[1], mono[0] * math.sqrt(2), atol=1e-6)
    # a mono-summed (dual mono) stem through the mixer: same power at every pan
    stems = StemSet({"a": np.repeat(mono, 2, axis=0)}, SR)
    mix_power = [float(np.sum(Remix(stems).pan("a", p).render().astype(np.float64) ** 2)) for p in (-1, -0.4, 0, 0.7)]
    assert np.allclose(mix_power, mix_power[2], rtol=1e-5)


def test_pan_moves_the_image():
    stems = make_stems()
    out = Remix(StemSet({"bass": stems["bass"]}, SR)).pan("bass", 0.5).render()
    assert np.sum(out[1] ** 2) / np.sum(stems["bass"][1] ** 2) > 1.3
    assert np.sum(out[0] ** 2) / np.sum(stems["bass"][0] ** 2) < 0.7


# ------------------------------------------------------------------------------ effects


def _tone(freq, seconds=1.0, amp=0.25):
    t = np.arange(int(seconds * SR)) / SR
    return np.repeat((amp * np.sin(2 * np.pi * freq * t))[None], 2, axis=0).astype(np.float32)


def _rms_db(x):
    x = x[:, SR // 4:]  # skip filter settling
    return 10 * np.log10(np.mean(x.astype(np.float64) ** 2))


def test_eq_bands_do_what_they_say():
    tone = _tone(1000)
    peak = Remix(StemSet({"a": tone}, SR)).eq("a", [{"type": "peak", "freq_hz": 1000, "gain_db": 6, "q": 1}])
    assert _rms_db(peak.render()) - _rms_db(tone) == pytest.approx(6.0, abs=0.3)
    low = _tone(40)
    hp = Remix(StemSet({"a": low}, SR)).eq("a", [{"type": "high_pass", "freq_hz": 2000}])
    assert _rms_db(hp.render()) - _rms_db(low) < -20
    shelf = Remix(StemSet({"a": low}, SR)).eq("a", [{"type": "low_shelf", "freq_hz": 200, "gain_db": -9}])
    assert _rms_db(shelf.render()) - _rms_db(low) == pytest.approx(-9.0, abs=0.7)


def test_compressor_and_reverb():
    loud = _tone(440, amp=0.9)
    comp = Remix(StemSet({"a": loud}, SR)).compressor("a", threshold_db=-20, ratio=4, attack_ms=1, release_ms=50)
    assert _rms_db(comp.render()) < _rms_db(loud) - 6
    board = build_chain(eq=parse_eq([{"type": "peak", "freq_hz": 100, "gain_db": 1}], "eq"), compressor=None)
    import pedalboard

    assert isinstance(board, pedalboard.Pedalboard) and isinstance(board[0], pedalboard.PeakFilter)
    # a reverb leaves a tail after a burst stops
    burst = np.zeros((2, SR), np.float32)
    burst[:, :2000] = _tone(300)[:, :2000]
    wet = Remix(StemSet({"a": burst}, SR)).reverb("a", room_size=0.8, wet=0.5).render()
    assert np.abs(wet[:, 10000:20000]).max() > 1e-3 and np.abs(burst[:, 10000:20000]).max() == 0


# ------------------------------------------------------------------------------ automation


def test_ramp_envelope_never_steps_more_than_the_ramp_slope():
    ramp = int(0.02 * SR)
    events = [(1000, 0.1, ramp), (1000 + ramp // 2, 2.0, ramp), (5000, 0.0, ramp)]
    env = ramp_envelope(1.0, events, 8000)
    assert env[999] == 1.0 and env[4999] == pytest.approx(2.0) and env[-1] == 0.0
    steps = np.abs(np.diff(env))
    # slope of each ramp: |target - value where it started| / ramp
    start2 = env[1000 + ramp // 2 - 1]
    slopes = [abs(0.1 - 1.0) / ramp, abs(2.0 - start2) / ramp, 2.0 / ramp]
    assert steps.max() <= max(slopes) + 1e-12
    assert steps[999:999 + ramp // 2].max() <= slopes[0] + 1e-12
    assert np.all(steps[:999] == 0)


def test_gain_automation_is_sample_accurate_and_click_free():
    frames = 3 * SR
    dc = np.full((2, frames), 0.5, np.float32)  # a constant signal: any output step is the envelope's
    remix = Remix(StemSet({"a": dc}, SR)).automate("a", "0:01", gain_db=-20).automate("a", 2.0, mute=True, ramp_ms=50)
    out = remix.render()
    at1, at2 = SR, 2 * SR
    assert np.allclose(out[:, :at1], 0.5) and np.allclose(out[:, at1 + 882:at2], 0.05, atol=1e-6)
    assert np.all(out[:, at2 + int(0.05 * SR):] == 0.0)  # mute reaches exactly zero
    step = np.abs(np.diff(out[0].astype(np.float64)))
    ramp1 = 0.5 * (1 - 0.1) / int(0.02 * SR)
    assert step.max() <= ramp1 + 1e-6
    assert step[at1 - 1] > 0 and np.all(step[:at1 - 1] == 0)  # the change starts on its sample


def test_switch_point_adds_no_jump_beyond_the_signal():
    stems = make_stems(seconds=2.0)
    remix = Remix(stems).automate("vocals", 1.0, gain_db=-12).automate("bass", 1.0, pan=-1, mute=False)
    out = remix.render()
    ref = stems.mixture()
    window = slice(SR - 2000, SR + 2000)
    own = np.abs(np.diff(ref[:, window], axis=1)).max()
    assert np.abs(np.diff(out[:, window], axis=1)).max() <= own * 1.05
    # a jump without ramp does create a discontinuity larger than the ramped version
    hard = Remix(stems).automate("vocals", 1.0, gain_db=-12, ramp_ms=0).render()
    g, _ = track_envelopes(0.0, 0.0, False, Remix(stems).automate("vocals", 1.0, gain_db=-12, ramp_ms=0)
                           .track("vocals").automation, stems.frames, SR)
    assert np.abs(np.diff(g)).max() == pytest.approx(1 - 10 ** (-12 / 20))
    assert hard.shape == out.shape


def test_automation_after_the_end_is_refused():
    with pytest.raises(ConfigError, match=r"tracks\.vocals\.automation\[0\]\.at: 0:05\.000 is after the end"):
        Remix(make_stems(seconds=1.0)).automate("vocals", 5, gain_db=-3).render()


# ------------------------------------------------------------------------------ A/B


def test_ab_switches_with_equal_power_fades_and_matched_loudness():
    stems = make_stems(seconds=3.0)
    remix = Remix(stems).gain("vocals", -12).gain("bass", -12).gain("drums", -12).gain("other", -12)
    points = [{"at": 0, "use": "remix"}, {"at": 1.0, "use": "original"}, {"at": 2.0, "use": "remix"}]
    ab = remix.render_ab(points, crossfade_ms=20)
    new = remix.render()
    assert np.array_equal(ab[:, : SR - 500], new[:, : SR - 500])
    assert np.array_equal(ab[:, 2 * SR + 500:], new[:, 2 * SR + 500:])
    middle = ab[:, SR + 500: 2 * SR - 500]
    # the original part is at the remix's loudness, not 12 dB louder
    full_orig = stems.mixture()
    g = 10 ** ((integrated_lufs(new, SR) - integrated_lufs(full_orig, SR)) / 20)
    assert np.allclose(middle, full_orig[:, SR + 500: 2 * SR - 500] * g, atol=1e-6)
    assert abs(integrated_lufs(middle, SR) - integrated_lufs(new[:, SR + 500: 2 * SR - 500], SR)) < 0.5


def test_ab_crossfade_is_equal_power():
    a = np.ones((2, SR), np.float32)
    b = -np.ones((2, SR), np.float32) * 0  # silence: the output shows the remix's fade curve
    points = parse_ab([{"at": 0, "use": "remix"}, {"at": 0.5, "use": "original"}], "ab")
    out = ab_switch(a, b, SR, points, crossfade_ms=20)
    out2 = ab_switch(b, a, SR, points, crossfade_ms=20)  # the other signal's fade-in curve
    fade = slice(SR // 2 - 500, SR // 2 + 500)
    assert np.allclose(out[0, fade] ** 2 + out2[0, fade] ** 2, 1.0, atol=1e-6)
    assert out[0, SR // 2 - 500] == 1.0 and out[0, SR // 2 + 500] == 0.0


def test_bad_ab_lists():
    with pytest.raises(ConfigError, match=r"ab\[1\]\.at: times must increase"):
        parse_ab([{"at": 5, "use": "remix"}, {"at": 2, "use": "original"}], "ab")
    with pytest.raises(ConfigError, match=r"ab\[0\]\.use: must be one of remix, original"):
        parse_ab([{"at": 0, "use": "both"}], "ab")


# ------------------------------------------------------------------------------ schema helpers


def test_parse_time():
    assert parse_time(12, "at") == 12.0
    assert parse_time("0:15", "at") == 15.0
    assert parse_time("1:02.5", "at") == 62.5
    assert parse_time("1:00:01", "at") == 3601.0
    assert parse_time("7.25", "at") == 7.25
    for bad in ("1:75", "abc", -1, True, None, "1:2:3:4"):
        with pytest.raises(ConfigError, match=r"^x\.at: "):
            parse_time(bad, "x.at")


def test_validator_messages_name_the_key():
    with pytest.raises(ConfigError) as exc:
        parse_eq([{"type": "peak", "freq_hz": 100}, {"type": "peak", "freq_hz": 50000}], "tracks.vocals.eq")
    assert str(exc.value) == "tracks.vocals.eq[1].freq_hz: must be between 10 and 22000, got 50000"
    with pytest.raises(ConfigError, match=r"^tracks\.bass\.gian_db: unknown key; did you mean 'gain_db'\?"):
        validate(TrackSettings, {"gian_db": 1}, "tracks.bass")
    with pytest.raises(ConfigError, match=r"^a\.pan: must be a number, got the text 'left'"):
        validate(TrackSettings, {"pan": "left"}, "a")
    with pytest.raises(ConfigError, match=r"tracks\.a\.eq\[0\]\.q: not used by high_pass"):
        parse_eq([{"type": "high_pass", "freq_hz": 100, "q": 2}], "tracks.a.eq")
    with pytest.raises(ConfigError, match=r"tracks\.a\.eq\[0\]\.type: must be one of low_shelf"):
        parse_eq([{"type": "notch", "freq_hz": 100}], "tracks.a.eq")


def test_ab_never_goes_above_the_ceiling():
    from unbake.remix import true_peak_db

    stems = make_stems(seconds=3.0)
    spiky = stems["drums"].copy()
    spiky[:, ::4410] = 0.9  # transients the limited remix flattens but the original keeps
    stems = StemSet({**stems.stems, "drums": spiky}, SR)
    remix = Remix(stems).master(loudness_lufs=-9, true_peak_db=-1)
    ab = remix.render_ab([{"at": 0, "use": "original"}, {"at": 1.5, "use": "remix"}])
    assert true_peak_db(ab) < -1.0
    # still level-matched: both halves are turned down together
    first, second = ab[:, : int(1.4 * SR)], ab[:, int(1.6 * SR):]
    assert abs(integrated_lufs(first, SR) - integrated_lufs(second, SR)) < 1.0
