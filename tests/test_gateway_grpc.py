"""gRPC API of the gateway: a real grpc.aio server on a free port with a real job manager, SQLite job store
and embedded models, driven by ordinary synchronous gRPC clients.

Known truths: the error table fixes each status and ``error-code``; an analysis watched to the end equals
the result fetched afterwards and holds one pose per video frame; a live stream answers every frame it
was sent exactly once, in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import av
import cv2
import grpc
import numpy as np
import pytest
from gateway_support import ALICE, BOB, DEMO3, TREADMILL, gateway_settings
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.grpc_api import SERVICE_NAME, LiveStream, set_serving
from gateway.live import LiveFrame
from gateway.proto.gaitway.v1 import gaitway_pb2 as pb
from gateway.proto.gaitway.v1 import gaitway_pb2_grpc as pb_grpc
from gateway.server import GrpcGatewayThread
from gateway.telemetry import Telemetry
from services.errors import FrameRateError
from services.pose.ingest import VideoReader
from services.settings import Settings

pytestmark = pytest.mark.slow

T = TypeVar("T")

CAROL = "carol-secret-0123456789abcdef"  # one request a minute
CHUNK = 256 * 1024
STREAM_FRAMES = 90
KEYS = f"alice:{ALICE}\nbob:{BOB}\ncarol:{CAROL}:100:1\n"


class Gateway(GrpcGatewayThread):
    """The gateway's gRPC server in a background thread, with a client channel to it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{self.port}", options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        )
        self.stub = pb_grpc.AnalysisStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        super().close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    settings = gateway_settings(
        tmp_path_factory.mktemp("gateway_grpc"), keys=KEYS, max_upload_mb=4.0, stream_max_inflight_frames=2
    )
    gw = Gateway(settings)
    try:
        yield gw
    finally:
        gw.close()


def key(secret: str | None = ALICE, **extra: str) -> list[tuple[str, str]]:
    metadata = [("x-api-key", secret)] if secret is not None else []
    return metadata + list(extra.items())


def upload_requests(
    data: bytes, *, chunk: int = CHUNK, idempotency_key: str = "", height_m: float | None = 1.75
) -> Iterator[pb.AnalyzeVideoRequest]:
    runner = pb.RunnerInfo(height_m=height_m) if height_m is not None else pb.RunnerInfo()
    yield pb.AnalyzeVideoRequest(
        metadata=pb.UploadMetadata(
            filename="clips/demo3.mp4",
            content_type="video/mp4",
            runner=runner,
            preset="lightning",
            idempotency_key=idempotency_key,
        )
    )
    for start in range(0, len(data), chunk):
        yield pb.AnalyzeVideoRequest(chunk=data[start : start + chunk])


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def trailers(err: grpc.RpcError) -> dict[str, str]:
    return dict(err.trailing_metadata() or ())


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def stored_uploads(settings: Settings) -> set[str]:
    return {p.name for p in settings.uploads_dir.iterdir()}


@pytest.fixture(scope="module")
def watched(gateway: Gateway) -> tuple[pb.AnalysisStatus, list[pb.AnalysisStatus]]:
    """demo3 uploaded in 256 KiB chunks and watched to the end: (upload answer, every watched status)."""
    accepted = gateway.stub.AnalyzeVideo(upload_requests(DEMO3.read_bytes()), metadata=key(), timeout=60)
    statuses = list(
        gateway.stub.WatchAnalysis(pb.WatchAnalysisRequest(id=accepted.id), metadata=key(), timeout=300)
    )
    return accepted, statuses


# --------------------------------------------------------------------------------------------------------
# uploads, status, results


def test_upload_is_accepted_and_queued(watched: tuple[pb.AnalysisStatus, list[pb.AnalysisStatus]]) -> None:
    accepted, _ = watched
    assert accepted.id.startswith("an_") and accepted.created
    assert accepted.state in (pb.ANALYSIS_STATE_QUEUED, pb.ANALYSIS_STATE_RUNNING)
    assert accepted.filename == "demo3.mp4"  # display name: the last path part only
    assert accepted.upload_bytes == DEMO3.stat().st_size
    assert accepted.created_at.seconds > 0 and not accepted.HasField("result_json")


def test_watch_reports_non_decreasing_progress_and_ends_done_with_the_result(
    watched: tuple[pb.AnalysisStatus, list[pb.AnalysisStatus]],
) -> None:
    accepted, statuses = watched
    assert statuses and all(s.id == accepted.id for s in statuses)
    progress = [s.progress for s in statuses]
    assert progress == sorted(progress), progress
    last = statuses[-1]
    assert last.state == pb.ANALYSIS_STATE_DONE, last
    assert last.progress == 1.0 and last.stage == "done"
    assert not last.HasField("error")
    assert last.finished_at.ToDatetime() >= last.started_at.ToDatetime() >= last.created_at.ToDatetime()
    assert all(not s.HasField("result_json") for s in statuses[:-1])
    assert json.loads(last.result_json)["job"]["id"] == accepted.id
    assert last.summary["frames"] == 47


def test_get_analysis_with_result_holds_one_pose_per_video_frame(
    gateway: Gateway, watched: tuple[pb.AnalysisStatus, list[pb.AnalysisStatus]]
) -> None:
    accepted, _ = watched
    plain = gateway.stub.GetAnalysis(pb.GetAnalysisRequest(id=accepted.id), metadata=key())
    assert plain.state == pb.ANALYSIS_STATE_DONE and not plain.HasField("result_json")
    full = gateway.stub.GetAnalysis(
        pb.GetAnalysisRequest(id=accepted.id, include_result=True), metadata=key()
    )
    doc = json.loads(full.result_json)
    assert doc["job"]["id"] == accepted.id and doc["job"]["options"]["height_m"] == 1.75
    assert len(doc["poses"]["frames"]) == count_frames(DEMO3) == 47
    assert doc["poses"]["models"]["pose2d"]["name"] == "movenet-lightning"


def test_same_idempotency_key_and_bytes_give_the_same_analysis(gateway: Gateway) -> None:
    data = DEMO3.read_bytes()
    first = gateway.stub.AnalyzeVideo(upload_requests(data, idempotency_key="demo3-once"), metadata=key())
    # the second upload arrives in smaller pieces: the same bytes all the same
    again = gateway.stub.AnalyzeVideo(
        upload_requests(data, idempotency_key="demo3-once", chunk=16 * 1024), metadata=key()
    )
    assert first.created and not again.created
    assert again.id == first.id
    err = rpc_error(
        lambda: gateway.stub.AnalyzeVideo(
            upload_requests(data[: len(data) // 2], idempotency_key="demo3-once"), metadata=key()
        )
    )
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and trailers(err)["error-code"] == "conflict"


def _not_metadata_first(data: bytes) -> Iterator[pb.AnalyzeVideoRequest]:
    yield pb.AnalyzeVideoRequest(chunk=data[:CHUNK])
    yield from upload_requests(data)


@pytest.mark.parametrize(
    ("case", "requests", "code"),
    [
        ("not a video", lambda: upload_requests(b"this is not a video\n" * 500), "invalid_video"),
        ("zero bytes", lambda: upload_requests(b""), "invalid_video"),
        ("first message not metadata", lambda: _not_metadata_first(DEMO3.read_bytes()), "bad_request"),
        (
            "truncated mp4",
            lambda: upload_requests(DEMO3.read_bytes()[: DEMO3.stat().st_size // 2]),
            "invalid_video",
        ),
        ("no message at all", lambda: iter(()), "bad_request"),
        ("height out of range", lambda: upload_requests(DEMO3.read_bytes(), height_m=4.0), "invalid_input"),
        ("over max_upload_mb", lambda: upload_requests(bytes(5 * 2**20), chunk=2**20), "payload_too_large"),
    ],
)
def test_bad_uploads_are_invalid_argument_with_an_error_code_and_store_nothing(
    gateway: Gateway, case: str, requests: Callable[[], Iterator[pb.AnalyzeVideoRequest]], code: str
) -> None:
    before = stored_uploads(gateway.settings)
    err = rpc_error(lambda: gateway.stub.AnalyzeVideo(requests(), metadata=key(), timeout=60))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, err.details())
    assert trailers(err)["error-code"] == code, (case, err.details())
    assert err.details()
    assert stored_uploads(gateway.settings) == before


def test_unknown_preset_is_invalid_argument(gateway: Gateway) -> None:
    def requests() -> Iterator[pb.AnalyzeVideoRequest]:
        yield pb.AnalyzeVideoRequest(metadata=pb.UploadMetadata(filename="a.mp4", preset="no-such-preset"))
        yield pb.AnalyzeVideoRequest(chunk=DEMO3.read_bytes())

    err = rpc_error(lambda: gateway.stub.AnalyzeVideo(requests(), metadata=key()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "no-such-preset" in err.details()


def test_a_message_over_the_size_limit_is_refused_by_grpc(gateway: Gateway) -> None:
    err = rpc_error(
        lambda: gateway.stub.AnalyzeVideo(upload_requests(bytes(9 * 2**20), chunk=9 * 2**20), metadata=key())
    )
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --------------------------------------------------------------------------------------------------------
# access


@pytest.mark.parametrize("secret", [None, "wrong-secret-0123456789abcdef"])
def test_missing_or_wrong_key_is_unauthenticated(gateway: Gateway, secret: str | None) -> None:
    for call in (
        lambda: gateway.stub.GetAnalysis(pb.GetAnalysisRequest(id="an_" + "0" * 24), metadata=key(secret)),
        lambda: gateway.stub.AnalyzeVideo(upload_requests(DEMO3.read_bytes()), metadata=key(secret)),
        lambda: list(
            gateway.stub.WatchAnalysis(pb.WatchAnalysisRequest(id="an_" + "0" * 24), metadata=key(secret))
        ),
    ):
        err = rpc_error(call)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert trailers(err)["error-code"] == "unauthenticated"


def test_bearer_authorization_works_too(
    gateway: Gateway, watched: tuple[pb.AnalysisStatus, list[pb.AnalysisStatus]]
) -> None:
    status = gateway.stub.GetAnalysis(
        pb.GetAnalysisRequest(id=watched[0].id), metadata=[("authorization", f"Bearer {ALICE}")]
    )
    assert status.id == watched[0].id


def test_another_clients_analysis_is_permission_denied(
    gateway: Gateway, watched: tuple[pb.AnalysisStatus, list[pb.AnalysisStatus]]
) -> None:
    for call in (
        lambda: gateway.stub.GetAnalysis(pb.GetAnalysisRequest(id=watched[0].id), metadata=key(BOB)),
        lambda: list(
            gateway.stub.WatchAnalysis(pb.WatchAnalysisRequest(id=watched[0].id), metadata=key(BOB))
        ),
    ):
        err = rpc_error(call)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert trailers(err)["error-code"] == "permission_denied"


def test_unknown_analysis_is_not_found(gateway: Gateway) -> None:
    err = rpc_error(
        lambda: gateway.stub.GetAnalysis(pb.GetAnalysisRequest(id="an_" + "0" * 24), metadata=key())
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND and trailers(err)["error-code"] == "not_found"


def test_rate_limit_is_resource_exhausted_with_retry_after(gateway: Gateway) -> None:
    missing = pb.GetAnalysisRequest(id="an_" + "1" * 24)
    first = rpc_error(lambda: gateway.stub.GetAnalysis(missing, metadata=key(CAROL)))
    assert first.code() == grpc.StatusCode.NOT_FOUND  # the one request of this minute
    err = rpc_error(lambda: gateway.stub.GetAnalysis(missing, metadata=key(CAROL)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    meta = trailers(err)
    assert meta["error-code"] == "rate_limited"
    assert 0 < float(meta["retry-after-s"]) <= 60


# --------------------------------------------------------------------------------------------------------
# request ids, telemetry, unexpected errors


def test_request_id_is_taken_from_metadata_or_made(gateway: Gateway) -> None:
    missing = pb.GetAnalysisRequest(id="an_" + "2" * 24)
    err = rpc_error(
        lambda: gateway.stub.GetAnalysis(missing, metadata=key(**{"x-request-id": "req-abc.123"}))
    )
    assert trailers(err)["x-request-id"] == "req-abc.123"
    err = rpc_error(
        lambda: gateway.stub.GetAnalysis(missing, metadata=key(**{"x-request-id": "bad id {with} spaces"}))
    )
    made = trailers(err)["x-request-id"]
    assert made != "bad id {with} spaces" and len(made) == 32


def test_a_successful_call_returns_its_request_id(
    gateway: Gateway, watched: tuple[pb.AnalysisStatus, list[pb.AnalysisStatus]]
) -> None:
    request = pb.GetAnalysisRequest(id=watched[0].id)
    _, call = gateway.stub.GetAnalysis.with_call(request, metadata=key(**{"x-request-id": "req-ok"}))
    assert dict(call.trailing_metadata())["x-request-id"] == "req-ok"


def test_calls_are_counted_by_method_and_code(gateway: Gateway) -> None:
    registry = gateway.manager.telemetry.registry

    def count(method: str, code: str) -> float:
        return (
            registry.get_sample_value("gaitway_grpc_requests_total", {"method": method, "code": code}) or 0.0
        )

    before = count("GetAnalysis", "NOT_FOUND")
    rpc_error(lambda: gateway.stub.GetAnalysis(pb.GetAnalysisRequest(id="an_" + "4" * 24), metadata=key()))
    assert count("GetAnalysis", "NOT_FOUND") == before + 1
    assert (
        registry.get_sample_value("gaitway_grpc_request_seconds_count", {"method": "GetAnalysis"}) or 0
    ) >= 1


def test_an_unexpected_exception_is_internal_never_unknown(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(job_id: str, *, owner: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(gateway.manager, "get", boom)
    with caplog.at_level(logging.ERROR, logger="gaitway.grpc"):
        err = rpc_error(
            lambda: gateway.stub.GetAnalysis(
                pb.GetAnalysisRequest(id="an_" + "5" * 24), metadata=key(**{"x-request-id": "req-boom"})
            )
        )
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "secret internals" not in err.details() and "req-boom" in err.details()
    assert trailers(err)["error-code"] == "internal"
    assert any("req-boom" in r.getMessage() and r.exc_info for r in caplog.records)


# --------------------------------------------------------------------------------------------------------
# health and reflection


def test_health_is_serving_and_can_be_switched_off(gateway: Gateway) -> None:
    health = health_pb2_grpc.HealthStub(gateway.channel)
    for service in ("", SERVICE_NAME):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))  # no API key needed
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    err = rpc_error(lambda: health.Check(health_pb2.HealthCheckRequest(service="no.such.Service")))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    async def switch(serving: bool) -> None:
        set_serving(gateway.server, serving)

    gateway.run(lambda: switch(False))
    try:
        answer = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        gateway.run(lambda: switch(True))
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_analysis_service(gateway: Gateway) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(gateway.channel)
    answers = list(
        stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    names = {s.name for s in answers[0].list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME)
    answer = next(iter(stub.ServerReflectionInfo(iter([request]))))
    assert answer.file_descriptor_response.file_descriptor_proto


# --------------------------------------------------------------------------------------------------------
# live streaming


@pytest.fixture(scope="module")
def treadmill_jpegs() -> list[tuple[float, bytes]]:
    """The first STREAM_FRAMES frames of the treadmill clip as a phone app sends them: (t, JPEG)."""
    frames: list[tuple[float, bytes]] = []
    with VideoReader(TREADMILL, max_long_side=640) as reader:
        for frame in reader:
            ok, jpeg = cv2.imencode(
                ".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]
            )
            assert ok
            frames.append((frame.t, jpeg.tobytes()))
            if len(frames) == STREAM_FRAMES:
                break
    return frames


def frame_requests(frames: list[tuple[float, bytes]], *, preset: str = "lightning") -> Iterator[pb.FrameIn]:
    """The config, then each frame at its time as a camera delivers it (60 fps)."""
    yield pb.FrameIn(config=pb.StreamConfig(preset=preset, runner=pb.RunnerInfo(height_m=1.78)))
    start = time.perf_counter()
    for seq, (t, jpeg) in enumerate(frames):
        time.sleep(max(0.0, start + t - time.perf_counter()))
        yield pb.FrameIn(frame=pb.Frame(seq=seq, t=t, image=jpeg))


def test_stream_answers_every_frame_once_in_order(
    gateway: Gateway, treadmill_jpegs: list[tuple[float, bytes]]
) -> None:
    answers = list(gateway.stub.StreamFrames(frame_requests(treadmill_jpegs), metadata=key(), timeout=300))
    per_frame = [a for a in answers if a.WhichOneof("payload") in ("keypoints", "dropped")]
    seqs = [getattr(a, a.WhichOneof("payload")).seq for a in per_frame]
    assert seqs == list(range(STREAM_FRAMES))
    keypoints = [a.keypoints for a in per_frame if a.WhichOneof("payload") == "keypoints"]
    dropped = [a.dropped for a in per_frame if a.WhichOneof("payload") == "dropped"]
    assert all(d.reason == "backpressure" for d in dropped)
    assert keypoints[-1].seq == STREAM_FRAMES - 1  # the newest frame is never the one dropped
    assert len(keypoints) >= STREAM_FRAMES // 4  # a slow machine drops frames, but not most of them
    with_runner = [k for k in keypoints if k.keypoints]
    assert len(with_runner) >= 0.9 * len(keypoints)
    h, w = cv2.imdecode(np.frombuffer(treadmill_jpegs[0][1], np.uint8), cv2.IMREAD_COLOR).shape[:2]
    for k in with_runner:
        assert k.skeleton == "coco17" and len(k.keypoints) == 17
        assert k.box.x0 < k.box.x1 and k.box.y0 < k.box.y1
        assert 0 < (k.box.x0 + k.box.x1) / 2 < w and 0 < (k.box.y0 + k.box.y1) / 2 < h
        assert all(0 <= p.x <= w and 0 <= p.y <= h for p in k.keypoints if p.score > 0.3)
        assert k.t == pytest.approx(treadmill_jpegs[k.seq][0])
        assert k.latency_ms >= k.inference_ms > 0
    assert answers[-1].WhichOneof("payload") == "summary"
    summary = answers[-1].summary
    assert summary.frames_received == STREAM_FRAMES
    assert summary.frames_analysed == len(keypoints) and summary.frames_dropped == len(dropped)
    assert summary.steps == sum(a.WhichOneof("payload") == "step" for a in answers)
    assert summary.summary["frames"] == len(keypoints)
    steps = [a.step for a in answers if a.WhichOneof("payload") == "step"]
    assert all(s.side in ("left", "right") and s.strike_t >= 0 for s in steps)


def test_stream_reports_a_bad_frame_and_goes_on(
    gateway: Gateway, treadmill_jpegs: list[tuple[float, bytes]]
) -> None:
    def requests() -> Iterator[pb.FrameIn]:
        yield pb.FrameIn(config=pb.StreamConfig(preset="lightning"))
        yield pb.FrameIn(frame=pb.Frame(seq=0, t=0.0, image=treadmill_jpegs[0][1]))
        yield pb.FrameIn(frame=pb.Frame(seq=1, t=0.1, image=b"not an image"))
        yield pb.FrameIn(frame=pb.Frame(seq=2, t=0.0, image=treadmill_jpegs[1][1]))  # time stands still
        yield pb.FrameIn(frame=pb.Frame(seq=3, t=0.2, image=treadmill_jpegs[2][1]))

    answers = list(gateway.stub.StreamFrames(_paced(requests()), metadata=key(), timeout=120))
    kinds = [(a.WhichOneof("payload"), getattr(a, a.WhichOneof("payload"))) for a in answers]
    per_frame = [(kind, msg.seq) for kind, msg in kinds if kind in ("keypoints", "dropped")]
    assert per_frame == [("keypoints", 0), ("dropped", 1), ("dropped", 2), ("keypoints", 3)]
    reasons = [msg.reason for kind, msg in kinds if kind == "dropped"]
    assert reasons == ["invalid_input", FrameRateError.code]
    assert kinds[-1][0] == "summary"


def _paced(requests: Iterator[pb.FrameIn], delay_s: float = 0.3) -> Iterator[pb.FrameIn]:
    """One message every ``delay_s``: slow enough that no frame is dropped for backpressure."""
    for i, msg in enumerate(requests):
        if i > 1:
            time.sleep(delay_s)
        yield msg


@pytest.mark.parametrize(
    "first",
    [pb.FrameIn(frame=pb.Frame(seq=0, t=0.0, image=b"x")), None],
    ids=["frame first", "nothing"],
)
def test_stream_must_start_with_config(gateway: Gateway, first: pb.FrameIn | None) -> None:
    requests = iter([first] if first is not None else [])
    err = rpc_error(lambda: list(gateway.stub.StreamFrames(requests, metadata=key())))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and trailers(err)["error-code"] == "bad_request"


def test_a_second_config_ends_the_stream_with_invalid_argument(
    gateway: Gateway, treadmill_jpegs: list[tuple[float, bytes]]
) -> None:
    def requests() -> Iterator[pb.FrameIn]:
        yield pb.FrameIn(config=pb.StreamConfig(preset="lightning"))
        yield pb.FrameIn(frame=pb.Frame(seq=0, t=0.0, image=treadmill_jpegs[0][1]))
        time.sleep(0.5)
        yield pb.FrameIn(config=pb.StreamConfig(preset="lightning"))
        time.sleep(0.5)

    answers: list[pb.FrameOut] = []
    err = rpc_error(lambda: answers.extend(gateway.stub.StreamFrames(requests(), metadata=key(), timeout=60)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and trailers(err)["error-code"] == "bad_request"
    assert [a.WhichOneof("payload") for a in answers] == ["keypoints"]
    registry = gateway.manager.telemetry.registry
    labels = {"method": "StreamFrames", "code": "INVALID_ARGUMENT"}
    assert (registry.get_sample_value("gaitway_grpc_requests_total", labels) or 0) >= 1


def test_stream_with_unknown_preset_is_invalid_argument(gateway: Gateway) -> None:
    requests = iter([pb.FrameIn(config=pb.StreamConfig(preset="no-such-preset"))])
    err = rpc_error(lambda: list(gateway.stub.StreamFrames(requests, metadata=key())))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


# --------------------------------------------------------------------------------------------------------
# backpressure, deterministically


class _SlowSession:
    """A LiveSession stand-in taking 20 ms a frame."""

    def __init__(self) -> None:
        self.pushed: list[float] = []
        self.closed = False

    def push(self, t: float, image: Any) -> LiveFrame:
        time.sleep(0.02)
        self.pushed.append(t)
        return LiveFrame(index=len(self.pushed) - 1, t=t, keypoints=None, box=None, skeleton="coco17")

    def take_window(self, *, final: bool = False) -> None:
        return None  # no window analysis is ever due

    def steps_of(self, window: Any) -> list[Any]:
        return []

    def summary(self) -> dict[str, Any]:
        return {"frames": len(self.pushed)}

    def close(self) -> None:
        self.closed = True


def test_a_full_queue_drops_the_oldest_waiting_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.grpc_api.decode_image", lambda data: data)
    session = _SlowSession()

    async def burst() -> Any:
        for seq in range(10):  # all ten arrive before the first is analysed
            yield pb.FrameIn(frame=pb.Frame(seq=seq, t=seq / 30, image=b"jpeg"))

    async def main() -> list[pb.FrameOut]:
        stream = LiveStream(burst(), lambda: session, max_waiting=3, telemetry=Telemetry())
        return [answer async for answer in stream.run()]

    answers = asyncio.run(main())
    per_frame = [(a.WhichOneof("payload"), getattr(a, a.WhichOneof("payload")).seq) for a in answers[:-1]]
    assert per_frame == [("dropped", s) for s in range(7)] + [("keypoints", s) for s in (7, 8, 9)]
    assert session.pushed == [7 / 30, 8 / 30, 9 / 30]
    assert answers[-1].summary.frames_dropped == 7 and answers[-1].summary.frames_analysed == 3
    assert session.closed


# --------------------------------------------------------------------------------------------------------
# limits that hold (a gateway of their own: the limits live in its store)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    settings = gateway_settings(
        tmp_path_factory.mktemp("gateway_limits"), keys=KEYS, stream_sessions_per_key=1
    )
    gw = Gateway(settings)
    try:
        yield gw
    finally:
        gw.close()


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway of its own: once throttled, its whole client address is blocked for a minute."""
    gw = Gateway(gateway_settings(tmp_path, keys=KEYS, auth_failures_per_min=5))
    try:
        yield gw
    finally:
        gw.close()


def test_failed_authentications_are_throttled_per_address(guarded: Gateway) -> None:
    missing = pb.GetAnalysisRequest(id="an_" + "3" * 24)
    wrong = key("wrong")
    codes = [rpc_error(lambda: guarded.stub.GetAnalysis(missing, metadata=wrong)) for _ in range(8)]
    assert [e.code() for e in codes[:5]] == [grpc.StatusCode.UNAUTHENTICATED] * 5
    throttled = codes[5:]
    assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in throttled)
    assert trailers(throttled[0])["error-code"] == "rate_limited"
    assert 0 < float(trailers(throttled[0])["retry-after-s"]) <= 60
    # the block covers the address, so a right key from it waits too
    err = rpc_error(lambda: guarded.stub.GetAnalysis(missing, metadata=key(BOB)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_huge_id_is_not_found_and_not_echoed(limited: Gateway) -> None:
    err = rpc_error(
        lambda: limited.stub.GetAnalysis(pb.GetAnalysisRequest(id="x" * 1_000_000), metadata=key(BOB))
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert len(err.details() or "") < 200


def test_idempotency_keys_have_one_limit(limited: Gateway) -> None:
    data = DEMO3.read_bytes()
    err = rpc_error(
        lambda: limited.stub.AnalyzeVideo(upload_requests(data, idempotency_key="k" * 256), metadata=key(BOB))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and trailers(err)["error-code"] == "bad_request"
    ok = limited.stub.AnalyzeVideo(
        upload_requests(data, idempotency_key="k" * 255), metadata=key(BOB), timeout=60
    )
    assert ok.id.startswith("an_")


def test_live_streams_are_limited_per_key(limited: Gateway) -> None:
    """One open stream per key: a second is RESOURCE_EXHAUSTED while the first is open, allowed after."""
    opened = threading.Event()
    release = threading.Event()

    def holding() -> Iterator[pb.FrameIn]:
        yield pb.FrameIn(config=pb.StreamConfig(preset="lightning"))
        opened.set()
        release.wait(30)

    first = limited.stub.StreamFrames(holding(), metadata=key(BOB), timeout=60)
    worker = threading.Thread(target=lambda: list(first))
    worker.start()
    try:
        assert opened.wait(10)
        time.sleep(1.0)  # the first call has taken its place
        config = [pb.FrameIn(config=pb.StreamConfig(preset="lightning"))]
        err = rpc_error(lambda: list(limited.stub.StreamFrames(iter(config), metadata=key(BOB), timeout=30)))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and trailers(err)["error-code"] == "busy"
        other = list(
            limited.stub.StreamFrames(iter(config), metadata=key(ALICE), timeout=30)
        )  # other keys pass
        assert other and other[-1].WhichOneof("payload") == "summary"
    finally:
        release.set()
        worker.join(30)
    again = list(limited.stub.StreamFrames(iter(config), metadata=key(BOB), timeout=30))
    assert again[-1].WhichOneof("payload") == "summary"
