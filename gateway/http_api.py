"""The HTTP API for mobile apps (FastAPI). Routes only convert requests and call :class:`JobManager`.

    POST   /v1/analyses                       upload a video (raw body), returns the new analysis (202)
    GET    /v1/analyses                       list your analyses, newest first (cursor pagination)
    GET    /v1/analyses/{id}                  status: state, stage, progress, error
    GET    /v1/analyses/{id}/result           poses + metrics JSON of a finished analysis
    GET    /v1/analyses/{id}/artifacts        the artifacts of a finished analysis
    GET    /v1/analyses/{id}/artifacts/{name} one artifact file (CSV, XLSX, PNG, JSON)
    DELETE /v1/analyses/{id}                  delete an analysis and its files
    GET    /healthz  /readyz  /metrics        liveness, readiness (Triton, kinematics), Prometheus

Every error body is ``{"error": {"code", "message", "request_id"}}`` with the status of
:data:`services.errors.ERROR_TABLE`; 429s carry ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.core import AnalysisSpec, RunnerInfo, check_preset
from gateway.jobs import ARTIFACTS, JobManager, require_done, status_document
from gateway.settings import GatewaySettings
from gateway.store import ApiKey, Job, JobState
from gateway.telemetry import request_id
from services.errors import BusyError, GaitwayError, PayloadTooLargeError, status_of

log = logging.getLogger("gaitway.http")

ManagerFactory = Callable[[], Awaitable[JobManager]]


class ErrorInfo(BaseModel):
    code: str = Field(examples=["invalid_video"])
    message: str = Field(examples=["the upload is empty (0 bytes)"])
    request_id: str = Field(examples=["5b7c3f0e9a2d4c51"])


class ErrorBody(BaseModel):
    error: ErrorInfo


class JobError(BaseModel):
    code: str = Field(examples=["no_person"])
    message: str


class AnalysisStatus(BaseModel):
    id: str = Field(examples=["an_3f9c0d1e2b4a5968778695a4"])
    state: Literal["queued", "running", "done", "failed"]
    stage: str = Field(examples=["pose"], description="queued, pose, kinematics, artifacts, done or failed")
    progress: float = Field(ge=0, le=1, examples=[0.42])
    error: JobError | None = None
    filename: str = Field(examples=["IMG_5396.mp4"])
    upload_bytes: int
    options: dict[str, Any] = Field(examples=[{"height_m": 1.78, "treadmill_speed_mps": 3.5, "slowmo": None}])
    attempts: int
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    summary: dict[str, Any] | None = Field(
        default=None,
        examples=[
            {"frames": 388, "frames_with_pose": 388, "steps": 16, "metrics": {"cadence_spm": {"mean": 168.4}}}
        ],
    )


class AnalysisPage(BaseModel):
    items: list[AnalysisStatus]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class ArtifactLink(BaseModel):
    name: str = Field(examples=["steps"])
    media_type: str = Field(examples=["text/csv"])
    url: str = Field(examples=["/v1/analyses/an_3f9c0d1e2b4a5968778695a4/artifacts/steps"])


class AnalysisResult(BaseModel):
    job: AnalysisStatus
    poses: dict[str, Any] = Field(description="poses.json: schema gaitway.poses v1 (per-frame 2D and 3D)")
    metrics: dict[str, Any] | None = Field(description="metrics.json: schema gaitway.metrics v1, or null")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "request_id": request_id.get()}}
    return JSONResponse(status_code=status, content=body, headers=headers)


def _status(job: Job) -> AnalysisStatus:
    return AnalysisStatus.model_validate(status_document(job))


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "bad request (e.g. malformed cursor)",
        401: "missing or unknown API key",
        403: "the analysis belongs to another client",
        404: "no such analysis or artifact",
        409: "not finished yet, or idempotency key reused for other content",
        413: "upload over max_upload_mb",
        415: "not a video content type",
        422: "not a decodable video, or invalid fields",
        429: "queue full, rate limit or daily quota (see Retry-After)",
    }.items()
}


def mgr(request: Request) -> JobManager:
    m: JobManager = request.app.state.manager
    return m


def caller(
    request: Request,
    x_api_key: Annotated[str | None, Header(description="your API key")] = None,
) -> ApiKey:
    """The API key of the request (``x-api-key`` or ``authorization: Bearer``), after its rate limit."""
    secret = x_api_key
    auth = request.headers.get("authorization", "")
    if secret is None and auth.lower().startswith("bearer "):
        secret = auth[7:].strip()
    return mgr(request).access.check(secret)


Caller = Annotated[ApiKey, Depends(caller)]


def create_app(settings: GatewaySettings, *, manager: JobManager | None = None) -> FastAPI:
    """The HTTP app. With ``manager`` None, the app builds its own (store, engine, workers) in its
    lifespan; ``gaitway serve`` passes the manager it shares with the gRPC server."""
    from gateway.server import build_manager  # the server module builds managers for both transports

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manager is not None:
            app.state.manager = manager
            yield
            return
        own = build_manager(settings)
        await own.start()
        app.state.manager = own
        try:
            yield
        finally:
            await own.stop()
            own.store.close()

    app = FastAPI(
        title="Gaitway API",
        version="1.0.0",
        summary="Running-gait analysis from a phone video: 2D/3D pose and per-step running metrics.",
        lifespan=lifespan,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["x-api-key", "authorization", "idempotency-key", "content-type", "x-request-id"],
            expose_headers=["location", "retry-after", "x-request-id", "idempotent-replayed"],
        )

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        t0 = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            request_id.reset(token)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        elapsed = time.perf_counter() - t0
        telemetry = request.app.state.manager.telemetry if hasattr(request.app.state, "manager") else None
        if telemetry is not None:
            telemetry.http_requests.labels(path, request.method, str(response.status_code)).inc()
            telemetry.http_latency.labels(path, request.method).observe(elapsed)
        response.headers["x-request-id"] = rid
        log.info(
            "http request",
            extra={
                "request_id": rid,
                "method": request.method,
                "route": path,
                "status": response.status_code,
                "ms": round(elapsed * 1000, 1),
            },
        )
        return response

    @app.exception_handler(GaitwayError)
    async def domain_error(request: Request, exc: GaitwayError) -> JSONResponse:
        headers = (
            {"retry-after": str(max(1, round(exc.retry_after_s)))} if isinstance(exc, BusyError) else None
        )
        return _error(status_of(exc).http, exc.code, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"route": request.url.path})
        return _error(500, "internal", "internal error; the gateway log has details under this request id")

    @app.post(
        "/v1/analyses",
        status_code=202,
        response_model=AnalysisStatus,
        responses={200: {"model": AnalysisStatus, "description": "idempotent replay"}, **_ERRORS},
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "the video file as the raw request body (any FFmpeg-readable container)",
                "content": {
                    "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                    "video/quicktime": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
        summary="Upload a video and start its analysis",
    )
    async def create_analysis(
        request: Request,
        response: Response,
        key: Caller,
        height_m: Annotated[
            float | None, Query(gt=0, description="runner height, scales 3D to metres")
        ] = None,
        treadmill_speed_mps: Annotated[float | None, Query(gt=0, description="belt speed")] = None,
        slowmo: Annotated[float | None, Query(ge=1, description="slow-motion factor override")] = None,
        preset: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9-]+$")] = None,
        filename: Annotated[str | None, Query(max_length=255, description="shown back to you only")] = None,
        idempotency_key: Annotated[
            str | None,
            Header(max_length=128, description="retrying with the same key never creates a second job"),
        ] = None,
    ) -> AnalysisStatus:
        m = mgr(request)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_upload_bytes:
            raise PayloadTooLargeError(
                f"upload of {declared} bytes exceeds max_upload_mb={settings.max_upload_mb:g}"
            )
        spec = AnalysisSpec(
            runner=RunnerInfo(height_m=height_m, treadmill_speed_mps=treadmill_speed_mps, slowmo=slowmo),
            preset=preset,
        )
        if preset is not None:
            check_preset(preset)
            await asyncio.to_thread(m.engine.models, spec)  # missing model files fail before the upload
        job, created = await m.submit(
            owner=key,
            chunks=request.stream(),
            filename=filename or "video",
            spec=spec,
            idempotency_key=idempotency_key,
            content_type=request.headers.get("content-type"),
        )
        response.headers["location"] = f"/v1/analyses/{job.id}"
        if not created:
            response.status_code = 200
            response.headers["idempotent-replayed"] = "true"
        return _status(job)

    @app.get("/v1/analyses", response_model=AnalysisPage, responses=_ERRORS, summary="List your analyses")
    async def list_analyses(
        request: Request,
        key: Caller,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        state: Annotated[Literal["queued", "running", "done", "failed"] | None, Query()] = None,
    ) -> AnalysisPage:
        jobs, nxt = await asyncio.to_thread(
            mgr(request).list_jobs,
            owner=key,
            limit=limit,
            cursor=cursor,
            state=JobState(state) if state else None,
        )
        return AnalysisPage(items=[_status(j) for j in jobs], next_cursor=nxt)

    @app.get("/v1/analyses/{analysis_id}", response_model=AnalysisStatus, responses=_ERRORS, summary="Status")
    async def get_analysis(request: Request, key: Caller, analysis_id: str) -> AnalysisStatus:
        return _status(await asyncio.to_thread(partial(mgr(request).get, analysis_id, owner=key)))

    @app.get(
        "/v1/analyses/{analysis_id}/result",
        response_model=AnalysisResult,
        responses=_ERRORS,
        summary="Poses and metrics of a finished analysis",
    )
    async def get_result(request: Request, key: Caller, analysis_id: str) -> JSONResponse:
        m = mgr(request)
        job = await asyncio.to_thread(partial(m.get, analysis_id, owner=key))
        return JSONResponse(await asyncio.to_thread(m.result_document, job))

    @app.get(
        "/v1/analyses/{analysis_id}/artifacts",
        response_model=list[ArtifactLink],
        responses=_ERRORS,
        summary="Artifacts of a finished analysis",
    )
    async def list_artifacts(request: Request, key: Caller, analysis_id: str) -> list[ArtifactLink]:
        m = mgr(request)
        job = await asyncio.to_thread(partial(m.get, analysis_id, owner=key))
        require_done(job)
        folder = m.job_dir(job.id)
        return [
            ArtifactLink(name=name, media_type=a.media_type, url=f"/v1/analyses/{job.id}/artifacts/{name}")
            for name, a in ARTIFACTS.items()
            if (folder / a.filename).is_file()
        ]

    @app.get(
        "/v1/analyses/{analysis_id}/artifacts/{name}",
        response_class=FileResponse,
        responses=_ERRORS,
        summary="Download one artifact",
    )
    async def get_artifact(request: Request, key: Caller, analysis_id: str, name: str) -> FileResponse:
        path, art = await asyncio.to_thread(partial(mgr(request).artifact, analysis_id, name, owner=key))
        return FileResponse(path, media_type=art.media_type, filename=f"{analysis_id}-{art.filename}")

    @app.delete(
        "/v1/analyses/{analysis_id}",
        status_code=204,
        responses=_ERRORS,
        summary="Delete an analysis and its files",
    )
    async def delete_analysis(request: Request, key: Caller, analysis_id: str) -> Response:
        await asyncio.to_thread(partial(mgr(request).delete, analysis_id, owner=key))
        return Response(status_code=204)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: models, Triton and the kinematics service")
    async def readyz(request: Request) -> JSONResponse:
        checks = await asyncio.to_thread(mgr(request).engine.readiness)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(status_code=200 if ok else 503, content={"ready": ok, "checks": checks})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(mgr(request).telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    return app
