"""The routes' dependencies: the job manager, the caller's API key, the declared upload size.

The API key travels as ``x-api-key: <key>`` or ``authorization: Bearer <key>``; both are declared as
OpenAPI security schemes (so ``/docs`` has an *Authorize* button and the schema lists them), and both go
to the one check every transport uses, :meth:`gateway.auth.Access.check`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from gateway.jobs import JobManager
from gateway.records import ApiKey
from services.errors import PayloadTooLargeError
from services.settings import Settings

api_key_header = APIKeyHeader(
    name="x-api-key", scheme_name="ApiKey", description="your API key", auto_error=False
)
bearer_token = HTTPBearer(
    scheme_name="Bearer", description="your API key, as `authorization: Bearer <key>`", auto_error=False
)


def get_manager(request: Request) -> JobManager:
    manager: JobManager = request.app.state.manager
    return manager


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ManagerDep = Annotated[JobManager, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def caller(
    request: Request,
    manager: ManagerDep,
    api_key: Annotated[str | None, Security(api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_token)],
) -> ApiKey:
    """The API key of the request, after its rate limit (``x-api-key`` first, then the bearer token).
    A plain function: FastAPI runs it in its thread pool, off the event loop, as the check reads the store.
    Failed attempts are throttled per client address."""
    return manager.access.check(key_secret(api_key, bearer), client=client_address(request))


def key_secret(api_key: str | None, bearer: HTTPAuthorizationCredentials | None) -> str | None:
    """The API key a request carries: ``x-api-key`` first, then the bearer token."""
    return api_key or (bearer.credentials if bearer is not None else None)


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else ""


Caller = Annotated[ApiKey, Depends(caller)]


def declared_size_within_limit(request: Request, settings: SettingsDep) -> None:
    """Refuse at once an upload whose ``Content-Length`` exceeds ``max_upload_mb`` (the job manager
    counts the bytes of every upload anyway, chunked ones included)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise PayloadTooLargeError(
            f"upload of {declared} bytes exceeds the {settings.max_upload_mb:g} MB limit (max_upload_mb)"
        )


UploadSizeChecked = Annotated[None, Depends(declared_size_within_limit)]
