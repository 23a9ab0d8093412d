"""Exceptions -> HTTP answers. Every error body is ``{"error": {"code", "message", "request_id"}}``.

* a domain error (:class:`services.errors.GaitwayError`): the status of :data:`services.errors.ERROR_TABLE`,
  its code, and :func:`services.errors.public_message` as the message; its internal ``detail`` goes to the
  log with the request id, never to the client; 429s carry ``Retry-After`` (whole seconds, rounded up);
* an invalid request (FastAPI's validation): 422 ``invalid_request``, naming the first bad field;
* Starlette's HTTP errors (unknown path, wrong method): their status and ``not_found``,
  ``method_not_allowed``...;
* a client that disconnects mid-upload (``starlette.requests.ClientDisconnect``): one INFO log line, no
  traceback; the answer nobody reads has status :data:`CLIENT_CLOSED` (499, nginx's "client closed
  request"), which is what the access log and ``gaitway_http_requests_total{status}`` record;
* anything else: 500 ``internal`` with a generic message; the traceback goes to the log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from gateway.http.models import ErrorBody, ErrorInfo
from gateway.telemetry import request_id
from services.errors import BusyError, GaitwayError, public_message, status_of

log = logging.getLogger("gaitway.http")

#: the status recorded for a request whose client went away before the answer (never sent)
CLIENT_CLOSED = 499

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media",
}


def request_id_of(request: Request) -> str:
    """The request id the middleware gave this request (also valid outside the middleware's context)."""
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else request_id.get()


def error_response(
    request: Request, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = ErrorBody(error=ErrorInfo(code=code, message=message, request_id=request_id_of(request)))
    return JSONResponse(status_code=status, content=body.model_dump(), headers=headers)


async def domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GaitwayError)
    status = status_of(exc).http
    headers = None
    if isinstance(exc, BusyError):
        headers = {"retry-after": str(max(1, math.ceil(exc.retry_after_s)))}
    log.log(
        logging.WARNING if status >= 500 else logging.INFO,
        "request refused",
        extra={
            "request_id": request_id_of(request),
            "status": status,
            "code": exc.code,
            "error": public_message(exc),
            "detail": exc.detail or "",
        },
    )
    return error_response(request, status, exc.code, public_message(exc), headers)


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(request, 422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal")
    return error_response(request, exc.status_code, code, str(exc.detail), exc.headers)


async def client_disconnected(request: Request, exc: Exception) -> Response:
    log.info(
        "client disconnected during upload",
        extra={"request_id": request_id_of(request), "method": request.method, "path": request.url.path},
    )
    return Response(status_code=CLIENT_CLOSED)


async def unexpected(request: Request, exc: Exception) -> Response:
    """Runs in Starlette's outermost middleware, after the request's own middleware has finished: the
    request id comes from the request's state, and goes in the header here."""
    rid = request_id_of(request)
    log.error("unhandled error", exc_info=exc, extra={"request_id": rid, "path": request.url.path})
    message = "internal error; the gateway log has details under this request id"
    return error_response(request, 500, "internal", message, {"x-request-id": rid})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GaitwayError, domain_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, client_disconnected)
    app.add_exception_handler(Exception, unexpected)
