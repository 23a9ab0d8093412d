"""Files written for an analysis: ``poses.json`` (schema below), ``keypoints2d.csv``, ``poses3d.csv``,
``contact_sheet.png`` and, on request, ``overlay.mp4``.

``poses.json`` (``schema: "gaitway.poses"``, ``schema_version: 1``)::

    video      {file, width, height, rotation_deg, fps_nominal, fps, capture_fps, time_scale, num_frames,
                duration_s, codec, analysed_width, analysed_height}       sizes in displayed (upright) pixels
    models     {detector|pose2d|lifter: {name, family, file, sha256, checksum_verified, random_weights,
                licence, source}}
    skeletons  {keypoints2d: {name, joints}, keypoints3d: {name, joints}}
    units      {keypoints2d: "px", keypoints3d: "m" | "m (average H36M subject scale)" | ...}
    processing {max_long_side, slowmo, height_m, tracker{...}, cleaning{...}}
    summary    {frames, frames_with_pose, detector_runs, swaps_repaired, keypoints_filled}
    warnings   [str]
    frames     [{index, t, box [x1,y1,x2,y2] | null, detected, swap_repaired,
                 keypoints2d_raw [[x, y, score] x K], keypoints2d [[x, y, score] x K], filled [bool x K],
                 keypoints3d [[x, y, z] x 17]}]

Coordinates: 2D in original-frame pixels (x right, y down, after rotation metadata is applied); 3D
root-relative (pelvis = 0), camera axes (x right, y down, z away from the camera). Missing values are null.
Backwards-incompatible changes bump ``schema_version``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from services.pose.ingest import VideoReader
from services.pose.pipeline import AnalysisResult
from services.pose.skeletons import H36M17, Skeleton

SCHEMA = "gaitway.poses"
SCHEMA_VERSION = 1
FloatArray = NDArray[np.float64]

LEFT_COLOUR = (255, 140, 0)  # RGB: orange for the left side
RIGHT_COLOUR = (0, 160, 255)  # blue for the right side
MID_COLOUR = (230, 230, 230)


def _num(x: float, ndigits: int = 3) -> float | None:
    return None if not math.isfinite(x) else round(float(x), ndigits)


def _rows(a: FloatArray, ndigits: int = 3) -> list[list[float | None]]:
    return [[_num(v, ndigits) for v in row] for row in a]


def _model_entry(result: AnalysisResult, role: str) -> dict[str, Any]:
    m = getattr(result.models, role)
    man = m.manifest
    return {
        "name": man.name,
        "family": man.family,
        "file": man.file,
        "sha256": m.sha256,
        "checksum_verified": m.verified,
        "random_weights": man.random_weights,
        "licence": man.licence,
        "source": man.source,
    }


def poses_document(result: AnalysisResult) -> dict[str, Any]:
    info, opts = result.info, result.options
    sk2, sk3 = result.skeleton2d, H36M17
    frames = []
    for i in range(len(result.t)):
        box = result.boxes[i]
        frames.append(
            {
                "index": i,
                "t": round(float(result.t[i]), 6),
                "box": None if not np.isfinite(box).all() else [round(float(v), 1) for v in box],
                "detected": bool(result.detected[i]),
                "swap_repaired": bool(result.swapped[i]),
                "keypoints2d_raw": _rows(result.kps2d_raw[i]),
                "keypoints2d": _rows(result.kps2d[i]),
                "filled": [bool(v) for v in result.filled[i]],
                "keypoints3d": _rows(result.kps3d[i], 4),
            }
        )
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "video": {
            "file": os.path.basename(info.path),
            "width": info.width,
            "height": info.height,
            "rotation_deg": info.rotation_deg,
            "fps_nominal": info.fps_nominal,
            "fps": info.fps,
            "capture_fps": info.capture_fps,
            "time_scale": info.time_scale,
            "num_frames": info.num_frames,
            "duration_s": info.duration_s,
            "codec": info.codec,
            "analysed_width": info.out_width,
            "analysed_height": info.out_height,
        },
        "models": {role: _model_entry(result, role) for role in ("detector", "pose2d", "lifter")},
        "skeletons": {
            "keypoints2d": {"name": sk2.name, "joints": list(sk2.joints)},
            "keypoints3d": {"name": sk3.name, "joints": list(sk3.joints)},
        },
        "units": {"keypoints2d": "px", "keypoints3d": result.units3d},
        "processing": {
            "max_long_side": opts.max_long_side,
            "slowmo": opts.slowmo,
            "height_m": opts.height_m,
            "tracker": dataclasses.asdict(opts.tracker),
            "cleaning": dataclasses.asdict(opts.cleaning),
        },
        "summary": {
            "frames": len(result.t),
            "frames_with_pose": result.frames_with_pose,
            "detector_runs": result.timings.detections,
            "swaps_repaired": int(result.swapped.sum()),
            "keypoints_filled": int(result.filled.sum()),
        },
        "warnings": list(result.warnings),
        "frames": frames,
    }


def _write_csv(
    path: Path, t: FloatArray, data: FloatArray, skeleton: Skeleton, axes: tuple[str, ...]
) -> None:
    header = ["frame", "t"] + [f"{j}_{a}" for j in skeleton.joints for a in axes]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(len(t)):
            vals = ["" if not math.isfinite(v) else f"{v:.4f}" for v in data[i].ravel()]
            w.writerow([i, f"{t[i]:.6f}", *vals])


def draw_skeleton(
    image: NDArray[np.uint8],
    kps: FloatArray,
    skeleton: Skeleton,
    *,
    min_score: float = 0.0,
    thickness: int = 2,
) -> NDArray[np.uint8]:
    """Draw one pose (K, 3) on a copy of an RGB image; left limbs orange, right blue."""
    out = image.copy()
    left = {i for i, n in enumerate(skeleton.joints) if n.startswith("left")}
    right = {i for i, n in enumerate(skeleton.joints) if n.startswith("right")}

    def ok(j: int) -> bool:
        return bool(np.isfinite(kps[j, :2]).all() and kps[j, 2] >= min_score)

    def colour(j: int) -> tuple[int, int, int]:
        return LEFT_COLOUR if j in left else RIGHT_COLOUR if j in right else MID_COLOUR

    for a, b in skeleton.edges:
        if ok(a) and ok(b):
            pa = (round(kps[a, 0]), round(kps[a, 1]))
            pb = (round(kps[b, 0]), round(kps[b, 1]))
            c = colour(b) if colour(a) == MID_COLOUR else colour(a)
            cv2.line(out, pa, pb, c, thickness, cv2.LINE_AA)
    for j in range(len(kps)):
        if ok(j):
            cv2.circle(out, (round(kps[j, 0]), round(kps[j, 1])), thickness + 1, colour(j), -1, cv2.LINE_AA)
    return out


def _side_view(pose3d: FloatArray, size: tuple[int, int]) -> NDArray[np.uint8]:
    """The 3D pose turned 90 degrees about the vertical (depth z to the right, y down) on a dark panel."""
    w, h = size
    panel = np.full((h, w, 3), 30, np.uint8)
    if not np.isfinite(pose3d).any():
        return panel
    zy = pose3d[:, [2, 1]]
    span = float(np.nanmax(np.abs(zy))) or 1.0
    s = 0.42 * h / span
    pts = np.column_stack([w / 2 + zy[:, 0] * s, h / 2 + zy[:, 1] * s, np.ones(len(zy))])
    cv2.putText(
        panel, "3D, turned 90 deg", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 200, 200), 1, cv2.LINE_AA
    )
    return draw_skeleton(panel, pts, H36M17)


def contact_sheet(result: AnalysisResult, *, columns: int = 4) -> NDArray[np.uint8]:
    """Thumbnails with the cleaned 2D skeleton and a side view of the 3D pose, as one RGB image."""
    tiles = []
    for index, thumb in result.thumbnails:
        r = thumb.shape[1] / result.info.width
        kps = result.kps2d[index].copy()
        kps[:, :2] *= r
        tile = draw_skeleton(thumb, kps, result.skeleton2d, min_score=0.0)
        label = f"#{index}  {result.t[index]:.2f}s"
        cv2.putText(tile, label, (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(tile, label, (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        side = _side_view(result.kps3d[index], (tile.shape[1] // 2, tile.shape[0]))
        tiles.append(np.hstack([tile, side]))
    if not tiles:
        return np.zeros((10, 10, 3), np.uint8)
    th, tw = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * th, columns * tw, 3), 255, np.uint8)
    for n, tile in enumerate(tiles):
        y, x = divmod(n, columns)
        sheet[y * th : y * th + tile.shape[0], x * tw : x * tw + tile.shape[1]] = tile
    return sheet


def write_overlay_video(result: AnalysisResult, path: Path) -> None:
    """Re-decode the video and write it with the cleaned 2D skeleton drawn on every frame (H.264)."""
    opts = result.options
    with VideoReader(result.info.path, max_long_side=opts.max_long_side, slowmo=opts.slowmo) as reader:
        info = reader.info
        r = info.out_width / info.width
        rate = round(info.fps_nominal * 1000)
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=Fraction(rate, 1000))
            stream.width, stream.height = (
                info.out_width - info.out_width % 2,
                info.out_height - info.out_height % 2,
            )
            stream.pix_fmt = "yuv420p"
            stream.options = {"preset": "veryfast", "crf": "23"}
            for frame in reader:
                if frame.index >= len(result.kps2d):
                    break
                kps = result.kps2d[frame.index].copy()
                kps[:, :2] *= r
                img = draw_skeleton(frame.image, kps, result.skeleton2d)[: stream.height, : stream.width]
                for packet in stream.encode(
                    av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                ):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)


def write_outputs(result: AnalysisResult, out_dir: Path, *, overlay: bool = False) -> dict[str, Path]:
    """Write every artifact into ``out_dir`` (created); returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "poses": out_dir / "poses.json",
        "keypoints2d": out_dir / "keypoints2d.csv",
        "poses3d": out_dir / "poses3d.csv",
        "contact_sheet": out_dir / "contact_sheet.png",
    }
    paths["poses"].write_text(json.dumps(poses_document(result), separators=(",", ":")))
    _write_csv(paths["keypoints2d"], result.t, result.kps2d, result.skeleton2d, ("x", "y", "score"))
    _write_csv(paths["poses3d"], result.t, result.kps3d, H36M17, ("x", "y", "z"))
    cv2.imwrite(str(paths["contact_sheet"]), contact_sheet(result)[..., ::-1])
    if overlay:
        paths["overlay"] = out_dir / "overlay.mp4"
        write_overlay_video(result, paths["overlay"])
    return paths
