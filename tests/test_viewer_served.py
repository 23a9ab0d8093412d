"""The viewer as the gateway serves it, in a real Chromium: opened through a signed link (no key), under
the page's Content-Security-Policy, its video fetched with the page's own token."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from browser import browser_fixture, open_page
from gateway_support import ALICE, DEMO3, gateway_settings, serve_http

from gateway.http import create_app

pytestmark = pytest.mark.slow

browser = browser_fixture()


def test_a_viewer_link_opens_in_a_browser_with_its_video(tmp_path: Any, browser: Any) -> None:
    with serve_http(create_app(gateway_settings(tmp_path))) as base, httpx.Client(base_url=base) as c:
        key = {"x-api-key": ALICE}
        r = c.post("/v1/analyses", content=DEMO3.read_bytes(), headers={**key, "content-type": "video/mp4"})
        job_id = r.json()["id"]
        for _ in range(600):
            state = c.get(f"/v1/analyses/{job_id}", headers=key).json()["state"]
            if state in ("done", "failed"):
                break
            time.sleep(0.5)
        assert state == "done"
        link = c.post(f"/v1/analyses/{job_id}/viewer-link", headers=key).json()["url"]
        with open_page(f"{base}{link}", browser=browser, offline=False) as session:
            page = session.page
            page.wait_for_selector('body[data-viewer-state="ready"]', timeout=60_000)
            frames = page.evaluate("document.body.dataset.frames")
            # the video came through its tokened URL: it has data to show
            ready = page.evaluate(
                "document.querySelector('video') && document.querySelector('video').readyState"
            )
    assert frames == "47"
    assert ready is not None and ready >= 2
    assert session.errors == []  # a CSP violation would be a console error
