"""Cleaning of a 2D keypoint sequence of one tracked runner: left/right swap repair, gap filling and a
zero-phase low-pass filter.

Shapes and units
----------------
``kps``
    float array ``(T, J, 3)`` = (x, y, score) per frame and joint, image pixels, y downwards.
``t``
    float array ``(T,)`` of frame times in seconds, finite and strictly increasing. Phones record at a
    variable frame rate, so the intervals may be irregular; every function here works in real time.

NaN policy
----------
A keypoint is *missing* when x or y is not finite, when its score is not finite or when its score is below
``min_score``. Missing keypoints never propagate into valid ones: the functions here output NaN x/y for a
keypoint that is missing and could not be filled, and keep its score unchanged (so a caller can still see
why it is missing). A joint that is missing in every frame stays NaN everywhere. No function emits a
``RuntimeWarning`` for NaN input.

Inputs are never mutated; every function returns new arrays of dtype float64. Invalid shapes, times or
parameters raise ``ValueError`` (programming errors, not user input: the pipeline has validated the video
before this module runs).

Pipeline (:func:`clean_sequence`)
---------------------------------
1. :func:`repair_lr_swaps` on the raw detections: a swap must be undone before it is smeared by
   interpolation and filtering.
2. :func:`fill_gaps`: short interior gaps are bridged by PCHIP interpolation.
3. :func:`lowpass`: zero-phase Butterworth low-pass of x and y at the true frame rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.interpolate import CubicSpline, PchipInterpolator
from scipy.signal import butter, sosfiltfilt

from services.pose.skeletons import Skeleton

__all__ = [
    "DEFAULT_CUTOFF_HZ",
    "CleanedSequence",
    "CleaningParams",
    "clean_sequence",
    "fill_gaps",
    "frame_rate",
    "lowpass",
    "repair_lr_swaps",
]

DEFAULT_CUTOFF_HZ = 8.0
"""Default low-pass cutoff in Hz; see :class:`CleaningParams`."""

#: The cutoff is clamped to this fraction of the sampling rate (0.5 would be Nyquist).
MAX_CUTOFF_FRACTION = 0.4
#: Timestamps count as irregular (variable frame rate, dropped frames) when some frame lies further than
#: this fraction of a frame interval from the uniform grid fitted to them (least squares of t on the frame
#: index). Millisecond rounding of 60 fps timestamps (up to 3 %) stays below it; treating such samples as
#: uniform misplaces none by more than a tenth of a frame.
VFR_TOLERANCE = 0.10

# Swap repair. Every cost is in pixels, relative to the runner's size S (the median over frames of the
# diagonal of the bounding box of the valid keypoints) and to the group's jitter level N (the median over
# frames of the mean point residual from constant velocity, under the locally best labelling: keypoint
# noise plus true acceleration), whichever is larger, so that the decisions depend neither on the
# resolution nor on how noisy the detector is. Calibrated on synthetic runners (30-120 fps, noise 0-15 px
# on a 520 px runner): no swap is created on clean sequences, and injected 1-5 frame swaps are repaired.
_SWAP_FRAME_COST = (0.02, 1.0)  # prior cost of each frame labelled "swapped": max(0.02 S, 1 N)
_SWAP_SWITCH_COST = (0.05, 2.0)  # cost of each change between "kept" and "swapped"
_AMBIGUOUS_SEPARATION = (0.03, 2.0)  # left and right closer than this (mean over pairs) are not swapped
_RESIDUAL_CAP = 0.5  # a point's residual is capped at this times S (robust to wild detections)

# Limb groups of the swap repair by joint-name token: each group is repaired independently.
_SWAP_GROUP_TOKENS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("legs", ("hip", "knee", "ankle", "heel", "toe")),
    ("arms", ("shoulder", "elbow", "wrist")),
)


@dataclass(frozen=True)
class CleaningParams:
    """Options of :func:`clean_sequence`.

    Attributes
    ----------
    min_score:
        A keypoint whose score is below this counts as missing.
    max_gap_s:
        Interior gaps up to this long (seconds) are filled by PCHIP interpolation; see :func:`fill_gaps`
        for how a gap's length is measured. The default, 0.1 s, is 6 frames at 60 fps or 3 at 30 fps:
        at most about a seventh of a running stride, short enough for a shape-preserving cubic to follow
        the ankle.
    cutoff_hz:
        Cutoff of the zero-phase Butterworth low-pass, in Hz (the -3 dB point of *each* pass; the
        forward-backward pair is -6 dB there). Default 8 Hz. Residual analysis of marker trajectories
        gives about 6 Hz for walking (Winter, *Biomechanics and Motor Control of Human Movement*) and
        about 6–12 Hz for running; markerless 2D keypoints carry more frame-to-frame jitter than markers,
        which moves the optimum towards the low end of that range. At a stride frequency of about
        1.4–1.6 Hz, 8 Hz keeps the first five stride harmonics of the ankle trajectory, which carry most
        of its power, while removing most keypoint jitter. The cutoff actually used is
        ``min(cutoff_hz, 0.4 * fs)``, so low frame rates (e.g. 15 fps: 6 Hz) stay clear of Nyquist.
    order:
        Order of *each* pass of the Butterworth filter. The forward-backward pair has zero phase and the
        squared magnitude response, i.e. it attenuates like a filter of twice this order.
    swap_repair:
        Whether to run :func:`repair_lr_swaps` first.
    """

    min_score: float = 0.3
    max_gap_s: float = 0.10
    cutoff_hz: float = DEFAULT_CUTOFF_HZ
    order: int = 4
    swap_repair: bool = True

    def __post_init__(self) -> None:
        if not np.isfinite(self.min_score):
            raise ValueError(f"min_score must be finite, got {self.min_score}")
        if not (np.isfinite(self.max_gap_s) and self.max_gap_s >= 0):
            raise ValueError(f"max_gap_s must be finite and >= 0, got {self.max_gap_s}")
        _check_filter_args(self.cutoff_hz, self.order)


@dataclass(frozen=True)
class CleanedSequence:
    """Result of :func:`clean_sequence`.

    Attributes
    ----------
    keypoints:
        ``(T, J, 3)`` float64 (x, y, score). x and y are NaN where the keypoint is still missing. Scores
        of observed keypoints are the detector's (after swap repair they travel with their point); a
        filled keypoint gets the smaller score of the two valid samples that bracket its gap.
    filled:
        ``(T, J)`` bool, True where the keypoint was interpolated.
    swapped:
        ``(T,)`` bool, True where a left/right swap of some limb group was repaired in that frame.
    swapped_joints:
        ``(T, J)`` bool, True for the joints whose left/right labels were exchanged back in that frame
        (both joints of each pair of a swapped group).
    """

    keypoints: NDArray[np.float64]
    filled: NDArray[np.bool_]
    swapped: NDArray[np.bool_]
    swapped_joints: NDArray[np.bool_]


# --------------------------------------------------------------------------------------------------------
# validation helpers


def _as_keypoints(kps: ArrayLike) -> NDArray[np.float64]:
    """A float64 copy of ``kps`` after checking it is ``(T, J, 3)``."""
    arr = np.array(kps, dtype=np.float64, copy=True)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"kps must be shaped (T, J, 3) = (x, y, score), got {arr.shape}")
    return arr


def _as_times(t: ArrayLike, n: int) -> NDArray[np.float64]:
    arr = np.array(t, dtype=np.float64, copy=True)
    if arr.shape != (n,):
        raise ValueError(f"t must be shaped ({n},) to match the frames, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("t must be finite")
    if n > 1 and not np.all(np.diff(arr) > 0):
        raise ValueError("t must be strictly increasing")
    return arr


def _check_filter_args(cutoff_hz: float, order: int) -> None:
    if not (np.isfinite(cutoff_hz) and cutoff_hz > 0):
        raise ValueError(f"cutoff_hz must be finite and > 0, got {cutoff_hz}")
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")


def _valid_mask(kps: NDArray[np.float64], min_score: float) -> NDArray[np.bool_]:
    """``(T, J)`` True where the keypoint is observed: finite x, y, score and score >= min_score."""
    finite = np.all(np.isfinite(kps), axis=-1)
    with np.errstate(invalid="ignore"):
        confident = kps[..., 2] >= min_score
    return finite & confident


def frame_rate(t: ArrayLike) -> float:
    """Nominal frame rate in Hz of the frame times ``t`` (seconds, shape ``(T,)``, T >= 2, increasing):
    ``1 / median(diff(t))``. The median ignores dropped frames and timestamp jitter."""
    arr = np.asarray(t, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"t must be shaped (T,) with T >= 2, got {arr.shape}")
    arr = _as_times(arr, arr.size)
    return float(1.0 / np.median(np.diff(arr)))


def _is_regular(t: NDArray[np.float64]) -> bool:
    """Whether every time lies within VFR_TOLERANCE frame intervals of the least-squares uniform grid."""
    index = np.arange(t.size, dtype=np.float64)
    index -= index.mean()
    centred = t - t.mean()
    step = float(index @ centred / (index @ index))
    return bool(np.max(np.abs(centred - step * index)) <= VFR_TOLERANCE * step)


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``[start, stop)`` index pairs of the maximal runs of True in a 1D mask."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


# --------------------------------------------------------------------------------------------------------
# gap filling


def fill_gaps(
    kps: ArrayLike, t: ArrayLike, *, min_score: float = 0.3, max_gap_s: float = 0.10
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Interpolate short interior gaps of every joint.

    Parameters
    ----------
    kps:
        ``(T, J, 3)`` keypoints (x, y, score).
    t:
        ``(T,)`` frame times in seconds, strictly increasing (irregular intervals are fine).
    min_score:
        Keypoints scoring below this count as missing.
    max_gap_s:
        Longest gap that is filled, in seconds. A gap's length is the time between the valid samples
        that bracket it minus one nominal frame interval (``median(diff(t))``), i.e. ``n / fs`` for ``n``
        missing frames at a constant rate: at 60 fps the default 0.1 s fills up to 6 missing frames.

    Returns
    -------
    filled_kps:
        ``(T, J, 3)`` float64. Missing keypoints get NaN x/y (also those that had coordinates but a low
        score) and keep their score, except the filled ones: x/y from a PCHIP interpolant through all
        valid samples of the joint (piecewise cubic, shape-preserving, so it does not overshoot noisy
        neighbours; linear when the joint has only two valid samples), score the smaller of the two
        bracketing valid scores.
    filled:
        ``(T, J)`` bool, True where a keypoint was interpolated.

    Gaps at the start or the end of the sequence are never filled (no extrapolation), nor are gaps
    longer than ``max_gap_s``.
    """
    out = _as_keypoints(kps)
    times = _as_times(t, out.shape[0])
    if not (np.isfinite(max_gap_s) and max_gap_s >= 0):
        raise ValueError(f"max_gap_s must be finite and >= 0, got {max_gap_s}")
    valid = _valid_mask(out, min_score)
    out[~valid, :2] = np.nan
    filled = np.zeros(valid.shape, dtype=np.bool_)
    if out.shape[0] < 3:
        return out, filled
    nominal_dt = float(np.median(np.diff(times)))
    # relative slack so that exactly max_gap_s (6 frames at 60 fps) passes despite rounding of the times
    limit = max_gap_s + 1e-9 * max(1.0, max_gap_s)
    for j in range(out.shape[1]):
        idx = np.flatnonzero(valid[:, j])
        if idx.size < 2:
            continue
        gaps = np.flatnonzero(np.diff(idx) > 1)
        if gaps.size == 0:
            continue
        before, after = idx[gaps], idx[gaps + 1]
        durations = times[after] - times[before] - nominal_dt
        ok = durations <= limit
        if not np.any(ok):
            continue
        frames = np.concatenate([np.arange(b + 1, a) for b, a in zip(before[ok], after[ok], strict=True)])
        scores = np.concatenate(
            [
                np.full(a - b - 1, min(out[b, j, 2], out[a, j, 2]))
                for b, a in zip(before[ok], after[ok], strict=True)
            ]
        )
        interp = PchipInterpolator(times[idx], out[idx, j, :2], axis=0, extrapolate=False)
        out[frames, j, :2] = interp(times[frames])
        out[frames, j, 2] = scores
        filled[frames, j] = True
    return out, filled


# --------------------------------------------------------------------------------------------------------
# low-pass


def _effective_cutoff(cutoff_hz: float, fs: float) -> float:
    return min(cutoff_hz, MAX_CUTOFF_FRACTION * fs)


def _default_padlen(sos: NDArray[np.float64]) -> int:
    """The ``padlen`` that :func:`scipy.signal.sosfiltfilt` uses by default."""
    ntaps = 2 * len(sos) + 1
    ntaps -= min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * ntaps


def _filtfilt_block(x: NDArray[np.float64], fs: float, cutoff_hz: float, order: int) -> NDArray[np.float64]:
    """Zero-phase filter of a NaN-free block ``(n, m)`` along axis 0, with the short-run policy."""
    n = x.shape[0]
    if n < 2:
        return x.copy()
    sos = butter(order, _effective_cutoff(cutoff_hz, fs), btype="low", fs=fs, output="sos")
    padlen = _default_padlen(sos)
    if n > padlen:
        return np.asarray(sosfiltfilt(sos, x, axis=0, padlen=padlen), dtype=np.float64)
    # Too short for the default padding: the start-up transient would dominate (a 2-sample ramp comes out
    # with 160 % error). Filter only the residual about the least-squares line, with padlen = n - 1.
    s = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    mean = x.mean(axis=0)
    slope = (s @ x) / (s @ s)
    trend = mean + s[:, None] * slope
    resid = x - trend
    return np.asarray(trend + sosfiltfilt(sos, resid, axis=0, padlen=n - 1), dtype=np.float64)


def _lowpass_run(
    x: NDArray[np.float64],
    t: NDArray[np.float64] | None,
    fs: float,
    cutoff_hz: float,
    order: int,
) -> NDArray[np.float64]:
    """Filter one NaN-free run ``(n, m)``; with ``t`` given, through a uniform grid at about ``fs``."""
    if t is None or x.shape[0] < 2:
        return _filtfilt_block(x, fs, cutoff_hz, order)
    span = float(t[-1] - t[0])
    n_grid = max(2, round(span * fs) + 1)
    grid = np.linspace(t[0], t[-1], n_grid)
    fs_grid = (n_grid - 1) / span
    resampled = CubicSpline(t, x, axis=0)(grid)
    smooth = _filtfilt_block(resampled, fs_grid, cutoff_hz, order)
    return np.asarray(CubicSpline(grid, smooth, axis=0)(t), dtype=np.float64)


def lowpass(
    x: ArrayLike,
    t: ArrayLike | None = None,
    *,
    fs: float | None = None,
    cutoff_hz: float,
    order: int = 4,
    has_score: bool | None = None,
) -> NDArray[np.float64]:
    """Zero-phase Butterworth low-pass along axis 0 (time), NaN-aware.

    Parameters
    ----------
    x:
        ``(T, ...)`` samples, axis 0 is time: a single trajectory ``(T,)``, xy keypoints ``(T, J, 2)``,
        keypoints with scores ``(T, J, 3)`` or any other trailing shape.
    t:
        ``(T,)`` sample times in seconds, or None for samples uniformly spaced at ``fs``. When the
        times are irregular (some frame is more than :data:`VFR_TOLERANCE` of a frame interval off the
        best-fitting uniform grid, e.g. a variable-frame-rate phone video or dropped frames), each finite run
        is resampled by a cubic spline onto a uniform grid at about ``fs`` spanning the run, filtered
        there and interpolated back to the original times by a cubic spline. (Linear interpolation would
        flatten a 3.5 Hz swing sampled at 30 fps by up to 8 %; the cubic spline by 0.2 %.)
    fs:
        Sampling rate in Hz (with irregular ``t``: the rate of the uniform grid). Required when ``t`` is
        None; by default :func:`frame_rate` of ``t``, ``1 / median(diff(t))``.
    cutoff_hz:
        Cutoff in Hz: the -3 dB frequency of each pass (the forward-backward pair is -6 dB there). The
        cutoff used is ``min(cutoff_hz, 0.4 * fs)``.
    order:
        Butterworth order of each pass; the pair has the squared magnitude response ``|H|^2``.
    has_score:
        Whether the last channel of ``x`` is a score that must pass through unfiltered. By default True
        exactly when ``x`` is shaped ``(T, J, 3)``; pass False to filter 3D ``(T, J, 3)`` = (x, y, z).

    Returns
    -------
    ``(T, ...)`` float64, same shape as ``x``. NaN samples stay NaN; scores are copied.

    Notes
    -----
    Uses :func:`scipy.signal.butter` (``output="sos"``) and :func:`scipy.signal.sosfiltfilt` with odd
    padding. Every series is filtered per run of finite samples, so a gap never leaks into its
    neighbours. A run longer than sosfiltfilt's default ``padlen`` (15 samples for order 4) is filtered
    with it. In a shorter run the filter's start-up transient would dominate, so only its residual about
    the least-squares line is filtered (with ``padlen = run length - 1``) and the line is added back:
    constants and linear trends pass exactly, a 2-sample run is returned unchanged. A single isolated
    sample is returned unchanged.
    """
    arr = np.array(x, dtype=np.float64, copy=True)
    if arr.ndim < 1:
        raise ValueError("x must have a time axis")
    n = arr.shape[0]
    _check_filter_args(cutoff_hz, order)
    times: NDArray[np.float64] | None = None
    if t is not None:
        times = _as_times(t, n)
        if n >= 2:
            if fs is None:
                fs = float(1.0 / np.median(np.diff(times)))
            if _is_regular(times):
                times = None
    if fs is None:
        if t is None:
            raise ValueError("fs is required when t is None")
        return arr  # a single sample: nothing to filter
    if not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"fs must be finite and > 0, got {fs}")
    if has_score is None:
        has_score = arr.ndim == 3 and arr.shape[2] == 3
    if has_score and (arr.ndim < 2 or arr.shape[-1] < 2):
        raise ValueError(f"has_score needs a channel axis with a score last, got shape {arr.shape}")
    if n < 2:
        return arr

    view = arr[..., :-1] if has_score else arr
    data = view.reshape(n, -1)
    result = np.full_like(data, np.nan)
    finite = np.isfinite(data)
    # columns sharing a finite-mask (x and y of a joint, fully observed joints) are filtered together
    groups: dict[bytes, list[int]] = {}
    for col in range(data.shape[1]):
        groups.setdefault(np.packbits(finite[:, col]).tobytes(), []).append(col)
    for cols in groups.values():
        for start, stop in _runs(finite[:, cols[0]]):
            run_t = None if times is None else times[start:stop]
            result[start:stop, cols] = _lowpass_run(data[start:stop, cols], run_t, fs, cutoff_hz, order)
    view[...] = result.reshape(view.shape)
    return arr


# --------------------------------------------------------------------------------------------------------
# left/right swap repair


def _swap_groups(skeleton: Skeleton) -> list[list[tuple[int, int]]]:
    groups: list[list[tuple[int, int]]] = []
    for _, tokens in _SWAP_GROUP_TOKENS:
        pairs = [
            (left, right)
            for left, right in skeleton.lr_pairs
            if any(tok in skeleton.joints[left] for tok in tokens)
        ]
        if pairs:
            groups.append(pairs)
    return groups


def _body_scale(kps: NDArray[np.float64], valid: NDArray[np.bool_]) -> float:
    """Median over frames of the bounding-box diagonal of the valid keypoints (0 when undefined)."""
    xy = np.where(valid[..., None], kps[..., :2], np.nan)
    enough = valid.sum(axis=1) >= 2
    if not np.any(enough):
        return 0.0
    xy = xy[enough]
    extent = np.nanmax(xy, axis=1) - np.nanmin(xy, axis=1)
    return float(np.median(np.hypot(extent[:, 0], extent[:, 1])))


def _group_swap_states(
    kps: NDArray[np.float64], valid: NDArray[np.bool_], pairs: Sequence[tuple[int, int]], scale: float
) -> NDArray[np.bool_]:
    """Most plausible per-frame labelling (True = swapped) of one limb group by dynamic programming.

    The cost of a labelling is the sum over frames of (a) the capped norm of each point's second
    difference X[t] - 2 X[t-1] + X[t-2] under that labelling (the deviation from a constant-velocity
    prediction; a point missing in any of the three frames costs the cap, whatever the labelling, so
    hiding a point is never cheaper than explaining it), (b) a prior cost per swapped frame and (c) a cost
    per switch between kept and swapped. Ambiguous frames, where left and right (nearly) coincide, carry
    no prior either way, switching next to them is free, and they are never swapped in the result.
    """
    n = kps.shape[0]
    k = len(pairs)
    slots = [left for left, _ in pairs] + [right for _, right in pairs]
    y = np.where(valid[:, slots, None], kps[:, slots, :2], np.nan)  # (T, 2k, 2)
    perm = np.r_[k : 2 * k, 0:k]
    labelled = (y, y[:, perm])
    cap = _RESIDUAL_CAP * scale

    # cost[t - 2, a, b, c]: term of frame t for states a, b, c of frames t-2, t-1, t
    cost = np.empty((n - 2, 2, 2, 2))
    # mean residual norm of the valid points of frame t under each labelling (inf if none)
    typical = np.empty((n - 2, 8))
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                resid = labelled[c][2:] - 2.0 * labelled[b][1:-1] + labelled[a][:-2]
                norm = np.hypot(resid[..., 0], resid[..., 1])
                finite = np.isfinite(norm)
                count = finite.sum(axis=1)
                total = np.where(finite, norm, 0.0).sum(axis=1)
                typical[:, 4 * a + 2 * b + c] = np.where(count > 0, total / np.maximum(count, 1), np.inf)
                norm = np.where(finite, np.minimum(norm, cap), cap)
                cost[:, a, b, c] = norm.sum(axis=1)
    # Motion-plus-jitter level: the median over frames of the best labelling's mean residual. The set of
    # the 8 labellings' residuals is the same whatever the input's labels, so this level (and with it the
    # whole decision) does not change when swaps are undone: the repair is idempotent.
    best_typical = typical.min(axis=1)
    best_typical = best_typical[np.isfinite(best_typical)]
    jitter = float(np.median(best_typical)) if best_typical.size else 0.0

    left, right = y[:, :k], y[:, k:]
    sep = np.hypot(*np.moveaxis(left - right, -1, 0))  # (T, k), NaN where a side is missing
    both = np.isfinite(sep)
    n_both = both.sum(axis=1)
    mean_sep = np.where(both, sep, 0.0).sum(axis=1) / np.maximum(n_both, 1)

    def level(coefs: tuple[float, float]) -> float:
        return max(coefs[0] * scale, coefs[1] * jitter)

    ambiguous = (n_both > 0) & (mean_sep < level(_AMBIGUOUS_SEPARATION))
    unary = np.zeros((n, 2))
    unary[:, 1] = level(_SWAP_FRAME_COST)
    unary[ambiguous, 1] = 0.0  # no evidence either way: the frame follows its neighbours
    # switching label costs nothing next to an ambiguous frame (a crossing is where a detector's labels
    # flip); this keeps the prior a function of the unambiguous frames' labels only, which makes the
    # repair idempotent
    switch = np.full(n, level(_SWAP_SWITCH_COST))  # switch[t]: cost of s[t-1] != s[t]
    switch[ambiguous] = 0.0
    switch[1:][ambiguous[:-1]] = 0.0

    # Viterbi over the state pair (s[t-1], s[t]); plain floats are much faster than tiny numpy arrays
    cost_l = cost.tolist()
    unary_l = unary.tolist()
    switch_l = switch.tolist()
    best = [
        [unary_l[0][b] + unary_l[1][c] + (switch_l[1] if b != c else 0.0) for c in (0, 1)] for b in (0, 1)
    ]
    back: list[list[list[int]]] = []
    for i in range(2, n):
        term = cost_l[i - 2]
        u = unary_l[i]
        sw = switch_l[i]
        new = [[0.0, 0.0], [0.0, 0.0]]
        arg = [[0, 0], [0, 0]]
        for b in (0, 1):
            for c in (0, 1):
                c0 = best[0][b] + term[0][b][c]
                c1 = best[1][b] + term[1][b][c]
                a = 1 if c1 < c0 else 0
                new[b][c] = (c1 if a else c0) + u[c] + (sw if b != c else 0.0)
                arg[b][c] = a
        best = new
        back.append(arg)

    # backtrack; ties go to "kept"
    flat = [best[0][0], best[0][1], best[1][0], best[1][1]]
    pick = min(range(4), key=lambda s: (flat[s], s))
    states = np.zeros(n, dtype=np.bool_)
    b, c = divmod(pick, 2)
    states[n - 1], states[n - 2] = bool(c), bool(b)
    for i in range(n - 1, 1, -1):
        a = back[i - 2][b][c]
        states[i - 2] = bool(a)
        b, c = a, b
    # where left and right coincide a swap would be a guess: leave those frames as detected
    return states & ~ambiguous


def repair_lr_swaps(
    kps: ArrayLike,
    skeleton: Skeleton,
    *,
    min_score: float = 0.3,
    groups: Sequence[Sequence[tuple[int, int]]] | None = None,
    per_joint: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Undo frames where the pose model exchanged left and right limbs.

    Parameters
    ----------
    kps:
        ``(T, J, 3)`` keypoints (x, y, score) in pixels.
    skeleton:
        The layout of ``kps``; its ``lr_pairs`` say which joints mirror each other.
    min_score:
        Keypoints scoring below this count as missing for the decision (they are still swapped along
        with their limb).
    groups:
        Limb groups repaired independently, each a list of (left, right) joint index pairs. By default,
        from the joint names: hips, legs (knee, ankle, heel, toes), shoulders and arms (elbow, wrist);
        face pairs are left alone.

    Returns
    -------
    repaired:
        ``(T, J, 3)`` float64 copy of ``kps`` with the (x, y, score) rows of each swapped group
        exchanged back. Nothing else changes (missing points are not set to NaN here).
    swapped:
        ``(T,)`` bool, True where at least one group was swapped back; with ``per_joint``, ``(T, J)`` bool,
        True for the joints of the groups swapped back in each frame.

    Notes
    -----
    Each group is labelled frame by frame as kept or swapped by a Viterbi search that minimises the
    deviation of every point from constant-velocity motion (second differences, so fast but smooth
    motion such as a 40 px/frame swing ankle costs little while a left/right exchange of limbs
    100 px apart costs a lot), plus a prior cost per swapped frame and per change of label. The
    labelling that holds for most of the sequence is thus taken as correct, isolated swaps of a few
    frames are undone, and a clean sequence has no reason to change.

    Frames where left and right coincide (mean distance over the group's pairs below
    ``max(0.03 S, 2 N)``, S the runner's size, N the jitter level; legs crossing in mid-swing in a
    side view, or both labels on one leg) are *ambiguous*: the labels carry no information there, so
    they are never swapped, and a swap may begin or end next to them at no cost, as detectors' swaps
    typically do. A swap that both begins and ends at crossings leaves no trace in the motion and is
    left alone; one that begins at a crossing and ends elsewhere is undone on whichever side of the jump
    is shorter unless the crossing velocities say otherwise.

    All costs scale with the larger of the runner's size in the image and the group's jitter level
    (keypoint noise plus true acceleration), so the result depends neither on the resolution nor on the
    detector's noise; with very noisy keypoints (beyond ~2 % of the runner's size per coordinate)
    swaps next to crossings may be missed or extended by a few frames. Repairing a repaired sequence
    changes nothing (the decision only depends on the unordered left/right sets). Sequences of fewer
    than 3 frames are returned unchanged.
    """
    out = _as_keypoints(kps)
    n_frames, n_joints = out.shape[:2]
    if skeleton.num_joints != n_joints:
        raise ValueError(
            f"kps has {n_joints} joints but skeleton {skeleton.name!r} has {skeleton.num_joints}"
        )
    group_list = [list(g) for g in groups] if groups is not None else _swap_groups(skeleton)
    for g in group_list:
        for left, right in g:
            if not (0 <= left < n_joints and 0 <= right < n_joints) or left == right:
                raise ValueError(f"invalid left/right pair {(left, right)} for {n_joints} joints")
    swapped = np.zeros((n_frames, n_joints), dtype=np.bool_)
    valid = _valid_mask(out, min_score)
    scale = _body_scale(out, valid) if n_frames >= 3 and group_list else math.nan
    if np.isfinite(scale) and scale > 0:
        source = out.copy()
        for g in group_list:
            states = _group_swap_states(source, valid, g, scale)
            if not np.any(states):
                continue
            lefts = np.array([left for left, _ in g], dtype=np.intp)
            rights = np.array([right for _, right in g], dtype=np.intp)
            out[np.ix_(states, lefts)] = source[np.ix_(states, rights)]
            out[np.ix_(states, rights)] = source[np.ix_(states, lefts)]
            swapped[np.ix_(states, np.concatenate([lefts, rights]))] = True
    return out, (swapped if per_joint else swapped.any(axis=1))


# --------------------------------------------------------------------------------------------------------
# pipeline


def clean_sequence(
    kps: ArrayLike, t: ArrayLike, skeleton: Skeleton, *, params: CleaningParams = CleaningParams()
) -> CleanedSequence:
    """Clean the keypoint sequence of one runner: swap repair, gap filling, zero-phase low-pass.

    Parameters
    ----------
    kps:
        ``(T, J, 3)`` keypoints (x, y, score) in pixels, NaN x/y or low score where missing.
    t:
        ``(T,)`` frame times in seconds, strictly increasing, possibly irregular.
    skeleton:
        The layout of ``kps``.
    params:
        See :class:`CleaningParams`.

    Returns
    -------
    :class:`CleanedSequence`

    The low-pass runs at the true frame rate ``fs = 1 / median(diff(t))`` with cutoff
    ``min(params.cutoff_hz, 0.4 * fs)``; irregular timestamps are handled as described in
    :func:`lowpass`. Only x and y are filtered, each run of present samples separately.
    """
    data = _as_keypoints(kps)
    times = _as_times(t, data.shape[0])
    if skeleton.num_joints != data.shape[1]:
        raise ValueError(
            f"kps has {data.shape[1]} joints but skeleton {skeleton.name!r} has {skeleton.num_joints}"
        )
    swapped = np.zeros(data.shape[:2], dtype=np.bool_)
    if params.swap_repair:
        data, swapped = repair_lr_swaps(data, skeleton, min_score=params.min_score, per_joint=True)
    data, filled = fill_gaps(data, times, min_score=params.min_score, max_gap_s=params.max_gap_s)
    if data.shape[0] >= 2:
        data = lowpass(data, times, cutoff_hz=params.cutoff_hz, order=params.order, has_score=True)
    return CleanedSequence(keypoints=data, filled=filled, swapped=swapped.any(axis=1), swapped_joints=swapped)
