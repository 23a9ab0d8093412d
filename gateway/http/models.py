"""The HTTP API's response bodies (pydantic, with the examples ``/docs`` shows) and the error responses
every analysis operation documents, derived from :data:`services.errors.ERROR_TABLE`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from gateway.jobs import status_document
from gateway.records import Job
from services.errors import ERROR_TABLE


class ErrorInfo(BaseModel):
    code: str = Field(examples=["invalid_video"], description="machine-readable: the README's error table")
    message: str = Field(examples=["the upload is empty (0 bytes)"])
    request_id: str = Field(examples=["5b7c3f0e9a2d4c51"], description="also in the x-request-id header")


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

    @classmethod
    def of(cls, job: Job) -> AnalysisStatus:
        return cls.model_validate(status_document(job))


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


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(
        examples=[{"models": "ok", "triton": "ok", "kinematics": "ok"}],
        description='each dependency -> "ok" or why not',
    )


#: when each status is answered; the codes come from the error table
_WHEN: dict[int, str] = {
    400: "bad request: a malformed cursor, an unknown preset, an invalid idempotency key",
    401: "missing or unknown API key",
    403: "the analysis belongs to another client",
    404: "no such analysis or artifact",
    408: "the upload stalled (upload_idle_timeout_s) or took too long (upload_timeout_s)",
    409: "not finished yet (`not_ready`), a report file still being written (`artifact_pending`), or an "
    "idempotency key reused for other content",
    413: "upload over max_upload_mb, or a video over the frame, duration or picture-size limits",
    415: "not a video content type",
    422: "not a decodable video, or invalid fields",
    429: "queue full, rate limit or daily quota (see Retry-After)",
    500: "a bug; the gateway log has details under the request id",
    502: "the inference runtime failed",
    503: "a model file or a dependency (Triton, the kinematics service) is unavailable",
}
#: codes the HTTP layer answers itself (not domain errors)
_HTTP_CODES: dict[int, list[str]] = {422: ["invalid_request"]}


def _error_response(status: int) -> dict[str, Any]:
    codes = {cls.code for cls, entry in ERROR_TABLE.items() if entry.http == status}
    codes.update(_HTTP_CODES.get(status, []))
    doc: dict[str, Any] = {
        "model": ErrorBody,
        "description": f"{_WHEN.get(status, 'error')} (code: {', '.join(sorted(codes))})",
    }
    if status == 429:
        wait = {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}
        doc["headers"] = {"Retry-After": wait}
    return doc


#: the error responses of every analysis operation: each HTTP status of the error table
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: _error_response(status) for status in sorted({entry.http for entry in ERROR_TABLE.values()})
}
