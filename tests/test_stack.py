"""The real local stack (Triton on the CPU repository, kinematics service, gateway: three processes):
end to end against the CLI, and the fault cases: Triton stopped for a minute, Triton left down, the
kinematics service killed, the gateway killed, each mid-job. In every case the job ends done or explicitly
failed, never stuck or lost, and an outage spends no attempt."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from conftest import SHARED
from gateway_support import DEMO3, TREADMILL

from gateway.cli import main as cli_main
from gateway.proto.gaitway.v1 import gaitway_pb2 as pb
from gateway.proto.gaitway.v1 import gaitway_pb2_grpc as rpc
from gateway.records import Job
from gateway.stack import LocalStack, Ports
from gateway.store import SqlStore

pytestmark = pytest.mark.triton

MODELS = f"{SHARED / 'models'}:{SHARED / 'reference'}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("stack")
    env = {"GAITWAY_MAX_ATTEMPTS": "4", "GAITWAY_LEASE_S": "6", "GAITWAY_LOG_JSON": "true"}
    with LocalStack(root, preset="lightning", models_dir=MODELS, ports=Ports.free(), env=env) as s:
        yield s


def _client(stack: LocalStack) -> httpx.Client:
    return httpx.Client(base_url=stack.gateway_url, headers={"x-api-key": stack.api_key}, timeout=30.0)


def _upload(stack: LocalStack, video: Path) -> str:
    with _client(stack) as c:
        r = c.post("/v1/analyses", content=video.read_bytes(), headers={"content-type": "video/mp4"})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


def _status(stack: LocalStack, job_id: str) -> dict[str, Any]:
    with _client(stack) as c:
        r = c.get(f"/v1/analyses/{job_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _wait(stack: LocalStack, job_id: str, *, until: float = 1.0, timeout_s: float = 300) -> dict[str, Any]:
    """Poll until the job is finished (``until`` = 1) or has passed ``until`` progress while running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with _client(stack) as c:
                r = c.get(f"/v1/analyses/{job_id}")
        except httpx.TransportError:  # the gateway is restarting
            time.sleep(0.5)
            continue
        if r.status_code == 429:  # a polite client waits as told
            time.sleep(float(r.headers["retry-after"]))
            continue
        assert r.status_code == 200, r.text
        s: dict[str, Any] = r.json()
        if s["state"] in ("done", "failed") or (
            until < 1.0 and s["state"] == "running" and s["progress"] >= until
        ):
            return s
        time.sleep(0.6)  # within the default 120 requests/min of a key
    raise AssertionError(f"job {job_id} stuck: {_status(stack, job_id)}")


def test_end_to_end_equals_the_cli(stack: LocalStack, tmp_path: Path) -> None:
    job_id = _upload(stack, DEMO3)
    s = _wait(stack, job_id)
    assert s["state"] == "done", s
    with _client(stack) as c:
        doc = c.get(f"/v1/analyses/{job_id}/result").json()
    out = tmp_path / "cli"
    assert (
        cli_main(
            [
                "analyze",
                str(DEMO3),
                "--out",
                str(out),
                "--preset",
                "lightning",
                "--models-dir",
                MODELS,
                "--no-progress",
            ]
        )
        == 0
    )
    cli = json.loads((out / "poses.json").read_text())
    assert len(doc["poses"]["frames"]) == len(cli["frames"]) == 47
    stack_kps = np.array([f["keypoints2d"] for f in doc["poses"]["frames"]], dtype=float)
    cli_kps = np.array([f["keypoints2d"] for f in cli["frames"]], dtype=float)
    np.testing.assert_allclose(stack_kps, cli_kps, atol=1e-2, equal_nan=True)
    assert (doc["metrics"] is None) == (not (out / "metrics.json").exists())
    # the gateway really went through Triton and the kinematics service
    with _client(stack) as c:
        metrics = c.get("/metrics").text
    assert "gaitway_triton_call_seconds_count" in metrics
    assert "POST /v1/kinematics" in stack.log_tail("kinematics", 200)


def test_grpc_upload_through_the_stack_equals_http(stack: LocalStack) -> None:
    meta = [("x-api-key", stack.api_key)]

    def requests() -> Iterator[pb.AnalyzeVideoRequest]:
        yield pb.AnalyzeVideoRequest(
            metadata=pb.UploadMetadata(filename="demo3.mp4", content_type="video/mp4")
        )
        data = DEMO3.read_bytes()
        for i in range(0, len(data), 32 * 1024):
            yield pb.AnalyzeVideoRequest(chunk=data[i : i + 32 * 1024])

    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(stack.gateway_grpc, options=options) as channel:
        api = rpc.AnalysisStub(channel)
        status = api.AnalyzeVideo(requests(), metadata=meta, timeout=60)
        final = list(api.WatchAnalysis(pb.WatchAnalysisRequest(id=status.id), metadata=meta, timeout=300))[-1]
    assert final.state == pb.ANALYSIS_STATE_DONE, final
    grpc_doc = json.loads(final.result_json)
    http_id = _upload(stack, DEMO3)
    assert _wait(stack, http_id)["state"] == "done"
    with _client(stack) as c:
        http_doc = c.get(f"/v1/analyses/{http_id}/result").json()
    a = np.array([f["keypoints2d"] for f in grpc_doc["poses"]["frames"]], dtype=float)
    b = np.array([f["keypoints2d"] for f in http_doc["poses"]["frames"]], dtype=float)
    np.testing.assert_array_equal(a, b)


def _job(stack: LocalStack, job_id: str) -> Job:
    store = SqlStore(f"sqlite:///{stack.root / 'var' / 'gaitway.db'}")
    try:
        return store.get(job_id)
    finally:
        store.close()


def test_a_preset_the_stack_does_not_serve_is_refused_before_queueing(stack: LocalStack) -> None:
    """The stack's Triton serves the lightning models only: thunder is refused at upload, not failed later."""
    with _client(stack) as c:
        before = len(c.get("/v1/analyses", params={"limit": 100}).json()["items"])
        r = c.post(
            "/v1/analyses?preset=thunder", content=DEMO3.read_bytes(), headers={"content-type": "video/mp4"}
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "bad_request" and "thunder" in r.json()["error"]["message"]
        assert len(c.get("/v1/analyses", params={"limit": 100}).json()["items"]) == before


def test_triton_stopped_for_a_minute_mid_job_fails_nothing(stack: LocalStack) -> None:
    job_id = _upload(stack, TREADMILL)
    assert _wait(stack, job_id, until=0.2)["state"] == "running"
    stack.kill("triton")
    queued = _upload(stack, DEMO3)  # accepted during the outage, dispatched only once Triton is back
    time.sleep(50.0)
    late = _upload(stack, DEMO3)  # the gateway knows Triton is down: still accepted, to wait
    time.sleep(10.0)
    assert _status(stack, queued)["state"] == "queued"
    stack.start("triton")
    s = _wait(stack, job_id)
    assert s["state"] == "done", s
    assert s["attempts"] == 1  # the outage gave its attempt back
    assert _wait(stack, queued)["state"] == "done"
    assert _wait(stack, late)["state"] == "done"
    assert _job(stack, job_id).outage_retries >= 1


def _restart_gateway(stack: LocalStack, **env: str) -> None:
    stack.stop("gateway")
    for name, value in env.items():
        if value:
            stack.extra_env[name] = value
        else:
            stack.extra_env.pop(name, None)
    stack.start("gateway")


def test_triton_left_down_ends_the_job_with_a_clear_error(stack: LocalStack) -> None:
    _restart_gateway(stack, GAITWAY_MAX_OUTAGE_S="12")
    try:
        job_id = _upload(stack, TREADMILL)
        assert _wait(stack, job_id, until=0.1)["state"] == "running"
        stack.kill("triton")
        try:
            with _client(stack) as c:
                ready = c.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["triton"] == "unreachable"
            s = _wait(stack, job_id)
        finally:
            stack.start("triton")
    finally:
        _restart_gateway(stack, GAITWAY_MAX_OUTAGE_S="")
    assert s["state"] == "failed", s
    assert s["error"]["code"] == "service_unavailable"
    message = s["error"]["message"]
    assert "Triton" in message and "down for" in message
    assert "127.0.0.1" not in message and str(stack.ports.triton_grpc) not in message
    with _client(stack) as c:
        r = c.get(f"/v1/analyses/{job_id}/result")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_ready"


def test_kinematics_killed_mid_job_resumes_from_the_pose_checkpoint(stack: LocalStack) -> None:
    job_id = _upload(stack, TREADMILL)
    assert _wait(stack, job_id, until=0.2)["state"] == "running"
    stack.kill("kinematics")
    # the pose stage finishes and is checkpointed; the kinematics call fails; the job waits, queued
    deadline = time.monotonic() + 120
    while _job(stack, job_id).outage_retries < 1 and time.monotonic() < deadline:
        time.sleep(0.25)
    stack.start("kinematics")
    s = _wait(stack, job_id)
    assert s["state"] == "done", s
    assert s["summary"]["steps"] > 0  # the metrics really came from the restarted service
    job = _job(stack, job_id)
    assert (job.attempts, job.pose_runs) == (1, 1)  # no attempt spent, the pose stage not run again


def test_gateway_killed_mid_job_is_taken_over_after_its_lease(stack: LocalStack) -> None:
    job_id = _upload(stack, TREADMILL)
    assert _wait(stack, job_id, until=0.2)["state"] == "running"
    stack.kill("gateway")
    stack.start("gateway")  # a new replica: it takes the job over once the dead one's lease runs out
    s = _wait(stack, job_id)
    assert s["state"] == "done", s
    assert s["attempts"] == 2
    assert '"attempt": 2' in stack.log_tail("gateway", 400)
