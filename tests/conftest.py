from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GAITWAY_SHARED_DIR", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared data folder not found at {SHARED}; set GAITWAY_SHARED_DIR")
    return SHARED


@pytest.fixture(scope="session")
def model_dirs(shared: Path) -> list[Path]:
    return [shared / "models", shared / "reference"]
