"""The pose stage's result on disk, so an analysis that stops after it (a dependency outage, a shutdown, a
replica that died) resumes from it instead of decoding and posing the video again.

:func:`save_result` writes ``pose.npz`` (the arrays: times, raw and cleaned 2D, gap and swap masks, 3D,
boxes, detector runs, contact-sheet thumbnails) and ``pose.json`` (video metadata, units, layout, timings,
warnings, the model files' checksums), each to a temporary name first and renamed, ``pose.json`` last: a
folder with ``pose.json`` holds a complete checkpoint. :func:`load_result` gives the
:class:`~services.pose.pipeline.AnalysisResult` back, or None when there is no complete checkpoint or it was
made with other model files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from services.files import atomic_path
from services.pose.backends import ModelSet
from services.pose.ingest import VideoInfo
from services.pose.pipeline import AnalysisOptions, AnalysisResult
from services.pose.skeletons import SKELETONS
from services.pose.stages import LiftedSequence, StageTimes

__all__ = ["load_result", "save_result"]

log = logging.getLogger("gaitway.checkpoint")

VERSION = 1
_ARRAYS = ("t", "kps2d_raw", "kps2d", "filled", "swapped", "swapped_joints", "kps3d")


def _fingerprint(models: ModelSet) -> dict[str, str]:
    return {role: getattr(models, role).sha256 for role in ("detector", "pose2d", "lifter")}


def _write(path: Path, write: Any) -> None:
    with atomic_path(path) as tmp:
        write(tmp)


def save_result(result: AnalysisResult, folder: Path) -> None:
    """Write ``result`` (its options excepted: the job's spec gives them back) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    seq = result.sequence
    arrays: dict[str, Any] = {name: getattr(seq, name) for name in _ARRAYS}
    arrays["boxes"] = result.boxes
    arrays["detected"] = result.detected
    for i, (_, image) in enumerate(result.thumbnails):
        arrays[f"thumb_{i}"] = image

    def npz(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)

    _write(folder / "pose.npz", npz)
    doc = {
        "version": VERSION,
        "models": _fingerprint(result.models),
        "info": dataclasses.asdict(result.info),
        "units3d": seq.units3d,
        "skeleton": seq.skeleton.name,
        "lifter": seq.lifter,
        "image_wh": list(seq.image_wh),
        "sequence_warnings": list(seq.warnings),
        "thumbnails": [index for index, _ in result.thumbnails],
        "timings": dataclasses.asdict(result.timings),
        "warnings": result.warnings,
    }
    _write(folder / "pose.json", lambda tmp: tmp.write_text(json.dumps(doc)))


def load_result(folder: Path, models: ModelSet, options: AnalysisOptions) -> AnalysisResult | None:
    """The checkpointed result in ``folder``; None when there is none, it is incomplete or damaged, or it
    came from other model files than ``models``."""
    try:
        doc = json.loads((folder / "pose.json").read_text())
        if doc.get("version") != VERSION or doc.get("models") != _fingerprint(models):
            return None
        with np.load(folder / "pose.npz") as data:
            arrays = {name: data[name] for name in data.files}
        sequence = LiftedSequence(
            **{name: arrays[name] for name in _ARRAYS},
            units3d=doc["units3d"],
            skeleton=SKELETONS[doc["skeleton"]],
            lifter=doc["lifter"],
            image_wh=(int(doc["image_wh"][0]), int(doc["image_wh"][1])),
            warnings=tuple(doc["sequence_warnings"]),
        )
        return AnalysisResult(
            info=VideoInfo(**doc["info"]),
            models=models,
            options=options,
            sequence=sequence,
            boxes=arrays["boxes"],
            detected=arrays["detected"],
            thumbnails=[(int(index), arrays[f"thumb_{i}"]) for i, index in enumerate(doc["thumbnails"])],
            timings=StageTimes(**doc["timings"]),
            warnings=list(doc["warnings"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:  # absent or damaged: the stage runs again
        if (folder / "pose.json").exists():
            log.warning("checkpoint unreadable, recomputing", extra={"error": str(exc)})
        return None
