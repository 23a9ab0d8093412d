"""Long analyses made from a short one, for load-testing the viewer (a 10-minute run at 60 fps is 36,000
frames): the frames, events, steps and series of a real analysis repeated end to end with the clock
continued, optionally with a little noise so the data does not compress unrealistically well."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

__all__ = ["repeat_analysis"]


def _jittered(rows: list[list[float | None]] | None, rng: np.random.Generator, sd: float, dims: int) -> Any:
    """Rows of ``[x, y, (z | score)]`` with noise on the first ``dims`` values (a score stays as it is)."""
    if rows is None or sd <= 0:
        return rows
    out = []
    for row in rows:
        noisy = [None if v is None else round(v + float(rng.normal(0, sd)), 4) for v in row[:dims]]
        out.append(noisy + list(row[dims:]))
    return out


def repeat_analysis(
    poses: dict[str, Any],
    metrics: dict[str, Any] | None,
    frames: int,
    *,
    noise_px: float = 0.0,
    noise_m: float = 0.0,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``poses``/``metrics`` documents lengthened to ``frames`` frames by repeating their frames.

    Repeat ``r`` is shifted by ``r`` periods in time (the period is the clip's duration plus one frame
    interval) and by ``r * n`` in frame index. ``noise_px``/``noise_m``: standard deviation of Gaussian
    noise added to the 2D (pixels) and 3D (model units) keypoints of the repeats, so the result compresses
    like a real long clip rather than like a copy.
    """
    src = poses["frames"]
    n = len(src)
    if n == 0 or frames <= 0:
        raise ValueError("need a non-empty analysis and frames > 0")
    t = np.array([f["t"] for f in src], dtype=np.float64)
    dt = float(np.median(np.diff(t))) if n > 1 else 1.0 / float(poses["video"].get("fps") or 30.0)
    period = float(t[-1] - t[0]) + dt
    rng = np.random.default_rng(seed)

    out_frames = []
    for k in range(frames):
        r, i = divmod(k, n)
        f = dict(src[i])
        f["index"] = k
        f["t"] = round(float(t[i] + r * period), 6)
        if r and noise_px > 0:
            f["keypoints2d"] = _jittered(f.get("keypoints2d"), rng, noise_px, 2)
        if r and noise_m > 0:
            f["keypoints3d"] = _jittered(f.get("keypoints3d"), rng, noise_m, 3)
        out_frames.append(f)
    long_poses = {k: v for k, v in poses.items() if k != "frames"}
    long_poses["video"] = {**poses["video"], "num_frames": frames, "duration_s": frames * dt}
    long_poses["summary"] = {**poses.get("summary", {}), "frames": frames}
    long_poses["frames"] = out_frames
    if metrics is None:
        return long_poses, None

    repeats = -(-frames // n)

    def shifted(e: dict[str, Any] | None, r: int) -> dict[str, Any] | None:
        if e is None:
            return None
        return {**e, "index": e["index"] + r * n, "t": e["t"] + r * period}

    def keep(e: dict[str, Any] | None) -> bool:
        return e is None or e["index"] < frames

    events, steps = [], []
    for r in range(repeats):
        events += [shifted(e, r) for e in metrics.get("events", [])]
        for s in metrics.get("steps", []):
            moved = copy.deepcopy(s)
            for key in ("strike", "toe_off", "next_strike"):
                moved[key] = shifted(s.get(key), r)
            if moved["strike"]["index"] < frames:
                for key in ("toe_off", "next_strike"):
                    if not keep(moved[key]):
                        moved[key] = None
                steps.append(moved)
    long_metrics = dict(metrics)
    long_metrics["events"] = [e for e in events if e is not None and e["index"] < frames]
    long_metrics["steps"] = steps
    mt = np.array(metrics.get("t") or t, dtype=np.float64)
    long_metrics["t"] = [round(float(mt[k % n] + (k // n) * period), 6) for k in range(frames)]
    long_metrics["series"] = {
        name: [values[k % n] for k in range(frames)] for name, values in (metrics.get("series") or {}).items()
    }
    return long_poses, long_metrics
