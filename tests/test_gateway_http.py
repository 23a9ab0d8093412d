"""HTTP API of the gateway on a real FastAPI app, job store (SQLite) and embedded models.

Known truths: the analysis behind the API equals the CLI's engine on the same clip and preset; the
error table fixes each status and code; nothing is stored for a refused upload.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from gateway_support import ALICE, BOB, DEMO3, TREADMILL, auth, gateway_settings, upload, wait_finished

from gateway.core import AnalysisSpec, Engine
from gateway.http_api import create_app
from gateway.settings import GatewaySettings


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway_http")


@pytest.fixture(scope="module")
def settings(module_tmp: Path) -> GatewaySettings:
    return gateway_settings(module_tmp, max_upload_mb=4.0)


@pytest.fixture(scope="module")
def client(settings: GatewaySettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture(scope="module")
def demo_job(client: TestClient) -> dict[str, Any]:
    r = upload(client, DEMO3.read_bytes(), params={"height_m": 1.75, "filename": "../../etc/demo3.mp4"})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/analyses/{r.json()['id']}"
    return wait_finished(client, r.json()["id"])


def _stored_uploads(settings: GatewaySettings) -> set[str]:
    return {p.name for p in settings.uploads_dir.iterdir()} if settings.uploads_dir.exists() else set()


def test_upload_runs_to_done_and_matches_the_engine(
    client: TestClient, demo_job: dict[str, Any], settings: GatewaySettings, module_tmp: Path
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
    engine = Engine(settings.pose_settings())
    outcome = engine.analyze(DEMO3, module_tmp / "direct", AnalysisSpec.from_json(demo_job["options"]))
    direct = json.loads(outcome.artifacts["poses"].read_text())["frames"]
    api_kps = np.array([f["keypoints2d"] for f in frames], dtype=float)
    direct_kps = np.array([f["keypoints2d"] for f in direct], dtype=float)
    np.testing.assert_allclose(api_kps, direct_kps, atol=1e-3)


def test_artifacts_are_listed_and_downloadable(client: TestClient, demo_job: dict[str, Any]) -> None:
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
    settings: GatewaySettings,
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


def test_delete_removes_the_analysis_and_its_files(client: TestClient, settings: GatewaySettings) -> None:
    r = upload(client, DEMO3.read_bytes(), secret=BOB)
    job = wait_finished(client, r.json()["id"], secret=BOB)
    folder = settings.artifacts_dir / job["id"]
    assert folder.is_dir() and (settings.uploads_dir / f"{job['id']}.video").exists()
    assert client.delete(f"/v1/analyses/{job['id']}", headers=auth(BOB)).status_code == 204
    assert client.get(f"/v1/analyses/{job['id']}", headers=auth(BOB)).status_code == 404
    assert not folder.exists() and not (settings.uploads_dir / f"{job['id']}.video").exists()


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


def test_full_queue_gets_429_with_retry_after(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, workers=1, queue_limit=0)
    with TestClient(create_app(settings)) as c:
        first = upload(c, TREADMILL.read_bytes())
        assert first.status_code == 202
        busy = upload(c, DEMO3.read_bytes())
        assert busy.status_code == 429, busy.text
        assert busy.json()["error"]["code"] == "busy"
        assert int(busy.headers["retry-after"]) >= 1
        assert len(c.get("/v1/analyses", headers=auth(ALICE)).json()["items"]) == 1
        assert wait_finished(c, first.json()["id"])["state"] == "done"
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
