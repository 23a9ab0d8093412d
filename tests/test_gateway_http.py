"""HTTP API of the gateway on a real FastAPI app, job store (SQLite) and embedded models.

Known truths: the analysis behind the API equals the CLI's engine on the same clip and preset; the
error table fixes each status and code; nothing is stored for a refused or abandoned upload; a deleted
running analysis stops; the docs load nothing from outside.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ezc3d
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from gateway_support import (
    ALICE,
    BOB,
    DEMO3,
    TREADMILL,
    auth,
    gateway_settings,
    serve_http,
    upload,
    wait_finished,
)

from gateway.core import AnalysisSpec, Engine
from gateway.http import create_app
from gateway.records import MAX_IDEMPOTENCY_KEY
from services.errors import ERROR_TABLE, NotFoundError, UploadTimeoutError, VideoLimitError
from services.settings import Settings


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway_http")


@pytest.fixture(scope="module")
def settings(module_tmp: Path) -> Settings:
    return gateway_settings(module_tmp, max_upload_mb=4.0)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def demo_job(client: TestClient) -> dict[str, Any]:
    r = upload(client, DEMO3.read_bytes(), params={"height_m": 1.75, "filename": "../../etc/demo3.mp4"})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/analyses/{r.json()['id']}"
    return wait_finished(client, r.json()["id"])


def _stored_uploads(settings: Settings) -> set[str]:
    return {p.name for p in settings.uploads_dir.iterdir()} if settings.uploads_dir.exists() else set()


def test_upload_runs_to_done_and_matches_the_engine(
    client: TestClient, demo_job: dict[str, Any], settings: Settings, module_tmp: Path
) -> None:
    assert demo_job["state"] == "done", demo_job
    assert demo_job["progress"] == 1.0
    assert demo_job["filename"] == "demo3.mp4"  # only the last path part is kept, and only for display
    assert demo_job["options"]["height_m"] == 1.75
    r = client.get(f"/v1/analyses/{demo_job['id']}/result", headers=auth(ALICE))
    assert r.status_code == 200
    doc = r.json()
    assert doc["job"]["id"] == demo_job["id"]
    frames = doc["poses"]["frames"]
    assert len(frames) == 47  # demo3 holds 47 frames
    # the same analysis through the engine the CLI uses
    engine = Engine(settings)
    outcome = engine.analyze(DEMO3, module_tmp / "direct", AnalysisSpec.from_json(demo_job["options"]))
    direct = json.loads(outcome.artifacts["poses"].read_text())["frames"]
    api_kps = np.array([f["keypoints2d"] for f in frames], dtype=float)
    direct_kps = np.array([f["keypoints2d"] for f in direct], dtype=float)
    np.testing.assert_allclose(api_kps, direct_kps, atol=1e-3)


def test_artifacts_are_listed_and_downloadable(
    client: TestClient, demo_job: dict[str, Any], module_tmp: Path
) -> None:
    r = client.get(f"/v1/analyses/{demo_job['id']}/artifacts", headers=auth(ALICE))
    assert r.status_code == 200
    names = {a["name"] for a in r.json()}
    assert {"poses", "keypoints2d", "poses3d", "contact_sheet"} <= names
    png = client.get(f"/v1/analyses/{demo_job['id']}/artifacts/contact_sheet", headers=auth(ALICE))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    csv = client.get(f"/v1/analyses/{demo_job['id']}/artifacts/keypoints2d", headers=auth(ALICE))
    assert csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.strip().splitlines()) == 1 + 47  # header + one row per frame
    # the lab formats: a C3D that ezc3d reads back at the clip's frame rate (the runner's height was given)
    assert {"c3d", "trc"} <= names
    c3d = client.get(f"/v1/analyses/{demo_job['id']}/artifacts/c3d", headers=auth(ALICE))
    assert c3d.status_code == 200 and c3d.headers["content-type"] == "application/octet-stream"
    c3d_path = module_tmp / "demo3.c3d"
    c3d_path.write_bytes(c3d.content)
    doc = ezc3d.c3d(str(c3d_path))
    assert doc["parameters"]["POINT"]["RATE"]["value"][0] == pytest.approx(29.97, abs=0.01)
    assert doc["header"]["points"]["size"] >= 17 and doc["header"]["points"]["last_frame"] + 1 == 47
    for name in ("../../pyproject.toml", "poses.json", "nope"):
        bad = client.get(f"/v1/analyses/{demo_job['id']}/artifacts/{name}", headers=auth(ALICE))
        assert bad.status_code == 404
        assert bad.json()["error"]["code"] == "not_found"


def test_idempotency_key_returns_the_same_analysis(client: TestClient) -> None:
    data = DEMO3.read_bytes()
    first = upload(client, data, idempotency_key="retry-1")
    assert first.status_code == 202
    again = upload(client, data, idempotency_key="retry-1")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = upload(client, data[: len(data) // 2], idempotency_key="retry-1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"
    # the same key by another client is another analysis
    bob = upload(client, data, secret=BOB, idempotency_key="retry-1")
    assert bob.status_code == 202 and bob.json()["id"] != first.json()["id"]
    wait_finished(client, first.json()["id"])
    wait_finished(client, bob.json()["id"], secret=BOB)


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status", "code"),
    [
        ("not a video", b"this is a text file, not a video\n" * 40, "video/mp4", 422, "invalid_video"),
        ("zero bytes", b"", "video/mp4", 422, "invalid_video"),
        ("truncated mp4", None, "video/mp4", 422, "invalid_video"),
        ("wrong content type", b"hello", "text/plain", 415, "unsupported_media"),
        ("over the size cap", b"\0" * (4 * 1024 * 1024 + 1), "video/mp4", 413, "payload_too_large"),
    ],
)
def test_bad_uploads_are_refused_and_nothing_is_stored(
    client: TestClient,
    settings: Settings,
    name: str,
    body: bytes | None,
    content_type: str,
    status: int,
    code: str,
) -> None:
    if body is None:
        data = DEMO3.read_bytes()
        body = data[: len(data) * 2 // 3]
    before_files = _stored_uploads(settings)
    before = client.get("/v1/analyses", headers=auth(ALICE), params={"limit": 100}).json()["items"]
    r = upload(client, body, content_type=content_type)
    assert r.status_code == status, (name, r.text)
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["request_id"] == r.headers["x-request-id"]
    assert _stored_uploads(settings) == before_files
    after = client.get("/v1/analyses", headers=auth(ALICE), params={"limit": 100}).json()["items"]
    assert [a["id"] for a in after] == [b["id"] for b in before]


def test_keys_and_ownership(client: TestClient, demo_job: dict[str, Any]) -> None:
    url = f"/v1/analyses/{demo_job['id']}"
    assert client.get(url).status_code == 401
    assert client.get(url).json()["error"]["code"] == "unauthenticated"
    assert client.get(url, headers=auth("not-a-key-0123456789")).status_code == 401
    assert client.get(url, headers={"authorization": f"Bearer {ALICE}"}).status_code == 200
    r = client.get(url, headers=auth(BOB))
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    assert client.get(url + "/result", headers=auth(BOB)).status_code == 403
    assert client.delete(url, headers=auth(BOB)).status_code == 403
    assert all(
        a["id"] != demo_job["id"] for a in client.get("/v1/analyses", headers=auth(BOB)).json()["items"]
    )
    for unknown in ("an_000000000000000000000000", "nope", "..%2F..%2Fetc"):
        r = client.get(f"/v1/analyses/{unknown}", headers=auth(ALICE))
        assert r.status_code == 404, unknown
        assert r.json()["error"]["code"] == "not_found"


def test_pagination_visits_each_analysis_once(client: TestClient, demo_job: dict[str, Any]) -> None:
    everything = client.get("/v1/analyses", headers=auth(ALICE), params={"limit": 100}).json()
    assert everything["next_cursor"] is None
    ids = [a["id"] for a in everything["items"]]
    assert len(ids) >= 2 and demo_job["id"] in ids
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/analyses", headers=auth(ALICE), params=params).json()
        seen += [a["id"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids  # newest first, each once
    bad = client.get("/v1/analyses", headers=auth(ALICE), params={"cursor": "garbage!"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    assert client.get("/v1/analyses", headers=auth(ALICE), params={"limit": 0}).status_code == 422


def test_delete_removes_the_analysis_and_its_files(client: TestClient, settings: Settings) -> None:
    r = upload(client, DEMO3.read_bytes(), secret=BOB)
    job = wait_finished(client, r.json()["id"], secret=BOB)
    folder = settings.artifacts_dir / job["id"]
    assert folder.is_dir() and (settings.uploads_dir / f"{job['id']}.video").exists()
    assert client.delete(f"/v1/analyses/{job['id']}", headers=auth(BOB)).status_code == 204
    assert client.get(f"/v1/analyses/{job['id']}", headers=auth(BOB)).status_code == 404
    assert not folder.exists() and not (settings.uploads_dir / f"{job['id']}.video").exists()


def test_delete_cancels_a_running_analysis(
    client: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gaitway.jobs")
    r = upload(client, TREADMILL.read_bytes(), secret=BOB)  # 388 frames: runs for seconds
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    # delete once the pose stage reports progress (the worker is decoding): it stops at its next report
    deadline = time.monotonic() + 120
    while (state := client.get(f"/v1/analyses/{job_id}", headers=auth(BOB)).json())["progress"] == 0:
        assert state["state"] in ("queued", "running"), state
        assert time.monotonic() < deadline, "the analysis never started"
        time.sleep(0.05)
    assert state["state"] == "running" and state["progress"] < 0.85, state  # still in the pose stage
    assert client.delete(f"/v1/analyses/{job_id}", headers=auth(BOB)).status_code == 204
    assert client.get(f"/v1/analyses/{job_id}", headers=auth(BOB)).status_code == 404
    assert not (settings.uploads_dir / f"{job_id}.video").exists()
    # the worker stops at its next progress report and leaves nothing behind
    deadline = time.monotonic() + 30
    while not any(
        rec.getMessage() == "job cancelled (deleted while running)" and getattr(rec, "job_id", "") == job_id
        for rec in caplog.records
    ):
        assert time.monotonic() < deadline, "the worker did not stop"
        time.sleep(0.05)
    assert not (settings.artifacts_dir / job_id).exists()
    assert "gaitway_jobs_running 0.0" in client.get("/metrics").text


def test_operations_endpoints(client: TestClient, demo_job: dict[str, Any]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"models": "ok"}
    text = client.get("/metrics").text
    assert 'gaitway_http_requests_total{method="POST",route="/v1/analyses",status="202"}' in text
    assert 'gaitway_job_stage_seconds_count{stage="pose"}' in text
    assert 'gaitway_jobs_finished_total{code="",state="done"}' in text
    assert "gaitway_queue_depth" in text
    rid = client.get("/healthz", headers={"x-request-id": "trace-me-42"}).headers["x-request-id"]
    assert rid == "trace-me-42"
    assert client.get("/v2/nothing").json()["error"]["code"] == "not_found"


def test_unknown_preset_and_bad_fields_are_4xx(client: TestClient) -> None:
    r = upload(client, DEMO3.read_bytes(), params={"preset": "no-such-preset"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    r = upload(client, DEMO3.read_bytes(), params={"height_m": -1})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = upload(client, DEMO3.read_bytes(), params={"height_m": 7})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"


def test_idempotency_key_limit_is_the_same_as_grpc(client: TestClient) -> None:
    not_a_video = b"not a video at all\n" * 10
    longest = upload(client, not_a_video, idempotency_key="k" * MAX_IDEMPOTENCY_KEY)
    assert longest.json()["error"]["code"] == "invalid_video"  # the key passed; the content did not
    too_long = upload(client, not_a_video, idempotency_key="k" * (MAX_IDEMPOTENCY_KEY + 1))
    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "invalid_request"
    assert "idempotency-key" in too_long.json()["error"]["message"]


def test_domain_error_detail_is_logged_not_sent(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def lost(job_id: str, *, owner: object) -> None:
        raise NotFoundError("no such analysis in /srv/gaitway/var/db", detail="replica 10.1.2.3:5432 said no")

    monkeypatch.setattr(client.app.state.manager, "get", lost)  # type: ignore[attr-defined]
    caplog.set_level(logging.INFO, logger="gaitway.http")
    r = client.get(
        "/v1/analyses/an_000000000000000000000000", headers={**auth(ALICE), "x-request-id": "rq-7"}
    )
    assert r.status_code == 404
    assert r.json()["error"] == {
        "code": "not_found",
        "message": "no such analysis in db",
        "request_id": "rq-7",
    }
    assert "10.1.2.3" not in r.text
    refused = [rec for rec in caplog.records if rec.getMessage() == "request refused"]
    assert [(getattr(rec, "request_id", ""), getattr(rec, "detail", "")) for rec in refused] == [
        ("rq-7", "replica 10.1.2.3:5432 said no")
    ]


def test_unexpected_error_is_a_generic_500_with_the_request_id(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as c:

        async def broken() -> dict[str, str]:
            raise RuntimeError("secret internals at /srv/x")

        monkeypatch.setattr(app.state.manager, "readiness", broken)
        caplog.set_level(logging.INFO, logger="gaitway.http")
        r = c.get("/readyz", headers={"x-request-id": "boom-1"})
        assert r.status_code == 500 and r.headers["x-request-id"] == "boom-1"
        assert r.json()["error"]["code"] == "internal" and r.json()["error"]["request_id"] == "boom-1"
        assert "secret" not in r.text
        assert (
            'gaitway_http_requests_total{method="GET",route="/readyz",status="500"}' in c.get("/metrics").text
        )
    logged = [rec for rec in caplog.records if rec.getMessage() == "unhandled error"]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert getattr(logged[0], "request_id", "") == "boom-1"


def test_full_queue_gets_429_with_retry_after(tmp_path: Path) -> None:
    # an API-only replica (no workers): what it accepts waits, so the queue fills deterministically
    settings = gateway_settings(tmp_path, workers=0, queue_limit=1)
    with TestClient(create_app(settings)) as c:
        first = upload(c, DEMO3.read_bytes())
        assert first.status_code == 202
        busy = upload(c, DEMO3.read_bytes())
        assert busy.status_code == 429, busy.text
        assert busy.json()["error"]["code"] == "busy"
        assert int(busy.headers["retry-after"]) >= 1
        assert _stored_uploads(settings) == {f"{first.json()['id']}.video"}  # nothing of the refused one
        assert len(c.get("/v1/analyses", headers=auth(ALICE)).json()["items"]) == 1
        assert c.delete(f"/v1/analyses/{first.json()['id']}", headers=auth(ALICE)).status_code == 204
        assert upload(c, DEMO3.read_bytes()).status_code == 202  # room again


def test_rate_limit_and_daily_quota(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, keys=f"alice:{ALICE}:1:5\n")
    with TestClient(create_app(settings)) as c:
        assert upload(c, DEMO3.read_bytes()).status_code == 202
        quota = upload(c, DEMO3.read_bytes())
        assert quota.status_code == 429 and quota.json()["error"]["code"] == "quota_exceeded"
        codes = [c.get("/v1/analyses", headers=auth(ALICE)).status_code for _ in range(6)]
        assert codes[-1] == 429 and 200 in codes
        limited = c.get("/v1/analyses", headers=auth(ALICE))
        assert limited.json()["error"]["code"] == "rate_limited" and "retry-after" in limited.headers


def test_cors_is_configurable(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, cors_origins=["https://app.example.org"])
    with TestClient(create_app(settings)) as c:
        pre = c.options(
            "/v1/analyses",
            headers={"origin": "https://app.example.org", "access-control-request-method": "POST"},
        )
        assert pre.headers["access-control-allow-origin"] == "https://app.example.org"
        other = c.get("/healthz", headers={"origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers


def test_docs_work_offline(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert not re.search(r"https?://", html.text), page  # nothing from a CDN (or anywhere else)
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert assets, page
        for asset in assets:
            r = client.get(asset)
            assert r.status_code == 200 and len(r.content) > 100, asset
    # the bundled Swagger UI reads the OpenAPI version FastAPI writes (Swagger UI 4 refuses 3.1 documents)
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1.")
    assert "isOAS31" in client.get("/docs/assets/swagger-ui-bundle.js").text


def test_openapi_declares_the_api_key_schemes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "your API key",
    }
    assert schemes["Bearer"]["type"] == "http" and schemes["Bearer"]["scheme"] == "bearer"
    assert schemes["ViewerLink"] == {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "the token of a viewer link",
    }
    by_key = [{"ApiKey": []}, {"Bearer": []}]
    link_only = {"/v1/analyses/{analysis_id}/viewer/video"}  # the page's video: its own token
    key_or_link = {"/v1/analyses/{analysis_id}/viewer"}
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            if path in link_only:
                assert op["security"] == [{"ViewerLink": []}], (method, path)
            elif path in key_or_link:
                assert sorted(map(str, op["security"])) == sorted(map(str, [*by_key, {"ViewerLink": []}]))
            elif path.startswith("/v1/analyses"):
                assert op["security"] == by_key, (method, path)
            else:
                assert "security" not in op, (method, path)  # operations endpoints are open


def test_openapi_documents_every_status_of_the_error_table(client: TestClient) -> None:
    assert ERROR_TABLE[UploadTimeoutError].http == 408 and ERROR_TABLE[VideoLimitError].http == 413
    schema = client.get("/openapi.json").json()
    statuses = {str(entry.http) for entry in ERROR_TABLE.values()}
    for path, operations in schema["paths"].items():
        if path.startswith("/v1/analyses"):
            for op in operations.values():
                assert statuses <= set(op["responses"]), path
    post = schema["paths"]["/v1/analyses"]["post"]["responses"]
    assert "upload_timeout" in post["408"]["description"]
    assert {"payload_too_large", "video_too_large"} <= set(re.findall(r"[a-z_]+", post["413"]["description"]))
    assert "Retry-After" in post["429"]["headers"]


# -- a real server: slow and abandoned uploads -----------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    """An API-only gateway (no workers) behind uvicorn, with a short upload idle timeout and a frame
    limit below demo3's 47 frames."""
    settings = gateway_settings(
        tmp_path_factory.mktemp("gateway_live"), workers=0, upload_idle_timeout_s=0.5, max_video_frames=10
    )
    with serve_http(create_app(settings)) as url:
        yield url, settings


def _start_upload(url: str, *, declared: int, first: bytes, request_id: str) -> socket.socket:
    """A raw HTTP upload announcing ``declared`` bytes and sending only ``first``."""
    where = urlsplit(url)
    assert where.hostname is not None and where.port is not None
    sock = socket.create_connection((where.hostname, where.port), timeout=10)
    head = (
        f"POST /v1/analyses HTTP/1.1\r\nhost: {where.netloc}\r\nx-api-key: {ALICE}\r\n"
        f"content-type: video/mp4\r\ncontent-length: {declared}\r\nx-request-id: {request_id}\r\n\r\n"
    )
    sock.sendall(head.encode() + first)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _content_length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def _content_length(data: bytes) -> int:
    found = re.search(rb"(?im)^content-length:\s*(\d+)", data.split(b"\r\n\r\n", 1)[0])
    return int(found.group(1)) if found else 0


def _nothing_stored(url: str, settings: Settings) -> None:
    assert [p.name for p in settings.uploads_dir.iterdir()] == []
    jobs = httpx.get(f"{url}/v1/analyses", headers=auth(ALICE)).json()["items"]
    assert jobs == []


def test_stalled_upload_gets_408(live: tuple[str, Settings]) -> None:
    url, settings = live
    with _start_upload(url, declared=100_000, first=b"\0" * 1000, request_id="stall-1") as sock:
        status, body = _read_response(sock)  # nothing more is sent: the idle timeout (0.5 s) fires
    assert status == 408
    assert body["error"]["code"] == "upload_timeout" and body["error"]["request_id"] == "stall-1"
    _nothing_stored(url, settings)


def test_client_disconnect_mid_upload_is_an_info_line_and_a_499(
    live: tuple[str, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    url, settings = live
    caplog.set_level(logging.INFO)
    with _start_upload(url, declared=100_000, first=b"\0" * 1000, request_id="gone-1"):
        time.sleep(0.2)  # the upload is under way; then the client goes away
    line = 'gaitway_http_requests_total{method="POST",route="/v1/analyses",status="499"} 1.0'
    deadline = time.monotonic() + 10
    while line not in (metrics := httpx.get(f"{url}/metrics").text):
        assert time.monotonic() < deadline, "the disconnect was not counted"
        time.sleep(0.05)
    assert 'status="500"' not in metrics
    said = [rec for rec in caplog.records if rec.getMessage() == "client disconnected during upload"]
    assert len(said) == 1
    assert said[0].levelno == logging.INFO and said[0].exc_info is None
    assert getattr(said[0], "request_id", "") == "gone-1"
    assert [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING] == []
    _nothing_stored(url, settings)


def test_video_over_the_limits_gets_413(live: tuple[str, Settings]) -> None:
    url, settings = live
    r = httpx.post(
        f"{url}/v1/analyses", content=DEMO3.read_bytes(), headers={**auth(ALICE), "content-type": "video/mp4"}
    )
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "video_too_large" and "frames" in r.json()["error"]["message"]
    _nothing_stored(url, settings)


# --------------------------------------------------------------------------------------------------------
# the viewer: the page for a key, signed links for web views, the page's video, comparison


def test_the_viewer_page_is_served_to_its_owner_with_a_tokened_video(
    client: TestClient, demo_job: dict[str, Any]
) -> None:
    url = f"/v1/analyses/{demo_job['id']}/viewer"
    page = client.get(url, headers=auth(ALICE))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "demo3.mp4" in page.text  # the client's file name, as its title
    match = re.search(r"viewer/video\?token=([0-9]+\.[A-Za-z0-9_-]+)", page.text)
    assert match is not None
    assert "/etc/" not in page.text and str(Path.cwd()) not in page.text  # no server path in the page
    # the browser fetches the video with that token and no key, in ranges (seeking)
    video = client.get(f"{url}/video", params={"token": match.group(1)})
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"
    part = client.get(f"{url}/video", params={"token": match.group(1)}, headers={"range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100
    # keys rules: another key, no key
    assert client.get(url, headers=auth(BOB)).json()["error"]["code"] == "permission_denied"
    assert client.get(url).json()["error"]["code"] == "unauthenticated"


def test_a_viewer_link_opens_the_page_without_a_key_until_it_expires(
    client: TestClient, demo_job: dict[str, Any]
) -> None:
    job_id = demo_job["id"]
    r = client.post(f"/v1/analyses/{job_id}/viewer-link", params={"ttl_s": 600}, headers=auth(ALICE))
    assert r.status_code == 200, r.text
    link = r.json()
    assert link["url"].startswith(f"/v1/analyses/{job_id}/viewer?token=")
    assert 590 <= (np.datetime64(link["expires_at"][:19]) - np.datetime64("now")).astype(int) <= 600
    assert client.get(link["url"]).status_code == 200  # no key
    # another analysis, a tampered token, the video's scope, an expired link: refused, with a code
    other = upload(client, DEMO3.read_bytes(), secret=BOB)
    assert (
        client.get(f"/v1/analyses/{other.json()['id']}/viewer", params={"token": link["token"]}).status_code
        == 401
    )
    expires, mac = link["token"].split(".")
    forged = f"{int(expires) + 3600}.{mac}"
    assert client.get(f"/v1/analyses/{job_id}/viewer", params={"token": forged}).status_code == 401
    video = client.get(f"/v1/analyses/{job_id}/viewer/video", params={"token": link["token"]})
    assert video.status_code == 401  # a page token is not a video token
    manager = client.app.state.manager  # type: ignore[attr-defined]
    expired, _ = manager.access.sign_link("viewer", job_id, ttl_s=-5)
    late = client.get(f"/v1/analyses/{job_id}/viewer", params={"token": expired})
    assert late.status_code == 401 and late.json()["error"]["code"] == "link_expired"
    # links are made for one's own analyses, and live at most a day
    assert client.post(f"/v1/analyses/{job_id}/viewer-link", headers=auth(BOB)).status_code == 403
    too_long = client.post(f"/v1/analyses/{job_id}/viewer-link", params={"ttl_s": 10**6}, headers=auth(ALICE))
    assert too_long.status_code == 422


def test_comparison_of_two_analyses_of_one_key(client: TestClient, demo_job: dict[str, Any]) -> None:
    second = upload(client, DEMO3.read_bytes())
    done = wait_finished(client, second.json()["id"])
    url = f"/v1/analyses/{demo_job['id']}/compare/{done['id']}"
    # demo3 holds a single foot contact: no complete gait cycle to compare, said clearly
    r = client.get(url, headers=auth(ALICE))
    assert r.status_code == 422 and r.json()["error"]["code"] == "clip_too_short", r.text
    assert client.get(url, headers=auth(BOB)).status_code == 403
