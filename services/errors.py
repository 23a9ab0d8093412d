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
    │   └── NoPersonError           no_person          422   FAILED_PRECONDITION  4
    ├── ModelError                  model_unavailable  503   FAILED_PRECONDITION  5
    │   └── ModelChecksumError      model_corrupt      503   FAILED_PRECONDITION  5
    ├── InferenceError              inference_failed   502   UNAVAILABLE          6
    └── ServiceUnavailableError     service_unavailable 503  UNAVAILABLE          7

Every error carries a machine-readable ``code`` and a one-line human message. Third-party errors (PyAV,
onnxruntime, tritonclient) are translated where they are raised: in ``services.pose.ingest``,
``services.pose.runtime`` and ``services.pose.triton`` (``translate_error``).
The edges (CLI, HTTP, gRPC) look the status up in :data:`ERROR_TABLE` and never inspect messages.
"""

from __future__ import annotations

from dataclasses import dataclass


class GaitwayError(Exception):
    """Base class. ``code`` is stable and machine-readable; ``str(err)`` is for people."""

    code = "internal"


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


class NoPersonError(InputError):
    """No runner could be found in the video."""

    code = "no_person"


class ModelError(GaitwayError):
    """A model file is missing, unknown or cannot be loaded."""

    code = "model_unavailable"


class ModelChecksumError(ModelError):
    code = "model_corrupt"


class InferenceError(GaitwayError):
    """The inference runtime failed on valid input."""

    code = "inference_failed"


class ServiceUnavailableError(GaitwayError):
    """A service this one depends on (kinematics, Triton) cannot be reached."""

    code = "service_unavailable"


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
    NoPersonError: ErrorStatus(422, "FAILED_PRECONDITION", 4),
    ModelError: ErrorStatus(503, "FAILED_PRECONDITION", 5),
    ModelChecksumError: ErrorStatus(503, "FAILED_PRECONDITION", 5),
    InferenceError: ErrorStatus(502, "UNAVAILABLE", 6),
    ServiceUnavailableError: ErrorStatus(503, "UNAVAILABLE", 7),
}

#: machine-readable code -> error class, for clients turning an error body back into an exception
ERROR_BY_CODE: dict[str, type[GaitwayError]] = {cls.code: cls for cls in ERROR_TABLE}


def status_of(err: GaitwayError) -> ErrorStatus:
    """The table entry of the most specific class of ``err``."""
    for cls in type(err).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    raise AssertionError("GaitwayError is always in the table")
