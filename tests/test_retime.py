"""services.pose.retime: every timestamp times the factor, the coded pictures untouched, no capture-rate
metadata left, only the video stream; bad factors and bad files raise the domain errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.stream import VideoStream
from conftest import SHARED
from numpy.typing import NDArray

from services.errors import InputError, VideoError
from services.pose.ingest import VideoReader, probe
from services.pose.retime import retime

TREADMILL = SHARED / "data/running-treadmill-phone/IMG_5396.mp4"
CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _encode(path: Path, pts: list[int], time_base: Fraction, metadata: dict[str, str]) -> Path:
    """Small grey-ramp clip with explicit (possibly irregular) pts and container metadata."""
    with av.open(str(path), "w", options={"movflags": "use_metadata_tags"}) as out:
        out.metadata.update(metadata)
        stream = out.add_stream(CODEC, rate=30)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        for i, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 + 25 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = p, time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _frames(path: Path) -> tuple[list[float], list[NDArray[np.uint8]]]:
    with VideoReader(path, max_long_side=None) as reader:
        frames = list(reader)
    return [f.t for f in frames], [f.image for f in frames]


@pytest.mark.parametrize("factor", [4.0, 2.5, 0.5])
def test_timestamps_scale_and_capture_rate_metadata_is_gone(tmp_path: Path, factor: float) -> None:
    pts = [0, 1000, 2000, 3500, 4000, 5000, 6000, 7000]  # 30 fps in 1/30000, one late frame (VFR)
    src = _encode(tmp_path / "slowmo.mp4", pts, Fraction(1, 30000), {"com.android.capture.fps": "120.0"})
    assert probe(src).time_scale == pytest.approx(4.0)  # the source says: 4x slow motion
    dst = tmp_path / "retimed.mp4"
    retime(src, dst, factor)
    info = probe(dst)
    assert info.capture_fps is None and info.time_scale == 1.0
    assert info.num_frames == len(pts)
    assert info.fps_nominal == pytest.approx(30.0 / factor, rel=0.05)
    with av.open(str(dst)) as container:
        assert not any(k.endswith("capture.fps") for k in container.metadata)
    # real-time source times (its metadata applied) -> the copy's times are factor x the media times
    t_src, images_src = _frames(src)
    t_dst, images_dst = _frames(dst)
    np.testing.assert_allclose(t_dst, np.array(pts) / 30000 * factor, atol=1e-6)
    np.testing.assert_allclose(np.array(t_src) * 4.0, np.array(pts) / 30000, atol=1e-6)
    for a, b in zip(images_src, images_dst, strict=True):
        np.testing.assert_array_equal(a, b)  # packets copied, not re-encoded


def test_real_clip_keeps_every_packet_and_drops_the_audio(tmp_path: Path) -> None:
    dst = tmp_path / "img_x3.mp4"
    retime(TREADMILL, dst, 3)
    with av.open(str(TREADMILL)) as a, av.open(str(dst)) as b:
        assert [s.type for s in b.streams] == ["video"]
        sa, sb = a.streams.video[0], b.streams.video[0]
        pa = [(bytes(p), (p.pts or 0) * p.time_base) for p in a.demux(sa) if p.size]
        pb = [(bytes(p), (p.pts or 0) * p.time_base) for p in b.demux(sb) if p.size]
    assert len(pa) == len(pb) == 388
    assert all(x[0] == y[0] for x, y in zip(pa, pb, strict=True))
    assert all(y[1] - pb[0][1] == 3 * (x[1] - pa[0][1]) for x, y in zip(pa, pb, strict=True))
    info = probe(dst)
    assert info.fps_nominal == pytest.approx(20.0) and info.duration_s == pytest.approx(
        3 * 388 / 60, rel=0.01
    )


@pytest.mark.parametrize("factor", [0.0, -2.0, float("nan"), float("inf"), 1e-6, True])
def test_bad_factors_are_input_errors(tmp_path: Path, factor: float) -> None:
    with pytest.raises(InputError):
        retime(TREADMILL, tmp_path / "x.mp4", factor)


def test_unreadable_source_is_a_video_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(VideoError):
        retime(text, tmp_path / "x.mp4", 2.0)
    with pytest.raises(VideoError):
        retime(tmp_path / "missing.mp4", tmp_path / "x.mp4", 2.0)
