"""RTMDet person detector codec (mmdeploy end2end graph with NMS inside).

Preprocessing follows the model's mmdeploy ``pipeline.json``: keep-ratio resize to fit the input, pad
bottom/right with 114, per-channel normalisation in BGR order with mean (103.53, 116.28, 123.675) and std
(57.375, 57.12, 58.395). Output boxes are in input pixels; dividing by the resize ratio gives image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

BGR_MEAN = np.array([103.53, 116.28, 123.675], np.float32)
BGR_STD = np.array([57.375, 57.12, 58.395], np.float32)
PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    ratio: float  # input pixels per image pixel


def rtmdet_preprocess(
    image_rgb: NDArray[np.uint8], *, input_wh: tuple[int, int] = (320, 320)
) -> tuple[NDArray[np.float32], Letterbox]:
    """RGB image (H, W, 3) -> network input [1, 3, h_in, w_in] float32 and the letterbox used."""
    h, w = image_rgb.shape[:2]
    w_in, h_in = input_wh
    r = min(w_in / w, h_in / h)
    nw, nh = round(w * r), round(h * r)
    canvas = np.full((h_in, w_in, 3), PAD_VALUE, np.uint8)
    canvas[:nh, :nw] = cv2.resize(image_rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    bgr = canvas[..., ::-1].astype(np.float32)
    x = ((bgr - BGR_MEAN) / BGR_STD).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x), Letterbox(ratio=r)


def rtmdet_decode(
    dets: NDArray[np.float32],
    labels: NDArray[np.int64],
    letterbox: Letterbox,
    *,
    score_threshold: float = 0.3,
    person_label: int = 0,
) -> NDArray[np.float64]:
    """One image's ``dets`` [num, 5] and ``labels`` [num] -> person boxes (M, 5) = (x1, y1, x2, y2, score)
    in image pixels, sorted by score (descending)."""
    keep = (dets[:, 4] >= score_threshold) & (labels == person_label)
    boxes = dets[keep].astype(np.float64)
    boxes[:, :4] /= letterbox.ratio
    return boxes[np.argsort(-boxes[:, 4], kind="stable")]
