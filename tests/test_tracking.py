"""Runner tracking: detection schedule, re-detection triggers, runner selection rule."""

from __future__ import annotations

import numpy as np

from services.pose.tracking import (
    RunnerTracker,
    TrackerParams,
    dominant_segment,
    iou,
    keypoint_box,
    select_runner,
)


def _pose(box: tuple[float, float, float, float], score: float = 0.9) -> np.ndarray:
    x1, y1, x2, y2 = box
    rng = np.random.default_rng(0)
    xy = np.column_stack([rng.uniform(x1, x2, 17), rng.uniform(y1, y2, 17)])
    xy[0], xy[1] = (x1, y1), (x2, y2)
    return np.column_stack([xy, np.full(17, score)])


def test_iou_known_values() -> None:
    a = np.array([0, 0, 10, 10.0])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(iou(a, b), [1.0, 50 / 150, 0.0])


def test_keypoint_box_is_padded_bounds() -> None:
    box = keypoint_box(_pose((10, 20, 110, 220)), min_score=0.3, margin=0.1)
    assert box is not None
    np.testing.assert_allclose(box, [10 - 20, 20 - 20, 110 + 20, 220 + 20])
    assert keypoint_box(_pose((10, 20, 110, 220), score=0.1), min_score=0.3, margin=0.1) is None


def test_largest_confident_person_is_the_runner_then_continuity_wins() -> None:
    boxes = np.array([[0, 0, 50, 100, 0.9], [100, 0, 300, 400, 0.8], [400, 0, 420, 40, 0.99]])
    assert select_runner(boxes, current=None) == 1
    # later: the runner is the box overlapping the current one, even if another is larger
    later = np.array([[0, 0, 500, 500, 0.9], [600, 0, 700, 200, 0.9]])
    assert select_runner(later, current=np.array([610, 10, 690, 190.0])) == 1
    # a user hint overrides size
    assert select_runner(boxes, current=None, hint=np.array([0, 0, 50, 100.0])) == 0


def test_detection_schedule_and_redetection_triggers() -> None:
    tr = RunnerTracker(TrackerParams(det_interval=5))
    assert tr.needs_detection(0)
    tr.on_detections(0, np.array([[100, 100, 200, 400, 0.9]]))
    for i in range(1, 5):
        assert tr.on_pose(i - 1, _pose((105, 110, 195, 390)))
        assert not tr.needs_detection(i)
    assert tr.needs_detection(5)  # interval reached
    tr.on_detections(5, np.array([[100, 100, 200, 400, 0.9]]))
    assert not tr.on_pose(5, _pose((105, 110, 195, 390), score=0.1))  # poor pose
    assert tr.needs_detection(6)
    tr.on_detections(6, np.array([[100, 100, 200, 400, 0.9]]))
    assert tr.on_pose(6, _pose((105, 110, 195, 390)))  # reference keypoint box
    assert not tr.needs_detection(7)
    tr.on_pose(7, _pose((105, 110, 135, 150)))  # box collapsed onto a limb: drift
    assert tr.needs_detection(8)


def test_nobody_detected_keeps_asking() -> None:
    tr = RunnerTracker()
    assert tr.on_detections(0, np.zeros((0, 5))) is None
    assert tr.box is None and tr.needs_detection(1)
    assert tr.on_detections(1, np.array([[0, 0, 10, 10, 0.2]])) is None  # below the score threshold


def test_reacquiring_someone_elsewhere_starts_a_new_segment() -> None:
    tr = RunnerTracker(TrackerParams(det_interval=100))
    tr.on_detections(0, np.array([[100, 0, 140, 80, 0.9]]))  # a bystander far away, alone at first
    assert tr.segment == 0
    tr.on_detections(1, np.array([[102, 2, 142, 82, 0.9]]))  # same place: same segment
    assert tr.segment == 0
    tr.on_detections(2, np.zeros((0, 5)))  # lost
    tr.on_detections(3, np.array([[600, 200, 800, 700, 0.9]]))  # re-acquired elsewhere: someone else
    assert tr.segment == 1


def test_dominant_segment_is_size_times_time_on_screen() -> None:
    segments = np.array([0, 0, 0, 0, 1, 1, 1, -1])
    small = [0, 0, 10, 10]
    big = [0, 0, 100, 100]
    boxes = np.array([small] * 4 + [big] * 3 + [[np.nan] * 4], float)
    assert dominant_segment(segments, boxes) == 1
    assert dominant_segment(np.full(3, -1), np.full((3, 4), np.nan)) is None
