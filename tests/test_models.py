"""Model store: manifests, search path, checksums, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from services.errors import ModelChecksumError, ModelError
from services.pose.models import ROLES, ModelStore, get_preset, manifests, presets


def test_every_preset_names_one_model_per_role() -> None:
    for preset in presets().values():
        for role in ROLES:
            assert manifests()[getattr(preset, role)].role == role


def test_offline_default_set_resolves_and_verifies(model_dirs: list[Path]) -> None:
    store = ModelStore(model_dirs)
    for role in ROLES:
        for preset in ("thunder", "lightning", "rtmpose-random", "rtmpose-halpe26-random"):
            found = store.resolve(getattr(get_preset(preset), role))
            assert found.verified and found.sha256 == found.manifest.sha256


def test_missing_model_names_the_file_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"movenet-thunder/movenet-thunder\.onnx.*To obtain it") as exc:
        ModelStore([tmp_path]).resolve("movenet-thunder")
    assert exc.value.code == "model_unavailable"


def test_corrupt_model_is_refused(tmp_path: Path, shared: Path) -> None:
    target = tmp_path / "semgcn-h36m" / "semgcn.onnx"
    target.parent.mkdir()
    shutil.copy(shared / "models/semgcn-h36m/semgcn.onnx", target)
    with target.open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ModelChecksumError, match=r"semgcn\.onnx is corrupt") as exc:
        ModelStore([tmp_path]).resolve("semgcn-h36m")
    assert exc.value.code == "model_corrupt"


def test_first_directory_on_the_search_path_wins(tmp_path: Path, shared: Path) -> None:
    local = tmp_path / "semgcn-h36m"
    local.mkdir()
    shutil.copy(shared / "models/semgcn-h36m/semgcn.onnx", local / "semgcn.onnx")
    found = ModelStore([tmp_path, shared / "models"]).resolve("semgcn-h36m")
    assert found.path == local / "semgcn.onnx"


def test_unknown_names_are_model_errors() -> None:
    with pytest.raises(ModelError, match="unknown preset"):
        get_preset("nope")
    with pytest.raises(ModelError, match="unknown model"):
        ModelStore([]).resolve("nope")
