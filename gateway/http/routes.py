"""``/v1/analyses``: upload, list, status, result, artifacts, delete. Each route converts the request,
awaits the job manager (which does its own thread hops) and converts the answer back; errors are the
manager's domain errors, turned into bodies by :mod:`gateway.http.errors`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from gateway.core import AnalysisSpec, RunnerInfo
from gateway.http.deps import Caller, ManagerDep, UploadSizeChecked
from gateway.http.models import ERROR_RESPONSES, AnalysisPage, AnalysisResult, AnalysisStatus, ArtifactLink
from gateway.records import MAX_IDEMPOTENCY_KEY, JobState

router = APIRouter(prefix="/v1/analyses", tags=["analyses"], responses=ERROR_RESPONSES)

_VIDEO_BODY = {"schema": {"type": "string", "format": "binary"}}


@router.post(
    "",
    status_code=202,
    response_model=AnalysisStatus,
    responses={200: {"model": AnalysisStatus, "description": "idempotent replay"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the video file as the raw request body (any FFmpeg-readable container)",
            "content": {
                "video/mp4": _VIDEO_BODY,
                "video/quicktime": _VIDEO_BODY,
                "application/octet-stream": _VIDEO_BODY,
            },
        }
    },
    summary="Upload a video and start its analysis",
)
async def create_analysis(
    request: Request,
    response: Response,
    manager: ManagerDep,
    key: Caller,
    _size: UploadSizeChecked,
    height_m: Annotated[float | None, Query(gt=0, description="runner height, scales 3D to metres")] = None,
    treadmill_speed_mps: Annotated[float | None, Query(gt=0, description="belt speed")] = None,
    slowmo: Annotated[float | None, Query(ge=1, description="slow-motion factor override")] = None,
    preset: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9-]+$")] = None,
    filename: Annotated[str | None, Query(max_length=255, description="shown back to you only")] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY,
            description="retrying with the same key never creates a second analysis",
        ),
    ] = None,
) -> AnalysisStatus:
    spec = AnalysisSpec(
        runner=RunnerInfo(height_m=height_m, treadmill_speed_mps=treadmill_speed_mps, slowmo=slowmo),
        preset=preset,
    )
    job, created = await manager.submit(
        owner=key,
        chunks=request.stream(),
        filename=filename or "video",
        spec=spec,
        idempotency_key=idempotency_key,
        content_type=request.headers.get("content-type"),
    )
    response.headers["location"] = str(request.app.url_path_for("get_analysis", analysis_id=job.id))
    if not created:
        response.status_code = 200
        response.headers["idempotent-replayed"] = "true"
    return AnalysisStatus.of(job)


@router.get("", response_model=AnalysisPage, summary="List your analyses, newest first")
async def list_analyses(
    manager: ManagerDep,
    key: Caller,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    state: Annotated[Literal["queued", "running", "done", "failed"] | None, Query()] = None,
) -> AnalysisPage:
    jobs, nxt = await manager.list_jobs(
        owner=key, limit=limit, cursor=cursor, state=JobState(state) if state else None
    )
    return AnalysisPage(items=[AnalysisStatus.of(j) for j in jobs], next_cursor=nxt)


@router.get("/{analysis_id}", response_model=AnalysisStatus, summary="Status of an analysis")
async def get_analysis(manager: ManagerDep, key: Caller, analysis_id: str) -> AnalysisStatus:
    return AnalysisStatus.of(await manager.get(analysis_id, owner=key))


@router.get(
    "/{analysis_id}/result",
    response_model=AnalysisResult,
    summary="Poses and metrics of a finished analysis",
)
async def get_result(manager: ManagerDep, key: Caller, analysis_id: str) -> JSONResponse:
    # the documents are written by the analysis itself: sent as they are, not re-validated
    return JSONResponse(await manager.result_document(analysis_id, owner=key))


@router.get(
    "/{analysis_id}/artifacts",
    response_model=list[ArtifactLink],
    summary="Artifacts of a finished analysis",
)
async def list_artifacts(
    request: Request, manager: ManagerDep, key: Caller, analysis_id: str
) -> list[ArtifactLink]:
    return [
        ArtifactLink(
            name=name,
            media_type=art.media_type,
            url=str(request.app.url_path_for("get_artifact", analysis_id=analysis_id, name=name)),
        )
        for name, art in await manager.artifacts(analysis_id, owner=key)
    ]


@router.get(
    "/{analysis_id}/artifacts/{name}",
    response_class=FileResponse,
    summary="Download one artifact",
)
async def get_artifact(manager: ManagerDep, key: Caller, analysis_id: str, name: str) -> FileResponse:
    path, art = await manager.artifact(analysis_id, name, owner=key)
    return FileResponse(path, media_type=art.media_type, filename=f"{analysis_id}-{art.filename}")


@router.delete(
    "/{analysis_id}",
    status_code=204,
    response_class=Response,
    summary="Delete an analysis and its files; a running analysis is cancelled",
)
async def delete_analysis(manager: ManagerDep, key: Caller, analysis_id: str) -> Response:
    await manager.delete(analysis_id, owner=key)
    return Response(status_code=204)
