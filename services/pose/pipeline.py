"""The analysis use case: a video in, the runner's 2D and 3D skeleton for every frame out.

One function, :func:`analyze_video`, behind every transport (CLI now; HTTP and gRPC later). Frames stream
from the decoder (optionally decoded ahead in a background thread, so decoding overlaps inference) through
detection/tracking and the 2D model; only per-frame keypoints (a few hundred bytes a frame) and a handful of
thumbnails are kept, never the frames themselves.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import cv2
import numpy as np
from numpy.typing import NDArray

from services.errors import NoPersonError, VideoError
from services.pose.backends import PoseBackend
from services.pose.ingest import Frame, VideoInfo, VideoReader
from services.pose.lifting import coco17_to_h36m17, halpe26_to_h36m17, scale_to_height
from services.pose.sequence import CleaningParams, clean_sequence
from services.pose.skeletons import Skeleton
from services.pose.tracking import RunnerTracker, TrackerParams, dominant_segment, pose_quality

FloatArray = NDArray[np.float64]
T = TypeVar("T")

#: units of the lifter's output before any height scaling, by family
LIFTER_UNITS = {"semgcn": "m (average H36M subject scale)", "motionbert": "normalised (crop box = 2)"}


@dataclass(frozen=True)
class AnalysisOptions:
    max_long_side: int | None = 640
    slowmo: float | None = None
    height_m: float | None = None
    tracker: TrackerParams = field(default_factory=TrackerParams)
    cleaning: CleaningParams = field(default_factory=CleaningParams)
    #: frames decoded ahead in a background thread; 0 decodes inline (no overlap)
    prefetch: int = 8
    #: 2D pose requests in flight (frame-level parallelism). With k > 1 a frame's crop comes from the pose
    #: of a frame up to k-1 frames older; detection and re-detection still happen in frame order.
    pose_workers: int = 2
    #: retry a poor pose at once with a fresh detection on the same frame
    retry_poor_pose: bool = True
    #: analyse the frames a truncated or damaged file still yields instead of refusing it
    allow_truncated: bool = False
    sheet_frames: int = 12

    def __post_init__(self) -> None:
        if self.pose_workers < 1:
            raise ValueError(f"pose_workers must be >= 1, got {self.pose_workers}")
        if self.height_m is not None and not 0.5 <= self.height_m <= 2.8:
            raise ValueError(f"runner height must be between 0.5 and 2.8 m, got {self.height_m}")


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


@dataclass
class AnalysisResult:
    info: VideoInfo
    backend: PoseBackend
    options: AnalysisOptions
    skeleton2d: Skeleton
    t: FloatArray  # (T,) real seconds
    boxes: FloatArray  # (T, 4) runner box in original-frame pixels, NaN when none
    detected: NDArray[np.bool_]  # (T,) detector ran on this frame
    kps2d_raw: FloatArray  # (T, K, 3) model output in original-frame pixels
    kps2d: FloatArray  # (T, K, 3) cleaned
    filled: NDArray[np.bool_]  # (T, K)
    swapped: NDArray[np.bool_]  # (T,)
    kps3d: FloatArray  # (T, 17, 3) H36M-17, root-relative
    units3d: str
    thumbnails: list[tuple[int, NDArray[np.uint8]]]
    timings: StageTimes
    warnings: list[str]

    @property
    def frames_with_pose(self) -> int:
        return int(np.isfinite(self.kps2d[:, :, 0]).any(axis=1).sum())


@dataclass
class _Pending:
    """A frame whose 2D pose is being computed."""

    frame: Frame
    box: FloatArray | None
    detected: bool
    kps: FloatArray | None = None
    future: Future[FloatArray] | None = None


@contextmanager
def _shutdown(pool: ThreadPoolExecutor | None) -> Iterator[None]:
    try:
        yield
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Yield ``items`` produced by a background thread at most ``depth`` ahead; errors re-raised here."""
    q: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:  # handed to the consumer
            q.put(("error", exc))

    thread = threading.Thread(target=work, name="decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=5)


def _timed(frames: Iterable[Frame], times: StageTimes) -> Iterator[Frame]:
    it = iter(frames)
    while True:
        start = time.perf_counter()
        frame = next(it, None)
        times.decode += time.perf_counter() - start
        if frame is None:
            return
        yield frame


def _thumbnail(image: NDArray[np.uint8], long_side: int = 360) -> NDArray[np.uint8]:
    h, w = image.shape[:2]
    r = min(1.0, long_side / max(h, w))
    return np.asarray(cv2.resize(image, (round(w * r), round(h * r)), interpolation=cv2.INTER_AREA), np.uint8)


def _sheet_indices(num_frames: int | None, count: int) -> set[int]:
    if not num_frames:
        return set(range(0, 30 * count, 30))
    return {int(i) for i in np.linspace(0, num_frames - 1, count).round()}


def analyze_video(
    path: str | os.PathLike[str],
    backend: PoseBackend,
    options: AnalysisOptions | None = None,
    *,
    progress: Callable[[int, VideoInfo], None] | None = None,
) -> AnalysisResult:
    """Analyse one video. ``progress(frames_done, info)`` is called after every frame."""
    opts = options or AnalysisOptions()
    times = StageTimes()
    t_start = time.perf_counter()
    tracker = RunnerTracker(opts.tracker)
    min_score = opts.tracker.kp_score_threshold
    k = backend.pose_codec.skeleton.num_joints
    nan_pose = np.full((k, 3), np.nan)
    nan_pose[:, 2] = 0.0

    ts: list[float] = []
    poses: list[FloatArray] = []
    boxes: list[FloatArray] = []
    detected: list[bool] = []
    segments: list[int] = []
    thumbs: list[tuple[int, NDArray[np.uint8]]] = []
    wanted: set[int] = set()
    info: VideoInfo | None = None

    def detect(index: int, image: NDArray[np.uint8]) -> FloatArray | None:
        start = time.perf_counter()
        found = backend.detect(image, score_threshold=opts.tracker.det_score_threshold)
        times.detect += time.perf_counter() - start
        return tracker.on_detections(index, found)

    def pose(image: NDArray[np.uint8], box: FloatArray) -> FloatArray:
        start = time.perf_counter()
        out = backend.pose2d(image, box[None])[0]
        times.pose2d += time.perf_counter() - start
        return out

    def finish(p: _Pending) -> None:
        """Take one frame's pose in frame order: update the tracker, retry a poor pose, record."""
        kps = nan_pose if p.box is None else p.future.result() if p.future is not None else p.kps
        assert kps is not None
        box, did_detect, index = p.box, p.detected, p.frame.index
        if box is not None and not tracker.on_pose(index, kps) and opts.retry_poor_pose and not did_detect:
            retry_box, did_detect = detect(index, p.frame.image), True
            if retry_box is not None:
                retry = pose(p.frame.image, retry_box)
                if pose_quality(retry, min_score=min_score) > pose_quality(kps, min_score=min_score):
                    kps, box = retry, retry_box
                tracker.on_pose(index, kps)
        ts.append(p.frame.t)
        poses.append(kps)
        boxes.append(np.full(4, np.nan) if box is None else box)
        detected.append(did_detect)
        segments.append(tracker.segment if box is not None else -1)
        if index in wanted:
            thumbs.append((index, _thumbnail(p.frame.image)))
        times.frames += 1
        if progress is not None and info is not None:
            progress(times.frames, info)

    inflight: deque[_Pending] = deque()
    pool = ThreadPoolExecutor(opts.pose_workers, thread_name_prefix="pose") if opts.pose_workers > 1 else None
    with VideoReader(path, max_long_side=opts.max_long_side, slowmo=opts.slowmo) as reader, _shutdown(pool):
        info = reader.info
        wanted.update(_sheet_indices(info.num_frames, opts.sheet_frames))
        frames = _timed(reader, times)
        if opts.prefetch > 0:
            frames = _prefetch(frames, opts.prefetch)
        for frame in frames:
            did_detect = False
            if tracker.needs_detection(frame.index):
                while inflight:  # the tracker must have seen every earlier pose before choosing
                    finish(inflight.popleft())
                box, did_detect = detect(frame.index, frame.image), True
            else:
                box = tracker.box
            pending = _Pending(frame=frame, box=box, detected=did_detect)
            if box is not None:
                if pool is None:
                    pending.kps = pose(frame.image, box)
                else:
                    pending.future = pool.submit(pose, frame.image, box)
            inflight.append(pending)
            while len(inflight) >= opts.pose_workers:
                finish(inflight.popleft())
        while inflight:
            finish(inflight.popleft())
        warnings = list(reader.warnings)
        if reader.damaged and not opts.allow_truncated:
            raise VideoError(
                f"{os.fspath(path)} is truncated or damaged ({reader.damaged}); "
                "pass --allow-truncated to analyse the frames that decode"
            )

    times.detections = tracker.detections
    if not poses or not np.isfinite(np.stack(poses)[:, :, 0]).any():
        raise NoPersonError(
            f"no person found in {os.fspath(path)}: the detector found nobody in {len(poses)} frames"
        )
    raw = np.stack(poses)
    box_arr = np.stack(boxes)
    seg = np.asarray(segments)
    runner = dominant_segment(seg, box_arr)
    others = seg != runner
    if runner is not None and (others & (seg >= 0)).any():
        dropped = np.flatnonzero(others & (seg >= 0))
        warnings.append(
            f"{len(dropped)} frames (first {dropped[0]}, last {dropped[-1]}) followed another person "
            "than the runner and were left without a skeleton"
        )
    raw[others] = nan_pose
    box_arr[others] = np.nan
    scale = info.width / info.out_width
    raw[..., :2] *= scale
    box_arr *= scale
    t = np.asarray(ts)

    start = time.perf_counter()
    cleaned = clean_sequence(raw, t, backend.pose_codec.skeleton, params=opts.cleaning)
    times.clean = time.perf_counter() - start

    start = time.perf_counter()
    to_h36m = halpe26_to_h36m17 if backend.pose_codec.skeleton.num_joints == 26 else coco17_to_h36m17
    kps3d = backend.lift(to_h36m(cleaned.keypoints), image_wh=(info.width, info.height))
    units = LIFTER_UNITS.get(backend.models.lifter.manifest.family, "model units")
    if opts.height_m is not None:
        kps3d, units = scale_to_height(kps3d, opts.height_m), "m"
    times.lift = time.perf_counter() - start
    times.total = time.perf_counter() - t_start

    return AnalysisResult(
        info=info,
        backend=backend,
        options=opts,
        skeleton2d=backend.pose_codec.skeleton,
        t=t,
        boxes=box_arr,
        detected=np.asarray(detected),
        kps2d_raw=raw,
        kps2d=cleaned.keypoints,
        filled=cleaned.filled,
        swapped=cleaned.swapped,
        kps3d=kps3d,
        units3d=units,
        thumbnails=thumbs,
        timings=times,
        warnings=warnings,
    )
