"""Per request: a request id, the Prometheus counters, one JSON access-log line (a plain ASGI
middleware: the request id is set for everything the request runs, handlers and thread pool included)."""

from __future__ import annotations

import logging
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.telemetry import request_id

log = logging.getLogger("gaitway.http")


class ObserveRequests:
    """Gives each request an id (the client's ``x-request-id``, at most 64 characters, or a new one),
    returned in the ``x-request-id`` response header; counts it in ``gaitway_http_requests_total`` and
    ``gaitway_http_request_seconds`` by route template, and logs one "http request" line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = Headers(scope=scope).get("x-request-id", "")[:64] or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        status = 500  # what an exception escaping the app becomes (Starlette's outermost handler)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = rid
            await send(message)

        token = request_id.set(rid)
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
            self._record(scope, rid, status, time.perf_counter() - t0)

    @staticmethod
    def _record(scope: Scope, rid: str, status: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope["method"]
        manager = getattr(scope["app"].state, "manager", None)
        if manager is not None:
            manager.telemetry.http_requests.labels(route, method, str(status)).inc()
            manager.telemetry.http_latency.labels(route, method).observe(elapsed)
        log.info(
            "http request",
            extra={
                "request_id": rid,
                "method": method,
                "route": route,
                "status": status,
                "ms": round(elapsed * 1000, 1),
            },
        )
