"""Following one runner through a video with a detector that runs only now and then.

Between detections the runner's box for frame t comes from the keypoints of frame t-1 (the confident
keypoints' bounds, widened by ``margin`` on every side to cover the head top and the feet, which lie outside
the keypoints). The detector runs again when:

* ``det_interval`` frames have passed since the last detection,
* the last pose was poor: fewer than ``min_visible`` keypoints above ``kp_score_threshold`` or a mean
  score below ``redetect_mean_score``,
* the keypoint box drifted: its area changed by more than ``max_area_change`` (relative) from the keypoint
  box of the first pose after the last detection (a box collapsing onto one limb, or growing onto a
  second person).

Runner selection (when the detector returns several people):

1. if the caller gave a ``runner_box`` (x1, y1, x2, y2 in frame pixels), the detection overlapping it most
   (IoU) on the first detection frame;
2. otherwise, on the first detection, the box with the largest ``area x score`` (the runner is normally the
   main subject, filmed close);
3. on every later detection, the box with the highest IoU with the runner's current box (continuity), and
   rule 2 when none overlaps it (the runner was lost).

Rule 3's fallback may land on someone else (the runner left the frame, a bystander was picked before the
runner entered). So every frame carries a *segment* id: a new segment starts whenever the runner is
re-acquired more than one box size away from where it was last seen. After the pass,
:func:`dominant_segment` keeps the segment with the largest summed box area (size x time on screen: the
person the video is about) and the pipeline drops the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class TrackerParams:
    det_interval: int = 15
    det_score_threshold: float = 0.4
    kp_score_threshold: float = 0.3
    min_visible: int = 8
    redetect_mean_score: float = 0.3
    max_area_change: float = 0.5
    margin: float = 0.12
    runner_box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.det_interval < 1:
            raise ValueError("det_interval must be >= 1")


def iou(box: FloatArray, boxes: FloatArray) -> FloatArray:
    """IoU of one (4,) box with (N, 4) boxes."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = area(box[None])[0] + area(boxes) - inter
    out: FloatArray = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return out


def area(boxes: FloatArray) -> FloatArray:
    out: FloatArray = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    return out


def keypoint_box(
    kps: FloatArray, *, min_score: float, margin: float, min_visible: int = 4
) -> FloatArray | None:
    """Bounds of the keypoints (K, 3) scoring >= ``min_score``, widened by ``margin`` x the box's longer
    side on every side; None when fewer than ``min_visible`` keypoints qualify."""
    ok = (kps[:, 2] >= min_score) & np.isfinite(kps[:, 0]) & np.isfinite(kps[:, 1])
    if ok.sum() < min_visible:
        return None
    lo = kps[ok, :2].min(axis=0)
    hi = kps[ok, :2].max(axis=0)
    pad = margin * float(max(hi - lo))
    return np.array([lo[0] - pad, lo[1] - pad, hi[0] + pad, hi[1] + pad])


def pose_quality(kps: FloatArray, *, min_score: float) -> tuple[int, float]:
    """(number of keypoints above ``min_score``, mean score) of one pose (K, 3)."""
    scores = np.nan_to_num(kps[:, 2])
    return int((scores >= min_score).sum()), float(scores.mean())


def select_runner(
    boxes: FloatArray, *, current: FloatArray | None, hint: FloatArray | None = None
) -> int | None:
    """Index of the runner among detections (N, 5) following the rules in the module docstring."""
    if len(boxes) == 0:
        return None
    for ref in (hint, current):
        if ref is not None:
            overlap = iou(ref, boxes[:, :4])
            if overlap.max() > 0:
                return int(np.argmax(overlap))
            if ref is hint:
                return None
    return int(np.argmax(area(boxes[:, :4]) * boxes[:, 4]))


class RunnerTracker:
    """Decides per frame where the runner is and whether the detector must run.

    Use: ``box = tracker.box_for(i)``; if ``tracker.needs_detection(i)`` run the detector and call
    ``tracker.on_detections(i, boxes)`` to get the box; after the pose, call ``tracker.on_pose(i, kps)``.
    """

    def __init__(self, params: TrackerParams | None = None) -> None:
        self.params = params or TrackerParams()
        self._box: FloatArray | None = None
        self._ref_area: float | None = None
        self._last_det = -(10**9)
        self._force = True
        self._hint = None if self.params.runner_box is None else np.asarray(self.params.runner_box, float)
        self._last_seen: FloatArray | None = None
        self.detections = 0
        self.segment = -1

    @property
    def box(self) -> FloatArray | None:
        return None if self._box is None else self._box.copy()

    def needs_detection(self, index: int) -> bool:
        return self._force or self._box is None or index - self._last_det >= self.params.det_interval

    def on_detections(self, index: int, boxes: FloatArray) -> FloatArray | None:
        """Take the detector's person boxes (N, 5) for frame ``index``; returns the runner's box or None."""
        self.detections += 1
        self._last_det = index
        self._force = False
        boxes = boxes[boxes[:, 4] >= self.params.det_score_threshold] if len(boxes) else boxes
        pick = select_runner(boxes, current=self._box, hint=self._hint)
        if pick is None:
            self._box = None
            return None
        self._hint = None
        new = boxes[pick, :4].astype(np.float64)
        if not _near(new, self._last_seen):
            self.segment += 1
        self._box = new
        self._last_seen = new
        self._ref_area = None
        return self.box

    def on_pose(self, index: int, kps: FloatArray) -> bool:
        """Update the box from the pose of frame ``index`` (K, 3); returns True if the pose is good."""
        p = self.params
        visible, mean_score = pose_quality(kps, min_score=p.kp_score_threshold)
        good = visible >= p.min_visible and mean_score >= p.redetect_mean_score
        new_box = keypoint_box(kps, min_score=p.kp_score_threshold, margin=p.margin) if good else None
        if new_box is None:
            self._force = True
            return False
        new_area = float(area(new_box[None])[0])
        if self._ref_area is None:
            self._ref_area = new_area
        elif abs(new_area / self._ref_area - 1) > p.max_area_change:
            self._force = True
        self._box = new_box
        self._last_seen = new_box
        return True


def _near(box: FloatArray, ref: FloatArray | None) -> bool:
    """True when ``box``'s centre lies within one box size of ``ref``'s centre."""
    if ref is None:
        return False
    size = max(ref[2] - ref[0], ref[3] - ref[1], box[2] - box[0], box[3] - box[1])
    return bool(np.linalg.norm((box[:2] + box[2:4]) / 2 - (ref[:2] + ref[2:4]) / 2) <= size)


def dominant_segment(segments: NDArray[np.int_], boxes: FloatArray) -> int | None:
    """The segment id (>= 0) with the largest summed box area over its frames; None if there is none.
    ``segments`` (T,) per-frame ids (-1 = no runner), ``boxes`` (T, 4) with NaN rows where there is none."""
    ok = (segments >= 0) & np.isfinite(boxes).all(axis=1)
    if not ok.any():
        return None
    weight = np.bincount(segments[ok], weights=area(boxes[ok]))
    return int(np.argmax(weight))
