"""Request and response of the kinematics service, and their conversion to and from the library's types.

The same models serve the HTTP service, its client and the in-process path the CLI uses, so all three
validate input identically. Missing values travel as ``null`` and become NaN inside.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from services.errors import FrameRateError, NoValidDataError, ShapeError
from services.kinematics.metric_defs import definitions
from services.kinematics.model import (
    FloatArray,
    GaitEvent,
    Keypoints2D,
    KinematicsResult,
    MetricSummary,
    Motion,
    TimeBase,
    motion_from_h36m,
)
from services.plain import to_plain
from services.pose.skeletons import SKELETONS

Number = float | None

#: the shape of a request (two frames of zeros: valid JSON, too short to analyse)
_EXAMPLE: Any = {
    "fps": 60.0,
    "pose3d": [[[0.0, 0.0, 0.0]] * 17] * 2,
    "metric": True,
    "runner": {"height_m": 1.78},
}
Series3 = list[list[Number]]  # (T, 3)


class RunnerInfo(BaseModel):
    height_m: float | None = Field(default=None, gt=0.5, lt=2.8, description="runner height, metres")
    treadmill_speed_mps: float | None = Field(default=None, ge=0, le=12, description="belt speed if known")


class Keypoints2DIn(BaseModel):
    skeleton: Literal["coco17", "halpe26"]
    image_wh: tuple[int, int] = Field(description="image width and height in pixels")
    xy: list[list[list[Number]]] = Field(description="(T, K, 3): x, y, score per keypoint, pixels")
    swapped: list[bool] | list[list[bool]] | None = Field(
        default=None,
        description="(T,) frames whose left/right were repaired, or (T, K) the repaired keypoints per frame",
    )


#: Motion joint -> 2D keypoints whose score is that joint's confidence (the lowest is used)
CONFIDENCE_SOURCES = {
    "pelvis": ("left_hip", "right_hip"),
    **{f"{s}_{j}": (f"{s}_{j}",) for s in ("left", "right") for j in ("hip", "knee", "ankle", "shoulder",
                                                                       "elbow", "wrist")},
}  # fmt: skip


class TimeBaseIn(BaseModel):
    """How the request's times were set, when they are known to be real time (never re-estimated)."""

    factor: float = Field(default=1.0, gt=0, description="slow-motion factor already applied to t")
    source: Literal["metadata", "user", "estimated", "clock"] = Field(
        description="capture-rate metadata, the user (--slowmo), an earlier estimate from physics, or the "
        "capturing device's clock (live streams)"
    )
    low: float | None = Field(default=None, description="~95 % interval of an estimated factor")
    high: float | None = None
    cue: str | None = Field(default=None, description="the cue that decided an estimated factor")


class KinematicsRequest(BaseModel):
    """A pose sequence of one runner. Give ``fps`` (constant rate) or ``t`` (seconds per frame), and
    ``pose3d`` (H36M-17 in camera axes: x right, y down, z away) or ``joints3d`` (named joints, any frame
    with ``up`` giving the vertical)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    fps: float | None = Field(default=None, description="frames per second (real time)")
    t: list[float] | None = Field(default=None, description="timestamps in seconds, increasing")
    pose3d: list[list[list[Number]]] | None = Field(default=None, description="(T, 17, 3) H36M-17")
    joints3d: dict[str, Series3] | None = Field(default=None, description="joint name -> (T, 3)")
    up: tuple[float, float, float] | None = Field(default=None, description="vertical; default (0,-1,0)")
    metric: bool = Field(default=False, description="coordinates are metres")
    keypoints2d: Keypoints2DIn | None = None
    confidence: dict[str, list[Number]] | None = Field(
        default=None, description="joint name -> (T,) in [0, 1]"
    )
    runner: RunnerInfo = Field(default_factory=RunnerInfo)
    lifter: str | None = Field(
        default=None, description="model family of the lifter that produced pose3d, e.g. semgcn (video only)"
    )
    time_base: TimeBaseIn | None = Field(
        default=None, description="set when t is known to be real time; otherwise it is checked from physics"
    )

    @classmethod
    def from_poses(
        cls,
        t: FloatArray,
        pose3d: FloatArray,
        *,
        metric: bool,
        keypoints2d: FloatArray | None = None,
        skeleton2d: str = "coco17",
        image_wh: tuple[int, int] = (0, 0),
        swapped: NDArray[np.bool_] | None = None,
        lifter: str | None = None,
        runner: RunnerInfo | None = None,
        time_base: TimeBaseIn | None = None,
    ) -> KinematicsRequest:
        """The request for one analysed video (the only builder): H36M-17 3D in camera axes ``(T, 17, 3)``
        at times ``t`` plus the 2D keypoints ``(T, K, 3)`` it came from, whose scores become per-joint
        confidences (:data:`CONFIDENCE_SOURCES`)."""
        kps = None
        confidence = None
        if keypoints2d is not None:
            kps = Keypoints2DIn(
                skeleton=skeleton2d,  # type: ignore[arg-type]
                image_wh=image_wh,
                xy=_listify(keypoints2d),
                swapped=None if swapped is None else np.asarray(swapped, dtype=bool).tolist(),
            )
            names = SKELETONS[skeleton2d].joints
            scores = np.nan_to_num(keypoints2d[..., 2])
            confidence = {
                joint: _listify(np.min([scores[:, names.index(src)] for src in sources], axis=0))
                for joint, sources in CONFIDENCE_SOURCES.items()
            }
        return cls(
            t=[float(v) for v in t],
            pose3d=_listify(pose3d),
            metric=metric,
            keypoints2d=kps,
            confidence=confidence,
            runner=runner or RunnerInfo(),
            lifter=lifter,
            time_base=time_base,
        )


class SummaryOut(BaseModel):
    mean: Number
    sd: Number
    ci95_low: Number
    ci95_high: Number
    n: int


class EventOut(BaseModel):
    side: str
    kind: str
    index: int
    t: float


class StepOut(BaseModel):
    side: str
    strike: EventOut
    toe_off: EventOut | None
    next_strike: EventOut | None
    metrics: dict[str, Number]
    flags: list[str] = Field(description="every quality flag that leaves some metric of the step out")
    excluded: dict[str, list[str]] = Field(
        default_factory=dict, description="metric -> the flags leaving it out of the summaries"
    )
    sources: dict[str, str] = Field(
        default_factory=dict, description="angle/length metric -> 2d, 2d_corrected, 3d or mocap"
    )
    errors_deg: dict[str, Number] = Field(
        default_factory=dict, description="angle metric -> validated RMSE of its source at this view"
    )
    yaw_deg: Number = Field(default=None, description="estimated camera yaw of the step, 0 = side-on")
    view: str = Field(default="", description="sagittal, oblique, frontal, rear or unknown")
    foot_strike: str | None = Field(default=None, description="rearfoot, midfoot or forefoot")


class KinematicsResponse(BaseModel):
    steps: list[StepOut]
    summary: dict[str, SummaryOut]
    summary_by_side: dict[str, dict[str, SummaryOut]]
    asymmetry_pct: dict[str, Number]
    events: list[EventOut]
    t: list[float]
    series: dict[str, list[Number]]
    flags: list[str]
    units: dict[str, str]
    series_sources: dict[str, str] = Field(default_factory=dict)
    view: dict[str, float | str | None] = Field(default_factory=dict)
    foot_strike_pattern: dict[str, int] = Field(default_factory=dict)
    time_base: dict[str, Any] | None = None
    definitions: dict[str, dict[str, Any]] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- conversion --------------------------------------------------------------------------------------
def _listify(a: NDArray[np.float64]) -> list[Any]:
    """Nested lists with NaN as None (JSON null)."""
    obj = np.asarray(a, dtype=np.float64).astype(object)
    obj[~np.isfinite(np.asarray(a, dtype=np.float64))] = None
    out: list[Any] = obj.tolist()
    return out


def _array(values: object, what: str) -> FloatArray:
    try:
        return np.array(values, dtype=np.float64)  # None -> nan
    except (TypeError, ValueError):
        raise ShapeError(f"{what} is not a regular numeric array (ragged rows?)") from None


def _times(req: KinematicsRequest, n: int) -> FloatArray:
    if req.t is not None:
        t = _array(req.t, "t")
        if t.shape != (n,):
            raise ShapeError(f"t has {t.size} values for {n} frames")
        if not np.isfinite(t).all() or (np.diff(t) <= 0).any():
            raise FrameRateError("t must be finite and strictly increasing")
        return t
    if req.fps is None or not math.isfinite(req.fps) or req.fps <= 0:
        raise FrameRateError(f"fps must be a positive number (or give t), got {req.fps}")
    return np.arange(n) / req.fps


def to_motion(req: KinematicsRequest) -> Motion:
    """Validate a request and build the library's Motion. Raises ShapeError, FrameRateError or
    NoValidDataError with a message saying what is wrong."""
    if (req.pose3d is None) == (req.joints3d is None):
        raise ShapeError("give exactly one of pose3d (H36M-17) and joints3d (named joints)")
    up = None if req.up is None else _array(req.up, "up")
    if up is not None and not (np.isfinite(up).all() and np.linalg.norm(up) > 0):
        raise ShapeError("up must be a non-zero finite vector")
    if up is not None:
        up = up / np.linalg.norm(up)
    kps = None
    if req.keypoints2d is not None:
        xy = _array(req.keypoints2d.xy, "keypoints2d.xy")
        k = 17 if req.keypoints2d.skeleton == "coco17" else 26
        if xy.ndim != 3 or xy.shape[1:] != (k, 3):
            raise ShapeError(
                f"keypoints2d.xy must be (T, {k}, 3) for {req.keypoints2d.skeleton}, got {xy.shape}"
            )
        swapped = None if req.keypoints2d.swapped is None else np.asarray(req.keypoints2d.swapped, bool)
        kps = Keypoints2D(
            xy=xy, skeleton=req.keypoints2d.skeleton, image_wh=req.keypoints2d.image_wh, swapped=swapped
        )
    if req.pose3d is not None:
        pose = _array(req.pose3d, "pose3d")
        if pose.ndim != 3 or pose.shape[1:] != (17, 3):
            raise ShapeError(f"pose3d must be (T, 17, 3) H36M-17, got {pose.shape}")
        n = len(pose)
        if n < 2:
            raise ShapeError("pose3d needs at least 2 frames")
        if not np.isfinite(pose).any():
            raise NoValidDataError("pose3d holds no finite value")
        motion = motion_from_h36m(
            _times(req, n),
            pose,
            up=up,
            metric=req.metric,
            keypoints2d=kps,
            height_m=req.runner.height_m,
            treadmill_speed_mps=req.runner.treadmill_speed_mps,
            lifter=req.lifter,
            time_base=None if req.time_base is None else TimeBase(**req.time_base.model_dump()),
        )
    else:
        assert req.joints3d is not None
        joints = {name: _array(v, f"joints3d[{name}]") for name, v in req.joints3d.items()}
        shapes = {j.shape for j in joints.values()}
        if not joints or len(shapes) != 1 or next(iter(shapes))[1:] != (3,) or len(next(iter(shapes))) != 2:
            raise ShapeError(f"every joints3d entry must be (T, 3) with the same T, got {sorted(shapes)}")
        n = next(iter(shapes))[0]
        if n < 2:
            raise ShapeError("joints3d needs at least 2 frames")
        if not any(np.isfinite(j).any() for j in joints.values()):
            raise NoValidDataError("joints3d holds no finite value")
        motion = Motion(
            t=_times(req, n),
            joints=joints,
            up=np.array([0.0, -1.0, 0.0]) if up is None else up,
            metric=req.metric,
            source="video" if kps is not None else "mocap",
            keypoints2d=kps,
            height_m=req.runner.height_m,
            treadmill_speed_mps=req.runner.treadmill_speed_mps,
            lifter=req.lifter,
            time_base=None if req.time_base is None else TimeBase(**req.time_base.model_dump()),
        )
    if kps is not None and len(kps.xy) != len(motion.t):
        raise ShapeError(f"keypoints2d has {len(kps.xy)} frames, the 3D pose {len(motion.t)}")
    if req.confidence:
        conf = {name: _array(v, f"confidence[{name}]") for name, v in req.confidence.items()}
        if any(c.shape != (len(motion.t),) for c in conf.values()):
            raise ShapeError("every confidence entry must have one value per frame")
        motion = Motion(**{**motion.__dict__, "confidence": conf})
    return motion


def _num(x: float) -> Number:
    return None if not math.isfinite(x) else float(x)


def _summary(s: MetricSummary) -> SummaryOut:
    return SummaryOut(
        mean=_num(s.mean), sd=_num(s.sd), ci95_low=_num(s.ci95_low), ci95_high=_num(s.ci95_high), n=s.n
    )


def to_response(result: KinematicsResult) -> KinematicsResponse:
    def event(e: GaitEvent) -> EventOut:
        return EventOut(side=e.side, kind=e.kind, index=e.index, t=e.t)

    steps = []
    for s in result.steps:
        steps.append(
            StepOut(
                side=s.side,
                strike=event(s.strike),
                toe_off=None if s.toe_off is None else event(s.toe_off),
                next_strike=None if s.next_strike is None else event(s.next_strike),
                metrics={k: _num(v) for k, v in s.metrics.items()},
                flags=list(s.flags),
                excluded={k: list(v) for k, v in s.excluded.items()},
                sources=dict(s.sources),
                errors_deg={k: _num(v) for k, v in s.errors_deg.items()},
                yaw_deg=_num(s.yaw_deg),
                view=s.view,
                foot_strike=s.foot_strike,
            )
        )
    return KinematicsResponse(
        steps=steps,
        summary={k: _summary(v) for k, v in result.summary.items()},
        summary_by_side={
            side: {k: _summary(v) for k, v in d.items()} for side, d in result.summary_by_side.items()
        },
        asymmetry_pct={k: _num(v) for k, v in result.asymmetry_pct.items()},
        events=[event(e) for e in result.events],
        t=[float(x) for x in result.t],
        series={k: [_num(float(x)) for x in v] for k, v in result.series.items()},
        flags=list(result.flags),
        units=dict(result.units),
        series_sources=dict(result.series_sources),
        view={k: _num(v) if isinstance(v, float) else v for k, v in result.view.items()},
        foot_strike_pattern=dict(result.foot_strike_pattern),
        time_base=to_plain(result.time_base),
        definitions=definitions(),
    )
