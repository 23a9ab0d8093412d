"""Top-down 2D pose codecs: box -> affine crop -> network input, network output -> image keypoints.

All geometry is rotation-free: a box becomes a ``center`` and a ``scale`` (box size in image pixels,
padded and widened to the network's aspect ratio), and the crop maps that rectangle onto the network input
with one uniform scale. Decoding maps input pixels back with the inverse of the same transform.

Keypoint arrays are (N, K, 3) = (x, y, score) in image pixels; a keypoint the model did not place gets
NaN coordinates and score 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from services.pose.skeletons import COCO17, SKELETONS, Skeleton

RGB_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
RGB_STD = np.array([58.395, 57.12, 57.375], np.float32)

FloatArray = NDArray[np.float64]


# --- geometry ------------------------------------------------------------------------------------------
def bbox_xyxy_to_cs(boxes: FloatArray, *, padding: float = 1.25) -> tuple[FloatArray, FloatArray]:
    """(N, 4) boxes -> centers (N, 2) and padded sizes (N, 2)."""
    boxes = np.asarray(boxes, np.float64)
    center = (boxes[:, :2] + boxes[:, 2:4]) / 2
    scale = (boxes[:, 2:4] - boxes[:, :2]) * padding
    return center, scale


def fix_aspect_ratio(scale: FloatArray, *, aspect: float) -> FloatArray:
    """Enlarge (never shrink) each (w, h) to the aspect ratio ``aspect`` = w / h."""
    scale = np.asarray(scale, np.float64)
    w, h = scale[:, 0], scale[:, 1]
    wide = w > h * aspect
    return np.stack([np.where(wide, w, h * aspect), np.where(wide, w / aspect, h)], axis=-1)


def warp_matrix(
    center: FloatArray, scale: FloatArray, output_wh: tuple[int, int], *, inv: bool = False
) -> FloatArray:
    """(2, 3) affine mapping the box (center, fixed-aspect scale) onto the output image (or back).

    Built like mmpose/rtmlib (rotation 0): the center maps to the output center, the point half a box width
    above it to half an output width above the output center, a third point completes a right angle; the
    float32 point triples go through ``cv2.getAffineTransform``, so crops agree with theirs bit for bit.
    """
    w_out, h_out = output_wh

    def triple(p0: FloatArray, p1: FloatArray) -> NDArray[np.float32]:
        a, b = np.asarray(p0, np.float32), np.asarray(p1, np.float32)
        d = a - b
        return np.stack([a, b, b + np.array([-d[1], d[0]], np.float32)])

    src = triple(center, center + np.array([0.0, -scale[0] / 2]))
    dst = triple(np.array([w_out / 2, h_out / 2]), np.array([w_out / 2, h_out / 2 - w_out / 2]))
    a, b = (dst, src) if inv else (src, dst)
    return np.asarray(cv2.getAffineTransform(a, b), np.float64)


def affine_crop(
    image: NDArray[np.uint8], center: FloatArray, scale: FloatArray, output_wh: tuple[int, int]
) -> NDArray[np.uint8]:
    """Bilinear crop of the box into ``output_wh``; pixels outside the image are 0."""
    m = warp_matrix(center, scale, output_wh)
    out = cv2.warpAffine(
        image, m, output_wh, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)
    )
    return np.asarray(out, np.uint8)


def input_to_image(
    locs: FloatArray, center: FloatArray, scale: FloatArray, input_wh: tuple[int, int]
) -> FloatArray:
    """Network-input pixel locations (N, K, 2) -> image pixels, per box (center, scale each (N, 2))."""
    wh = np.asarray(input_wh, np.float64)
    return locs / wh * scale[:, None, :] + center[:, None, :] - scale[:, None, :] / 2


# --- SimCC (RTMPose) -----------------------------------------------------------------------------------
def simcc_argmax(
    simcc_x: NDArray[np.float32], simcc_y: NDArray[np.float32], *, score_rule: str = "mean"
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """SimCC logits [N, K, Wx], [N, K, Wy] -> bin locations (N, K, 2) and scores (N, K).

    score = mean of the two maxima (rtmlib; ``score_rule="min"`` gives mmpose 1.3's rule). Locations of
    keypoints with score <= 0 are set to (-1, -1), as rtmlib does.
    """
    x_bin = np.argmax(simcc_x, axis=-1)
    y_bin = np.argmax(simcc_y, axis=-1)
    x_max = np.max(simcc_x, axis=-1)
    y_max = np.max(simcc_y, axis=-1)
    if score_rule == "mean":
        scores = 0.5 * (x_max + y_max)
    elif score_rule == "min":
        scores = np.minimum(x_max, y_max)
    else:
        raise ValueError(f"score_rule must be 'mean' or 'min', not {score_rule!r}")
    locs = np.stack([x_bin, y_bin], axis=-1).astype(np.float32)
    locs[scores <= 0] = -1
    return locs, scores.astype(np.float32)


# --- codecs --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Crops:
    """Where each network input came from: centers and fixed-aspect scales, (N, 2) each."""

    center: FloatArray
    scale: FloatArray


class Pose2DCodec(Protocol):
    family: str
    skeleton: Skeleton
    input_wh: tuple[int, int]
    #: largest batch the graph accepts (None = dynamic)
    max_batch: int | None

    def preprocess(
        self, image: NDArray[np.uint8], boxes: FloatArray
    ) -> tuple[NDArray[np.generic], Crops]: ...

    def postprocess(self, outputs: list[NDArray[np.float32]], crops: Crops) -> FloatArray: ...


def _crops(boxes: FloatArray, *, padding: float, input_wh: tuple[int, int]) -> Crops:
    center, scale = bbox_xyxy_to_cs(np.asarray(boxes, np.float64)[:, :4], padding=padding)
    return Crops(center=center, scale=fix_aspect_ratio(scale, aspect=input_wh[0] / input_wh[1]))


class RTMPoseCodec:
    """RTMPose (mmdeploy end2end graph): input [N, 3, 256, 192] normalised RGB, outputs simcc_x, simcc_y."""

    family = "rtmpose"
    max_batch: int | None = None

    def __init__(
        self,
        *,
        skeleton: Skeleton = COCO17,
        input_wh: tuple[int, int] = (192, 256),
        split_ratio: float = 2.0,
        padding: float = 1.25,
        score_rule: str = "mean",
    ) -> None:
        self.skeleton = skeleton
        self.input_wh = input_wh
        self.split_ratio = split_ratio
        self.padding = padding
        self.score_rule = score_rule

    def preprocess(self, image: NDArray[np.uint8], boxes: FloatArray) -> tuple[NDArray[np.float32], Crops]:
        crops = _crops(boxes, padding=self.padding, input_wh=self.input_wh)
        batch = np.empty((len(crops.center), 3, self.input_wh[1], self.input_wh[0]), np.float32)
        for i, (c, s) in enumerate(zip(crops.center, crops.scale, strict=True)):
            crop = affine_crop(image, c, s, self.input_wh)
            batch[i] = ((crop.astype(np.float32) - RGB_MEAN) / RGB_STD).transpose(2, 0, 1)
        return batch, crops

    def decode(self, simcc_x: NDArray[np.float32], simcc_y: NDArray[np.float32], crops: Crops) -> FloatArray:
        """Image keypoints (N, K, 3) exactly as rtmlib computes them (invalid joints included)."""
        locs, scores = simcc_argmax(simcc_x, simcc_y, score_rule=self.score_rule)
        xy = input_to_image(
            locs.astype(np.float64) / self.split_ratio, crops.center, crops.scale, self.input_wh
        )
        return np.concatenate([xy, scores[..., None].astype(np.float64)], axis=-1)

    def postprocess(self, outputs: list[NDArray[np.float32]], crops: Crops) -> FloatArray:
        kps = self.decode(outputs[0], outputs[1], crops)
        kps[kps[..., 2] <= 0] = (np.nan, np.nan, 0.0)
        return kps


class MoveNetCodec:
    """MoveNet SinglePose: input [1, S, S, 3] int32 RGB 0-255 (normalised inside the graph), output
    [1, 1, 17, 3] = (y, x, score) relative to the crop. The graph has batch 1: callers loop."""

    family = "movenet"
    max_batch: int | None = 1
    skeleton = COCO17

    def __init__(self, *, input_wh: tuple[int, int] = (256, 256), padding: float = 1.25) -> None:
        self.input_wh = input_wh
        self.padding = padding

    def preprocess(self, image: NDArray[np.uint8], boxes: FloatArray) -> tuple[NDArray[np.int32], Crops]:
        crops = _crops(boxes, padding=self.padding, input_wh=self.input_wh)
        batch = np.empty((len(crops.center), self.input_wh[1], self.input_wh[0], 3), np.int32)
        for i, (c, s) in enumerate(zip(crops.center, crops.scale, strict=True)):
            batch[i] = affine_crop(image, c, s, self.input_wh)
        return batch, crops

    def postprocess(self, outputs: list[NDArray[np.float32]], crops: Crops) -> FloatArray:
        out = np.asarray(outputs[0], np.float64).reshape(len(crops.center), -1, 3)
        locs = out[..., 1::-1] * np.asarray(self.input_wh, np.float64)  # (y, x) -> (x, y) input pixels
        xy = input_to_image(locs, crops.center, crops.scale, self.input_wh)
        return np.concatenate([xy, out[..., 2:3]], axis=-1)


def make_codec(family: str, *, skeleton: str, input_wh: tuple[int, int]) -> Pose2DCodec:
    if family == "rtmpose":
        return RTMPoseCodec(skeleton=SKELETONS[skeleton], input_wh=input_wh)
    if family == "movenet":
        return MoveNetCodec(input_wh=input_wh)
    raise ValueError(f"no 2D pose codec for family {family!r}")
