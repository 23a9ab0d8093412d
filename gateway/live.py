"""The live-streaming core behind the gRPC ``StreamFrames`` call: frames in, per-frame 2D keypoints out at
once and, as steps complete, per-step running metrics.

:class:`LiveSession` runs the offline pipeline's per-frame logic one frame at a time: the detector on the
first frame, every ``det_interval`` frames and whenever the pose is poor (the
:class:`~services.pose.tracking.RunnerTracker` decides), the box from the previous pose in between, and a
poor pose retried at once with a fresh detection. Only the last ``window_s`` seconds of raw keypoints are
kept. Every ``metrics_every_s`` seconds of stream time :meth:`LiveSession.new_steps` cleans that window,
lifts it to 3D and asks the kinematics engine for its steps, exactly as an offline analysis of the window
would, and hands back the steps not reported before.

A step is reported once its stride is over (its foot's next strike, about two step times after its own)
and ``settle_s`` more seconds have streamed in, so that its events and its stride metrics no longer depend
on where the window ends; a step striking within ``_LEAD_S`` of the start of a window that has slid is not
reported from it (the filters there lack the frames before); a strike is never reported twice, however
slightly the windows place it.
``new_steps(final=True)`` at the end of a stream reports the steps still held back.

A window analysis (cleaning, lifting, kinematics: 0.1-0.5 s for a 10 s window on a 2-core CPU) takes
several frame times. ``new_steps`` is :meth:`LiveSession.take_window` (cheap: which frames, on the thread
that pushes frames) then :meth:`LiveSession.steps_of` (the analysis, which may run on another thread while
frames go on being posed), so a server can keep answering frames while a window is analysed.
"""

from __future__ import annotations

import math
import struct
import time
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from gateway.core import AnalysisSpec, Engine, running_metrics
from services.errors import FrameRateError, InputError, ShapeError
from services.kinematics.client import KinematicsClient
from services.kinematics.events import MAX_CADENCE_SPM
from services.kinematics.schema import KinematicsResponse, StepOut, TimeBaseIn
from services.pose.backends import PoseBackend
from services.pose.stages import FramePoser, keep_runner, lift_sequence

__all__ = ["MAX_IMAGE_SIDE", "LiveFrame", "LiveSession", "Window", "decode_image"]

FloatArray = NDArray[np.float64]

#: the longest image side accepted, in pixels
MAX_IMAGE_SIDE = 4096
#: the window never holds more frames than this frame rate fills it with, whatever the timestamps say
MAX_FPS = 240.0
#: a strike this close to one already reported (a third of the shortest running step) is the same strike
_SAME_STRIKE_S = 60.0 / MAX_CADENCE_SPM / 3
#: steps striking this close (seconds) to the start of a window that has slid are not reported from it: the
#: filters and the event anchors there lack the frames before
_LEAD_S = 0.5


# --------------------------------------------------------------------------------------------------------
# image decoding


def _declared_size(data: bytes) -> tuple[str, tuple[int, int] | None] | None:
    """(format, (width, height) or None if unreadable) from the header of a PNG, JPEG or WebP image;
    None for any other format."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if data[12:16] != b"IHDR" or len(data) < 24:
            return "PNG", None
        w, h = struct.unpack(">II", data[16:24])
        return "PNG", (w, h)
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                return "JPEG", None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return "JPEG", (w, h)
            i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
        return "JPEG", None
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return "WebP", (
                int.from_bytes(data[24:27], "little") + 1,
                int.from_bytes(data[27:30], "little") + 1,
            )
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return "WebP", ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return "WebP", (w & 0x3FFF, h & 0x3FFF)
        return "WebP", None
    return None


def decode_image(data: bytes) -> NDArray[np.uint8]:
    """A JPEG, PNG or WebP image -> RGB ``(H, W, 3)`` uint8, upright (EXIF orientation applied).

    Raises :class:`InputError` for empty or undecodable bytes, another format, or a side longer than
    :data:`MAX_IMAGE_SIDE` (checked on the header, before any pixel is decoded)."""
    if not data:
        raise InputError("the frame holds no image data (0 bytes)")
    header = _declared_size(data)
    if header is None:
        raise InputError(f"the frame is not a JPEG, PNG or WebP image ({len(data)} bytes)")
    kind, size = header
    if size is None or min(size) < 1:
        raise InputError(f"the frame is a damaged {kind} image: its size cannot be read")
    if max(size) > MAX_IMAGE_SIDE:
        raise InputError(
            f"the frame is {size[0]}x{size[1]} px; sides longer than {MAX_IMAGE_SIDE} px are refused "
            "(send frames downscaled to about 640-1280 px)"
        )
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise InputError(f"the frame's {kind} image data cannot be decoded ({len(data)} bytes)")
    if max(bgr.shape[:2]) > MAX_IMAGE_SIDE:
        raise InputError(f"the frame is {bgr.shape[1]}x{bgr.shape[0]} px, over {MAX_IMAGE_SIDE} px")
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


# --------------------------------------------------------------------------------------------------------
# live session


@dataclass(frozen=True)
class LiveFrame:
    """The answer to one pushed frame."""

    index: int  # 0-based position in the stream
    t: float  # seconds, as given by the client
    keypoints: FloatArray | None  # (K, 3) x, y (pixels of the image as sent), score; None: no runner
    box: FloatArray | None  # (4,) x0 y0 x1 y1 of the runner, pixels of the image as sent
    skeleton: str  # layout of ``keypoints``, e.g. "coco17"


@dataclass(frozen=True)
class _Record:
    """What the window keeps of one frame (a few hundred bytes)."""

    index: int
    t: float
    kps: FloatArray  # (K, 3), NaN x/y when none
    box: FloatArray  # (4,), NaN when none
    segment: int  # tracker segment id, -1 when no runner


@dataclass(frozen=True)
class Window:
    """The frames one window analysis looks at (taken by :meth:`LiveSession.take_window`)."""

    records: tuple[_Record, ...]
    final: bool


class LiveSession:
    """One live stream. One caller pushes frames in order.

    ``push`` answers each frame's 2D pose; ``new_steps`` (cheap to call after every frame: it computes
    only every ``metrics_every_s`` seconds of stream time, on the last ``window_s`` seconds) returns the
    steps completed since its last answer. ``settle_s``: how long after a step's stride ends it is
    reported. Frames are posed at the spec's long side (larger ones are downscaled first, as offline);
    keypoints and boxes come back in the pixels of the image as sent.

    Threads: ``push`` and ``take_window`` on one thread (or never at the same time); ``steps_of`` may run
    on another thread while frames are pushed, one call at a time, in the order the windows were taken.
    """

    def __init__(
        self,
        engine: Engine,
        spec: AnalysisSpec,
        *,
        metrics_every_s: float = 1.0,
        window_s: float = 10.0,
        settle_s: float = 0.25,
    ) -> None:
        if not (math.isfinite(metrics_every_s) and metrics_every_s > 0):
            raise InputError(f"metrics_every_s must be > 0, got {metrics_every_s}")
        if not (math.isfinite(window_s) and 2.0 <= window_s <= 60.0):
            raise InputError(f"window_s must be within 2-60 s (at least two strides), got {window_s}")
        if not (math.isfinite(settle_s) and 0 <= settle_s < window_s / 2):
            raise InputError(f"settle_s must be within [0, window_s / 2), got {settle_s}")
        self.spec = spec
        self.options = spec.options(engine.settings)
        self.metrics_every_s = metrics_every_s
        self.window_s = window_s
        self.settle_s = settle_s
        models = engine.models(spec)
        self._stack = ExitStack()
        try:
            self.backend: PoseBackend = self._stack.enter_context(engine.backend(models, pose_workers=1))
            self._kinematics: KinematicsClient = self._stack.enter_context(engine.kinematics())
        except BaseException:
            self._stack.close()
            raise
        self.skeleton = self.backend.pose_codec.skeleton
        self._poser = FramePoser(
            self.backend, self.options.tracker, retry_poor_pose=self.options.retry_poor_pose
        )
        self._window: deque[_Record] = deque(maxlen=math.ceil(window_s * MAX_FPS) + 1)
        self._size: tuple[int, int] | None = None  # (width, height) of the images as sent
        self._frames = 0
        self._with_pose = 0
        self._last_t = -math.inf
        self._metrics_t: float | None = None  # stream time of the last kinematics run
        self._reported_t = -math.inf  # strike time of the last step reported
        self._reported = 0
        self._cadences: list[float] = []  # of the reported steps whose cadence the summaries would use
        self._windows = 0  # window analyses run
        self._window_s = 0.0  # seconds spent in them
        self._closed = False

    # -- frames ------------------------------------------------------------------------------------------

    def push(self, t: float, image: NDArray[np.uint8]) -> LiveFrame:
        """Pose one frame taken at ``t`` seconds (strictly increasing) of RGB ``(H, W, 3)`` uint8."""
        if self._closed:
            raise RuntimeError("the live session is closed")
        t = float(t)
        if not math.isfinite(t) or t <= self._last_t:
            raise FrameRateError(f"frame times must increase strictly: got t={t} after t={self._last_t}")
        if (
            not isinstance(image, np.ndarray)
            or image.dtype != np.uint8
            or image.ndim != 3
            or image.shape[2] != 3
        ):
            what = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ShapeError(f"a frame must be an RGB uint8 (H, W, 3) image, got {what}")
        h, w = image.shape[:2]
        if self._size is None:
            if min(h, w) < 16 or max(h, w) > MAX_IMAGE_SIDE:
                raise InputError(f"frame size {w}x{h} px is out of range (16-{MAX_IMAGE_SIDE} px a side)")
            self._size = (w, h)
        elif self._size != (w, h):
            raise InputError(
                f"the frame size changed mid-stream from {self._size[0]}x{self._size[1]} to {w}x{h} px"
            )
        self._last_t = t
        index = self._frames
        work, scale = self._fit(image)
        posed = self._poser.step(index, work)
        kps, box = posed.kps * np.array([scale, scale, 1.0]), posed.box
        if box is not None:
            box = box * scale
            self._with_pose += 1
        self._window.append(
            _Record(
                index=index,
                t=t,
                kps=kps,
                box=box if box is not None else np.full(4, np.nan),
                segment=posed.segment,
            )
        )
        while self._window and t - self._window[0].t > self.window_s:
            self._window.popleft()
        if self._metrics_t is None:
            self._metrics_t = t
        self._frames += 1
        return LiveFrame(
            index=index,
            t=t,
            keypoints=kps if box is not None else None,
            box=box,
            skeleton=self.skeleton.name,
        )

    def _fit(self, image: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], float]:
        """The image downscaled to the analysis' long side (as offline) and the factor back to its pixels."""
        h, w = image.shape[:2]
        limit = self.options.max_long_side
        if limit is None or max(h, w) <= limit:
            return image, 1.0
        r = limit / max(h, w)
        size = (max(1, round(w * r)), max(1, round(h * r)))
        small = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)
        return small, w / size[0]

    # -- steps -------------------------------------------------------------------------------------------

    def new_steps(self, *, final: bool = False) -> list[StepOut]:
        """The steps completed since the last answer, each reported once, in stream order; ``[]`` until
        ``metrics_every_s`` seconds of stream time have passed since the last kinematics run, and while
        the window holds no complete step. ``final=True``: run now and report every step found (the end
        of the stream). Event indices are stream frame indices. Same as :meth:`take_window` then
        :meth:`steps_of`."""
        window = self.take_window(final=final)
        return [] if window is None else self.steps_of(window)

    @property
    def steps_due(self) -> bool:
        """Whether ``metrics_every_s`` seconds of stream time have passed since the last window taken."""
        return self._metrics_t is not None and self._last_t - self._metrics_t >= self.metrics_every_s

    def take_window(self, *, final: bool = False) -> Window | None:
        """The frames a window analysis should look at now (a copy; cheap), or None when none is due
        (``final=True``: whenever the window holds frames). Call on the thread that pushes frames."""
        if self._metrics_t is None or not self._window or not (final or self.steps_due):
            return None
        self._metrics_t = self._last_t
        return Window(tuple(self._window), final)

    def steps_of(self, window: Window) -> list[StepOut]:
        """The steps of ``window`` not reported before (see :meth:`new_steps`). Thread-safe with
        :meth:`push`; call for the windows in the order they were taken."""
        start = time.perf_counter()
        try:
            response = self._analyze_window(window.records)
        except InputError:  # too short yet, nobody in view, ...: no steps for now
            return []
        finally:
            self._windows += 1
            self._window_s += time.perf_counter() - start
        records = window.records
        end = records[-1].t - self.settle_s
        first = records[0].index
        begin = records[0].t + _LEAD_S if first > 0 else -math.inf
        out: list[StepOut] = []
        for step in sorted(response.steps, key=lambda s: s.strike.t):
            if step.strike.t <= self._reported_t + _SAME_STRIKE_S or step.strike.t < begin:
                continue
            if not (window.final or _settled(step, end)):
                break  # this step and the later ones wait for more frames
            out.append(_rebased(step, first))
            self._reported_t = step.strike.t
            self._reported += 1
            cadence = step.metrics.get("cadence_spm")
            if cadence is not None and "cadence_spm" not in step.excluded:
                self._cadences.append(cadence)
        return out

    def _analyze_window(self, records: tuple[_Record, ...]) -> KinematicsResponse:
        """The window's steps: :func:`~services.pose.stages.keep_runner`, then
        :func:`~gateway.core.running_metrics` on :func:`~services.pose.stages.lift_sequence`, as an offline
        analysis of the same frames does."""
        assert self._size is not None
        if len(records) < 2:
            raise InputError("the window holds fewer than two frames")
        raw, _, _ = keep_runner(
            np.stack([r.kps for r in records]),
            np.stack([r.box for r in records]),
            np.array([r.segment for r in records]),
        )
        if not np.isfinite(raw[..., 0]).any():
            raise InputError("no runner in the window")
        relift = partial(
            lift_sequence,
            backend=self.backend,
            image_wh=self._size,
            cleaning=self.options.cleaning,
            height_m=self.options.height_m,
        )
        seq = relift(raw, np.array([r.t for r in records]))
        clock = TimeBaseIn(factor=1.0, source="clock")  # the client's capture times are real time
        return running_metrics(seq, self._kinematics, self.spec.runner, relift=relift, time_base=clock)[1]

    # -- bookkeeping -------------------------------------------------------------------------------------

    @property
    def buffered_frames(self) -> int:
        """Frames held in the window."""
        return len(self._window)

    def summary(self) -> dict[str, Any]:
        """Counts of the stream so far, and where its time went (``timing_ms``: mean milliseconds per
        detector call, per frame in the 2D model (retries included) and per window analysis)."""
        times, detections = self._poser.times, self._poser.tracker.detections
        return {
            "frames": self._frames,
            "frames_with_pose": self._with_pose,
            "detections": detections,
            "steps": self._reported,
            "cadence_spm": round(float(np.mean(self._cadences)), 2) if self._cadences else None,
            "timing_ms": {
                "detect_per_call": _ms(times.detect, detections),
                "pose2d_per_frame": _ms(times.pose2d, self._frames),
                "window_analyses": self._windows,
                "window_per_analysis": _ms(self._window_s, self._windows),
            },
        }

    def close(self) -> None:
        self._closed = True
        self._window.clear()
        self._stack.close()

    def __enter__(self) -> LiveSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _ms(seconds: float, count: int) -> float | None:
    return round(seconds / count * 1000, 2) if count else None


def _settled(step: StepOut, end: float) -> bool:
    """Whether ``step``'s stride (strike -> the same foot's next strike, about two steps) ends by ``end``."""
    if step.next_strike is None:
        return False
    return 2 * step.next_strike.t - step.strike.t <= end


def _rebased(step: StepOut, first: int) -> StepOut:
    """``step`` with its events' frame indices moved from window to stream positions."""
    events = {
        name: None if e is None else e.model_copy(update={"index": e.index + first})
        for name, e in (("strike", step.strike), ("toe_off", step.toe_off), ("next_strike", step.next_strike))
    }
    return step.model_copy(update=events)
