"""Validation table of the slow-motion estimator (:mod:`services.kinematics.timebase`).

Real clips are re-timed without metadata (:func:`services.pose.retime.retime`), analysed by the real pipeline
and turned into the Motion the kinematics service builds; RBDS001 motion capture is re-timed by scaling its
times. For each: the true factor, the estimate with its ~95 % interval, the cue that decided, every cue's
own estimate, and the cadence after correction. Results go to a JSON file and a Markdown table beside it.

    GAITWAY_SHARED_DIR=../shared python loadtests/eval_timebase.py --presets lightning thunder \\
        --out loadtests/results/timebase.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

SHARED = Path(os.environ.get("GAITWAY_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")).resolve()
TREADMILL = SHARED / "data/running-treadmill-phone/IMG_5396.mp4"
WALKING = SHARED / "data/walking-side-sports2d/demo.mp4"
RBDS = SHARED / "data/mocap-running-rbds"
#: clip -> (true cadence in steps/min or None for walking, runner height or None)
CLIPS: dict[str, tuple[Path, float | None, float | None]] = {
    "IMG_5396 (height 1.78 m)": (TREADMILL, 168.0, 1.78),
    "IMG_5396 (no height)": (TREADMILL, 168.0, None),
    "walking demo": (WALKING, None, None),
}
FACTORS = {
    "IMG_5396 (height 1.78 m)": (1, 3, 5, 8),
    "IMG_5396 (no height)": (1, 3, 8),
    "walking demo": (1, 2, 3),
}


def _row(clip: str, truth: float, cadence_true: float | None, est: Any, seconds: float) -> dict[str, Any]:
    def num(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else round(float(x), 3)

    return {
        "clip": clip,
        "true_factor": truth,
        "factor": num(est.factor),
        "low": num(est.low),
        "high": num(est.high),
        "cue": est.cue,
        "applies": est.applies,
        "running": est.running,
        "error_pct": None if est.factor is None else round(100 * (est.factor / truth - 1), 1),
        "cadence_spm": num(est.cadence_spm),
        "cadence_true_spm": cadence_true,
        "cues": {name: num(c.factor) for name, c in est.estimates.items()},
        "signal": est.signal,
        "seconds": round(seconds, 2),
        "notes": list(est.notes),
    }


def video_rows(presets: list[str]) -> list[dict[str, Any]]:
    from gateway.core import AnalysisSpec, Engine, RunnerInfo, kinematics_request
    from services.kinematics.schema import to_motion
    from services.kinematics.timebase import estimate_time_base
    from services.pose.pipeline import analyze_video
    from services.pose.retime import retime
    from services.settings import Settings

    models = os.pathsep.join(str(SHARED / d) for d in ("models", "reference"))
    engine = Engine(Settings(shared_dir=SHARED, models_dir=models, triton_url=""))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            for clip, (path, cadence, height) in CLIPS.items():
                for factor in FACTORS[clip]:
                    dst = Path(tmp) / f"{path.stem}_x{factor}.mp4"
                    retime(path, dst, factor)
                    spec = AnalysisSpec(preset=preset, runner=RunnerInfo(height_m=height))
                    with engine.backend(engine.models(spec), pose_workers=spec.pose_workers) as backend:
                        result = analyze_video(dst, backend, spec.options(engine.settings))
                    motion = to_motion(kinematics_request(result.sequence, spec.runner))
                    start = time.perf_counter()
                    est = estimate_time_base(motion)
                    row = _row(f"{clip}, {preset}", factor, cadence, est, time.perf_counter() - start)
                    rows.append(row)
                    print(_line(row), flush=True)
    return rows


def rbds_rows() -> list[dict[str, Any]]:
    from services.kinematics.mocap import rbds_motion, read_c3d
    from services.kinematics.timebase import estimate_time_base

    motion = rbds_motion(read_c3d(RBDS / "RBDS001runT35.c3d"), read_c3d(RBDS / "RBDS001static.c3d"))
    rows = []
    for factor in (1, 3, 5, 8):
        start = time.perf_counter()
        est = estimate_time_base(dataclasses.replace(motion, t=motion.t * factor))
        row = _row("RBDS001 mocap", factor, 171.0, est, time.perf_counter() - start)
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _line(row: dict[str, Any]) -> str:
    interval = f"{_fmt(row['low'])}-{_fmt(row['high'])}" if row["low"] is not None else "-"
    cues = " ".join(f"{k}={_fmt(v)}" for k, v in row["cues"].items())
    return (
        f"{row['clip']:36s} x{row['true_factor']:<3g} -> {_fmt(row['factor']):>5s} [{interval:>11s}] "
        f"{row['cue']:13s} cadence {_fmt(row['cadence_spm'], '.1f'):>6s}  ({cues})"
    )


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| clip | true factor | estimated factor | ~95 % interval | cue | applied | cadence after "
        "(steps/min) | ballistic | spring-mass | cadence prior |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        interval = f"{_fmt(r['low'])}-{_fmt(r['high'])}" if r["low"] is not None else "-"
        c = r["cues"]
        lines.append(
            f"| {r['clip']} | {r['true_factor']:g} | {_fmt(r['factor'])} | {interval} | {r['cue']} | "
            f"{'yes' if r['applies'] else 'no'} | {_fmt(r['cadence_spm'], '.1f')} | {_fmt(c['ballistic'])} | "
            f"{_fmt(c['spring_mass'])} | {_fmt(c['cadence_prior'])} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["lightning"])
    parser.add_argument("--out", default="loadtests/results/timebase.json")
    args = parser.parse_args()
    rows = rbds_rows() + video_rows(args.presets)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(rows))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
