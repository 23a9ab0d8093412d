"""Validation of the view-dependent angle sources on motion capture (the numbers behind ``view_errors.json``).

A virtual pinhole camera is placed on the runner's left and yawed about the vertical through the mean pelvis
(:func:`yawed_camera`; yaw convention of :mod:`services.kinematics.view`, measured from the runner's mean
pelvis-based sagittal plane, i.e. the ``forward`` of :func:`~services.kinematics.angles.body_axes` that the
reference angles use). The mocap joint centres, with the synthetic upright upper body of
:func:`~services.kinematics.evaluate.h36m17_from_legs`, are projected through it, and knee flexion and the
thigh angle are compared with the mocap's own 3D angles (:func:`~services.kinematics.angles.joint_angles`)
for each source:

* ``"2d"``: :func:`~services.kinematics.angles.sagittal_angles_2d` of the projected points laid out as
  COCO-17 keypoints (score 1; the face keypoints missing). Its thigh angle (thigh vs the image vertical,
  positive forward, the 3D definition in the image plane) is ``hip_flexion - trunk_lean``, an identity of
  that function's definitions.
* ``"2d_corrected"``: the same after :func:`~services.kinematics.view.correct_foreshortening` with the yaw
  ESTIMATED (:func:`~services.kinematics.view.estimate_view`, :data:`JOINT_CENTRE_PRIOR
  <services.kinematics.view.JOINT_CENTRE_PRIOR>`) over consecutive windows of one step (0.35 s), never the
  true one.
* ``"3d"``: a lifter (``lift``: H36M-17 pixels with scores -> 3D in camera axes) on the projected H36M-17
  2D, then :func:`~services.kinematics.angles.joint_angles` of
  :func:`~services.kinematics.model.motion_from_h36m`.

"Hip" here is the thigh angle: the motion capture has no upper-body markers, so hip flexion (thigh vs trunk)
cannot be validated. The 2D inputs are exact projections of joint centres (no detector noise, no keypoint
offsets): the errors are those of the view geometry and of the lifter, a floor for real video.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from services.errors import NoValidDataError
from services.kinematics.angles import body_axes, joint_angles, sagittal_angles_2d
from services.kinematics.evaluate import PinholeCamera, angle_rmse, h36m17_from_legs, side_camera
from services.kinematics.model import SIDES, FloatArray, Keypoints2D, Motion, motion_from_h36m
from services.kinematics.view import (
    ANGLE_KEYS,
    JOINT_CENTRE_PRIOR,
    SOURCES,
    ViewErrorTable,
    ViewEstimate,
    WidthPrior,
    choose_angle_source,
    correct_foreshortening,
    estimate_view,
    estimate_views,
    view_kind,
)
from services.pose.skeletons import COCO17, H36M17

__all__ = [
    "DEFAULT_YAWS_DEG",
    "FRAMINGS",
    "STATURE_PER_LEG",
    "Framing",
    "LiftFn",
    "Trial",
    "coco17_from_h36m17",
    "evaluate_case",
    "prepare_trial",
    "summarise",
    "table_json",
    "view_sweep",
    "yawed_camera",
]

#: H36M-17 pixels with scores ``(T, 17, 3)`` and the image size -> 3D ``(T, 17, 3)`` in camera axes
LiftFn = Callable[[FloatArray, tuple[int, int]], FloatArray]

#: stature / (thigh + shank): Winter, Biomechanics and Motor Control of Human Movement (2009), segment
#: lengths thigh 0.245 H and leg 0.246 H
STATURE_PER_LEG = 1.0 / 0.491

#: yaws of the sweep (degrees)
DEFAULT_YAWS_DEG: tuple[float, ...] = tuple(float(y) for y in range(-60, 61, 5))

#: frames of the 150 Hz mocap kept (every 3rd: 50 Hz)
DEFAULT_FRAME_STEP = 3

#: window (seconds, about one running step) over which the 2d_corrected path estimates the yaw
STEP_WINDOW_S = 0.35


_ANGLES_NOTE = {
    "knee_flexion": "knee flexion (2D: signed thigh - shank angle in the image; 3D: 180 - hip-knee-ankle)",
    "thigh_angle": "THIGH angle (thigh vs the downward vertical in the sagittal plane, + forward), NOT hip "
    "flexion: the motion capture has no upper-body markers (the trunk is the synthetic upright one of "
    "h36m17_from_legs)",
}
_REFERENCE_NOTE = (
    "joint_angles of the mocap joint centres (RBDS: Harrington hips, epicondyle and malleolus midpoints); "
    "left and right pooled (RMS of the two sides' RMSE); rmse_deg per bin = RMS over the cases, max_deg = "
    "the worst case, n = cases with a value"
)
_CAMERA_NOTE = (
    "pinhole, on the runner's left, level, aimed at the mean pelvis, yawed about the vertical from the mean "
    "pelvis-based sagittal plane (body_axes)"
)


@dataclass(frozen=True)
class Framing:
    """A virtual camera framing: distance to the runner's mean pelvis and image size, with either a fixed
    focal length or the fraction of the image height the runner's stature fills."""

    name: str
    distance_m: float
    image_wh: tuple[int, int]
    focal_px: float | None = None
    fill: float | None = None  # stature / image height
    note: str = ""

    def focal_for(self, stature_m: float) -> float:
        if self.focal_px is not None:
            return self.focal_px
        if self.fill is None:
            raise ValueError(f"framing {self.name}: give focal_px or fill")
        return self.fill * self.image_wh[1] * self.distance_m / stature_m


FRAMINGS: tuple[Framing, ...] = (
    Framing(
        "h36m_like",
        5.0,
        (1000, 1000),
        focal_px=1146.0,
        note="Human3.6M's cameras (1000x1000, f ~1146 px, subject ~5 m): the runner spans ~40 % of the "
        "image width, as in the lifter's training views",
    ),
    Framing(
        "landscape_5m",
        5.0,
        (1920, 1080),
        focal_px=1500.0,
        note="the `gaitway evaluate rbds` default (1920x1080, f 1500 px): the runner fills ~50 % of the "
        "height",
    ),
    Framing(
        "landscape_3m",
        3.0,
        (1920, 1080),
        fill=0.8,
        note="close camera, strong perspective: the runner fills 80 % of a 1920x1080 image's height",
    ),
    Framing(
        "portrait_8m",
        8.0,
        (1080, 1920),
        fill=0.5,
        note="phone in portrait 8 m away with a ~3x lens: the runner fills 50 % of a 1080x1920 image's "
        "height",
    ),
)


@dataclass(frozen=True)
class Trial:
    """A motion-capture trial prepared for the sweep (frames subsampled)."""

    subject: str
    files: tuple[str, ...]  # the marker files' names
    t: FloatArray  # (T,) seconds
    lab17: FloatArray  # (T, 17, 3) H36M-17 lab positions, metres (synthetic upper body)
    up: FloatArray  # (3,)
    forward: FloatArray  # (3,) mean horizontal forward of the pelvis-based body axes
    target: FloatArray  # (3,) mean pelvis: the camera's aim point
    stature_m: float  # from the leg length (STATURE_PER_LEG)
    reference: Mapping[str, FloatArray]  # mocap 3D angles (T,), names of joint_angles


def prepare_trial(motion: Motion, subject: str, files: Sequence[str] = (), *, frame_step: int = 3) -> Trial:
    """A :class:`Trial` from a motion-capture Motion with pelvis, hips, knees and ankles (metres, any
    right-handed lab frame): reference angles at the full rate, then every ``frame_step``-th frame kept."""
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    up = np.asarray(motion.up, np.float64)
    up = up / np.linalg.norm(up)
    fwd_t, _, _ = body_axes(motion)
    fwd = np.nanmean(fwd_t, axis=0)
    fwd = fwd - np.dot(fwd, up) * up
    fwd = fwd / np.linalg.norm(fwd)
    lab17, _ = h36m17_from_legs(motion.joints, up, fwd)
    ref = joint_angles(motion)
    sel = slice(None, None, frame_step)
    pelvis = lab17[:, 0][np.isfinite(lab17[:, 0]).all(axis=-1)]
    if not len(pelvis):
        raise NoValidDataError(f"{subject}: the pelvis is never reconstructed")
    legs = [
        np.linalg.norm(lab17[:, k] - lab17[:, h], axis=-1)
        + np.linalg.norm(lab17[:, a] - lab17[:, k], axis=-1)
        for h, k, a in ((1, 2, 3), (4, 5, 6))
    ]
    leg = np.concatenate(legs)
    return Trial(
        subject=subject,
        files=tuple(files),
        t=np.asarray(motion.t, np.float64)[sel],
        lab17=lab17[sel],
        up=up,
        forward=fwd,
        target=pelvis.mean(axis=0),
        stature_m=float(np.median(leg[np.isfinite(leg)])) * STATURE_PER_LEG,
        reference={k: np.asarray(v, np.float64)[sel] for k, v in ref.items()},
    )


def yawed_camera(
    up: ArrayLike,
    forward: ArrayLike,
    target: ArrayLike,
    yaw_deg: float,
    *,
    distance_m: float,
    focal_px: float,
    image_wh: tuple[int, int],
    side: str = "left",
) -> PinholeCamera:
    """:func:`~services.kinematics.evaluate.side_camera` on the runner's ``side``, moved about the vertical
    through ``target`` so that the runner appears yawed by ``yaw_deg`` (positive: the runner's front turned
    towards the camera). Right-handed lab: the runner's right is ``forward x up``."""
    u = np.asarray(up, np.float64)
    f = np.asarray(forward, np.float64)
    right = np.cross(f, u)
    th = math.radians(yaw_deg)
    sign = 1.0 if side == "left" else -1.0
    # side_camera looks along right(f') (left) or -right(f') (right); this f' puts the camera at the yaw
    f_cam = math.cos(th) * f + sign * math.sin(th) * right
    return side_camera(
        u,
        f_cam,
        target,
        distance_m=distance_m,
        focal_px=focal_px,
        image_wh=image_wh,
        side="left" if side == "left" else "right",
    )


_H36M_INDEX = {name: i for i, name in enumerate(H36M17.joints)}


def coco17_from_h36m17(uv: ArrayLike) -> FloatArray:
    """H36M-17 pixels ``(T, 17, 2)`` -> COCO-17 keypoints ``(T, 17, 3)``: the joints both layouts name
    (shoulders, elbows, wrists, hips, knees, ankles) with score 1 where finite; the face (nose, eyes, ears)
    missing (NaN, score 0)."""
    p = np.asarray(uv, np.float64)
    out = np.zeros((p.shape[0], COCO17.num_joints, 3))
    out[..., :2] = np.nan
    for j, name in enumerate(COCO17.joints):
        i = _H36M_INDEX.get(name)
        if i is None:
            continue
        ok = np.isfinite(p[:, i]).all(axis=-1)
        out[ok, j, :2] = p[ok, i]
        out[ok, j, 2] = 1.0
    return out


def _sagittal(kps: Keypoints2D) -> dict[str, FloatArray]:
    """Knee flexion and thigh angle (2D) as named by joint_angles."""
    a = sagittal_angles_2d(kps)
    out = {f"{s}_knee_flexion_deg": a[f"{s}_knee_flexion_deg"] for s in SIDES}
    for s in SIDES:
        with np.errstate(invalid="ignore"):
            thigh = a[f"{s}_hip_flexion_deg"] - a["trunk_lean_deg"]
            out[f"{s}_thigh_angle_deg"] = (thigh + 180.0) % 360.0 - 180.0
    return out


def _pooled(rmse: Mapping[str, float]) -> dict[str, float]:
    """Per angle: the RMS over both sides of the per-side RMSEs."""
    out = {}
    for angle in ANGLE_KEYS:
        vals = [rmse.get(f"{s}_{angle}_deg", math.nan) for s in SIDES]
        out[angle] = math.sqrt(sum(v * v for v in vals) / len(vals))
    return out


def _windows(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def evaluate_case(
    trial: Trial,
    framing: Framing,
    yaw_deg: float,
    *,
    lift: LiftFn | None,
    prior: WidthPrior = JOINT_CENTRE_PRIOR,
    step_window_s: float = STEP_WINDOW_S,
) -> dict[str, Any]:
    """One row of the sweep: angle RMSE (degrees, both sides pooled) per source against the mocap, and the
    yaw estimate of the whole clip and of each step-long window. ``lift`` None skips the 3D source."""
    wh = framing.image_wh
    cam = yawed_camera(
        trial.up,
        trial.forward,
        trial.target,
        yaw_deg,
        distance_m=framing.distance_m,
        focal_px=framing.focal_for(trial.stature_m),
        image_wh=wh,
    )
    uv = cam.project(trial.lab17)
    kps = Keypoints2D(coco17_from_h36m17(uv), "coco17", wh)
    clip = estimate_view(kps, prior=prior)
    fs = 1.0 / float(np.median(np.diff(trial.t)))
    size = max(3, round(step_window_s * fs))  # estimate_view needs 3 frames
    yaw_frames = np.full(len(trial.t), np.nan)
    windows = _windows(len(trial.t), size)
    estimates = estimate_views(kps, [np.arange(w.start, w.stop) for w in windows], prior=prior)
    for w, est in zip(windows, estimates, strict=True):
        yaw_frames[w] = est.yaw_deg
    wy = np.array([est.yaw_deg for est in estimates])
    wy = wy[np.isfinite(wy)]
    ref = {k: v for k, v in trial.reference.items() if "knee_flexion" in k or "thigh_angle" in k}
    rmse: dict[str, dict[str, float]] = {
        "2d": _pooled(angle_rmse(_sagittal(kps), ref)),
        "2d_corrected": _pooled(angle_rmse(_sagittal(correct_foreshortening(kps, yaw_frames)), ref)),
    }
    if lift is not None:
        kps17 = np.concatenate([uv, np.isfinite(uv).all(axis=-1, keepdims=True).astype(np.float64)], axis=-1)
        pred = lift(kps17, wh)
        lifted = motion_from_h36m(trial.t, pred, metric=True)
        rmse["3d"] = _pooled(angle_rmse(joint_angles(lifted), ref))
    return {
        "subject": trial.subject,
        "framing": framing.name,
        "yaw_deg": float(yaw_deg),
        "yaw_est_deg": clip.yaw_deg,
        "yaw_est_sd_deg": clip.yaw_sd_deg,
        "yaw_err_deg": clip.yaw_deg - yaw_deg,
        "step_yaw_est_min_deg": float(wy.min()) if wy.size else math.nan,
        "step_yaw_est_max_deg": float(wy.max()) if wy.size else math.nan,
        "step_yaw_abs_err_p95_deg": float(np.percentile(np.abs(wy - yaw_deg), 95)) if wy.size else math.nan,
        "rmse_deg": rmse,
    }


def _num(value: Any) -> float:
    """A case value as a float: None (JSON null) and NaN are NaN."""
    return math.nan if value is None else float(value)


def summarise(cases: Sequence[Mapping[str, Any]], *, bins_deg: Sequence[float]) -> dict[str, Any]:
    """Per ``|yaw|`` bin (centres ``bins_deg``, edges half-way between them) and source: the RMS over the
    cases of their RMSE (``rmse_deg``), the worst case (``max_deg``) and the count of cases with a value
    (``n``); with the yaw estimate's absolute errors per bin. Cases as :func:`evaluate_case` returns them
    or as read back from JSON (null for NaN)."""
    centres = np.asarray(bins_deg, np.float64)
    half = float(np.min(np.diff(centres)) / 2.0) if centres.size > 1 else 2.5
    groups: list[list[Mapping[str, Any]]] = [[] for _ in centres]
    for c in cases:
        i = int(np.argmin(np.abs(centres - abs(c["yaw_deg"]))))
        if abs(centres[i] - abs(c["yaw_deg"])) <= half + 1e-9:
            groups[i].append(c)
    sources: dict[str, Any] = {}
    for src in SOURCES:
        if not any(src in c["rmse_deg"] for c in cases):
            continue
        block: dict[str, Any] = {"rmse_deg": {}, "max_deg": {}, "n": []}
        for angle in ANGLE_KEYS:
            rms, worst = [], []
            for g in groups:
                v = np.array([_num(c["rmse_deg"][src][angle]) for c in g if src in c["rmse_deg"]])
                v = v[np.isfinite(v)]
                rms.append(float(np.sqrt(np.mean(v * v))) if v.size else math.nan)
                worst.append(float(v.max()) if v.size else math.nan)
            block["rmse_deg"][angle], block["max_deg"][angle] = rms, worst
        block["n"] = [
            sum(
                1
                for c in g
                if src in c["rmse_deg"] and math.isfinite(_num(c["rmse_deg"][src]["knee_flexion"]))
            )
            for g in groups
        ]
        sources[src] = block
    yaw_err = []
    for g in groups:
        e = np.abs(np.array([_num(c["yaw_err_deg"]) for c in g]))
        s = np.array([_num(c["step_yaw_abs_err_p95_deg"]) for c in g])
        e, s = e[np.isfinite(e)], s[np.isfinite(s)]
        yaw_err.append(
            {
                "clip_median_deg": float(np.median(e)) if e.size else math.nan,
                "clip_max_deg": float(e.max()) if e.size else math.nan,
                "step_p95_max_deg": float(np.max(s)) if s.size else math.nan,
            }
        )
    return {"bins_deg": [float(b) for b in centres], "bin_half_width_deg": half, "by_source": sources,
            "yaw_abs_error": yaw_err}  # fmt: skip


def _rounded(value: Any, digits: int = 3) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    return value


def view_sweep(
    trials: Sequence[Trial],
    *,
    lift: LiftFn | None,
    lifter: Mapping[str, Any] | None = None,
    framings: Sequence[Framing] = FRAMINGS,
    yaws_deg: Sequence[float] = DEFAULT_YAWS_DEG,
    prior: WidthPrior = JOINT_CENTRE_PRIOR,
    frame_step: int = DEFAULT_FRAME_STEP,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole sweep as the ``view_errors.json`` document (``schema: gaitway.view_errors``): every
    (trial, framing, yaw) case, the per-``|yaw|`` table per source (2D sources under ``sources``, the 3D
    under ``lifters[family]``), the policy's choice per case, and how it was made. ``lifter`` describes the
    3D (at least ``family``; ``name``, ``sha256`` recorded when given); ``frame_step`` is recorded only (the
    trials carry their subsampling). Values are rounded to 3 decimals."""
    if lift is not None and (lifter is None or "family" not in lifter):
        raise ValueError("give lifter={'family': ...} with lift")
    cases = []
    for trial in trials:
        for framing in framings:
            for yaw in yaws_deg:
                cases.append(evaluate_case(trial, framing, yaw, lift=lift, prior=prior))
                if progress is not None:
                    progress(f"{trial.subject} {framing.name} yaw {yaw:+.0f}")
    bins = sorted({abs(float(y)) for y in yaws_deg})
    summary = summarise(cases, bins_deg=bins)
    by_source = summary["by_source"]
    family = None if lifter is None else str(lifter["family"])
    doc: dict[str, Any] = {
        "schema": "gaitway.view_errors",
        "schema_version": 1,
        "generated_by": "gaitway evaluate views --write-table",
        "angles": _ANGLES_NOTE,
        "method": {
            "trials": [
                {"subject": t.subject, "files": list(t.files), "stature_m": t.stature_m} for t in trials
            ],
            "frame_step": frame_step,
            "reference": _REFERENCE_NOTE,
            "camera": _CAMERA_NOTE,
            "framings": [
                {
                    "name": f.name,
                    "distance_m": f.distance_m,
                    "image_wh": list(f.image_wh),
                    "focal_px": f.focal_px,
                    "fill": f.fill,
                    "note": f.note,
                }
                for f in framings
            ],
            "yaws_deg": [float(y) for y in yaws_deg],
            "sources": {
                "2d": "sagittal_angles_2d of the projected joint centres as COCO-17 keypoints",
                "2d_corrected": "the same after correct_foreshortening with the yaw estimated per "
                f"{STEP_WINDOW_S} s window",
                "3d": "the lifter on the projected H36M-17 2D, joint_angles of motion_from_h36m",
            },
            "yaw_prior": {"name": prior.name, "hip_width": prior.hip_width, "cv": prior.cv},
            "lookup": "by bin: the nearest |yaw| centre within bin_half_width_deg, no interpolation",
            "lifter": dict(lifter) if lifter is not None else None,
        },
        "bins_deg": summary["bins_deg"],
        "bin_half_width_deg": summary["bin_half_width_deg"],
        "sources": {k: v for k, v in by_source.items() if k != "3d"},
        "lifters": {family: by_source["3d"]} if family is not None and "3d" in by_source else {},
        "yaw_abs_error": summary["yaw_abs_error"],
        "cases": cases,
    }
    doc = _rounded(doc)
    table = ViewErrorTable.from_dict(doc)
    for case in doc["cases"]:
        choice = _choice(case, family, table)
        case["policy"] = choice
    return doc


def _choice(case: Mapping[str, Any], family: str | None, table: ViewErrorTable) -> str | None:
    """The policy's source for a case's estimated clip yaw and its SD (2D sources only without a lifter)."""
    yaw, sd = _num(case["yaw_est_deg"]), _num(case["yaw_est_sd_deg"])
    est = ViewEstimate(yaw_deg=yaw, yaw_sd_deg=sd, kind=view_kind(yaw), n_frames=1)
    return choose_angle_source(est, family or "(no lifter)", table=table).source


def table_json(doc: Mapping[str, Any]) -> str:
    """The sweep document as stable, diff-friendly JSON text: objects indented, lists of numbers and each
    case on one line, no NaN (None/null instead)."""

    def fmt(value: Any, indent: int, inline: bool) -> str:
        if inline or not isinstance(value, dict | list):
            return json.dumps(value, allow_nan=False)
        pad, inner = " " * indent, " " * (indent + 2)
        if isinstance(value, list):
            if all(not isinstance(v, dict | list) for v in value):
                return json.dumps(value, allow_nan=False)
            items = [inner + fmt(v, indent + 2, inline=isinstance(v, dict) and "subject" in v) for v in value]
            return "[\n" + ",\n".join(items) + "\n" + pad + "]"
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {fmt(v, indent + 2, False)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"

    return fmt(doc, 0, False) + "\n"
