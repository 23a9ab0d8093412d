"""Capacity report of one node: jobs, live streams, Triton queueing and the replica counts an autoscaler
would pick (``make capacity``; about 4 minutes on a 2-core machine).

One local stack (:func:`bench_stream.fresh_stack`: the real ``tritonserver`` on the CPU repository, the
kinematics service and a gateway, each its own process) on free ports in a temporary folder, then:

1. **Jobs vs workers** — for each ``GAITWAY_WORKERS`` value the gateway is restarted with it and ``--users``
   locust ``MobileUser``s (``loadtests/locustfile.py``: upload the short outdoor clip, poll, fetch) run for
   ``--job-seconds``. Jobs/min counts the analyses finished inside the window; per-job times come from the
   gateway's own records (upload accepted -> done, and the queue wait), listed over its HTTP API.
2. **Live streams per node** — 1, 2, 3... concurrent StreamFrames calls at 30 fps (the treadmill clip,
   :func:`bench_stream.measure`): frames answered and p95 latency, twice each.
3. **Triton queue / compute vs load** — :func:`triton_load.sweep` on the stack's Triton (the 2D model, real
   crops, closed loop at 1, 2, 4, 8 requests in flight), with the HPA's replica counts for a target ratio.
4. **Autoscaler at given loads** — a live stream keeps one 2D request in flight and an analysis
   ``GAITWAY_POSE_WORKERS`` (2), so N streams and J running analyses put about N + 2J requests in flight;
   the replica counts follow from the measured ratio curve.
5. **GPU** — a PROJECTION from published numbers (no GPU here), marked as such.

Results: ``--out`` (JSON) and a Markdown report beside it.

    python loadtests/capacity.py --out loadtests/results/capacity.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "loadtests"))

import triton_load  # noqa: E402
from bench_stream import (  # noqa: E402
    TARGET_ANSWERED,
    TARGET_P95_MS,
    Target,
    at_rate,
    encode_frames,
    fresh_stack,
    measure,
    percentiles,
)

from gateway.stack import LocalStack  # noqa: E402
from services.settings import Settings  # noqa: E402

#: published latency the GPU projection starts from (batch 1, TensorRT FP16), and where it is published
GPU_SOURCE: dict[str, Any] = {
    "model": "RTMPose-m 256x192 (COCO-17)",
    "trt_fp16_ms": 2.29,
    "gpu": "NVIDIA GTX 1660 Ti",
    "ort_cpu_ms": 11.06,
    "cpu": "Intel i7-11700",
    "source": "open-mmlab/mmpose, projects/rtmpose/README.md, table 'Body 2d (17 Keypoints)' "
    "(TRT-FP16-Latency and ORT-Latency columns)",
}
#: the same architecture measured on this kind of machine (shared models README: onnxruntime, 2 threads, b1)
HERE_RTMPOSE_M_MS = 21.2
LIVE_FPS = 30.0


def log(line: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {line}", flush=True)


def _parse_time(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def job_records(stack: LocalStack, key: str) -> list[dict[str, Any]]:
    """Every analysis of ``key`` (the gateway's list endpoint, all pages)."""
    out: list[dict[str, Any]] = []
    cursor = None
    with httpx.Client(base_url=stack.gateway_url, headers={"x-api-key": key}, timeout=30) as client:
        while True:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            r = client.get("/v1/analyses", params=params)
            r.raise_for_status()
            page = r.json()
            out += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return out


def locust(stack: LocalStack, key: str, users: int, seconds: float, prefix: Path, *extra: str) -> None:
    """A headless locust run of ``loadtests/locustfile.py``; its final stats in ``<prefix>.json``."""
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO / "loadtests/locustfile.py"), "--headless"]
    cmd += ["--stack-dir", str(stack.root), "--api-key", key, "-u", str(users), "-r", str(users)]
    cmd += ["--run-time", f"{int(seconds)}s", "--stop-timeout", "5", "--json-file", str(prefix)]
    cmd += ["--only-summary", "--poll-interval", "0.5", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode not in (0, 1):  # 1: some request failed, reported below
        raise RuntimeError(f"locust exited with {done.returncode}: {done.stderr[-2000:]}")


def locust_stats(prefix: Path) -> dict[str, dict[str, Any]]:
    """name -> requests, failures, p50 and p95 (ms, from locust's response-time histogram)."""
    out = {}
    for entry in json.loads(Path(f"{prefix}.json").read_text()):
        times = sorted((float(ms), n) for ms, n in dict(entry["response_times"]).items())
        counts = np.cumsum([n for _, n in times])

        def pct(q: float, times: list[tuple[float, int]] = times, counts: Any = counts) -> float | None:
            if not times:
                return None
            return times[int(np.searchsorted(counts, q * counts[-1]))][0]

        out[entry["name"]] = {
            "requests": entry["num_requests"],
            "failures": entry["num_failures"],
            "p50_ms": pct(0.5),
            "p95_ms": pct(0.95),
        }
    return out


def jobs_vs_workers(
    stack: LocalStack,
    key: str,
    workers: list[int],
    *,
    users: int,
    seconds: float,
    work: Path,
    clip: str,
    preset: str,
) -> list[dict[str, Any]]:
    results = []
    for w in workers:
        log(f"jobs: gateway with {w} worker(s), {users} mobile users for {seconds:.0f} s")
        stack.stop("gateway")
        stack.extra_env["GAITWAY_WORKERS"] = str(w)
        stack.start("gateway", timeout_s=300)
        seen = {j["id"] for j in job_records(stack, key)}
        start = time.time()
        prefix = work / f"jobs-w{w}"
        locust(stack, key, users, seconds, prefix, "--clip", clip, "--preset", preset, "MobileUser")
        end = start + seconds
        _wait_idle(stack, key)
        jobs = [j for j in job_records(stack, key) if j["id"] not in seen]
        finished = [
            j
            for j in jobs
            if j["state"] == "done" and (t := _parse_time(j["finished_at"])) is not None and t <= end
        ]
        total = [_between(j, "created_at", "finished_at") for j in finished]
        wait = [_between(j, "created_at", "started_at") for j in finished]
        run = [_between(j, "started_at", "finished_at") for j in finished]
        stats = locust_stats(prefix)
        results.append(
            {
                "workers": w,
                "users": users,
                "seconds": seconds,
                "jobs_finished_in_window": len(finished),
                "jobs_failed": sum(j["state"] == "failed" for j in jobs),
                "jobs_per_min": round(len(finished) / seconds * 60, 2),
                "worker_s_per_job": round(w * seconds / len(finished), 2) if finished else None,
                "job_s": _seconds(total),
                "queue_wait_s": _seconds(wait),
                "run_s": _seconds(run),
                "client_job_ms": stats.get("analysis (HTTP)"),
                "status_poll_ms": stats.get("GET /v1/analyses/{id}"),
                "upload_ms": stats.get("POST /v1/analyses"),
                "busy_429": sum(v["requests"] for k, v in stats.items() if "429" in k),
                "request_failures": sum(v["failures"] for v in stats.values()),
            }
        )
    return results


def _between(job: dict[str, Any], first: str, then: str) -> float:
    return datetime.fromisoformat(job[then]).timestamp() - datetime.fromisoformat(job[first]).timestamp()


def _seconds(values: list[float]) -> dict[str, float | None]:
    """Percentiles of ``values`` (seconds)."""
    ms = percentiles([x * 1000 for x in values])
    return {k: (round(v / 1000, 2) if v is not None else None) for k, v in ms.items()}


def _wait_idle(stack: LocalStack, key: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(j["state"] in ("done", "failed") for j in job_records(stack, key)):
            return
        time.sleep(1.0)
    raise TimeoutError("the gateway's queue did not drain")


def live_streams(
    target: Target, preset: str, counts: list[int], video: str, repeat: int
) -> list[dict[str, Any]]:
    frames = at_rate(encode_frames(video), LIVE_FPS)
    out = []
    for n in counts:
        log(f"live: {n} concurrent stream(s) at {LIVE_FPS:.0f} fps, {repeat} runs")
        result = measure(target, frames, preset, streams=n, repeat=repeat)
        r = result["median_run"]
        out.append(
            {
                "streams": n,
                "answered": r["answered"],
                "frames_sent": r["frames_sent"],
                "latency_ms": r["latency_ms"],
                "queue_ms": r["queue_ms"],
                "session_timing_ms": r["session_timing_ms"],
                "triton": r.get("triton", {}),
                "meets_target": r["meets_target"],
                "runs": [
                    {"answered": x["answered"], "p95_ms": x["latency_ms"]["p95"], "errors": x["errors"]}
                    for x in result["runs"]
                ],
            }
        )
    return out


def given_loads(levels: list[dict[str, Any]], target: float) -> list[dict[str, Any]]:
    """Replica counts for mixes of live streams and running analyses (requests in flight = streams +
    pose_workers x analyses), read off the measured ratio curve."""
    pose_workers = Settings().pose_workers
    points = sorted(
        (lv["concurrency"], lv["queue_compute_ratio"])
        for lv in levels
        if lv["queue_compute_ratio"] is not None
    )
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    out = []
    for streams, jobs in ((1, 0), (2, 0), (4, 0), (0, 1), (0, 2), (2, 2), (4, 2), (8, 0), (8, 4)):
        inflight = streams + pose_workers * jobs
        ratio = round(float(np.interp(inflight, xs, ys)), 3) if xs and inflight <= xs[-1] else None
        out.append(
            {
                "live_streams": streams,
                "running_analyses": jobs,
                "requests_in_flight": inflight,
                "ratio_one_replica": ratio,
                "hpa_replicas_from_1": triton_load.hpa_replicas(ratio, target=target)
                if ratio is not None
                else None,
                "settled_replicas": triton_load.settled_replicas(levels, inflight, target=target),
            }
        )
    return out


def gpu_projection() -> dict[str, Any]:
    src = GPU_SOURCE
    crops_per_s = 1000 / float(src["trt_fp16_ms"])
    cpu_scale = HERE_RTMPOSE_M_MS / float(src["ort_cpu_ms"])
    return {
        "measured": False,
        "basis": src,
        "rtmpose_m_here_ms": HERE_RTMPOSE_M_MS,
        "cpu_here_vs_published": round(cpu_scale, 2),
        "crops_per_s_per_gpu_batch1": round(crops_per_s),
        "live_streams_30fps_per_gpu_2d_only": int(crops_per_s // LIVE_FPS),
        "jobs_per_min_per_gpu_2d_only_388_frames": round(crops_per_s / 388 * 60, 1),
    }


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# Capacity of one node",
        "",
        f"{doc['machine']}; {doc['date']}; preset `{doc['preset']}`; load average at the start "
        f"{doc['load_average_start']}, at the end {doc['load_average_end']}; the whole run took "
        f"{doc['seconds']:.0f} s. One local stack: the real tritonserver (python backend, CPU repository), "
        "the kinematics service and one gateway, all on the same 2 CPUs; the load generators run there too. "
        "The machine was shared with other work while this ran: treat the numbers as a lower bound "
        "and rerun on a quiet machine (`make capacity`).",
        "",
        "## Analyses (jobs) vs gateway workers",
        "",
        f"{doc['jobs'][0]['users']} locust mobile users (upload the {doc['clip']} clip, poll every 0.5 s, "
        "fetch metrics and steps, 0.5-1.5 s think time) for "
        f"{doc['jobs'][0]['seconds']:.0f} s per setting; per-job times from the gateway's records (upload "
        "accepted -> done; the client's view, upload start -> done seen by a poll, from locust's rounded "
        "histogram). 'worker s / job' = workers x window / jobs finished: what a job occupies a worker "
        "for, including the report files (plots, XLSX, viewer) its worker writes after the job is `done`, "
        "which 'run' (started -> done) leaves out.",
        "",
        "| GAITWAY_WORKERS | jobs/min | worker s / job | job p50 / p95 s | queue wait p50 / p95 s | "
        "run p50 / p95 s | "
        "client job p50 / p95 s | status poll p50 / p95 ms | 429 busy | failures |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for j in doc["jobs"]:
        c, poll = j["client_job_ms"] or {}, j["status_poll_ms"] or {}
        client = " / ".join(
            f"{v / 1000:.1f}" if v is not None else "-" for v in (c.get("p50_ms"), c.get("p95_ms"))
        )
        lines.append(
            f"| {j['workers']} | {j['jobs_per_min']} | {j['worker_s_per_job']} | "
            f"{j['job_s']['p50']} / {j['job_s']['p95']} | "
            f"{j['queue_wait_s']['p50']} / {j['queue_wait_s']['p95']} | {j['run_s']['p50']} / "
            f"{j['run_s']['p95']} | {client} | {poll.get('p50_ms')} / {poll.get('p95_ms')} | "
            f"{j['busy_429']} | {j['request_failures'] + j['jobs_failed']} |"
        )
    lines += [
        "",
        "## Live streams per node",
        "",
        f"Concurrent StreamFrames calls, 30 fps, JPEG 640 px; target >= {TARGET_ANSWERED:.0%} answered and "
        f"p95 < {TARGET_P95_MS:.0f} ms. Median of {doc['live_repeat']} runs (every run listed).",
        "",
        "| streams | answered | p50 / p95 ms | server queue p95 ms | 2D model ms / frame | met | "
        "runs (answered, p95 ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in doc["live"]:
        runs = "; ".join(f"{r['answered']:.0%}, {r['p95_ms']}" for r in s["runs"])
        lines.append(
            f"| {s['streams']} | {s['answered']:.0%} | {s['latency_ms']['p50']} / {s['latency_ms']['p95']} | "
            f"{s['queue_ms']['p95']} | {s['session_timing_ms']['pose2d_per_frame']} | "
            f"{'yes' if s['meets_target'] else 'no'} | {runs} |"
        )
    t = doc["triton"]
    lines += [
        "",
        f"## Triton queue / compute vs load ({t['model']}, {t['weights']})",
        "",
        f"Closed loop, {t['seconds_per_level']} s per level, real crops ({t['input']['dtype']} "
        f"{t['input']['shape']}); ratio = Triton's queue time / compute (infer) time over the level. "
        f"Autoscaler target ratio assumed: **{t['target_ratio']}** (an `autoscaling/v2` HPA on "
        "`nv_inference_queue_duration_us / nv_inference_compute_infer_duration_us`, 10 % tolerance): "
        "'HPA from 1' = ceil(1 x ratio / target) when one replica carries the load; 'settled' = the fewest "
        "replicas whose even share of the load keeps the ratio at or below the target ('-': beyond the "
        "measured curve).",
        "",
        "| requests in flight | requests/s | p50 / p95 ms | queue ms | compute ms | queue/compute | "
        "HPA from 1 | settled |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lv in t["levels"]:
        lines.append(
            f"| {lv['concurrency']} | {lv['throughput_rps']} | {lv['latency_ms']['p50']} / "
            f"{lv['latency_ms']['p95']} | {lv['server_queue_ms']} | {lv['server_compute_ms']} | "
            f"{lv['queue_compute_ratio']} | {lv['hpa_replicas_from_1']} | {lv['settled_replicas'] or '-'} |"
        )
    lines += [
        "",
        "## Replicas the autoscaler would pick for given loads",
        "",
        "A live stream keeps one 2D request in flight, an analysis `GAITWAY_POSE_WORKERS` (2); requests in "
        "flight are read against the curve above.",
        "",
        "| live streams | running analyses | requests in flight | ratio on 1 replica | HPA from 1 | "
        "settled |",
        "|---|---|---|---|---|---|",
    ]
    for g in doc["given_loads"]:
        lines.append(
            f"| {g['live_streams']} | {g['running_analyses']} | {g['requests_in_flight']} | "
            f"{g['ratio_one_replica'] if g['ratio_one_replica'] is not None else '-'} | "
            f"{g['hpa_replicas_from_1'] or '-'} | {g['settled_replicas'] or '-'} |"
        )
    lines += [
        "",
        "The curve is the non-batching MoveNet's: queueing starts when the requests in flight outnumber its "
        "two instances. For a model behind Triton's dynamic batcher (RTMPose, `model_repository/pose2d`) "
        "the ratio hardly moves at saturation, because every request of a batch is charged the whole "
        "batch's compute time (see `triton_load.md`, rtmpose-random: throughput flat from 1 to 8 in flight, "
        "p95 x8, ratio <= 0.36); scale such models on queue time or latency against a target as well.",
    ]
    g = doc["gpu_projection"]
    b = g["basis"]
    lines += [
        "",
        "## GPU — PROJECTION, not measured",
        "",
        "No GPU was available for this run; nothing in this section was measured here. Basis: "
        f"{b['model']}, TensorRT FP16, batch 1: {b['trt_fp16_ms']} ms on an {b['gpu']} (and onnxruntime "
        f"{b['ort_cpu_ms']} ms on an {b['cpu']}), published in {b['source']}. The same architecture takes "
        f"{g['rtmpose_m_here_ms']} ms on this machine's CPU (onnxruntime, 2 threads; shared models README), "
        f"{g['cpu_here_vs_published']}x the published CPU figure.",
        "",
        "| projected (2D model only, batch 1, one GTX 1660 Ti-class GPU) | value |",
        "|---|---|",
        f"| crops/s per GPU | ~{g['crops_per_s_per_gpu_batch1']} |",
        f"| 30 fps live streams per GPU | ~{g['live_streams_30fps_per_gpu_2d_only']} |",
        f"| analyses/min per GPU, 388-frame clip | ~{g['jobs_per_min_per_gpu_2d_only_388_frames']} |",
        "",
        "Left out, so these are ceilings for the GPU and not for the node: the detector (every 15 frames), "
        "the lifter, the gateway's decoding and cropping on CPU, the kinematics and the report files, which "
        "on this node cost more than the 2D model itself. Data-centre GPUs and Triton's dynamic batching "
        "(preferred 8/16 in `model_repository/pose2d`) should do better than batch 1 on a GTX 1660 Ti; to "
        "be replaced by measured numbers (TensorRT plans built on the node, `triton_load.py` against it).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    shared = Settings().shared_dir
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "loadtests/results/capacity.json")
    ap.add_argument("--preset", default="lightning")
    ap.add_argument("--workers", default="1,2", help="GAITWAY_WORKERS values to compare")
    ap.add_argument("--users", type=int, default=3, help="locust mobile users in the job runs")
    ap.add_argument("--job-seconds", type=float, default=60.0)
    ap.add_argument("--streams", default="1,2,3", help="concurrent live streams to try")
    ap.add_argument("--live-repeat", type=int, default=2)
    ap.add_argument("--concurrency", default="1,2,4,8", help="Triton sweep levels")
    ap.add_argument("--triton-seconds", type=float, default=5.0)
    ap.add_argument("--target-ratio", type=float, default=triton_load.TARGET_RATIO)
    ap.add_argument("--clip", default=str(shared / "data/running-side-outdoor/demo3.mp4"))
    ap.add_argument("--live-clip", default=str(shared / "data/running-treadmill-phone/IMG_5396.mp4"))
    args = ap.parse_args()

    began = time.monotonic()
    load_start = [round(x, 2) for x in os.getloadavg()]
    key = "gw_load_" + secrets.token_urlsafe(18)
    work = args.out.parent / ".capacity-work"
    work.mkdir(parents=True, exist_ok=True)
    log(f"starting a local stack (preset {args.preset})")
    env = {"GAITWAY_POLL_INTERVAL_S": "0.2", "GAITWAY_QUEUE_LIMIT": "50"}
    try:
        with fresh_stack(args.preset, env=env, keys={"loadtest": f"{key}:1000000:1000000"}) as (
            stack,
            target,
        ):
            jobs = jobs_vs_workers(
                stack,
                key,
                [int(w) for w in args.workers.split(",")],
                users=args.users,
                seconds=args.job_seconds,
                work=work,
                clip=args.clip,
                preset=args.preset,
            )
            live = live_streams(
                target,
                args.preset,
                [int(n) for n in args.streams.split(",")],
                args.live_clip,
                args.live_repeat,
            )
            log("Triton sweep")
            assert target.metrics_url is not None
            triton = triton_load.run(
                stack.triton_grpc,
                target.metrics_url,
                preset=args.preset,
                role="pose2d",
                levels=[int(c) for c in args.concurrency.split(",")],
                seconds=args.triton_seconds,
                video=args.live_clip,
                target=args.target_ratio,
            )
    finally:
        for f in work.glob("*"):
            f.unlink()
        work.rmdir()
    doc = {
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "preset": args.preset,
        "clip": Path(args.clip).name,
        "load_average_start": load_start,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.monotonic() - began, 1),
        "live_repeat": args.live_repeat,
        "jobs": jobs,
        "live": live,
        "triton": triton,
        "given_loads": given_loads(triton["levels"], args.target_ratio),
        "gpu_projection": gpu_projection(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(doc))
    log(f"wrote {args.out} and {args.out.with_suffix('.md')} in {doc['seconds']:.0f} s")


if __name__ == "__main__":
    main()
