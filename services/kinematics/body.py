"""Body size and the pelvis' vertical track of a :class:`~services.kinematics.model.Motion`.

``leg_length`` is the scale the length metrics are expressed in when the Motion is not metric, and the bridge
between image pixels and 3D units; ``pelvis_height`` is the vertical trajectory the vertical oscillation (and
the time-base check) is read from.
"""

from __future__ import annotations

import math

import numpy as np

from services.kinematics.angles import joint
from services.kinematics.model import SIDES, FloatArray, Motion

__all__ = ["leg_length", "leg_length_px", "pelvis_height", "units_per_px"]

# COCO-17 and Halpe-26 share their first 17 indices: hips 11/12, knees 13/14, ankles 15/16
_LEGS_2D = ((11, 13, 15), (12, 14, 16))


def leg_length(motion: Motion) -> float:
    """Median over frames of thigh + shank (hip -> knee -> ankle), mean of both legs, in the Motion's units;
    NaN when no leg is ever complete."""
    lengths = []
    for side in SIDES:
        hip, knee, ankle = (joint(motion, f"{side}_{j}") for j in ("hip", "knee", "ankle"))
        if hip is None or knee is None or ankle is None:
            continue
        leg = np.linalg.norm(knee - hip, axis=1) + np.linalg.norm(ankle - knee, axis=1)
        leg = leg[np.isfinite(leg)]
        if leg.size:
            lengths.append(float(np.median(leg)))
    return float(np.mean(lengths)) if lengths else math.nan


def leg_length_px(motion: Motion) -> float:
    """Median thigh + shank length of both legs in the 2D keypoints (image pixels); NaN without 2D."""
    kps = motion.keypoints2d
    if kps is None:
        return math.nan
    xy = np.asarray(kps.xy, dtype=np.float64)[..., :2]
    legs = [
        np.linalg.norm(xy[:, h] - xy[:, k], axis=-1) + np.linalg.norm(xy[:, k] - xy[:, a], axis=-1)
        for h, k, a in _LEGS_2D
    ]
    px = np.concatenate(legs)
    px = px[np.isfinite(px)]
    return float(np.median(px)) if px.size else math.nan


def units_per_px(motion: Motion) -> float:
    """3D units per image pixel: the legs' median 3D length over their median 2D length (NaN without 2D).
    The legs swing in the sagittal plane, so in a side view their image length is their true length."""
    return leg_length(motion) / leg_length_px(motion)


def pelvis_height(motion: Motion, root: FloatArray, up: FloatArray) -> FloatArray:
    """Pelvis height along ``up`` per frame ``(T,)``, in the Motion's units.

    ``root`` is the pelvis position ``(T, 3)``. Root-relative 3D (what video lifters output: the pelvis never
    moves) carries no height, so for it the height comes from the 2D hip midpoint in the image (static camera
    assumed, image y down), converted to 3D units by :func:`units_per_px`; all NaN without 2D."""
    height = np.asarray(root @ up, dtype=np.float64)
    spread = np.nanmax(height) - np.nanmin(height) if np.isfinite(height).any() else 0.0
    if spread > 1e-6 * leg_length(motion):
        return height
    kps = motion.keypoints2d
    scale = units_per_px(motion)
    if kps is None or not math.isfinite(scale):
        return np.full_like(height, np.nan)
    xy = np.asarray(kps.xy, dtype=np.float64)
    return np.asarray(-(xy[:, 11, 1] + xy[:, 12, 1]) / 2.0 * scale, dtype=np.float64)
