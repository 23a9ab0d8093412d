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
    swapped: NDArray[np.bool_] | None = None  # (T,) frames whose left/right were repaired


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
    )


@dataclass(frozen=True)
class GaitEvent:
    side: str  # "left" | "right"
    kind: str  # "strike" | "toe_off"
    index: int  # frame index (nearest frame)
    t: float  # seconds (may be interpolated between frames)


@dataclass(frozen=True)
class Step:
    """One ground contact of one foot and the step that follows it (to the other foot's next strike)."""

    side: str
    strike: GaitEvent
    toe_off: GaitEvent | None
    next_strike: GaitEvent | None  # the contralateral foot's next strike (end of the step)
    metrics: dict[str, float]  # metric name -> value (NaN when not computable); names in METRICS
    flags: tuple[str, ...] = ()  # quality flags, names in FLAGS


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
    summary: dict[str, MetricSummary]  # over unflagged steps, per metric
    summary_by_side: dict[str, dict[str, MetricSummary]]  # side -> metric -> summary
    asymmetry_pct: dict[str, float]  # metric -> 100 * (left - right) / mean(left, right)
    series: dict[str, FloatArray]  # angle time series (T,), e.g. "left_knee_flexion_deg"
    flags: list[str]  # whole-clip findings, e.g. the slow-motion hint
    units: dict[str, str]  # metric / series name -> unit


#: per-step metric names and units (units for metric input; "rel" = fraction of leg length otherwise)
METRICS = {
    "step_time_s": "s",
    "cadence_spm": "steps/min",
    "contact_time_s": "s",
    "flight_time_s": "s",
    "duty_factor": "fraction",
    "knee_flexion_ic_deg": "deg",
    "knee_flexion_peak_stance_deg": "deg",
    "vertical_oscillation_cm": "cm",
    "overstride_cm": "cm",
}

#: quality flags a step can carry
FLAGS = {
    "low_confidence": "keypoint confidence below threshold around the contact",
    "swap_repaired": "a left/right swap was repaired during the step",
    "out_of_plane": "2D and 3D sagittal angles disagree (runner not side-on, or an unreliable 3D lift)",
    "implausible": "a metric outside physiological range",
}

_ANGLES = frozenset({"knee_flexion_ic_deg", "knee_flexion_peak_stance_deg"})
#: metrics each flag makes untrustworthy (left out of the summaries for that step); timing survives a
#: foreshortened view, positions do not survive low confidence
FLAG_EXCLUDES: dict[str, frozenset[str]] = {
    "low_confidence": frozenset(METRICS),
    "implausible": frozenset(METRICS),
    "swap_repaired": _ANGLES | {"vertical_oscillation_cm", "overstride_cm"},
    "out_of_plane": _ANGLES | {"overstride_cm"},
}


def usable(step: Step, metric: str) -> bool:
    """Whether ``step``'s value of ``metric`` enters the summaries (no flag of the step excludes it)."""
    return not any(metric in FLAG_EXCLUDES.get(flag, frozenset(METRICS)) for flag in step.flags)
