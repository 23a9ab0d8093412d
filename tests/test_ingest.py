"""Tests for services.pose.ingest: geometry, rotation, timestamps, slow motion, bad input, memory."""

from __future__ import annotations

import gc
import math
import struct
import tracemalloc
import weakref
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from av.video.stream import VideoStream
from conftest import SHARED as SHARED_DIR
from numpy.typing import NDArray

from services.errors import InputError, NoVideoStreamError, VideoError
from services.pose.ingest import (
    Frame,
    VideoInfo,
    VideoReader,
    _capture_fps,
    _display_size,
    _out_size,
    _parse_fps,
    _rotation_of,
    _scan_iso_boxes,
    _time_scale,
    probe,
)

TREADMILL = SHARED_DIR / "data" / "running-treadmill-phone" / "IMG_5396.mp4"
ROTATED = SHARED_DIR / "data" / "rotation-iphone" / "iphone_rotated.mov"

H264 = "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _shared(path: Path) -> Path:
    if not path.is_file():
        pytest.fail(f"shared test data missing: {path} (set GAITWAY_SHARED_DIR)")
    return path


def _encode(
    path: Path,
    images: list[NDArray[np.uint8]],
    pts: list[int],
    *,
    time_base: Fraction = Fraction(1, 1000),
    rate: int = 30,
    metadata: dict[str, str] | None = None,
    display_rotation: float | None = None,
    pix_fmt: str = "yuv420p",
    container_format: str | None = None,
) -> Path:
    """Encode RGB images with explicit pts into a small video file."""
    height, width = images[0].shape[:2]
    options = {"movflags": "use_metadata_tags"} if metadata else None
    with av.open(str(path), "w", format=container_format, options=options) as out:
        if metadata:
            out.metadata.update(metadata)
        opts = {"preset": "ultrafast", "crf": "0"} if H264 == "libx264" else {}
        stream = out.add_stream(H264, rate=rate, options=opts)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if display_rotation is not None:
            stream.set_display_rotation(display_rotation)
        for image, p in zip(images, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = p, time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _gray(n: int, height: int = 48, width: int = 64) -> list[NDArray[np.uint8]]:
    return [np.full((height, width, 3), 10 + 20 * i, np.uint8) for i in range(n)]


def _error_of(path: Path, **kwargs: object) -> VideoError:
    with pytest.raises(VideoError) as info:
        VideoReader(path, **kwargs)  # type: ignore[arg-type]
    return info.value


# ---------------------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ffmpeg_angle", "clockwise"),
    [(0, 0), (-90, 90), (90, 270), (180, 180), (-180, 180), (-89.7, 90), (270, 90), (math.nan, 0)],
)
def test_rotation_of(ffmpeg_angle: float, clockwise: int) -> None:
    assert _rotation_of(ffmpeg_angle) == clockwise


def test_out_size() -> None:
    assert _out_size(1080, 1920, 640) == (360, 640)
    assert _out_size(1920, 1080, 640) == (640, 360)
    assert _out_size(320, 568, 640) == (320, 568)  # never upscale
    assert _out_size(1768, 994, 640) == (640, 360)
    assert _out_size(1080, 1920, None) == (1080, 1920)
    assert _out_size(3, 2000, 10) == (1, 10)


def test_display_size() -> None:
    assert _display_size(568, 320, 90, None) == (320, 568)
    assert _display_size(568, 320, 180, Fraction(1)) == (568, 320)
    assert _display_size(1440, 1080, 0, Fraction(4, 3)) == (1920, 1080)  # anamorphic
    assert _display_size(1440, 1080, 270, Fraction(4, 3)) == (1080, 1920)


def test_capture_fps_parsing() -> None:
    assert _parse_fps("240.000000") == 240.0
    for bad in (None, "", "abc", "0", "-30", "nan", "inf", "1e9"):
        assert _parse_fps(bad) is None
    assert _capture_fps({"com.android.capture.fps": "240.000000"}) == 240.0
    assert _capture_fps({}, {"com.apple.quicktime.capture.fps": "120"}) == 120.0
    assert _capture_fps({"COM.Vendor.Capture.FPS": "960"}) == 960.0
    # the first dict with a usable value wins (stream before container); implausible values are skipped
    assert _capture_fps({"com.android.capture.fps": "0"}, {"com.android.capture.fps": "60"}) == 60.0
    assert _capture_fps({"encoder": "Lavf"}) is None


def test_time_scale() -> None:
    assert _time_scale(None, 30.0) == 1.0
    assert _time_scale(240.0, 30.0) == 8.0
    assert _time_scale(30.0, 29.97) == 1.0  # metadata restating the normal frame rate
    assert _time_scale(240.0, 240.0) == 1.0  # high-frame-rate clip stored at its capture rate
    assert _time_scale(240.0, 30.0, slowmo=4.0) == 4.0  # explicit factor wins
    assert _time_scale(None, 30.0, slowmo=2.5) == 2.5


def test_scan_iso_boxes(tmp_path: Path) -> None:
    def box(kind: bytes, payload: bytes = b"", size: int | None = None) -> bytes:
        return struct.pack(">I4s", size if size is not None else 8 + len(payload), kind) + payload

    cases = {
        "ok.mp4": (
            box(b"ftyp", b"isom") + box(b"moov", b"x" * 20) + box(b"mdat", b"y" * 50),
            (True, True, False),
        ),
        "nomoov.mp4": (box(b"ftyp", b"isom") + box(b"mdat", b"y" * 50, size=500), (True, False, True)),
        "cut.mp4": (
            box(b"ftyp", b"isom") + box(b"moov") + box(b"mdat", b"y" * 10, size=100),
            (True, True, True),
        ),
        "text.mp4": (b"hello, this is not a video\n" * 4, (False, False, False)),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        scan = _scan_iso_boxes(str(tmp_path / name))
        assert (scan.is_iso, scan.has_moov, scan.truncated) == expected, name


# ---------------------------------------------------------------------------------------------------------
# Real phone clips
# ---------------------------------------------------------------------------------------------------------


def _raw_frames(path: Path, count: int) -> list[NDArray[np.uint8]]:
    """The first ``count`` decoded frames exactly as coded (no rotation, no scaling)."""
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))
            if len(frames) == count:
                break
    return frames


def test_iphone_rotation_is_applied_and_upright() -> None:
    path = _shared(ROTATED)
    info = probe(path)
    assert (info.width, info.height) == (320, 568)
    assert (info.out_width, info.out_height) == (320, 568)
    assert info.rotation_deg == 90
    assert info.num_frames == 66
    assert info.fps == pytest.approx(29.97, abs=0.02)
    raw = _raw_frames(path, 3)
    assert raw[0].shape == (320, 568, 3)  # coded landscape, sideways
    with VideoReader(path) as reader:
        frames = [f for _, f in zip(range(3), reader, strict=False)]
    for frame, coded in zip(frames, raw, strict=True):
        assert frame.image.shape == (568, 320, 3)
        assert frame.image.flags.c_contiguous
        # the display matrix says -90 (counter-clockwise): players rotate the coded picture 90° clockwise
        expected = cv2.rotate(coded, cv2.ROTATE_90_CLOCKWISE)
        assert np.abs(frame.image.astype(np.int16) - expected).max() <= 2
    # Checked by eye on a saved PNG: upright, the wall is lit from above (bright top, darker bottom); the
    # counter-clockwise alternative puts the bright patch at the bottom.
    image = frames[0].image.astype(np.float64)
    assert image[:142].mean() > image[-142:].mean() + 15


@pytest.mark.parametrize("ffmpeg_angle", [-90.0, 90.0, 180.0])
def test_synthetic_rotations_come_out_upright(tmp_path: Path, ffmpeg_angle: float) -> None:
    upright = np.zeros((64, 48, 3), np.uint8)
    upright[:16, :16] = (255, 0, 0)  # red top-left corner
    upright[-16:, :] = (0, 0, 255)  # blue bottom band
    # the coded picture is the upright one turned by the display angle the other way round
    coded = np.ascontiguousarray(np.rot90(upright, k=round(-ffmpeg_angle / 90)))
    path = _encode(
        tmp_path / "rot.mp4", [coded] * 2, [0, 33], display_rotation=ffmpeg_angle, pix_fmt="yuv444p"
    )
    with VideoReader(path) as reader:
        assert reader.info.rotation_deg == _rotation_of(ffmpeg_angle)
        assert (reader.info.width, reader.info.height) == (48, 64)
        image = next(iter(reader)).image
    assert image.shape == (64, 48, 3)
    assert np.abs(image.astype(np.int16) - upright).max() <= 4


def test_treadmill_clip_geometry_and_timestamps() -> None:
    path = _shared(TREADMILL)
    info = probe(path)
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.rotation_deg) == (1080, 1920, 0)
    assert (info.out_width, info.out_height) == (360, 640)
    assert info.num_frames == 388
    assert info.fps_nominal == pytest.approx(60.0)
    assert info.fps == pytest.approx(60.0)
    assert info.time_scale == 1.0
    assert info.capture_fps is None
    assert info.duration_s == pytest.approx(6.47, abs=0.01)
    assert info.codec == "h264"

    times, count = [], 0
    with VideoReader(path, max_long_side=640) as reader:
        for frame in reader:
            assert isinstance(frame, Frame)
            assert frame.index == count
            assert frame.image.shape == (640, 360, 3)
            assert frame.image.dtype == np.uint8
            assert frame.image.flags.c_contiguous
            times.append(frame.t)
            count += 1
        assert reader.warnings == []
    assert count == 388
    assert times[0] == 0.0
    steps = np.diff(times)
    assert (steps > 0).all()
    np.testing.assert_allclose(steps, 1 / 60, atol=1e-4)


def test_full_size_and_early_close() -> None:
    path = _shared(TREADMILL)
    reader = VideoReader(path, max_long_side=None)
    assert (reader.info.out_width, reader.info.out_height) == (1080, 1920)
    frames = iter(reader)
    first = next(frames)
    assert first.image.shape == (1920, 1080, 3)
    assert first.image.mean() > 10  # a real picture, not a blank buffer
    reader.close()
    reader.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        iter(reader)


def test_reader_is_single_pass(tmp_path: Path) -> None:
    path = _encode(tmp_path / "small.mp4", _gray(3), [0, 33, 67])
    with VideoReader(path) as reader:
        assert len(list(reader)) == 3
        with pytest.raises(RuntimeError, match="single-pass"):
            iter(reader)


def test_streaming_does_not_keep_old_frames() -> None:
    """Iterating a whole clip must not accumulate frames (reader-side references or numpy allocations)."""
    path = _shared(TREADMILL)
    refs: list[weakref.ref[NDArray[np.uint8]]] = []
    gc.collect()
    tracemalloc.start()
    try:
        with VideoReader(path, max_long_side=640) as reader:
            for frame in reader:
                refs.append(weakref.ref(frame.image))
            del frame
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    gc.collect()
    assert len(refs) == 388
    assert sum(r() is not None for r in refs) == 0
    # all 388 frames at 360x640 RGB would be ~268 MB; streaming holds a handful
    assert peak < 30 * 2**20


# ---------------------------------------------------------------------------------------------------------
# Timestamps and slow motion on generated clips
# ---------------------------------------------------------------------------------------------------------


def test_vfr_timestamps_equal_written_pts(tmp_path: Path) -> None:
    pts_ms = [0, 33, 50, 120, 130, 200, 260, 261, 400, 433]
    path = _encode(tmp_path / "vfr.mp4", _gray(len(pts_ms)), pts_ms)
    with VideoReader(path) as reader:
        assert reader.info.time_scale == 1.0
        frames = list(reader)
    assert [f.index for f in frames] == list(range(len(pts_ms)))
    np.testing.assert_allclose([f.t for f in frames], np.array(pts_ms) / 1000, atol=1e-9)
    # decode order matches: frame brightness follows the order written
    means = [f.image.mean() for f in frames]
    assert means == sorted(means)


def test_frames_without_pts_fall_back_to_index_over_fps(tmp_path: Path) -> None:
    path = _encode(tmp_path / "raw.h264", _gray(5), list(range(5)), rate=25, container_format="h264")
    with VideoReader(path) as reader:
        assert reader.info.fps == pytest.approx(25.0)
        times = [f.t for f in reader]
    np.testing.assert_allclose(times, np.arange(5) / 25, atol=1e-9)


def test_capture_fps_metadata_sets_slow_motion(tmp_path: Path) -> None:
    pts = [0, 1000, 2000, 3000]  # 30 fps in a 1/30000 time base
    path = _encode(
        tmp_path / "slowmo.mp4",
        _gray(4),
        pts,
        time_base=Fraction(1, 30000),
        metadata={"com.android.capture.fps": "120.000000"},
    )
    info = probe(path)
    assert info.capture_fps == 120.0
    assert info.fps_nominal == pytest.approx(30.0, rel=0.01)
    assert info.time_scale == pytest.approx(4.0, rel=0.01)
    assert info.fps == pytest.approx(120.0, rel=0.01)
    with VideoReader(path) as reader:
        times = [f.t for f in reader]
    np.testing.assert_allclose(times, np.array(pts) / 30000 / info.time_scale, atol=1e-9)
    # an explicit factor overrides the metadata
    with VideoReader(path, slowmo=2) as reader:
        assert reader.info.time_scale == 2.0
        assert reader.info.capture_fps == 120.0
        times = [f.t for f in reader]
    np.testing.assert_allclose(times, np.array(pts) / 30000 / 2, atol=1e-9)


def test_slowmo_override_divides_times(tmp_path: Path) -> None:
    pts_ms = [0, 40, 80, 120]
    path = _encode(tmp_path / "plain.mp4", _gray(4), pts_ms, rate=25)
    with VideoReader(path, slowmo=4) as reader:
        info = reader.info
        times = [f.t for f in reader]
    assert info.time_scale == 4.0
    assert info.fps == pytest.approx(info.fps_nominal * 4)
    assert info.duration_s is not None
    np.testing.assert_allclose(times, np.array(pts_ms) / 1000 / 4, atol=1e-9)


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"max_long_side": 0}, "max_long_side"),
        ({"max_long_side": -640}, "max_long_side"),
        ({"slowmo": 0}, "slowmo"),
        ({"slowmo": -4.0}, "slowmo"),
        ({"slowmo": math.nan}, "slowmo"),
        ({"threads": -1}, "threads"),
    ],
)
def test_bad_arguments_raise_input_error(tmp_path: Path, kwargs: dict[str, float], word: str) -> None:
    path = _encode(tmp_path / "ok.mp4", _gray(2), [0, 33])
    with pytest.raises(InputError, match=word) as info:
        VideoReader(path, **kwargs)  # type: ignore[arg-type]
    assert type(info.value) is InputError


def test_missing_file(tmp_path: Path) -> None:
    err = _error_of(tmp_path / "missing_clip.mp4")
    assert type(err) is VideoError
    assert "missing_clip.mp4" in str(err)
    assert "does not exist" in str(err)
    with pytest.raises(VideoError, match="does not exist"):
        probe(tmp_path / "missing_clip.mp4")


def test_directory(tmp_path: Path) -> None:
    err = _error_of(tmp_path)
    assert type(err) is VideoError
    assert "directory" in str(err)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty_clip.mp4"
    path.write_bytes(b"")
    err = _error_of(path)
    assert type(err) is VideoError
    assert "empty_clip.mp4" in str(err)
    assert "empty" in str(err)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes_clip.mp4"
    path.write_text("these are running notes, not a video\n" * 20)
    err = _error_of(path)
    assert type(err) is VideoError
    assert "notes_clip.mp4" in str(err)
    assert "not a video" in str(err)


def test_still_image(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.png"
    assert cv2.imwrite(str(path), np.zeros((32, 32, 3), np.uint8))
    err = _error_of(path)
    assert type(err) is VideoError
    assert "snapshot.png" in str(err)
    assert "still image" in str(err)


def test_missing_moov_index(tmp_path: Path) -> None:
    # PyAV's mp4 muxer writes the index (moov) after the frame data, so cutting the file loses it
    full = _encode(tmp_path / "full.mp4", _gray(30), [i * 33 for i in range(30)])
    path = tmp_path / "cut_upload.mp4"
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    err = _error_of(path)
    assert type(err) is VideoError
    assert "cut_upload.mp4" in str(err)
    assert "truncated" in str(err)
    assert "moov" in str(err)


def test_treadmill_cut_mid_stream_stops_with_warning(tmp_path: Path) -> None:
    data = _shared(TREADMILL).read_bytes()  # index first ("faststart"), so a cut loses frame data only
    path = tmp_path / "cut_treadmill.mp4"
    path.write_bytes(data[: int(len(data) * 0.3)])
    with VideoReader(path) as reader:
        assert reader.info.num_frames == 388  # the index still declares every frame
        frames = [f.t for f in reader]
        warnings = list(reader.warnings)
    assert 20 < len(frames) < 388
    assert (np.diff(frames) > 0).all()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"decoding stopped at frame {len(frames)}: truncated file")


def test_corrupt_frame_data_stops_with_warning(tmp_path: Path) -> None:
    data = bytearray(_shared(TREADMILL).read_bytes())
    rng = np.random.default_rng(0)
    data[200_000:1_500_000] = rng.integers(0, 256, 1_300_000, dtype=np.uint8).tobytes()
    path = tmp_path / "corrupt_treadmill.mp4"
    path.write_bytes(bytes(data))
    with VideoReader(path) as reader:
        count = sum(1 for _ in reader)
        warnings = list(reader.warnings)
    assert 0 < count < 388
    assert any(w.startswith(f"decoding stopped at frame {count}: corrupt data") for w in warnings)


def test_no_frame_data_at_all(tmp_path: Path) -> None:
    data = _shared(TREADMILL).read_bytes()
    path = tmp_path / "header_only.mp4"
    path.write_bytes(data[:13_000])  # ftyp + moov + a sliver of frame data
    err = _error_of(path)
    assert type(err) is VideoError
    assert "header_only.mp4" in str(err)
    assert "no decodable video frames" in str(err)


def test_audio_only_file(tmp_path: Path) -> None:
    path = tmp_path / "voice_memo.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(NoVideoStreamError) as info:
        VideoReader(path)
    assert "voice_memo.m4a" in str(info.value)
    assert "audio" in str(info.value)
    with pytest.raises(NoVideoStreamError):
        probe(path)
