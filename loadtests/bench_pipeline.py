"""End-to-end pipeline benchmark (``make bench``).

Each configuration runs in a fresh child process (so its peak RSS is its own) over the whole video and
reports per-stage milliseconds per frame, end-to-end frames per second, peak RSS and RSS sampled at 25 %,
50 % and 100 % of the frames (flat = memory does not grow with video length). Results go to a JSON file and
a Markdown table beside it.

    python loadtests/bench_pipeline.py --video CLIP.mp4 --out loadtests/results/pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIGS: dict[str, dict[str, Any]] = {
    "decode only": {"decode_only": True},
    "naive thunder": {"preset": "thunder", "det_interval": 1, "prefetch": 0, "retry": False, "workers": 1},
    "naive lightning": {
        "preset": "lightning",
        "det_interval": 1,
        "prefetch": 0,
        "retry": False,
        "workers": 1,
    },
    "thunder": {"preset": "thunder"},
    "thunder via Triton": {"preset": "thunder", "triton": True},
    "lightning": {"preset": "lightning"},
    "rtmpose-m (random weights)": {"preset": "rtmpose-random"},
}
TARGETS_FPS = {"thunder": 40.0, "lightning": 80.0}
#: the Triton path may take at most this much longer than the embedded one (same preset, same run)
TRITON_MAX_SLOWDOWN = 1.3
TARGET_RSS_MB = 500.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_config(video: str, cfg: dict[str, Any]) -> dict[str, Any]:
    from services.pose.backends import EmbeddedBackend, ModelSet
    from services.pose.ingest import VideoReader
    from services.pose.models import ModelStore, get_preset
    from services.pose.pipeline import AnalysisOptions
    from services.pose.tracking import TrackerParams
    from services.settings import Settings

    settings = Settings()
    if cfg.get("decode_only"):
        start = time.perf_counter()
        with VideoReader(video, max_long_side=settings.max_long_side_px) as reader:
            n = sum(1 for _ in reader)
        wall = time.perf_counter() - start
        return {"frames": n, "fps": n / wall, "ms_per_frame": {"decode": wall / n * 1000}}
    store = ModelStore(settings.model_search_path())
    workers = cfg.get("workers", settings.pose_workers)
    models = ModelSet.resolve(store, get_preset(cfg["preset"]))
    if cfg.get("triton"):
        return run_on_triton(video, models, cfg, settings)
    backend = EmbeddedBackend(models, threads=settings.ort_threads, pose_threads=1 if workers > 1 else None)
    tracker = TrackerParams(det_interval=cfg.get("det_interval", settings.det_interval_frames))
    options = AnalysisOptions(
        max_long_side=settings.max_long_side_px,
        tracker=tracker,
        prefetch=cfg.get("prefetch", 8),
        retry_poor_pose=cfg.get("retry", True),
        pose_workers=workers,
    )
    return timed_analysis(video, backend, options)


def timed_analysis(video: str, backend: Any, options: Any) -> dict[str, Any]:
    """Analyse ``video`` once: fps, per-stage times and RSS sampled at 25/50/100 % of the frames."""
    from services.pose.pipeline import analyze_video

    samples: dict[str, float] = {}

    def progress(done: int, info: Any) -> None:
        total = info.num_frames or 0
        for label, frac in (("25%", 0.25), ("50%", 0.5), ("100%", 1.0)):
            if total and done == max(1, round(total * frac)):
                samples[label] = round(_rss_mb(), 1)

    start = time.perf_counter()
    result = analyze_video(video, backend, options, progress=progress)
    wall = time.perf_counter() - start
    n = len(result.t)
    return {
        "frames": n,
        "frames_with_pose": result.frames_with_pose,
        "detector_runs": result.timings.detections,
        "fps": n / wall,
        "ms_per_frame": result.timings.ms_per_frame(),
        "rss_mb_at": samples,
    }


def run_on_triton(video: str, models: Any, cfg: dict[str, Any], settings: Any) -> dict[str, Any]:
    """The same analysis with every model served by a real local tritonserver (CPU python backend);
    the server starts before the clock and its memory is not in this process's RSS."""
    import tempfile

    from export.repository import generate
    from services.pose.pipeline import AnalysisOptions
    from services.pose.triton import TritonBackend, TritonServer

    with tempfile.TemporaryDirectory() as repo:
        generate(Path(repo), [models.detector, models.pose2d, models.lifter])
        with TritonServer(Path(repo)) as server:
            backend = TritonBackend.from_url(server.grpc_url, models)
            try:
                return timed_analysis(
                    video, backend, AnalysisOptions(max_long_side=settings.max_long_side_px)
                )
            finally:
                backend.close()


def child(video: str, name: str) -> None:
    out = run_config(video, CONFIGS[name])
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    sys.stdout.write(json.dumps(out) + "\n")


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Pipeline benchmark — {results['video']}",
        "",
        f"{results['machine']}; {results['date']}. Per-stage times are summed call durations per frame",
        "(ms); decoding has its own thread and 2D requests overlap, so they add up to more than 1000/fps.",
        "",
        "| configuration | fps (median) | runs | target | decode | detect | pose2d | clean | lift "
        "| detector runs | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["configs"].items():
        ms = r.get("ms_per_frame", {})
        target = TARGETS_FPS.get(name)
        lines.append(
            f"| {name} | {r['fps']:.1f} | {r['fps_runs']} | {'>= ' + str(target) if target else ''} | "
            + " | ".join(f"{ms.get(s, 0):.2f}" for s in ("decode", "detect", "pose2d", "clean", "lift"))
            + f" | {r.get('detector_runs', '')} | {r['peak_rss_mb']} |"
        )
    cfgs = results["configs"]
    if "thunder" in cfgs and "thunder via Triton" in cfgs:
        ratio = cfgs["thunder"]["fps"] / cfgs["thunder via Triton"]["fps"]
        lines += [
            "",
            f"Triton / embedded time ratio (thunder): {ratio:.2f} (target <= {TRITON_MAX_SLOWDOWN}).",
        ]
    lines += [
        "",
        f"Targets: peak RSS < {TARGET_RSS_MB:.0f} MB, flat in video length. "
        "'naive' = detector on every frame, batch 1, one 2D request at a time, no decode/inference overlap, "
        "no early re-detection.",
        "",
        "RSS sampled during the run (MB):",
    ]
    lines += [f"- {n}: {r['rss_mb_at']}" for n, r in results["configs"].items() if r.get("rss_mb_at")]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", choices=sorted(CONFIGS), action="append", help="run only these")
    ap.add_argument("--repeat", type=int, default=3, help="runs per configuration; the median run is kept")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.video, args.child)
        return
    results: dict[str, Any] = {
        "video": os.path.basename(args.video),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, onnxruntime CPU",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "configs": {},
    }
    for name in args.config or CONFIGS:
        runs = []
        for _ in range(args.repeat):
            proc = subprocess.run(
                [sys.executable, __file__, "--video", args.video, "--out", str(args.out), "--child", name],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                sys.stderr.write(f"{name}: failed\n{proc.stderr[-2000:]}\n")
                sys.exit(1)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        runs.sort(key=lambda r: r["fps"])
        r = dict(runs[len(runs) // 2])  # the median run
        r["fps_runs"] = [round(x["fps"], 1) for x in runs]
        results["configs"][name] = r
        sys.stdout.write(f"{name:<28} {r['fps']:7.1f} fps {r['fps_runs']}  peak RSS {r['peak_rss_mb']} MB\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))


if __name__ == "__main__":
    main()
