"""Property-based tests of the HTTP API against its own OpenAPI schema (schemathesis): whatever a
client sends, the gateway never answers 5xx, and every answer matches the documented schema."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from gateway_support import ALICE, DEMO3, gateway_settings
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.http_api import create_app


@schemathesis.serializer("video/mp4", "video/quicktime")
def _video_bytes(ctx: object, value: object) -> bytes:
    """Generated 'binary' bodies are bytes or text; send them as the raw upload."""
    return value if isinstance(value, bytes) else str(value).encode()


_tmp = Path(tempfile.mkdtemp(prefix="gaitway-schema-"))
_settings = gateway_settings(_tmp, max_upload_mb=1.0)
_app = create_app(_settings)
schema = schemathesis.openapi.from_dict(_app.openapi())


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(_app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    # one finished analysis, so that generated ids can also hit a real one
    r = httpx.post(
        f"{url}/v1/analyses",
        content=DEMO3.read_bytes(),
        headers={"x-api-key": ALICE, "content-type": "video/mp4"},
    )
    assert r.status_code == 202, r.text
    yield url
    server.should_exit = True
    thread.join(timeout=30)
    shutil.rmtree(_tmp, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx(case: schemathesis.Case, base_url: str) -> None:
    headers = {"x-api-key": ALICE} if "x-api-key" not in (case.headers or {}) else None
    case.call_and_validate(
        base_url=base_url,
        headers=headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
