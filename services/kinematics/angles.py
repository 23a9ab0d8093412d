"""Joint angles of a runner: 3D angles of a :class:`~services.kinematics.model.Motion` and sagittal angles
from 2D image keypoints.

Body axes
---------
Every angle that needs a direction (hip flexion, trunk lean, pelvic drop, the sagittal 2D angles) uses the
runner's own axes, never the frame's, so the values do not depend on where the runner is heading or on
how the camera or lab frame is oriented (:func:`body_axes`):

* ``up``: the Motion's vertical unit vector (camera frames: ``(0, -1, 0)``; the RBDS lab frame:
  ``(0, 1, 0)``).
* ``right``: ``right_hip - left_hip`` made horizontal and unit length (the shoulders stand in for frames
  without both hips), smoothed over time (see :func:`body_axes`).
* ``forward = up x right`` in a right-handed frame (camera: x right, y down, z away; lab: +X forward,
  +Y up, +Z right). A left-handed frame would make it point backwards; that is detected from the
  anatomy (a flexed knee points forward; toes are ahead of heels) and ``forward`` is then negated.

NaN policy
----------
A joint coordinate that is not finite marks the joint missing in that frame. An angle is NaN in every
frame where one of the joints it needs is missing (or two of them coincide), and a whole series is NaN
when the Motion lacks a joint it needs. No function here emits a ``RuntimeWarning`` for NaN input.
Invalid Motions (wrong shapes, times not increasing, every joint NaN) raise
:class:`services.errors.InputError`.

Angle conventions (degrees)
---------------------------
``left/right_knee_flexion_deg``
    ``180 - angle(hip, knee, ankle)`` in 3D: 0 = straight leg, positive = flexed (never negative).
``left/right_hip_flexion_deg``
    Thigh (hip -> knee) relative to the trunk line (thorax -> pelvis, continued downwards), both projected
    on the sagittal plane spanned by ``forward`` and ``up``: positive = flexion (knee ahead of the trunk
    line), negative = extension. NaN without a trunk (thorax, neck or both shoulders).
``left/right_thigh_angle_deg``
    Thigh relative to the downward vertical in the sagittal plane, positive = knee ahead of the hip
    (available without a trunk, e.g. from lower-body motion capture).
``left/right_tibia_angle_deg``
    Shank (knee -> ankle) relative to the downward vertical in the sagittal plane, positive = the ankle ahead
    of the knee (the shank inclined forward at its lower end, as at a reaching foot strike), 0 = vertical.
``left/right_foot_angle_deg``
    Foot (heel -> toe) relative to the forward horizontal in the sagittal plane, positive = toes up
    (dorsiflexed foot, as at a rearfoot strike). NaN without heel and toe. No static-trial offset is removed
    here (:attr:`~services.kinematics.model.Motion.static_foot_angle_deg` carries it where known).
``left/right_ankle_dorsiflexion_deg``
    ``90 - angle(knee - ankle, toe - heel)`` in 3D: 0 = foot (heel -> toe) perpendicular to the shank,
    positive = dorsiflexion. NaN without heel and toe. No static-trial offset is removed, so a marker
    based foot line gives values offset by the tilt of that line against the sole.
``left/right_elbow_flexion_deg``
    ``180 - angle(shoulder, elbow, wrist)``.
``trunk_lean_deg``
    Pelvis -> thorax (pelvis: the ``pelvis`` joint or mid-hips; thorax: ``thorax``, else ``neck``, else
    mid-shoulders) relative to the upward vertical in the sagittal plane, positive = leaning forward.
``pelvic_drop_deg``
    The hip line (left hip -> right hip) relative to the horizontal in the frontal plane spanned by
    ``right`` and ``up``: positive = the right hip is higher than the left, i.e. the *left* side has
    dropped (contralateral drop during right stance), negative = the right side has dropped. Needs a view
    that sees the pelvis from the front or back; from a side-view video it is unreliable (the lifted
    depth of the hips is a guess) and :func:`services.kinematics.metrics.analyze_motion` flags it.

All of these are unchanged by rotating, translating or uniformly scaling the whole skeleton together with
``up``; mirroring the runner (with left/right names swapped) swaps the sides of every flexion angle and
negates ``pelvic_drop_deg``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d

from services.errors import FrameRateError, InputError, NoValidDataError, ShapeError
from services.kinematics.model import SIDES, FloatArray, Keypoints2D, Motion
from services.pose.skeletons import SKELETONS

__all__ = [
    "ANGLE_NAMES",
    "SAGITTAL_2D_NAMES",
    "body_axes",
    "facing_direction_2d",
    "joint",
    "joint_angles",
    "out_of_plane",
    "root_position",
    "sagittal_angles_2d",
    "validate_motion",
]

#: names of the series returned by :func:`joint_angles`
ANGLE_NAMES: tuple[str, ...] = (
    *(f"{s}_{a}_deg" for a in ("knee_flexion", "hip_flexion", "thigh_angle") for s in SIDES),
    *(f"{s}_{a}_deg" for a in ("tibia_angle", "foot_angle") for s in SIDES),
    *(f"{s}_ankle_dorsiflexion_deg" for s in SIDES),
    *(f"{s}_elbow_flexion_deg" for s in SIDES),
    "trunk_lean_deg",
    "pelvic_drop_deg",
)

#: names of the series returned by :func:`sagittal_angles_2d` (a subset of :data:`ANGLE_NAMES`)
SAGITTAL_2D_NAMES: tuple[str, ...] = (
    *(f"{s}_{a}_deg" for a in ("knee_flexion", "hip_flexion", "thigh_angle") for s in SIDES),
    *(f"{s}_{a}_deg" for a in ("tibia_angle", "foot_angle", "ankle_dorsiflexion") for s in SIDES),
    "trunk_lean_deg",
)

#: Gaussian time constant (seconds) of the smoothing of the facing direction: far below the stride
#: frequency (~1.4 Hz, attenuated to < 1e-4), so the pelvis' transverse rotation does not leak into it.
DEFAULT_AXES_SIGMA_S = 0.5

# the sagittal 2D knee/hip angles that out_of_plane compares with 3D
_OUT_OF_PLANE_KEYS = tuple(f"{s}_{a}_deg" for s in SIDES for a in ("knee_flexion", "hip_flexion"))


# --------------------------------------------------------------------------------------------------------
# validation and joint access


def validate_motion(motion: Motion) -> None:
    """Raise :class:`InputError` unless ``motion`` is usable: ``t`` shaped ``(T,)`` with ``T >= 2``,
    finite and strictly increasing (so the frame rate is > 0); ``up`` a finite non-zero 3-vector; every
    joint ``(T, 3)`` and at least one joint finite somewhere; confidences ``(T,)``; 2D keypoints
    ``(T, K, 3)`` of a known skeleton with ``swapped`` ``(T,)``."""
    t = np.asarray(motion.t)
    if t.ndim != 1 or t.size < 2:
        raise ShapeError(f"motion.t must be shaped (T,) with at least 2 frames, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.number) or not np.all(np.isfinite(t)):
        raise FrameRateError("motion.t must hold finite times in seconds")
    if not np.all(np.diff(t) > 0):
        raise FrameRateError("motion.t must be strictly increasing (a frame rate > 0 is needed)")
    n = t.size
    up = np.asarray(motion.up, dtype=np.float64)
    if up.shape != (3,) or not np.all(np.isfinite(up)) or not np.linalg.norm(up) > 0:
        raise ShapeError(f"motion.up must be a finite non-zero 3-vector, got {motion.up!r}")
    if not motion.joints:
        raise ShapeError("motion has no joints")
    any_finite = False
    for name, arr in motion.joints.items():
        a = np.asarray(arr)
        if a.shape != (n, 3):
            raise ShapeError(f"joint {name!r} must be shaped ({n}, 3) to match motion.t, got {a.shape}")
        if not np.issubdtype(a.dtype, np.number):
            raise ShapeError(f"joint {name!r} must be numeric")
        any_finite = any_finite or bool(np.any(np.all(np.isfinite(a), axis=1)))
    if not any_finite:
        raise NoValidDataError("every joint is NaN in every frame: nothing to analyse")
    for name, arr in motion.confidence.items():
        if np.asarray(arr).shape != (n,):
            raise ShapeError(f"confidence of {name!r} must be shaped ({n},), got {np.asarray(arr).shape}")
    if motion.keypoints2d is not None:
        _validate_keypoints(motion.keypoints2d, n)


def _validate_keypoints(kps: Keypoints2D, n: int | None = None) -> None:
    skeleton = SKELETONS.get(kps.skeleton)
    if skeleton is None:
        raise InputError(f"unknown 2D skeleton {kps.skeleton!r}; expected one of {sorted(SKELETONS)}")
    xy = np.asarray(kps.xy)
    frames = xy.shape[0] if xy.ndim == 3 else -1
    if xy.ndim != 3 or xy.shape[1:] != (skeleton.num_joints, 3) or (n is not None and frames != n):
        want = f"({n if n is not None else 'T'}, {skeleton.num_joints}, 3)"
        raise ShapeError(f"2D keypoints must be shaped {want} for {kps.skeleton}, got {xy.shape}")
    shapes = ((frames,), (frames, skeleton.num_joints))
    if kps.swapped is not None and np.asarray(kps.swapped).shape not in shapes:
        raise ShapeError(
            f"keypoints2d.swapped must be shaped ({frames},) or ({frames}, {skeleton.num_joints}), "
            f"got {np.shape(kps.swapped)}"
        )


def joint(motion: Motion, name: str) -> FloatArray | None:
    """``(T, 3)`` float64 copy of a joint with rows that are not all finite set to NaN; None when the
    Motion lacks the joint or it is missing in every frame."""
    arr = motion.joints.get(name)
    if arr is None:
        return None
    out = np.array(arr, dtype=np.float64, copy=True)
    bad = ~np.all(np.isfinite(out), axis=1)
    if np.all(bad):
        return None
    out[bad] = np.nan
    return out


def _mid(a: FloatArray | None, b: FloatArray | None) -> FloatArray | None:
    if a is None or b is None:
        return None
    return (a + b) / 2.0


def root_position(motion: Motion) -> FloatArray | None:
    """The pelvis: the ``pelvis`` joint where present, else the midpoint of the hips (per frame)."""
    pelvis = joint(motion, "pelvis")
    hips = _mid(joint(motion, "left_hip"), joint(motion, "right_hip"))
    if pelvis is None:
        return hips
    if hips is not None:
        pelvis = np.where(np.isfinite(pelvis), pelvis, hips)
    return pelvis


def _trunk_top(motion: Motion) -> FloatArray | None:
    top: FloatArray | None = None
    for cand in (
        joint(motion, "thorax"),
        joint(motion, "neck"),
        _mid(joint(motion, "left_shoulder"), joint(motion, "right_shoulder")),
    ):
        if cand is None:
            continue
        top = cand if top is None else np.where(np.isfinite(top), top, cand)
    return top


# --------------------------------------------------------------------------------------------------------
# vector helpers (NaN in, NaN out, no warnings)


def _norm(v: FloatArray) -> FloatArray:
    return np.asarray(np.sqrt(np.sum(v * v, axis=-1)), dtype=np.float64)


def _unit(v: FloatArray) -> FloatArray:
    n = _norm(v)
    ok = n > 0
    out = np.full_like(v, np.nan)
    out[ok] = v[ok] / n[ok, None]
    return out


def _angle_between(a: FloatArray, b: FloatArray) -> FloatArray:
    """Unsigned angle in degrees between vectors (..., 3), via atan2(|a x b|, a . b); NaN when either
    vector is zero or NaN."""
    cross = _norm(np.cross(a, b))
    dot = np.sum(a * b, axis=-1)
    ang = np.degrees(np.arctan2(cross, dot))
    degenerate = ~((_norm(a) > 0) & (_norm(b) > 0))
    return np.asarray(np.where(degenerate, np.nan, ang), dtype=np.float64)


def _dot(a: FloatArray, b: FloatArray) -> FloatArray:
    return np.asarray(np.sum(a * b, axis=-1), dtype=np.float64)


def _wrap(deg: FloatArray) -> FloatArray:
    """Wrap to [-180, 180) (NaN stays NaN)."""
    with np.errstate(invalid="ignore"):
        return np.asarray((deg + 180.0) % 360.0 - 180.0, dtype=np.float64)


def _from_down(v: FloatArray, forward: FloatArray, up: FloatArray) -> FloatArray:
    """Sagittal angle of ``v`` from the downward vertical, positive towards ``forward`` (degrees)."""
    return np.asarray(np.degrees(np.arctan2(_dot(v, forward), -_dot(v, up))), dtype=np.float64)


def _flexion(proximal: FloatArray, middle: FloatArray, distal: FloatArray) -> FloatArray:
    return 180.0 - _angle_between(proximal - middle, distal - middle)


# --------------------------------------------------------------------------------------------------------
# body axes


def _smooth_directions(units: FloatArray, fs: float, sigma_s: float) -> FloatArray:
    """NaN-aware Gaussian smoothing of unit vectors (T, 3) over time, renormalised. Frames without
    support nearby (or where opposite directions cancel) get the clip's mean direction."""
    valid = np.all(np.isfinite(units), axis=1)
    if not np.any(valid):
        raise InputError(
            "cannot tell which way the runner faces: left and right hips (or shoulders) are missing "
            "or coincide in every frame"
        )
    filled = np.where(valid[:, None], units, 0.0)
    mean = filled[valid].mean(axis=0)
    mean_norm = float(np.linalg.norm(mean))
    fallback = mean / mean_norm if mean_norm > 1e-6 else None
    sigma = sigma_s * fs
    if sigma > 0:
        weight = gaussian_filter1d(valid.astype(np.float64), sigma, mode="constant", cval=0.0)
        summed = gaussian_filter1d(filled, sigma, axis=0, mode="constant", cval=0.0)
    else:
        weight = valid.astype(np.float64)
        summed = filled
    norm = _norm(summed)
    good = (weight > 1e-3) & (norm > 0.2 * np.maximum(weight, 1e-12))
    out = np.empty_like(units)
    out[good] = summed[good] / norm[good, None]
    bad = ~good
    if np.any(bad):
        if fallback is not None:
            out[bad] = fallback
        else:  # no consistent mean direction: keep the raw direction, else the nearest good frame
            out[bad] = units[bad]
            still = ~np.all(np.isfinite(out), axis=1)
            if np.any(still):
                ok_idx = np.flatnonzero(~still)
                nearest = ok_idx[np.clip(np.searchsorted(ok_idx, np.flatnonzero(still)), 0, ok_idx.size - 1)]
                out[still] = out[nearest]
    return out


def _facing_votes(motion: Motion, forward: FloatArray) -> int:
    """Anatomical evidence that ``forward`` points where the runner faces (> 0) or backwards (< 0):
    a flexed knee lies in front of the hip-ankle line; the toes are ahead of the heels."""
    votes = 0
    offsets: list[FloatArray] = []
    feet: list[FloatArray] = []
    for side in SIDES:
        hip, knee, ankle = (joint(motion, f"{side}_{j}") for j in ("hip", "knee", "ankle"))
        if hip is not None and knee is not None and ankle is not None:
            axis = _unit(hip - ankle)
            rel = knee - (hip + ankle) / 2.0
            perp = rel - _dot(rel, axis)[:, None] * axis
            length = _norm(hip - ankle)
            with np.errstate(invalid="ignore", divide="ignore"):
                off = _dot(perp, forward) / length
            flexed = _flexion(hip, knee, ankle) > 20.0
            sel = flexed & np.isfinite(off)
            offsets.append(off[sel])
        heel, toe = joint(motion, f"{side}_heel"), joint(motion, f"{side}_toe")
        if heel is not None and toe is not None:
            f = _dot(_unit(toe - heel), forward)
            feet.append(f[np.isfinite(f)])
    knee_vals = np.concatenate(offsets) if offsets else np.empty(0)
    if knee_vals.size and abs(float(np.median(knee_vals))) > 0.02:
        votes += int(np.sign(np.median(knee_vals)))
    foot_vals = np.concatenate(feet) if feet else np.empty(0)
    if foot_vals.size and abs(float(np.median(foot_vals))) > 0.2:
        votes += int(np.sign(np.median(foot_vals)))
    return votes


def body_axes(
    motion: Motion, *, sigma_s: float = DEFAULT_AXES_SIGMA_S
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The runner's axes per frame.

    Parameters
    ----------
    motion:
        The Motion (see the module docstring for the frame conventions).
    sigma_s:
        Time constant (seconds) of the Gaussian smoothing of the lateral direction; 0 disables it.

    Returns
    -------
    forward:
        ``(T, 3)`` horizontal unit vectors, the direction the runner faces.
    up:
        ``(3,)`` the Motion's ``up``, normalised.
    right:
        ``(T, 3)`` horizontal unit vectors towards the runner's right.

    ``right`` is ``right_hip - left_hip`` (where the hips are missing: ``right_shoulder -
    left_shoulder``) minus its vertical component, normalised, then smoothed by a NaN-aware Gaussian of
    ``sigma_s`` so that the pelvis' rotation within each stride (about ±10° in running) averages out
    while slow turns are followed; frames with no lateral information nearby take the clip's mean.
    ``forward = up x right``; if the frame turns out left-handed (a flexed knee or the toes point along
    ``-forward`` in most frames) ``forward`` is negated. Raises :class:`InputError` when neither hips nor
    shoulders are ever available.
    """
    validate_motion(motion)
    up = np.asarray(motion.up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    n = np.asarray(motion.t).size
    lateral = np.full((n, 3), np.nan)
    for left, right in (("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")):
        a, b = joint(motion, left), joint(motion, right)
        if a is None or b is None:
            continue
        d = b - a
        missing = ~np.all(np.isfinite(lateral), axis=1)
        lateral[missing] = d[missing]
    horizontal = lateral - (lateral @ up)[:, None] * up
    right_axis = _smooth_directions(_unit(horizontal), motion.fs, sigma_s)
    forward = np.cross(up, right_axis)
    if _facing_votes(motion, forward) < 0:
        forward = -forward
    return forward, up, right_axis


# --------------------------------------------------------------------------------------------------------
# 3D angles


def joint_angles(motion: Motion, *, sigma_s: float = DEFAULT_AXES_SIGMA_S) -> dict[str, FloatArray]:
    """Joint angle series of a Motion, in degrees, each ``(T,)``; names in :data:`ANGLE_NAMES`,
    conventions in the module docstring. ``sigma_s`` is passed to :func:`body_axes`. A series whose
    joints the Motion lacks is all NaN."""
    forward, up, right = body_axes(motion, sigma_s=sigma_s)
    n = forward.shape[0]
    nan = np.full(n, np.nan)
    out: dict[str, FloatArray] = {}
    top = _trunk_top(motion)
    root = root_position(motion)
    trunk_down = None if top is None or root is None else root - top
    for side in SIDES:
        hip, knee, ankle = (joint(motion, f"{side}_{j}") for j in ("hip", "knee", "ankle"))
        heel, toe = joint(motion, f"{side}_heel"), joint(motion, f"{side}_toe")
        shoulder, elbow, wrist = (joint(motion, f"{side}_{j}") for j in ("shoulder", "elbow", "wrist"))
        out[f"{side}_knee_flexion_deg"] = (
            _flexion(hip, knee, ankle) if hip is not None and knee is not None and ankle is not None else nan
        )
        if hip is not None and knee is not None:
            thigh = _from_down(knee - hip, forward, up)
            out[f"{side}_thigh_angle_deg"] = thigh
            out[f"{side}_hip_flexion_deg"] = (
                _wrap(thigh - _from_down(trunk_down, forward, up)) if trunk_down is not None else nan
            )
        else:
            out[f"{side}_thigh_angle_deg"] = nan
            out[f"{side}_hip_flexion_deg"] = nan
        out[f"{side}_tibia_angle_deg"] = (
            _from_down(ankle - knee, forward, up) if knee is not None and ankle is not None else nan
        )
        if heel is not None and toe is not None:
            foot = toe - heel
            out[f"{side}_foot_angle_deg"] = np.degrees(np.arctan2(_dot(foot, up), _dot(foot, forward)))
        else:
            out[f"{side}_foot_angle_deg"] = nan
        if knee is not None and ankle is not None and heel is not None and toe is not None:
            out[f"{side}_ankle_dorsiflexion_deg"] = 90.0 - _angle_between(knee - ankle, toe - heel)
        else:
            out[f"{side}_ankle_dorsiflexion_deg"] = nan
        out[f"{side}_elbow_flexion_deg"] = (
            _flexion(shoulder, elbow, wrist)
            if shoulder is not None and elbow is not None and wrist is not None
            else nan
        )
    if top is not None and root is not None:
        trunk = top - root
        out["trunk_lean_deg"] = np.degrees(np.arctan2(_dot(trunk, forward), _dot(trunk, up)))
    else:
        out["trunk_lean_deg"] = nan
    lhip, rhip = joint(motion, "left_hip"), joint(motion, "right_hip")
    if lhip is not None and rhip is not None:
        d = rhip - lhip
        out["pelvic_drop_deg"] = np.degrees(np.arctan2(_dot(d, up), _dot(d, right)))
    else:
        out["pelvic_drop_deg"] = nan
    return {name: np.array(out[name], dtype=np.float64) for name in ANGLE_NAMES}


# --------------------------------------------------------------------------------------------------------
# 2D sagittal angles


def _points_2d(kps: Keypoints2D, min_score: float) -> dict[str, FloatArray]:
    """name -> (T, 2) image xy with NaN where missing (non-finite or score < min_score)."""
    skeleton = SKELETONS[kps.skeleton]
    xy = np.asarray(kps.xy, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.all(np.isfinite(xy), axis=-1) & (xy[..., 2] >= min_score)
    pts = np.where(valid[..., None], xy[..., :2], np.nan)
    return {name: pts[:, i] for i, name in enumerate(skeleton.joints)}


def _nanmedian(x: FloatArray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else float("nan")


def _mean_present(*pts: FloatArray) -> FloatArray:
    """Per-frame mean of the points present in that frame (NaN where none is)."""
    stack = np.stack(pts)
    count = np.sum(np.all(np.isfinite(stack), axis=-1), axis=0)
    total = np.sum(np.where(np.isfinite(stack), stack, 0.0), axis=0)
    out = np.full(stack.shape[1:], np.nan)
    ok = count > 0
    out[ok] = total[ok] / count[ok, None]
    return out


def _toe_2d(p: dict[str, FloatArray], side: str) -> FloatArray:
    return _mean_present(p[f"{side}_big_toe"], p[f"{side}_small_toe"])


def facing_direction_2d(kps: Keypoints2D, *, min_score: float = 0.3) -> int:
    """Which way the runner faces in the image over the whole clip: +1 = towards +x (moving left to
    right), -1 = towards -x.

    Votes, each the sign of a clip median where it is clear (relative to the runner's size S, the median
    hip-to-ankle distance): (1) flexed knees (2D angle > 20°) lie in front of the hip-ankle line
    (> 0.02 S); (2) the toes are ahead of the heels (Halpe-26 only, > 0.02 S); (3) the nose is ahead of
    the ears (> 0.01 S); (4) the hips travel more than S across the image (overground). The majority
    wins; a tie goes to the first cue that voted, in that order; no cue at all gives +1.
    """
    _validate_keypoints(kps)
    p = _points_2d(kps, min_score)
    mid_hip = _mean_present(p["left_hip"], p["right_hip"])
    sizes = []
    for side in SIDES:
        sizes.append(np.hypot(*(p[f"{side}_hip"] - p[f"{side}_ankle"]).T))
    scale = _nanmedian(np.concatenate(sizes))
    if not (np.isfinite(scale) and scale > 0):
        return 1
    cues: list[int] = []
    # (1) knees
    offs = []
    for side in SIDES:
        hip, knee, ankle = p[f"{side}_hip"], p[f"{side}_knee"], p[f"{side}_ankle"]
        axis = _unit(ankle - hip)
        rel = knee - hip
        perp_x = rel[:, 0] - _dot(rel, axis) * axis[:, 0]
        a = np.degrees(np.arctan2(np.abs(np.cross(hip - knee, ankle - knee)), _dot(hip - knee, ankle - knee)))
        flexed = (180.0 - a) > 20.0
        offs.append(perp_x[flexed])
    m = _nanmedian(np.concatenate(offs))
    cues.append(int(np.sign(m)) if np.isfinite(m) and abs(m) > 0.02 * scale else 0)
    # (2) feet
    if kps.skeleton == "halpe26":
        d = np.concatenate([_toe_2d(p, s)[:, 0] - p[f"{s}_heel"][:, 0] for s in SIDES])
        m = _nanmedian(d)
        cues.append(int(np.sign(m)) if np.isfinite(m) and abs(m) > 0.02 * scale else 0)
    # (3) head
    ears = _mean_present(p["left_ear"], p["right_ear"])
    m = _nanmedian(p["nose"][:, 0] - ears[:, 0])
    cues.append(int(np.sign(m)) if np.isfinite(m) and abs(m) > 0.01 * scale else 0)
    # (4) travel
    xs = mid_hip[:, 0][np.isfinite(mid_hip[:, 0])]
    if xs.size >= 2:
        k = max(1, xs.size // 10)
        travel = float(np.median(xs[-k:]) - np.median(xs[:k]))
        cues.append(int(np.sign(travel)) if abs(travel) > scale else 0)
    total = sum(cues)
    if total != 0:
        return 1 if total > 0 else -1
    for c in cues:
        if c != 0:
            return c
    return 1


def sagittal_angles_2d(
    kps: Keypoints2D, *, min_score: float = 0.3, facing: int | None = None
) -> dict[str, FloatArray]:
    """Sagittal joint angles from 2D image keypoints (a side view), in degrees, each ``(T,)``.

    Parameters
    ----------
    kps:
        ``(T, K, 3)`` keypoints (x, y, score) in pixels, y down, COCO-17 or Halpe-26 names
        (:mod:`services.pose.skeletons`).
    min_score:
        Keypoints scoring below this (or not finite) count as missing.
    facing:
        +1 if the runner faces +x (moves left to right), -1 if -x; by default
        :func:`facing_direction_2d` decides once for the whole clip.

    Returns
    -------
    Series named as in :data:`SAGITTAL_2D_NAMES`, with the 3D conventions of :func:`joint_angles`
    measured in the image plane, with "forward" = ``facing`` along x and "up" = -y:
    thigh and tibia angles from the image vertical, knee flexion = thigh angle - tibia angle (signed:
    negative = hyperextended), hip flexion = thigh relative to the trunk line (mid-shoulders -> mid-hips),
    foot angle and ankle dorsiflexion from heel -> mean of the toes (Halpe-26; NaN for COCO-17), trunk lean
    of mid-hips -> mid-shoulders from the vertical.
    Because the facing is detected, a runner moving right to left (or the mirrored image, x -> W - x)
    gives the same values as one moving left to right. NaN where a keypoint is missing.
    """
    _validate_keypoints(kps)
    s = float(facing) if facing is not None else float(facing_direction_2d(kps, min_score=min_score))
    if s not in (1.0, -1.0):
        raise ValueError(f"facing must be +1 or -1, got {facing!r}")
    p = _points_2d(kps, min_score)
    n = np.asarray(kps.xy).shape[0]
    nan = np.full(n, np.nan)

    def from_down(v: FloatArray) -> FloatArray:  # angle from the downward vertical, + forward
        return np.asarray(np.degrees(np.arctan2(s * v[:, 0], v[:, 1])), dtype=np.float64)

    def from_forward(v: FloatArray) -> FloatArray:  # angle from forward, + up
        return np.asarray(np.degrees(np.arctan2(-v[:, 1], s * v[:, 0])), dtype=np.float64)

    mid_hip = _mid(p["left_hip"], p["right_hip"])
    mid_sh = _mid(p["left_shoulder"], p["right_shoulder"])
    assert mid_hip is not None and mid_sh is not None
    out: dict[str, FloatArray] = {}
    for side in SIDES:
        hip, knee, ankle = p[f"{side}_hip"], p[f"{side}_knee"], p[f"{side}_ankle"]
        thigh = from_down(knee - hip)
        shank = from_down(ankle - knee)
        out[f"{side}_thigh_angle_deg"] = thigh
        out[f"{side}_tibia_angle_deg"] = shank
        out[f"{side}_knee_flexion_deg"] = _wrap(thigh - shank)
        out[f"{side}_hip_flexion_deg"] = _wrap(thigh - from_down(mid_hip - mid_sh))
        if kps.skeleton == "halpe26":
            foot = _toe_2d(p, side) - p[f"{side}_heel"]
            out[f"{side}_foot_angle_deg"] = from_forward(foot)
            out[f"{side}_ankle_dorsiflexion_deg"] = _wrap(
                90.0 - (from_forward(knee - ankle) - from_forward(foot))
            )
        else:
            out[f"{side}_foot_angle_deg"] = nan
            out[f"{side}_ankle_dorsiflexion_deg"] = nan
    trunk = mid_sh - mid_hip
    out["trunk_lean_deg"] = np.degrees(np.arctan2(s * trunk[:, 0], -trunk[:, 1]))
    return {name: np.array(out[name], dtype=np.float64) for name in SAGITTAL_2D_NAMES}


def out_of_plane(
    angles3d: Mapping[str, NDArray[np.float64]],
    angles2d: Mapping[str, NDArray[np.float64]],
    *,
    threshold_deg: float = 15.0,
) -> NDArray[np.bool_]:
    """``(T,)`` True in frames where a sagittal 2D knee or hip flexion angle differs from its 3D value by
    more than ``threshold_deg`` (the runner is not side-on, so the image foreshortens the angles).

    Compares ``left/right_knee_flexion_deg`` and ``left/right_hip_flexion_deg`` where both dicts have
    them; frames where no pair is finite are False (nothing to compare).
    """
    if not (np.isfinite(threshold_deg) and threshold_deg >= 0):
        raise ValueError(f"threshold_deg must be finite and >= 0, got {threshold_deg}")
    flags: NDArray[np.bool_] | None = None
    for key in _OUT_OF_PLANE_KEYS:
        if key not in angles3d or key not in angles2d:
            continue
        a = np.asarray(angles3d[key], dtype=np.float64)
        b = np.asarray(angles2d[key], dtype=np.float64)
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"{key}: 3D shape {a.shape} and 2D shape {b.shape} must be the same (T,)")
        diff = np.abs(_wrap(a - b))
        bad = np.isfinite(diff) & (np.nan_to_num(diff, nan=0.0) > threshold_deg)
        flags = bad if flags is None else flags | bad
    if flags is None:
        some = next(iter(angles3d.values()), None)
        return np.zeros(0 if some is None else np.asarray(some).shape[0], dtype=np.bool_)
    return flags
