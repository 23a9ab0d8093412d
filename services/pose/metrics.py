"""Accuracy metrics: 3D (MPJPE, PA-MPJPE) and 2D (PCK, COCO OKS).

Arrays: poses ``(..., J, 3)`` for 3D, keypoints ``(N, J, 2)`` for 2D; NaN predictions count as misses in
PCK and contribute 0 similarity to OKS.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: COCO-17 per-keypoint OKS constants (sigmas), from the COCO keypoint evaluation.
COCO_SIGMAS = np.array(
    [0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
     0.107, 0.107, 0.087, 0.087, 0.089, 0.089]
)  # fmt: skip


def mpjpe(pred: ArrayLike, gt: ArrayLike) -> NDArray[np.float64]:
    """Mean per-joint position error per pose: ``(..., J, 3)`` x2 -> ``(...)`` (same units as the input).
    Root alignment is the caller's job (subtract the pelvis from both)."""
    p, g = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    return np.asarray(np.linalg.norm(p - g, axis=-1).mean(axis=-1), dtype=np.float64)


def pa_mpjpe(pred: ArrayLike, gt: ArrayLike) -> NDArray[np.float64]:
    """MPJPE after Procrustes alignment (rotation, translation and uniform scale of ``pred`` onto ``gt``, no
    reflection), per pose: ``(..., J, 3)`` x2 -> ``(...)``."""
    p, g = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    mu_p, mu_g = p.mean(axis=-2, keepdims=True), g.mean(axis=-2, keepdims=True)
    p0, g0 = p - mu_p, g - mu_g
    norm_p = np.sqrt((p0**2).sum(axis=(-2, -1), keepdims=True))
    norm_g = np.sqrt((g0**2).sum(axis=(-2, -1), keepdims=True))
    p0, g0 = p0 / norm_p, g0 / norm_g
    u, s, vt = np.linalg.svd(np.swapaxes(p0, -1, -2) @ g0)  # H = P^T G, rotation R = U V^T maps p onto g
    sign = np.sign(np.linalg.det(u @ vt))
    vt[..., -1, :] *= sign[..., None]
    s[..., -1] *= sign
    rot = u @ vt
    scale = s.sum(axis=-1)[..., None, None] * norm_g / norm_p
    aligned = scale * ((p - mu_p) @ rot) + mu_g
    return mpjpe(aligned, g)


def pck(pred: ArrayLike, gt: ArrayLike, visible: ArrayLike, norm: ArrayLike, *, alpha: float = 0.2) -> float:
    """Percentage of correct keypoints: a visible keypoint is correct when within ``alpha * norm`` pixels of
    the truth. ``pred``, ``gt`` (N, J, 2); ``visible`` (N, J) bool; ``norm`` (N,) per-person lengths (for
    example the torso diameter or the bounding box's longer side). Returns the fraction over all visible
    keypoints."""
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    vis = np.asarray(visible, bool)
    dist = np.linalg.norm(p - g, axis=-1)
    ok = np.nan_to_num(dist, nan=np.inf) <= alpha * np.asarray(norm, np.float64)[:, None]
    return float(ok[vis].mean())


def oks(pred: ArrayLike, gt: ArrayLike, visible: ArrayLike, area: ArrayLike) -> NDArray[np.float64]:
    """COCO object keypoint similarity per person: mean over labelled keypoints of
    ``exp(-d^2 / (2 * area * (2 sigma)^2))``. ``area`` (N,) is the annotation's segment area."""
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    vis = np.asarray(visible, bool)
    d2 = np.nan_to_num(((p - g) ** 2).sum(axis=-1), nan=np.inf)
    var = (2 * COCO_SIGMAS) ** 2
    e = np.exp(-d2 / (2 * np.asarray(area, np.float64)[:, None] * var[None]))
    return np.asarray((e * vis).sum(axis=1) / np.maximum(vis.sum(axis=1), 1), np.float64)
