"""Settings of the pose library, read once from the environment (prefix ``GAITWAY_``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PoseSettings(BaseSettings):
    """Configuration of an analysis. Every field can be set as ``GAITWAY_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="GAITWAY_", extra="ignore")

    models_dir: str = Field(
        default="",
        description="model search path (os.pathsep-separated); "
        "empty = ./models, <shared>/models, <shared>/reference",
    )
    shared_dir: Path = Field(default=Path("../shared"), description="shared data/model folder")
    preset: str = Field(default="thunder", description="model preset (see `gaitway models`)")
    max_long_side_px: int = Field(default=640, gt=0, description="frames are downscaled to this long side")
    det_interval_frames: int = Field(default=15, gt=0, description="run the detector at least every N frames")
    ort_threads: int = Field(default=2, gt=0, description="onnxruntime intra-op threads per model")
    triton_url: str = Field(default="", description="Triton gRPC host:port; empty = embedded onnxruntime")
    pose_workers: int = Field(
        default=2,
        gt=0,
        description="2D pose requests in flight; with more than one, each 2D request uses 1 thread",
    )

    def model_search_path(self) -> list[Path]:
        if self.models_dir:
            return [Path(p) for p in self.models_dir.split(os.pathsep) if p]
        return [Path("models"), self.shared_dir / "models", self.shared_dir / "reference"]
