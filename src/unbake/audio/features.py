"""The spectral features of :mod:`unbake.analysis` (tempo, beats, downbeats, key, alignment, time
maps): the STFT and its inverse, onset strength, the tempo of an onset envelope, the tuning
estimate, constant-Q and STFT chroma, the harmonic part of a signal, computed step for step as
librosa 0.11 computes ``librosa.onset.onset_strength(_multi)``, ``librosa.feature.tempo``,
``librosa.feature.chroma_cqt``/``chroma_stft`` and ``librosa.effects.harmonic`` (same padding,
windows, filters, tuning estimate, data types), so the analysis gives the answers it gave with
librosa; ``tests/audio/test_features.py`` holds each function to librosa's.

Written here because importing librosa (numba, ``scipy.signal``, ``scipy.stats``; its kernels are
compiled or loaded at import) is a large fixed cost in every process that analyses, and
``unbake separate`` paid it in every run, on the core the separation needs (model card, "Speed
and memory"). This module needs only numpy, ``scipy.fft``, ``scipy.ndimage`` and soxr.
"""

from __future__ import annotations

import numpy as np

C1_HZ = 440.0 * 2.0 ** ((24 - 69.0) / 12.0)  # the lowest note of the constant-Q chroma
HANN_BANDWIDTH = 1.50018310546875  # equivalent noise bandwidth of the Hann window, in bins
_TEMPO_BLOCK = 2048  # onset frames per block of the tempogram (bounds its memory)


def hann(n: int) -> np.ndarray:
    """The periodic Hann window of ``n`` samples, float64, as ``scipy.signal.get_window("hann", n)``
    computes it (a general cosine sampled on ``[-pi, pi)``)."""
    fac = np.linspace(-np.pi, np.pi, n + 1)
    w = np.zeros(n + 1)
    w += 0.5 * np.cos(0 * fac)
    w += 0.5 * np.cos(fac)
    return w[:-1]


def frames(y: np.ndarray, frame_length: int, hop: int) -> np.ndarray:
    """``(frame_length, n_frames)`` read-only view of ``y``'s frames, one per column."""
    return np.lib.stride_tricks.sliding_window_view(y, frame_length)[::hop].T


def stft(y: np.ndarray, n_fft: int, hop: int, window: np.ndarray | None = None) -> np.ndarray:
    """Centred STFT ``(n_fft // 2 + 1, 1 + len(y) // hop)`` of mono ``y`` (zero padding of
    ``n_fft // 2`` at both ends): complex128 for float64 ``y``, else complex64 (computed in float64
    either way); ``window`` (float64, length ``n_fft``) defaults to :func:`hann`."""
    from scipy import fft

    window = hann(n_fft) if window is None else window
    y = np.asarray(y)
    y = y if y.dtype == np.float64 else y.astype(np.float32)
    padded = np.pad(y, n_fft // 2)
    framed = frames(padded, n_fft, hop)
    out = np.empty((n_fft // 2 + 1, framed.shape[1]), np.complex128 if y.dtype == np.float64 else np.complex64,
                   order="F")
    step = max(1, (1 << 18) // n_fft)  # columns per FFT call: a few MB of float64 at a time
    for a in range(0, framed.shape[1], step):
        out[:, a:a + step] = fft.rfft(window[:, None] * framed[:, a:a + step], axis=0)
    return out


def istft(spec: np.ndarray, hop: int, length: int) -> np.ndarray:
    """Inverse of :func:`stft` (Hann window, ``n_fft = 2 * (bins - 1)``) as float32 of ``length``
    samples: the windowed frames overlap-added in order and divided by the summed squared window."""
    from scipy import fft

    n_fft = 2 * (spec.shape[0] - 1)
    window = hann(n_fft)
    n_frames = min(spec.shape[1], int(np.ceil((length + 2 * (n_fft // 2)) / hop)))
    total = n_fft + hop * (n_frames - 1)
    y = np.zeros(total, np.float32)
    norm = np.zeros(total, np.float32)
    squared = window ** 2
    step = max(1, (1 << 18) // n_fft)
    for a in range(0, n_frames, step):
        block = window[:, None] * fft.irfft(spec[:, a:min(a + step, n_frames)], n=n_fft, axis=0)
        for k in range(block.shape[1]):
            start = (a + k) * hop
            y[start:start + n_fft] += block[:, k]
    for k in range(n_frames):
        norm[k * hop:k * hop + n_fft] += squared
    y = y[n_fft // 2:n_fft // 2 + length]
    norm = norm[n_fft // 2:n_fft // 2 + length]
    if len(y) < length:
        y, norm = np.pad(y, (0, length - len(y))), np.pad(norm, (0, length - len(norm)))
    nonzero = norm > np.finfo(norm.dtype).tiny
    y[nonzero] /= norm[nonzero]
    return y


def harmonic_part(y: np.ndarray, *, kernel: int = 31, n_fft: int = 2048) -> np.ndarray:
    """The harmonic part of float32 ``y`` (median-filtering harmonic/percussive separation: the
    magnitude median over ``kernel`` frames against the median over ``kernel`` bins, soft masks
    of power 2, no margin), as ``librosa.effects.harmonic`` computes it."""
    from scipy.ndimage import median_filter

    y = np.asarray(y, np.float32)
    spec = stft(y, n_fft, n_fft // 4)
    mag = np.abs(spec)
    silent = mag == 0
    phase = np.empty_like(spec)
    safe = mag + silent
    phase.real = spec.real / safe + silent
    phase.imag = spec.imag / safe
    harm = median_filter(mag, size=(1, kernel), mode="reflect")
    perc = median_filter(mag, size=(kernel, 1), mode="reflect")
    z = np.maximum(harm, perc).astype(mag.dtype)
    bad = z < np.finfo(mag.dtype).tiny
    z[bad] = 1
    mask = (harm / z) ** 2.0
    other = (perc / z) ** 2.0
    good = ~bad
    mask[good] /= mask[good] + other[good]
    mask[bad] = 0.5
    return istft(mag * mask * phase, n_fft // 4, len(y))


# --- mel filterbank: librosa.filters.mel (Slaney scale, Slaney area normalisation) ---------------

def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    mels = hz / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    log_region = hz >= min_log_hz
    mels[log_region] = min_log_mel + np.log(hz[log_region] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    hz = f_sp * mels
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    log_region = mels >= min_log_mel
    hz[log_region] = min_log_hz * np.exp(logstep * (mels[log_region] - min_log_mel))
    return hz


def mel_filterbank(sample_rate_hz: float, n_fft: int, n_mels: int, fmax_hz: float | None = None) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` float32, equal to ``librosa.filters.mel(sr=, n_fft=, n_mels=,
    fmax=)`` (fmin 0; ``fmax_hz`` defaults to half the sample rate)."""
    fmax_hz = sample_rate_hz / 2.0 if fmax_hz is None else fmax_hz
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate_hz)
    mel_edges = np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([float(fmax_hz)]))[0], n_mels + 2)
    mel_f = _mel_to_hz(mel_edges)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    return weights


# --- onset strength and tempo --------------------------------------------------------------------

def onset_strength(y: np.ndarray, sample_rate_hz: float, hop: int, *, n_mels: int = 128,
                   fmax_hz: float | None = None, n_fft: int = 2048,
                   band_edges: tuple[int, ...] | None = None) -> np.ndarray:
    """Spectral flux ``(1 + len(y) // hop,)`` of mono ``y`` (float32; float64 for float64 ``y``): the
    mean over the mel bands of the rise in dB (80 dB range) from one frame to the next, delayed to
    the frame centres. With
    ``band_edges`` (mel band indices, ascending), one such envelope per group of bands between two
    consecutive edges: ``(groups, frames)``, as ``librosa.onset.onset_strength_multi(channels=)``."""
    power = np.abs(stft(y, n_fft, hop)) ** 2
    mel = np.einsum("...ft,mf->...mt", power, mel_filterbank(sample_rate_hz, n_fft, n_mels, fmax_hz), optimize=True)
    db = power_to_db(mel)
    rise = np.maximum(0.0, db[:, 1:] - db[:, :-1])
    delay = 1 + n_fft // (2 * hop)
    if band_edges is None:
        return np.pad(np.mean(rise, axis=-2), (delay, 0))[:db.shape[-1]]
    edges = np.unique(np.clip(np.asarray(band_edges), 0, n_mels)).astype(int)
    env = np.empty((len(edges) - 1, rise.shape[-1]), rise.dtype)
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        env[i] = np.mean(rise[a:b], axis=-2)
    return np.pad(env, ((0, 0), (delay, 0)))[:, :db.shape[-1]]


def power_to_db(power: np.ndarray, *, ref: float | None = 1.0, top_db: float = 80.0) -> np.ndarray:
    """``power`` in dB re ``ref`` (None: re its largest value), floored ``top_db`` below the
    largest, as ``librosa.power_to_db`` computes it."""
    db = 10.0 * np.log10(np.maximum(1e-10, power))
    if ref is None:
        db -= 10.0 * np.log10(np.maximum(1e-10, np.max(power)))
    elif ref != 1.0:
        db -= 10.0 * np.log10(np.maximum(1e-10, ref))
    return np.maximum(db, db.max() - top_db)


def tempo_bpms(win_length: int, sample_rate_hz: float, hop: int) -> np.ndarray:
    """The tempo (BPM) of each autocorrelation lag of a tempogram; lag 0 is infinite."""
    bpms = np.zeros(win_length)
    bpms[0] = np.inf
    bpms[1:] = 60.0 * sample_rate_hz / (hop * np.arange(1.0, win_length))
    return bpms


def tempogram_columns(onset_env: np.ndarray, win_length: int):
    """Blocks ``(win_length, m)`` of the autocorrelation tempogram of an onset envelope, in
    frame order: each frame's ``win_length`` centred envelope values (linear ramps to zero past
    the ends), Hann-windowed, autocorrelated and scaled to a peak of 1."""
    from scipy import fft

    n = len(onset_env)
    half = win_length // 2
    padded = np.pad(onset_env, (half, half), mode="linear_ramp", end_values=(0, 0))
    framed = frames(padded, win_length, 1)
    window = hann(win_length)[:, None]
    n_pad = fft.next_fast_len(2 * win_length - 1, real=True)
    for a in range(0, n, _TEMPO_BLOCK):
        spectrum = fft.rfft(framed[:, a:min(a + _TEMPO_BLOCK, n)] * window, n=n_pad, axis=0)
        ac = fft.irfft(spectrum.real ** 2 + spectrum.imag ** 2, n=n_pad, axis=0)[:win_length]
        peak = np.max(np.abs(ac), axis=0, keepdims=True)
        peak[peak < np.finfo(ac.dtype).tiny] = 1.0
        yield ac / peak


def tempo(onset_env: np.ndarray, sample_rate_hz: float, hop: int, *, start_bpm: float = 120.0,
          std_bpm: float = 1.0, ac_size_s: float = 8.0, max_tempo: float | None = 320.0,
          per_frame: bool = False) -> np.ndarray:
    """Tempo (BPM) of an onset envelope: the autocorrelation lag of the ``ac_size_s``-second
    tempogram, averaged over the frames (``per_frame``: each frame's own), that is strongest
    under a log-normal prior around ``start_bpm`` (``std_bpm`` octaves), below ``max_tempo``.
    Returns ``(1,)``, or ``(frames,)`` with ``per_frame``."""
    win_length = int(int(ac_size_s * sample_rate_hz) // hop)
    bpms = tempo_bpms(win_length, sample_rate_hz, hop)
    with np.errstate(divide="ignore"):
        logprior = -0.5 * ((np.log2(bpms) - np.log2(start_bpm)) / std_bpm) ** 2
    if max_tempo is not None:
        logprior[:int(np.argmax(bpms < max_tempo))] = -np.inf
    logprior = logprior[:, None]
    if per_frame:
        best = [np.argmax(np.log1p(1e6 * tg) + logprior, axis=0) for tg in tempogram_columns(onset_env, win_length)]
        return np.take(bpms, np.concatenate(best) if best else np.zeros(0, int))
    total = np.zeros((win_length, 1))
    for tg in tempogram_columns(onset_env, win_length):
        total += tg.sum(axis=1, keepdims=True)
    mean = total / max(len(onset_env), 1)
    return np.take(bpms, np.argmax(np.log1p(1e6 * mean) + logprior, axis=0))


# --- tuning and constant-Q chroma ----------------------------------------------------------------

def _parabolic_shift(x: np.ndarray) -> np.ndarray:
    """Sub-bin offset of the vertex of the parabola through each bin and its two neighbours along
    axis 0 (0 at the edges and where it would move more than a bin), float32. The arithmetic
    types are those of librosa's compiled stencil: the sum of the neighbours in float32, the rest
    in float64."""
    shift = np.zeros_like(x)
    a = (x[2:] + x[:-2]).astype(np.float64) - 2 * x[1:-1].astype(np.float64)
    b = (x[2:] - x[:-2]).astype(np.float64) / 2
    ok = np.abs(b) < np.abs(a)
    inner = np.zeros_like(a)
    np.divide(-b, a, out=inner, where=ok)
    shift[1:-1] = inner
    return shift


def estimate_tuning(y: np.ndarray, sample_rate_hz: float, bins_per_octave: int, *, n_fft: int = 2048,
                    resolution: float = 0.01) -> float:
    """Deviation of ``y``'s tuning from A440, in fractions of a ``bins_per_octave`` bin: the most
    common residual of its spectral peaks (150 Hz–4 kHz, within 20 dB of each frame's loudest,
    the louder half) against the equal-tempered grid."""
    return tuning_of_spectrogram(np.abs(stft(y, n_fft, n_fft // 4)), sample_rate_hz, n_fft, bins_per_octave,
                                 resolution=resolution)


def tuning_of_spectrogram(full: np.ndarray, sample_rate_hz: float, n_fft: int, bins_per_octave: int, *,
                          resolution: float = 0.01) -> float:
    """:func:`estimate_tuning` of a spectrogram ``(n_fft // 2 + 1, frames)`` (magnitude or power:
    the peaks are the same, their weights differ)."""
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate_hz)
    band = np.nonzero((150.0 <= fft_freqs) & (fft_freqs < min(4000.0, sample_rate_hz / 2)))[0]
    if not band.size:
        return 0.0
    # only the band's bins and one neighbour on each side enter the peaks (the band stops below
    # the Nyquist bin); every step below is per bin and its neighbours, so the values equal those
    # of the whole spectrum
    lo = max(int(band[0]) - 1, 0)
    mag = full[lo:int(band[-1]) + 2]
    slope = np.gradient(mag, axis=-2)
    shift = _parabolic_shift(mag)
    dskew = 0.5 * slope * shift
    gated = mag * (mag > 0.1 * np.max(full, axis=-2)[None, :])
    peak = np.zeros(gated.shape, bool)
    peak[1:-1] = (gated[1:-1] > gated[:-2]) & (gated[1:-1] >= gated[2:])
    inside = np.zeros(len(mag), bool)
    inside[band - lo] = True
    idx = np.nonzero(inside[:, None] & peak)
    pitches = np.zeros_like(mag)
    mags = np.zeros_like(mag)
    pitches[idx] = ((idx[-2] + lo) + shift[idx]) * float(sample_rate_hz) / n_fft
    mags[idx] = mag[idx] + dskew[idx]
    voiced = pitches > 0
    threshold = np.median(mags[voiced]) if voiced.any() else 0.0
    freqs = pitches[(mags >= threshold) & voiced]
    freqs = freqs[freqs > 0]
    if not freqs.size:
        return 0.0
    residual = np.mod(bins_per_octave * np.log2(freqs / (440.0 / 16)), 1.0)
    residual[residual >= 0.5] -= 1.0
    edges = np.linspace(-0.5, 0.5, int(np.ceil(1.0 / resolution)) + 1)
    counts, _ = np.histogram(residual, edges)
    return float(edges[np.argmax(counts)])


def _relative_bandwidth(freqs: np.ndarray) -> np.ndarray:
    bpo = np.empty_like(freqs)
    logf = np.log2(freqs)
    bpo[0] = 1 / (logf[1] - logf[0])
    bpo[-1] = 1 / (logf[-1] - logf[-2])
    bpo[1:-1] = 2 / (logf[2:] - logf[:-2])
    return (2.0 ** (2 / bpo) - 1) / (2.0 ** (2 / bpo) + 1)


def _octave_basis(sample_rate_hz: float, freqs: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, int]:
    """``(spectra of one octave's filters (bins, n_fft // 2 + 1) complex64, n_fft)``: Hann-windowed
    complex exponentials ``Q`` cycles long, unit L1 norm, centred in a power-of-two frame; the
    smallest coefficients of each row that together hold 1 % of its magnitude are zeroed."""
    from scipy import fft

    lengths = (1.0 / alpha) * sample_rate_hz / freqs
    n_fft = int(2.0 ** np.ceil(np.log2(max(lengths))))
    basis = np.zeros((len(freqs), n_fft), np.complex64)
    for row, (ilen, freq) in enumerate(zip(lengths, freqs)):
        angle = np.arange(-ilen // 2, ilen // 2, dtype=float) * 2 * np.pi * freq / sample_rate_hz
        sig = (np.cos(angle) + 1j * np.sin(angle)) * hann(len(angle))
        sig = sig / np.sum(np.abs(sig))
        start = (n_fft - len(sig)) // 2
        basis[row, start:start + len(sig)] = sig
    basis *= lengths[:, np.newaxis] / float(n_fft)
    spectra = fft.fft(basis, n=n_fft, axis=1)[:, :n_fft // 2 + 1]
    mags = np.abs(spectra)
    ordered = np.sort(mags, axis=1)
    cumulative = np.cumsum(ordered / np.sum(mags, axis=1, keepdims=True), axis=1)
    cut = ordered[np.arange(len(freqs)), np.argmin(cumulative < 0.01, axis=1)]
    return np.where(mags >= cut[:, None], spectra, 0).astype(np.complex64), n_fft


def cqt_magnitude(y: np.ndarray, sample_rate_hz: float, hop: int, *, n_bins: int, bins_per_octave: int,
                  fmin_hz: float = C1_HZ, tuning: float = 0.0) -> np.ndarray:
    """``|CQT|`` ``(n_bins, frames)`` float32 of float32 ``y``, octave by octave from the top: each
    octave's filters applied to the STFT of the signal halved in rate (soxr, high quality) for
    every octave down, the responses scaled by ``1 / sqrt(filter length)``."""
    import soxr

    n_octaves = int(np.ceil(float(n_bins) / bins_per_octave))
    fmin_hz = fmin_hz * 2.0 ** (tuning / bins_per_octave)
    ratios = 2.0 ** (np.arange(0, bins_per_octave, dtype=float) / bins_per_octave)
    freqs = np.sort(np.multiply.outer(2.0 ** np.arange(float(n_octaves)), ratios).flatten()[:n_bins]) * fmin_hz
    alpha = _relative_bandwidth(freqs)
    lengths = (1.0 / alpha) * sample_rate_hz / freqs
    cutoff = max(freqs * (1 + 0.5 * HANN_BANDWIDTH * alpha))
    if cutoff > sample_rate_hz / 2:
        raise ValueError(f"constant-Q filters up to {cutoff:.0f} Hz exceed the Nyquist frequency")
    my_y, my_sr, my_hop = np.asarray(y, np.float32), float(sample_rate_hz), hop
    responses = []
    for octave in range(n_octaves):
        sl = slice(-bins_per_octave, None) if octave == 0 else slice(-bins_per_octave * (octave + 1),
                                                                     -bins_per_octave * octave)
        basis, n_fft = _octave_basis(my_sr, freqs[sl], alpha[sl])
        basis *= np.sqrt(sample_rate_hz / my_sr)
        responses.append(basis @ stft(my_y, n_fft, my_hop, np.ones(n_fft)))
        if octave + 1 < n_octaves and my_hop % 2 == 0:  # an odd hop keeps the rate, as librosa does
            my_hop //= 2
            my_sr /= 2.0
            half = soxr.resample(my_y, 2, 1, quality="soxr_hq")
            size = int(np.ceil(len(my_y) * 0.5))
            half = half[:size] if len(half) >= size else np.pad(half, (0, size - len(half)))
            half /= np.sqrt(0.5)
            my_y = np.asarray(half, np.float32)
    columns = min(r.shape[-1] for r in responses)
    out = np.empty((n_bins, columns), np.complex64)
    end = n_bins
    for r in responses:
        count = min(r.shape[0], end)
        out[end - count:end] = r[-count:, :columns]
        end -= count
    out /= np.sqrt(lengths)[:, None]
    return np.abs(out)


def chroma_cqt(y: np.ndarray, sample_rate_hz: float, hop: int, *, norm: float | None = np.inf,
               n_octaves: int = 7, bins_per_octave: int = 36) -> np.ndarray:
    """Chroma ``(12, frames)`` float32 (C first) of float32 ``y`` from a ``n_octaves``-octave CQT
    from C1 at the tuning :func:`estimate_tuning` finds: each pitch class sums the three bins
    around it in every octave; each frame scaled to a peak of 1 (``norm=None``: unscaled, so
    louder frames weigh more in an average)."""
    y = np.asarray(y, np.float32)
    tuning = estimate_tuning(y, sample_rate_hz, bins_per_octave)
    magnitude = cqt_magnitude(y, sample_rate_hz, hop, n_bins=n_octaves * bins_per_octave,
                              bins_per_octave=bins_per_octave, tuning=tuning)
    merge = bins_per_octave // 12
    to_chroma = np.roll(np.repeat(np.eye(12), merge, axis=1), -(merge // 2), axis=1)
    to_chroma = np.tile(to_chroma, n_octaves)[:, :magnitude.shape[0]].astype(np.float32)
    chroma = np.einsum("cf,...ft->...ct", to_chroma, magnitude, optimize=True)
    chroma[chroma < 0.0] = 0.0
    if norm is None:
        return chroma
    if norm != np.inf:
        raise ValueError(f"norm must be None or inf, got {norm}")
    return _frames_to_peak_one(chroma)


def chroma_filterbank(sample_rate_hz: float, n_fft: int, tuning: float) -> np.ndarray:
    """``(12, n_fft // 2 + 1)`` float32, equal to ``librosa.filters.chroma(sr=, n_fft=, tuning=)``:
    for each bin a Gaussian over the pitch classes around its own (unit L2 norm per bin), weighted
    by a Gaussian over octaves centred on octave 5 (two octaves wide), C first."""
    frequencies = np.linspace(0, sample_rate_hz, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / 12)
    frqbins = 12 * np.log2(frequencies / (a440 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * 12], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, 12, dtype="d")).T
    d = np.remainder(d + 6.0 + 10 * 12, 12) - 6.0
    wts = np.exp(-0.5 * (2 * d / binwidthbins) ** 2)
    length = np.sum(np.abs(wts).astype(float) ** 2, axis=0, keepdims=True) ** (1.0 / 2)
    length[length < np.finfo(wts.dtype).tiny] = 1.0
    wts = wts / length
    wts *= np.exp(-0.5 * ((frqbins / 12 - 5.0) / 2) ** 2)
    wts = np.roll(wts, -3, axis=0)
    return np.ascontiguousarray(wts[:, :int(1 + n_fft / 2)], dtype=np.float32)


def chroma_stft(y: np.ndarray, sample_rate_hz: float, hop: int, *, n_fft: int = 2048) -> np.ndarray:
    """Chroma ``(12, frames)`` float32 (C first) of float32 ``y`` from its power spectrogram, at
    the tuning its peaks give (:func:`tuning_of_spectrogram`), each frame scaled to a peak of 1."""
    power = np.abs(stft(y, n_fft, hop)) ** 2
    tuning = tuning_of_spectrogram(power, sample_rate_hz, n_fft, 12)
    raw = np.einsum("cf,...ft->...ct", chroma_filterbank(sample_rate_hz, n_fft, tuning), power, optimize=True)
    return _frames_to_peak_one(raw)


def pick_onsets(env: np.ndarray, sample_rate_hz: float, hop: int, *, delta: float = 0.07) -> np.ndarray:
    """Frames of the onsets in an onset envelope, as ``librosa.onset.onset_detect`` picks them: the
    envelope scaled to [0, 1]; a frame is an onset when it is the largest within 30 ms before it,
    at least ``delta`` above the mean from 100 ms before to 100 ms after it, and 30 ms or more
    after the previous onset."""
    env = np.asarray(env)
    env = env - np.min(env, keepdims=True, axis=-1)
    env /= np.max(env, keepdims=True, axis=-1) + np.finfo(env.dtype).tiny
    if not env.any() or not np.all(np.isfinite(env)):
        return np.zeros(0, int)
    pre_max = wait = int(0.03 * sample_rate_hz // hop)  # frames
    post_max = 1  # the maximum is taken up to the frame itself
    pre_avg = int(0.1 * sample_rate_hz // hop)
    post_avg = pre_avg + 1
    n_frames = len(env)
    onsets = []
    if env[0] >= np.max(env[:min(post_max, n_frames)]) and env[0] >= np.mean(env[:min(post_avg, n_frames)]) + delta:
        onsets.append(0)
        n = wait + 1
    else:
        n = 1
    while n < n_frames:
        if env[n] == np.max(env[max(0, n - pre_max):min(n + post_max, n_frames)]) and \
                env[n] >= np.mean(env[max(0, n - pre_avg):min(n + post_avg, n_frames)]) + delta:
            onsets.append(n)
            n += wait + 1
        else:
            n += 1
    return np.array(onsets, int)


def _frames_to_peak_one(x: np.ndarray) -> np.ndarray:
    """Each column of ``x`` divided by its largest magnitude (columns of zeros left as they are),
    in ``x``'s dtype."""
    peak = np.max(np.abs(x).astype(float), axis=0, keepdims=True)
    peak[peak < np.finfo(x.dtype).tiny] = 1.0
    return (x / peak).astype(x.dtype)


def sync_mean(data: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Column means of ``data (rows, frames)`` between consecutive frame indices, after the
    indices are clipped to ``[0, frames]``, joined by 0 and ``frames`` and made unique (as
    ``librosa.util.sync`` with ``pad=True``): ``(rows, segments)``."""
    n = data.shape[-1]
    bounds = np.unique(np.concatenate(([0, n], np.clip(np.asarray(edges), 0, n)))).astype(int)
    out = np.empty((data.shape[0], len(bounds) - 1), dtype=data.dtype)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        out[:, i] = np.mean(data[:, a:b], axis=-1)
    return out
