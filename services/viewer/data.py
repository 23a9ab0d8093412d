"""The data a viewer page embeds: ``poses.json`` and ``metrics.json`` made compact for the browser.

:func:`pack` returns a small *header* (JSON, read first) and one *blob*: zlib-compressed bytes holding a
JSON document (skeletons, steps, events, summaries, definitions, notes) followed by the per-frame arrays:

========== ========= ====================== ============================================================
array      encoding  channels               values
========== ========= ====================== ============================================================
t          int32     1                      frame time in microseconds (real seconds x 1e6), order 1
kp2d       int16     2 x K (x0, y0, x1 ...) 2D keypoints in original pixels x ``scale`` (1/4 px), order 2
conf2d     uint8     K                      2D score in tenths (0-10); 11 = the point was filled in
kp3d       int16     3 x 17                 3D H36M joints, camera axes, x ``scale`` (1 mm), order 2
frameflags uint8     1                      bit 0: the detector ran, bit 1: a left/right swap repaired
series     int16     S                      angle series (``metrics.series``), x ``scales[s]``, order 2
========== ========= ====================== ============================================================

Arrays are channel-major (all frames of channel 0, then channel 1 ...). ``int16`` arrays are quantised
(missing = ``-32768``), differenced ``order`` times along time (wrapping modulo 2**16), zigzag-mapped to
unsigned (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...) and stored as two byte planes (all low bytes, then all high
bytes): smooth trajectories become runs of small numbers that deflate well, about 100 bytes a frame. The
``int32`` times are differenced once and stored as they are. The page decompresses the blob with the
browser's ``DecompressionStream("deflate")`` (zlib format), so nothing is fetched.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.pose.skeletons import SKELETONS

__all__ = ["FILLED", "FORMAT_VERSION", "MISSING", "encode_int16", "pack", "quantise", "unpack"]

FORMAT_VERSION = 1
#: int16 value standing for a missing number
MISSING = -32768
#: ``conf2d`` value of a keypoint that was filled in (scores are 0-10 tenths)
FILLED = 11
#: largest magnitude a quantised value may take (the rest of int16 is headroom)
_INT16_LIMIT = 32000
#: finest resolution kept per array: 1/4 px in 2D, 1 mm in 3D (metres), 0.1 deg in the series
_MAX_SCALE = {"kp2d": 4.0, "kp3d": 1e3, "series": 10.0}
#: labels of the angle sources (metrics.json ``series_sources`` / step ``sources``)
SOURCE_LABELS = {
    "2d": "2D sagittal",
    "2d_corrected": "2D, view corrected",
    "3d": "3D (lifted)",
    "mocap": "motion capture",
}
FloatArray = NDArray[np.float64]


def quantise(values: FloatArray, max_scale: float) -> tuple[NDArray[np.int16], float]:
    """``values`` (any shape, NaN = missing) as int16 with ``MISSING`` for NaN, and the scale used: the
    finest of ``max_scale`` and the scale that keeps the largest magnitude within int16."""
    finite = np.isfinite(values)
    peak = float(np.abs(values[finite]).max()) if finite.any() else 0.0
    scale = max_scale if peak * max_scale <= _INT16_LIMIT else _INT16_LIMIT / peak
    q = np.full(values.shape, MISSING, dtype=np.int16)
    q[finite] = np.rint(values[finite] * scale).astype(np.int16)
    return q, scale


def _delta(q: NDArray[np.int16]) -> NDArray[np.int16]:
    """Per-row differences along the last axis, wrapping modulo 2**16 (first value kept)."""
    wide = q.astype(np.int32)
    d = np.diff(wide, axis=-1, prepend=0)
    return d.astype(np.int16)  # wraps: the page undoes it with a wrapping running sum


def encode_int16(q: NDArray[np.int16], order: int) -> NDArray[np.uint8]:
    """``q`` (channels, frames) differenced ``order`` times, zigzag-mapped and split in byte planes."""
    d = q
    for _ in range(order):
        d = _delta(d)
    wide = d.astype(np.int32).ravel()
    zig = ((wide << 1) ^ (wide >> 31)).astype(np.uint16)  # 0, -1, 1, -2 ... -> 0, 1, 2, 3 ...
    return np.concatenate([(zig & 0xFF).astype(np.uint8), (zig >> 8).astype(np.uint8)])


def _floats(rows: list[Any], width: int) -> FloatArray:
    """A list of per-frame rows of numbers (None = missing) as a float array, NaN for None."""
    out = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        if row is None:
            continue
        for j, v in enumerate(row[:width]):
            if v is not None:
                out[i, j] = v
    return out


def _points(frames: list[dict[str, Any]], key: str, joints: int, dims: int) -> FloatArray:
    """``frames[i][key]`` ((joints, >= dims) nested lists) as a (N, joints, dims) float array."""
    out = np.full((len(frames), joints, dims), np.nan)
    for i, f in enumerate(frames):
        pts = f.get(key)
        if not pts:
            continue
        out[i, : len(pts)] = _floats(pts, dims)[:joints]
    return out


def _round(x: Any, digits: int = 4) -> Any:
    """Floats rounded to ``digits`` significant digits inside nested lists/dicts (NaN/inf -> None)."""
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return float(f"{x:.{digits}g}")
    if isinstance(x, dict):
        return {k: _round(v, digits) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_round(v, digits) for v in x]
    return x


def _finite(x: Any) -> Any:
    """Non-finite floats replaced by None inside nested lists/dicts (JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def _skeleton(doc: dict[str, Any], key: str, fallback: str) -> dict[str, Any]:
    entry = doc.get("skeletons", {}).get(key) or {}
    name = entry.get("name", fallback)
    known = SKELETONS.get(name) or SKELETONS[fallback]
    joints = list(entry.get("joints") or known.joints)
    edges = [list(e) for e in known.edges if max(e) < len(joints)] if name in SKELETONS else []
    return {"name": name, "joints": joints, "edges": edges}


def _times(poses: dict[str, Any], n: int) -> FloatArray:
    fps = float(poses.get("video", {}).get("fps") or 30.0)
    t = np.array(
        [f.get("t") if f.get("t") is not None else np.nan for f in poses["frames"]], dtype=np.float64
    )
    bad = ~np.isfinite(t)
    if bad.any():  # never expected; keep the clock monotonic anyway
        t[bad] = np.arange(n)[bad] / fps
    return t


class _Blob:
    """Arrays laid out one after the other (each 4-byte aligned) behind the JSON document."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.arrays: dict[str, dict[str, Any]] = {}

    def add(self, name: str, data: NDArray[Any], **meta: Any) -> None:
        raw = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
        pad = (-self.size) % 4
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        self.arrays[name] = {
            "dtype": "int16" if meta.pop("int16", False) else data.dtype.name,
            "offset": self.size,
            "bytes": len(raw),
            **meta,
        }
        self.parts.append(raw)
        self.size += len(raw)


def _metrics_doc(metrics: dict[str, Any], n: int) -> tuple[dict[str, Any], list[str], FloatArray]:
    """The metrics part of the page's document, the series names and their (S, N) values."""
    series = metrics.get("series") or {}
    names = [k for k, v in series.items() if isinstance(v, list) and len(v) == n]
    values = np.full((len(names), n), np.nan)
    for r, name in enumerate(names):
        values[r] = [np.nan if v is None else v for v in series[name]]
    units = metrics.get("units") or {}
    sources = metrics.get("series_sources") or {}
    sides = {"left": 0, "right": 1}
    kinds = {"strike": 0, "toe_off": 1}
    events = [
        [sides.get(e.get("side"), 0), kinds.get(e.get("kind"), 0), int(e["index"])]
        for e in metrics.get("events") or []
        if isinstance(e.get("index"), int)
    ]

    def event_index(e: dict[str, Any] | None) -> int | None:
        return None if not e else e.get("index")

    steps = []
    for s in metrics.get("steps") or []:
        steps.append(
            {
                "side": s.get("side"),
                "strike": event_index(s.get("strike")),
                "toe_off": event_index(s.get("toe_off")),
                "next_strike": event_index(s.get("next_strike")),
                "metrics": {k: _round(v) for k, v in (s.get("metrics") or {}).items() if v is not None},
                "flags": s.get("flags") or [],
                "excluded": s.get("excluded") or {},
                "sources": s.get("sources") or {},
                "errors_deg": _round(s.get("errors_deg") or {}, 2),
                "view": s.get("view") or "",
                "yaw_deg": _round(s.get("yaw_deg"), 3),
                "foot_strike": s.get("foot_strike"),
            }
        )
    time_base = metrics.get("time_base") or {}
    doc = {
        "series": [{"key": k, "unit": units.get(k, ""), "source": sources.get(k, "")} for k in names],
        "events": events,
        "steps": steps,
        "summary": _round(metrics.get("summary") or {}),
        "summary_by_side": _round(metrics.get("summary_by_side") or {}),
        "asymmetry_pct": _round(metrics.get("asymmetry_pct") or {}),
        "units": units,
        "definitions": _round(metrics.get("definitions") or {}),
        "flags": list(metrics.get("flags") or []),
        "view": _round(metrics.get("view") or {}),
        "foot_strike_pattern": metrics.get("foot_strike_pattern") or {},
        "time_base_notes": list(time_base.get("notes") or []),
    }
    return doc, names, values


def pack(poses: dict[str, Any], metrics: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The page's header (JSON-able) and its blob, zlib-compressed and base64-encoded."""
    frames = poses.get("frames") or []
    n = len(frames)
    video = dict(poses.get("video") or {})
    sk2 = _skeleton(poses, "keypoints2d", "coco17")
    sk3 = _skeleton(poses, "keypoints3d", "h36m17")
    k2, k3 = len(sk2["joints"]), len(sk3["joints"])

    blob = _Blob()
    t = _times(poses, n)
    t_us = np.rint(t * 1e6).astype(np.int64)
    blob.add("t", np.diff(t_us, prepend=0).astype(np.int32), channels=1, scale=1e6, order=1)

    kp2 = _points(frames, "keypoints2d", k2, 3)
    q2, s2 = quantise(kp2[:, :, :2].reshape(n, 2 * k2).T, _MAX_SCALE["kp2d"])
    blob.add("kp2d", encode_int16(q2, 2), int16=True, channels=2 * k2, scale=s2, order=2)
    score = np.nan_to_num(np.clip(kp2[:, :, 2], 0.0, 1.0), nan=0.0)
    conf = np.rint(score * 10).astype(np.uint8)
    for i, f in enumerate(frames):
        filled = f.get("filled")
        if filled:
            conf[i, : len(filled[:k2])][np.asarray(filled[:k2], dtype=bool)] = FILLED
    blob.add("conf2d", np.ascontiguousarray(conf.T), channels=k2)

    kp3 = _points(frames, "keypoints3d", k3, 3)
    q3, s3 = quantise(kp3.reshape(n, 3 * k3).T, _MAX_SCALE["kp3d"])
    blob.add("kp3d", encode_int16(q3, 2), int16=True, channels=3 * k3, scale=s3, order=2)

    flags = np.array(
        [(1 if f.get("detected") else 0) | (2 if f.get("swap_repaired") else 0) for f in frames],
        dtype=np.uint8,
    )
    blob.add("frameflags", flags, channels=1)

    metrics_doc: dict[str, Any] | None = None
    if metrics is not None:
        metrics_doc, names, values = _metrics_doc(metrics, n)
        if names:
            rows = [quantise(values[r], _MAX_SCALE["series"]) for r in range(len(names))]
            q = np.stack([r[0] for r in rows])
            scales = [r[1] for r in rows]
            blob.add("series", encode_int16(q, 2), int16=True, channels=len(names), scales=scales, order=2)

    models = {role: (m or {}).get("name", "") for role, m in (poses.get("models") or {}).items()}
    document = {
        "video": video,
        "skeleton2d": sk2,
        "skeleton3d": sk3,
        "units3d": (poses.get("units") or {}).get("keypoints3d", ""),
        "summary": poses.get("summary") or {},
        "warnings": list(poses.get("warnings") or []),
        "models": models,
        "source_labels": SOURCE_LABELS,
        "metrics": metrics_doc,
    }
    doc_bytes = json.dumps(_finite(document), separators=(",", ":"), allow_nan=False).encode()
    # the document goes first; arrays follow at 4-byte aligned offsets
    head = len(doc_bytes) + (-len(doc_bytes)) % 4
    payload = doc_bytes + b" " * (head - len(doc_bytes)) + b"".join(blob.parts)
    for meta in blob.arrays.values():
        meta["offset"] += head
    header = {
        "format": FORMAT_VERSION,
        "frames": n,
        "document_bytes": len(doc_bytes),
        "arrays": blob.arrays,
        "raw_bytes": len(payload),
    }
    return header, base64.b64encode(zlib.compress(payload, 9)).decode("ascii")


def unpack(header: dict[str, Any], blob: str) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """The inverse of :func:`pack`, as the page does it: the document and the arrays, each (channels, N)
    (float64 with NaN for missing; uint8 arrays as they are)."""
    raw = zlib.decompress(base64.b64decode(blob))
    n = header["frames"]
    document = json.loads(raw[: header["document_bytes"]])
    arrays: dict[str, NDArray[Any]] = {}
    for name, meta in header["arrays"].items():
        chunk = raw[meta["offset"] : meta["offset"] + meta["bytes"]]
        if meta["dtype"] == "uint8":
            arrays[name] = np.frombuffer(chunk, np.uint8).reshape(meta["channels"], n)
            continue
        if meta["dtype"] == "int32":
            d = np.frombuffer(chunk, "<i4").astype(np.int64)
            arrays[name] = (np.cumsum(d) if meta.get("order") else d).reshape(1, n) / meta["scale"]
            continue
        half = len(chunk) // 2
        planes = np.frombuffer(chunk, np.uint8).astype(np.int32)
        zig = planes[:half] | (planes[half:] << 8)
        q = ((zig >> 1) ^ -(zig & 1)).reshape(meta["channels"], n)
        for _ in range(meta.get("order", 0)):
            q = np.cumsum(q, axis=1)
        q = ((q + 32768) % 65536) - 32768  # wrap to int16
        scales = np.asarray(meta.get("scales") or [meta["scale"]] * meta["channels"], dtype=np.float64)
        values = q / scales[:, None]
        values[q == MISSING] = np.nan
        arrays[name] = values
    return document, arrays
