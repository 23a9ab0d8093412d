"""Fixed costs benchmark (``make bench``): CLI start-up, report writing, and a job's time to ``done``.

* CLI start-up: wall time of ``gaitway --help``, ``gaitway analyze --help`` and ``gaitway models --help``
  (fresh processes, median of ``--runs``), beside the interpreter's own start (``python -c pass``), and the
  import time of ``gateway.cli`` with the slowest packages ``--help`` imports (``python -X importtime``);
* report: one analysis of ``--video`` (``--preset``), then the time of what a job writes before it is done
  (poses, CSVs, contact sheet, ``metrics.json``, ``steps.csv``) against each report writer (plots, XLSX,
  viewer page and video), median of ``--report-runs``;
* a job: the video through a real job manager (SQLite, embedded models): seconds from the upload to
  ``done`` and to the last report file.

    python loadtests/bench_startup.py --video CLIP.mp4 --out loadtests/results/startup.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: ``gaitway --help`` must answer within this (seconds, median)
TARGET_HELP_S = 0.3
HELP_COMMANDS = {
    "gaitway --help": ["--help"],
    "gaitway analyze --help": ["analyze", "--help"],
    "gaitway models --help": ["models", "--help"],
}


def _cli() -> list[str]:
    """The installed ``gaitway`` entry point beside this interpreter, else ``python -m gateway.cli``."""
    script = Path(sys.executable).with_name("gaitway")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gateway.cli"]


def _wall(cmd: list[str], runs: int) -> dict[str, Any]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3), "runs": runs}


def _importtime(args: list[str]) -> dict[str, int]:
    """Cumulative import microseconds of each module a ``python -X importtime`` run printed."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args], capture_output=True, text=True, check=False
    )
    found = re.findall(r"^import time:\s+\d+ \|\s+(\d+) \|(\s+)([\w.]+)$", proc.stderr, flags=re.MULTILINE)
    return {name: int(us) for us, _, name in found}


def startup(runs: int) -> dict[str, Any]:
    cli = _cli()
    out: dict[str, Any] = {"entry_point": " ".join(Path(c).name for c in cli)}
    out["python -c pass"] = _wall([sys.executable, "-c", "pass"], runs)
    for label, args in HELP_COMMANDS.items():
        out[label] = _wall([*cli, *args], runs)
    imports = [_importtime(["-c", "import gateway.cli"])["gateway.cli"] for _ in range(runs)]
    out["import gateway.cli ms"] = round(statistics.median(imports) / 1000, 1)
    help_imports = _importtime(["-m", "gateway.cli", "--help"])
    own = {n: us for n, us in help_imports.items() if n.split(".")[0] not in sys.stdlib_module_names}
    slowest = sorted(own.items(), key=lambda kv: -kv[1])[:8]
    out["--help slowest non-stdlib imports ms"] = {name: round(us / 1000, 1) for name, us in slowest}
    return out


def _timed(fn: Any, runs: int) -> dict[str, float]:
    """Median wall and CPU seconds (every thread of this process) of ``runs`` calls of ``fn``."""
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall_s": round(statistics.median(wall), 3), "cpu_s": round(statistics.median(cpu), 3)}


def _total(parts: dict[str, dict[str, float]]) -> dict[str, float]:
    return {k: round(sum(p[k] for p in parts.values()), 3) for k in ("wall_s", "cpu_s")}


def report(video: Path, preset: str, runs: int, work: Path) -> dict[str, Any]:
    from gateway.core import REPORT_WRITERS, AnalysisFolder, AnalysisSpec, Engine
    from services.kinematics.report import write_metrics
    from services.pose.outputs import write_outputs
    from services.settings import Settings

    engine = Engine(Settings(preset=preset))
    out = work / "analysis"
    t0 = time.perf_counter()
    outcome = engine.analyze(video, out, AnalysisSpec(), report_files=False)
    analysis_s = time.perf_counter() - t0
    if outcome.metrics is None:
        raise SystemExit(f"no running metrics for {video.name}: pick a clip with a stride")
    metrics = outcome.metrics
    scratch = work / "scratch"
    scratch.mkdir()
    result: dict[str, Any] = {
        "frames": len(outcome.result.t),
        "steps": len(metrics.steps),
        "analysis with the result files s": round(analysis_s, 2),
        "result files s": {
            "poses, CSVs, contact sheet": _timed(lambda: write_outputs(outcome.result, scratch), runs),
            "metrics.json, steps.csv": _timed(lambda: write_metrics(metrics, scratch), runs),
        },
    }
    folder = AnalysisFolder(out, video=video)
    result["read poses.json + metrics.json s"] = _timed(
        lambda: (AnalysisFolder(out, video=video).poses, AnalysisFolder(out, video=video).metrics), runs
    )
    result["report files s"] = {
        "+".join(w.names): _timed(lambda w=w: w.write(folder), runs) for w in REPORT_WRITERS
    }
    result["result files total"] = _total(result["result files s"])
    result["report total"] = _total(result["report files s"])
    return result


def job(video: Path, preset: str, work: Path) -> dict[str, Any]:
    from gateway.core import Engine
    from gateway.jobs import REPORT_PENDING, JobManager
    from gateway.records import JobState
    from gateway.store import SqlStore
    from services.settings import Settings

    settings = Settings(
        preset=preset, data_dir=work / "var", poll_interval_s=0.02, require_api_key=False, workers=1
    )
    store = SqlStore(settings.db_url)
    manager = JobManager(settings, store, Engine(settings))

    async def run() -> dict[str, Any]:
        await manager.start()
        try:
            settings.uploads_dir.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            created, _ = store.create_job(
                owner="bench", spec={}, upload_sha256="0" * 64, upload_bytes=1, filename=video.name
            )
            shutil.copy(video, manager.upload_path(created.id))
            folder = manager.job_dir(created.id)
            done_s = None
            while True:
                state = store.get(created.id).state
                if done_s is None and state is JobState.DONE:
                    done_s = time.perf_counter() - t0
                if state is JobState.FAILED:
                    raise SystemExit(f"the job failed: {store.get(created.id).error_message}")
                if done_s is not None and not (folder / REPORT_PENDING).exists():
                    break
                await asyncio.sleep(0.02)
            all_s = time.perf_counter() - t0
            files = sorted(p.name for p in folder.iterdir())
        finally:
            await manager.stop()
            store.close()
        return {
            "upload to done s": round(done_s, 2),
            "upload to every artifact s": round(all_s, 2),
            "report after done s": round(all_s - done_s, 2),
            "files": files,
        }

    return asyncio.run(run())


def markdown(r: dict[str, Any]) -> str:
    s = r["startup"]
    help_s = s["gaitway --help"]["median_s"]
    lines = [
        f"# Fixed costs — CLI start-up, report, time to done ({r['video']}, preset {r['preset']})",
        "",
        f"{r['machine']}; load average {r['load_average']} while measuring; {r['date']}.",
        "",
        "## CLI start-up (fresh processes)",
        "",
        "| command | median s | min s | runs |",
        "|---|---|---|---|",
    ]
    for label in ["python -c pass", *HELP_COMMANDS]:
        m = s[label]
        lines.append(f"| `{label}` | {m['median_s']} | {m['min_s']} | {m['runs']} |")
    verdict = "met" if help_s < TARGET_HELP_S else "NOT met"
    lines += [
        "",
        f"Target: `gaitway --help` < {TARGET_HELP_S} s: {verdict} ({help_s} s, entry point "
        f"`{s['entry_point']}`). `import gateway.cli`: {s['import gateway.cli ms']} ms "
        "(python -X importtime, median).",
        "",
        "Slowest modules outside the standard library imported by `gaitway --help` (cumulative ms, nested "
        "imports included, one run; `__editable__...` is the finder of an editable install, absent from a "
        "wheel install): "
        + ", ".join(f"{k} {v}" for k, v in s["--help slowest non-stdlib imports ms"].items())
        + ".",
        "",
        "## Report files (one analysis, each writer timed alone, median)",
        "",
        f"{r['report']['frames']} frames, {r['report']['steps']} steps; analysis with its result files "
        f"{r['report']['analysis with the result files s']} s.",
        "",
        "| files | written | wall s | CPU s |",
        "|---|---|---|---|",
    ]
    rep = r["report"]
    for name, t in rep["result files s"].items():
        lines.append(f"| {name} | before `done` | {t['wall_s']} | {t['cpu_s']} |")
    t = rep["read poses.json + metrics.json s"]
    lines.append(
        f"| (reading poses.json + metrics.json back) | after `done` | {t['wall_s']} | {t['cpu_s']} |"
    )
    for name, t in rep["report files s"].items():
        lines.append(f"| {name} | after `done` | {t['wall_s']} | {t['cpu_s']} |")
    lines += [
        "",
        f"Result files (the metrics' path): {rep['result files total']['wall_s']} s wall; report: "
        f"{rep['report total']['wall_s']} s wall, {rep['report total']['cpu_s']} s CPU (the video proxy's "
        "x264 uses several threads).",
        "",
        "## A job through the job manager (SQLite, embedded models, one worker)",
        "",
        f"- upload to `done`: {r['job']['upload to done s']} s",
        f"- upload to every artifact: {r['job']['upload to every artifact s']} s: the report follows `done` "
        f"by {r['job']['report after done s']} s, which a report written before `done` would add to it",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, required=True)
    ap.add_argument("--preset", default="lightning")
    ap.add_argument("--runs", type=int, default=9, help="start-up runs per command")
    ap.add_argument("--report-runs", type=int, default=3, help="runs per report writer")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    results: dict[str, Any] = {
        "video": args.video.name,
        "preset": args.preset,
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    load = []
    results["startup"] = startup(args.runs)
    load.append(os.getloadavg()[0])
    with tempfile.TemporaryDirectory() as tmp:
        results["report"] = report(args.video, args.preset, args.report_runs, Path(tmp))
    load.append(os.getloadavg()[0])
    with tempfile.TemporaryDirectory() as tmp:
        results["job"] = job(args.video, args.preset, Path(tmp))
    load.append(os.getloadavg()[0])
    results["load_average"] = [round(x, 1) for x in load]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    sys.stdout.write(markdown(results))


if __name__ == "__main__":
    main()
