"""Synthetic multitracks: drums, bass and accompaniment composed from a seed, rendered from MIDI
with a General MIDI soundfont (``fluidsynth``), optionally with real vocal stems beside them.

Every track is a folder ``synth_00000/`` with ``drums.wav``, ``bass.wav``, ``other.wav`` and
``vocals.wav`` (the layout :func:`unbake.data.datasets.find_tracks` reads); the mixture is their
sum, so it is not written. Track ``i`` of seed ``s`` is a pure function of ``(s, i)``, the
soundfont and the vocal folder: the same call makes the same set.

With ``match_vocals`` each track's tempo and key are those of the song its vocal stem comes from
(tempo, beats and key by :func:`unbake.analysis.analyze.analyze_stems` on that song's stems), and
the vocal excerpt starts on one of that song's beats, so the voice sings in the key and on the
beat grid of the band around it, as in a real mix; without it the voice is laid over an unrelated
tempo and key.

The music is generated here (no MIDI corpus is read), so the only licences involved are the
soundfont's (FluidR3_GM, MIT, Debian package ``fluid-soundfont-gm``) and the vocal stems' (for
MUSDB18: non-commercial research only, so a set made with them must stay out of any repository).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DependencyError

SOUNDFONT_CANDIDATES = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
TICKS_PER_BEAT = 480
TEMPO_RANGE_BPM = (75.0, 150.0)
DRUM_CHANNEL = 9

# General MIDI programs per role (0-based): basses, and the instruments the "other" stem draws from
BASS_PROGRAMS = (32, 33, 34, 35, 36, 37, 38, 39)
OTHER_PROGRAMS = (0, 1, 2, 4, 5, 6, 16, 17, 19, 24, 25, 26, 27, 29, 30, 48, 49, 50, 52, 56, 61, 65, 71,
                  80, 81, 88, 89, 90, 91, 95)
# chord progressions as scale degrees (0 = tonic) in a major or natural minor key
PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (0, 3, 0, 4), (1, 4, 0, 0),
                (0, 6, 5, 4), (3, 4, 0, 5))
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
# GM drum notes
KICK, SNARE, CLAP, CLOSED_HAT, OPEN_HAT, RIDE, CRASH, TOM_LO, TOM_HI = 36, 38, 39, 42, 46, 51, 49, 45, 50


@dataclass(frozen=True)
class SynthTrack:
    """What track ``index`` of a seed is made of (written to ``info.txt`` beside its stems)."""

    name: str
    tempo_bpm: float
    key_root: int
    minor: bool
    progression: tuple[int, ...]
    bass_program: int
    other_programs: tuple[int, ...]
    vocals_from: str | None
    vocals_offset_s: float
    # tempo, key and the vocal excerpt's start follow the vocal source (match_vocals)
    matched_to_vocals: bool = False


@dataclass(frozen=True)
class VocalSource:
    """A song lending its vocal stem; ``bpm``/``beats_s``/``key`` are filled for ``match_vocals``."""

    name: str
    vocals: np.ndarray  # (channels, samples)
    bpm: float | None = None
    beats_s: tuple[float, ...] = ()
    key_tonic: int = 0
    minor: bool = False


# ------------------------------------------------------------------ MIDI writing


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi_bytes(notes: list[tuple[float, float, int, int, int]], tempo_bpm: float,
               programs: dict[int, int]) -> bytes:
    """A format-0 standard MIDI file: ``notes`` are ``(start_beat, length_beats, channel, pitch,
    velocity)``, ``programs`` maps channel -> GM program."""
    events: list[tuple[int, int, bytes]] = []  # (tick, order, bytes): note-offs sort before note-ons
    for ch, prog in programs.items():
        events.append((0, 0, bytes([0xC0 | ch, prog & 0x7F])))
    for start, length, ch, pitch, vel in notes:
        t0 = int(round(start * TICKS_PER_BEAT))
        t1 = max(t0 + 1, int(round((start + length) * TICKS_PER_BEAT)))
        events.append((t0, 2, bytes([0x90 | ch, pitch & 0x7F, max(1, min(127, vel))])))
        events.append((t1, 1, bytes([0x80 | ch, pitch & 0x7F, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    us_per_beat = int(round(60_000_000 / tempo_bpm))
    track = bytearray(b"\x00\xff\x51\x03" + us_per_beat.to_bytes(3, "big"))
    now = 0
    for tick, _, data in events:
        track += _varlen(tick - now) + data
        now = tick
    track += b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT) + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


# ------------------------------------------------------------------ composition


def _drums(rng: np.random.Generator, bars: int) -> list[tuple[float, float, int, int, int]]:
    style = int(rng.integers(4))
    hat = RIDE if rng.random() < 0.2 else CLOSED_HAT
    hat_div = (2, 4, 4, 2)[style]  # hits per beat
    notes = []
    for bar in range(bars):
        b0 = 4 * bar
        fill = bar % 4 == 3 and rng.random() < 0.5
        for beat in range(4):
            t = b0 + beat
            if style == 1:  # four on the floor
                notes.append((t, 0.25, DRUM_CHANNEL, KICK, int(rng.integers(95, 120))))
            elif beat in (0, 2) or (style == 2 and beat == 2 and rng.random() < 0.5):
                notes.append((t, 0.25, DRUM_CHANNEL, KICK, int(rng.integers(95, 120))))
            if beat in (1, 3) and not (fill and beat == 3):
                notes.append((t, 0.25, DRUM_CHANNEL, CLAP if style == 3 and rng.random() < 0.5 else SNARE,
                              int(rng.integers(90, 120))))
            for k in range(hat_div):
                if rng.random() < 0.92:
                    note = OPEN_HAT if (k == hat_div - 1 and rng.random() < 0.1) else hat
                    notes.append((t + k / hat_div, 0.2, DRUM_CHANNEL, note, int(rng.integers(50, 95))))
            if rng.random() < 0.15:  # ghost kick
                notes.append((t + 0.5, 0.25, DRUM_CHANNEL, KICK, int(rng.integers(60, 90))))
        if fill:
            for k in range(4):
                notes.append((b0 + 3 + k / 4, 0.2, DRUM_CHANNEL, (TOM_HI, TOM_HI, TOM_LO, SNARE)[k],
                              int(rng.integers(80, 115))))
        if bar % 4 == 0 and rng.random() < 0.5:
            notes.append((b0, 1.0, DRUM_CHANNEL, CRASH, int(rng.integers(80, 110))))
    return notes


def _chord(root_pc: int, degree: int, scale: tuple[int, ...]) -> list[int]:
    """Pitch classes (relative to C) of the triad on scale ``degree``."""
    return [(root_pc + scale[(degree + k) % 7]) % 12 for k in (0, 2, 4)]


def _bass(rng: np.random.Generator, bars: int, chords: list[list[int]], ch: int) -> list[tuple]:
    pattern = int(rng.integers(4))
    notes = []
    for bar in range(bars):
        # roots E1..D#2 (MIDI 28-39, 41-78 Hz), where bass lines sit: measured on the training
        # previews, 57 % of a real bass stem's energy is below 100 Hz; with roots an octave higher
        # (C2..B2) the rendered bass had 31 % there and 20 % in 250 Hz-1 kHz (real: 3 %)
        root = 28 + (chords[bar % len(chords)][0] - 4) % 12
        fifth = root + 7
        if pattern == 0:      # roots on the beats
            hits = [(b, 0.9, root) for b in range(4)]
        elif pattern == 1:    # eighths
            hits = [(b / 2, 0.45, root) for b in range(8)]
        elif pattern == 2:    # root-fifth
            hits = [(0, 1.4, root), (1.5, 0.5, fifth), (2, 1.4, root), (3.5, 0.5, root + 12)]
        else:                 # syncopated
            hits = [(0, 0.7, root), (0.75, 0.5, root), (1.5, 1.0, fifth), (2.75, 0.5, root), (3.0, 0.9, root)]
        for start, length, pitch in hits:
            if rng.random() < 0.93:
                notes.append((4 * bar + start, length, ch, int(pitch), int(rng.integers(85, 115))))
    return notes


def _accompaniment(rng: np.random.Generator, bars: int, chords: list[list[int]], ch: int) -> list[tuple]:
    style = int(rng.integers(3))
    octave = int(rng.choice([48, 60, 60, 72]))
    notes = []
    for bar in range(bars):
        pcs = chords[bar % len(chords)]
        voicing = sorted(octave + pc for pc in pcs)
        b0 = 4 * bar
        if style == 0:    # held chords
            notes += [(b0, 3.9, ch, p, int(rng.integers(60, 90))) for p in voicing]
        elif style == 1:  # arpeggio in eighths
            seq = voicing + [voicing[0] + 12]
            notes += [(b0 + k / 2, 0.45, ch, seq[k % len(seq)], int(rng.integers(60, 95))) for k in range(8)]
        else:             # rhythmic stabs
            for start in (0, 1.5, 2.5, 3.0):
                notes += [(b0 + start, 0.4, ch, p, int(rng.integers(65, 100))) for p in voicing]
    return notes


# ------------------------------------------------------------------ rendering


def find_soundfont(soundfont: str | os.PathLike | None = None) -> Path:
    if soundfont is not None:
        p = Path(soundfont)
        if not p.is_file():
            raise ConfigError(f"{p}: soundfont not found")
        return p
    for c in SOUNDFONT_CANDIDATES:
        if Path(c).is_file():
            return Path(c)
    raise DependencyError("no General MIDI soundfont found: install the Debian package fluid-soundfont-gm "
                          "(or pass a .sf2 file)")


def _fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise DependencyError("fluidsynth not found: install the Debian package fluidsynth")
    return exe


def render_midi(midi: bytes, soundfont: Path, sample_rate: int, length: int, workdir: Path) -> np.ndarray:
    """``(2, length)`` float32: the MIDI rendered by fluidsynth (reverb and chorus off, so the
    stems stay dry and the effect augmentations decide the space)."""
    from ..audio import read_audio

    mid, wav = workdir / "in.mid", workdir / "out.wav"
    mid.write_bytes(midi)
    cmd = [_fluidsynth(), "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6", "-r", str(sample_rate),
           "-F", str(wav), str(soundfont), str(mid)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wav.is_file():
        raise DependencyError(f"fluidsynth failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
    audio, sr = read_audio(wav)
    if sr != sample_rate:
        raise DependencyError(f"fluidsynth wrote {sr} Hz, asked for {sample_rate} Hz")
    out = np.zeros((2, length), np.float32)
    audio = audio if audio.shape[0] == 2 else np.repeat(audio[:1], 2, axis=0)
    n = min(length, audio.shape[1])
    out[:, :n] = audio[:, :n]
    return out


def _vocal_sources(vocal_tracks: list[Path] | None, sample_rate: int, cache_dir: Path | None,
                   match: bool = False) -> list[VocalSource]:
    if not vocal_tracks:
        return []
    from .cache import AudioCache
    from .datasets import MUSDB_SOURCES, load_tracks

    cache = AudioCache(cache_dir or Path(tempfile.gettempdir()) / "unbake-synth-cache")
    sources = MUSDB_SOURCES if match else ("vocals",)
    out = []
    for t in load_tracks(list(vocal_tracks), sources, sample_rate, cache):
        vocals = t.stems[sources.index("vocals")]
        # a silent vocal stem would teach nothing the silence augmentation does not
        if float(np.sqrt(np.mean(vocals ** 2))) <= 1e-3:
            continue
        if not match:
            out.append(VocalSource(t.name, vocals))
            continue
        from ..analysis.analyze import analyze_stems

        a = analyze_stems({s: np.asarray(t.stems[i]) for i, s in enumerate(sources)}, sample_rate,
                          bpm_range=TEMPO_RANGE_BPM)
        if len(a.beats_s) < 2:  # no beat grid to follow: this song lends no vocals to matched tracks
            continue
        out.append(VocalSource(t.name, vocals, a.bpm, tuple(a.beats_s), a.key.tonic, a.key.mode == "minor"))
    return out


def _matched_vocals(source: VocalSource, rng: np.random.Generator, length: int,
                    sample_rate: int) -> tuple[int, np.ndarray]:
    """A ``length``-sample excerpt of ``source``'s vocals starting on one of its beats (any beat
    that leaves a whole excerpt; the first beat when none does), and its start in samples."""
    n = source.vocals.shape[-1]
    starts = [int(round(b * sample_rate)) for b in source.beats_s]
    fit = [st for st in starts if 0 <= st <= n - length] or [max(0, min(starts[0], n - length))]
    off = fit[int(rng.integers(len(fit)))]
    out = np.zeros((source.vocals.shape[0], length), np.float32)
    seg = source.vocals[:, off:off + length]
    out[:, :seg.shape[-1]] = seg
    return off, out


def make_synth_set(out_dir: str | os.PathLike, count: int, *, seed: int = 0, duration_s: float = 6.0,
                   sample_rate: int = 44100, vocal_tracks: list[Path] | None = None,
                   soundfont: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                   start: int = 0, match_vocals: bool = False) -> list[SynthTrack]:
    """Write tracks ``start .. start+count-1`` of ``seed`` under ``out_dir`` (existing complete
    tracks are kept, so an interrupted call can be repeated); returns what each is made of.
    ``vocal_tracks`` (track paths, see :func:`unbake.data.datasets.find_tracks`) lend their vocal
    stems: only training tracks belong there, never held-out ones. Without them the vocal stems
    are silent. ``match_vocals``: tempo, key and beat grid follow the vocal source (module doc);
    it needs ``vocal_tracks``."""
    if match_vocals and not vocal_tracks:
        raise ConfigError("match_vocals needs vocal tracks to match")
    if count < 1 or duration_s <= 0:
        raise ConfigError("synth needs count >= 1 and duration_s > 0")
    sf = find_soundfont(soundfont)
    _fluidsynth()
    from ..audio import write_audio

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocals = _vocal_sources(vocal_tracks, sample_rate, Path(cache_dir) if cache_dir else None, match_vocals)
    if match_vocals and not vocals:
        raise ConfigError("no vocal track with an audible vocal stem and a beat grid to match")
    length = int(round(duration_s * sample_rate))
    made = []
    for index in range(start, start + count):
        rng = np.random.default_rng([int(seed), index])
        tempo = float(rng.uniform(*TEMPO_RANGE_BPM))
        key, minor = int(rng.integers(12)), bool(rng.random() < 0.45)
        source = None
        if match_vocals:
            # a stream of its own, so the draws below stay those of the unmatched track
            vrng = np.random.default_rng([int(seed), index, 1])
            source = vocals[int(vrng.integers(len(vocals)))]
            tempo, key, minor = float(source.bpm), source.key_tonic, source.minor
        bars = int(np.ceil(duration_s * tempo / 60 / 4)) + 1
        prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
        chords = [_chord(key, d, MINOR if minor else MAJOR) for d in prog]
        bass_prog = int(rng.choice(BASS_PROGRAMS))
        n_other = int(rng.integers(1, 4))
        other_progs = tuple(int(p) for p in rng.choice(OTHER_PROGRAMS, size=n_other, replace=False))
        level_db = {stem: float(rng.uniform(-28.0, -20.0)) for stem in ("drums", "bass", "other")}
        drum_notes = _drums(rng, bars)
        bass_notes = _bass(rng, bars, chords, 0)
        other_notes = [n for i in range(n_other) for n in _accompaniment(rng, bars, chords, i)]
        voc_name, voc_offset, voc = None, 0.0, np.zeros((2, length), np.float32)
        if source is not None:
            off, voc = _matched_vocals(source, vrng, length, sample_rate)
            voc_name, voc_offset = source.name, off / sample_rate
        elif vocals:
            t = vocals[int(rng.integers(len(vocals)))]
            src = t.vocals
            off = int(rng.integers(max(1, src.shape[-1] - length + 1)))
            seg = src[:, off:off + length]
            voc[:, :seg.shape[-1]] = seg
            voc_name, voc_offset = t.name, off / sample_rate
        name = f"synth_{index:05d}"
        info = SynthTrack(name, round(tempo, 2), key, minor, prog, bass_prog, other_progs, voc_name,
                          round(voc_offset, 3), source is not None)
        made.append(info)
        folder = out / name
        if (folder / "info.txt").is_file():
            continue
        tmp = out / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        with tempfile.TemporaryDirectory(prefix="unbake-synth-") as work:
            w = Path(work)
            stems = {
                "drums": render_midi(midi_bytes(drum_notes, tempo, {}), sf, sample_rate, length, w),
                "bass": render_midi(midi_bytes(bass_notes, tempo, {0: bass_prog}), sf, sample_rate, length, w),
                "other": render_midi(midi_bytes(other_notes, tempo, dict(enumerate(other_progs))), sf,
                                     sample_rate, length, w),
                "vocals": voc,
            }
        # the soundfont's instruments differ by more than 10 dB; a drawn level per stem keeps any
        # one from being always buried (the gain augmentation varies it further in training)
        for stem in ("drums", "bass", "other"):
            rms = float(np.sqrt(np.mean(stems[stem] ** 2)))
            if rms > 1e-6:
                stems[stem] *= 10.0 ** (level_db[stem] / 20.0) / rms
        for stem, audio in stems.items():
            write_audio(tmp / f"{stem}.wav", audio, sample_rate, bit_depth="32f")
        (tmp / "info.txt").write_text("".join(f"{k}: {v}\n" for k, v in info.__dict__.items()))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return made
