"""Streaming video ingest on FFmpeg (PyAV): upright, downscaled RGB frames with real-time timestamps.

:class:`VideoReader` decodes one frame at a time (never the whole video), converts and downscales it in a
single swscale call, then applies the container's display-matrix rotation so every frame comes out upright.
Frame times are the true per-frame presentation timestamps (variable frame rate safe), made relative to the
first frame and corrected for slow motion, so ``Frame.t`` is always in real-life seconds.

Conventions:

* ``rotation_deg`` is the clockwise rotation applied to the coded picture. FFmpeg reports the display matrix
  as a counter-clockwise angle (``VideoFrame.rotation``); an iPhone portrait clip reports -90, which players
  (and ``ffmpeg``'s autorotate) show rotated 90 degrees clockwise. Mirror flips in the matrix are ignored.
* ``time_scale`` is the slow-motion factor: real seconds = media seconds / ``time_scale``. It comes from the
  capture-rate metadata some phones write (``com.android.capture.fps`` ...) or from an explicit ``slowmo``.

PyAV/FFmpeg and OS errors met while reading are translated here, and only here, into
:class:`services.errors.VideoError` (or :class:`~services.errors.NoVideoStreamError`) with one human message
naming the file. Arguments that make no sense raise :class:`~services.errors.InputError`.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType

import av
import av.error
import cv2
import numpy as np
from av.container import InputContainer
from av.stream import Disposition
from av.video.frame import VideoFrame
from av.video.reformatter import Interpolation, VideoReformatter
from av.video.stream import VideoStream
from numpy.typing import NDArray

from services.errors import InputError, NoVideoStreamError, VideoError

__all__ = [
    "CAPTURE_FPS_KEYS",
    "Frame",
    "VideoHeader",
    "VideoInfo",
    "VideoReader",
    "check_complete",
    "probe",
    "read_header",
]

#: Metadata keys (container or stream level) holding the capture frame rate of slow-motion phone clips.
CAPTURE_FPS_KEYS = ("com.android.capture.fps", "com.apple.quicktime.capture.fps")
#: Capture rates outside this range are treated as absent (phones record 1-960 fps).
_CAPTURE_FPS_RANGE = (1.0, 2000.0)
#: A capture rate within this relative distance of the playback rate means "not slowed down".
_SAME_RATE_TOLERANCE = 0.1
#: Used when the container declares no frame rate at all.
_FALLBACK_FPS = 30.0
#: Demuxers that read still images; a picture is not a video.
_IMAGE_FORMATS = frozenset({"image2", "image2pipe"})
_CV2_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
#: Top-level ISO-BMFF (MP4/MOV) boxes that may open a file.
_ISO_FIRST_BOXES = frozenset({b"ftyp", b"styp", b"wide", b"free", b"skip", b"mdat", b"moov", b"pnot"})


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the video, plus the geometry of the delivered frames."""

    path: str
    width: int  # displayed size after rotation, before downscale
    height: int
    out_width: int  # size of delivered frames (after rotation and downscale)
    out_height: int
    rotation_deg: int  # clockwise degrees applied to make the picture upright: 0, 90, 180 or 270
    fps_nominal: float  # container/stream average frame rate (media time)
    capture_fps: float | None  # capture-rate metadata (slow-motion phones), else None
    time_scale: float  # slow-motion factor: real seconds = media seconds / time_scale (1.0 = real time)
    fps: float  # frames per real second = fps_nominal * time_scale
    num_frames: int | None  # as declared by the container (None if unknown)
    duration_s: float | None  # media duration in real seconds if known
    codec: str


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame: upright, downscaled RGB with its real-time timestamp."""

    index: int  # 0-based decode order index
    t: float  # real seconds since the first frame (true pts, slow-motion corrected)
    image: NDArray[np.uint8]  # (out_height, out_width, 3) RGB, C-contiguous, upright, downscaled


# --------------------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------------------


def _rotation_of(display_rotation: float) -> int:
    """Clockwise degrees (0, 90, 180, 270) that make a frame upright, from FFmpeg's display-matrix angle.

    FFmpeg (``VideoFrame.rotation``, ``av_display_rotation_get``) reports the angle the matrix rotates the
    picture counter-clockwise, so -90 means "show it rotated 90 degrees clockwise". Angles that are not a
    multiple of 90 are rounded to the nearest quarter turn.
    """
    if not math.isfinite(display_rotation):
        return 0
    return round(-display_rotation / 90.0) * 90 % 360


def _display_size(
    coded_width: int, coded_height: int, rotation_deg: int, sar: Fraction | None
) -> tuple[int, int]:
    """Displayed (width, height): coded size stretched by the sample aspect ratio, then rotated."""
    width = coded_width
    if sar is not None and sar > 0 and sar != 1:
        width = max(1, round(coded_width * sar))
    if rotation_deg in (90, 270):
        return coded_height, width
    return width, coded_height


def _out_size(width: int, height: int, max_long_side: int | None) -> tuple[int, int]:
    """Size after shrinking so the long side is at most ``max_long_side``; aspect kept, never upscaled."""
    long_side = max(width, height)
    if max_long_side is None or long_side <= max_long_side:
        return width, height
    scale = max_long_side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def _parse_fps(value: str | None) -> float | None:
    """A plausible capture frame rate from a metadata string such as ``"240.000000"``, else None."""
    if value is None:
        return None
    try:
        fps = float(value.strip())
    except ValueError:
        return None
    low, high = _CAPTURE_FPS_RANGE
    if not math.isfinite(fps) or not low <= fps <= high:
        return None
    return fps


def _capture_fps(*metadata: Mapping[str, str]) -> float | None:
    """Capture frame rate from the first metadata dict (stream, then container) that has a usable one.

    Known keys come first; any other key ending in ``capture.fps`` is accepted as a fallback.
    """
    for meta in metadata:
        lowered = {key.lower(): value for key, value in meta.items()}
        for key in CAPTURE_FPS_KEYS:
            fps = _parse_fps(lowered.get(key))
            if fps is not None:
                return fps
        for key, value in lowered.items():
            if key.endswith("capture.fps"):
                fps = _parse_fps(value)
                if fps is not None:
                    return fps
    return None


def _time_scale(capture_fps: float | None, fps_nominal: float, slowmo: float | None = None) -> float:
    """Slow-motion factor (real seconds = media seconds / factor).

    An explicit ``slowmo`` wins. Otherwise capture rate / playback rate, snapped to 1.0 when the two agree
    within 10% (the metadata merely restates the frame rate of a normal-speed clip).
    """
    if slowmo is not None:
        return float(slowmo)
    if capture_fps is None or not fps_nominal > 0:
        return 1.0
    ratio = capture_fps / fps_nominal
    if abs(ratio - 1.0) <= _SAME_RATE_TOLERANCE:
        return 1.0
    return ratio


def _nominal_fps(stream: VideoStream) -> float | None:
    """The stream's average frame rate in media time, falling back to FFmpeg's guessed and base rates."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return None


def _duration_s(stream: VideoStream, container: InputContainer) -> float | None:
    """Media duration in seconds from the stream, else from the container, else None."""
    if stream.duration is not None and stream.duration > 0 and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


@dataclass(frozen=True)
class _BoxScan:
    """Top-level structure of a file, as far as ISO-BMFF (MP4/MOV) boxes go."""

    is_iso: bool  # starts like an MP4/MOV file
    has_moov: bool  # the index box is present
    truncated: bool  # a top-level box runs past the end of the file


def _scan_iso_boxes(path: str, max_boxes: int = 4096) -> _BoxScan:
    """Walk the top-level MP4/MOV boxes (headers only) to tell a truncated file from a non-video."""
    not_iso = _BoxScan(is_iso=False, has_moov=False, truncated=False)
    try:
        total = os.path.getsize(path)
        with open(path, "rb") as fh:
            pos, has_moov = 0, False
            for _ in range(max_boxes):
                if pos >= total:
                    break
                fh.seek(pos)
                head = fh.read(16)
                if len(head) < 8:
                    return _BoxScan(is_iso=pos > 0, has_moov=has_moov, truncated=pos > 0)
                size, kind = struct.unpack(">I4s", head[:8])
                if pos == 0 and kind not in _ISO_FIRST_BOXES:
                    return not_iso
                has_moov = has_moov or kind == b"moov"
                if size == 1:
                    if len(head) < 16:
                        return _BoxScan(is_iso=True, has_moov=has_moov, truncated=True)
                    size = struct.unpack(">Q", head[8:16])[0]
                elif size == 0:  # box runs to the end of the file
                    size = total - pos
                if size < 8:
                    break  # corrupt header; nothing more to learn
                if pos + size > total:
                    return _BoxScan(is_iso=True, has_moov=has_moov, truncated=True)
                pos += size
            return _BoxScan(is_iso=total > 0, has_moov=has_moov, truncated=False)
    except OSError:
        return not_iso


def _ffmpeg_reason(exc: BaseException) -> str:
    """The human part of a PyAV/OS error, without errno numbers or the file name."""
    strerror = getattr(exc, "strerror", None)  # set on OSError and on every av.error.FFmpegError
    if strerror:
        return str(strerror)
    return str(exc) or type(exc).__name__


def _open_error(path: str, exc: BaseException, name: str | None = None) -> VideoError:
    """Translate an exception raised while opening ``path`` into one clear :class:`VideoError` naming the
    file ``name`` (default: its path)."""
    shown = path if name is None else name
    if isinstance(exc, FileNotFoundError):
        return VideoError(f"Video file '{shown}' does not exist.")
    if isinstance(exc, IsADirectoryError):
        return VideoError(f"'{shown}' is a directory, not a video file.")
    if isinstance(exc, PermissionError):
        return VideoError(f"Video file '{shown}' cannot be read: permission denied.")
    if isinstance(exc, av.error.InvalidDataError):
        scan = _scan_iso_boxes(path)
        if scan.is_iso and not scan.has_moov:
            return VideoError(
                f"Video file '{shown}' is truncated or incomplete: its MP4/QuickTime index ('moov atom') is "
                "missing. Was the recording, upload or copy interrupted?"
            )
        return VideoError(f"'{shown}' is not a video file FFmpeg can read (unknown or corrupt format).")
    return VideoError(f"Video file '{shown}' cannot be opened: {_ffmpeg_reason(exc)}.")


def _check_file(path: str, name: str | None = None) -> None:
    """Fail fast, with a clear message, on a missing, non-regular or empty file (named ``name``)."""
    shown = path if name is None else name
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _open_error(path, exc, name) from exc
    except ValueError as exc:  # e.g. an embedded NUL byte
        raise VideoError(f"'{shown}' is not a valid file path.") from exc
    if os.path.isdir(path):
        raise VideoError(f"'{shown}' is a directory, not a video file.")
    if st.st_size == 0:
        raise VideoError(f"Video file '{shown}' is empty (0 bytes).")


def _pick_stream(container: InputContainer) -> VideoStream | None:
    """The main video stream: not cover art, default disposition first, then the largest picture."""
    candidates = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not candidates:
        return None
    return max(candidates, key=lambda s: (bool(s.disposition & Disposition.default), s.width * s.height))


def _validate_args(max_long_side: int | None, slowmo: float | None, threads: int) -> None:
    """Raise :class:`InputError` on nonsensical reader options."""
    if max_long_side is not None and (
        isinstance(max_long_side, bool) or not isinstance(max_long_side, int) or max_long_side <= 0
    ):
        raise InputError(
            f"max_long_side must be a positive whole number of pixels or None, got {max_long_side!r}."
        )
    if slowmo is not None and (
        isinstance(slowmo, bool)
        or not isinstance(slowmo, int | float)
        or not math.isfinite(slowmo)
        or slowmo <= 0
    ):
        raise InputError(
            "slowmo must be a positive slow-motion factor (4 = the clip plays 4x slower than real life) "
            f"or None, got {slowmo!r}."
        )
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise InputError(f"threads must be a whole number >= 0 (0 = automatic), got {threads!r}.")


# --------------------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------------------


class VideoReader:
    """Single-pass, streaming video reader; use as a context manager.

    Opening validates the file and decodes the first frame (display rotation lives in frame side data), so
    bad input raises :class:`VideoError` / :class:`NoVideoStreamError` here rather than mid-pipeline. If the
    stream breaks after some frames (truncated or corrupt file), iteration stops cleanly, a message is
    appended to :attr:`warnings` and :attr:`damaged` holds it (None while the file reads cleanly); what to do
    with a partial video is the caller's decision.

    ``max_long_side``: shrink so the long side is at most this many pixels (None = full size).
    ``slowmo``: slow-motion factor overriding capture-rate metadata (4 = plays 4x slower than real life).
    ``threads``: decoder thread count (0 = FFmpeg's automatic choice).
    ``name``: how messages name the file (default: its path; a server names an upload by the client's name).
    """

    info: VideoInfo
    warnings: list[str]
    damaged: str | None

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_long_side: int | None = 640,
        slowmo: float | None = None,
        threads: int = 0,
        name: str | None = None,
    ) -> None:
        _validate_args(max_long_side, slowmo, threads)
        self._path = os.fspath(path)
        self._name = self._path if name is None else name
        self.warnings = []
        self.damaged = None
        self._started = False
        self._closed = False
        self._delivered = 0
        _check_file(self._path, name)
        try:
            # "file:" stops FFmpeg from reading a protocol ("concat:", "http:") into the name.
            self._container = av.open("file:" + os.path.abspath(self._path), metadata_errors="replace")
        except (av.error.FFmpegError, OSError) as exc:
            raise _open_error(self._path, exc, name) from exc
        self._first: Frame | None = None
        try:
            self._stream = self._open_stream(threads, max_long_side)
            self._frames = self._decoded()
            first = next(self._frames, None)
            if first is None:
                reason = self.warnings[-1].split(": ", 1)[-1] if self.warnings else "the stream is empty"
                raise VideoError(f"Video file '{self._name}' contains no decodable video frames ({reason}).")
            self.info = self._make_info(first, max_long_side, slowmo)
            self._setup_conversion(first)
            self._first = self._make_frame(first)  # converted now, so conversion problems also fail fast
        except BaseException:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------------------------------

    def _open_stream(self, threads: int, max_long_side: int | None) -> VideoStream:
        """Select and configure the video stream, or raise the matching error.

        When frames will be shrunk at least 2x, the decoder skips its in-loop deblocking filter: about 30 %
        less decoding work, and the block-edge artifacts it leaves are under a pixel after the downscale.
        """
        container = self._container
        if container.format.name in _IMAGE_FORMATS or container.format.name.endswith("_pipe"):
            raise VideoError(f"'{self._name}' is a still image ({container.format.name}), not a video.")
        stream = _pick_stream(container)
        if stream is None:
            kinds: list[str] = sorted({s.type for s in container.streams}) or ["none"]
            raise NoVideoStreamError(
                f"'{self._name}' contains no video stream (streams found: {', '.join(kinds)})."
            )
        if stream.codec_context is None:
            raise VideoError(f"Video file '{self._name}' uses a video codec this FFmpeg build cannot decode.")
        for other in container.streams:
            if other.index != stream.index:
                other.discard = av.stream.Discard.all
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        coded = max(stream.codec_context.width, stream.codec_context.height)
        if max_long_side is not None and coded >= 2 * max_long_side:
            stream.codec_context.options = {"skip_loop_filter": "all"}
        return stream

    def _make_info(self, first: VideoFrame, max_long_side: int | None, slowmo: float | None) -> VideoInfo:
        """Build :class:`VideoInfo` from the stream, container metadata and the first decoded frame."""
        stream, container = self._stream, self._container
        rotation = _rotation_of(first.rotation)
        width, height = _display_size(first.width, first.height, rotation, stream.sample_aspect_ratio)
        out_w, out_h = _out_size(width, height, max_long_side)
        fps_nominal = _nominal_fps(stream)
        if fps_nominal is None:
            fps_nominal = _FALLBACK_FPS
            self.warnings.append(f"frame rate unknown; assuming {_FALLBACK_FPS:g} fps")
        capture = _capture_fps(stream.metadata, container.metadata)
        scale = _time_scale(capture, fps_nominal, slowmo)
        duration = _duration_s(stream, container)
        return VideoInfo(
            path=self._path,
            width=width,
            height=height,
            out_width=out_w,
            out_height=out_h,
            rotation_deg=rotation,
            fps_nominal=fps_nominal,
            capture_fps=capture,
            time_scale=scale,
            fps=fps_nominal * scale,
            num_frames=stream.frames or None,
            duration_s=None if duration is None else duration / scale,
            codec=stream.codec_context.name,
        )

    def _setup_conversion(self, first: VideoFrame) -> None:
        """Per-run state for :meth:`_make_frame`: swscale target size, rotation, timestamp reference."""
        rotation = self.info.rotation_deg
        out_w, out_h = self.info.out_width, self.info.out_height
        self._scale_size = (out_h, out_w) if rotation in (90, 270) else (out_w, out_h)
        self._rotate_code = _CV2_ROTATE.get(rotation)
        coded_display = _display_size(first.width, first.height, 0, self._stream.sample_aspect_ratio)
        shrinks = self._scale_size != coded_display
        self._interpolation = Interpolation.AREA if shrinks else Interpolation.BILINEAR
        self._reformatter = VideoReformatter()  # reused: keeps one swscale context for the whole run
        self._ref: tuple[int, float] | None = None  # (pts, t) of the first frame that had a pts
        self._last_t = -math.inf
        self._order_warned = False

    # -- decoding --------------------------------------------------------------------------------------

    def _decoded(self) -> Iterator[VideoFrame]:
        """Decoded frames in presentation order; stops (with a warning) at the first unreadable data."""
        stream = self._stream
        count = 0
        try:
            for packet in self._container.demux(stream):
                try:
                    frames = packet.decode()  # the final empty packets flush the decoder
                except (av.error.FFmpegError, OSError) as exc:
                    count += yield from self._drain()
                    self._stopped(count, exc)
                    return
                for frame in frames:
                    count += 1
                    yield frame
        except (av.error.FFmpegError, OSError) as exc:  # the demuxer could not read on
            count += yield from self._drain()
            self._stopped(count, exc)
            return
        declared = stream.frames
        if declared and count < declared:
            if _scan_iso_boxes(self._path).truncated:
                self.damaged = (
                    f"decoding stopped at frame {count}: truncated file ({declared} frames declared)"
                )
                self.warnings.append(self.damaged)
            else:
                self.warnings.append(f"decoded {count} of the {declared} frames the container declares")

    def _drain(self) -> Generator[VideoFrame, None, int]:
        """Frames still buffered in the decoder after an error; returns how many were yielded."""
        try:
            frames = self._stream.decode(None)
        except (av.error.FFmpegError, OSError):
            return 0
        yield from frames
        return len(frames)

    def _stopped(self, count: int, exc: BaseException) -> None:
        """Record why decoding ended early."""
        scan = _scan_iso_boxes(self._path)
        reason = "truncated file" if scan.truncated else f"corrupt data ({_ffmpeg_reason(exc)})"
        self.damaged = f"decoding stopped at frame {count}: {reason}"
        self.warnings.append(self.damaged)

    def _time_of(self, frame: VideoFrame, index: int) -> float:
        """Real seconds since the first frame: pts based, index/fps when a frame has no pts."""
        pts, time_base = frame.pts, frame.time_base or self._stream.time_base
        if pts is None or time_base is None:
            return index / self.info.fps
        if self._ref is None:
            self._ref = (pts, index / self.info.fps)
        ref_pts, ref_t = self._ref
        return ref_t + float((pts - ref_pts) * time_base) / self.info.time_scale

    def _image_of(self, frame: VideoFrame) -> NDArray[np.uint8]:
        """Convert + downscale in one swscale call, then rotate upright; C-contiguous RGB uint8."""
        width, height = self._scale_size
        try:
            rgb = self._reformatter.reformat(
                frame,
                width,
                height,
                "rgb24",
                interpolation=self._interpolation,
                src_color_range=frame.color_range,
            ).to_ndarray()
        except (av.error.FFmpegError, ValueError) as exc:
            raise VideoError(
                f"Video file '{self._name}': frame {self._delivered} ({frame.format.name}) cannot be "
                f"converted to RGB: {_ffmpeg_reason(exc)}."
            ) from exc
        if self._rotate_code is not None:
            return np.asarray(cv2.rotate(rgb, self._rotate_code), dtype=np.uint8)
        return np.ascontiguousarray(rgb, dtype=np.uint8)

    def _make_frame(self, frame: VideoFrame) -> Frame:
        index = self._delivered
        t = self._time_of(frame, index)
        image = self._image_of(frame)
        if t <= self._last_t and not self._order_warned:
            self._order_warned = True
            self.warnings.append(f"timestamps stop increasing at frame {index} (t={t:.6f}s)")
        self._last_t = t
        self._delivered += 1
        return Frame(index=index, t=t, image=image)

    # -- public ------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        if self._closed:
            raise ValueError(f"VideoReader for '{self._path}' is closed.")
        if self._started:
            raise RuntimeError("VideoReader is single-pass; open a new reader to read the video again.")
        self._started = True
        return self._iterate()

    def _iterate(self) -> Iterator[Frame]:
        first, self._first = self._first, None
        if first is None:
            return
        yield first
        del first  # do not pin the first picture for the whole run
        for frame in self._frames:
            yield self._make_frame(frame)

    def close(self) -> None:
        """Stop decoding and release the file; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._first = None
        frames = getattr(self, "_frames", None)
        if frames is not None:
            frames.close()
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def probe(
    path: str | os.PathLike[str], *, max_long_side: int | None = 640, slowmo: float | None = None
) -> VideoInfo:
    """Open, validate and describe a video without reading it through (decodes the first frame only)."""
    with VideoReader(path, max_long_side=max_long_side, slowmo=slowmo, threads=1) as reader:
        return reader.info


@dataclass(frozen=True)
class VideoHeader:
    """What a video's container says of its main video stream, read without decoding a frame."""

    width: int  # coded size (before rotation)
    height: int
    frames: int | None  # as declared, None when the container does not say
    duration_s: float | None  # media time
    fps_nominal: float | None


def read_header(path: str | os.PathLike[str], *, name: str | None = None) -> VideoHeader:
    """The main video stream's size, frame count, duration and nominal rate from the container's header,
    decoding nothing (so a server can refuse an 8K or hour-long upload before allocating frames). Raises
    the errors :class:`VideoReader` raises for a file that is not a video (naming it ``name``)."""
    shown = os.fspath(path) if name is None else name
    _check_file(os.fspath(path), name)
    try:
        container = av.open("file:" + os.path.abspath(os.fspath(path)), metadata_errors="replace")
    except (av.error.FFmpegError, OSError) as exc:
        raise _open_error(os.fspath(path), exc, name) from exc
    with container:
        stream = _pick_stream(container)
        if stream is None or stream.codec_context is None:
            raise NoVideoStreamError(f"'{shown}' contains no decodable video stream.")
        return VideoHeader(
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            frames=stream.frames or None,
            duration_s=_duration_s(stream, container),
            fps_nominal=_nominal_fps(stream),
        )


def check_complete(
    path: str | os.PathLike[str], *, allow_truncated: bool = False, name: str | None = None
) -> VideoInfo:
    """Check that ``path`` is a complete, decodable video without decoding all of it; returns its info.

    Opens the container and decodes the first frame (:class:`VideoReader`), then walks the MP4/MOV box
    headers: a file whose last box runs past its end (an interrupted upload or copy) raises
    :class:`VideoError` unless ``allow_truncated``. Messages name the file ``name`` (default: its path).
    """
    with VideoReader(path, max_long_side=64, name=name) as reader:
        info = reader.info
    if not allow_truncated and _scan_iso_boxes(os.fspath(path)).truncated:
        raise VideoError(
            "the video is truncated (its last MP4/QuickTime box runs past the end of the file): "
            "the upload or copy was probably interrupted"
        )
    return info
