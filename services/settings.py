"""Gaitway's one settings object, read once from the environment (prefix ``GAITWAY_``).

Every process reads this class: the ``gaitway`` CLI, the gateway (``gaitway serve``) and the kinematics
service (``gaitway-kinematics``); each uses the fields it needs. Every field is set as
``GAITWAY_<FIELD NAME>`` (``kinematics_host`` is ``GAITWAY_KINEMATICS_HOST``); units are in the names.
The README's configuration table lists every variable and which process uses it.

It lives in ``services/`` so that the pose and kinematics libraries and the gateway may all import it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of every Gaitway process. Every field can be set as ``GAITWAY_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="GAITWAY_", extra="ignore")

    # models and inference (CLI, gateway)
    models_dir: str = Field(
        default="",
        description="model search path (os.pathsep-separated); "
        "empty = ./models, <shared>/models, <shared>/reference",
    )
    shared_dir: Path = Field(default=Path("../shared"), description="shared data/model folder")
    models_mirror: str = Field(
        default="",
        description="`gaitway models fetch`: base URL of a mirror of the downloadable model files, laid out "
        "as <base>/<model name>/<file name of the official URL>; empty = the official URLs",
    )
    preset: str = Field(default="thunder", description="default model preset (see `gaitway models`)")
    ort_threads: int = Field(default=2, gt=0, description="onnxruntime intra-op threads per model")
    triton_url: str = Field(default="", description="Triton gRPC host:port; empty = embedded onnxruntime")
    # analysis defaults (CLI, gateway): the one copy of them; an AnalysisSpec field left unset takes these
    max_long_side_px: int = Field(default=640, gt=0, description="frames are downscaled to this long side")
    det_interval_frames: int = Field(default=15, gt=0, description="run the detector at least every N frames")
    pose_workers: int = Field(
        default=2,
        gt=0,
        description="2D pose requests in flight; with more than one, each 2D request uses 1 thread",
    )
    # gateway: where things live
    data_dir: Path = Field(default=Path("var"), description="uploads, artifacts and the SQLite database")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the job store; empty = sqlite:///<data_dir>/gaitway.db "
        "(PostgreSQL: postgresql+psycopg://user:pass@host/db)",
    )
    # gateway: listening
    http_host: str = Field(default="127.0.0.1", description="HTTP bind address")
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0 = any free port)")
    grpc_port: int = Field(default=50051, ge=0, le=65535, description="gRPC port (0 = any free port)")
    # gateway: kinematics
    kinematics_url: str = Field(default="", description="kinematics service base URL; empty = in-process")
    # gateway: jobs
    workers: int = Field(
        default=1, ge=0, description="analyses this replica runs at once (0: an API-only replica)"
    )
    queue_limit: int = Field(
        default=8, ge=0, description="analyses waiting for a worker across every replica; beyond it: 429 busy"
    )
    max_attempts: int = Field(
        default=3,
        gt=0,
        description="tries of a job: inference failures, and replicas dying under it (outages do not count)",
    )
    retry_backoff_s: float = Field(default=2.0, ge=0, description="first retry delay, doubled each try")
    max_outage_s: float = Field(
        default=900.0,
        gt=0,
        description="a job meeting a dependency outage fails once it has lasted this long",
    )
    lease_s: float = Field(
        default=30.0, ge=3, description="a worker's hold on a job, renewed every third of it; a dead "
        "replica's jobs are taken over this long after its last renewal"
    )  # fmt: skip
    poll_interval_s: float = Field(default=1.0, gt=0, description="idle workers look for jobs this often")
    probe_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="readiness probes of Triton and the kinematics service (faster when down)",
    )
    shutdown_grace_s: float = Field(
        default=25.0,
        ge=0,
        description="SIGTERM: running jobs may finish this long before going back to the queue",
    )
    # gateway: upload limits
    max_upload_mb: float = Field(default=500.0, gt=0, description="largest accepted upload")
    upload_idle_timeout_s: float = Field(
        default=30.0, gt=0, description="an upload sending nothing this long fails"
    )
    upload_timeout_s: float = Field(default=900.0, gt=0, description="longest an upload may take")
    upload_min_kbps: float = Field(
        default=64.0,
        ge=0,
        description="slowest average upload rate (kilobits/s) accepted once upload_idle_timeout_s has passed",
    )
    max_video_s: float = Field(default=600.0, gt=0, description="longest video analysed (media time)")
    max_video_frames: int = Field(default=36_000, gt=0, description="most frames a video may have")
    max_video_pixels: int = Field(
        default=3840 * 2160, gt=0, description="largest picture (width x height) a video may have"
    )
    # gateway: access
    require_api_key: bool = Field(default=True, description="refuse requests without a valid API key")
    api_keys_file: Path | None = Field(
        default=None,
        description="optional file of `name:secret[:jobs_per_day[:requests_per_min]]` lines loaded at "
        "start (keys are stored hashed)",
    )
    default_jobs_per_day: int = Field(default=200, gt=0, description="quota of a key without its own")
    default_requests_per_min: int = Field(default=120, gt=0, description="rate limit of a key")
    auth_failures_per_min: int = Field(
        default=20, gt=0, description="failed authentications a client address may make a minute (then 429)"
    )
    cors_origins: list[str] = Field(default_factory=list, description="allowed browser origins (CORS)")
    # gateway: live streaming and logs
    stream_max_inflight_frames: int = Field(
        default=2, gt=0, description="StreamFrames: frames waiting for analysis before the oldest is dropped"
    )
    stream_sessions_per_key: int = Field(
        default=2, gt=0, description="StreamFrames calls an API key may have open across every replica"
    )
    stream_sessions_per_replica: int = Field(
        default=4, gt=0, description="StreamFrames calls one replica serves at once"
    )
    log_json: bool = Field(default=True, description="structured JSON logs")
    # kinematics service (gaitway-kinematics)
    kinematics_host: str = Field(default="127.0.0.1", description="kinematics service listen address")
    kinematics_port: int = Field(default=8081, ge=0, le=65535, description="kinematics service listen port")
    kinematics_max_frames: int = Field(
        default=200_000, gt=0, description="kinematics service: longest accepted sequence"
    )
    kinematics_max_body_mb: float = Field(
        default=256.0, gt=0, description="kinematics service: largest request body, refused before parsing"
    )
    kinematics_min_confidence: float = Field(
        default=0.3, ge=0, le=1, description="kinematics service: keypoint confidence threshold"
    )

    def model_search_path(self) -> list[Path]:
        if self.models_dir:
            return [Path(p) for p in self.models_dir.split(os.pathsep) if p]
        return [Path("models"), self.shared_dir / "models", self.shared_dir / "reference"]

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'gaitway.db'}"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
