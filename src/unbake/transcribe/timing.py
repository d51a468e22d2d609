"""What a DAW or a DJ program needs to know about a track's time and key, from one analysis:
tempo, beats, downbeats and key as :class:`~unbake.audio.tags.TrackTags`, which become file tags,
the ``track.json`` sidecar and the tempo map of transcribed MIDI files.

Cost is bounded for long files: at most :data:`ANALYSIS_EXCERPT_S` seconds from the middle of the
track are analysed (read block by block, folded to mono and resampled to the analysis rate as they
stream). Beats inside that excerpt are the tracked ones; outside it, the beat grid continues at
the measured tempo (the constant grid DJ programs use), and ``track.json`` says which span was
analysed.

Downbeats: for 4/4 music, the bar phase (which of every four beats is the "one") is the phase
whose beats carry the most low-frequency onset energy (kick drums fall on the one) plus the most
harmonic change (chords change on bar lines), both standardised over the beats.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

import numpy as np

from ..audio.tags import TrackTags, camelot_key, short_key

ANALYSIS_EXCERPT_S = 240.0
# shorter audio has too few beats for a tempo and too few frames for the key's constant-Q chroma
MIN_ANALYSIS_S = 4.0
BEATS_PER_BAR = 4
_BLOCK = 65536


def excerpt_bounds(length: int, sample_rate: int, excerpt_s: float = ANALYSIS_EXCERPT_S) -> tuple[int, int]:
    """``(start, stop)`` frames of the analysed excerpt: the whole track when it is short enough,
    else ``excerpt_s`` from its middle (intros and outros are often beatless)."""
    n = int(round(excerpt_s * sample_rate))
    if length <= n:
        return 0, length
    start = (length - n) // 2
    return start, start + n


def _mono_at_analysis_rate(sources, start: int, stop: int, sample_rate: int) -> np.ndarray:
    """The sum of ``sources`` over ``[start, stop)``, folded to mono and resampled to the analysis
    rate block by block (summed first: one resampling for any number of stems)."""
    from ..analysis.analyze import ANALYSIS_RATE_HZ
    from ..audio.dsp import StreamResampler

    rs = StreamResampler(sample_rate, ANALYSIS_RATE_HZ, 1)
    parts = []
    for a in range(start, stop, _BLOCK):
        b = min(a + _BLOCK, stop)
        block = sources[0].read(a, b)
        for source in sources[1:]:
            block = block + source.read(a, b)
        parts.append(rs.process(block.mean(axis=0, keepdims=True)))
    parts.append(rs.flush())
    return np.concatenate(parts, axis=1)[0]


def track_tags(sources: Mapping, sample_rate: int, *, excerpt_s: float = ANALYSIS_EXCERPT_S) -> TrackTags:
    """The analyzer :func:`unbake.separate.separate_file` calls: ``sources`` maps ``mixture``
    and each stem to something with ``.read(start, stop) -> (c, n)`` and ``.length``.

    Only two mono signals at the analysis rate are held: the mixture and the sum of the pitched
    stems (what :func:`unbake.analysis.analyze_stems` reads the key from).
    :class:`TagWorker` does the same in a worker process.
    """
    from ..analysis.analyze import ANALYSIS_RATE_HZ

    mix, key_signal, kwargs = analysis_excerpt(sources, sample_rate, excerpt_s=excerpt_s)
    rhythm = rhythm_from_mixture(mix, ANALYSIS_RATE_HZ, **kwargs)
    return with_key(rhythm, key_of_signal(key_signal))


def analysis_excerpt(sources: Mapping, sample_rate: int, *, excerpt_s: float = ANALYSIS_EXCERPT_S,
                     mixture: bool = True) -> tuple[np.ndarray | None, np.ndarray, dict]:
    """What :func:`track_tags` analyses, mono at the analysis rate: ``(mixture, signal for the
    key, keyword arguments of rhythm_from_mixture)``. The key's signal is the sum of the pitched
    stems (all but ``drums``) when the set has drums and something else, else the mixture;
    ``mixture=False`` gives None for the mixture when the key does not need it (a prepared
    :class:`TagWorker` has it)."""
    length = sources["mixture"].length
    start, stop = excerpt_bounds(length, sample_rate, excerpt_s)
    pitched = [sources[s] for s in sources if s not in ("mixture", "drums")]
    if not ("drums" in sources and pitched):
        pitched = []
    mix = None
    if mixture or not pitched:
        mix = _mono_at_analysis_rate([sources["mixture"]], start, stop, sample_rate)
    key_signal = _mono_at_analysis_rate(pitched, start, stop, sample_rate) if pitched else mix
    return mix, key_signal, {"offset_s": start / sample_rate, "duration_s": length / sample_rate}


def key_of_signal(mono: np.ndarray) -> tuple:
    """``(key, confidence)`` of mono audio at the analysis rate."""
    from ..analysis.analyze import estimate_key

    key, confidence, _ = estimate_key(mono)
    return key, confidence


def _start_worker() -> None:
    """A :class:`TagWorker` process's start: Ctrl-C is for the main process (which stops the
    worker); a lower priority; a watch that ends the worker when the main process is gone
    (killed: nothing else would stop it, and it would hold the main process's output pipes
    open); then the warm-up."""
    import os
    import signal
    import threading
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):  # the separation runs meanwhile and waits for nothing from here:
        os.nice(10)  # it goes first (model card, "Speed and memory")
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:  # an orphan is adopted by another process
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="unbake-tag-worker-watch", daemon=True).start()
    _warm_up()


def _warm_up() -> None:
    """Import what :func:`tags_from_stems` uses (the analysis modules, ``scipy.fft``, soxr), so
    that the first analysis starts at once."""
    import scipy.fft  # noqa: F401
    import soxr  # noqa: F401

    from ..analysis import analyze, beats  # noqa: F401
    from ..audio import features  # noqa: F401


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _one_thread_each():
    """The environment a worker process is started in: its numerical libraries (BLAS, OpenMP)
    read their thread counts when they load, and a second thread of theirs would only compete
    with the separation for the cores; settings the user made are kept."""
    import os

    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class TagWorker:
    """:func:`track_tags` with the analysis in a worker process, started (and warmed up) at once.

    Much of the analysis runs as Python that holds the interpreter, which a thread would take
    from the separation (a thread made the 1-minute command slower: model card, "Speed and
    memory"); a process started before the model loads imports its modules on the core that the
    (single-threaded) torch import and model loading leave idle, and its numerical libraries run
    one thread each. Calls read the excerpt in this
    process (it streams from the stems) and send the mono signals (at most 4 minutes at 22 kHz)
    to the worker. :meth:`prepare` sends the mixture before the separation starts, so the
    rhythm (:func:`rhythm_from_mixture`) is found meanwhile and only the key is left when the
    stems are ready. Should the worker die, the analysis runs here. Use as a context manager,
    or call :meth:`close`.
    """

    def __init__(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fresh interpreter, safe whatever threads this process has started
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start_worker)
        with _one_thread_each():
            self._pool.submit(int)  # starts the worker now, not at the first analysis
        self._pending: tuple | None = None  # (mixture source, excerpt_s, future of its rhythm)

    def prepare(self, sources: Mapping, sample_rate: int, *, excerpt_s: float = ANALYSIS_EXCERPT_S) -> None:
        """Start the mixture's half of the next call's analysis now: ``sources["mixture"]`` is
        the object that call will pass."""
        from concurrent.futures.process import BrokenProcessPool

        from ..analysis.analyze import ANALYSIS_RATE_HZ

        mixture = sources["mixture"]
        start, stop = excerpt_bounds(mixture.length, sample_rate, excerpt_s)
        mono = _mono_at_analysis_rate([mixture], start, stop, sample_rate)
        try:
            future = self._pool.submit(rhythm_from_mixture, mono, ANALYSIS_RATE_HZ, offset_s=start / sample_rate,
                                       duration_s=mixture.length / sample_rate)
        except BrokenProcessPool:  # the call analyses here
            return
        self._pending = (mixture, excerpt_s, future)

    def __call__(self, sources: Mapping, sample_rate: int, *,
                 excerpt_s: float = ANALYSIS_EXCERPT_S) -> TrackTags:
        from concurrent.futures.process import BrokenProcessPool

        from ..analysis.analyze import ANALYSIS_RATE_HZ

        pending, self._pending = self._pending, None
        prepared = pending is not None and pending[0] is sources["mixture"] and pending[1] == excerpt_s
        mix, key_signal, kwargs = analysis_excerpt(sources, sample_rate, excerpt_s=excerpt_s, mixture=not prepared)
        try:
            if prepared:
                rhythm = pending[2].result()  # first: a mixture it refuses (silence) needs no key
            else:
                rhythm = self._pool.submit(rhythm_from_mixture, mix, ANALYSIS_RATE_HZ, **kwargs).result()
            return with_key(rhythm, self._pool.submit(key_of_signal, key_signal).result())
        except BrokenProcessPool:
            logging.getLogger(__name__).warning("the analysis worker stopped; analysing here")
            return track_tags(sources, sample_rate, excerpt_s=excerpt_s)

    def close(self) -> None:
        """Stop the worker now, even in the middle of its warm-up (calls wait for their
        results, so nothing else can be running)."""
        # ProcessPoolExecutor gains terminate_workers() only in Python 3.14
        processes = list((self._pool._processes or {}).values())
        for process in processes:
            process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for process in processes:
            process.join()

    def __enter__(self) -> "TagWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tags_from_stems(stems: Mapping[str, np.ndarray], sample_rate: int, *, offset_s: float = 0.0,
                    duration_s: float | None = None) -> TrackTags:
    """Tempo, beats, downbeats and key of a song from its stems (``(c, t)`` or mono, one of them
    may be the ``mixture``), as :func:`unbake.analysis.analyze_stems` finds them (tempo and beats
    from the mixture, else the sum of the stems; the key from the pitched stems). ``offset_s`` is
    where these arrays start in the track and ``duration_s`` the track's length, when they hold an
    excerpt; the beat grid then covers the whole track.

    Two halves, :func:`rhythm_from_mixture` and :func:`key_from_stems`: the first needs only the
    mixture, so :class:`TagWorker` runs it while the separation makes the stems."""
    rhythm = rhythm_from_mixture(_mixture_of(stems), sample_rate, offset_s=offset_s, duration_s=duration_s)
    return with_key(rhythm, key_from_stems(stems, sample_rate))


def _mixture_of(stems: Mapping[str, np.ndarray]) -> np.ndarray:
    """The ``mixture`` of a stem set, else the sum of its stems."""
    if "mixture" in stems:
        return stems["mixture"]
    return np.sum([np.asarray(v) for v in stems.values()], axis=0)


def rhythm_from_mixture(mix: np.ndarray, sample_rate: int, *, offset_s: float = 0.0,
                        duration_s: float | None = None) -> TrackTags:
    """The tempo, beat grid and downbeats of :func:`tags_from_stems` from the mixture alone (no
    key yet: :func:`with_key` adds it)."""
    from ..analysis.analyze import ANALYSIS_RATE_HZ, analysis_mono, estimate_tempo
    from ..errors import InvalidAudioError

    frames = np.asarray(mix).shape[-1]
    if frames < MIN_ANALYSIS_S * sample_rate:
        raise InvalidAudioError(f"{frames / sample_rate:.1f} s is too short for tempo and key "
                                f"(at least {MIN_ANALYSIS_S:g} s)")
    mono = analysis_mono(mix, sample_rate)
    bpm_found, beats = estimate_tempo(mono)
    excerpt_s = len(mono) / ANALYSIS_RATE_HZ
    duration_s = float(duration_s if duration_s is not None else offset_s + excerpt_s)
    beats = np.asarray(beats, dtype=np.float64)
    bpm = float(bpm_found) if np.isfinite(bpm_found) else None
    downbeats: np.ndarray = np.zeros(0)
    if bpm is not None and len(beats) >= BEATS_PER_BAR:
        phase = downbeat_phase(mono, beats)
        grid, first = extend_grid(beats + offset_s, 60.0 / bpm, offset_s, offset_s + excerpt_s, duration_s)
        beats = grid
        downbeats = grid[(first + phase) % BEATS_PER_BAR::BEATS_PER_BAR]
    else:
        beats = beats + offset_s
    return TrackTags(bpm=bpm, beats_s=tuple(float(b) for b in beats), downbeats_s=tuple(float(b) for b in downbeats),
                     info={"analysed_span_s": [round(offset_s, 3), round(offset_s + excerpt_s, 3)],
                           "duration_s": round(duration_s, 3)})


def key_from_stems(stems: Mapping[str, np.ndarray], sample_rate: int) -> tuple:
    """``(key, confidence)`` of :func:`tags_from_stems`: from the pitched stems when the set has
    drums (:func:`unbake.analysis.analyze.pitched_mix`), else from the mixture."""
    from ..analysis.analyze import analysis_mono, pitched_mix, to_mono_analysis_rate

    pitched = pitched_mix(stems)
    if pitched is None:
        return key_of_signal(analysis_mono(_mixture_of(stems), sample_rate))
    return key_of_signal(to_mono_analysis_rate(pitched, sample_rate))


def with_key(rhythm: TrackTags, key_found: tuple) -> TrackTags:
    """:func:`rhythm_from_mixture`'s tags with the key of :func:`key_from_stems`."""
    from dataclasses import replace

    from ..analysis.analyze import PITCH_NAMES

    key, confidence = key_found
    return replace(rhythm, key=short_key(PITCH_NAMES[key.tonic], key.mode), camelot=camelot_key(key.tonic, key.mode),
                   key_name=key.name, info={"key_confidence": round(float(confidence), 3), **rhythm.info})


def extend_grid(beats_s: np.ndarray, period_s: float, span_start_s: float, span_stop_s: float,
                duration_s: float) -> tuple[np.ndarray, int]:
    """Tracked beats inside the analysed span, continued at ``period_s`` to cover
    ``[0, duration_s)``. Returns ``(beats, index in them of the first given beat)``, which is
    negative when edge beats were dropped."""
    beats_s = np.asarray(beats_s, dtype=np.float64)
    given = len(beats_s)
    # the tracker's first and last beats in an excerpt lean on half a window of context: where
    # the grid continues past them, drop edge beats that are off the measured period
    while span_start_s > 0 and len(beats_s) > 2 and abs(beats_s[1] - beats_s[0] - period_s) > 0.1 * period_s:
        beats_s = beats_s[1:]
    front = given - len(beats_s)
    while (span_stop_s < duration_s - 1e-6 and len(beats_s) > 2
           and abs(beats_s[-1] - beats_s[-2] - period_s) > 0.1 * period_s):
        beats_s = beats_s[:-1]
    before = np.arange(beats_s[0] - period_s, -1e-9, -period_s)[::-1] if span_start_s > 0 else np.zeros(0)
    after = (np.arange(beats_s[-1] + period_s, duration_s, period_s)
             if span_stop_s < duration_s - 1e-6 else np.zeros(0))
    return np.concatenate([before, beats_s, after]), len(before) - front


def downbeat_phase(mono: np.ndarray, beats_s: np.ndarray, beats_per_bar: int = BEATS_PER_BAR) -> int:
    """Which of the beats (0..beats_per_bar-1, counted from the first) fall on the bar line, for
    mono audio at the analysis rate; see the module docstring for the rule."""
    from ..analysis.analyze import ANALYSIS_RATE_HZ, CHROMA_HOP, ONSET_HOP
    from ..audio.features import chroma_cqt, onset_strength, sync_mean

    sr = ANALYSIS_RATE_HZ
    y = np.asarray(mono, np.float32)
    low = onset_strength(y, sr, ONSET_HOP, n_mels=16, fmax_hz=180.0)
    beat_frames = np.round(np.asarray(beats_s) * sr / ONSET_HOP).astype(int)
    kick = np.array([low[max(f - 2, 0):f + 3].max() if f < len(low) else 0.0 for f in beat_frames])
    chroma = chroma_cqt(y, sr, CHROMA_HOP)
    edges = np.clip(np.round(np.asarray(beats_s) * sr / CHROMA_HOP).astype(int), 0, chroma.shape[1])
    per_beat = sync_mean(chroma, edges)[:, 1:len(beats_s) + 1]
    change = np.zeros(len(beats_s))
    if per_beat.shape[1] == len(beats_s):
        change[1:] = np.linalg.norm(np.diff(per_beat, axis=1), axis=0)

    def z(x: np.ndarray) -> np.ndarray:
        s = x.std()
        return (x - x.mean()) / s if s > 1e-12 else np.zeros_like(x)

    score = z(kick) + z(change)
    return int(np.argmax([score[p::beats_per_bar].mean() for p in range(beats_per_bar)]))
