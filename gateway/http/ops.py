"""Operations endpoints (no API key): liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.http.deps import ManagerDep
from gateway.http.models import Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a dependency is not ready"}},
    summary="Readiness: models, Triton and the kinematics service",
)
async def readyz(manager: ManagerDep) -> JSONResponse:
    checks = await manager.readiness()
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(ready=ready, checks=checks)
    return JSONResponse(status_code=200 if ready else 503, content=body.model_dump())


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics(manager: ManagerDep) -> Response:
    return Response(generate_latest(manager.telemetry.registry), media_type=CONTENT_TYPE_LATEST)
