"""The analysis use case: a video in, the runner's 2D and 3D skeleton for every frame out.

One function, :func:`analyze_video`, behind every transport (the CLI, the HTTP and gRPC gateway). Frames
stream from the decoder (optionally decoded ahead in a background thread, so decoding overlaps inference)
through the per-frame step (:class:`services.pose.stages.FramePoser`, with several 2D requests in flight);
only per-frame keypoints (a few hundred bytes a frame) and a handful of thumbnails are kept, never the frames
themselves. The sequence post-pass is :func:`services.pose.stages.lift_sequence`, as for live sessions.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import cv2
import numpy as np
from numpy.typing import NDArray

from services.errors import NoPersonError, VideoError
from services.pose.backends import ModelSet, PoseBackend
from services.pose.ingest import Frame, VideoInfo, VideoReader
from services.pose.sequence import CleaningParams
from services.pose.skeletons import Skeleton
from services.pose.stages import FramePoser, LiftedSequence, StageTimes, keep_runner, lift_sequence
from services.pose.tracking import TrackerParams

FloatArray = NDArray[np.float64]
T = TypeVar("T")


@dataclass(frozen=True)
class AnalysisOptions:
    """How one video is analysed: decoding size and time base, the runner's height, tracking, cleaning and
    the frame loop's parallelism."""

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
class AnalysisResult:
    """One analysed video: its metadata, the runner's analysed sequence (:class:`LiftedSequence`) and
    what the frame loop recorded besides (boxes, detector runs, contact-sheet thumbnails, timings)."""

    info: VideoInfo
    models: ModelSet
    options: AnalysisOptions
    sequence: LiftedSequence
    boxes: FloatArray  # (T, 4) runner box in original-frame pixels, NaN when none
    detected: NDArray[np.bool_]  # (T,) detector ran on this frame
    thumbnails: list[tuple[int, NDArray[np.uint8]]]
    timings: StageTimes
    warnings: list[str]

    @property
    def t(self) -> FloatArray:
        """(T,) real seconds."""
        return self.sequence.t

    @property
    def skeleton2d(self) -> Skeleton:
        return self.sequence.skeleton

    @property
    def kps2d_raw(self) -> FloatArray:
        """(T, K, 3) model output in original-frame pixels."""
        return self.sequence.kps2d_raw

    @property
    def kps2d(self) -> FloatArray:
        """(T, K, 3) cleaned."""
        return self.sequence.kps2d

    @property
    def filled(self) -> NDArray[np.bool_]:
        return self.sequence.filled

    @property
    def swapped(self) -> NDArray[np.bool_]:
        return self.sequence.swapped

    @property
    def kps3d(self) -> FloatArray:
        """(T, 17, 3) H36M-17, root-relative."""
        return self.sequence.kps3d

    @property
    def units3d(self) -> str:
        return self.sequence.units3d

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


def _prefetch(items: Iterable[T], depth: int) -> Generator[T, None, None]:
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


def _timed(frames: Iterable[Frame], times: StageTimes) -> Generator[Frame, None, None]:
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
    name: str | None = None,
) -> AnalysisResult:
    """Analyse one video. ``progress(frames_done, info)`` is called after every frame (an exception it
    raises stops the analysis). Messages name the video ``name`` (default: its path)."""
    shown = os.fspath(path) if name is None else name
    opts = options or AnalysisOptions()
    times = StageTimes()
    t_start = time.perf_counter()
    poser = FramePoser(backend, opts.tracker, retry_poor_pose=opts.retry_poor_pose, times=times)

    ts: list[float] = []
    poses: list[FloatArray] = []
    boxes: list[FloatArray] = []
    detected: list[bool] = []
    segments: list[int] = []
    thumbs: list[tuple[int, NDArray[np.uint8]]] = []
    wanted: set[int] = set()
    info: VideoInfo | None = None

    def finish(p: _Pending) -> None:
        """Take one frame's pose in frame order (the tracker sees every pose in order) and record it."""
        kps = p.future.result() if p.future is not None else p.kps
        done = poser.finish(p.frame.index, p.frame.image, p.box, p.detected, kps)
        ts.append(p.frame.t)
        poses.append(done.kps)
        boxes.append(np.full(4, np.nan) if done.box is None else done.box)
        detected.append(done.detected)
        segments.append(done.segment)
        if p.frame.index in wanted:
            thumbs.append((p.frame.index, _thumbnail(p.frame.image)))
        times.frames += 1
        if progress is not None and info is not None:
            progress(times.frames, info)

    inflight: deque[_Pending] = deque()
    pool = ThreadPoolExecutor(opts.pose_workers, thread_name_prefix="pose") if opts.pose_workers > 1 else None
    reader_of = VideoReader(path, max_long_side=opts.max_long_side, slowmo=opts.slowmo, name=name)
    with reader_of as reader, _shutdown(pool):
        info = reader.info
        wanted.update(_sheet_indices(info.num_frames, opts.sheet_frames))
        frames = _timed(reader, times)
        if opts.prefetch > 0:
            frames = _prefetch(frames, opts.prefetch)
        # closed before the reader: a failing pose call must stop the decode thread first
        with closing(frames):
            for frame in frames:
                if poser.needs_detection(frame.index):
                    while inflight:  # the tracker must have seen every earlier pose before choosing
                        finish(inflight.popleft())
                box, did_detect = poser.locate(frame.index, frame.image)
                pending = _Pending(frame=frame, box=box, detected=did_detect)
                if box is not None:
                    if pool is None:
                        pending.kps = poser.pose(frame.image, box)
                    else:
                        pending.future = pool.submit(poser.pose, frame.image, box)
                inflight.append(pending)
                while len(inflight) >= opts.pose_workers:
                    finish(inflight.popleft())
        while inflight:
            finish(inflight.popleft())
        warnings = list(reader.warnings)
        if reader.damaged and not opts.allow_truncated:
            raise VideoError(
                f"{shown} is truncated or damaged ({reader.damaged}); "
                "pass --allow-truncated to analyse the frames that decode"
            )

    times.detections = poser.tracker.detections
    if not poses or not np.isfinite(np.stack(poses)[:, :, 0]).any():
        raise NoPersonError(f"no person found in {shown}: the detector found nobody in {len(poses)} frames")
    scale = info.width / info.out_width  # keypoints and boxes in original-frame pixels
    raw = np.stack(poses)
    raw[..., :2] *= scale
    raw, box_arr, followed = keep_runner(raw, np.stack(boxes) * scale, np.asarray(segments))
    sequence = lift_sequence(
        raw,
        np.asarray(ts),
        backend=backend,
        image_wh=(info.width, info.height),
        cleaning=opts.cleaning,
        height_m=opts.height_m,
        warnings=tuple(followed),
        times=times,
    )
    times.total = time.perf_counter() - t_start
    return AnalysisResult(
        info=info,
        models=backend.models,
        options=opts,
        sequence=sequence,
        boxes=box_arr,
        detected=np.asarray(detected),
        thumbnails=thumbs,
        timings=times,
        warnings=warnings + list(sequence.warnings),
    )
