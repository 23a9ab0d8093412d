"""2D -> 3D lifting: keypoint-layout conversion, input normalisation and model codecs.

The codecs are pure numpy. The model runtime is injected as a :data:`Runner`, a plain callable that maps one
model input batch to the model output batch, so the same codec runs with onnxruntime in-process or through
Triton. Two codecs implement :class:`LifterCodec`:

* :class:`SemGCNCodec` - single-frame SemGCN (16 H36M joints, metres, average H36M subject scale).
* :class:`MotionBERTCodec` - MotionBERT / DSTformer on windows of up to 243 frames, blended with overlapping
  tapered windows (output in MotionBERT's normalised units; use :func:`scale_to_height` for metres).

Conventions (see ``shared/reference/motionbert/README.md`` and ``shared/models/README.md``): H36M-17 joint
order (:data:`services.pose.skeletons.H36M17`); 2D inputs are ``(T, 17, 3)`` arrays of (x, y, score) in
image pixels with NaN where a joint is missing; 3D outputs are ``(T, 17, 3)`` root-relative (pelvis = 0) in
camera axes (x right, y down, z away from the camera); frames whose input is unusable are NaN rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from services.errors import InferenceError, InputError
from services.pose.skeletons import H36M17, Skeleton

__all__ = [
    "HEIGHT_PER_CHAIN",
    "MOTIONBERT_WINDOW",
    "NOSE_FORWARD_M",
    "SEMGCN_JOINTS",
    "LifterCodec",
    "MotionBERTCodec",
    "Runner",
    "SemGCNCodec",
    "blend_weights",
    "coco17_to_h36m17",
    "estimate_neck_nose",
    "flip_h36m",
    "halpe26_to_h36m17",
    "motionbert_crop_scale",
    "motionbert_pixel_normalize",
    "normalize_screen",
    "scale_to_height",
    "standing_height",
    "window_starts",
]

Runner = Callable[[NDArray[np.float32]], NDArray[np.float32]]
"""Model runtime: one input batch -> the output batch (SemGCN [N,16,2] -> [N,16,3];
MotionBERT [N,T,17,3] -> [N,T,17,3] with T <= 243)."""

NUM_JOINTS = 17
PELVIS, R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE = 0, 1, 2, 3, 4, 5, 6
SPINE, THORAX, NECK_NOSE, HEAD = 7, 8, 9, 10
L_SHOULDER, R_SHOULDER = 11, 14

#: H36M-17 indices of the 16 joints SemGCN uses (H36M-17 without 9 "neck/nose"), in SemGCN's order.
SEMGCN_JOINTS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16)

#: Longest clip MotionBERT accepts (``maxlen`` of the official configs).
MOTIONBERT_WINDOW = 243

#: Forward offset (metres) of H36M joint 9 ("neck/nose") from the thorax-head midpoint, perpendicular to the
#: thorax->head axis, towards the face. Mean over the 4 H36M sample frames (0.047-0.094 m, mean 0.069 m).
NOSE_FORWARD_M = 0.07

#: Standing height / length of the head-thorax-spine-pelvis-hip-knee-ankle bone chain (legs averaged).
#: Anthropometric fractions of stature H (Winter, "Biomechanics and Motor Control of Human Movement"):
#: shank 0.246 H, thigh 0.245 H, hip joint -> shoulder level 0.288 H; from the H36M ground truth (4 sample
#: frames): pelvis -> hip 0.134 m ~ 0.079 H and thorax -> head joint (upright head) ~0.20 m ~ 0.12 H (the H36M
#: head joint sits near eye level). Chain ~ 0.978 H, so H ~ 1.022 x chain: the heel/sole below the ankle
#: (0.039 H) and the crown above the head joint (~0.06 H) are nearly offset by the mostly lateral pelvis->hip
#: segment, which the chain counts in full.
HEIGHT_PER_CHAIN = 1.0 / 0.978

_FLIP_PERM = H36M17.flip_permutation()


# ----------------------------------------------------------------------------------------------------
# Layout conversion
# ----------------------------------------------------------------------------------------------------


def _as_keypoints(kps: ArrayLike, num_joints: int) -> NDArray[np.float64]:
    arr = np.asarray(kps, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-2] != num_joints or arr.shape[-1] not in (2, 3):
        raise ValueError(f"expected keypoints shaped (..., {num_joints}, 2|3), got {arr.shape}")
    return arr


def _present(kps: NDArray[np.float64]) -> NDArray[np.bool_]:
    """A joint is present when its x and y are finite (the score is not consulted)."""
    return np.asarray(np.all(np.isfinite(kps[..., :2]), axis=-1), dtype=np.bool_)


def _midpoint_min_score(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Midpoint of two joints; score = min of the two scores; NaN (all channels) when either is missing."""
    out = np.empty_like(a)
    out[..., :2] = (a[..., :2] + b[..., :2]) / 2.0
    if a.shape[-1] == 3:
        out[..., 2] = np.minimum(a[..., 2], b[..., 2])
    missing = ~(_present(a) & _present(b))
    out[missing] = np.nan
    return out


def coco17_to_h36m17(kps: ArrayLike) -> NDArray[np.float64]:
    """COCO-17 ``(..., 17, C)`` -> H36M-17 ``(..., 17, C)``, C = 2 (x, y) or 3 (x, y, score).

    Copied joints keep their channels. Derived joints (the usual substitute, MotionBERT README):

    * pelvis = mid-hips, thorax = mid-shoulders, spine = mid(pelvis, thorax): score = **min** of the sources
      (a midpoint is only as reliable as its weakest end); NaN (every channel) when a source is missing.
    * neck_nose = nose.
    * head = mean of whichever of the eyes and ears are present (finite x, y): score = **mean** of the
      scores of the joints used; NaN when none is present. (An approximation: COCO has no head-top point.)
    """
    src = _as_keypoints(kps, 17)
    out = np.full(src.shape, np.nan, dtype=np.float64)
    for h36m, coco in (
        (R_HIP, 12), (R_KNEE, 14), (R_ANKLE, 16), (L_HIP, 11), (L_KNEE, 13), (L_ANKLE, 15),
        (NECK_NOSE, 0), (11, 5), (12, 7), (13, 9), (14, 6), (15, 8), (16, 10),
    ):  # fmt: skip
        out[..., h36m, :] = src[..., coco, :]
    out[..., PELVIS, :] = _midpoint_min_score(src[..., 11, :], src[..., 12, :])
    out[..., THORAX, :] = _midpoint_min_score(src[..., 5, :], src[..., 6, :])
    out[..., SPINE, :] = _midpoint_min_score(out[..., PELVIS, :], out[..., THORAX, :])

    face = src[..., 1:5, :]  # left_eye, right_eye, left_ear, right_ear
    present = _present(face)
    count = present.sum(axis=-1)
    filled = np.where(present[..., None], face, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        head = filled.sum(axis=-2) / count[..., None]
    head[count == 0] = np.nan
    out[..., HEAD, :] = head
    return out


def halpe26_to_h36m17(kps: ArrayLike) -> NDArray[np.float64]:
    """Halpe-26 ``(..., 26, C)`` -> H36M-17, exactly MotionBERT's ``infer_wild.py`` map.

    0 <- 19 (Hip), 1 <- 12, 2 <- 14, 3 <- 16, 4 <- 11, 5 <- 13, 6 <- 15, 7 <- mean(18 Neck, 19 Hip)
    (every channel, the score too), 8 <- 18 (Neck), 9 <- 0 (Nose), 10 <- 17 (Head), 11 <- 5, 12 <- 7, 13 <- 9,
    14 <- 6, 15 <- 8, 16 <- 10.
    """
    src = _as_keypoints(kps, 26)
    out = np.empty((*src.shape[:-2], NUM_JOINTS, src.shape[-1]), dtype=np.float64)
    for h36m, halpe in (
        (0, 19), (1, 12), (2, 14), (3, 16), (4, 11), (5, 13), (6, 15), (8, 18), (9, 0), (10, 17),
        (11, 5), (12, 7), (13, 9), (14, 6), (15, 8), (16, 10),
    ):  # fmt: skip
        out[..., h36m, :] = src[..., halpe, :]
    out[..., SPINE, :] = (src[..., 18, :] + src[..., 19, :]) / 2.0
    return out


def to_h36m17(kps: ArrayLike, skeleton: Skeleton) -> NDArray[np.float64]:
    """Keypoints ``(..., K, C)`` of ``skeleton`` (COCO-17, Halpe-26 or H36M-17 itself) -> H36M-17
    ``(..., 17, C)``: the one place a 2D layout is mapped to the lifters' layout. Raises
    :class:`ValueError` for any other layout."""
    convert = _TO_H36M17.get(skeleton.name)
    if convert is None:
        raise ValueError(f"no map from the {skeleton.name} layout to H36M-17 (known: {sorted(_TO_H36M17)})")
    return convert(kps)


def _h36m17_itself(kps: ArrayLike) -> NDArray[np.float64]:
    return _as_keypoints(kps, NUM_JOINTS).copy()


_TO_H36M17 = {"coco17": coco17_to_h36m17, "halpe26": halpe26_to_h36m17, "h36m17": _h36m17_itself}


# ----------------------------------------------------------------------------------------------------
# Normalisation and flipping
# ----------------------------------------------------------------------------------------------------


def normalize_screen(kp_px: ArrayLike, width: float, height: float) -> NDArray[np.float64]:
    """VideoPose3D ``normalize_screen_coordinates`` (SemGCN and MotionBERT's H36M training data).

    ``x' = x / w * 2 - 1``, ``y' = y / w * 2 - h / w``: origin at the image centre, x in [-1, 1], aspect kept,
    y down. Only the first two channels are transformed; further channels (a score) are copied.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    out = np.array(kp_px, dtype=np.float64)
    if out.ndim < 1 or out.shape[-1] < 2:
        raise ValueError(f"expected (..., C>=2) keypoints, got {out.shape}")
    out[..., :2] = out[..., :2] / width * 2.0 - np.array([1.0, height / width])
    return out


def motionbert_crop_scale(motion: ArrayLike) -> NDArray[np.float64]:
    """MotionBERT's default in-the-wild normalisation: official ``crop_scale(motion, scale_range=[1, 1])``.

    ``motion``: ``(..., 17, 3)`` pixel (x, y, conf), normally ``(T, 17, 3)`` for a whole video. The square box
    around all joints of all frames with non-zero confidence maps to [-1, 1]; then every channel (confidence
    included) is clipped to [-1, 1]. Fewer than 4 valid joints or a zero-size box gives all zeros.
    Extension for NaN inputs (identical to the official function on finite input): joints with a non-finite
    x, y or confidence are left out of the box (and stay NaN in the output).
    """
    m = np.asarray(motion, dtype=np.float64)
    if m.ndim < 2 or m.shape[-1] != 3:
        raise ValueError(f"expected (..., J, 3) motion, got {m.shape}")
    conf = m[..., 2]
    valid = (conf != 0) & np.all(np.isfinite(m), axis=-1)
    coords = m[valid][:, :2]
    if len(coords) < 4:
        return np.zeros(m.shape, dtype=np.float64)
    xmin, ymin = coords.min(axis=0)
    xmax, ymax = coords.max(axis=0)
    scale = max(xmax - xmin, ymax - ymin)
    if scale == 0:
        return np.zeros(m.shape, dtype=np.float64)
    xs = (xmin + xmax - scale) / 2.0
    ys = (ymin + ymax - scale) / 2.0
    out = m.copy()
    out[..., :2] = ((m[..., :2] - np.array([xs, ys])) / scale - 0.5) * 2.0
    return np.clip(out, -1.0, 1.0)


def motionbert_pixel_normalize(motion: ArrayLike, width: float, height: float) -> NDArray[np.float64]:
    """MotionBERT's ``--pixel`` normalisation: ``(xy - (w, h) / 2) / (min(w, h) / 2)``; confidence
    unchanged, no clipping. To go back to pixels multiply x, y (and z) by ``min(w, h) / 2`` and add
    ``(w / 2, h / 2)``."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    out = np.array(motion, dtype=np.float64)
    if out.ndim < 1 or out.shape[-1] < 2:
        raise ValueError(f"expected (..., C>=2) keypoints, got {out.shape}")
    half = min(width, height) / 2.0
    out[..., :2] = (out[..., :2] - np.array([width / 2.0, height / 2.0])) / half
    return out


def flip_h36m(x: ArrayLike) -> NDArray[np.float64]:
    """MotionBERT's ``flip_data``: negate channel 0 (x) and swap the left/right H36M joints
    (left 4, 5, 6, 11, 12, 13 <-> right 1, 2, 3, 14, 15, 16). Works on 2D inputs (x, y, conf) and 3D
    outputs."""
    arr = np.array(x, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-2] != NUM_JOINTS:
        raise ValueError(f"expected (..., 17, C) array, got {arr.shape}")
    out = arr[..., _FLIP_PERM, :]
    out[..., 0] = -out[..., 0]
    return out


# ----------------------------------------------------------------------------------------------------
# Metrics and metric scale
# ----------------------------------------------------------------------------------------------------


def _bone(pose: NDArray[np.float64], a: int, b: int) -> NDArray[np.float64]:
    return np.asarray(np.linalg.norm(pose[..., a, :] - pose[..., b, :], axis=-1), dtype=np.float64)


def standing_height(pose3d: ArrayLike) -> float:
    """Standing height estimated from bone lengths of a ``(T, 17, 3)`` H36M-17 3D sequence (input units).

    Per frame: head-thorax + thorax-spine + spine-pelvis + leg, leg = mean of the left and right
    pelvis-hip-knee-ankle chains (one leg when only one is complete); the median over frames with a complete
    chain, times :data:`HEIGHT_PER_CHAIN` (heel and crown of head). NaN when no frame has a complete chain.
    """
    pose = np.asarray(pose3d, dtype=np.float64)
    if pose.ndim != 3 or pose.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"expected (T, 17, 3) poses, got {pose.shape}")
    trunk = _bone(pose, HEAD, THORAX) + _bone(pose, THORAX, SPINE) + _bone(pose, SPINE, PELVIS)
    legs = np.stack(
        [
            _bone(pose, PELVIS, R_HIP) + _bone(pose, R_HIP, R_KNEE) + _bone(pose, R_KNEE, R_ANKLE),
            _bone(pose, PELVIS, L_HIP) + _bone(pose, L_HIP, L_KNEE) + _bone(pose, L_KNEE, L_ANKLE),
        ],
        axis=-1,
    )
    ok = np.isfinite(legs)
    n_legs = ok.sum(axis=-1)
    leg = np.where(ok, legs, 0.0).sum(axis=-1) / np.maximum(n_legs, 1)
    chain = trunk + leg
    chain = chain[np.isfinite(trunk) & (n_legs > 0)]
    if chain.size == 0:
        return math.nan
    return float(np.median(chain)) * HEIGHT_PER_CHAIN


def scale_to_height(pose3d: ArrayLike, height_m: float) -> NDArray[np.float64]:
    """Scale a root-relative ``(T, 17, 3)`` 3D sequence (any units) so that :func:`standing_height` equals
    ``height_m``; returns metres. Raises :class:`InputError` when no frame shows a complete head-to-ankle
    chain."""
    if not (math.isfinite(height_m) and height_m > 0):
        raise ValueError(f"height_m must be a positive number, got {height_m}")
    pose = np.asarray(pose3d, dtype=np.float64)
    est = standing_height(pose)
    if not (math.isfinite(est) and est > 0):
        raise InputError("cannot estimate the runner's height: no frame shows the whole head-to-ankle chain")
    return pose * (height_m / est)


# ----------------------------------------------------------------------------------------------------
# Codecs
# ----------------------------------------------------------------------------------------------------


class LifterCodec(Protocol):
    """A 2D -> 3D lifter around an injected model runtime."""

    name: str
    window: int  # frames the model sees at once (1 = single-frame)

    def lift(self, kps2d: NDArray[Any], *, image_wh: tuple[int, int], run: Runner) -> NDArray[np.float64]:
        """``kps2d``: ``(T, 17, 3)`` H36M-17 (x, y, score) in image pixels, NaN where missing ->
        ``(T, 17, 3)`` root-relative 3D (pelvis = 0), camera axes (x right, y down, z away from the camera);
        frames whose input is unusable are NaN rows."""
        ...


def _check_kps2d(kps2d: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(kps2d, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"expected (T, 17, 3) H36M-17 (x, y, score) keypoints, got {arr.shape}")
    return arr


def _run_checked(run: Runner, batch: NDArray[np.float32], out_shape: tuple[int, ...]) -> NDArray[np.float64]:
    out = np.asarray(run(batch))
    if out.shape != out_shape:
        raise InferenceError(f"lifter returned shape {out.shape}, expected {out_shape}")
    out64 = out.astype(np.float64)
    if not np.all(np.isfinite(out64)):
        raise InferenceError("lifter returned non-finite values")
    return out64


def estimate_neck_nose(pose3d: NDArray[np.float64], forward_m: float = NOSE_FORWARD_M) -> NDArray[np.float64]:
    """Estimate H36M joint 9 ("neck/nose") from a metric ``(..., 17, 3)`` pose whose joint 9 is unknown.

    Midpoint of thorax (8) and head (10) moved ``forward_m`` metres towards the face, perpendicular to the
    thorax->head axis; the facing direction is ``cross(head - thorax, right_shoulder - left_shoulder)``. Where
    that is degenerate the plain midpoint is used. On the 4 H36M sample frames (ground-truth 3D) the error is
    4-45 mm versus 48-94 mm for the plain midpoint.
    """
    thorax, head = pose3d[..., THORAX, :], pose3d[..., HEAD, :]
    up = head - thorax
    right = pose3d[..., R_SHOULDER, :] - pose3d[..., L_SHOULDER, :]
    fwd = np.cross(up, right)
    up_n2 = (up**2).sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        fwd = fwd - (fwd * up).sum(axis=-1, keepdims=True) / up_n2 * up
        norm = np.linalg.norm(fwd, axis=-1, keepdims=True)
        unit = np.where(norm > 1e-9, fwd / norm, 0.0)
    return np.asarray((thorax + head) / 2.0 + forward_m * unit, dtype=np.float64)


#: parent of each H36M joint in SemGCN's graph (head hangs from the thorax; the root is its own parent)
SEMGCN_PARENT = (0, 0, 1, 2, 0, 4, 5, 0, 7, 8, 8, 8, 11, 12, 8, 14, 15)
H36M_TREE_ORDER = (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16)
CORE_JOINTS = [0, 1, 4, 8]


class SemGCNCodec:
    """Single-frame SemGCN (Zhao et al. 2019) trained on ground-truth H36M 2D.

    Input: the 16 joints :data:`SEMGCN_JOINTS`, :func:`normalize_screen` with the image size, float32
    ``[N, 16, 2]`` in batches of at most ``batch_size``. Output: metres at the average H36M subject scale (the
    model cannot recover the true scale), pelvis subtracted. H36M joint 9 (neck/nose), which SemGCN does not
    predict, is estimated with :func:`estimate_neck_nose`.

    Missing joints (non-finite x, y, or a score below ``min_score`` when it is > 0): the network needs all 16,
    so up to ``max_imputed`` missing joints per frame are placed on their nearest present ancestor in the
    skeleton tree (a hidden wrist on its elbow, a hidden elbow on its shoulder) for the network, and their
    outputs are NaN. Frames missing a core joint (pelvis, a hip, thorax) or more than ``max_imputed`` joints
    are NaN rows and are not sent to the model.
    """

    name = "semgcn"
    window = 1
    metric = True  # output in metres (average H36M subject scale)

    def __init__(self, *, batch_size: int = 256, min_score: float = 0.0, max_imputed: int = 3) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.batch_size = batch_size
        self.min_score = min_score
        self.max_imputed = max_imputed

    def lift(self, kps2d: ArrayLike, *, image_wh: tuple[int, int], run: Runner) -> NDArray[np.float64]:
        kps = _check_kps2d(kps2d)
        width, height = image_wh
        present = np.all(np.isfinite(kps[..., :2]), axis=-1)
        if self.min_score > 0:
            present &= np.nan_to_num(kps[..., 2]) >= self.min_score
        missing = ~present
        missing[:, NECK_NOSE] = False  # not a SemGCN input
        usable = ~missing[:, CORE_JOINTS].any(axis=-1) & (missing.sum(axis=-1) <= self.max_imputed)
        out = np.full(kps.shape, np.nan, dtype=np.float64)
        frames = np.flatnonzero(usable)
        if frames.size == 0:
            return out
        filled = kps[frames, :, :2].copy()
        for joint in H36M_TREE_ORDER:  # parents before children: an ancestor is already filled
            rows = missing[frames, joint]
            filled[rows, joint] = filled[rows, SEMGCN_PARENT[joint]]
        x = normalize_screen(filled[:, SEMGCN_JOINTS], width, height).astype(np.float32)
        pred = np.empty((frames.size, len(SEMGCN_JOINTS), 3), dtype=np.float64)
        for lo in range(0, frames.size, self.batch_size):
            batch = np.ascontiguousarray(x[lo : lo + self.batch_size])
            pred[lo : lo + len(batch)] = _run_checked(run, batch, (len(batch), len(SEMGCN_JOINTS), 3))
        pose = np.zeros((frames.size, NUM_JOINTS, 3), dtype=np.float64)
        pose[:, SEMGCN_JOINTS, :] = pred - pred[:, :1, :]
        pose[:, NECK_NOSE, :] = estimate_neck_nose(pose)
        pose[missing[frames]] = np.nan
        out[frames] = pose
        return out


def window_starts(num_frames: int, window: int, stride: int) -> NDArray[np.intp]:
    """Start frames of windows of ``window`` frames every ``stride`` frames, the last one aligned to the end
    of the sequence (``window`` must be <= ``num_frames``; empty for an empty sequence)."""
    if num_frames == 0:
        return np.zeros(0, dtype=np.intp)
    if not 1 <= window <= num_frames:
        raise ValueError(f"window {window} must be in [1, {num_frames}]")
    if not 1 <= stride <= window:
        raise ValueError(f"stride {stride} must be in [1, window={window}] (windows must cover every frame)")
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] != num_frames - window:
        starts.append(num_frames - window)
    return np.asarray(starts, dtype=np.intp)


def _taper(length: int) -> NDArray[np.float64]:
    """Rising raised-cosine ramp of ``length`` samples, strictly inside (0, 1); ``ramp + ramp[::-1] == 1``."""
    i = np.arange(1, length + 1, dtype=np.float64)
    return np.asarray(np.sin(0.5 * np.pi * i / (length + 1)) ** 2, dtype=np.float64)


def blend_weights(num_frames: int, window: int, stride: int) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Windows and per-frame blending weights for overlapping windows.

    Returns ``(starts, weights)`` with ``weights[k, i]`` the weight of window ``k``'s output for frame
    ``starts[k] + i``. Each window is flat (1) except over its overlap with the previous / next window, where
    it ramps with a raised cosine (a Tukey window; no taper at the ends of the sequence, where it is the only
    cover). Two neighbouring ramps over the same overlap sum to 1, i.e. a smooth cross-fade; weights are then
    normalised so that they sum to exactly 1 over all windows covering a frame (this also handles frames
    covered by 3+ windows when ``stride < window / 2``). Every weight is > 0.
    """
    starts = window_starts(num_frames, window, stride)
    n = len(starts)
    raw = np.ones((n, window), dtype=np.float64)
    for k in range(n):
        if k > 0:
            overlap = int(starts[k - 1] + window - starts[k])
            if overlap > 0:
                raw[k, :overlap] *= _taper(overlap)
        if k < n - 1:
            overlap = int(starts[k] + window - starts[k + 1])
            if overlap > 0:
                raw[k, window - overlap :] *= _taper(overlap)[::-1]
    total = np.zeros(num_frames, dtype=np.float64)
    for k in range(n):
        total[starts[k] : starts[k] + window] += raw[k]
    weights = np.stack([raw[k] / total[starts[k] : starts[k] + window] for k in range(n)]) if n else raw
    return starts, weights


class MotionBERTCodec:
    """MotionBERT (DSTformer) lifter on overlapping, blended windows of up to 243 frames.

    Pipeline of :meth:`lift`:

    1. :meth:`prepare`: a joint is *missing* when its x, y or score is non-finite or its score <= 0. Missing
       joints get pixel (0, 0) and confidence 0, so they are left out of the normalisation box; the sequence
       is normalised as a whole (``normalization="crop_scale"``: :func:`motionbert_crop_scale`, the official
       in-the-wild default; ``"pixel"``: :func:`motionbert_pixel_normalize` with ``image_wh``); the confidence
       channel is the score. Finally missing joints are set to exactly (0, 0, 0) in model space, which is how
       MotionBERT's pre-training masks joints (``x * ~mask``).
    2. :meth:`infer`: windows of ``W = min(window, T)`` frames every ``stride`` frames (default
       ``W - W // 3``, i.e. 162 frames with 81 frames of overlap for W = 243), the last window aligned to the
       end of the sequence, sent as float32 ``[N, W, 17, 3]`` batches of at most ``batch_size`` windows.
       Optional flip averaging (official test-time augmentation, on by default like every official config):
       ``(f(x) + flip(f(flip(x)))) / 2`` per window. Per-frame outputs are blended with :func:`blend_weights`
       (raised-cosine cross-fades over the overlaps), so each frame is a weighted average of every window that
       covers it. T <= ``window`` gives exactly one clip, as the official code does.
    3. Root: ``rootrel_model=True`` (checkpoints trained root-relative, e.g. MB_ft_h36m) zeroes joint 0 like
       the official code; ``False`` (global-trajectory checkpoints, e.g. MB_ft_h36m_global_lite) subtracts
       joint 0 from every joint. Frames with fewer than ``min_valid_joints`` valid 2D joints are NaN rows
       (they still go to the model, fully masked, so that clips keep their timing). A sequence without any
       usable frame never calls the model.

    Why 81 frames of overlap: the model has little temporal context at a clip's edges (attention is
    non-causal); with a one-third overlap every cross-faded frame gets at least ~40 frames of context from the
    window it is weighted towards, at 1.5x the cost of non-overlapping clips (2x would buy little more), and
    the cross-fade (81 frames = 1.35 s at 60 fps, several running strides) hides the clip-to-clip differences.

    Output units are the normalised input units (crop_scale: half the side of the square box around the whole
    trajectory; pixel: ``min(w, h) / 2`` pixels), not metres: use :func:`scale_to_height`.
    """

    name = "motionbert"
    metric = False  # output in normalised units

    def __init__(
        self,
        *,
        window: int = MOTIONBERT_WINDOW,
        stride: int | None = None,
        flip: bool = True,
        batch_size: int = 8,
        min_valid_joints: int = 9,
        normalization: Literal["crop_scale", "pixel"] = "crop_scale",
        rootrel_model: bool = True,
    ) -> None:
        if not 1 <= window <= MOTIONBERT_WINDOW:
            raise ValueError(f"window must be in [1, {MOTIONBERT_WINDOW}]")
        if stride is not None and stride < 1:
            raise ValueError("stride must be >= 1")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if normalization not in ("crop_scale", "pixel"):
            raise ValueError(f"unknown normalization {normalization!r}")
        self.window = window
        self.stride = stride
        self.flip = flip
        self.batch_size = batch_size
        self.min_valid_joints = min_valid_joints
        self.normalization = normalization
        self.rootrel_model = rootrel_model

    def plan(self, num_frames: int) -> tuple[int, int]:
        """``(W, stride)`` used for a sequence of ``num_frames`` frames."""
        w = min(self.window, num_frames)
        stride = self.stride if self.stride is not None else max(1, w - w // 3)
        return w, min(stride, w)

    def prepare(
        self, kps2d: ArrayLike, image_wh: tuple[int, int]
    ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """Model input ``(T, 17, 3)`` float32 for a whole sequence and the ``(T, 17)`` mask of valid
        joints."""
        kps = _check_kps2d(kps2d)
        valid = np.all(np.isfinite(kps), axis=-1) & (np.nan_to_num(kps[..., 2], nan=0.0) > 0)
        filled = np.where(valid[..., None], kps, 0.0)
        if self.normalization == "crop_scale":
            norm = motionbert_crop_scale(filled)
        else:
            norm = motionbert_pixel_normalize(filled, *image_wh)
        norm[~valid] = 0.0
        return norm.astype(np.float32), valid

    def infer(self, x: NDArray[np.float32], run: Runner) -> NDArray[np.float64]:
        """Windowed, flip-averaged, blended model output ``(T, 17, 3)`` for a normalised ``(T, 17, 3)`` input
        (no root handling)."""
        t = x.shape[0]
        if t == 0:
            return np.zeros((0, NUM_JOINTS, 3), dtype=np.float64)
        w, stride = self.plan(t)
        starts, weights = blend_weights(t, w, stride)
        clips = np.stack([x[s : s + w] for s in starts]).astype(np.float32)
        inputs = np.concatenate([clips, flip_h36m(clips).astype(np.float32)]) if self.flip else clips
        outputs = np.empty(inputs.shape, dtype=np.float64)
        for lo in range(0, len(inputs), self.batch_size):
            batch = np.ascontiguousarray(inputs[lo : lo + self.batch_size])
            outputs[lo : lo + len(batch)] = _run_checked(run, batch, batch.shape)
        if self.flip:
            n = len(clips)
            outputs = (outputs[:n] + flip_h36m(outputs[n:])) / 2.0
        blended = np.zeros((t, NUM_JOINTS, 3), dtype=np.float64)
        for k, s in enumerate(starts):
            blended[s : s + w] += weights[k][:, None, None] * outputs[k]
        return blended

    def lift(self, kps2d: ArrayLike, *, image_wh: tuple[int, int], run: Runner) -> NDArray[np.float64]:
        x, valid = self.prepare(kps2d, image_wh)
        usable = valid.sum(axis=-1) >= self.min_valid_joints
        out = np.full((x.shape[0], NUM_JOINTS, 3), np.nan, dtype=np.float64)
        if not usable.any():
            return out
        pose = self.infer(x, run)
        if self.rootrel_model:
            pose[:, PELVIS, :] = 0.0
        else:
            pose = pose - pose[:, PELVIS : PELVIS + 1, :]
        out[usable] = pose[usable]
        return out
