"""Evaluation helpers (pure functions): 3D pose errors, temporal alignment of two recordings (one lag, or
:func:`synchronise` over several signals with a measure of ambiguity), angle RMSE, agreement of a series with
a lab's reference (:func:`agreement`), cadence truth from force plates (:func:`force_contacts`,
:func:`cadence_from_strikes`) and a virtual side camera for turning motion capture into synthetic 2D
keypoints.

3D errors reuse :mod:`services.pose.metrics` (MPJPE, PA-MPJPE) and add N-MPJPE. Poses are ``(N, J, 3)`` in
consistent units; **root alignment is the caller's job** (subtract the pelvis from prediction and ground truth
before calling), as in :func:`services.pose.metrics.mpjpe`.

Time conventions: a lag ``L`` between a signal ``a`` and a signal ``b`` means ``b(t + L) = a(t)``, i.e. ``b``
shows the same events ``L`` seconds later than ``a`` (``L > 0``: ``b`` is delayed).

Virtual camera (:class:`PinholeCamera`): camera axes x right, y down, z along the viewing direction (away from
the camera), the same axes as the lifters' 3D output; image pixels x right, y down, origin top-left. The lab
frame must be right-handed (the runner's right is ``forward x up``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal

from services.errors import FrameRateError, NoValidDataError, ShapeError
from services.pose.metrics import mpjpe, pa_mpjpe
from services.pose.skeletons import H36M17

__all__ = [
    "H36M_LEG_JOINTS",
    "Aligned",
    "PinholeCamera",
    "Sync",
    "agreement",
    "align",
    "angle_rmse",
    "cadence_from_strikes",
    "common_lag",
    "estimate_forward",
    "estimate_lag",
    "evaluate_3d",
    "force_contacts",
    "h36m17_from_legs",
    "n_mpjpe",
    "per_joint_errors",
    "project_to_side_camera",
    "resample",
    "rotate_onto",
    "side_camera",
    "synchronise",
]

FloatArray = NDArray[np.float64]

#: H36M-17 indices of the leg joints (hips, knees, ankles; the pelvis is the root and left out)
H36M_LEG_JOINTS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)


# ----------------------------------------------------------------------------------------------------
# 3D pose errors
# ----------------------------------------------------------------------------------------------------


def _pair(pred: ArrayLike, gt: ArrayLike) -> tuple[FloatArray, FloatArray]:
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if p.shape != g.shape or p.ndim < 2 or p.shape[-1] not in (2, 3):
        raise ShapeError(f"prediction {p.shape} and ground truth {g.shape} must both be (..., J, 2|3)")
    return p, g


def n_mpjpe(pred: ArrayLike, gt: ArrayLike) -> FloatArray:
    """Scale-normalised MPJPE (Rhodin et al., CVPR 2018) per pose: ``(..., J, 3)`` x2 -> ``(...)``.

    Each predicted pose is multiplied by its least-squares scale onto the ground truth,
    ``s = <pred, gt> / <pred, pred>`` (sums over joints and coordinates), then MPJPE is taken. No rotation and
    no translation: inputs are expected root-aligned. A scaled copy of the truth scores 0.
    """
    p, g = _pair(pred, gt)
    num = (p * g).sum(axis=(-2, -1), keepdims=True)
    den = (p * p).sum(axis=(-2, -1), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(den > 0, num / den, 1.0)
    return mpjpe(scale * p, g)


def per_joint_errors(pred: ArrayLike, gt: ArrayLike) -> FloatArray:
    """Mean Euclidean error per joint over poses: ``(N, J, C)`` (or one ``(J, C)`` pose) x2 -> ``(J,)``.
    Poses where a joint is NaN in either input are left out of that joint's mean (NaN when none is left)."""
    p, g = _pair(pred, gt)
    d = np.linalg.norm(p - g, axis=-1).reshape(-1, p.shape[-2])
    ok = np.isfinite(d)
    n = ok.sum(axis=0)
    total = np.where(ok, d, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(n > 0, total / np.maximum(n, 1), np.nan), np.float64)


def evaluate_3d(pred: ArrayLike, gt: ArrayLike, joint_names: Sequence[str]) -> dict[str, Any]:
    """MPJPE, PA-MPJPE and N-MPJPE of ``(N, J, 3)`` predictions against ground truth, with a per-joint table.

    **Both inputs must be root-aligned** (pelvis subtracted) and in the same units; the results are in those
    units. Poses with any non-finite joint in either input are left out (``n_poses`` counts those used).
    Returns ``{"n_poses", "joints", "mpjpe", "pa_mpjpe", "n_mpjpe" (means over poses), "per_pose": {metric:
    list}, "per_joint": {joint name: mean error (MPJPE's per-joint part)}}``.
    """
    p, g = _pair(pred, gt)
    if p.ndim == 2:
        p, g = p[None], g[None]
    if p.ndim != 3 or p.shape[-1] != 3:
        raise ShapeError(f"expected (N, J, 3) poses, got {p.shape}")
    if len(joint_names) != p.shape[1]:
        raise ShapeError(f"{len(joint_names)} joint names for {p.shape[1]} joints")
    ok = np.isfinite(p).all(axis=(1, 2)) & np.isfinite(g).all(axis=(1, 2))
    if not ok.any():
        raise NoValidDataError("no pose is complete in both the prediction and the ground truth")
    p, g = p[ok], g[ok]
    per_pose = {"mpjpe": mpjpe(p, g), "pa_mpjpe": pa_mpjpe(p, g), "n_mpjpe": n_mpjpe(p, g)}
    out: dict[str, Any] = {"n_poses": int(ok.sum()), "joints": list(joint_names)}
    out.update({k: float(v.mean()) for k, v in per_pose.items()})
    out["per_pose"] = {k: [float(x) for x in v] for k, v in per_pose.items()}
    out["per_joint"] = {name: float(e) for name, e in zip(joint_names, per_joint_errors(p, g), strict=True)}
    return out


# ----------------------------------------------------------------------------------------------------
# Resampling and temporal alignment
# ----------------------------------------------------------------------------------------------------


def _times(t: ArrayLike, name: str = "t") -> FloatArray:
    arr = np.asarray(t, np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise ShapeError(f"{name}: expected at least 2 timestamps in a 1D array, got shape {arr.shape}")
    if not np.isfinite(arr).all() or not np.all(np.diff(arr) > 0):
        raise FrameRateError(f"{name}: timestamps must be finite and strictly increasing")
    return arr


def resample(t_src: ArrayLike, x_src: ArrayLike, t_dst: ArrayLike) -> FloatArray:
    """Linear interpolation of ``x_src`` ``(T, ...)`` sampled at ``t_src`` ``(T,)`` onto ``t_dst`` ``(M,)``
    -> ``(M, ...)``. Exact on signals linear in time. NaN outside ``[t_src[0], t_src[-1]]`` (no extrapolation)
    and between two samples when either is NaN (gaps are not bridged); a time that hits a sample exactly takes
    that sample's value."""
    ts = _times(t_src, "t_src")
    x = np.asarray(x_src, np.float64)
    if x.ndim < 1 or x.shape[0] != ts.size:
        raise ShapeError(f"x_src has {x.shape[0] if x.ndim else 0} rows for {ts.size} timestamps")
    td = np.asarray(t_dst, np.float64)
    if td.ndim != 1:
        raise ShapeError(f"t_dst must be 1D, got shape {td.shape}")
    i = np.clip(np.searchsorted(ts, td, side="right") - 1, 0, ts.size - 2)
    w = (td - ts[i]) / (ts[i + 1] - ts[i])
    extra = (1,) * (x.ndim - 1)
    wb = w.reshape(-1, *extra)
    x0, x1 = x[i], x[i + 1]
    with np.errstate(invalid="ignore"):
        out = np.where(wb <= 0.0, x0, np.where(wb >= 1.0, x1, (1.0 - wb) * x0 + wb * x1))
    outside = ~((td >= ts[0]) & (td <= ts[-1]))
    out[outside] = np.nan
    return np.asarray(out, np.float64)


def _on_grid(t: FloatArray, x: FloatArray, dt: float) -> tuple[float, FloatArray, NDArray[np.bool_]]:
    """A 1D signal on a uniform grid of step ``dt`` spanning its finite samples: (start time, zero-mean values
    with 0 where missing, validity mask)."""
    ok = np.isfinite(x)
    if ok.sum() < 2:
        raise NoValidDataError("a signal has fewer than 2 finite samples")
    first, last = t[ok][0], t[ok][-1]
    n = math.floor((last - first) / dt + 1e-9) + 1
    grid = first + dt * np.arange(n)
    v = resample(t, x, grid)
    mask = np.isfinite(v)
    v = np.where(mask, v - v[mask].mean(), 0.0)
    return float(first), v, mask


def _lag_curve(
    t_a: ArrayLike, a: ArrayLike, t_b: ArrayLike, b: ArrayLike, *, max_lag_s: float, min_overlap: float = 0.5
) -> tuple[FloatArray, FloatArray, float]:
    """Normalised cross-correlation of ``b`` against ``a`` per candidate lag (see :func:`estimate_lag`):
    (lags in seconds, correlation with -inf where a lag is not allowed, grid step in seconds)."""
    ta, tb = _times(t_a, "t_a"), _times(t_b, "t_b")
    xa, xb = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if xa.shape != ta.shape or xb.shape != tb.shape:
        raise ShapeError("estimate_lag needs 1D signals with one value per timestamp")
    if not (max_lag_s >= 0 and math.isfinite(max_lag_s)):
        raise ValueError(f"max_lag_s must be a finite number >= 0, got {max_lag_s}")
    dt = float(min(np.median(np.diff(ta)), np.median(np.diff(tb))))
    a0, va, ma = _on_grid(ta, xa, dt)
    b0, vb, mb = _on_grid(tb, xb, dt)
    fa, fb = ma.astype(np.float64), mb.astype(np.float64)
    num = signal.correlate(vb, va, mode="full")  # sum_n vb[n + k] va[n]
    ea = signal.correlate(fb, va * va, mode="full")  # energy of a where b is present
    eb = signal.correlate(vb * vb, fa, mode="full")  # energy of b where a is present
    count = signal.correlate(fb, fa, mode="full")
    k = signal.correlation_lags(vb.size, va.size, mode="full")
    lags = (b0 - a0) + k * dt
    need = max(3.0, min_overlap * min(ma.sum(), mb.sum()))
    allowed = (np.abs(lags) <= max_lag_s + 1e-12) & (count >= need - 0.5) & (ea > 0) & (eb > 0)
    if not allowed.any():
        raise NoValidDataError(
            f"the signals do not overlap enough within +/-{max_lag_s:g} s to estimate a lag"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(allowed, num / np.sqrt(np.abs(ea * eb)), -np.inf)
    return np.asarray(lags, np.float64), np.asarray(r, np.float64), dt


def _refined_peak(lags: FloatArray, r: FloatArray, i: int, dt: float) -> float:
    """The lag of the correlation peak at index ``i``, refined by a parabola through it and its neighbours."""
    lag = float(lags[i])
    if 0 < i < r.size - 1 and np.isfinite(r[i - 1]) and np.isfinite(r[i + 1]):
        y0, y1, y2 = r[i - 1], r[i], r[i + 1]
        den = y0 - 2.0 * y1 + y2
        if den < 0:
            lag += float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5)) * dt
    return lag


def estimate_lag(
    t_a: ArrayLike, a: ArrayLike, t_b: ArrayLike, b: ArrayLike, *, max_lag_s: float, min_overlap: float = 0.5
) -> float:
    """Delay ``L`` (seconds) of signal ``b`` relative to signal ``a``: ``b(t + L) ~ a(t)``,
    ``|L| <= max_lag_s``.

    Both 1D signals are resampled (linear interpolation) onto uniform grids with the step of the faster one
    and their means removed; the normalised cross-correlation (``scipy.signal.correlate`` /
    ``correlation_lags``, each lag's sum normalised by the energy of both signals over the samples where they
    overlap, so the overlap length does not bias the peak) is maximised over the allowed lags, and the peak is
    refined to a sub-sample lag with a parabola through it and its two neighbours.

    NaN-safe: missing samples (and the interpolation across them) are left out of every sum. Lags where the
    signals overlap over less than ``min_overlap`` of the shorter one are not considered. For periodic signals
    (gait) keep ``max_lag_s`` below half a period, or the answer is ambiguous (:func:`synchronise` reports
    how ambiguous).
    """
    lags, r, dt = _lag_curve(t_a, a, t_b, b, max_lag_s=max_lag_s, min_overlap=min_overlap)
    return _refined_peak(lags, r, int(np.argmax(r)), dt)


@dataclass(frozen=True)
class Sync:
    """The time offset of one recording against another (:func:`synchronise`)."""

    lag_s: float  # other(t + lag_s) = reference(t)
    r: float  # mean normalised cross-correlation at the lag
    runner_up_r: float  # the best correlation at a lag at least ``exclusion_s`` away (NaN: none)
    runner_up_lag_s: float
    exclusion_s: float
    n_signals: int

    @property
    def ambiguity(self) -> float:
        """How nearly another lag fits as well: the unexplained share ``1 - r`` at the chosen lag over that
        at the runner-up, in [0, 1] (0: clear; 1: a tie). Gait is nearly periodic, so correlations one
        stride apart differ in the third decimal; this ratio measures that difference against the misfit."""
        if not math.isfinite(self.runner_up_r):
            return 0.0
        return float(np.clip((1.0 - self.r) / max(1.0 - self.runner_up_r, 1e-12), 0.0, 1.0))


def synchronise(
    t_ref: ArrayLike,
    ref: Mapping[str, ArrayLike],
    t_other: ArrayLike,
    other: Mapping[str, ArrayLike],
    *,
    max_lag_s: float,
    min_overlap: float = 0.5,
    exclusion_s: float = 0.2,
) -> Sync:
    """One delay of the ``other`` recording against ``ref`` from several signals at once (e.g. the left and
    right knee angles): the normalised cross-correlations of each common key (:func:`estimate_lag`'s, after
    resampling both to the faster rate) are averaged on a common lag grid and the best lag within
    ``+/- max_lag_s`` is refined to a fraction of a sample.

    Gait is nearly periodic, so a search over more than half a stride finds a peak every stride; the result
    reports the best correlation at any lag at least ``exclusion_s`` from the chosen one, so a caller can
    tell a clear answer from an ambiguous one (:attr:`Sync.ambiguity`). Combining both sides removes the
    half-stride ambiguity (left and right knees swap every step). Raises NoValidDataError when no common
    signal overlaps enough.
    """
    curves = []
    for key in sorted(set(ref) & set(other)):
        try:
            curves.append(
                _lag_curve(t_ref, ref[key], t_other, other[key], max_lag_s=max_lag_s, min_overlap=min_overlap)
            )
        except NoValidDataError:
            continue
    if not curves:
        raise NoValidDataError("no common signal overlaps enough to synchronise the recordings")
    dt = min(c[2] for c in curves)
    lo = max(-max_lag_s, max(float(c[0][np.isfinite(c[1])].min()) for c in curves))
    hi = min(max_lag_s, min(float(c[0][np.isfinite(c[1])].max()) for c in curves))
    if hi < lo:
        raise NoValidDataError("the signals allow no common lag")
    grid = lo + dt * np.arange(math.floor((hi - lo) / dt + 1e-9) + 1)
    total = np.zeros(grid.size)
    for lags, r, _ in curves:
        ok = np.isfinite(r)
        total += np.interp(grid, lags[ok], r[ok], left=np.nan, right=np.nan)
    r_mean = np.where(np.isfinite(total), total / len(curves), -np.inf)
    if not np.isfinite(r_mean).any():
        raise NoValidDataError("the signals allow no common lag")
    i = int(np.argmax(r_mean))
    lag = _refined_peak(grid, r_mean, i, dt)
    far = np.abs(grid - grid[i]) >= exclusion_s
    peaks = np.flatnonzero(
        far[1:-1] & (r_mean[1:-1] >= r_mean[:-2]) & (r_mean[1:-1] >= r_mean[2:]) & np.isfinite(r_mean[1:-1])
    )
    if peaks.size:
        j = int(peaks[np.argmax(r_mean[1:-1][peaks])]) + 1
        second, second_lag = float(r_mean[j]), float(grid[j])
    else:
        second, second_lag = math.nan, math.nan
    return Sync(
        lag_s=lag,
        r=float(r_mean[i]),
        runner_up_r=second,
        runner_up_lag_s=second_lag,
        exclusion_s=exclusion_s,
        n_signals=len(curves),
    )


@dataclass(frozen=True)
class Aligned:
    """Two sequences on the reference time base, after shifting the other one by ``lag_s``."""

    t: FloatArray  # (M,) reference timestamps where both are defined
    ref: FloatArray  # (M, ...) reference values
    other: FloatArray  # (M, ...) the other sequence at t + lag_s
    lag_s: float  # the other sequence's delay: other(t + lag_s) = ref(t)


def align(
    t_ref: ArrayLike,
    x_ref: ArrayLike,
    t_other: ArrayLike,
    x_other: ArrayLike,
    *,
    max_lag_s: float = 0.5,
    lag_s: float | None = None,
    signal_ref: ArrayLike | None = None,
    signal_other: ArrayLike | None = None,
) -> Aligned:
    """Bring ``x_other`` ``(T2, ...)`` onto the time base of ``x_ref`` ``(T1, ...)``.

    The lag is ``lag_s`` when given, else :func:`estimate_lag` of ``signal_other`` against ``signal_ref``
    (1D, one value per timestamp; default: ``x_ref`` / ``x_other`` themselves when they are 1D). ``x_other``
    is then sampled at ``t_ref + lag`` (:func:`resample`) and both are cropped to the reference times the
    shifted other sequence covers.
    """
    tr, to = _times(t_ref, "t_ref"), _times(t_other, "t_other")
    xr, xo = np.asarray(x_ref, np.float64), np.asarray(x_other, np.float64)
    if xr.shape[:1] != tr.shape or xo.shape[:1] != to.shape:
        raise ShapeError("each sequence needs one row per timestamp")
    if lag_s is None:
        sr = xr if signal_ref is None else np.asarray(signal_ref, np.float64)
        so = xo if signal_other is None else np.asarray(signal_other, np.float64)
        if sr.ndim != 1 or so.ndim != 1:
            raise ShapeError("multi-dimensional sequences: pass 1D signal_ref / signal_other for the lag")
        lag_s = estimate_lag(tr, sr, to, so, max_lag_s=max_lag_s)
    keep = (tr + lag_s >= to[0]) & (tr + lag_s <= to[-1])
    if not keep.any():
        raise NoValidDataError("the sequences do not overlap in time after the shift")
    return Aligned(t=tr[keep], ref=xr[keep], other=resample(to, xo, tr[keep] + lag_s), lag_s=float(lag_s))


def common_lag(
    pred: Mapping[str, ArrayLike],
    ref: Mapping[str, ArrayLike],
    *,
    t_pred: ArrayLike,
    t_ref: ArrayLike,
    max_lag_s: float = 0.5,
) -> float:
    """One delay of the ``pred`` recording relative to ``ref`` (same clock for every series): the median of
    the :func:`estimate_lag` of each common key whose series allow one."""
    lags = []
    for key in sorted(set(pred) & set(ref)):
        try:
            lags.append(estimate_lag(t_ref, ref[key], t_pred, pred[key], max_lag_s=max_lag_s))
        except NoValidDataError:
            continue
    if not lags:
        raise NoValidDataError("no common series to estimate the time lag from")
    return float(np.median(lags))


def angle_rmse(
    pred: Mapping[str, ArrayLike],
    ref: Mapping[str, ArrayLike],
    *,
    t_pred: ArrayLike | None = None,
    t_ref: ArrayLike | None = None,
    lag_s: float | None = None,
    max_lag_s: float = 0.5,
) -> dict[str, float]:
    """Root-mean-square difference (the series' units, degrees for angles) of each key present in both
    ``pred`` and ``ref`` (``(T,)`` series), over the samples finite in both (NaN when there are none).

    Without timestamps the series must share one time base (same length). With ``t_pred`` and ``t_ref``,
    ``pred`` is aligned onto ``ref``'s time base first: shifted by ``lag_s``, or by :func:`common_lag` when
    ``lag_s`` is None, and resampled linearly.
    """
    keys = sorted(set(pred) & set(ref))
    if (t_pred is None) != (t_ref is None):
        raise ValueError("give both t_pred and t_ref, or neither")
    if t_pred is not None and t_ref is not None and lag_s is None:
        lag_s = common_lag(pred, ref, t_pred=t_pred, t_ref=t_ref, max_lag_s=max_lag_s)
    out: dict[str, float] = {}
    for key in keys:
        r = np.asarray(ref[key], np.float64)
        p = np.asarray(pred[key], np.float64)
        if t_pred is not None and t_ref is not None:
            p = resample(t_pred, p, np.asarray(t_ref, np.float64) + (lag_s or 0.0))
        if p.shape != r.shape:
            raise ShapeError(f"{key}: series of different lengths {p.shape} / {r.shape}; pass timestamps")
        ok = np.isfinite(p) & np.isfinite(r)
        out[key] = float(np.sqrt(np.mean((p[ok] - r[ok]) ** 2))) if ok.any() else math.nan
    return out


# ----------------------------------------------------------------------------------------------------
# Agreement with a lab's reference: angle series, one rotation for a whole sequence, cadence truth
# ----------------------------------------------------------------------------------------------------


def agreement(pred: ArrayLike, ref: ArrayLike) -> dict[str, float | int]:
    """How a series ``pred`` ``(T,)`` agrees with a reference ``ref`` ``(T,)`` on the same time base, over
    the samples finite in both: ``n``; ``sign`` (+1, or -1 when they are anti-correlated, i.e. the two use
    opposite sign conventions: the reference is then negated for every other number); ``r`` (Pearson);
    ``offset_deg`` (mean of ``pred - sign * ref``); ``rmse_deg`` (root-mean-square of that difference,
    offset included); ``sd_deg`` (its standard deviation: the RMSE once the offset is removed). NaN where
    fewer than 3 samples are common."""
    p, g = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    if p.shape != g.shape or p.ndim != 1:
        raise ShapeError(f"agreement needs two (T,) series on one time base, got {p.shape} and {g.shape}")
    ok = np.isfinite(p) & np.isfinite(g)
    n = int(ok.sum())
    nan = math.nan
    if n < 3:
        return {"rmse_deg": nan, "offset_deg": nan, "r": nan, "n": n, "sign": 1, "sd_deg": nan}
    x, y = p[ok], g[ok]
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt(float(xc @ xc) * float(yc @ yc))
    r = float(xc @ yc) / den if den > 0 else nan
    sign = -1 if r < 0 else 1
    d = x - sign * y
    return {
        "rmse_deg": float(np.sqrt(np.mean(d**2))),
        "offset_deg": float(d.mean()),
        "r": abs(r) if math.isfinite(r) else nan,
        "n": n,
        "sign": sign,
        "sd_deg": float(d.std()),
    }


def rotate_onto(pred: ArrayLike, gt: ArrayLike) -> FloatArray:
    """``pred`` ``(N, J, 3)`` turned by the one rotation (no scale, no translation) that best maps all its
    root-aligned joints onto ``gt``'s over the whole sequence (``scipy.spatial.transform.Rotation
    .align_vectors``, least squares over the joints finite in both): the rotation between a camera's axes and
    a lab's, so MPJPE measures the pose and not the frame. PA-MPJPE aligns every pose on its own instead."""
    from scipy.spatial.transform import Rotation

    p, g = _pair(pred, gt)
    if p.ndim != 3 or p.shape[-1] != 3:
        raise ShapeError(f"expected (N, J, 3) poses, got {p.shape}")
    a, b = p.reshape(-1, 3), g.reshape(-1, 3)
    ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    if ok.sum() < 3:
        raise NoValidDataError("fewer than 3 joints are seen in both sequences")
    rot, _ = Rotation.align_vectors(b[ok], a[ok])
    return np.asarray(rot.apply(a).reshape(p.shape), np.float64)


def force_contacts(
    t: ArrayLike, fz: ArrayLike, *, threshold: float = 0.05, min_contact_s: float = 0.1
) -> tuple[FloatArray, FloatArray]:
    """Foot contacts on a force plate from its vertical force ``fz`` ``(S,)`` at times ``t``: (strike times,
    toe-off times), each interpolated to the sample where the force crosses the threshold.

    The sign and zero of the channel are found from the signal: the unloaded level is the histogram mode
    (the plate rests between contacts) and the loading direction is where the mean lies from it. A contact
    is a stretch above ``threshold`` times the 99th percentile of the load lasting ``min_contact_s`` or more
    (shorter blips are noise); contacts cut by the start or end of the recording are left out."""
    ts = _times(t, "t")
    x = np.asarray(fz, np.float64)
    if x.shape != ts.shape:
        raise ShapeError("fz needs one value per timestamp")
    ok = np.isfinite(x)
    if ok.sum() < 10:
        raise NoValidDataError("the force channel holds fewer than 10 samples")
    counts, edges = np.histogram(x[ok], bins=200)
    k = int(np.argmax(counts))
    rest = 0.5 * (edges[k] + edges[k + 1])
    load = (x - rest) * (1.0 if x[ok].mean() >= rest else -1.0)
    level = threshold * float(np.percentile(load[ok], 99))
    if not level > 0:
        return np.zeros(0), np.zeros(0)
    on = np.where(ok, load > level, False).astype(np.int8)
    d = np.diff(on)
    ups, downs = np.flatnonzero(d == 1) + 1, np.flatnonzero(d == -1) + 1

    def crossing(i: int) -> float:  # between samples i - 1 and i
        y0, y1 = load[i - 1], load[i]
        w = (level - y0) / (y1 - y0) if y1 != y0 else 0.0
        return float(ts[i - 1] + w * (ts[i] - ts[i - 1]))

    strikes, offs = [], []
    for u in ups:
        after = downs[downs > u]
        if not after.size:
            break
        e = int(after[0])
        a, b = crossing(int(u)), crossing(e)
        if b - a >= min_contact_s:
            strikes.append(a)
            offs.append(b)
    return np.asarray(strikes, np.float64), np.asarray(offs, np.float64)


def cadence_from_strikes(strikes: ArrayLike, *, max_step_s: float = 1.0) -> tuple[float, int]:
    """Steps per minute from foot-strike times (every strike of either foot, from one or several plates),
    and the number of steps it rests on: ``60 * steps / duration`` over the longest run of consecutive
    strikes less than ``max_step_s`` apart. ``(nan, 0)`` with fewer than 2 steps in such a run."""
    t = np.sort(np.asarray(strikes, np.float64).reshape(-1))
    t = t[np.isfinite(t)]
    if t.size < 3:
        return math.nan, 0
    breaks = np.flatnonzero(np.diff(t) > max_step_s)
    bounds = np.concatenate([[0], breaks + 1, [t.size]])
    best = max(pairwise(bounds.tolist()), key=lambda ab: ab[1] - ab[0])
    run = t[best[0] : best[1]]
    steps = run.size - 1
    if steps < 2:
        return math.nan, steps
    return 60.0 * steps / float(run[-1] - run[0]), int(steps)


# ----------------------------------------------------------------------------------------------------
# Virtual camera
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinholeCamera:
    """An ideal pinhole camera (no distortion). ``rotation`` rows are the camera's x (image right), y (image
    down) and z (viewing direction) axes in lab coordinates; ``centre`` is its position in the lab."""

    rotation: FloatArray  # (3, 3)
    centre: FloatArray  # (3,)
    focal_px: float
    image_wh: tuple[int, int]

    def to_camera(self, points: ArrayLike) -> FloatArray:
        """Lab points ``(..., 3)`` -> camera coordinates ``(..., 3)`` (x right, y down, z away)."""
        p = np.asarray(points, np.float64)
        return np.asarray((p - self.centre) @ self.rotation.T, np.float64)

    def project(self, points: ArrayLike) -> FloatArray:
        """Lab points ``(..., 3)`` -> pixels ``(..., 2)``; NaN for points at or behind the camera plane."""
        c = self.to_camera(points)
        z = c[..., 2:3]
        with np.errstate(invalid="ignore", divide="ignore"):
            uv = self.focal_px * c[..., :2] / z + np.array([self.image_wh[0] / 2.0, self.image_wh[1] / 2.0])
        uv[~(z[..., 0] > 0)] = np.nan
        return np.asarray(uv, np.float64)


def _unit(v: ArrayLike, name: str) -> FloatArray:
    a = np.asarray(v, np.float64)
    n = float(np.linalg.norm(a)) if a.shape == (3,) else 0.0
    if not (n > 0 and math.isfinite(n)):
        raise ShapeError(f"{name} must be a finite non-zero 3-vector")
    return a / n


def side_camera(
    up: ArrayLike,
    forward: ArrayLike,
    target: ArrayLike,
    *,
    distance_m: float = 5.0,
    focal_px: float = 1500.0,
    image_wh: tuple[int, int] = (1920, 1080),
    side: Literal["left", "right"] = "left",
) -> PinholeCamera:
    """A static camera ``distance_m`` from ``target`` on the runner's ``side``, looking horizontally at
    ``target`` (perpendicular to ``forward``), image y along ``-up``.

    ``forward`` is made horizontal (its component along ``up`` removed). The runner's right is
    ``forward x up`` (right-handed lab). From the left (default) the runner faces image left, from the right
    image right. ``target`` projects onto the image centre."""
    u = _unit(up, "up")
    f = np.asarray(forward, np.float64)
    f = _unit(f - np.dot(f, u) * u, "forward (horizontal part)")
    right = np.cross(f, u)
    view = right if side == "left" else -right
    y = -u
    x = np.cross(y, view)
    tgt = np.asarray(target, np.float64)
    if tgt.shape != (3,) or not np.isfinite(tgt).all():
        raise ShapeError("target must be a finite 3-vector")
    if not (distance_m > 0 and focal_px > 0):
        raise ValueError("distance_m and focal_px must be > 0")
    return PinholeCamera(
        rotation=np.stack([x, y, view]),
        centre=tgt - distance_m * view,
        focal_px=float(focal_px),
        image_wh=(int(image_wh[0]), int(image_wh[1])),
    )


def project_to_side_camera(
    joints3d: ArrayLike,
    up: ArrayLike,
    forward: ArrayLike,
    *,
    distance_m: float = 5.0,
    focal_px: float = 1500.0,
    image_wh: tuple[int, int] = (1920, 1080),
    target: ArrayLike | None = None,
    side: Literal["left", "right"] = "left",
) -> FloatArray:
    """Pixels ``(T, J, 2)`` of lab joints ``(T, J, 3)`` (metres) seen by :func:`side_camera`.

    The camera is static, ``distance_m`` from ``target`` and at its height, perpendicular to the runner's
    forward direction, looking horizontally at it. ``target`` defaults to the mean of all finite joint
    positions (about hip height for a whole-body skeleton); pass the mean pelvis position to aim exactly at
    hip height. Image axes: x right, y down, origin top-left; ``target`` lands at the image centre and a point
    1 m above it ``focal_px / distance_m`` pixels higher. NaN joints stay NaN."""
    j = np.asarray(joints3d, np.float64)
    if j.ndim != 3 or j.shape[-1] != 3:
        raise ShapeError(f"expected (T, J, 3) joints, got {j.shape}")
    if target is None:
        finite = j[np.isfinite(j).all(axis=-1)]
        if finite.size == 0:
            raise NoValidDataError("no finite joint position to aim the camera at")
        target = finite.mean(axis=0)
    cam = side_camera(
        up, forward, target, distance_m=distance_m, focal_px=focal_px, image_wh=image_wh, side=side
    )
    return cam.project(j)


# ----------------------------------------------------------------------------------------------------
# Motion-capture legs -> H36M-17
# ----------------------------------------------------------------------------------------------------


def estimate_forward(joints: Mapping[str, ArrayLike], up: ArrayLike) -> FloatArray:
    """The runner's mean horizontal forward direction (unit 3-vector) from joint trajectories ``(T, 3)``:
    heel -> toe of both feet when present (any handedness), else ``up x (right_hip - left_hip)``
    (right-handed lab)."""
    u = _unit(up, "up")

    def mean_vec(a: str, b: str) -> FloatArray | None:
        if a not in joints or b not in joints:
            return None
        d = np.asarray(joints[b], np.float64) - np.asarray(joints[a], np.float64)
        d = d[np.isfinite(d).all(axis=-1)]
        return d.mean(axis=0) if len(d) else None

    feet = [mean_vec(f"{s}_heel", f"{s}_toe") for s in ("left", "right")]
    if all(v is not None for v in feet):
        f = sum(v for v in feet if v is not None)
    else:
        hips = mean_vec("left_hip", "right_hip")
        if hips is None:
            raise NoValidDataError("no heel/toe or hip trajectories to find the forward direction")
        f = np.cross(u, hips)
    f = np.asarray(f, np.float64)
    return _unit(f - np.dot(f, u) * u, "forward direction")


#: H36M mean bone lengths (metres, VideoPose3D / SemGCN training subjects): thigh, shank, pelvis -> spine,
#: spine -> thorax, thorax -> neck/nose, thorax -> head, thorax -> shoulder, upper arm, forearm
_H36M_BONES = {
    "thigh": 0.442, "shank": 0.454, "pelvis_spine": 0.233, "spine_thorax": 0.257, "thorax_nose": 0.121,
    "thorax_head": 0.22, "thorax_shoulder": 0.151, "upper_arm": 0.278, "forearm": 0.251,
}  # fmt: skip


def h36m17_from_legs(
    joints: Mapping[str, ArrayLike], up: ArrayLike, forward: ArrayLike
) -> tuple[FloatArray, tuple[int, ...]]:
    """H36M-17 ``(T, 17, 3)`` lab positions from leg joint trajectories (``pelvis``, ``left/right_hip``,
    ``_knee``, ``_ankle``), with a **synthetic upper body** for joints the input lacks.

    Stand-ins (only for joints 7-16 missing from ``joints``): an upright trunk above the pelvis along ``up``,
    shoulders parallel to the hip axis, arms in a fixed running carriage (upper arm down and slightly back,
    elbow bent 90 degrees with the forearm pointing forward), all sized from the H36M mean skeleton scaled by
    the subject's mean thigh + shank length. It moves with the pelvis (position and rotation about the
    vertical) but carries no information of its own. Returns the poses and the H36M indices that were
    synthesised.
    """
    u = _unit(up, "up")
    f_mean = _unit(np.asarray(forward, np.float64), "forward")
    need = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
    missing = [n for n in need if n not in joints]
    if missing:
        raise NoValidDataError(f"leg joints missing: {', '.join(missing)}")
    arr = {n: np.asarray(v, np.float64) for n, v in joints.items()}
    n_frames = arr["pelvis"].shape[0]
    out = np.full((n_frames, 17, 3), np.nan)
    idx = {name: i for i, name in enumerate(H36M17.joints)}
    for name in need:
        out[:, idx[name]] = arr[name]
    legs = []
    for s in ("left", "right"):
        thigh = np.linalg.norm(arr[f"{s}_knee"] - arr[f"{s}_hip"], axis=-1)
        shank = np.linalg.norm(arr[f"{s}_ankle"] - arr[f"{s}_knee"], axis=-1)
        legs.append(thigh + shank)
    leg = np.concatenate(legs)
    leg = leg[np.isfinite(leg)]
    scale = float(np.median(leg)) / (_H36M_BONES["thigh"] + _H36M_BONES["shank"]) if leg.size else 1.0
    b = {k: v * scale for k, v in _H36M_BONES.items()}

    # body frame per frame: right along the hip axis (horizontal), forward = up x right
    right = arr["right_hip"] - arr["left_hip"]
    right = right - (right @ u)[:, None] * u
    norm = np.linalg.norm(right, axis=-1, keepdims=True)
    fallback = np.cross(f_mean, u)
    with np.errstate(invalid="ignore", divide="ignore"):
        right = np.where(np.isfinite(norm) & (norm > 1e-6), right / norm, fallback)
    fwd = np.cross(u, right)
    pelvis = arr["pelvis"]
    spine = pelvis + b["pelvis_spine"] * u
    thorax = spine + b["spine_thorax"] * u
    synth: dict[str, FloatArray] = {
        "spine": spine,
        "thorax": thorax,
        "neck_nose": thorax + b["thorax_nose"] * u + 0.5 * b["thorax_nose"] * fwd,
        "head": thorax + b["thorax_head"] * u,
    }
    down_back = -np.cos(np.radians(15.0)) * u - np.sin(np.radians(15.0)) * fwd
    for s, sign in (("left", -1.0), ("right", 1.0)):
        shoulder = thorax + sign * b["thorax_shoulder"] * right
        elbow = shoulder + b["upper_arm"] * down_back
        synth[f"{s}_shoulder"] = shoulder
        synth[f"{s}_elbow"] = elbow
        synth[f"{s}_wrist"] = elbow + b["forearm"] * fwd
    made = []
    for name, pos in synth.items():
        if name in arr:
            out[:, idx[name]] = arr[name]
        else:
            out[:, idx[name]] = pos
            made.append(idx[name])
    return out, tuple(sorted(made))
