import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnalysisState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANALYSIS_STATE_UNSPECIFIED: _ClassVar[AnalysisState]
    ANALYSIS_STATE_QUEUED: _ClassVar[AnalysisState]
    ANALYSIS_STATE_RUNNING: _ClassVar[AnalysisState]
    ANALYSIS_STATE_DONE: _ClassVar[AnalysisState]
    ANALYSIS_STATE_FAILED: _ClassVar[AnalysisState]
ANALYSIS_STATE_UNSPECIFIED: AnalysisState
ANALYSIS_STATE_QUEUED: AnalysisState
ANALYSIS_STATE_RUNNING: AnalysisState
ANALYSIS_STATE_DONE: AnalysisState
ANALYSIS_STATE_FAILED: AnalysisState

class RunnerInfo(_message.Message):
    __slots__ = ("height_m", "treadmill_speed_mps", "slowmo")
    HEIGHT_M_FIELD_NUMBER: _ClassVar[int]
    TREADMILL_SPEED_MPS_FIELD_NUMBER: _ClassVar[int]
    SLOWMO_FIELD_NUMBER: _ClassVar[int]
    height_m: float
    treadmill_speed_mps: float
    slowmo: float
    def __init__(self, height_m: _Optional[float] = ..., treadmill_speed_mps: _Optional[float] = ..., slowmo: _Optional[float] = ...) -> None: ...

class UploadMetadata(_message.Message):
    __slots__ = ("filename", "content_type", "runner", "preset", "idempotency_key")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RUNNER_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    filename: str
    content_type: str
    runner: RunnerInfo
    preset: str
    idempotency_key: str
    def __init__(self, filename: _Optional[str] = ..., content_type: _Optional[str] = ..., runner: _Optional[_Union[RunnerInfo, _Mapping]] = ..., preset: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class AnalyzeVideoRequest(_message.Message):
    __slots__ = ("metadata", "chunk")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    metadata: UploadMetadata
    chunk: bytes
    def __init__(self, metadata: _Optional[_Union[UploadMetadata, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ErrorInfo(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class AnalysisStatus(_message.Message):
    __slots__ = ("id", "state", "stage", "progress", "error", "created_at", "updated_at", "started_at", "finished_at", "filename", "upload_bytes", "attempts", "summary", "created", "result_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: AnalysisState
    stage: str
    progress: float
    error: ErrorInfo
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    filename: str
    upload_bytes: int
    attempts: int
    summary: _struct_pb2.Struct
    created: bool
    result_json: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[AnalysisState, str]] = ..., stage: _Optional[str] = ..., progress: _Optional[float] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., filename: _Optional[str] = ..., upload_bytes: _Optional[int] = ..., attempts: _Optional[int] = ..., summary: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created: _Optional[bool] = ..., result_json: _Optional[str] = ...) -> None: ...

class GetAnalysisRequest(_message.Message):
    __slots__ = ("id", "include_result")
    ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RESULT_FIELD_NUMBER: _ClassVar[int]
    id: str
    include_result: bool
    def __init__(self, id: _Optional[str] = ..., include_result: _Optional[bool] = ...) -> None: ...

class WatchAnalysisRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class StreamConfig(_message.Message):
    __slots__ = ("preset", "runner")
    PRESET_FIELD_NUMBER: _ClassVar[int]
    RUNNER_FIELD_NUMBER: _ClassVar[int]
    preset: str
    runner: RunnerInfo
    def __init__(self, preset: _Optional[str] = ..., runner: _Optional[_Union[RunnerInfo, _Mapping]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("seq", "t", "image")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    t: float
    image: bytes
    def __init__(self, seq: _Optional[int] = ..., t: _Optional[float] = ..., image: _Optional[bytes] = ...) -> None: ...

class FrameIn(_message.Message):
    __slots__ = ("config", "frame")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    frame: Frame
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class Keypoint(_message.Message):
    __slots__ = ("x", "y", "score")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    score: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x0", "y0", "x1", "y1")
    X0_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    x0: float
    y0: float
    x1: float
    y1: float
    def __init__(self, x0: _Optional[float] = ..., y0: _Optional[float] = ..., x1: _Optional[float] = ..., y1: _Optional[float] = ...) -> None: ...

class FrameKeypoints(_message.Message):
    __slots__ = ("seq", "t", "keypoints", "box", "skeleton", "latency_ms", "inference_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    SKELETON_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    t: float
    keypoints: _containers.RepeatedCompositeFieldContainer[Keypoint]
    box: Box
    skeleton: str
    latency_ms: float
    inference_ms: float
    def __init__(self, seq: _Optional[int] = ..., t: _Optional[float] = ..., keypoints: _Optional[_Iterable[_Union[Keypoint, _Mapping]]] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., skeleton: _Optional[str] = ..., latency_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ("side", "strike_t", "toe_off_t", "metrics", "flags", "sources", "excluded", "yaw_deg", "view", "foot_strike")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class SourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ExcludedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: MetricFlags
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[MetricFlags, _Mapping]] = ...) -> None: ...
    SIDE_FIELD_NUMBER: _ClassVar[int]
    STRIKE_T_FIELD_NUMBER: _ClassVar[int]
    TOE_OFF_T_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_FIELD_NUMBER: _ClassVar[int]
    YAW_DEG_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    FOOT_STRIKE_FIELD_NUMBER: _ClassVar[int]
    side: str
    strike_t: float
    toe_off_t: float
    metrics: _containers.ScalarMap[str, float]
    flags: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.ScalarMap[str, str]
    excluded: _containers.MessageMap[str, MetricFlags]
    yaw_deg: float
    view: str
    foot_strike: str
    def __init__(self, side: _Optional[str] = ..., strike_t: _Optional[float] = ..., toe_off_t: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., flags: _Optional[_Iterable[str]] = ..., sources: _Optional[_Mapping[str, str]] = ..., excluded: _Optional[_Mapping[str, MetricFlags]] = ..., yaw_deg: _Optional[float] = ..., view: _Optional[str] = ..., foot_strike: _Optional[str] = ...) -> None: ...

class MetricFlags(_message.Message):
    __slots__ = ("flags",)
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    flags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, flags: _Optional[_Iterable[str]] = ...) -> None: ...

class Dropped(_message.Message):
    __slots__ = ("seq", "reason", "message")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    reason: str
    message: str
    def __init__(self, seq: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class StreamSummary(_message.Message):
    __slots__ = ("frames_received", "frames_analysed", "frames_dropped", "steps", "summary")
    FRAMES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_ANALYSED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    frames_received: int
    frames_analysed: int
    frames_dropped: int
    steps: int
    summary: _struct_pb2.Struct
    def __init__(self, frames_received: _Optional[int] = ..., frames_analysed: _Optional[int] = ..., frames_dropped: _Optional[int] = ..., steps: _Optional[int] = ..., summary: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class FrameOut(_message.Message):
    __slots__ = ("keypoints", "step", "dropped", "summary")
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    keypoints: FrameKeypoints
    step: Step
    dropped: Dropped
    summary: StreamSummary
    def __init__(self, keypoints: _Optional[_Union[FrameKeypoints, _Mapping]] = ..., step: _Optional[_Union[Step, _Mapping]] = ..., dropped: _Optional[_Union[Dropped, _Mapping]] = ..., summary: _Optional[_Union[StreamSummary, _Mapping]] = ...) -> None: ...
