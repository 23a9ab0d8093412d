"""The kinematics service, really started (uvicorn on a free port), and its client.

Happy path on real motion capture (RBDS001, 3.5 m/s treadmill): the HTTP service and the in-process path
must give the same answer, and the published cadence (171 steps/min)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import SHARED

from services.errors import (
    ClipTooShortError,
    FrameRateError,
    NoValidDataError,
    ServiceUnavailableError,
    ShapeError,
)
from services.kinematics.client import HttpKinematics, LocalKinematics
from services.kinematics.mocap import rbds_motion, read_c3d
from services.kinematics.schema import KinematicsRequest
from services.kinematics.service import create_app
from services.settings import Settings


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    app = create_app(Settings(kinematics_max_frames=20_000, kinematics_max_body_mb=8.0))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not (srv.started and srv.servers):
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def rbds_request() -> KinematicsRequest:
    root = SHARED / "data/mocap-running-rbds"
    motion = rbds_motion(read_c3d(root / "RBDS001runT35.c3d"), read_c3d(root / "RBDS001static.c3d"))
    frames = slice(0, 1500)  # 10 s at 150 Hz: ~28 steps
    joints = {
        name: [[None if not math.isfinite(v) else float(v) for v in row] for row in xyz[frames]]
        for name, xyz in motion.joints.items()
    }
    return KinematicsRequest(
        t=[float(v) for v in motion.t[frames]],
        joints3d=joints,
        up=(float(motion.up[0]), float(motion.up[1]), float(motion.up[2])),
        metric=True,
    )


def test_health_and_readiness(server: str) -> None:
    assert httpx.get(f"{server}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server}/readyz").json() == {"status": "ready"}


def test_http_and_in_process_agree_on_real_mocap(server: str, rbds_request: KinematicsRequest) -> None:
    with HttpKinematics(server) as client:
        remote = client.analyze(rbds_request)
    local = LocalKinematics().analyze(rbds_request)
    assert remote == local
    cadence = remote.summary["cadence_spm"]
    assert cadence.mean is not None and abs(cadence.mean - 171) <= 2
    assert cadence.n >= 20
    assert {s.side for s in remote.steps} == {"left", "right"}


def _post(server: str, body: Any) -> httpx.Response:
    return httpx.post(f"{server}/v1/kinematics", json=body)


POSE = [[[0.0, 0.0, 0.0]] * 17]
CASES = {
    "wrong joint count": ({"fps": 60, "pose3d": [[[0.0, 0.0, 0.0]] * 16] * 5}, 422, "invalid_shape"),
    "ragged": ({"fps": 60, "pose3d": [[[0.0, 0.0]] * 17] * 5}, 422, "invalid_shape"),
    "no pose": ({"fps": 60}, 422, "invalid_shape"),
    "all NaN": ({"fps": 60, "pose3d": [[[None, None, None]] * 17] * 5}, 422, "no_valid_data"),
    "fps zero": ({"fps": 0, "pose3d": POSE * 5}, 422, "invalid_fps"),
    "fps negative": ({"fps": -30, "pose3d": POSE * 5}, 422, "invalid_fps"),
    "t not increasing": ({"t": [0, 1, 1, 2, 3], "pose3d": POSE * 5}, 422, "invalid_fps"),
    "not JSON types": ({"fps": "fast", "pose3d": POSE * 5}, 422, "invalid_request"),
    "too many frames": ({"fps": 60, "pose3d": POSE * 20_001}, 413, "too_many_frames"),
}


@pytest.mark.parametrize(("body", "status", "code"), list(CASES.values()), ids=list(CASES))
def test_bad_input_gets_4xx_with_a_code(server: str, body: Any, status: int, code: str) -> None:
    r = _post(server, body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_before_it_is_parsed(server: str, chunked: bool) -> None:
    """8 MB limit, 9 MB of JSON: 413 payload_too_large, whether or not the size is declared up front."""
    body = b'{"fps": 60, "pose3d": [' + b",".join([b"[[0.0,0.0,0.0]]"] * 620_000) + b"]}"
    assert len(body) > 9 * 2**20
    content: Any = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    r = httpx.post(f"{server}/v1/kinematics", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", r.text
    assert "kinematics_max_body_mb" in r.json()["error"]["message"]


def test_clip_shorter_than_a_stride(server: str, rbds_request: KinematicsRequest) -> None:
    short = rbds_request.model_copy(
        update={
            "t": rbds_request.t[:40] if rbds_request.t else None,
            "joints3d": {k: v[:40] for k, v in (rbds_request.joints3d or {}).items()},
        }
    )
    r = _post(server, short.model_dump(mode="json"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "clip_too_short"
    with HttpKinematics(server) as client, pytest.raises(ClipTooShortError):
        client.analyze(short)


def test_client_turns_error_bodies_into_the_library_errors(server: str) -> None:
    with HttpKinematics(server) as client:
        with pytest.raises(ShapeError):
            client.analyze(KinematicsRequest(fps=60, pose3d=[[[0.0, 0.0, 0.0]] * 16] * 5))
        with pytest.raises(NoValidDataError):
            client.analyze(KinematicsRequest(fps=60, pose3d=[[[None, None, None]] * 17] * 5))
        with pytest.raises(FrameRateError):
            client.analyze(KinematicsRequest(fps=-1, pose3d=POSE * 5))


def test_unreachable_service_is_a_clear_error() -> None:
    with (
        HttpKinematics("http://127.0.0.1:9", timeout_s=2) as client,
        pytest.raises(ServiceUnavailableError, match="unreachable"),
    ):
        client.analyze(KinematicsRequest(fps=60, pose3d=POSE * 5))


def test_openapi_schema_documents_the_route(server: str) -> None:
    spec = httpx.get(f"{server}/openapi.json").json()
    post = spec["paths"]["/v1/kinematics"]["post"]
    assert {"200", "422"} <= set(post["responses"])
