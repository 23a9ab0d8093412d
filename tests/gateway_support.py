"""Shared set-up of the gateway tests: settings on a temporary folder, API keys, waiting for jobs, an
HTTP app served by a real uvicorn server on a free port."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from conftest import SHARED
from fastapi.testclient import TestClient

from services.settings import Settings

DEMO3 = SHARED / "data" / "running-side-outdoor" / "demo3.mp4"  # 47 frames, 1.6 s
TREADMILL = SHARED / "data" / "running-treadmill-phone" / "IMG_5396.mp4"  # 388 frames, 6.5 s

ALICE = "alice-secret-0123456789abcdef"
BOB = "bob-secret-0123456789abcdef"


def gateway_settings(tmp_path: Path, *, keys: str | None = None, **overrides: Any) -> Settings:
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
    return Settings(**values)


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


@contextmanager
def serve_http(app: Any, *, start_timeout_s: float = 60) -> Iterator[str]:
    """Serve ``app`` (lifespan included) with uvicorn on 127.0.0.1, a free port, in a thread; yields the
    base URL. For what the in-process TestClient cannot do: slow and abandoned uploads, real sockets."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        assert thread.is_alive(), "the HTTP server exited during start-up"
        assert time.monotonic() < deadline, "the HTTP server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
