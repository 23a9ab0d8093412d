"""Property-based tests of the HTTP API against its own OpenAPI schema (schemathesis): whatever a
client sends, the gateway never answers 5xx, and every answer matches the documented schema (statuses,
content types, bodies)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from gateway_support import ALICE, DEMO3, gateway_settings, serve_http
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.http import create_app


@schemathesis.serializer("video/mp4", "video/quicktime")
def _video_bytes(ctx: object, value: object) -> bytes:
    """Generated 'binary' bodies are bytes or text; send them as the raw upload."""
    return value if isinstance(value, bytes) else str(value).encode()


_tmp = Path(tempfile.mkdtemp(prefix="gaitway-schema-"))
# hundreds of requests a minute: rate limits (documented 429s) would hide the other answers
_settings = gateway_settings(
    _tmp, keys=f"alice:{ALICE}:100000:100000\n", max_upload_mb=1.0, auth_failures_per_min=100_000
)
_app = create_app(_settings)
schema = schemathesis.openapi.from_dict(_app.openapi())


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_http(_app) as url:
        # one analysis, so that generated ids can also hit a real one
        r = httpx.post(
            f"{url}/v1/analyses",
            content=DEMO3.read_bytes(),
            headers={"x-api-key": ALICE, "content-type": "video/mp4"},
        )
        assert r.status_code == 202, r.text
        yield url
    shutil.rmtree(_tmp, ignore_errors=True)


def test_schema_lists_the_error_statuses_and_security() -> None:
    """What the generated cases rely on: the analysis operations declare the key schemes and the
    error statuses of the table, 408 and 413 included."""
    post = _app.openapi()["paths"]["/v1/analyses"]["post"]
    assert {"401", "408", "413", "415", "422", "429"} <= set(post["responses"])
    assert post["security"] == [{"ApiKey": []}, {"Bearer": []}]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx(case: schemathesis.Case, base_url: str) -> None:
    # schemathesis fills the declared x-api-key scheme with made-up keys: a valid one instead lets the
    # generated requests reach past authentication (401 and 403 are tested in test_gateway_http)
    case.call_and_validate(
        base_url=base_url,
        headers={"x-api-key": ALICE},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
