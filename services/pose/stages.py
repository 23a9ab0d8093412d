"""The two stages every analysis path shares: the per-frame step and the sequence post-pass.

* :class:`FramePoser` — one frame in, the runner's 2D pose out: the detector on the first frame, every
  ``det_interval`` frames and whenever the previous pose was poor (the :class:`RunnerTracker` decides), the
  box from the previous pose in between, and a poor pose retried at once with a fresh detection.
* :func:`keep_runner` — frames that followed another person than the runner are blanked;
* :func:`lift_sequence` — the runner's posed frames in, the analysed sequence out: 2D cleaning (gap filling,
  left/right swap repair, low-pass), the skeleton's layout converted to H36M-17, the lifter, and scaling to
  the runner's height. It is re-run when the time base changes (a slow-motion factor found afterwards).

The offline pipeline (:func:`services.pose.pipeline.analyze_video`, several 2D requests in flight) and live
sessions (one frame at a time, a sliding window) both call these, so a change to tracking, cleaning or
lifting happens in one place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from services.pose.backends import PoseBackend
from services.pose.families import FAMILIES
from services.pose.lifting import scale_to_height, to_h36m17
from services.pose.sequence import CleaningParams, clean_sequence
from services.pose.skeletons import Skeleton
from services.pose.tracking import RunnerTracker, TrackerParams, dominant_segment, pose_quality

__all__ = [
    "LIFTER_UNITS",
    "FramePoser",
    "LiftedSequence",
    "PosedFrame",
    "StageTimes",
    "keep_runner",
    "lift_sequence",
    "no_pose",
]

FloatArray = NDArray[np.float64]

#: units of the lifter's output before any height scaling, by family (from the family registry)
LIFTER_UNITS = {f.name: f.lifter_units for f in FAMILIES.values() if f.lifter_units}


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over calls. Stages overlap: decoding runs in its own thread when
    prefetching and several 2D requests may be in flight, so the stages add up to more than ``total``."""

    decode: float = 0.0
    detect: float = 0.0
    pose2d: float = 0.0
    clean: float = 0.0
    lift: float = 0.0
    total: float = 0.0
    frames: int = 0
    detections: int = 0

    def ms_per_frame(self) -> dict[str, float]:
        n = max(self.frames, 1)
        stages = ("decode", "detect", "pose2d", "clean", "lift", "total")
        return {s: round(getattr(self, s) / n * 1000, 3) for s in stages}


def no_pose(num_joints: int) -> FloatArray:
    """``(K, 3)``: a frame without a runner (NaN x/y, score 0)."""
    out = np.full((num_joints, 3), np.nan)
    out[:, 2] = 0.0
    return out


@dataclass(frozen=True)
class PosedFrame:
    """What the per-frame step decided for one frame."""

    kps: FloatArray  # (K, 3) x, y, score in the pixels of the image given; NaN x/y without a runner
    box: FloatArray | None  # (4,) x1, y1, x2, y2 of the runner; None without one
    detected: bool  # the detector ran on this frame
    segment: int  # tracker identity segment, -1 without a runner


class FramePoser:
    """The per-frame step (see the module docstring), with the backend's calls timed into ``times``.

    Frames must be given in order. With one request in flight call :meth:`step`; with several, call
    :meth:`locate` for each new frame (after draining the frames in flight when :meth:`needs_detection` says
    the detector must run, so that the tracker has seen every earlier pose), :meth:`pose` (on any thread),
    then :meth:`finish` in frame order.
    """

    def __init__(
        self,
        backend: PoseBackend,
        params: TrackerParams,
        *,
        retry_poor_pose: bool = True,
        times: StageTimes | None = None,
    ) -> None:
        self.backend = backend
        self.params = params
        self.retry_poor_pose = retry_poor_pose
        self.times = times if times is not None else StageTimes()
        self.tracker = RunnerTracker(params)
        self.num_joints = backend.pose_codec.skeleton.num_joints

    def needs_detection(self, index: int) -> bool:
        return self.tracker.needs_detection(index)

    def _detect(self, index: int, image: NDArray[np.uint8]) -> FloatArray | None:
        start = time.perf_counter()
        found = self.backend.detect(image, score_threshold=self.params.det_score_threshold)
        self.times.detect += time.perf_counter() - start
        return self.tracker.on_detections(index, found)

    def locate(self, index: int, image: NDArray[np.uint8]) -> tuple[FloatArray | None, bool]:
        """The runner's box for frame ``index`` (None: nobody) and whether the detector ran for it."""
        if self.tracker.needs_detection(index):
            return self._detect(index, image), True
        return self.tracker.box, False

    def pose(self, image: NDArray[np.uint8], box: FloatArray) -> FloatArray:
        """The 2D pose ``(K, 3)`` inside ``box``. Thread-safe when the backend is."""
        start = time.perf_counter()
        out = self.backend.pose2d(image, box[None])[0]
        self.times.pose2d += time.perf_counter() - start
        return out

    def finish(
        self,
        index: int,
        image: NDArray[np.uint8],
        box: FloatArray | None,
        detected: bool,
        kps: FloatArray | None,
    ) -> PosedFrame:
        """Take frame ``index``'s pose (``kps`` from :meth:`pose`, None when ``box`` is None): update the
        tracker and retry a poor pose at once with a fresh detection. Call in frame order."""
        if box is None or kps is None:
            return PosedFrame(no_pose(self.num_joints), None, detected, -1)
        tracker = self.tracker
        if not tracker.on_pose(index, kps) and self.retry_poor_pose and not detected:
            retry_box, detected = self._detect(index, image), True
            if retry_box is not None:
                retry = self.pose(image, retry_box)
                q = self.params.kp_score_threshold
                if pose_quality(retry, min_score=q) > pose_quality(kps, min_score=q):
                    kps, box = retry, retry_box
                tracker.on_pose(index, kps)
        return PosedFrame(kps, box, detected, tracker.segment)

    def step(self, index: int, image: NDArray[np.uint8]) -> PosedFrame:
        """Frame ``index`` with one request in flight: :meth:`locate`, :meth:`pose`, :meth:`finish`."""
        box, detected = self.locate(index, image)
        kps = None if box is None else self.pose(image, box)
        return self.finish(index, image, box, detected, kps)


@dataclass(frozen=True)
class LiftedSequence:
    """A runner's analysed pose sequence."""

    t: FloatArray  # (T,) seconds
    kps2d_raw: FloatArray  # (T, K, 3) model output in image pixels, frames of other people blanked
    kps2d: FloatArray  # (T, K, 3) cleaned
    filled: NDArray[np.bool_]  # (T, K) gap-filled points
    swapped: NDArray[np.bool_]  # (T,) frames whose left/right were repaired
    swapped_joints: NDArray[np.bool_]  # (T, K) the joints exchanged back in each frame
    kps3d: FloatArray  # (T, 17, 3) H36M-17, root-relative, camera axes
    units3d: str  # "m" when scaled to the runner's height, else the lifter's own units
    skeleton: Skeleton  # layout of the 2D keypoints
    lifter: str  # the lifter's model family, e.g. "semgcn"
    image_wh: tuple[int, int]  # size of the images the pixels refer to
    warnings: tuple[str, ...] = ()

    @property
    def metric(self) -> bool:
        """Whether the 3D is in metres (scaled to the runner's height)."""
        return self.units3d == "m"


def keep_runner(
    raw: FloatArray, boxes: FloatArray, segments: NDArray[np.int_]
) -> tuple[FloatArray, FloatArray, list[str]]:
    """Only the runner's frames of a posed sequence: the dominant identity segment (largest summed box area,
    i.e. size x time on screen) is kept; the frames that followed anybody else are blanked (keypoints as
    :func:`no_pose`, box NaN) with a warning. ``raw`` ``(T, K, 3)``, ``boxes`` ``(T, 4)`` and ``segments``
    ``(T,)`` (-1 = no runner) are not modified; returns (keypoints, boxes, warnings)."""
    runner = dominant_segment(segments, boxes)
    others = segments != runner
    followed = np.flatnonzero(others & (segments >= 0))
    warnings = []
    if runner is not None and followed.size:
        warnings.append(
            f"{followed.size} frames (first {followed[0]}, last {followed[-1]}) followed another person than "
            "the runner and were left without a skeleton"
        )
    kps = np.array(raw, dtype=np.float64, copy=True)
    kps[others] = no_pose(kps.shape[1])
    box = np.array(boxes, dtype=np.float64, copy=True)
    box[others] = np.nan
    return kps, box, warnings


def lift_sequence(
    raw: FloatArray,
    t: FloatArray,
    *,
    backend: PoseBackend,
    image_wh: tuple[int, int],
    cleaning: CleaningParams,
    height_m: float | None,
    warnings: tuple[str, ...] = (),
    times: StageTimes | None = None,
) -> LiftedSequence:
    """The post-pass of the runner's posed frames (see the module docstring): 2D cleaning, H36M-17 layout,
    lifter, height scaling.

    ``raw`` ``(T, K, 3)`` keypoints in image pixels (NaN x/y, score 0 where there was no runner; see
    :func:`keep_runner`) at times ``t`` ``(T,)`` seconds; ``image_wh`` is the size of the images the
    pixels refer to. ``raw`` is not modified. Raises the lifter's errors (:class:`~services.errors.InputError`
    when the height cannot be estimated)."""
    skeleton = backend.pose_codec.skeleton
    raw = np.array(raw, dtype=np.float64, copy=True)
    times = times if times is not None else StageTimes()
    start = time.perf_counter()
    cleaned = clean_sequence(raw, t, skeleton, params=cleaning)
    times.clean += time.perf_counter() - start

    start = time.perf_counter()
    family = backend.models.lifter.manifest.family
    kps3d = backend.lift(to_h36m17(cleaned.keypoints, skeleton), image_wh=image_wh)
    units = LIFTER_UNITS.get(family, "model units")
    if height_m is not None:
        kps3d, units = scale_to_height(kps3d, height_m), "m"
    times.lift += time.perf_counter() - start
    return LiftedSequence(
        t=np.asarray(t, dtype=np.float64),
        kps2d_raw=raw,
        kps2d=cleaned.keypoints,
        filled=cleaned.filled,
        swapped=cleaned.swapped,
        swapped_joints=cleaned.swapped_joints,
        kps3d=kps3d,
        units3d=units,
        skeleton=skeleton,
        lifter=family,
        image_wh=image_wh,
        warnings=tuple(warnings),
    )
