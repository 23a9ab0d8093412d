"""The analysis viewer over HTTP: the page for a key, a signed link that opens it without one (a mobile
app's web view), and the page's video, fetched by the browser with the token the page carries.

    POST /v1/analyses/{id}/viewer-link?ttl_s=900   (key)   -> {"url", "token", "expires_at"}
    GET  /v1/analyses/{id}/viewer                  (key, or ?token= from a viewer link) -> HTML
    GET  /v1/analyses/{id}/viewer/video?token=     (the token inside the page)          -> MP4
    GET  /v1/analyses/{a}/compare/{b}              (key; both analyses its own)          -> HTML
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Security
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from gateway.http.deps import Caller, ManagerDep, api_key_header, bearer_token, client_address, key_secret
from gateway.http.models import ERROR_RESPONSES

router = APIRouter(prefix="/v1/analyses", tags=["viewer"], responses=ERROR_RESPONSES)

#: signed viewer links live at most this long
MAX_LINK_TTL_S = 24 * 3600
#: the token of a viewer link (or of the video inside a viewer page), declared as a security scheme
viewer_token = APIKeyQuery(
    name="token", scheme_name="ViewerLink", description="the token of a viewer link", auto_error=False
)
# the page is self-contained: it loads nothing but its own video
_PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
    "media-src 'self'; connect-src 'none'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)

_PAGE_HEADERS = {
    "content-security-policy": _PAGE_POLICY,
    "cache-control": "private, no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}

# documented for the 200 only: errors stay JSON (``response_class=HTMLResponse`` would claim them as HTML)
_HTML: dict[str, Any] = {
    "description": "a self-contained HTML page",
    "content": {"text/html": {"schema": {"type": "string"}}},
}


class ViewerLink(BaseModel):
    url: str = Field(description="path of the viewer page with its token, relative to the API's host")
    token: str
    expires_at: datetime


@router.post(
    "/{analysis_id}/viewer-link",
    response_model=ViewerLink,
    summary="A short-lived link opening the viewer without a key (for a web view)",
)
async def create_viewer_link(
    request: Request,
    manager: ManagerDep,
    key: Caller,
    analysis_id: str,
    ttl_s: Annotated[int, Query(ge=60, le=MAX_LINK_TTL_S, description="validity in seconds")] = 900,
) -> ViewerLink:
    token, expires = await manager.viewer_link(analysis_id, owner=key, ttl_s=ttl_s)
    page = request.app.url_path_for("get_viewer", analysis_id=analysis_id)
    return ViewerLink(
        url=f"{page}?token={token}", token=token, expires_at=datetime.fromtimestamp(expires, UTC)
    )


@router.get(
    "/{analysis_id}/viewer",
    responses={200: _HTML},
    summary="The interactive viewer of a finished analysis (key, or a viewer link's token)",
)
async def get_viewer(
    request: Request,
    manager: ManagerDep,
    analysis_id: str,
    api_key: Annotated[str | None, Security(api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_token)],
    token: Annotated[str | None, Security(viewer_token)],
) -> HTMLResponse:
    if token is not None and api_key is None and bearer is None:
        html = await manager.viewer_page(analysis_id, token=token, client=client_address(request))
    else:
        owner = await asyncio.to_thread(
            partial(manager.access.check, key_secret(api_key, bearer), client=client_address(request))
        )
        html = await manager.viewer_page(analysis_id, owner=owner)
    return HTMLResponse(html, headers=_PAGE_HEADERS)


@router.get(
    "/{analysis_id}/viewer/video",
    response_class=FileResponse,
    summary="The viewer's video (the page names it with its own token)",
)
async def get_viewer_video(
    request: Request,
    manager: ManagerDep,
    analysis_id: str,
    token: Annotated[str | None, Security(viewer_token)],
) -> FileResponse:
    path, art = await manager.viewer_video(analysis_id, token=token or "", client=client_address(request))
    return FileResponse(path, media_type=art.media_type, headers={"cache-control": "private, max-age=3600"})


@router.get(
    "/{analysis_id}/compare/{other_id}",
    responses={200: _HTML},
    summary="Compare two finished analyses of your key: gait-cycle curves and metric differences",
)
async def get_comparison(manager: ManagerDep, key: Caller, analysis_id: str, other_id: str) -> HTMLResponse:
    html = await manager.comparison_page(analysis_id, other_id, owner=key)
    return HTMLResponse(html, headers=_PAGE_HEADERS)
