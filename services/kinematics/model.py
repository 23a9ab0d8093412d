"""Data exchanged by the kinematics library, its service and its callers.

A :class:`Motion` is a runner's joints over time, from video (3D lifted pose, optionally with the 2D
keypoints it came from) or from motion capture (joint centres from markers). Every array is shaped
``(T, 3)`` per joint, in one right-handed or left-handed 3D frame whose vertical direction is given by
``up`` (unit vector); units are metres when ``metric`` is True, otherwise arbitrary but consistent.

Joint names (a Motion may hold any subset; what a metric needs is documented with the metric):
``pelvis, left_hip, right_hip, left_knee, right_knee, left_ankle, right_ankle, left_heel, right_heel,
left_toe, right_toe, thorax, neck, head, left_shoulder, right_shoulder, left_elbow, right_elbow,
left_wrist, right_wrist``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

SIDES = ("left", "right")

#: H36M-17 index -> Motion joint name (joint 7 "spine" and 9 "neck_nose" are not used by the metrics)
H36M_TO_MOTION = {
    0: "pelvis", 1: "right_hip", 2: "right_knee", 3: "right_ankle", 4: "left_hip", 5: "left_knee",
    6: "left_ankle", 8: "thorax", 10: "head", 11: "left_shoulder", 12: "left_elbow", 13: "left_wrist",
    14: "right_shoulder", 15: "right_elbow", 16: "right_wrist",
}  # fmt: skip


@dataclass(frozen=True)
class Keypoints2D:
    """The 2D keypoints the 3D came from: (T, K, 3) = (x, y, score) in image pixels, y down."""

    xy: FloatArray
    skeleton: str  # "coco17" or "halpe26"
    image_wh: tuple[int, int]
    #: (T,) frames whose left/right were repaired, or (T, K) the repaired keypoints of each frame
    swapped: NDArray[np.bool_] | None = None


@dataclass(frozen=True)
class TimeBase:
    """How a clip's times were made real time: by the slow-motion ``factor`` (real seconds = media seconds /
    factor) from capture-rate ``"metadata"``, the ``"user"`` (--slowmo), an ``"estimated"`` factor (from
    physics, with its ~95 % interval and deciding cue), or the capturing device's ``"clock"`` (live
    streams)."""

    factor: float
    source: str
    low: float | None = None
    high: float | None = None
    cue: str | None = None


@dataclass(frozen=True)
class Motion:
    t: FloatArray  # (T,) seconds, increasing
    joints: dict[str, FloatArray]  # name -> (T, 3)
    up: FloatArray  # (3,) unit vertical direction in the joints' frame
    metric: bool  # True: metres
    source: str  # "video" or "mocap"
    keypoints2d: Keypoints2D | None = None
    #: runner information
    height_m: float | None = None
    treadmill_speed_mps: float | None = None
    #: per-frame confidence in [0, 1] of each joint (video); absent = fully trusted (mocap)
    confidence: dict[str, FloatArray] = field(default_factory=dict)
    #: model family of the lifter that produced the 3D of a video (e.g. "semgcn"); None for motion capture
    lifter: str | None = None
    #: foot angle (heel -> toe from the horizontal, deg) per side while standing, from a static trial;
    #: subtracted from the foot strike angle (absent = 0: video keypoints on the sole)
    static_foot_angle_deg: dict[str, float] = field(default_factory=dict)
    #: how ``t`` was made real time, when it is known (then it is never re-estimated); None: the clip's
    #: nominal times, checked from physics
    time_base: TimeBase | None = None

    @property
    def fs(self) -> float:
        return float(1.0 / np.median(np.diff(self.t)))


def motion_from_h36m(
    t: FloatArray,
    pose3d: FloatArray,
    *,
    up: FloatArray | None = None,
    metric: bool,
    keypoints2d: Keypoints2D | None = None,
    height_m: float | None = None,
    treadmill_speed_mps: float | None = None,
    lifter: str | None = None,
    time_base: TimeBase | None = None,
) -> Motion:
    """A Motion from H36M-17 poses (T, 17, 3) in camera axes (x right, y down, z away): up = -y."""
    joints = {name: np.asarray(pose3d[:, i], np.float64) for i, name in H36M_TO_MOTION.items()}
    return Motion(
        t=np.asarray(t, np.float64),
        joints=joints,
        up=np.array([0.0, -1.0, 0.0]) if up is None else np.asarray(up, np.float64),
        metric=metric,
        source="video",
        keypoints2d=keypoints2d,
        height_m=height_m,
        treadmill_speed_mps=treadmill_speed_mps,
        lifter=lifter,
        time_base=time_base,
    )


@dataclass(frozen=True)
class GaitEvent:
    side: str  # "left" | "right"
    kind: str  # "strike" | "toe_off"
    index: int  # frame index (nearest frame)
    t: float  # seconds (may be interpolated between frames)


@dataclass(frozen=True)
class Step:
    """One ground contact of one foot and the step that follows it (to the other foot's next strike).

    Every foot strike makes a Step: where the clip ends (or an event is missed) before the toe-off or the
    other foot's next strike, the metrics that need them are NaN and the contact's own angles remain."""

    side: str
    strike: GaitEvent
    toe_off: GaitEvent | None
    next_strike: GaitEvent | None  # the contralateral foot's next strike (end of the step)
    metrics: dict[str, float]  # metric name -> value (NaN when not computable); names in METRICS
    #: metric -> the quality flags (names in FLAGS) that leave it out of the summaries
    excluded: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: angle and length metric -> where it was measured: "2d", "2d_corrected" (2D with the view's
    #: foreshortening undone), "3d" (lifted), "mocap"
    sources: dict[str, str] = field(default_factory=dict)
    #: angle metric -> validated RMSE (deg) of its source at this step's view (NaN: not validated)
    errors_deg: dict[str, float] = field(default_factory=dict)
    #: the camera's view of this step: estimated yaw (deg, 0 = side-on) and kind; NaN / "" for mocap
    yaw_deg: float = float("nan")
    view: str = ""
    #: "rearfoot" | "midfoot" | "forefoot" from the foot strike angle; None without heel and toe points
    foot_strike: str | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        """Every quality flag that excludes some metric of this step, in the order of FLAGS."""
        seen = {f for fs in self.excluded.values() for f in fs}
        return tuple(f for f in FLAGS if f in seen)


@dataclass(frozen=True)
class MetricSummary:
    mean: float
    sd: float
    ci95_low: float
    ci95_high: float
    n: int


@dataclass(frozen=True)
class KinematicsResult:
    t: FloatArray
    events: list[GaitEvent]
    steps: list[Step]
    summary: dict[str, MetricSummary]  # over the steps whose flags do not exclude it, per metric
    summary_by_side: dict[str, dict[str, MetricSummary]]  # side -> metric -> summary
    asymmetry_pct: dict[str, float]  # metric -> 100 * (left - right) / mean(left, right)
    series: dict[str, FloatArray]  # time series (T,), e.g. "left_knee_flexion_deg"
    flags: list[str]  # whole-clip findings, e.g. the slow-motion hint
    units: dict[str, str]  # metric / series name -> unit
    #: series name -> its source ("2d", "2d_corrected", "3d", "mocap")
    series_sources: dict[str, str] = field(default_factory=dict)
    #: the clip's view: estimated yaw (deg), its uncertainty (deg), kind; empty for motion capture
    view: dict[str, float | str] = field(default_factory=dict)
    #: foot strike pattern -> number of contacts (contacts with heel and toe points only)
    foot_strike_pattern: dict[str, int] = field(default_factory=dict)
    #: how the time base was set or checked (see services.kinematics.timebase); None when not examined
    time_base: dict[str, object] | None = None


#: quality flags a step can carry (each excludes only the metrics whose frames it concerns; see
#: services.kinematics.metric_defs)
FLAGS = {
    "low_confidence": "keypoint confidence below threshold in the frames the metric reads",
    "swap_repaired": "a left/right swap was repaired in the frames the metric reads",
    "out_of_plane": "the camera's view of the step is beyond the yaw where a source is validated",
    "implausible": "a metric outside physiological range",
}


def usable(step: Step, metric: str) -> bool:
    """Whether ``step``'s value of ``metric`` enters the summaries (no flag of the step excludes it)."""
    return metric not in step.excluded
