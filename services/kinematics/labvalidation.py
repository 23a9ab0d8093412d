"""Validate Gaitway against a lab's motion capture: the running metrics of a marker trial through the same
engine as video, the agreement of Gaitway's angles with the lab software's own model outputs, cadence
against the force plates or the heel markers, and a video of the same run against the markers.

* :func:`load_trial` reads a run (and its static trial), recognises the marker set
  (:mod:`services.kinematics.markersets`), builds joint centres (:func:`services.kinematics.mocap.lab_motion`)
  and runs :func:`services.kinematics.metrics.analyze_motion` on them.
* :func:`reference_agreement` compares Gaitway's joint angles
  (:func:`services.kinematics.angles.joint_angles`) with the file's ``LKneeAngles``-style outputs, sagittal
  component (Plug-in-Gait's X), frame by frame: RMSE, mean offset, Pearson r, n, and the convention
  differences found (sign, offset) in words.
* :func:`cadence_truth`: steps per minute from the force plates' contacts (:func:`force_contacts`), else from
  the periodicity of the heel markers' height (:func:`services.kinematics.timebase.period_samples`).
* :func:`compare_video`: a video's 2D keypoints and lifted 3D against the markers, synchronised by
  cross-correlating the knee angles (:func:`synchronise`) or by a given offset: MPJPE / PA-MPJPE / N-MPJPE of
  the joints both have and angle errors per source (2D sagittal, 3D lifted).
* :func:`mocap_document`: the JSON document of ``gaitway evaluate mocap``.

Offsets are Gaitway minus reference, in degrees.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.errors import NoValidDataError
from services.kinematics.angles import joint_angles, sagittal_angles_2d
from services.kinematics.evaluate import (
    agreement,
    cadence_from_strikes,
    evaluate_3d,
    force_contacts,
    resample,
    rotate_onto,
    synchronise,
)
from services.kinematics.markersets import assign_roles, model_output_angles
from services.kinematics.metrics import analyze_motion
from services.kinematics.mocap import (
    JointCentres,
    MarkerData,
    lab_joint_centres,
    lab_motion,
    read_force_plates,
    read_markers,
)
from services.kinematics.model import FloatArray, Keypoints2D, KinematicsResult, Motion, motion_from_h36m
from services.kinematics.schema import to_response
from services.kinematics.timebase import period_samples

__all__ = [
    "ANGLE_DEFINITIONS",
    "JOINTS",
    "MocapTrial",
    "cadence_truth",
    "compare_video",
    "load_trial",
    "mocap_document",
    "reference_agreement",
]

#: joints compared with the lab's model outputs, in report order
JOINTS = ("knee", "hip", "ankle")

#: how Gaitway and Plug-in-Gait define each sagittal angle (the source of any offset between them)
ANGLE_DEFINITIONS = {
    "knee": "Gaitway: 180 deg minus the hip-knee-ankle angle in 3D (never negative); Plug-in-Gait: "
    "Cardan flexion of the tibia in the femur frame, with its own joint centres",
    "hip": "Gaitway: the thigh (hip -> knee) against the trunk line (thorax -> pelvis) in the sagittal "
    "plane; Plug-in-Gait: Cardan flexion of the femur in the pelvis frame, so the pelvis' tilt against "
    "the trunk shows as an offset",
    "hip_no_trunk": "no trunk markers: Gaitway's value is the thigh against the vertical (thigh angle); "
    "Plug-in-Gait's hip angle is against the pelvis, so the offset is about the pelvis' anterior tilt",
    "ankle": "Gaitway: 90 deg minus the angle between the shank (ankle -> knee) and the foot line "
    "(heel -> toe marker), no static offset; Plug-in-Gait: Cardan dorsiflexion of the foot in the tibia "
    "frame with the foot's standing offset removed, so the difference is about the static ankle angle",
}

#: an offset (deg) smaller than this is reported as none
OFFSET_NOTED_DEG = 2.0
#: a synchronisation whose runner-up leaves less than 1.5 times its misfit is ambiguous (Sync.ambiguity)
AMBIGUOUS_SYNC = 1 / 1.5


@dataclass(frozen=True)
class MocapTrial:
    """A motion-capture run read, reconstructed and analysed."""

    run: MarkerData
    static: MarkerData | None
    centres: JointCentres
    motion: Motion
    result: KinematicsResult
    angles: dict[str, FloatArray]  # joint_angles(motion), (T,) each


def load_trial(
    run_path: str | Path,
    static_path: str | Path | None = None,
    *,
    height_m: float | None = None,
    treadmill_speed_mps: float | None = None,
    lowpass_hz: float | None = None,
    hjc_method: str = "harrington",
) -> MocapTrial:
    """Read a running trial (C3D, Qualisys TSV or RBDS text) and its static trial, build the joint centres of
    whatever marker set it uses and analyse them with the video path's engine. Raises InputError (naming
    the marker sets expected and the labels found) when the hips, knees and ankles cannot be built."""
    run = read_markers(run_path)
    static = None if static_path is None else read_markers(static_path)
    centres = lab_joint_centres(run, static, hjc_method=hjc_method)
    motion = lab_motion(
        run,
        static,
        height_m=height_m,
        treadmill_speed_mps=treadmill_speed_mps,
        lowpass_hz=lowpass_hz,
        centres=centres,
    )
    result = analyze_motion(motion)
    return MocapTrial(run, static, centres, motion, result, joint_angles(motion))


def _gaitway_angle(trial: MocapTrial, joint: str, side: str) -> tuple[str, str]:
    """Gaitway's series compared with the lab's ``joint`` angle, and the definition that applies."""
    if joint == "knee":
        return f"{side}_knee_flexion_deg", ANGLE_DEFINITIONS["knee"]
    if joint == "ankle":
        return f"{side}_ankle_dorsiflexion_deg", ANGLE_DEFINITIONS["ankle"]
    hip = f"{side}_hip_flexion_deg"
    if np.isfinite(trial.angles[hip]).any():
        return hip, ANGLE_DEFINITIONS["hip"]
    return f"{side}_thigh_angle_deg", ANGLE_DEFINITIONS["hip_no_trunk"]


def _convention(stats: Mapping[str, Any], joint: str, label: str) -> str:
    """The convention differences one comparison shows, in words."""
    words = []
    if stats["sign"] < 0:
        words.append(f"opposite sign: {label} grows the other way (compared after negating it)")
    else:
        words.append("same sign (flexion / dorsiflexion positive)")
    off = stats["offset_deg"]
    if math.isfinite(off) and abs(off) >= OFFSET_NOTED_DEG:
        words.append(f"offset: Gaitway reads {abs(off):.1f} deg {'more' if off > 0 else 'less'} on average")
    elif math.isfinite(off):
        words.append(f"no offset beyond {OFFSET_NOTED_DEG:g} deg")
    return "; ".join(words)


def reference_agreement(trial: MocapTrial) -> dict[str, dict[str, Any]]:
    """Per joint and side (``"knee_left"`` ...), Gaitway's sagittal angle against the file's model output of
    that joint (sagittal = the point's X component, Plug-in-Gait's order), frame by frame:
    ``rmse_deg``, ``offset_deg`` (Gaitway minus reference), ``r``, ``n`` (:func:`agreement`), plus ``sign``,
    ``sd_deg`` (the RMSE without the offset), ``reference_label``, ``gaitway_angle``, ``convention`` (the
    differences found) and ``definitions``. Empty when the file has no such outputs."""
    found = model_output_angles(trial.run.outputs)
    out: dict[str, dict[str, Any]] = {}
    for joint in JOINTS:
        for side in ("left", "right"):
            key = f"{joint}_{side}"
            label = found.get(key)
            if label is None:
                continue
            ref = np.asarray(trial.run.outputs[label], np.float64)[:, 0]
            name, definition = _gaitway_angle(trial, joint, side)
            stats: dict[str, Any] = dict(agreement(trial.angles[name], ref))
            stats |= {
                "reference_label": label,
                "gaitway_angle": name,
                "convention": _convention(stats, joint, label),
                "definitions": definition,
            }
            out[key] = stats
    return out


def _heel_cadence(motion: Motion) -> tuple[float, list[str]]:
    """Steps per minute from the stride periodicity of each heel's (else ankle's) height: 2 steps per
    stride, averaged over the sides that show one."""
    up = np.asarray(motion.up, np.float64)
    rates, used = [], []
    for side in ("left", "right"):
        for joint in (f"{side}_heel", f"{side}_ankle"):
            if joint not in motion.joints:
                continue
            period, _ = period_samples(np.asarray(motion.joints[joint] @ up, np.float64))
            if math.isfinite(period) and period > 0:
                rates.append(120.0 * motion.fs / period)
                used.append(joint)
                break
    return (float(np.mean(rates)) if rates else math.nan), used


def cadence_truth(trial: MocapTrial) -> dict[str, Any]:
    """Gaitway's cadence (the step mean of ``cadence_spm``) against the truth: the force plates' contacts
    when the C3D file has plates that saw at least 3 consecutive steps (``60 * steps / duration``), else the
    heel markers' stride period. Returns ``gaitway_spm``, ``truth_spm``, ``truth_source``,
    ``difference_spm``, ``force_plate_spm`` (with ``force_plate_steps``) and ``heel_marker_spm``."""
    s = trial.result.summary.get("cadence_spm")
    gaitway = float(s.mean) if s is not None and s.mean is not None else math.nan
    plate_spm, plate_steps, plate_labels = math.nan, 0, []
    if trial.run.format == "c3d":
        strikes = []
        for plate in read_force_plates(trial.run.source):
            hits, _ = force_contacts(plate.t, plate.fz)
            if hits.size:
                strikes.append(hits)
                plate_labels.append(plate.label)
        if strikes:
            plate_spm, plate_steps = cadence_from_strikes(np.concatenate(strikes))
    heel_spm, heel_used = _heel_cadence(trial.motion)
    if math.isfinite(plate_spm):
        truth, source = plate_spm, f"force plate ({', '.join(plate_labels)}: {plate_steps} steps)"
    elif math.isfinite(heel_spm):
        truth, source = heel_spm, f"stride period of the {' and '.join(heel_used)} height"
    else:
        truth, source = math.nan, "none"
    return {
        "gaitway_spm": gaitway,
        "truth_spm": truth,
        "truth_source": source,
        "difference_spm": gaitway - truth,
        "force_plate_spm": plate_spm,
        "force_plate_steps": plate_steps,
        "heel_marker_spm": heel_spm,
    }


def mocap_document(trial: MocapTrial) -> dict[str, Any]:
    """The ``gaitway evaluate mocap`` document without its ``video`` part: ``reference`` (per joint and side,
    :func:`reference_agreement`), ``summary`` and ``summary_by_side`` (as in ``metrics.json``), ``cadence``
    (:func:`cadence_truth`), ``markers`` (files, marker set, how each joint centre was found, repaired
    labels, the lab's vertical, the model outputs and unused labels), ``conventions`` and ``notes``."""
    resp = to_response(trial.result).model_dump(mode="json")
    reference = reference_agreement(trial)
    conventions = [
        f"{key}: {v['convention']} ({v['reference_label']} X vs Gaitway {v['gaitway_angle']})"
        for key, v in reference.items()
    ]
    notes = list(trial.centres.notes) + list(trial.result.flags)
    if not trial.run.outputs:
        notes.append("the file holds no model outputs (LKneeAngles ...): nothing to compare the angles with")
    elif not reference:
        notes.append(
            "the file's model outputs hold no hip / knee / ankle angles: "
            + ", ".join(list(trial.run.outputs)[:12])
        )
    return {
        "reference": reference,
        "summary": resp["summary"],
        "summary_by_side": resp["summary_by_side"],
        "cadence": cadence_truth(trial),
        "markers": {
            "run": trial.run.source,
            "static": None if trial.static is None else trial.static.source,
            "format": trial.run.format,
            "rate_hz": trial.run.rate_hz,
            "frames": trial.run.n_frames,
            "marker_set": trial.centres.marker_set,
            "joint_centres": dict(trial.centres.methods),
            "relabelled": trial.centres.relabelled,
            "up": [float(v) for v in trial.motion.up],
            "model_outputs": list(trial.run.outputs),
            "unused": list(assign_roles(trial.run.labels).unused),
        },
        "steps": {side: sum(1 for s in trial.result.steps if s.side == side) for side in ("left", "right")},
        "conventions": conventions,
        "notes": notes,
    }


# ------------------------------------------------------------------------------------------------------------
# Video against the markers
# ------------------------------------------------------------------------------------------------------------

#: Motion joints compared in 3D (when the markers give them), H36M-17 index of each
_H36M_INDEX = {
    "pelvis": 0, "right_hip": 1, "right_knee": 2, "right_ankle": 3, "left_hip": 4, "left_knee": 5,
    "left_ankle": 6, "thorax": 8, "head": 10, "left_shoulder": 11, "left_elbow": 12, "left_wrist": 13,
    "right_shoulder": 14, "right_elbow": 15, "right_wrist": 16,
}  # fmt: skip

#: angles compared per source
_VIDEO_ANGLES = ("knee_flexion", "hip_flexion", "thigh_angle", "tibia_angle", "ankle_dorsiflexion")
_SYNC_KEYS = ("left_knee_flexion_deg", "right_knee_flexion_deg")


def compare_video(
    trial: MocapTrial,
    t: FloatArray,
    kps3d: FloatArray,
    kps2d: Keypoints2D,
    *,
    metric: bool,
    offset_s: float | None = None,
) -> dict[str, Any]:
    """A video's poses against the markers of the same run.

    ``t`` ``(T,)`` video seconds, ``kps3d`` ``(T, 17, 3)`` the lifted H36M-17 (camera axes, root-relative;
    metres when ``metric``), ``kps2d`` the 2D keypoints it came from. The clocks are matched by ``offset_s``
    (the mocap time at the video's t = 0) or by cross-correlating the knee flexion of both sides (2D
    sagittal, else 3D, against the markers': :func:`synchronise` over every lag that keeps half the video
    inside the trial; a ``sync.ambiguity`` above :data:`AMBIGUOUS_SYNC` means another stride fits nearly as
    well, and a note says so). Then, on the
    video's frames: 3D errors of the joints both have (root-aligned, one rotation for the whole sequence from
    camera to lab axes, :func:`rotate_onto`; PA-MPJPE per pose), in mm (model units x 1000 when not
    ``metric``), and per angle source (``2d`` sagittal, ``3d`` lifted) the agreement of each sagittal angle
    with the markers' (:func:`agreement`)."""
    t = np.asarray(t, np.float64)
    mocap_t = np.asarray(trial.motion.t, np.float64)
    video3d = motion_from_h36m(t, kps3d, metric=metric, keypoints2d=kps2d)
    sources = {"2d": sagittal_angles_2d(kps2d), "3d": joint_angles(video3d)}
    notes: list[str] = []
    if offset_s is not None:
        lag = -float(offset_s)
        sync_doc: dict[str, Any] = {"method": "given offset", "offset_s": float(offset_s)}
    else:
        signal_source = "2d" if any(np.isfinite(sources["2d"][k]).sum() > 10 for k in _SYNC_KEYS) else "3d"
        span = float(mocap_t[-1] - mocap_t[0] + t[-1] - t[0])
        sync = synchronise(
            mocap_t,
            {k: trial.angles[k] for k in _SYNC_KEYS},
            t,
            {k: sources[signal_source][k] for k in _SYNC_KEYS},
            max_lag_s=span,
        )
        lag = sync.lag_s
        sync_doc = {
            "method": f"cross-correlation of the knee flexion ({signal_source} video vs markers, both sides)",
            "offset_s": -lag,
            "r": sync.r,
            "runner_up_r": sync.runner_up_r,
            "runner_up_offset_s": -sync.runner_up_lag_s,
            "ambiguity": sync.ambiguity,
        }
        if sync.ambiguity > AMBIGUOUS_SYNC:
            notes.append(
                f"synchronisation ambiguous: an offset of {-sync.runner_up_lag_s:.3f} s correlates nearly as "
                f"well (r {sync.runner_up_r:.3f} vs {sync.r:.3f}); give --offset"
            )
    at = t - lag  # mocap time of each video frame
    inside = (at >= mocap_t[0]) & (at <= mocap_t[-1])
    if not inside.any():
        raise NoValidDataError("the video and the motion capture do not overlap at this offset")
    joints = [j for j in _H36M_INDEX if j in trial.motion.joints]
    gt = np.stack([resample(mocap_t, trial.motion.joints[j], at[inside]) for j in joints], axis=1)
    pred = kps3d[inside][:, [_H36M_INDEX[j] for j in joints]]
    gt = gt - gt[:, :1]
    pred = pred - pred[:, :1]
    scale = 1000.0
    err3d: dict[str, Any] | None
    try:
        names = joints[1:]
        err3d = evaluate_3d(rotate_onto(pred, gt)[:, 1:] * scale, gt[:, 1:] * scale, names)
        err3d.pop("per_pose", None)
        err3d["units"] = "mm" if metric else "model units x 1000 (no --height: use PA-/N-MPJPE)"
    except NoValidDataError as exc:
        err3d = None
        notes.append(f"3D not compared: {exc}")
    angles: dict[str, dict[str, Any]] = {}
    for source, series in sources.items():
        block: dict[str, Any] = {}
        for name in _VIDEO_ANGLES:
            for side in ("left", "right"):
                key = f"{side}_{name}_deg"
                if key not in series or key not in trial.angles:
                    continue
                ref = resample(mocap_t, trial.angles[key], at)
                stats = agreement(series[key], ref)
                if stats["n"]:
                    block[key] = stats
        angles[source] = block
    return {
        "frames": int(t.size),
        "frames_compared": int(inside.sum()),
        "sync": sync_doc,
        "joints_3d": err3d,
        "angles": angles,
        "notes": notes,
    }
