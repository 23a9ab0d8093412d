"""Per-step running metrics, quality flags and their summary: the kinematics engine's single entry point,
:func:`analyze_motion`.

Steps
-----
Gait events come from :func:`services.kinematics.events.detect_events`. A :class:`Step` is formed for
every foot strike that is followed by a strike of the other foot before the same foot strikes again (a
missed contralateral strike leaves no step rather than a step 1.5 strides long). Its toe-off is the same
foot's first toe-off after the strike and before that foot's next strike (None if there is none).

Metrics per step (names and units in :data:`services.kinematics.model.METRICS`)
-------------------------------------------------------------------------------
``step_time_s``
    strike -> the other foot's next strike.
``cadence_spm``
    ``60 / step_time_s``.
``contact_time_s``
    strike -> the same foot's toe-off.
``flight_time_s``
    toe-off -> the other foot's next strike. Signed: a negative value means both feet were on the ground
    (double support, i.e. walking) for that long; it is kept rather than clipped to 0 so that means are
    unbiased.
``duty_factor``
    contact time / stride time (strike -> the same foot's next strike; NaN for the last strike of a foot).
``knee_flexion_ic_deg``
    knee flexion of the striking leg at the strike (interpolated at the sub-frame strike time).
``knee_flexion_peak_stance_deg``
    the largest knee flexion of the striking leg from strike to toe-off.
``vertical_oscillation_cm``
    the pelvis' vertical excursion (max - min of its height along ``up``) from the strike to the other
    foot's next strike. Root-relative 3D (what video lifters output: the pelvis never moves) carries no
    height, so for it the pelvis height comes from the 2D hip midpoint in the image (static camera
    assumed), converted to the 3D units by the ratio of the legs' median 3D to 2D length; NaN without 2D.
``overstride_cm``
    horizontal distance along the runner's forward axis from the pelvis to the striking foot (heel, else
    ankle) at the strike; positive = the foot lands ahead of the pelvis.

Lengths are in cm when ``motion.metric``; otherwise they are fractions of the leg length (median over
frames of thigh + shank, mean of both legs) and ``result.units`` says ``"leg lengths"`` for them.
Angles and positions are low-passed (zero-phase Butterworth, ``cutoff_hz``, default 12 Hz) before
metrics are read from them.

Quality flags per step (names in :data:`services.kinematics.model.FLAGS`)
--------------------------------------------------------------------------
``low_confidence``
    the mean confidence over the step (strike -> next strike) of a joint of the striking leg (hip, knee,
    ankle, heel, toe) or of the pelvis is below ``min_confidence`` (only joints that have a confidence
    series; NaN counts as 0).
``swap_repaired``
    ``motion.keypoints2d.swapped`` is True in some frame of the step.
``out_of_plane``
    with 2D keypoints: in more than half of the step's frames where 2D and 3D can be compared, a
    sagittal 2D knee or hip angle differs from 3D by more than ``out_of_plane_deg``
    (:func:`services.kinematics.angles.out_of_plane`).
``implausible``
    a metric outside :data:`PLAUSIBLE_RANGES`.

Summaries (mean, SD, Student-t 95 % CI of the mean, n) are over the steps with a finite value whose flags
do not exclude that metric (:data:`services.kinematics.model.FLAG_EXCLUDES`: out of plane drops the angles
and overstride but keeps the timing), overall and per side of the striking foot;
``asymmetry_pct = 100 (L - R) / ((L + R) / 2)`` of the per-side means.

Whole-clip flags (``result.flags``, sentences): a median cadence outside 120-230 steps/min (with the hint
that a slow-motion clip needs ``--slowmo``), pelvic drop unreliable from a side-view video, most steps
out of plane, metrics with no usable step.

Errors: :class:`services.errors.InputError` for an invalid Motion (wrong shapes, all NaN, times not
increasing), a Motion lacking the leg joints, or a clip in which no step could be formed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.stats import t as student_t

from services.errors import ClipTooShortError, InputError
from services.kinematics.angles import (
    body_axes,
    joint,
    joint_angles,
    out_of_plane,
    root_position,
    sagittal_angles_2d,
    validate_motion,
)
from services.kinematics.body import leg_length, pelvis_height
from services.kinematics.events import MAX_CADENCE_SPM, MIN_CADENCE_SPM, detect_events
from services.kinematics.model import (
    FLAGS,
    METRICS,
    SIDES,
    FloatArray,
    GaitEvent,
    KinematicsResult,
    MetricSummary,
    Motion,
    Step,
    usable,
)
from services.pose.sequence import lowpass
from services.pose.skeletons import SKELETONS

__all__ = ["DEFAULT_CUTOFF_HZ", "PLAUSIBLE_RANGES", "analyze_motion", "summarize"]

#: low-pass cutoff (Hz) of the angle and position series the metrics are read from
DEFAULT_CUTOFF_HZ = 12.0

#: a step whose metric lies outside [low, high] is flagged "implausible"
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "cadence_spm": (MIN_CADENCE_SPM, MAX_CADENCE_SPM),
    "contact_time_s": (0.1, 0.5),
    "knee_flexion_ic_deg": (0.0, 60.0),
    "knee_flexion_peak_stance_deg": (10.0, 90.0),
}

#: leg joints analyze_motion needs
_REQUIRED = tuple(f"{s}_{j}" for s in SIDES for j in ("hip", "knee", "ankle"))
#: fraction of comparable frames of a step that must be out of plane for the step's flag
_OUT_OF_PLANE_FRACTION = 0.5
#: |right . viewing axis| above this = the camera sees the runner's side (pelvic drop unreliable)
_SIDE_VIEW_COS = math.cos(math.radians(45.0))
#: 2D hip width / 2D trunk length below this = side view
_SIDE_VIEW_HIP_RATIO = 0.4
_LENGTH_METRICS = ("vertical_oscillation_cm", "overstride_cm")
#: series of the pelvis height the vertical oscillation is read from (relative to its median)
PELVIS_SERIES = "pelvis_height_cm"


def summarize(values: Sequence[float] | NDArray[np.float64]) -> MetricSummary:
    """Mean, sample SD, Student-t 95 % CI of the mean and n of the finite values (NaN where undefined:
    no value, or SD/CI from a single value)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return MetricSummary(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return MetricSummary(mean, math.nan, math.nan, math.nan, 1)
    sd = float(x.std(ddof=1))
    half = float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return MetricSummary(mean, sd, mean - half, mean + half, n)


def _smooth(x: FloatArray, t: FloatArray, cutoff_hz: float | None) -> FloatArray:
    if cutoff_hz is None or not np.any(np.isfinite(x)):
        return x
    return lowpass(x, t, cutoff_hz=cutoff_hz)


def _nanmax(x: FloatArray) -> float:
    x = x[np.isfinite(x)]
    return float(x.max()) if x.size else math.nan


def _excursion(x: FloatArray) -> float:
    x = x[np.isfinite(x)]
    return float(x.max() - x.min()) if x.size >= 2 else math.nan


def _at(series: FloatArray, t: FloatArray, time: float) -> float:
    """Linear interpolation of a series at ``time`` (NaN if a neighbour is NaN)."""
    return float(np.interp(time, t, series))


def _is_side_view(motion: Motion, right: FloatArray, up: FloatArray) -> bool:
    """Whether a video shows the runner from the side: from the 2D hips (their image distance is small
    against the trunk) when keypoints are given, else from the 3D right axis against the camera's
    viewing axis z (camera frames: x right, y down, z away)."""
    kps = motion.keypoints2d
    if kps is not None:
        skel = SKELETONS[kps.skeleton]
        xy = np.asarray(kps.xy, dtype=np.float64)[..., :2]
        lh, rh = xy[:, skel.index("left_hip")], xy[:, skel.index("right_hip")]
        ls, rs = xy[:, skel.index("left_shoulder")], xy[:, skel.index("right_shoulder")]
        width = np.linalg.norm(rh - lh, axis=1)
        trunk = np.linalg.norm((ls + rs) / 2.0 - (lh + rh) / 2.0, axis=1)
        ok = np.isfinite(width) & np.isfinite(trunk) & (trunk > 0)
        if np.any(ok):
            return bool(np.median(width[ok] / trunk[ok]) < _SIDE_VIEW_HIP_RATIO)
    view = np.array([0.0, 0.0, 1.0])
    view = view - (view @ up) * up
    norm = float(np.linalg.norm(view))
    if norm < 1e-6:
        return False
    cos = np.abs(right @ (view / norm))
    cos = cos[np.isfinite(cos)]
    return bool(cos.size and np.median(cos) > _SIDE_VIEW_COS)


def _window_mean(x: FloatArray, a: int, b: int) -> float:
    w = np.nan_to_num(np.asarray(x[a : b + 1], dtype=np.float64), nan=0.0)
    return float(w.mean()) if w.size else math.nan


def _step_flags(
    motion: Motion,
    side: str,
    a: int,
    b: int,
    metrics: dict[str, float],
    min_confidence: float,
    oop: NDArray[np.bool_] | None,
    comparable: NDArray[np.bool_] | None,
) -> tuple[str, ...]:
    flags: list[str] = []
    names = ["pelvis", *(f"{side}_{j}" for j in ("hip", "knee", "ankle", "heel", "toe"))]
    conf = [motion.confidence[n] for n in names if n in motion.confidence]
    if any(_window_mean(np.asarray(c, dtype=np.float64), a, b) < min_confidence for c in conf):
        flags.append("low_confidence")
    kps = motion.keypoints2d
    if kps is not None and kps.swapped is not None and bool(np.any(np.asarray(kps.swapped)[a : b + 1])):
        flags.append("swap_repaired")
    if oop is not None and comparable is not None:
        n_cmp = int(np.count_nonzero(comparable[a : b + 1]))
        if n_cmp and np.count_nonzero(oop[a : b + 1]) > _OUT_OF_PLANE_FRACTION * n_cmp:
            flags.append("out_of_plane")
    for name, (low, high) in PLAUSIBLE_RANGES.items():
        v = metrics.get(name, math.nan)
        if math.isfinite(v) and not (low <= v <= high):
            flags.append("implausible")
            break
    assert all(f in FLAGS for f in flags)
    return tuple(flags)


def _next(events: Sequence[GaitEvent], after: float, side: str, kind: str) -> GaitEvent | None:
    for e in events:
        if e.t > after and e.side == side and e.kind == kind:
            return e
    return None


def analyze_motion(
    motion: Motion,
    *,
    min_confidence: float = 0.3,
    method: str = "auto",
    cutoff_hz: float | None = DEFAULT_CUTOFF_HZ,
    out_of_plane_deg: float = 15.0,
) -> KinematicsResult:
    """Gait events, per-step metrics, flags, summaries and angle series of one running clip.

    Parameters
    ----------
    motion:
        The runner's joints; needs both hips, knees and ankles (heels and toes are used when present).
    min_confidence:
        Steps where a leg joint's mean confidence is below this are flagged ``low_confidence``.
    method:
        Event detection method of :func:`services.kinematics.events.detect_events`.
    cutoff_hz:
        Low-pass cutoff (Hz) of the angle and position series; None disables it.
    out_of_plane_deg:
        Threshold of the 2D/3D comparison behind the ``out_of_plane`` flag.

    Returns
    -------
    :class:`KinematicsResult` (see the module docstring for the definitions). Raises
    :class:`InputError` when the Motion is invalid, lacks the leg joints or holds no complete step.
    """
    validate_motion(motion)
    missing = [name for name in _REQUIRED if joint(motion, name) is None]
    if missing:
        raise InputError(f"running metrics need both hips, knees and ankles; missing: {', '.join(missing)}")
    t = np.asarray(motion.t, dtype=np.float64)
    n_frames = t.size
    forward, up, right = body_axes(motion)
    raw_angles = joint_angles(motion)
    series = {name: _smooth(v, t, cutoff_hz) for name, v in raw_angles.items()}
    events = detect_events(motion, method=method)

    root = root_position(motion)
    assert root is not None  # both hips are present
    height = _smooth(pelvis_height(motion, root, up), t, cutoff_hz)
    scale = 100.0 if motion.metric else 1.0 / leg_length(motion)
    series[PELVIS_SERIES] = (height - np.nanmedian(height)) * scale if np.isfinite(height).any() else height

    oop: NDArray[np.bool_] | None = None
    comparable: NDArray[np.bool_] | None = None
    if motion.keypoints2d is not None:
        a2d = sagittal_angles_2d(motion.keypoints2d)
        oop = out_of_plane(raw_angles, a2d, threshold_deg=out_of_plane_deg)
        comparable = np.zeros(n_frames, dtype=np.bool_)
        for key in a2d:
            if key in raw_angles and ("knee_flexion" in key or "hip_flexion" in key):
                comparable |= np.isfinite(a2d[key]) & np.isfinite(raw_angles[key])

    steps: list[Step] = []
    for e in events:
        if e.kind != "strike":
            continue
        other = "left" if e.side == "right" else "right"
        nxt_contra = _next(events, e.t, other, "strike")
        nxt_same = _next(events, e.t, e.side, "strike")
        if nxt_contra is None or (nxt_same is not None and nxt_contra.t > nxt_same.t):
            continue
        toe_off = _next(events, e.t, e.side, "toe_off")
        if toe_off is not None and nxt_same is not None and toe_off.t > nxt_same.t:
            toe_off = None
        m: dict[str, float] = dict.fromkeys(METRICS, math.nan)
        step_time = nxt_contra.t - e.t
        m["step_time_s"] = step_time
        m["cadence_spm"] = 60.0 / step_time
        knee = series[f"{e.side}_knee_flexion_deg"]
        m["knee_flexion_ic_deg"] = _at(knee, t, e.t)
        if toe_off is not None:
            contact = toe_off.t - e.t
            m["contact_time_s"] = contact
            m["flight_time_s"] = nxt_contra.t - toe_off.t
            if nxt_same is not None:
                m["duty_factor"] = contact / (nxt_same.t - e.t)
            m["knee_flexion_peak_stance_deg"] = max(
                _nanmax(knee[e.index : toe_off.index + 1]), m["knee_flexion_ic_deg"]
            )
        m["vertical_oscillation_cm"] = _excursion(height[e.index : nxt_contra.index + 1]) * scale
        foot = joint(motion, f"{e.side}_heel")
        if foot is None:
            foot = joint(motion, f"{e.side}_ankle")
        assert foot is not None
        ahead = _smooth(np.sum((foot - root) * forward, axis=1), t, cutoff_hz)
        m["overstride_cm"] = _at(ahead, t, e.t) * scale
        flags = _step_flags(motion, e.side, e.index, nxt_contra.index, m, min_confidence, oop, comparable)
        steps.append(Step(e.side, e, toe_off, nxt_contra, m, flags))

    if not steps:
        raise ClipTooShortError(
            f"no complete step found in {t[-1] - t[0]:.2f} s ({len(events)} gait events): the clip must "
            "show at least one foot strike followed by a strike of the other foot (about one stride of "
            "running)"
        )

    summary = {name: summarize([s.metrics[name] for s in steps if usable(s, name)]) for name in METRICS}
    by_side = {
        side: {
            name: summarize([s.metrics[name] for s in steps if s.side == side and usable(s, name)])
            for name in METRICS
        }
        for side in SIDES
    }
    asymmetry: dict[str, float] = {}
    for name in METRICS:
        left, right_mean = by_side["left"][name].mean, by_side["right"][name].mean
        mid = (left + right_mean) / 2.0
        asymmetry[name] = 100.0 * (left - right_mean) / mid if math.isfinite(mid) and mid != 0 else math.nan

    clip_flags: list[str] = []
    cadence = float(np.median([s.metrics["cadence_spm"] for s in steps]))
    if cadence < MIN_CADENCE_SPM:
        clip_flags.append(
            f"median cadence {cadence:.0f} steps/min is below the running range "
            f"{MIN_CADENCE_SPM:.0f}-{MAX_CADENCE_SPM:.0f} steps/min: if the clip was recorded in slow "
            "motion, analyse it again with --slowmo (the capture frame rate); otherwise the runner may be "
            "walking"
        )
    elif cadence > MAX_CADENCE_SPM:
        clip_flags.append(
            f"median cadence {cadence:.0f} steps/min is above the running range "
            f"{MIN_CADENCE_SPM:.0f}-{MAX_CADENCE_SPM:.0f} steps/min: the clip's frame rate or timestamps "
            "may be wrong (a time-lapse or a slow-motion clip played with --slowmo twice?)"
        )
    if motion.source == "video" and _is_side_view(motion, right, up):
        clip_flags.append(
            "pelvic_drop_deg is unreliable: the video shows the runner from the side, so the pelvis' "
            "frontal-plane tilt is not observed (film from behind or in front to measure it)"
        )
    n_oop = sum("out_of_plane" in s.flags for s in steps)
    if n_oop > len(steps) / 2:
        clip_flags.append(
            f"{n_oop} of {len(steps)} steps are out of plane: 2D and 3D knee/hip angles disagree (the "
            "runner is not side-on to the camera, or the 3D lift is unreliable); their angles are left out "
            "of the summaries"
        )
    empty = [name for name in METRICS if summary[name].n == 0]
    if empty:
        clip_flags.append(f"no usable step for {', '.join(empty)} (see the per-step flags)")

    units = dict(METRICS)
    if not motion.metric:
        for name in _LENGTH_METRICS:
            units[name] = "leg lengths"
    units.update(dict.fromkeys(series, "deg"))
    units[PELVIS_SERIES] = "cm" if motion.metric else "leg lengths"
    return KinematicsResult(
        t=t.copy(),
        events=list(events),
        steps=steps,
        summary=summary,
        summary_by_side=by_side,
        asymmetry_pct=asymmetry,
        series=series,
        flags=clip_flags,
        units=units,
    )
