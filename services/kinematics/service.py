"""The kinematics microservice (FastAPI): pose sequence in, per-step running metrics out.

    gaitway-kinematics            # serves on GAITWAY_KINEMATICS_HOST:GAITWAY_KINEMATICS_PORT

Routes: ``POST /v1/kinematics`` (:class:`KinematicsRequest` -> :class:`KinematicsResponse`), ``GET /healthz``
(liveness), ``GET /readyz`` (readiness: the engine passed its start-up self-check). Errors have one body
shape, ``{"error": {"code": ..., "message": ...}}``, with the HTTP status of ``services.errors.ERROR_TABLE``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.errors import GaitwayError, status_of
from services.kinematics.client import LocalKinematics
from services.kinematics.schema import ErrorResponse, KinematicsRequest, KinematicsResponse

log = logging.getLogger(__name__)


class KinematicsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GAITWAY_KINEMATICS_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="listen address")
    port: int = Field(default=8081, ge=0, le=65535, description="listen port")
    max_frames: int = Field(default=200_000, gt=0, description="longest accepted sequence")
    min_confidence: float = Field(default=0.3, ge=0, le=1, description="keypoint confidence threshold")


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


def create_app(settings: KinematicsSettings | None = None) -> FastAPI:
    cfg = settings or KinematicsSettings()
    engine = LocalKinematics(min_confidence=cfg.min_confidence)
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

    @app.exception_handler(GaitwayError)
    async def domain_error(request: Request, exc: GaitwayError) -> JSONResponse:
        return _error(status_of(exc).http, exc.code, str(exc))

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
        return _error(503, "not_ready", "the kinematics engine failed its self-check")

    @app.post("/v1/kinematics", response_model=KinematicsResponse, responses=errors)  # type: ignore[arg-type]
    def kinematics(req: KinematicsRequest) -> KinematicsResponse | JSONResponse:
        frames = len(req.pose3d) if req.pose3d is not None else len(req.t or [])
        if frames > cfg.max_frames:
            return _error(413, "too_many_frames", f"{frames} frames; at most {cfg.max_frames} per request")
        return engine.analyze(req)

    return app


def main() -> None:
    import uvicorn

    cfg = KinematicsSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(cfg), host=cfg.host, port=cfg.port)


if __name__ == "__main__":
    main()
