"""Per-step running metrics, quality flags and their summary: the kinematics engine's single entry point,
:func:`analyze_motion`.

Time base
---------
Unless the Motion says how its time base was set (``motion.time_base``: capture-rate metadata, the user,
an earlier estimate, a live stream's clock), :func:`services.kinematics.timebase.estimate_time_base` checks it
from physics
(gravity in the flight phases, body size, the running-cadence prior). When the clip turns out to be slow
motion the Motion is re-timed by the estimated factor before anything else, and ``result.time_base`` says
so; when the factor cannot be pinned down on a clip whose nominal cadence is neither a running cadence nor
(without flight phases) a walking one, every time-based metric is left out.

Steps
-----
Gait events come from :func:`services.kinematics.events.detect_events`. Every foot strike forms a
:class:`Step`: its toe-off is the same foot's first toe-off before that foot strikes again, its end the
other foot's next strike (None when the same foot strikes again first, or the clip ends: the values that
need it are NaN, the contact's own angles remain). So even a clip shorter than a stride reports the angles
of each contact it shows.

Angle source by camera view (video)
-----------------------------------
Each step's view (yaw of the runner against a side-on camera) is estimated from the 2D keypoints of its
frames (:func:`services.kinematics.view.estimate_views`), and
:func:`services.kinematics.view.choose_angle_source` picks, from the validation table, the source with the
lowest validated error at that yaw: the 2D sagittal angles (``"2d"``), the same with the view's
foreshortening undone (``"2d_corrected"``), or the lifted 3D (``"3d"``, only for a lifter family the table
validates). Beyond the validated yaw the step is flagged ``out_of_plane`` and its angles and horizontal
lengths are left out of the summaries. Each step records its sources and the validated RMSE of each angle.
Motion capture reports its measured 3D (``"mocap"``); a video request without 2D keypoints its lifted 3D
(``"3d"``, error unknown). Lengths come from the same source's positions (2D pixels are converted with the
legs' 3D/2D length ratio).

Metrics
-------
One definition each in :mod:`services.kinematics.metric_defs` (name, unit, frames read, ranges, source,
computation). Angles and positions are low-passed (zero-phase Butterworth, ``cutoff_hz``, default 12 Hz)
before metrics are read from them.

Quality flags (names in :data:`services.kinematics.model.FLAGS`), each at the scope of the frames a metric
reads (its ``window``): ``low_confidence`` (the mean confidence of a joint the metric uses is below
``min_confidence`` in those frames), ``swap_repaired`` (a repaired left/right swap in those frames; timing
survives it), ``out_of_plane`` (the step's view is beyond the validated yaw; angles and horizontal lengths)
and ``implausible`` (the value outside the metric's plausible range; for a timing metric, every timing
metric of the step, as they share events). ``step.excluded`` lists, per metric, the flags leaving it out.

Summaries (mean, SD, Student-t 95 % CI of the mean, n) are over the steps with a finite value not excluded,
overall and per side of the striking foot; ``asymmetry_pct = 100 (L - R) / ((L + R) / 2)`` of the per-side
means. Whole-clip notes (``result.flags``, sentences) explain what is missing and why.

Errors: :class:`services.errors.InputError` for an invalid Motion (wrong shapes, all NaN, times not
increasing), one lacking the leg joints, or a clip without a single foot strike.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import t as student_t

from services.errors import ClipTooShortError, InputError
from services.kinematics.angles import (
    body_axes,
    facing_direction_2d,
    joint,
    joint_angles,
    root_position,
    sagittal_angles_2d,
    validate_motion,
)
from services.kinematics.body import leg_length, pelvis_height, units_per_px
from services.kinematics.events import MAX_CADENCE_SPM, MIN_CADENCE_SPM, detect_events
from services.kinematics.metric_defs import (
    METRIC_DEFS,
    METRICS,
    STRIKE_MARGIN_S,
    MetricDef,
    StepContext,
    foot_strike_pattern,
)
from services.kinematics.model import (
    SIDES,
    FloatArray,
    GaitEvent,
    KinematicsResult,
    MetricSummary,
    Motion,
    Step,
    TimeBase,
    usable,
)
from services.kinematics.timebase import TimeBaseEstimate, estimate_time_base
from services.kinematics.view import AngleSource, choose_angle_source, correct_foreshortening, estimate_views
from services.pose.sequence import lowpass
from services.pose.skeletons import SKELETONS

__all__ = ["DEFAULT_CUTOFF_HZ", "analyze_motion", "summarize"]

#: low-pass cutoff (Hz) of the angle and position series the metrics are read from
DEFAULT_CUTOFF_HZ = 12.0
#: units of the metrics a wrong time base changes
TIME_UNITS = ("s", "steps/min")
#: plausible walking cadence (steps/min), slow to brisk
WALKING_CADENCE_SPM = (70.0, 140.0)

#: leg joints analyze_motion needs
_REQUIRED = tuple(f"{s}_{j}" for s in SIDES for j in ("hip", "knee", "ankle"))
#: |right . viewing axis| above this = the camera sees the runner's side (pelvic drop unreliable)
_SIDE_VIEW_COS = math.cos(math.radians(45.0))
#: 2D hip width / 2D trunk length below this = side view
_SIDE_VIEW_HIP_RATIO = 0.4
#: metric definition -> the angle of the validation table whose error it carries
_VALIDATED_AS = {
    "knee_flexion_ic_deg": "knee_flexion",
    "knee_flexion_peak_stance_deg": "knee_flexion",
    "hip_flexion_ic_deg": "thigh_angle",
    "hip_extension_peak_deg": "thigh_angle",
}
_NEEDS_TEXT = {
    "metric": "the runner's height (--height) for centimetres",
    "feet": "heel and toe points (a Halpe-26 2D model, or motion capture)",
    "trunk": "the trunk (shoulders or thorax)",
}


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


def _next(events: Sequence[GaitEvent], after: float, side: str, kind: str) -> GaitEvent | None:
    for e in events:
        if e.t > after and e.side == side and e.kind == kind:
            return e
    return None


@dataclass(frozen=True)
class _Contact:
    """The events around one foot strike."""

    side: str
    strike: GaitEvent
    toe_off: GaitEvent | None
    next_strike: GaitEvent | None
    next_same: GaitEvent | None

    @property
    def last(self) -> GaitEvent:
        """The latest event of the step (for the step's frames)."""
        return self.next_strike or self.toe_off or self.strike


def _contacts(events: Sequence[GaitEvent]) -> list[_Contact]:
    out = []
    for e in events:
        if e.kind != "strike":
            continue
        other = "left" if e.side == "right" else "right"
        nxt_same = _next(events, e.t, e.side, "strike")
        nxt_contra = _next(events, e.t, other, "strike")
        if nxt_contra is not None and nxt_same is not None and nxt_contra.t > nxt_same.t:
            nxt_contra = None  # a missed contralateral strike: no step end rather than 1.5 strides
        toe_off = _next(events, e.t, e.side, "toe_off")
        if toe_off is not None and nxt_same is not None and toe_off.t > nxt_same.t:
            toe_off = None
        out.append(_Contact(e.side, e, toe_off, nxt_contra, nxt_same))
    return out


@dataclass(frozen=True)
class _Source:
    """One way of measuring the sagittal angles and the fore-aft foot position of a clip."""

    angles: dict[str, FloatArray]  # smoothed series, ANGLE_NAMES / SAGITTAL_2D_NAMES
    ahead: dict[str, FloatArray]  # side -> striking foot ahead of the pelvis (Motion units), smoothed


def _source_3d(motion: Motion, t: FloatArray, cutoff_hz: float | None) -> _Source:
    forward, _, _ = body_axes(motion)
    root = root_position(motion)
    assert root is not None  # both hips are present
    angles = {name: _smooth(v, t, cutoff_hz) for name, v in joint_angles(motion).items()}
    ahead = {}
    for side in SIDES:
        foot = joint(motion, f"{side}_heel")
        if foot is None:
            foot = joint(motion, f"{side}_ankle")
        assert foot is not None
        ahead[side] = _smooth(np.sum((foot - root) * forward, axis=1), t, cutoff_hz)
    return _Source(angles, ahead)


def _source_2d(
    motion: Motion, t: FloatArray, cutoff_hz: float | None, *, yaw_deg: FloatArray | None
) -> _Source:
    """2D sagittal angles and foot positions (pixels -> Motion units); with ``yaw_deg`` (per frame) after
    undoing the view's foreshortening."""
    kps = motion.keypoints2d
    assert kps is not None
    facing = facing_direction_2d(kps)
    if yaw_deg is not None:
        kps = correct_foreshortening(kps, yaw_deg)
    angles = {name: _smooth(v, t, cutoff_hz) for name, v in sagittal_angles_2d(kps, facing=facing).items()}
    skel = SKELETONS[kps.skeleton]
    xy = np.asarray(kps.xy, dtype=np.float64)
    ok = np.isfinite(xy[..., :2]).all(axis=-1) & (np.nan_to_num(xy[..., 2]) >= 0.3)
    x = np.where(ok, xy[..., 0], np.nan)
    mid_hip = (x[:, skel.index("left_hip")] + x[:, skel.index("right_hip")]) / 2.0
    scale = units_per_px(motion)
    ahead = {}
    for side in SIDES:
        name = f"{side}_heel" if f"{side}_heel" in skel.joints else f"{side}_ankle"
        ahead[side] = _smooth(facing * (x[:, skel.index(name)] - mid_hip) * scale, t, cutoff_hz)
    return _Source(angles, ahead)


def _window(c: _Contact, d: MetricDef, t: FloatArray) -> NDArray[np.bool_]:
    """The frames ``d`` reads in contact ``c`` (see :mod:`services.kinematics.metric_defs`)."""
    mask = np.zeros(t.size, dtype=np.bool_)

    def around(e: GaitEvent | None) -> None:
        if e is not None:
            mask[np.abs(t - e.t) <= STRIKE_MARGIN_S] = True
        mask[e.index if e is not None else c.strike.index] = True

    if d.window == "stance" and c.toe_off is not None:
        mask[c.strike.index : c.toe_off.index + 1] = True
    elif d.window == "step" and c.next_strike is not None:
        mask[c.strike.index : c.next_strike.index + 1] = True
    elif d.window == "events":
        for e in (c.strike, c.toe_off, c.next_strike, c.next_same):
            if e is not None:
                around(e)
    around(c.strike)
    return mask


def _low_confidence(
    motion: Motion, d: MetricDef, side: str, frames: NDArray[np.bool_], min_confidence: float
) -> bool:
    for template in d.joints:
        conf = motion.confidence.get(template.format(side=side))
        if conf is None or not frames.any():
            continue
        if float(np.nan_to_num(np.asarray(conf, dtype=np.float64)[frames], nan=0.0).mean()) < min_confidence:
            return True
    return False


def _exclusions(
    motion: Motion,
    c: _Contact,
    values: dict[str, float],
    t: FloatArray,
    *,
    min_confidence: float,
    out_of_plane: bool,
) -> dict[str, tuple[str, ...]]:
    swapped = _swapped(motion)
    timing_implausible = any(
        d.kind == "timing" and d.plausible is not None and _outside(values[d.name], d.plausible)
        for d in METRIC_DEFS
    )
    out: dict[str, tuple[str, ...]] = {}
    for d in METRIC_DEFS:
        frames = _window(c, d, t)
        flags = []
        if _low_confidence(motion, d, c.side, frames, min_confidence):
            flags.append("low_confidence")
        if swapped is not None and "swap_repaired" in d.excluded_by and _touched(swapped, d, c.side, frames):
            flags.append("swap_repaired")
        if out_of_plane and "out_of_plane" in d.excluded_by:
            flags.append("out_of_plane")
        own = d.plausible is not None and _outside(values[d.name], d.plausible)
        if own or (d.kind == "timing" and timing_implausible):
            flags.append("implausible")
        if flags:
            out[d.name] = tuple(flags)
    return out


#: Motion joints that stand for 2D keypoints in the swap check
_KEYPOINTS_OF = {"pelvis": ("left_hip", "right_hip"), "thorax": ("left_shoulder", "right_shoulder")}


Swaps = dict[str, NDArray[np.bool_]] | NDArray[np.bool_]


def _swapped(motion: Motion) -> Swaps | None:
    """The repaired swaps of the 2D keypoints: per keypoint name ``(T,)`` when known per keypoint, else
    per frame ``(T,)``; None without any."""
    kps = motion.keypoints2d
    if kps is None or kps.swapped is None:
        return None
    mask = np.asarray(kps.swapped, dtype=np.bool_)
    if mask.ndim == 1:
        return mask
    return {name: mask[:, i] for i, name in enumerate(SKELETONS[kps.skeleton].joints)}


def _touched(
    swapped: dict[str, NDArray[np.bool_]] | NDArray[np.bool_],
    d: MetricDef,
    side: str,
    frames: NDArray[np.bool_],
) -> bool:
    """Whether a repaired swap touches ``d``'s keypoints (or, known per frame only, its frames)."""
    if not isinstance(swapped, dict):
        return bool(swapped[frames].any())
    names = [n for j in d.joints for n in _KEYPOINTS_OF.get(j.format(side=side), (j.format(side=side),))]
    return any(bool(swapped[n][frames].any()) for n in names if n in swapped)


def _outside(value: float, bounds: tuple[float, float]) -> bool:
    return math.isfinite(value) and not bounds[0] <= value <= bounds[1]


def _available(motion: Motion, need: str) -> bool:
    if need == "metric":
        return motion.metric
    if need == "feet":
        has_3d = all(joint(motion, f"{s}_{j}") is not None for s in SIDES for j in ("heel", "toe"))
        kps = motion.keypoints2d
        return has_3d or (kps is not None and "left_heel" in SKELETONS[kps.skeleton].joints)
    if need == "trunk":
        return any(joint(motion, n) is not None for n in ("thorax", "neck", "left_shoulder"))
    raise ValueError(f"unknown need {need!r}")


def _plausible_nominal(tb: TimeBaseEstimate) -> bool:
    """Whether a clip whose factor could not be pinned down keeps its nominal time base: its nominal cadence
    is a running cadence, or a walking one for a gait without flight phases, or there is too little periodic
    gait to tell (a clip shorter than a couple of strides)."""
    cadence = tb.cadence_nominal_spm
    if not math.isfinite(cadence):
        return True
    walking = not tb.running and WALKING_CADENCE_SPM[0] <= cadence <= WALKING_CADENCE_SPM[1]
    return walking or MIN_CADENCE_SPM <= cadence <= MAX_CADENCE_SPM


def _retimed(motion: Motion, tb: TimeBaseEstimate) -> Motion:
    assert tb.factor is not None
    given = TimeBase(factor=tb.factor, source="estimated", low=tb.low, high=tb.high, cue=tb.cue)
    return dataclasses.replace(motion, t=np.asarray(motion.t, dtype=np.float64) / tb.factor, time_base=given)


def _given_doc(given: TimeBase) -> dict[str, object]:
    return {
        "factor": given.factor,
        "low": given.low,
        "high": given.high,
        "cue": given.cue if given.cue is not None else given.source,
        "source": given.source,
        "applied": given.factor != 1.0 or given.source == "estimated",
        "estimated": given.source == "estimated",
    }


def _estimated_note(given: TimeBase) -> str:
    known = given.low is not None and given.high is not None
    interval = f", 95 % interval {given.low:.2f}-{given.high:.2f}" if known else ""
    return (
        f"the clip is slow motion without capture-rate metadata: its time base was estimated from physics "
        f"(factor {given.factor:.2f}{interval}, decided by the {given.cue} cue); every time-based metric "
        "is an estimate; give the factor with --slowmo to override"
    )


def _time_base_doc(tb: TimeBaseEstimate, *, applied: bool) -> dict[str, object]:
    notes = list(tb.notes)
    if applied and tb.factor is not None:
        given = TimeBase(factor=tb.factor, source="estimated", low=tb.low, high=tb.high, cue=tb.cue)
        notes.append(_estimated_note(given))
    return {
        "factor": tb.factor,
        "low": tb.low,
        "high": tb.high,
        "cue": tb.cue,
        "source": "estimated" if applied else "nominal",
        "applied": applied,
        "estimated": applied,
        "running": tb.running,
        "cadence_nominal_spm": tb.cadence_nominal_spm,
        "cues": {
            name: {"factor": e.factor, "low": e.low, "high": e.high, "n": e.n, "note": e.note}
            if e.available
            else {"note": e.note}
            for name, e in tb.estimates.items()
        },
        "notes": notes,
    }


def analyze_motion(
    motion: Motion,
    *,
    min_confidence: float = 0.3,
    method: str = "auto",
    cutoff_hz: float | None = DEFAULT_CUTOFF_HZ,
) -> KinematicsResult:
    """Gait events, per-step metrics, flags, summaries and angle series of one running clip.

    Parameters
    ----------
    motion:
        The runner's joints; needs both hips, knees and ankles (heels and toes are used when present).
    min_confidence:
        A metric whose joints' mean confidence over the frames it reads is below this is flagged
        ``low_confidence``.
    method:
        Event detection method of :func:`services.kinematics.events.detect_events`.
    cutoff_hz:
        Low-pass cutoff (Hz) of the angle and position series; None disables it.

    Returns
    -------
    :class:`KinematicsResult` (see the module docstring for the definitions). Raises
    :class:`InputError` when the Motion is invalid, lacks the leg joints or shows no foot strike.
    """
    validate_motion(motion)
    missing = [name for name in _REQUIRED if joint(motion, name) is None]
    if missing:
        raise InputError(f"running metrics need both hips, knees and ankles; missing: {', '.join(missing)}")
    time_base: dict[str, object] | None = None
    timing_known = True
    given = motion.time_base
    if motion.source == "video" and given is None:
        tb = estimate_time_base(motion)
        if tb.applies and tb.factor is not None:
            motion = _retimed(motion, tb)
        time_base = _time_base_doc(tb, applied=tb.applies)
        timing_known = tb.factor is not None or _plausible_nominal(tb)
    elif motion.source == "video" and given is not None and given.source in ("metadata", "user"):
        check = estimate_time_base(motion, given=True)  # only confirms or questions it
        time_base = {**_given_doc(given), "notes": list(check.notes)}
    elif given is not None and given.source == "estimated":
        time_base = {**_given_doc(given), "notes": [_estimated_note(given)]}
    result = _analyze(motion, min_confidence=min_confidence, method=method, cutoff_hz=cutoff_hz)
    if time_base is not None:
        notes = [str(n) for n in time_base["notes"]]  # type: ignore[attr-defined]
        result = dataclasses.replace(result, time_base=time_base, flags=result.flags + notes)
    if not timing_known:
        result = _without_timing(result)
    return result


def _without_timing(result: KinematicsResult) -> KinematicsResult:
    """``result`` with every metric in time units left out (the time base could not be pinned down); ratios
    of times such as the duty factor do not depend on it and stay."""
    timing = [d.name for d in METRIC_DEFS if d.unit in TIME_UNITS]
    steps = [
        dataclasses.replace(s, metrics={**s.metrics, **dict.fromkeys(timing, math.nan)}) for s in result.steps
    ]
    empty = summarize([])
    return dataclasses.replace(
        result,
        steps=steps,
        summary={**result.summary, **dict.fromkeys(timing, empty)},
        summary_by_side={
            side: {**d, **dict.fromkeys(timing, empty)} for side, d in result.summary_by_side.items()
        },
        asymmetry_pct={**result.asymmetry_pct, **dict.fromkeys(timing, math.nan)},
        flags=[
            *result.flags,
            "the clip's time base could not be pinned down (a slow-motion clip without capture-rate "
            "metadata?): no time-based metric is reported; give the slow-motion factor with --slowmo (e.g. 8 "
            "for a 240 fps capture played at 30 fps)",
        ],
    )


def _analyze(
    motion: Motion, *, min_confidence: float, method: str, cutoff_hz: float | None
) -> KinematicsResult:
    t = np.asarray(motion.t, dtype=np.float64)
    _, up, right = body_axes(motion)
    events = detect_events(motion, method=method)
    contacts = _contacts(events)
    if not contacts:
        raise ClipTooShortError(
            f"no foot strike found in {t[-1] - t[0]:.2f} s ({len(events)} gait events): the clip must show "
            "the runner's foot landing at least once"
        )

    root = root_position(motion)
    assert root is not None  # both hips are present
    leg = leg_length(motion)
    height = _smooth(pelvis_height(motion, root, up), t, cutoff_hz)
    cm = 100.0 if motion.metric else None
    sources: dict[str, _Source] = {}
    picks: list[AngleSource] = []
    yaw = np.full(len(contacts), np.nan)
    kinds = [""] * len(contacts)
    kps = motion.keypoints2d
    clip_view: dict[str, float | str] = {}
    if motion.source == "mocap":
        sources["mocap"] = _source_3d(motion, t, cutoff_hz)
        default_source = "mocap"
    else:
        sources["3d"] = _source_3d(motion, t, cutoff_hz)
        default_source = "3d"
    if kps is not None and motion.source == "video":
        frames = [np.arange(c.strike.index, c.last.index + 1) for c in contacts]
        *views, whole = estimate_views(kps, [*frames, None])
        lifter = motion.lifter or "unknown"  # a lifter the validation does not know is never preferred
        picks = [choose_angle_source(v, lifter) for v in views]
        yaw = np.array([v.yaw_deg for v in views])
        kinds = [v.kind for v in views]
        clip_view = {"yaw_deg": whole.yaw_deg, "yaw_sd_deg": whole.yaw_sd_deg, "kind": whole.kind}
        sources["2d"] = _source_2d(motion, t, cutoff_hz, yaw_deg=None)
        if any(p.source == "2d_corrected" for p in picks):
            per_frame = np.full(t.size, np.nan)
            for f, y in zip(frames, yaw, strict=True):
                per_frame[f] = y
            sources["2d_corrected"] = _source_2d(motion, t, cutoff_hz, yaw_deg=per_frame)
        default_source = "2d"

    static = motion.static_foot_angle_deg
    steps: list[Step] = []
    for i, c in enumerate(contacts):
        pick = picks[i] if picks else None
        name = default_source if pick is None or pick.source is None else pick.source
        src = sources[name]
        ctx = StepContext(
            side=c.side,
            t=t,
            strike=c.strike,
            toe_off=c.toe_off,
            next_strike=c.next_strike,
            next_same=c.next_same,
            angles=src.angles,
            ahead=src.ahead[c.side],
            height=height,
            leg=leg,
            cm=cm,
            static_foot_deg=static.get(c.side, 0.0),
        )
        values = {d.name: float(d.compute(ctx)) for d in METRIC_DEFS}
        excluded = _exclusions(
            motion,
            c,
            values,
            t,
            min_confidence=min_confidence,
            out_of_plane=pick is not None and pick.source is None,
        )
        measured = [d.name for d in METRIC_DEFS if d.kind != "timing" and (d.kind == "angle" or d.horizontal)]
        errors = {
            m: float(pick.rmse_deg.get(_VALIDATED_AS[m], math.nan)) if pick is not None else math.nan
            for m in measured
            if m in _VALIDATED_AS and math.isfinite(values[m])
        }
        steps.append(
            Step(
                side=c.side,
                strike=c.strike,
                toe_off=c.toe_off,
                next_strike=c.next_strike,
                metrics=values,
                excluded=excluded,
                sources={m: name for m in measured if math.isfinite(values[m])},
                errors_deg=errors,
                yaw_deg=float(yaw[i]),
                view=kinds[i],
                foot_strike=foot_strike_pattern(values["foot_strike_angle_deg"]),
            )
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
    patterns: dict[str, int] = {}
    for s in steps:
        if s.foot_strike is not None and usable(s, "foot_strike_angle_deg"):
            patterns[s.foot_strike] = patterns.get(s.foot_strike, 0) + 1

    # the series of the clip's own source (the steps' most common one)
    chosen = [s.sources.get("knee_flexion_ic_deg") for s in steps]
    counts = {n: chosen.count(n) for n in sources if chosen.count(n)}
    clip_source = max(counts, key=lambda n: counts[n]) if counts else default_source
    series = dict(sources[default_source if motion.source == "mocap" else "3d"].angles)
    series.update(sources[clip_source].angles)
    series_sources = {
        name: clip_source
        if name in sources[clip_source].angles
        else ("mocap" if motion.source == "mocap" else "3d")
        for name in series
    }
    scale = cm if cm is not None else 100.0 / leg
    pelvis_series = "pelvis_height_cm" if cm is not None else "pelvis_height_pct_leg"
    series[pelvis_series] = (height - np.nanmedian(height)) * scale if np.isfinite(height).any() else height
    series_sources[pelvis_series] = "2d" if kps is not None and motion.source != "mocap" else default_source

    flags = _clip_notes(motion, steps, summary, right, up, clip_view)
    units = dict(METRICS)
    units.update(dict.fromkeys((n for n in series if n.endswith("_deg")), "deg"))
    units[pelvis_series] = "cm" if cm is not None else "% leg length"
    return KinematicsResult(
        t=t.copy(),
        events=list(events),
        steps=steps,
        summary=summary,
        summary_by_side=by_side,
        asymmetry_pct=asymmetry,
        series=series,
        flags=flags,
        units=units,
        series_sources=series_sources,
        view=clip_view,
        foot_strike_pattern=patterns,
    )


def _clip_notes(
    motion: Motion,
    steps: list[Step],
    summary: dict[str, MetricSummary],
    right: FloatArray,
    up: FloatArray,
    view: dict[str, float | str],
) -> list[str]:
    notes: list[str] = []
    cadences = [s.metrics["cadence_spm"] for s in steps if math.isfinite(s.metrics["cadence_spm"])]
    if not cadences:
        notes.append(
            f"no complete step: the clip shows {len(steps)} foot contact(s) but never a strike followed by "
            "the other foot's strike, so only the contact angles are reported (cadence, contact and flight "
            "times need about one stride of running)"
        )
    else:
        cadence = float(np.median(cadences))
        if cadence < MIN_CADENCE_SPM:
            notes.append(
                f"median cadence {cadence:.0f} steps/min is below the running range "
                f"{MIN_CADENCE_SPM:.0f}-{MAX_CADENCE_SPM:.0f} steps/min: the runner may be walking, or the "
                "clip is slow motion (give its factor with --slowmo, e.g. 8 for a 240 fps capture played at "
                "30 fps)"
            )
        elif cadence > MAX_CADENCE_SPM:
            notes.append(
                f"median cadence {cadence:.0f} steps/min is above the running range "
                f"{MIN_CADENCE_SPM:.0f}-{MAX_CADENCE_SPM:.0f} steps/min: the clip's frame rate or timestamps "
                "may be wrong (a time-lapse, or a slow-motion factor applied twice?)"
            )
    if motion.source == "video" and _is_side_view(motion, right, up):
        notes.append(
            "pelvic_drop_deg is unreliable: the video shows the runner from the side, so the pelvis' "
            "frontal-plane tilt is not observed (film from behind or in front to measure it)"
        )
    if view:
        yaw = view.get("yaw_deg")
        if isinstance(yaw, float) and math.isfinite(yaw):
            notes.append(
                f"camera view: {view['kind']}, the runner turned {abs(yaw):.0f} deg "
                f"{'towards' if yaw > 0 else 'away from'} the camera (+- {view['yaw_sd_deg']:.0f} deg)"
            )
    n_oop = sum("out_of_plane" in s.flags for s in steps)
    if n_oop:
        notes.append(
            f"{n_oop} of {len(steps)} steps are seen at a yaw beyond the range where an angle source is "
            "validated: their angles and overstride are left out of the summaries (film square to the "
            "runner's side)"
        )
    needs: dict[str, list[str]] = {}
    for d in METRIC_DEFS:
        for need in d.needs:
            if not _available(motion, need):
                needs.setdefault(need, []).append(d.name)
    for need, names in needs.items():
        notes.append(f"{', '.join(names)} need {_NEEDS_TEXT[need]}: not measured")
    unavailable = {n for names in needs.values() for n in names}
    empty = [
        d.name
        for d in METRIC_DEFS
        if summary[d.name].n == 0
        and d.name not in unavailable
        and any(math.isfinite(s.metrics[d.name]) for s in steps)
    ]
    if empty:
        notes.append(f"no usable step for {', '.join(empty)} (see the per-step flags)")
    return notes
