"""Gaitway's domain errors: one tree, one mapping table.

Tree::

    GaitwayError                    code               HTTP  gRPC                 CLI exit
    ├── InputError                  invalid_input      422   INVALID_ARGUMENT     2
    │   ├── ShapeError              invalid_shape      422   INVALID_ARGUMENT     2
    │   ├── NoValidDataError        no_valid_data      422   INVALID_ARGUMENT     2
    │   ├── FrameRateError          invalid_fps        422   INVALID_ARGUMENT     2
    │   ├── ClipTooShortError       clip_too_short     422   FAILED_PRECONDITION  2
    │   ├── VideoError              invalid_video      422   INVALID_ARGUMENT     3
    │   │   └── NoVideoStreamError  no_video_stream    422   INVALID_ARGUMENT     3
    │   ├── VideoLimitError         video_too_large    413   INVALID_ARGUMENT     3
    │   ├── TooManyFramesError      too_many_frames    413   INVALID_ARGUMENT     2
    │   └── NoPersonError           no_person          422   FAILED_PRECONDITION  4
    ├── ModelError                  model_unavailable  503   FAILED_PRECONDITION  5
    │   ├── ModelChecksumError      model_corrupt      503   FAILED_PRECONDITION  5
    │   ├── DownloadError           download_failed    503   UNAVAILABLE          7
    │   │   └── DownloadNotFoundError download_not_found 503 FAILED_PRECONDITION  5
    │   ├── ArchiveError            bad_archive        503   FAILED_PRECONDITION  5
    │   │   └── UnsafeArchiveError  unsafe_archive     503   FAILED_PRECONDITION  5
    │   ├── ExportUnavailableError  export_unavailable 503   FAILED_PRECONDITION  5
    │   └── ModelExportError        export_failed      503   FAILED_PRECONDITION  5
    ├── InferenceError              inference_failed   502   UNAVAILABLE          6
    ├── ServiceUnavailableError     service_unavailable 503  UNAVAILABLE          7
    └── RequestError                (the gateway's request-level errors)
        ├── NotFoundError           not_found          404   NOT_FOUND            8
        ├── AuthenticationError     unauthenticated    401   UNAUTHENTICATED      8
        ├── PermissionDeniedError   permission_denied  403   PERMISSION_DENIED    8
        ├── ConflictError           conflict           409   ALREADY_EXISTS       8
        ├── NotReadyError           not_ready          409   FAILED_PRECONDITION  8
        │   └── ArtifactPendingError artifact_pending 409  FAILED_PRECONDITION  8
        ├── PayloadTooLargeError    payload_too_large  413   INVALID_ARGUMENT     8
        ├── UnsupportedMediaError   unsupported_media  415   INVALID_ARGUMENT     8
        ├── UploadTimeoutError      upload_timeout     408   DEADLINE_EXCEEDED    8
        ├── BadRequestError         bad_request        400   INVALID_ARGUMENT     8
        └── BusyError               busy               429   RESOURCE_EXHAUSTED   8
            ├── RateLimitedError    rate_limited       429   RESOURCE_EXHAUSTED   8
            └── QuotaExceededError  quota_exceeded     429   RESOURCE_EXHAUSTED   8

``BusyError`` and its children carry ``retry_after_s``: HTTP sends it as ``Retry-After``, gRPC as the
``retry-after-s`` trailing metadata.

Every error carries a machine-readable ``code`` and a one-line human message, which clients read (through
:func:`public_message`, which also strips any server path or network address that slipped in); internal
detail (addresses, paths) goes in ``detail``, for the logs. Third-party errors (PyAV,
onnxruntime, tritonclient) are translated where they are raised: in ``services.pose.ingest``,
``services.pose.runtime`` and ``services.pose.triton`` (``translate_error``).
The edges (CLI, HTTP, gRPC) look the status up in :data:`ERROR_TABLE` and never inspect messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class GaitwayError(Exception):
    """Base class. ``code`` is stable and machine-readable; ``str(err)`` is for people, and clients see it;
    ``detail`` (optional) is for operators: where it happened, addresses, paths; logs only."""

    code = "internal"

    def __init__(self, message: str = "", *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class InputError(GaitwayError):
    code = "invalid_input"


class ShapeError(InputError):
    """An array has the wrong shape or joint count."""

    code = "invalid_shape"


class NoValidDataError(InputError):
    """Every value is missing (NaN)."""

    code = "no_valid_data"


class FrameRateError(InputError):
    """Frame rate <= 0 or timestamps that do not increase."""

    code = "invalid_fps"


class ClipTooShortError(InputError):
    """The clip holds less than one stride: no step can be measured."""

    code = "clip_too_short"


class VideoError(InputError):
    """The file is not a decodable video (not a video, truncated, empty, unreadable)."""

    code = "invalid_video"


class NoVideoStreamError(VideoError):
    """The container decodes but holds no video stream (for example an audio-only file)."""

    code = "no_video_stream"


class TooManyFramesError(InputError):
    """A pose sequence longer than the kinematics service accepts."""

    code = "too_many_frames"


class VideoLimitError(InputError):
    """The video exceeds what the server analyses (picture size, duration or frame count)."""

    code = "video_too_large"


class NoPersonError(InputError):
    """No runner could be found in the video."""

    code = "no_person"


class ModelError(GaitwayError):
    """A model file is missing, unknown or cannot be loaded."""

    code = "model_unavailable"


class ModelChecksumError(ModelError):
    code = "model_corrupt"


class DownloadError(ModelError):
    """A model file could not be downloaded: network down, connection lost, server error, access refused.
    Transient as a rule: ``gaitway models fetch`` resumes a partial file when run again."""

    code = "download_failed"


class DownloadNotFoundError(DownloadError):
    """The download source answered 404/410: the URL (or the mirror's copy) does not exist."""

    code = "download_not_found"


class ArchiveError(ModelError):
    """A downloaded archive is not a readable zip, or lacks the member its manifest names."""

    code = "bad_archive"


class UnsafeArchiveError(ArchiveError):
    """A downloaded archive holds a member that would land outside its folder (absolute path, ``..``) or a
    link; nothing of it is unpacked."""

    code = "unsafe_archive"


class ExportUnavailableError(ModelError):
    """A model converted after download (MotionBERT to ONNX) needs an optional extra that is missing."""

    code = "export_unavailable"


class ModelExportError(ModelError):
    """A downloaded checkpoint could not be converted (it does not load into the model it should be)."""

    code = "export_failed"


class InferenceError(GaitwayError):
    """The inference runtime failed on valid input."""

    code = "inference_failed"


class ServiceUnavailableError(GaitwayError):
    """A service this one depends on (``dependency``: "triton", "kinematics") cannot be reached."""

    code = "service_unavailable"

    def __init__(self, message: str = "", *, dependency: str = "", detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.dependency = dependency


class RequestError(GaitwayError):
    """A request the gateway refuses for a reason other than its media content."""

    code = "bad_request"


class BadRequestError(RequestError):
    code = "bad_request"


class NotFoundError(RequestError):
    code = "not_found"


class AuthenticationError(RequestError):
    """No API key, or a key that is not known."""

    code = "unauthenticated"


class LinkExpiredError(AuthenticationError):
    """A signed link past its expiry."""

    code = "link_expired"


class PermissionDeniedError(RequestError):
    """A valid key asking for another client's analysis."""

    code = "permission_denied"


class ConflictError(RequestError):
    """An idempotency key reused for a different upload."""

    code = "conflict"


class NotReadyError(RequestError):
    """The result of an analysis that has not finished (or has failed)."""

    code = "not_ready"


class ArtifactPendingError(NotReadyError):
    """A report file of a finished analysis that is still being written (409; ask again shortly)."""

    code = "artifact_pending"


class PayloadTooLargeError(RequestError):
    code = "payload_too_large"


class UnsupportedMediaError(RequestError):
    code = "unsupported_media"


class UploadTimeoutError(RequestError):
    """The upload stalled or took too long."""

    code = "upload_timeout"


class BusyError(RequestError):
    """The gateway's queue is full; try again after ``retry_after_s``."""

    code = "busy"

    def __init__(self, message: str, *, retry_after_s: float = 5.0, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.retry_after_s = retry_after_s


class RateLimitedError(BusyError):
    code = "rate_limited"


class QuotaExceededError(BusyError):
    code = "quota_exceeded"


@dataclass(frozen=True)
class ErrorStatus:
    http: int
    grpc: str  # grpc.StatusCode member name
    exit_code: int


ERROR_TABLE: dict[type[GaitwayError], ErrorStatus] = {
    GaitwayError: ErrorStatus(500, "INTERNAL", 1),
    InputError: ErrorStatus(422, "INVALID_ARGUMENT", 2),
    ShapeError: ErrorStatus(422, "INVALID_ARGUMENT", 2),
    NoValidDataError: ErrorStatus(422, "INVALID_ARGUMENT", 2),
    FrameRateError: ErrorStatus(422, "INVALID_ARGUMENT", 2),
    ClipTooShortError: ErrorStatus(422, "FAILED_PRECONDITION", 2),
    VideoError: ErrorStatus(422, "INVALID_ARGUMENT", 3),
    NoVideoStreamError: ErrorStatus(422, "INVALID_ARGUMENT", 3),
    VideoLimitError: ErrorStatus(413, "INVALID_ARGUMENT", 3),
    TooManyFramesError: ErrorStatus(413, "INVALID_ARGUMENT", 2),
    NoPersonError: ErrorStatus(422, "FAILED_PRECONDITION", 4),
    ModelError: ErrorStatus(503, "FAILED_PRECONDITION", 5),
    ModelChecksumError: ErrorStatus(503, "FAILED_PRECONDITION", 5),
    DownloadError: ErrorStatus(503, "UNAVAILABLE", 7),
    DownloadNotFoundError: ErrorStatus(503, "FAILED_PRECONDITION", 5),
    ArchiveError: ErrorStatus(503, "FAILED_PRECONDITION", 5),
    UnsafeArchiveError: ErrorStatus(503, "FAILED_PRECONDITION", 5),
    ExportUnavailableError: ErrorStatus(503, "FAILED_PRECONDITION", 5),
    ModelExportError: ErrorStatus(503, "FAILED_PRECONDITION", 5),
    InferenceError: ErrorStatus(502, "UNAVAILABLE", 6),
    ServiceUnavailableError: ErrorStatus(503, "UNAVAILABLE", 7),
    RequestError: ErrorStatus(400, "INVALID_ARGUMENT", 8),
    BadRequestError: ErrorStatus(400, "INVALID_ARGUMENT", 8),
    NotFoundError: ErrorStatus(404, "NOT_FOUND", 8),
    AuthenticationError: ErrorStatus(401, "UNAUTHENTICATED", 8),
    LinkExpiredError: ErrorStatus(401, "UNAUTHENTICATED", 8),
    PermissionDeniedError: ErrorStatus(403, "PERMISSION_DENIED", 8),
    ConflictError: ErrorStatus(409, "ALREADY_EXISTS", 8),
    NotReadyError: ErrorStatus(409, "FAILED_PRECONDITION", 8),
    ArtifactPendingError: ErrorStatus(409, "FAILED_PRECONDITION", 8),
    PayloadTooLargeError: ErrorStatus(413, "INVALID_ARGUMENT", 8),
    UnsupportedMediaError: ErrorStatus(415, "INVALID_ARGUMENT", 8),
    UploadTimeoutError: ErrorStatus(408, "DEADLINE_EXCEEDED", 8),
    BusyError: ErrorStatus(429, "RESOURCE_EXHAUSTED", 8),
    RateLimitedError: ErrorStatus(429, "RESOURCE_EXHAUSTED", 8),
    QuotaExceededError: ErrorStatus(429, "RESOURCE_EXHAUSTED", 8),
}

#: machine-readable code -> error class, for clients turning an error body back into an exception
ERROR_BY_CODE: dict[str, type[GaitwayError]] = {cls.code: cls for cls in ERROR_TABLE}


#: what a client must never read: absolute paths (reduced to the file's name) and network addresses
_PATH = re.compile(r"(?<![\w.])(?:/[\w.@+-]+){2,}/?")
_ADDRESSES = (
    re.compile(r"\[[0-9a-f:.]+\](?::\d{1,5})?", re.IGNORECASE),  # [IPv6]:port
    re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b"),  # IPv4[:port]
    re.compile(r"\b(?:localhost|[\w-]+(?:\.[\w-]+)+):\d{2,5}\b"),  # host:port
)


def public_message(err: BaseException, *, limit: int = 500) -> str:
    """The text a client may read of ``err``: its message with any path reduced to the file's name and
    any network address hidden, at most ``limit`` characters (internal detail belongs in the logs)."""
    text = _PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], str(err))
    for pattern in _ADDRESSES:
        text = pattern.sub("<internal address>", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_of(err: GaitwayError) -> ErrorStatus:
    """The table entry of the most specific class of ``err``."""
    for cls in type(err).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    raise AssertionError("GaitwayError is always in the table")
