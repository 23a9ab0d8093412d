"""The gateway's one settings object, read once from the environment (prefix ``GAITWAY_``).

The README's configuration table lists every field; units are in the names.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.pose.config import PoseSettings


class GatewaySettings(BaseSettings):
    """Configuration of ``gaitway serve`` (HTTP + gRPC gateway, job store, workers)."""

    model_config = SettingsConfigDict(env_prefix="GAITWAY_", extra="ignore")

    # where things live
    data_dir: Path = Field(default=Path("var"), description="uploads, artifacts and the SQLite database")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the job store; empty = sqlite:///<data_dir>/gaitway.db "
        "(PostgreSQL: postgresql+psycopg://user:pass@host/db)",
    )
    # listening
    http_host: str = Field(default="127.0.0.1", description="HTTP bind address")
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0 = any free port)")
    grpc_port: int = Field(default=50051, ge=0, le=65535, description="gRPC port (0 = any free port)")
    # inference and kinematics
    triton_url: str = Field(default="", description="Triton gRPC host:port; empty = embedded onnxruntime")
    kinematics_url: str = Field(default="", description="kinematics service base URL; empty = in-process")
    preset: str = Field(default="thunder", description="default model preset of an analysis")
    models_dir: str = Field(default="", description="model search path (see PoseSettings)")
    shared_dir: Path = Field(default=Path("../shared"), description="shared data/model folder")
    ort_threads: int = Field(default=2, gt=0, description="onnxruntime threads per model (embedded mode)")
    # jobs
    workers: int = Field(default=1, gt=0, description="analyses run at once")
    queue_limit: int = Field(
        default=8, ge=0, description="accepted analyses waiting for a worker; beyond it: 429 busy"
    )
    max_attempts: int = Field(
        default=3, gt=0, description="tries of a job whose dependency (Triton, kinematics) is down"
    )
    retry_backoff_s: float = Field(default=2.0, ge=0, description="first retry delay, doubled each try")
    max_upload_mb: float = Field(default=500.0, gt=0, description="largest accepted upload")
    # access
    require_api_key: bool = Field(default=True, description="refuse requests without a valid API key")
    api_keys_file: Path | None = Field(
        default=None,
        description="optional file of `name:secret[:jobs_per_day[:requests_per_min]]` lines loaded at "
        "start (keys are stored hashed)",
    )
    default_jobs_per_day: int = Field(default=200, gt=0, description="quota of a key without its own")
    default_requests_per_min: int = Field(default=120, gt=0, description="rate limit of a key")
    cors_origins: list[str] = Field(default_factory=list, description="allowed browser origins (CORS)")
    # live streaming
    stream_max_inflight_frames: int = Field(
        default=2, gt=0, description="StreamFrames: frames waiting for analysis before the oldest is dropped"
    )
    log_json: bool = Field(default=True, description="structured JSON logs")

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

    def pose_settings(self) -> PoseSettings:
        return PoseSettings(
            models_dir=self.models_dir,
            shared_dir=self.shared_dir,
            preset=self.preset,
            ort_threads=self.ort_threads,
            triton_url=self.triton_url,
        )
