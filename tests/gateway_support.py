"""Shared set-up of the gateway tests: settings on a temporary folder, API keys, waiting for jobs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conftest import SHARED
from fastapi.testclient import TestClient

from gateway.settings import GatewaySettings

DEMO3 = SHARED / "data" / "running-side-outdoor" / "demo3.mp4"  # 47 frames, 1.6 s
TREADMILL = SHARED / "data" / "running-treadmill-phone" / "IMG_5396.mp4"  # 388 frames, 6.5 s

ALICE = "alice-secret-0123456789abcdef"
BOB = "bob-secret-0123456789abcdef"


def gateway_settings(tmp_path: Path, *, keys: str | None = None, **overrides: Any) -> GatewaySettings:
    """Settings for a test gateway: data under ``tmp_path``, models from the shared folder, lightning
    preset (the fastest real weights), two API keys (alice, bob) unless ``keys`` gives the file text."""
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(keys if keys is not None else f"alice:{ALICE}\nbob:{BOB}\n")
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "shared_dir": SHARED,
        "models_dir": f"{SHARED / 'models'}:{SHARED / 'reference'}",
        "preset": "lightning",
        "api_keys_file": keys_file,
        "http_port": 0,
        "grpc_port": 0,
        "retry_backoff_s": 0.2,
        "log_json": False,
    }
    values.update(overrides)
    return GatewaySettings(**values)


def auth(secret: str) -> dict[str, str]:
    return {"x-api-key": secret}


def upload(
    client: TestClient,
    data: bytes,
    *,
    secret: str = ALICE,
    content_type: str = "video/mp4",
    idempotency_key: str | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    headers = {**auth(secret), "content-type": content_type}
    if idempotency_key is not None:
        headers["idempotency-key"] = idempotency_key
    return client.post("/v1/analyses", content=data, headers=headers, params=params or {})


def wait_finished(
    client: TestClient, job_id: str, *, secret: str = ALICE, timeout_s: float = 240
) -> dict[str, Any]:
    """Poll the status until done or failed; returns the last status (fails the test on a timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.get(f"/v1/analyses/{job_id}", headers=auth(secret))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["state"] in ("done", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"analysis {job_id} did not finish within {timeout_s} s")
