"""Known truths of services.kinematics.angles: exact angles of constructed skeletons in lab and camera
frames, invariance to rotation/translation/scale/travel direction, mirroring, 2D sagittal angles and the
out-of-plane check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from services.errors import InputError
from services.kinematics.angles import (
    ANGLE_NAMES,
    body_axes,
    facing_direction_2d,
    joint_angles,
    out_of_plane,
    sagittal_angles_2d,
)
from services.kinematics.model import Keypoints2D, Motion
from services.pose.skeletons import COCO17, HALPE26

Array = NDArray[np.float64]
LAB_UP = np.array([0.0, 1.0, 0.0])  # lab: +X forward, +Y up, +Z right
CAM_UP = np.array([0.0, -1.0, 0.0])  # camera: x right, y down, z away
# lab -> camera rotations (proper, det +1): rows give camera axes in lab coordinates
LAB_TO_CAMERA = {
    "left_to_right": np.array([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]]),  # forward = +x, right = -z
    "right_to_left": np.array([[-1.0, 0, 0], [0, -1, 0], [0, 0, 1]]),  # forward = -x, right = +z
    "towards_camera": np.array([[0.0, 0, -1], [0, -1, 0], [-1, 0, 0]]),  # forward = -z, right = -x
}
FLEXIONS = (
    "left_knee_flexion_deg",
    "right_knee_flexion_deg",
    "left_hip_flexion_deg",
    "right_hip_flexion_deg",
    "left_thigh_angle_deg",
    "right_thigh_angle_deg",
    "left_ankle_dorsiflexion_deg",
    "right_ankle_dorsiflexion_deg",
    "left_elbow_flexion_deg",
    "right_elbow_flexion_deg",
)


def _sag(angle_from_down_deg: float) -> Array:
    """Unit vector in the lab sagittal plane at an angle from the downward vertical, + forward."""
    a = math.radians(angle_from_down_deg)
    return np.array([math.sin(a), -math.cos(a), 0.0])


def pose(
    *,
    knee: tuple[float, float] = (30.0, 60.0),
    hip: tuple[float, float] = (20.0, -10.0),
    ankle: tuple[float, float] = (10.0, -15.0),
    elbow: tuple[float, float] = (80.0, 95.0),
    lean: float = 8.0,
    drop: float = 5.0,
) -> dict[str, Array]:
    """One lab-frame skeleton with exactly these angles (left, right) in degrees, as name -> (3,)."""
    pelvis = np.array([0.0, 1.0, 0.0])
    lr = math.radians(lean)
    thorax = pelvis + 0.5 * np.array([math.sin(lr), math.cos(lr), 0.0])
    dr = math.radians(drop)
    half = 0.1 * np.array([0.0, math.sin(dr), math.cos(dr)])  # right hip higher for drop > 0
    j: dict[str, Array] = {"pelvis": pelvis, "thorax": thorax, "head": thorax + np.array([0.02, 0.25, 0.0])}
    for i, (side, sign) in enumerate((("left", -1.0), ("right", 1.0))):
        hip_pos = pelvis + sign * half
        thigh = hip[i] - lean  # thigh angle from the downward vertical
        shank = thigh - knee[i]
        knee_pos = hip_pos + 0.45 * _sag(thigh)
        ankle_pos = knee_pos + 0.42 * _sag(shank)
        # foot (heel -> toe): 90° - dorsiflexion from the shank's upward direction, towards forward
        foot = _sag(shank + 90.0 + ankle[i])
        shoulder = thorax + np.array([0.0, 0.0, sign * 0.18])
        elbow_pos = shoulder + 0.3 * _sag(-20.0)
        wrist = elbow_pos + 0.25 * _sag(-20.0 + elbow[i])
        j |= {
            f"{side}_hip": hip_pos,
            f"{side}_knee": knee_pos,
            f"{side}_ankle": ankle_pos,
            f"{side}_heel": ankle_pos - 0.06 * foot,
            f"{side}_toe": ankle_pos + 0.15 * foot,
            f"{side}_shoulder": shoulder,
            f"{side}_elbow": elbow_pos,
            f"{side}_wrist": wrist,
        }
    return j


def motion_of(frames: list[dict[str, Array]], up: Array = LAB_UP, fs: float = 60.0) -> Motion:
    names = frames[0].keys()
    joints = {n: np.array([f[n] for f in frames], dtype=np.float64) for n in names}
    t = np.arange(len(frames)) / fs
    return Motion(t=t, joints=joints, up=np.asarray(up, np.float64), metric=True, source="mocap")


def transformed(
    j: dict[str, Array], rot: Array, shift: Array | float = 0.0, scale: float = 1.0
) -> dict[str, Array]:
    return {n: scale * (rot @ p) + shift for n, p in j.items()}


def expected(**kw: tuple[float, float] | float) -> dict[str, float]:
    p = {"knee": (30.0, 60.0), "hip": (20.0, -10.0), "ankle": (10.0, -15.0), "elbow": (80.0, 95.0)}
    p |= {k: v for k, v in kw.items() if isinstance(v, tuple)}
    lean = float(kw.get("lean", 8.0))  # type: ignore[arg-type]
    drop = float(kw.get("drop", 5.0))  # type: ignore[arg-type]
    out = {"trunk_lean_deg": lean, "pelvic_drop_deg": drop}
    for i, side in enumerate(("left", "right")):
        out[f"{side}_knee_flexion_deg"] = p["knee"][i]
        out[f"{side}_hip_flexion_deg"] = p["hip"][i]
        out[f"{side}_thigh_angle_deg"] = p["hip"][i] - lean
        out[f"{side}_ankle_dorsiflexion_deg"] = p["ankle"][i]
        out[f"{side}_elbow_flexion_deg"] = p["elbow"][i]
    return out


def assert_angles(got: dict[str, Array], want: dict[str, float], atol: float = 1e-6) -> None:
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, atol=atol, err_msg=name)


# --------------------------------------------------------------------------------------------------------
# exact angles


def test_lab_frame_angles_are_exact() -> None:
    got = joint_angles(motion_of([pose()] * 3))
    assert set(got) == set(ANGLE_NAMES)
    assert all(v.shape == (3,) for v in got.values())
    assert_angles(got, expected())


def test_knee_at_exactly_30_degrees_and_straight_leg() -> None:
    got = joint_angles(motion_of([pose(knee=(30.0, 0.0))] * 2))
    np.testing.assert_allclose(got["left_knee_flexion_deg"], 30.0, atol=1e-9)
    np.testing.assert_allclose(got["right_knee_flexion_deg"], 0.0, atol=1e-6)


@pytest.mark.parametrize("view", sorted(LAB_TO_CAMERA))
def test_camera_frames_give_the_lab_angles(view: str) -> None:
    rot = LAB_TO_CAMERA[view]
    frames = [transformed(pose(), rot, shift=np.array([0.3, -0.2, 4.0]))] * 3
    got = joint_angles(motion_of(frames, up=CAM_UP))
    assert_angles(got, expected())


def test_body_axes_in_lab_and_camera() -> None:
    fwd, up, right = body_axes(motion_of([pose()] * 3))
    np.testing.assert_allclose(fwd, [[1.0, 0.0, 0.0]] * 3, atol=1e-9)
    np.testing.assert_allclose(right, [[0.0, 0.0, 1.0]] * 3, atol=1e-9)
    np.testing.assert_allclose(up, LAB_UP)
    rot = LAB_TO_CAMERA["right_to_left"]
    fwd, up, right = body_axes(motion_of([transformed(pose(), rot)] * 3, up=CAM_UP))
    np.testing.assert_allclose(fwd, [[-1.0, 0.0, 0.0]] * 3, atol=1e-9)
    np.testing.assert_allclose(right, [[0.0, 0.0, 1.0]] * 3, atol=1e-9)


def test_body_axes_smooth_out_pelvis_rotation() -> None:
    """Hips rotating ±10° about the vertical at the stride frequency: away from the clip edges (one
    smoothing sigma) the facing stays within 0.5°."""
    fs, n = 100.0, 400
    frames = []
    for i in range(n):
        yaw = math.radians(10.0) * math.sin(2 * math.pi * 1.4 * i / fs)
        rot = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
        p = pose()
        p["left_hip"] = p["pelvis"] + rot @ (p["left_hip"] - p["pelvis"])
        p["right_hip"] = p["pelvis"] + rot @ (p["right_hip"] - p["pelvis"])
        frames.append(p)
    fwd, _, _ = body_axes(motion_of(frames, fs=fs))
    err = np.degrees(np.arccos(np.clip(fwd[100:-100] @ np.array([1.0, 0.0, 0.0]), -1, 1)))
    assert err.max() < 0.5


def test_left_handed_frame_is_detected() -> None:
    """Coordinates mirrored without renaming (a left-handed frame) still give the same angles."""
    mirror = np.diag([1.0, 1.0, -1.0])
    got = joint_angles(motion_of([transformed(pose(), mirror)] * 3))
    want = expected()
    want["pelvic_drop_deg"] = 5.0
    assert_angles(got, want)


def test_missing_joints_give_nan_series() -> None:
    p = pose()
    for name in ("left_heel", "thorax", "head", "left_shoulder", "right_shoulder"):
        del p[name]
    got = joint_angles(motion_of([p] * 2))
    assert np.all(np.isnan(got["left_ankle_dorsiflexion_deg"]))
    assert np.all(np.isnan(got["left_hip_flexion_deg"]))
    assert np.all(np.isnan(got["trunk_lean_deg"]))
    assert np.all(np.isnan(got["left_elbow_flexion_deg"]))
    np.testing.assert_allclose(got["right_ankle_dorsiflexion_deg"], -15.0, atol=1e-6)
    np.testing.assert_allclose(got["left_thigh_angle_deg"], 12.0, atol=1e-6)


def test_nan_frames_stay_local() -> None:
    frames = [pose() for _ in range(5)]
    m = motion_of(frames)
    m.joints["left_knee"][2] = np.nan
    got = joint_angles(m)
    assert np.isnan(got["left_knee_flexion_deg"][2])
    np.testing.assert_allclose(np.delete(got["left_knee_flexion_deg"], 2), 30.0, atol=1e-6)
    np.testing.assert_allclose(got["right_knee_flexion_deg"], 60.0, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: Motion(m.t[::-1].copy(), m.joints, m.up, True, "mocap"), "increasing"),
        (lambda m: Motion(np.zeros(3), m.joints, m.up, True, "mocap"), "increasing"),
        (lambda m: Motion(m.t, {"left_knee": np.zeros((2, 3))}, m.up, True, "mocap"), "shaped"),
        (lambda m: Motion(m.t, {k: np.full((3, 3), np.nan) for k in m.joints}, m.up, True, "mocap"), "NaN"),
        (lambda m: Motion(m.t, m.joints, np.zeros(3), True, "mocap"), "up"),
        (lambda m: Motion(m.t[:1], m.joints, m.up, True, "mocap"), "2 frames"),
    ],
)
def test_invalid_motion_raises_input_error(change: object, message: str) -> None:
    m = motion_of([pose()] * 3)
    with pytest.raises(InputError, match=message):
        joint_angles(change(m))  # type: ignore[operator]


# --------------------------------------------------------------------------------------------------------
# properties

angle_pairs = st.tuples(st.floats(0.0, 110.0), st.floats(0.0, 110.0))
poses = st.fixed_dictionaries(
    {
        "knee": st.tuples(st.floats(21.0, 110.0), st.floats(21.0, 110.0)),
        "hip": st.tuples(st.floats(-30.0, 60.0), st.floats(-30.0, 60.0)),
        "ankle": st.tuples(st.floats(-40.0, 30.0), st.floats(-40.0, 30.0)),
        "elbow": st.tuples(st.floats(5.0, 150.0), st.floats(5.0, 150.0)),
        "lean": st.floats(-10.0, 25.0),
        "drop": st.floats(-12.0, 12.0),
    }
)


def _rotation(q: tuple[float, float, float, float]) -> Array:
    w, x, y, z = np.asarray(q) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


quaternions = st.tuples(*(st.floats(-1.0, 1.0) for _ in range(4))).filter(lambda q: np.linalg.norm(q) > 0.1)


@settings(max_examples=40, deadline=None)
@given(
    params=poses,
    q=quaternions,
    shift=st.tuples(*(st.floats(-50.0, 50.0) for _ in range(3))),
    scale=st.floats(0.01, 1000.0),
)
def test_rigid_motion_and_scale_leave_angles_unchanged(
    params: dict[str, object], q: tuple[float, float, float, float], shift: tuple[float, ...], scale: float
) -> None:
    base = joint_angles(motion_of([pose(**params)] * 3))  # type: ignore[arg-type]
    rot = _rotation(q)
    moved = motion_of([transformed(pose(**params), rot, np.array(shift), scale)] * 3, up=rot @ LAB_UP)  # type: ignore[arg-type]
    got = joint_angles(moved)
    for name in ANGLE_NAMES:
        np.testing.assert_allclose(got[name], base[name], atol=1e-6, err_msg=name)


def _swap_names(j: dict[str, Array]) -> dict[str, Array]:
    out = {}
    for n, p in j.items():
        if n.startswith("left_"):
            out["right_" + n[5:]] = p
        elif n.startswith("right_"):
            out["left_" + n[6:]] = p
        else:
            out[n] = p
    return out


@settings(max_examples=40, deadline=None)
@given(params=poses, q=quaternions)
def test_mirrored_runner_swaps_sides(params: dict[str, object], q: tuple[float, float, float, float]) -> None:
    """x -> -x (in a randomly rotated frame) with left/right names swapped: the same flexions, sides
    swapped; pelvic drop negated; trunk lean unchanged."""
    rot = _rotation(q)
    frame = [transformed(pose(**params), rot)] * 3  # type: ignore[arg-type]
    base = joint_angles(motion_of(frame, up=rot @ LAB_UP))
    flip = np.diag([-1.0, 1.0, 1.0])
    mirrored = [_swap_names(transformed(f, flip)) for f in frame]
    got = joint_angles(motion_of(mirrored, up=flip @ rot @ LAB_UP))
    for name in FLEXIONS:
        other = name.replace("left_", "RIGHT_").replace("right_", "left_").replace("RIGHT_", "right_")
        np.testing.assert_allclose(got[other], base[name], atol=1e-6, err_msg=name)
    np.testing.assert_allclose(got["trunk_lean_deg"], base["trunk_lean_deg"], atol=1e-6)
    np.testing.assert_allclose(got["pelvic_drop_deg"], -base["pelvic_drop_deg"], atol=1e-6)


# --------------------------------------------------------------------------------------------------------
# 2D


def keypoints(
    frames: list[dict[str, Array]], *, yaw_deg: float = 0.0, halpe: bool = False, width: int = 1280
) -> Keypoints2D:
    """Orthographic side view from the runner's right (lab X -> image +x), optionally with the runner
    turned by ``yaw_deg`` about the vertical; COCO-17 or Halpe-26 with plausible head and feet."""
    skel = HALPE26 if halpe else COCO17
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    rows = []
    for j in frames:
        head = j["head"]
        pts = {
            "nose": head + np.array([0.10, 0.0, 0.0]),
            "left_eye": head + np.array([0.08, 0.03, -0.03]),
            "right_eye": head + np.array([0.08, 0.03, 0.03]),
            "left_ear": head + np.array([0.0, 0.0, -0.07]),
            "right_ear": head + np.array([0.0, 0.0, 0.07]),
        }
        for side in ("left", "right"):
            for name in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
                pts[f"{side}_{name}"] = j[f"{side}_{name}"]
            if halpe:
                toe, heel = j[f"{side}_toe"], j[f"{side}_heel"]
                pts[f"{side}_big_toe"] = toe + np.array([0.0, 0.0, 0.01])
                pts[f"{side}_small_toe"] = toe - np.array([0.0, 0.0, 0.01])
                pts[f"{side}_heel"] = heel
        if halpe:
            pts |= {"head": head + np.array([0, 0.1, 0]), "neck": j["thorax"], "hip": j["pelvis"]}
        row = np.zeros((skel.num_joints, 3))
        for i, name in enumerate(skel.joints):
            x, y, z = pts[name]
            xr = x * c + z * s
            row[i] = (400.0 + 300.0 * xr, 700.0 - 300.0 * y, 0.9)
        rows.append(row)
    return Keypoints2D(xy=np.array(rows), skeleton=skel.name, image_wh=(width, 720))


def mirrored(kps: Keypoints2D) -> Keypoints2D:
    xy = kps.xy.copy()
    xy[..., 0] = kps.image_wh[0] - xy[..., 0]
    return Keypoints2D(xy=xy, skeleton=kps.skeleton, image_wh=kps.image_wh)


def test_sagittal_2d_matches_3d_for_a_side_view_and_mirror() -> None:
    frames = [pose(), pose(knee=(45.0, 20.0), hip=(35.0, -5.0))]
    kps = keypoints(frames, halpe=True)
    a3 = joint_angles(motion_of(frames))
    a2 = sagittal_angles_2d(kps)
    assert facing_direction_2d(kps) == 1
    for name in a2:
        np.testing.assert_allclose(a2[name], a3[name], atol=1e-6, err_msg=name)
    m2 = sagittal_angles_2d(mirrored(kps))
    assert facing_direction_2d(mirrored(kps)) == -1
    for name in a2:
        np.testing.assert_allclose(m2[name], a2[name], atol=1e-6, err_msg=name)
    assert not out_of_plane(a3, a2).any()


def test_sagittal_2d_coco_without_feet_and_low_scores() -> None:
    kps = keypoints([pose()] * 2)
    xy = kps.xy.copy()
    xy[1, COCO17.index("left_knee"), 2] = 0.1  # below min_score
    a2 = sagittal_angles_2d(Keypoints2D(xy=xy, skeleton="coco17", image_wh=(1280, 720)))
    assert np.all(np.isnan(a2["left_ankle_dorsiflexion_deg"]))
    assert np.isnan(a2["left_knee_flexion_deg"][1])
    np.testing.assert_allclose(a2["left_knee_flexion_deg"][0], 30.0, atol=1e-6)
    # no head, no feet: the flexed knees alone give the facing
    xy2 = kps.xy.copy()
    xy2[:, :5, 2] = 0.0
    assert facing_direction_2d(mirrored(Keypoints2D(xy2, "coco17", (1280, 720)))) == -1


def test_out_of_plane_when_the_runner_is_turned() -> None:
    frames = [pose(knee=(90.0, 70.0), hip=(50.0, -20.0))] * 3
    a3 = joint_angles(motion_of(frames))
    side_on = sagittal_angles_2d(keypoints(frames))
    turned = sagittal_angles_2d(keypoints(frames, yaw_deg=60.0))
    assert not out_of_plane(a3, side_on).any()
    assert out_of_plane(a3, turned).all()
    assert not out_of_plane(a3, turned, threshold_deg=90.0).any()
    nan2d = {k: np.full(3, np.nan) for k in turned}
    assert not out_of_plane(a3, nan2d).any()


def test_bad_keypoints_raise_input_error() -> None:
    with pytest.raises(InputError, match="shaped"):
        sagittal_angles_2d(Keypoints2D(xy=np.zeros((4, 5, 3)), skeleton="coco17", image_wh=(10, 10)))
    with pytest.raises(InputError, match="skeleton"):
        sagittal_angles_2d(Keypoints2D(xy=np.zeros((4, 17, 3)), skeleton="openpose", image_wh=(10, 10)))
