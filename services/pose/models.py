"""Model store: manifests, the models search path, checksum verification at load.

Manifests live in ``models.toml`` beside this module (one table per model, plus presets). A model's file is
looked up as ``<dir>/<manifest.file>`` in each directory of the search path, first hit wins.
"""

from __future__ import annotations

import hashlib
import logging
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from services.errors import ModelChecksumError, ModelError

log = logging.getLogger(__name__)

ROLES = ("detector", "pose2d", "lifter")


@dataclass(frozen=True)
class ModelManifest:
    name: str
    role: str
    family: str
    file: str
    sha256: str
    input_size: tuple[int, int]
    skeleton: str
    licence: str
    source: str
    obtain: str
    url: str = ""
    random_weights: bool = False
    root_relative: bool = True  # lifters: False for a checkpoint that predicts a global trajectory
    # download (``gaitway models fetch``, services/pose/fetch.py): ``url`` is the official file; when it is a
    # zip, ``archive_member`` is the one member installed as ``file``; ``export`` names the converter that
    # turns the download into ``file`` ("motionbert": export.motionbert with ``export_config``);
    # ``download_sha256`` pins the downloaded file itself (empty: not published; the computed digest is
    # printed and recorded)
    archive_member: str = ""
    download_sha256: str = ""
    export: str = ""
    export_config: str = ""


@dataclass(frozen=True)
class Preset:
    name: str
    detector: str
    pose2d: str
    lifter: str
    description: str


@dataclass(frozen=True)
class ResolvedModel:
    manifest: ModelManifest
    path: Path
    sha256: str
    verified: bool  # False when the manifest pins no checksum


@cache
def _catalogue() -> tuple[dict[str, ModelManifest], dict[str, Preset]]:
    raw = tomllib.loads(resources.files(__package__).joinpath("models.toml").read_text())
    models = {
        name: ModelManifest(name=name, **{**m, "input_size": tuple(m["input_size"])})
        for name, m in raw["models"].items()
    }
    presets = {name: Preset(name=name, **p) for name, p in raw["presets"].items()}
    for p in presets.values():
        for role in ROLES:
            assert models[getattr(p, role)].role == role, f"preset {p.name}: {role} has the wrong role"
    return models, presets


def manifests() -> dict[str, ModelManifest]:
    return dict(_catalogue()[0])


def presets() -> dict[str, Preset]:
    return dict(_catalogue()[1])


def get_preset(name: str) -> Preset:
    known = _catalogue()[1]
    if name not in known:
        raise ModelError(f"unknown preset {name!r}; choose one of {', '.join(sorted(known))}")
    return known[name]


def get_manifest(name: str) -> ModelManifest:
    known = _catalogue()[0]
    if name not in known:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(known))}")
    return known[name]


def sha256_of(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ModelStore:
    """Finds model files on a search path and verifies their checksums."""

    def __init__(self, search_path: list[Path]) -> None:
        self.search_path = list(search_path)

    def resolve(self, name: str) -> ResolvedModel:
        """Locate and verify ``name``. Raises ModelError (missing) or ModelChecksumError (corrupt)."""
        m = get_manifest(name)
        path = next((d / m.file for d in self.search_path if (d / m.file).is_file()), None)
        if path is None:
            where = ", ".join(str(d) for d in self.search_path) or "(empty search path)"
            raise ModelError(
                f"model {name!r} not found: looked for {m.file} in {where}. To obtain it: {m.obtain}. "
                "Set GAITWAY_MODELS_DIR or --models-dir to the folder that holds it."
            )
        digest = sha256_of(path)
        if m.sha256 and digest != m.sha256:
            raise ModelChecksumError(
                f"model {name!r} at {path} is corrupt or a different file: sha256 {digest[:12]}..., "
                f"expected {m.sha256[:12]}.... Replace it: {m.obtain}."
            )
        if not m.sha256:
            log.warning("model %s has no pinned checksum; loaded %s with sha256 %s", name, path, digest)
        if m.random_weights:
            log.warning(
                "model %s has RANDOM weights: its keypoints are meaningless (plumbing/speed only)", name
            )
        return ResolvedModel(manifest=m, path=path, sha256=digest, verified=bool(m.sha256))
