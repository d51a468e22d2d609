"""BSSEval v4 (SDR, ISR, SIR, SAR) with museval's semantics, vectorised with numpy.

This reproduces ``museval.evaluate(references, estimates, win, hop, mode="v4")``
(sigsep-mus-eval, the SiSEC 2018 / MUSDB18 reference) and museval's per-track
median, without its per-channel Python loops:

* Distortion filters are time-invariant (v4): ``FILTER_TAPS``-tap multichannel
  FIR filters fitted by least squares on the *whole* signals, once. ``C``
  projects every estimate onto all references (for SIR/SAR), ``Cj`` projects
  estimate j onto reference j only (for ISR). The normal equations are
  regularised by float64 machine epsilon on the diagonal, as in museval.
  Reference channels that repeat another one (mono stems stored as stereo,
  exactly or up to -60 dB of coding noise) are left out of the fit so the
  system stays solvable and the result does not depend on rounding. museval
  keeps them; its SIR/SAR then depend on LU rounding: reordering the stems
  moves museval's own figures by 0.02 dB on a MUSDB18 track with an exactly
  mono bass and by 1.5 dB on one whose bass channels differ by coding noise.
* Each window (``window_s``/``hop_s`` truncated to whole samples; only full
  windows, unless one window covers the whole signal) is decomposed with those
  filters applied to the windowed references, zero-padded by ``FILTER_TAPS - 1``
  samples at the end, exactly as museval's ``_bss_decomp_mtifilt``:
  ``s = ref_j``, ``e_spat = proj_j - s``, ``e_interf = proj_all - proj_j``,
  ``e_artif = est_j - proj_all``, and
  ``SDR = |s|^2/|est - s|^2``, ``ISR = |s|^2/|e_spat|^2``,
  ``SIR = |proj_j|^2/|e_interf|^2``, ``SAR = |proj_all|^2/|e_artif|^2`` in dB.
* A window in which ANY reference or ANY estimate is silent (its channel sum is
  all zeros) is NaN for every stem.
* The per-stem score is the median over windows ignoring NaN, after turning
  infinite values into NaN as museval's score store does.

Agreement with museval on MUSDB18 excerpts (tests/fixtures/museval_reference.json):
SDR to 1e-12 dB, ISR/SIR/SAR medians to 0.003 dB, which is museval's own
spread when the stem order changes.

SDR needs no filters, so it depends only on the target's own reference and
estimate: :func:`csdr` computes it for one stem. It equals museval's SDR for
that stem except in windows where *another* stem is silent, which the joint
evaluation (:func:`bss_eval`) marks NaN.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import scipy.fft
import scipy.linalg

from unbake.errors import InvalidAudioError
from unbake.metrics.sdr import check_pair, check_stem_pair, finite_or_none, si_sdr, usdr

__all__ = ["FILTER_TAPS", "METRICS", "csdr", "bss_eval", "evaluate_stems"]

log = logging.getLogger(__name__)

FILTER_TAPS = 512
"""Length of the distortion filters (museval's ``filters_len``)."""

METRICS = ("SDR", "ISR", "SIR", "SAR")

# Sizes of the FFT blocks used to accumulate lagged correlations; only the
# memory use depends on them, not the result.
_CORRELATION_FFT = 1 << 15
# Cap on complex values held per batch of windows during projection.
_PROJECTION_BATCH_VALUES = 1 << 23
# A reference channel whose part not explained by a scaled copy of another
# channel is below this fraction of its energy (-60 dB) counts as a duplicate.
_NEAR_DUPLICATE = 1e-6
# Below this reciprocal condition number the LU solution, hence SIR/SAR, was
# seen to move by tenths of a dB with the order of the stems (MUSDB18 tracks
# with near-mono stems); well-behaved tracks sit around 1e-15.
_RCOND_WARNING = 1e-17


def csdr(
    reference: Any, estimate: Any, sample_rate: int, window_s: float = 1.0, hop_s: float = 1.0
) -> float | None:
    """Chunk-median SDR ("cSDR", SiSEC 2018) of one stem, in dB.

    The median over ``window_s`` windows (every ``hop_s``) of
    ``10 log10(|ref|^2 / |est - ref|^2)`` — museval's BSSEval v4 SDR for this
    target. Windows where the reference or the estimate is silent are skipped,
    as are windows with an exact estimate (infinite SDR, stored as NaN by
    museval). Returns None when no window is left.

    reference, estimate: (c, t) arrays of the same shape.
    """
    ref, est = check_pair(reference, estimate)
    window, hop = _window_samples(window_s, hop_s, sample_rate)
    starts, length = _frames(ref.shape[-1], window, hop)
    frames = _gather(ref[None], starts, length)[:, 0]
    est_frames = _gather(est[None], starts, length)[:, 0]
    silent = _silent(frames) | _silent(est_frames)
    num = np.sum(frames**2, axis=(-2, -1))
    den = np.sum((est_frames - frames) ** 2, axis=(-2, -1))
    sdr = _ratio_db(num, den)
    sdr[silent] = np.nan
    return _median(sdr)


def bss_eval(
    references: Any,
    estimates: Any,
    sample_rate: int,
    window_s: float = 1.0,
    hop_s: float = 1.0,
    filter_taps: int = FILTER_TAPS,
) -> dict[str, Any]:
    """Framewise BSSEval v4 images metrics for a set of stems, as museval computes them.

    references, estimates: ``{name: (c, t)}`` dicts with the same keys, or
        (s, c, t) arrays (stems named ``"0"``, ``"1"``, ...).
    sample_rate: in Hz; windows are ``int(window_s * sample_rate)`` samples.
    filter_taps: length of the distortion filters; keep the default (512) for
        figures comparable with published BSSEval v4 scores.

    Returns ``{"window_samples", "hop_samples", "n_windows", "stems": {name:
    {"SDR": median, "ISR": ..., "SIR": ..., "SAR": ..., "frames": {"SDR":
    [per window], ...}}}}``. Medians ignore NaN and infinite frames (None when
    none is left); frame values that are NaN (silent window) or infinite
    (exact component) are None.

    A stem whose reference or estimate is silent throughout makes every
    window NaN (museval refuses such input); this is logged as a warning.
    """
    names, refs, ests = check_stem_pair(references, estimates)
    window, hop = _window_samples(window_s, hop_s, sample_rate)
    if filter_taps < 1:
        raise InvalidAudioError(f"filter_taps must be at least 1, got {filter_taps}")
    values = _bss_eval_v4(refs, ests, window, hop, filter_taps)
    stems = {}
    for i, name in enumerate(names):
        entry: dict[str, Any] = {key: _median(values[m, i]) for m, key in enumerate(METRICS)}
        entry["frames"] = {key: [finite_or_none(v) for v in values[m, i]] for m, key in enumerate(METRICS)}
        stems[name] = entry
    return {
        "window_samples": window,
        "hop_samples": hop,
        "n_windows": int(values.shape[-1]),
        "stems": stems,
    }


def evaluate_stems(references: Any, estimates: Any, sample_rate: int) -> dict[str, dict[str, float | None]]:
    """The usual per-stem scores in one call.

    references, estimates: ``{name: (c, t)}`` dicts with the same keys (or
    (s, c, t) arrays). Returns ``{name: {"SDR", "ISR", "SIR", "SAR", "uSDR",
    "SI-SDR"}}``: museval v4 medians over 1 s windows (joint evaluation of the
    stems; None when undefined), the MDX uSDR and the SI-SDR of the whole signal.

    Unlike :func:`bss_eval`, a stem whose reference or estimate is silent
    throughout (a track without vocals, a model that outputs nothing) is left
    out of the joint BSSEval instead of turning every window of every stem
    into NaN; its four BSSEval entries are None and its uSDR/SI-SDR are still
    reported. museval refuses such input altogether.
    """
    names, refs, ests = check_stem_pair(references, estimates)
    window, hop = _window_samples(1.0, 1.0, sample_rate)
    active = [i for i in range(len(names)) if not (_wholly_silent(refs[i]) or _wholly_silent(ests[i]))]
    medians: dict[int, dict[str, float | None]] = {}
    if active:
        values = _bss_eval_v4(refs[active], ests[active], window, hop, FILTER_TAPS)
        for row, i in enumerate(active):
            medians[i] = {key: _median(values[m, row]) for m, key in enumerate(METRICS)}
    out = {}
    for i, name in enumerate(names):
        scores: dict[str, float | None] = medians.get(i, dict.fromkeys(METRICS))
        scores["uSDR"] = usdr(refs[i], ests[i])
        scores["SI-SDR"] = si_sdr(refs[i], ests[i])
        out[name] = scores
    return out


# Implementation -------------------------------------------------------------------------------


def _window_samples(window_s: float, hop_s: float, sample_rate: int) -> tuple[int, int]:
    if sample_rate <= 0:
        raise InvalidAudioError(f"sample_rate must be positive, got {sample_rate}")
    window, hop = int(window_s * sample_rate), int(hop_s * sample_rate)
    if window <= 0 or hop <= 0:
        raise InvalidAudioError(
            f"window_s={window_s} and hop_s={hop_s} must each be at least one sample at {sample_rate} Hz"
        )
    return window, hop


def _frames(n_samples: int, window: int, hop: int) -> tuple[np.ndarray, int]:
    """Window starts and length, as museval's ``Framing``: full windows only."""
    if window < n_samples:
        count = (n_samples - window + hop) // hop
        return np.arange(count) * hop, window
    return np.zeros(1, dtype=int), n_samples


def _gather(signals: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(..., t) -> (w, ..., length) windows (a copy)."""
    index = starts[:, None] + np.arange(length)[None, :]
    return np.moveaxis(signals[..., index], -2, 0)


def _silent(frames: np.ndarray) -> np.ndarray:
    """(w, ..., c, t) -> (w,) True where any signal's channel sum is all zeros (museval's test)."""
    channel_sum = frames.sum(axis=-2)
    silent = np.all(channel_sum == 0, axis=-1)
    return silent.reshape(silent.shape[0], -1).any(axis=1)


def _wholly_silent(signal: np.ndarray) -> bool:
    """(c, t) -> True when the channel sum is all zeros (museval's silence test)."""
    return bool(np.all(signal.sum(axis=0) == 0))


def _ratio_db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """10 log10(num / den) with den == 0 -> +inf, as museval's ``_safe_db``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(num / den)
    return np.where(den == 0, np.inf, out)


def _median(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else None


def _lagged_correlations(a: np.ndarray, b: np.ndarray, taps: int) -> np.ndarray:
    """out[i, j, k] = sum_t a[i, t] * b[j, t + k] for k = 0..taps-1 (zero beyond the end).

    a: (m, t), b: (n, t). Accumulated block by block in the frequency domain
    so memory does not grow with t.
    """
    n_samples = a.shape[-1]
    n_fft = max(_CORRELATION_FFT, scipy.fft.next_fast_len(2 * taps, real=True))
    block = n_fft - taps + 1
    acc = np.zeros((a.shape[0], b.shape[0], n_fft // 2 + 1), dtype=np.complex128)
    for start in range(0, n_samples, block):
        a_f = scipy.fft.rfft(a[:, start : start + block], n=n_fft, axis=-1)
        # b needs taps-1 samples beyond the block; no wrap-around because
        # block + taps - 1 == n_fft.
        b_f = scipy.fft.rfft(b[:, start : start + block + taps - 1], n=n_fft, axis=-1)
        acc += b_f[None, :, :] * np.conj(a_f[:, None, :])
    return scipy.fft.irfft(acc, n=n_fft, axis=-1)[..., :taps]


def _bss_eval_v4(refs: np.ndarray, ests: np.ndarray, window: int, hop: int, taps: int) -> np.ndarray:
    """museval ``bss_eval`` (v4, images, no permutation) on float64 (s, c, t) arrays.

    Returns (4, s, w): SDR, ISR, SIR, SAR per stem and window, with NaN for
    silent windows and +-inf where museval gives them.
    """
    n_src, n_chan, n_samples = refs.shape
    n_sig = n_src * n_chan
    x = refs.reshape(n_sig, n_samples)
    e = ests.reshape(n_sig, n_samples)

    for i in range(n_src):
        for what, arr in (("reference", refs), ("estimate", ests)):
            if _wholly_silent(arr[i]):
                log.warning("BSSEval: %s of stem %d is silent; every window will be NaN", what, i)

    filters, own_filters = _distortion_filters(x, e, n_src, n_chan, taps)

    starts, length = _frames(n_samples, window, hop)
    out_len = length + taps - 1
    n_fft = scipy.fft.next_fast_len(out_len, real=True)
    filters_f = np.moveaxis(scipy.fft.rfft(filters, n=n_fft, axis=1), 1, 0)  # (f, p, m)
    own_f = scipy.fft.rfft(own_filters, n=n_fft, axis=2)  # (j, ci, f, c)

    result = np.empty((4, n_src, starts.size))
    batch = max(1, _PROJECTION_BATCH_VALUES // (n_sig * (n_fft // 2 + 1)))
    for first in range(0, starts.size, batch):
        chunk = starts[first : first + batch]
        ref_w = _gather(refs, chunk, length)  # (w, s, c, length)
        est_w = _gather(ests, chunk, length)
        n_w = chunk.size
        ref_f = scipy.fft.rfft(ref_w, n=n_fft, axis=-1)  # (w, s, c, f)

        # Projection of every estimate onto all references.
        all_f = np.matmul(
            np.transpose(ref_f.reshape(n_w, n_sig, -1), (2, 0, 1)),  # (f, w, p)
            filters_f,  # (f, p, m)
        )  # (f, w, m)
        proj_all = scipy.fft.irfft(np.transpose(all_f, (1, 2, 0)), n=n_fft, axis=-1)[..., :out_len]
        proj_all = proj_all.reshape(n_w, n_src, n_chan, out_len)
        # Projection of estimate j onto reference j only.
        own = np.einsum("wjkf,jkfc->wjcf", ref_f, own_f)
        proj_own = scipy.fft.irfft(own, n=n_fft, axis=-1)[..., :out_len]

        energy_true = np.sum(ref_w**2, axis=(-2, -1))
        sdr_den = np.sum((est_w - ref_w) ** 2, axis=(-2, -1))
        spat = proj_own.copy()
        spat[..., :length] -= ref_w
        artif = -proj_all
        artif[..., :length] += est_w
        values = (
            (energy_true, sdr_den),
            (energy_true, np.sum(spat**2, axis=(-2, -1))),
            (np.sum(proj_own**2, axis=(-2, -1)), np.sum((proj_all - proj_own) ** 2, axis=(-2, -1))),
            (np.sum(proj_all**2, axis=(-2, -1)), np.sum(artif**2, axis=(-2, -1))),
        )
        silent = _silent(ref_w) | _silent(est_w)
        for m, (num, den) in enumerate(values):
            ratio = _ratio_db(num, den)  # (w, s)
            ratio[silent] = np.nan
            result[m, :, first : first + n_w] = ratio.T
    return result


def _distortion_filters(
    x: np.ndarray, e: np.ndarray, n_src: int, n_chan: int, taps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares distortion filters on the whole signals.

    x, e: references and estimates as (s*c, t) rows. Returns ``filters`` (p, l, m):
    tap l from reference row p to estimate row m, projecting every estimate
    onto all delayed references; and ``own_filters`` (s, ci, l, c) projecting
    estimate j onto reference j alone.

    A reference row that repeats an earlier one (mono stems stored as two
    identical channels) or is all zeros adds nothing to the span but makes the
    normal equations exactly singular; such rows are left out of the fit and
    get zero filters. The projection, which is all the metrics use, is the
    same. Rows that differ from a scaled copy of an earlier row by less than
    ``_NEAR_DUPLICATE`` of their energy (lossy-coded mono stems, whose channels
    differ only by coding noise 60-110 dB down) are dropped too: the tiny
    difference would enter the fit with huge gains that float64 cannot
    resolve, making the figures depend on rounding. museval solves such
    systems as they are; its SIR/SAR then change with the order of the stems.
    """
    n_sig = n_src * n_chan
    # Gram matrix of the delayed references: G[(p, a), (q, b)] = <x_p(. - a), x_q(. - b)>
    # = r_pq[a - b] with r_pq[k] = sum_t x_p(t) x_q(t + k) and r_pq[-k] = r_qp[k].
    r_pos = _lagged_correlations(x, x, taps)  # (p, q, k >= 0)
    # Reversed full lag range, k = taps-1 .. -(taps-1), so that window i of a
    # sliding view holds r_pq[a - b] for a = taps-1-i and b = 0..taps-1.
    r_rev = np.concatenate([r_pos[..., ::-1], np.swapaxes(r_pos, 0, 1)[..., 1:]], axis=-1)
    toeplitz = np.lib.stride_tricks.sliding_window_view(r_rev, taps, axis=-1)[:, :, ::-1, :]  # (p, q, a, b)
    # Right-hand sides: D[(p, l), m] = <x_p(. - l), e_m> = sum_t x_p(t) e_m(t + l).
    cross = _lagged_correlations(x, e, taps)  # (p, m, l)
    inner = r_pos[..., 0]

    # Absolute row sums of every Toeplitz block, for the 1-norm of the Gram matrix
    # without another pass over it.
    block_abs_sums = np.lib.stride_tricks.sliding_window_view(np.abs(r_rev), taps, axis=-1).sum(axis=-1)

    def solve(rows: list[int], cols: list[int]) -> np.ndarray:
        size = len(rows) * taps
        gram = np.empty((len(rows), taps, len(rows), taps))
        for i, p in enumerate(rows):
            for k, q in enumerate(rows):
                gram[i, :, k, :] = toeplitz[p, q]
        gram = gram.reshape(size, size)
        # museval regularises with float64 epsilon on the diagonal; keep it for parity.
        eps = np.finfo(np.float64).eps
        gram[np.diag_indices_from(gram)] += eps
        # The matrix is symmetric, so its 1-norm is its largest absolute row sum.
        norm_1 = float(block_abs_sums[np.ix_(rows, rows)].sum(axis=1).max()) + eps
        rhs = np.transpose(cross[np.ix_(rows, cols)], (0, 2, 1)).reshape(size, len(cols))
        return _solve(gram, rhs, norm_1).reshape(len(rows), taps, len(cols))

    distinct = _distinct_rows(inner, range(n_sig))
    filters = np.zeros((n_sig, taps, n_sig))
    if distinct:
        filters[distinct] = solve(distinct, list(range(n_sig)))
    own_filters = np.zeros((n_src, n_chan, taps, n_chan))
    for j in range(n_src):
        rows = _distinct_rows(inner, range(j * n_chan, (j + 1) * n_chan))
        if rows:
            cols = list(range(j * n_chan, (j + 1) * n_chan))
            own_filters[j, [p - j * n_chan for p in rows]] = solve(rows, cols)
    return filters, own_filters


def _distinct_rows(inner: np.ndarray, candidates: range) -> list[int]:
    """Candidate rows that are not silent and not (nearly) a scaled copy of an earlier one.

    inner: (p, p) inner products of the reference rows.
    """
    keep: list[int] = []
    for p in candidates:
        if inner[p, p] <= 0.0:
            continue
        if all(1.0 - inner[p, q] ** 2 / (inner[p, p] * inner[q, q]) > _NEAR_DUPLICATE for q in keep):
            keep.append(p)
    return keep


def _solve(matrix: np.ndarray, rhs: np.ndarray, norm_1: float) -> np.ndarray:
    """Solve the normal equations by LU, as museval does.

    Logs a warning when the reciprocal condition number is so small that the
    filters, and with them SIR/SAR, depend on float64 rounding. Other exact
    linear dependencies between references can make the matrix singular; then
    the smallest ridge, growing tenfold from 1e-15 of the mean diagonal, that
    makes it solvable is added: the answer approaches the exact projection.
    norm_1: the 1-norm of ``matrix``, for the condition estimate.
    """
    ridge = 0.0
    scale = float(np.mean(np.diag(matrix))) or 1.0
    while True:
        regularised = matrix if ridge == 0.0 else matrix + ridge * np.eye(matrix.shape[0])
        with warnings.catch_warnings():
            # An exactly zero pivot only warns; it is checked below.
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            lu, piv = scipy.linalg.lu_factor(regularised, check_finite=False)
        if np.all(np.diag(lu) != 0.0):
            break
        ridge = 1e-15 * scale if ridge == 0.0 else ridge * 10.0
    rcond = scipy.linalg.lapack.dgecon(lu, norm_1 + ridge, norm="1")[0]
    if rcond < _RCOND_WARNING:
        log.warning(
            "BSSEval: distortion filters are ill-conditioned (rcond %.1e); ISR/SIR/SAR may depend on "
            "float64 rounding by more than 0.01 dB (museval's figures are affected the same way)",
            rcond,
        )
    return scipy.linalg.lu_solve((lu, piv), rhs, check_finite=False)
