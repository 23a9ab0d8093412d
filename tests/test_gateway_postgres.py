"""The gateway on PostgreSQL (a real server started from Debian's packages): an analysis runs to done,
and a restarted gateway on the same database still knows it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from gateway_support import ALICE, DEMO3, auth, gateway_settings, upload, wait_finished
from postgres import postgres_server

from gateway.http import create_app


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with postgres_server("gaitway_gateway") as url:
        yield url


def test_analysis_on_postgresql_survives_a_gateway_restart(database_url: str, tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        r = upload(client, DEMO3.read_bytes(), idempotency_key="pg-1")
        assert r.status_code == 202, r.text
        job = wait_finished(client, r.json()["id"])
        assert job["state"] == "done"
    with TestClient(create_app(settings)) as client:
        again = client.get(f"/v1/analyses/{job['id']}", headers=auth(ALICE)).json()
        assert again["state"] == "done" and again["summary"] == job["summary"]
        replay = upload(client, DEMO3.read_bytes(), idempotency_key="pg-1")
        assert replay.status_code == 200 and replay.json()["id"] == job["id"]
        result = client.get(f"/v1/analyses/{job['id']}/result", headers=auth(ALICE)).json()
        assert len(result["poses"]["frames"]) == 47
