"""Top-down 2D pose codecs: box -> affine crop -> network input, network output -> image keypoints.

All geometry is rotation-free: a box becomes a ``center`` and a ``scale`` (box size in image pixels,
padded and widened to the network's aspect ratio), and the crop maps that rectangle onto the network input
with one uniform scale. Decoding maps input pixels back with the inverse of the same transform.

Keypoint arrays are (N, K, 3) = (x, y, score) in image pixels; a keypoint the model did not place gets
NaN coordinates and score 0.

Codecs hand out crops as they travel: uint8 ``(N, H, W, 3)`` RGB. The family's wire format
(:class:`services.pose.families.WireFormat`) turns them into the network's own input; the served graph does
it itself, and :func:`network_input` is the same rule in numpy for a raw graph run in-process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from services.errors import ModelError
from services.pose.families import WireFormat, get_family
from services.pose.skeletons import COCO17, Skeleton

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


def crop_batch(
    image: NDArray[np.uint8], center: FloatArray, scale: FloatArray, output_wh: tuple[int, int]
) -> NDArray[np.uint8]:
    """One :func:`affine_crop` per box (centers and scales (N, 2)) -> uint8 (N, h, w, C)."""
    w, h = output_wh
    batch = np.empty((len(center), h, w, *image.shape[2:]), np.uint8)
    for i, (c, s) in enumerate(zip(center, scale, strict=True)):
        batch[i] = affine_crop(image, c, s, output_wh)
    return batch


# --- wire format -> network input ----------------------------------------------------------------------
def network_input(crops: NDArray[np.uint8], wire: WireFormat) -> NDArray[Any]:
    """Crops as they travel (uint8 (N, H, W, 3) RGB) -> the network's own input tensor.

    The numpy twin of the nodes ``export.prepare`` puts in front of a served graph: channel order, cast,
    ``(x - mean) / std`` in float32, layout, dtype, in that order and with the same float32 arithmetic.
    """
    x = np.asarray(crops)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"crops must be uint8 (N, H, W, 3), not {x.dtype} {list(x.shape)}")
    if wire.channels == "BGR":
        x = x[..., ::-1]
    y: NDArray[Any] = x
    if wire.mean is not None and wire.std is not None:
        y = (x.astype(np.float32) - np.asarray(wire.mean, np.float32)) / np.asarray(wire.std, np.float32)
    if wire.network_layout == "NCHW":
        y = y.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(y, dtype=np.dtype(wire.network_dtype))


def graph_feed(crops: NDArray[np.uint8], wire: WireFormat | None, *, input_dtype: str) -> NDArray[Any]:
    """What a pose graph whose input has dtype ``input_dtype`` takes: the crops themselves for a served
    (uint8) graph, :func:`network_input` for a raw one (the float path)."""
    if wire is None or input_dtype == wire.dtype:
        return crops
    if input_dtype != wire.network_dtype:
        raise ModelError(
            f"the pose graph takes {input_dtype}; this family sends {wire.dtype} crops or "
            f"{wire.network_dtype} network input"
        )
    return network_input(crops, wire)


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
    """``preprocess`` gives the crops as they travel (uint8 (N, H, W, 3) RGB, see :func:`graph_feed`) and
    where they came from; ``postprocess`` turns the graph's outputs into image keypoints (N, K, 3)."""

    family: str
    skeleton: Skeleton
    input_wh: tuple[int, int]
    #: largest batch the graph accepts (None = dynamic)
    max_batch: int | None

    def preprocess(self, image: NDArray[np.uint8], boxes: FloatArray) -> tuple[NDArray[np.uint8], Crops]: ...

    def postprocess(self, outputs: list[NDArray[np.float32]], crops: Crops) -> FloatArray: ...


def _crops(boxes: FloatArray, *, padding: float, input_wh: tuple[int, int]) -> Crops:
    center, scale = bbox_xyxy_to_cs(np.asarray(boxes, np.float64)[:, :4], padding=padding)
    return Crops(center=center, scale=fix_aspect_ratio(scale, aspect=input_wh[0] / input_wh[1]))


class RTMPoseCodec:
    """RTMPose (mmdeploy end2end graph): 192x256 RGB crops; the network takes them normalised as
    [N, 3, 256, 192] float32 (the family's wire format) and outputs SimCC logits simcc_x, simcc_y."""

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

    def preprocess(self, image: NDArray[np.uint8], boxes: FloatArray) -> tuple[NDArray[np.uint8], Crops]:
        crops = _crops(boxes, padding=self.padding, input_wh=self.input_wh)
        return crop_batch(image, crops.center, crops.scale, self.input_wh), crops

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
    """MoveNet SinglePose: square RGB crops; the network takes them as [1, S, S, 3] int32 0-255
    (normalised inside the graph) and outputs [1, 1, 17, 3] = (y, x, score) relative to the crop. The graph
    has batch 1: callers loop."""

    family = "movenet"
    max_batch: int | None = 1
    skeleton = COCO17

    def __init__(self, *, input_wh: tuple[int, int] = (256, 256), padding: float = 1.25) -> None:
        self.input_wh = input_wh
        self.padding = padding

    def preprocess(self, image: NDArray[np.uint8], boxes: FloatArray) -> tuple[NDArray[np.uint8], Crops]:
        crops = _crops(boxes, padding=self.padding, input_wh=self.input_wh)
        return crop_batch(image, crops.center, crops.scale, self.input_wh), crops

    def postprocess(self, outputs: list[NDArray[np.float32]], crops: Crops) -> FloatArray:
        out = np.asarray(outputs[0], np.float64).reshape(len(crops.center), -1, 3)
        locs = out[..., 1::-1] * np.asarray(self.input_wh, np.float64)  # (y, x) -> (x, y) input pixels
        xy = input_to_image(locs, crops.center, crops.scale, self.input_wh)
        return np.concatenate([xy, out[..., 2:3]], axis=-1)


def make_codec(family: str, *, skeleton: str, input_wh: tuple[int, int]) -> Pose2DCodec:
    """The 2D codec of ``family`` (the registry's factory), for a manifest's skeleton and input size."""
    factory = get_family(family).pose2d_codec
    if factory is None:
        raise ModelError(f"no 2D pose codec for family {family!r}")
    return factory(skeleton, input_wh)
