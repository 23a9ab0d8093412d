"""The live-streaming core: frames decoded and posed one at a time agree with the offline analysis of the
same clip, steps are reported once each as they complete, and the session keeps a bounded window."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import SHARED
from numpy.typing import NDArray

from gateway.core import AnalysisSpec, Engine, kinematics_request
from gateway.live import MAX_IMAGE_SIDE, LiveFrame, LiveSession, decode_image
from services.errors import FrameRateError, InputError, ShapeError
from services.kinematics.schema import KinematicsResponse, StepOut
from services.pose.ingest import VideoInfo, VideoReader
from services.pose.pipeline import AnalysisResult, analyze_video
from services.settings import Settings

CLIP = SHARED / "data/running-treadmill-phone/IMG_5396.mp4"
SPEC = AnalysisSpec(preset="lightning")
WINDOW_S = 3.0  # shorter than the 6.5 s clip, so the window slides and steps span several windows
FPS = 60.0


def _picture(h: int = 120, w: int = 200) -> NDArray[np.uint8]:
    """A smooth RGB test picture (JPEG keeps it within a few grey levels)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / w, y * 255 / h, np.full_like(x, 128)], axis=2).astype(np.uint8)
    cv2.circle(img, (w // 2, h // 2), h // 4, (250, 30, 60), -1)
    return np.asarray(img, np.uint8)


def _encode(rgb: NDArray[np.uint8], ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(params))
    assert ok
    return bytes(buf.tobytes())


# --------------------------------------------------------------------------------------------------------
# decode_image


def test_decode_image_round_trips_png_webp_and_jpeg() -> None:
    img = _picture()
    np.testing.assert_array_equal(decode_image(_encode(img, ".png")), img)
    np.testing.assert_array_equal(decode_image(_encode(img, ".webp", cv2.IMWRITE_WEBP_QUALITY, 101)), img)
    for data in (_encode(img, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 95), _encode(img, ".webp")):
        out = decode_image(data)
        assert out.shape == img.shape and out.dtype == np.uint8
        err = np.abs(out.astype(int) - img.astype(int))
        assert err.mean() < 3 and np.median(err) <= 2
        assert out[60, 100].tolist() == pytest.approx([250, 30, 60], abs=12)  # red disc, not BGR


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        np.random.default_rng(0).bytes(2048),
        _encode(_picture(), ".png")[:200],  # truncated
        _encode(_picture(), ".bmp"),  # decodable, but not a frame format
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(40),  # a JPEG header and nothing else
    ],
    ids=["empty", "text", "random", "truncated-png", "bmp", "jpeg-header-only"],
)
def test_decode_image_refuses_what_is_not_an_image(data: bytes) -> None:
    with pytest.raises(InputError) as err:
        decode_image(data)
    assert err.value.code == "invalid_input" and str(err.value)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp"])
def test_decode_image_refuses_absurd_sizes_before_decoding(ext: str) -> None:
    data = _encode(np.zeros((8, MAX_IMAGE_SIDE + 1, 3), np.uint8), ext)
    with pytest.raises(InputError, match=f"{MAX_IMAGE_SIDE + 1}x8 px"):
        decode_image(data)
    fits = _encode(np.zeros((8, MAX_IMAGE_SIDE, 3), np.uint8), ext)
    assert decode_image(fits).shape == (8, MAX_IMAGE_SIDE, 3)


# --------------------------------------------------------------------------------------------------------
# the treadmill clip, live and offline


@pytest.fixture(scope="module")
def engine() -> Engine:
    models = os.pathsep.join(str(SHARED / d) for d in ("models", "reference"))
    return Engine(Settings(shared_dir=SHARED, models_dir=models, triton_url=""))


@dataclass
class LiveRun:
    info: VideoInfo
    frames: list[LiveFrame] = field(default_factory=list)
    steps: list[StepOut] = field(default_factory=list)
    reported_at: list[float] = field(default_factory=list)  # stream time each step was returned at
    final: list[StepOut] = field(default_factory=list)  # returned by the end-of-stream call
    max_buffered: int = 0
    summary: dict[str, object] = field(default_factory=dict)
    first_image: NDArray[np.uint8] | None = None


@pytest.fixture(scope="module")
def live(engine: Engine) -> LiveRun:
    with VideoReader(CLIP, max_long_side=SPEC.options(engine.settings).max_long_side) as reader:
        run = LiveRun(info=reader.info)
        with LiveSession(engine, SPEC, window_s=WINDOW_S, metrics_every_s=1.0) as session:
            for frame in reader:
                if run.first_image is None:
                    run.first_image = frame.image
                run.frames.append(session.push(frame.t, frame.image))
                new = session.new_steps()
                run.steps += new
                run.reported_at += [frame.t] * len(new)
                run.max_buffered = max(run.max_buffered, session.buffered_frames)
            run.final = session.new_steps(final=True)
            run.steps += run.final
            run.summary = session.summary()
    return run


@pytest.fixture(scope="module")
def live_beside(engine: Engine) -> LiveRun:
    """The clip streamed as the gRPC server streams it: windows analysed on a second thread while the
    frames go on being pushed, a new window taken only once the previous analysis has finished."""
    with VideoReader(CLIP, max_long_side=SPEC.options(engine.settings).max_long_side) as reader:
        run = LiveRun(info=reader.info)
        with (
            LiveSession(engine, SPEC, window_s=WINDOW_S, metrics_every_s=1.0) as session,
            ThreadPoolExecutor(max_workers=1) as steps_thread,
        ):
            running: Future[list[StepOut]] | None = None
            for frame in reader:
                run.frames.append(session.push(frame.t, frame.image))
                if running is not None and running.done():
                    run.steps += running.result()
                    running = None
                if running is None and (window := session.take_window()) is not None:
                    running = steps_thread.submit(session.steps_of, window)
            if running is not None:
                run.steps += running.result()
            last = session.take_window(final=True)
            assert last is not None
            run.final = session.steps_of(last)
            run.steps += run.final
            run.summary = session.summary()
    return run


def _offline(engine: Engine, pose_workers: int) -> tuple[AnalysisResult, KinematicsResponse]:
    spec = dataclasses.replace(SPEC, pose_workers=pose_workers)
    with engine.backend(engine.models(spec), pose_workers=pose_workers) as backend:
        result = analyze_video(CLIP, backend, spec.options(engine.settings))
    with engine.kinematics() as client:
        metrics = client.analyze(kinematics_request(result.sequence))
    return result, metrics


@pytest.fixture(scope="module")
def offline_serial(engine: Engine) -> tuple[AnalysisResult, KinematicsResponse]:
    """The offline pipeline with one 2D request in flight: the same per-frame decisions as live."""
    return _offline(engine, 1)


@pytest.fixture(scope="module")
def offline_default(engine: Engine) -> tuple[AnalysisResult, KinematicsResponse]:
    """The offline pipeline as analyses run it (two 2D requests in flight)."""
    return _offline(engine, SPEC.options(engine.settings).pose_workers)


def _distances(run: LiveRun, result: AnalysisResult) -> NDArray[np.float64]:
    """Per-frame, per-keypoint distance (pixels of the frames as sent) between live and offline raw 2D,
    over frames where both have a pose."""
    scale = run.info.width / run.info.out_width  # offline keypoints are in original-video pixels
    rows = []
    for frame, offline in zip(run.frames, result.kps2d_raw, strict=True):
        if frame.keypoints is not None and np.isfinite(offline[:, :2]).all():
            rows.append(np.linalg.norm(frame.keypoints[:, :2] - offline[:, :2] / scale, axis=1))
    return np.array(rows)


@pytest.mark.slow
def test_live_keypoints_match_the_offline_pipeline(
    live: LiveRun,
    offline_serial: tuple[AnalysisResult, KinematicsResponse],
    offline_default: tuple[AnalysisResult, KinematicsResponse],
) -> None:
    assert [f.index for f in live.frames] == list(range(388))
    np.testing.assert_allclose([f.t for f in live.frames], offline_serial[0].t)
    assert all(f.skeleton == "coco17" for f in live.frames)
    with_pose = [f for f in live.frames if f.keypoints is not None]
    assert len(with_pose) == offline_serial[0].frames_with_pose == 388
    for f in with_pose:
        assert f.keypoints is not None and f.keypoints.shape == (17, 3) and f.box is not None
        inside = f.keypoints[:, 2] > 0.3
        assert (f.keypoints[inside, 0] <= 360).all() and (f.keypoints[inside, 1] <= 640).all()
    # one request in flight: the very same detections, crops and poses as the offline pipeline
    d = _distances(live, offline_serial[0])
    assert len(d) == 388 and d.max() < 0.01
    # two in flight offline (a crop from the pose two frames back): measured median 2.4 px, p95 4.8 px
    d = _distances(live, offline_default[0])
    assert len(d) >= 380
    assert np.median(d) < 4.0
    assert np.percentile(np.median(d, axis=1), 95) < 8.0


@pytest.mark.slow
def test_live_steps_are_the_offline_steps_each_reported_once(
    live: LiveRun,
    offline_serial: tuple[AnalysisResult, KinematicsResponse],
    offline_default: tuple[AnalysisResult, KinematicsResponse],
) -> None:
    strikes = np.array([s.strike.t for s in live.steps])
    assert (np.diff(strikes) > 0.25).all()  # strictly increasing, no strike twice (steps are ~0.36 s)
    offline = np.array([s.strike.t for s in offline_serial[1].steps])
    # the same steps from the same frames: one live strike per offline strike, in order, within 20 ms
    assert len(strikes) == len(offline) >= 14  # 6.5 s at ~168 steps/min
    np.testing.assert_allclose(strikes, offline, atol=0.02)
    assert [s.side for s in live.steps] == [s.side for s in offline_serial[1].steps]
    # event indices are stream frame indices
    t_frames = np.array([f.t for f in live.frames])
    for s in live.steps:
        assert abs(t_frames[s.strike.index] - s.strike.t) <= 1 / FPS
        assert s.next_strike is None or s.next_strike.index > s.strike.index
    # while streaming a step is reported once its stride is over; only the end of the stream reports
    # contacts whose step the clip cuts short
    streamed = live.steps[: len(live.steps) - len(live.final)]
    assert all(s.next_strike is not None for s in streamed)
    # mean cadence of the reported steps (as the summaries count them) against the offline analysis
    cadence = live.summary["cadence_spm"]
    assert isinstance(cadence, float)
    reference = offline_default[1].summary["cadence_spm"].mean
    assert reference is not None and 160 < reference < 176
    assert abs(cadence - reference) < 5.0


@pytest.mark.slow
def test_windows_analysed_beside_the_frames_give_the_same_steps(
    live: LiveRun, live_beside: LiveRun, offline_serial: tuple[AnalysisResult, KinematicsResponse]
) -> None:
    # the frames are posed as without the second thread
    for a, b in zip(live.frames, live_beside.frames, strict=True):
        assert (a.keypoints is None) == (b.keypoints is None)
        if a.keypoints is not None and b.keypoints is not None:
            np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-6)
    # every offline strike reported once, in order, whichever frames each window ended at
    strikes = np.array([s.strike.t for s in live_beside.steps])
    assert (np.diff(strikes) > 0.25).all()
    offline = np.array([s.strike.t for s in offline_serial[1].steps])
    assert len(strikes) == len(offline)
    np.testing.assert_allclose(strikes, offline, atol=0.02)
    timing = live_beside.summary["timing_ms"]
    assert isinstance(timing, dict)
    assert timing["window_analyses"] >= 2  # at least one while streaming, then the last


@pytest.mark.slow
def test_steps_are_reported_while_streaming(live: LiveRun) -> None:
    streamed = live.steps[: len(live.steps) - len(live.final)]
    assert len(streamed) >= len(live.steps) - 3
    for step, at in zip(streamed, live.reported_at, strict=True):
        # a stride (~0.72 s) + settle_s (0.25 s) + up to metrics_every_s (1 s) + frame granularity
        assert step.strike.t + 0.5 < at < step.strike.t + 2.5
    assert live.summary["frames"] == 388 and live.summary["frames_with_pose"] == 388
    assert live.summary["steps"] == len(live.steps)


@pytest.mark.slow
def test_window_memory_stays_bounded(live: LiveRun) -> None:
    assert live.max_buffered <= WINDOW_S * FPS + 2
    assert live.max_buffered >= WINDOW_S * FPS  # and the window did fill up


@pytest.mark.slow
def test_large_frames_are_posed_at_the_analysis_size_and_answered_in_their_own_pixels(
    engine: Engine, live: LiveRun
) -> None:
    assert live.first_image is not None
    big = np.repeat(np.repeat(live.first_image, 2, axis=0), 2, axis=1)  # 720x1280, shrinks back exactly
    with LiveSession(engine, SPEC) as session:
        frame = session.push(0.0, big)
    assert frame.keypoints is not None and frame.box is not None
    first = live.frames[0]
    assert first.keypoints is not None and first.box is not None
    np.testing.assert_allclose(frame.keypoints[:, :2], 2 * first.keypoints[:, :2], atol=1e-6)
    np.testing.assert_allclose(frame.keypoints[:, 2], first.keypoints[:, 2], atol=1e-6)
    np.testing.assert_allclose(frame.box, 2 * first.box, atol=1e-6)


# --------------------------------------------------------------------------------------------------------
# stream errors


def test_push_refuses_bad_times_shapes_and_size_changes(engine: Engine) -> None:
    blank = np.zeros((64, 48, 3), np.uint8)
    with LiveSession(engine, SPEC) as session:
        frame = session.push(1.0, blank)
        assert frame.index == 0 and frame.keypoints is None and frame.box is None
        for t in (1.0, 0.5, float("nan")):
            with pytest.raises(FrameRateError):
                session.push(t, blank)
        wrong: list[NDArray[Any]] = [blank[..., 0], np.zeros((64, 48, 4), np.uint8), blank.astype(np.float32)]
        for bad in wrong:
            with pytest.raises(ShapeError):
                session.push(2.0, bad)
        with pytest.raises(InputError, match="size changed"):
            session.push(2.0, np.zeros((48, 64, 3), np.uint8))
        assert session.push(2.0, blank).index == 1  # refused frames leave no trace
        assert session.summary()["frames"] == 2


def test_no_runner_means_no_steps_not_an_error(engine: Engine) -> None:
    blank = np.zeros((64, 48, 3), np.uint8)
    with LiveSession(engine, SPEC, window_s=2.0, metrics_every_s=0.5) as session:
        for i in range(75):
            assert session.push(i / 30, blank).keypoints is None
            assert session.new_steps() == []
        assert session.new_steps(final=True) == []
        assert session.buffered_frames <= 2.0 * 30 + 1
    summary = session.summary()
    timing = summary.pop("timing_ms")
    assert summary == {"frames": 75, "frames_with_pose": 0, "detections": 75, "steps": 0, "cadence_spm": None}
    # every frame ran the detector (nobody found) and no 2D model; a window analysis every 0.5 s of stream
    assert timing["detect_per_call"] > 0 and timing["pose2d_per_frame"] == 0
    assert timing["window_analyses"] == 5 and timing["window_per_analysis"] >= 0


def test_session_options_are_checked(engine: Engine) -> None:
    with pytest.raises(InputError):
        LiveSession(engine, SPEC, window_s=0.5)
    with pytest.raises(InputError):
        LiveSession(engine, SPEC, metrics_every_s=0)
