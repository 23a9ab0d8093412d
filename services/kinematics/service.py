"""The kinematics microservice (FastAPI): pose sequence in, per-step running metrics out.

    gaitway-kinematics            # serves on GAITWAY_KINEMATICS_HOST:GAITWAY_KINEMATICS_PORT

Routes: ``POST /v1/kinematics`` (:class:`KinematicsRequest` -> :class:`KinematicsResponse`), ``GET /healthz``
(liveness), ``GET /readyz`` (readiness: the engine passed its start-up self-check). Errors have one body
shape, ``{"error": {"code": ..., "message": ...}}``, with the HTTP status of ``services.errors.ERROR_TABLE``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.errors import GaitwayError, TooManyFramesError, public_message, status_of
from services.kinematics.client import LocalKinematics
from services.kinematics.schema import ErrorResponse, KinematicsRequest, KinematicsResponse
from services.settings import Settings

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuse a request body over ``max_bytes`` with 413 ``payload_too_large`` before it is parsed: at once
    from its Content-Length, or as soon as a body sent without one (chunked) passes the limit."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        if declared:
            await self.app(scope, receive, send)
            return
        body: list[Message] = []  # no declared size: read it all, counting, before the app parses it
        seen = 0
        while True:
            message = await receive()
            body.append(message)
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                await self._refuse(send)
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        replay = iter(body)

        async def replayed() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)

    async def _refuse(self, send: Send) -> None:
        limit = f"the request body exceeds {self.max_bytes / 2**20:g} MB (kinematics_max_body_mb)"
        await _error(413, "payload_too_large", limit)({"type": "http"}, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def _self_check() -> bool:
    """A right angle must measure 90 degrees: proves the numeric stack works before taking traffic."""
    from services.kinematics.angles import joint_angles
    from services.kinematics.model import Motion

    t = np.arange(2) / 60.0
    joints = {
        "left_hip": np.array([[0.0, 1.0, 0.0]] * 2),
        "left_knee": np.array([[0.0, 0.5, 0.0]] * 2),
        "left_ankle": np.array([[0.5, 0.5, 0.0]] * 2),
        "right_hip": np.array([[0.0, 1.0, 0.2]] * 2),
    }
    motion = Motion(t=t, joints=joints, up=np.array([0.0, 1.0, 0.0]), metric=True, source="mocap")
    value = joint_angles(motion)["left_knee_flexion_deg"]
    return bool(np.allclose(value, 90.0, atol=1e-6))


def create_app(settings: Settings | None = None) -> FastAPI:
    cfg = settings or Settings()
    engine = LocalKinematics(min_confidence=cfg.kinematics_min_confidence)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["ready"] = _self_check()
        if not state["ready"]:
            log.error("kinematics self-check failed; not ready")
        yield

    app = FastAPI(
        title="Gaitway kinematics",
        version="1",
        description="Per-step running metrics (cadence, contact time, knee flexion...) from a pose sequence.",
        lifespan=lifespan,
    )
    errors = {422: {"model": ErrorResponse}, 413: {"model": ErrorResponse}}

    app.add_middleware(BodyLimit, max_bytes=int(cfg.kinematics_max_body_mb * 1024 * 1024))

    @app.exception_handler(GaitwayError)
    async def domain_error(request: Request, exc: GaitwayError) -> JSONResponse:
        return _error(status_of(exc).http, exc.code, public_message(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    async def readyz() -> JSONResponse:
        if state["ready"]:
            return JSONResponse({"status": "ready"})
        return _error(503, "self_check_failed", "the kinematics engine failed its self-check")

    @app.post("/v1/kinematics", response_model=KinematicsResponse, responses=errors)  # type: ignore[arg-type]
    def kinematics(req: KinematicsRequest) -> KinematicsResponse | JSONResponse:
        frames = len(req.pose3d) if req.pose3d is not None else len(req.t or [])
        if frames > cfg.kinematics_max_frames:
            raise TooManyFramesError(f"{frames} frames; at most {cfg.kinematics_max_frames} per request")
        return engine.analyze(req)

    return app


def main(argv: Sequence[str] | None = None) -> None:
    """``gaitway-kinematics [--host H] [--port P]``: serve the kinematics API (settings: GAITWAY_* env)."""
    import argparse

    import uvicorn

    cfg = Settings()
    p = argparse.ArgumentParser(prog="gaitway-kinematics", description="Gaitway kinematics service (HTTP)")
    p.add_argument("--host", default=cfg.kinematics_host, help="listen address (GAITWAY_KINEMATICS_HOST)")
    p.add_argument(
        "--port", type=int, default=cfg.kinematics_port, help="listen port (GAITWAY_KINEMATICS_PORT)"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(cfg), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
