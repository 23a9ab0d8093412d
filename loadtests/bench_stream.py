"""Live-streaming benchmark of the gRPC ``StreamFrames`` call (``make bench``).

Where the gateway runs:

* default: the gateway's gRPC server in this process with the embedded models and no API key;
* ``--triton``: a fresh local stack (:class:`gateway.stack.LocalStack`: the real ``tritonserver`` on the CPU
  repository, the kinematics service and a gateway, each its own process) on free ports in a temporary
  folder, stopped at the end; ``--model-threads N`` regenerates its repository with N onnxruntime threads
  per model instance before Triton starts (the stack's own build uses the repository default);
* ``--stack DIR``: a stack that is already running (``make up``), found through ``DIR/stack.json`` and
  ``DIR/api-key``.

The client acts as a phone app: every frame of the clip is JPEG-encoded beforehand at long side 640, kept
at the rate of ``--fps`` (:func:`at_rate`; all of them without ``--fps``), and sent at its real time (the
client sleeps until each frame's timestamp). Per analysed frame it measures the latency from handing the
frame to gRPC to receiving its keypoints, and it counts the frames dropped under backpressure and the
steps received. The server's answers add its own view: frame in -> keypoints
out, decode + inference of the frame, the time the frame waited in the call's queue (the difference), and
the session summary's mean detector call, 2D model time per frame and window analysis time. With
``--triton`` the Triton metrics endpoint is read before and after each run: requests, mean queue and
compute time per request of every model.

``--loops N`` plays the clip N times in a row (so that a stream outlasts the server's analysis window);
``--streams K`` runs K streams at once (each its own call); ``--repeat N`` measures N runs one after the
other after a short warm-up stream (not measured) and reports each run and the median over the runs, since
this machine is shared. Results are merged into ``--out`` under the set-up's name
(``embedded-lightning-60fps``, ``triton-thunder-30fps-x2``...; the other set-ups' entries are kept) with a
Markdown table beside it.

    python loadtests/bench_stream.py --out loadtests/results/stream.json --preset lightning
    python loadtests/bench_stream.py --triton --preset thunder --fps 30 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import grpc
import httpx
import numpy as np
from google.protobuf.json_format import MessageToDict

from gateway.proto.gaitway.v1 import gaitway_pb2 as pb
from gateway.proto.gaitway.v1 import gaitway_pb2_grpc as pb_grpc
from gateway.server import GrpcGatewayThread
from gateway.stack import LocalStack, Ports, StackState
from services.pose.ingest import VideoReader
from services.settings import Settings

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "loadtests"))

from faults import metric_sum  # noqa: E402

TARGET_P95_MS = 100.0
TARGET_ANSWERED = 0.90
LONG_SIDE = 640
JPEG_QUALITY = 80
WARMUP_FRAMES = 30
#: Triton's per-model counters read around each run (cumulative microseconds / counts)
TRITON_COUNTERS = (
    "nv_inference_request_success",
    "nv_inference_exec_count",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_output_duration_us",
)

Frames = list[tuple[float, bytes]]


# --------------------------------------------------------------------------------------------------------
# frames


def encode_frames(video: str) -> Frames:
    """(t in seconds, JPEG bytes) of every frame, upright, long side 640."""
    frames = []
    with VideoReader(video, max_long_side=LONG_SIDE) as reader:
        for frame in reader:
            ok, jpeg = cv2.imencode(
                ".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            frames.append((frame.t, jpeg.tobytes()))
    return frames


def at_rate(frames: Frames, fps: float | None) -> Frames:
    """The frames a camera running at ``fps`` would have delivered: on a clock ticking every ``1/fps`` from
    the first frame, the first frame at each tick (up to half a frame of the clip early, for timestamp
    jitter)."""
    if not fps or len(frames) < 2:
        return list(frames)
    period = 1.0 / fps
    early = float(np.median(np.diff([t for t, _ in frames]))) / 2
    kept: Frames = []
    due = frames[0][0]
    for t, jpeg in frames:
        if t >= due - early:
            kept.append((t, jpeg))
            due += period
            while due - early <= t:  # the clip skipped ticks
                due += period
    return kept


def looped(frames: Frames, loops: int) -> Frames:
    """``frames`` played ``loops`` times in a row, the times of each repeat following on from the last
    frame of the one before (a fixed-camera clip, such as the treadmill one, loops almost seamlessly)."""
    if loops <= 1 or len(frames) < 2:
        return list(frames)
    step = frames[-1][0] - frames[-2][0]
    length = frames[-1][0] - frames[0][0] + step
    return [(t + k * length, jpeg) for k in range(loops) for t, jpeg in frames]


# --------------------------------------------------------------------------------------------------------
# one stream


@dataclass
class StreamRun:
    """What one StreamFrames call sent and got back."""

    sent: dict[int, float]  # seq -> perf_counter when handed to gRPC
    received: list[tuple[float, Any]]  # (perf_counter, FrameOut)
    error: str | None = None


def stream(
    stub: Any, frames: Frames, preset: str, *, metadata: list[tuple[str, str]] | None = None
) -> StreamRun:
    """Send ``frames`` in real time on one StreamFrames call and collect every answer."""
    run = StreamRun(sent={}, received=[])

    def requests() -> Iterator[Any]:
        yield pb.FrameIn(config=pb.StreamConfig(preset=preset))
        start = time.perf_counter()
        t0 = frames[0][0]
        for seq, (t, jpeg) in enumerate(frames):
            delay = start + (t - t0) - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            run.sent[seq] = time.perf_counter()
            yield pb.FrameIn(frame=pb.Frame(seq=seq, t=t, image=jpeg))

    try:
        for answer in stub.StreamFrames(requests(), metadata=metadata, timeout=600):
            run.received.append((time.perf_counter(), answer))
    except grpc.RpcError as err:
        trailers = dict(err.trailing_metadata() or ())
        run.error = f"{err.code().name} [{trailers.get('error-code', '')}] {err.details()}"
    return run


def streams_at_once(
    target: str, frames: Frames, preset: str, count: int, metadata: list[tuple[str, str]] | None
) -> list[StreamRun]:
    """``count`` streams of ``frames`` started together, each on its own channel and thread."""
    runs: list[StreamRun | None] = [None] * count

    def one(i: int) -> None:
        with grpc.insecure_channel(target) as channel:
            runs[i] = stream(pb_grpc.AnalysisStub(channel), frames, preset, metadata=metadata)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in runs if r is not None]


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    a = np.asarray(values)
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "max": round(float(a.max()), 2),
        "mean": round(float(a.mean()), 2),
    }


def summarise(frames: Frames, runs: list[StreamRun]) -> dict[str, Any]:
    """Latencies over every stream's analysed frames, counts summed over the streams."""
    latency, server, inference, queue = [], [], [], []
    dropped, steps, analysed = 0, 0, 0
    timing: list[dict[str, Any]] = []
    errors = [r.error for r in runs if r.error]
    for run in runs:
        for when, answer in run.received:
            kind = answer.WhichOneof("payload")
            if kind == "keypoints":
                k = answer.keypoints
                analysed += 1
                latency.append((when - run.sent[k.seq]) * 1000)
                server.append(k.latency_ms)
                inference.append(k.inference_ms)
                queue.append(max(k.latency_ms - k.inference_ms, 0.0))
            elif kind == "dropped":
                dropped += 1
            elif kind == "step":
                steps += 1
            elif kind == "summary":
                timing.append(MessageToDict(answer.summary.summary).get("timing_ms", {}))
    sent = len(frames) * len(runs)
    duration = frames[-1][0] - frames[0][0]

    def mean_of(key: str) -> float | None:
        values = [t[key] for t in timing if t.get(key) is not None]
        return round(float(np.mean(values)), 2) if values else None

    return {
        "streams": len(runs),
        "frames_sent": sent,
        "send_fps": round((len(frames) - 1) / duration, 2) if duration > 0 else None,
        "mean_jpeg_kb": round(sum(len(j) for _, j in frames) / len(frames) / 1024, 1),
        "frames_analysed": analysed,
        "frames_dropped": dropped,
        "answered": round(analysed / sent, 4) if sent else 0.0,
        "steps": steps,
        "errors": errors,
        "latency_ms": percentiles(latency),
        "server_latency_ms": percentiles(server),
        "inference_ms": percentiles(inference),
        "queue_ms": percentiles(queue),
        "session_timing_ms": {
            "detect_per_call": mean_of("detect_per_call"),
            "pose2d_per_frame": mean_of("pose2d_per_frame"),
            "window_per_analysis": mean_of("window_per_analysis"),
            "window_analyses": sum(int(t.get("window_analyses", 0)) for t in timing),
        },
    }


# --------------------------------------------------------------------------------------------------------
# Triton's view


def triton_counters(metrics_url: str) -> dict[str, dict[str, float]]:
    """model -> counter -> value, from Triton's Prometheus endpoint."""
    text = httpx.get(metrics_url, timeout=10).text
    models = {
        line.split('model="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("nv_inference_request_success{")
    }
    return {m: {c: metric_sum(text, c, model=m) for c in TRITON_COUNTERS} for m in sorted(models)}


def triton_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float | None]]:
    """Per model over a run: requests, executions, mean queue time, compute (infer) time and compute
    input + output time per request in ms, and queue / compute (infer), the ratio an autoscaler reads."""
    out: dict[str, dict[str, float | None]] = {}
    for model, now in after.items():
        was = before.get(model, dict.fromkeys(TRITON_COUNTERS, 0.0))
        d = {c: now[c] - was[c] for c in TRITON_COUNTERS}
        n = d["nv_inference_request_success"]
        if n <= 0:
            continue
        queue, infer = d["nv_inference_queue_duration_us"], d["nv_inference_compute_infer_duration_us"]
        io = d["nv_inference_compute_input_duration_us"] + d["nv_inference_compute_output_duration_us"]
        out[model] = {
            "requests": n,
            "executions": d["nv_inference_exec_count"],
            "queue_ms": round(queue / n / 1000, 2),
            "compute_infer_ms": round(infer / n / 1000, 2),
            "compute_io_ms": round(io / n / 1000, 2),
            "queue_compute_ratio": round(queue / infer, 3) if infer > 0 else None,
        }
    return out


# --------------------------------------------------------------------------------------------------------
# set-ups


@dataclass
class Target:
    grpc: str
    metadata: list[tuple[str, str]] | None
    metrics_url: str | None  # Triton's Prometheus endpoint, when there is one
    max_inflight_frames: int
    #: component -> process group id, whose CPU time is counted around each run (a local stack's)
    groups: dict[str, int] = field(default_factory=dict)


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system, with those of reaped children) used so far by the processes of
    process group ``pgid`` (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == pgid:  # fields after the command: state, ppid, pgrp, ...
            total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total / tick


def cpu_snapshot(target: Target) -> dict[str, float]:
    out = {name: group_cpu_s(pgid) for name, pgid in target.groups.items()}
    out["this process"] = time.process_time()  # the client; with the embedded set-up, the gateway too
    return out


@contextlib.contextmanager
def embedded(preset: str) -> Iterator[Target]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp), preset=preset, require_api_key=False, log_json=False, grpc_port=0
        )
        gateway = GrpcGatewayThread(settings)
        try:
            yield Target(f"127.0.0.1:{gateway.port}", None, None, settings.stream_max_inflight_frames)
        finally:
            gateway.close()


@contextlib.contextmanager
def fresh_stack(
    preset: str,
    *,
    model_threads: int | None = None,
    env: dict[str, str] | None = None,
    keys: dict[str, str] | None = None,
) -> Iterator[tuple[LocalStack, Target]]:
    """A :class:`LocalStack` on free ports in a temporary folder (stopped and removed at the end), with
    ``stack.json`` written as ``make up`` does. ``keys``: more API keys, name -> ``secret[:jobs_per_day
    [:requests_per_min]]``; ``env``: gateway settings."""
    settings = Settings()
    shared = settings.shared_dir.resolve()
    models_dir = settings.models_dir or os.pathsep.join(str(shared / d) for d in ("models", "reference"))
    extra = {"GAITWAY_LOG_JSON": "true", "GAITWAY_STREAM_SESSIONS_PER_KEY": "8", **(env or {})}
    with tempfile.TemporaryDirectory(prefix="gaitway-bench-") as tmp:
        stack = LocalStack(
            Path(tmp),
            preset=preset,
            models_dir=models_dir,
            ports=Ports.free(),
            env=extra,
            model_threads=model_threads or 1,
        )
        stack.prepare()
        if keys:
            with stack.keys_file.open("a") as f:
                f.writelines(f"{name}:{value}\n" for name, value in keys.items())
        try:
            for name in ("triton", "kinematics", "gateway"):
                stack.start(name, timeout_s=300)
            pids = {n: p.pid for n, p in stack.procs.items()}
            StackState(root=str(stack.root), ports=stack.ports, pids=pids).save(stack.root / "stack.json")
            inflight = extra.get("GAITWAY_STREAM_MAX_INFLIGHT_FRAMES", settings.stream_max_inflight_frames)
            yield (
                stack,
                Target(
                    stack.gateway_grpc,
                    [("x-api-key", stack.api_key)],
                    f"http://127.0.0.1:{stack.ports.triton_metrics}/metrics",
                    int(inflight),
                    groups=pids,  # each component leads its own session, so its own process group
                ),
            )
        finally:
            stack.down()


@contextlib.contextmanager
def running_stack(root: Path) -> Iterator[Target]:
    state = StackState.load(root / "stack.json")
    key = (root / "api-key").read_text().strip()
    yield Target(
        f"127.0.0.1:{state.ports.grpc}",
        [("x-api-key", key)],
        f"http://127.0.0.1:{state.ports.triton_metrics}/metrics",
        Settings().stream_max_inflight_frames,  # this process's setting; the stack's may differ
        groups=dict(state.pids),
    )


# --------------------------------------------------------------------------------------------------------
# runs


def measure(target: Target, frames: Frames, preset: str, *, streams: int, repeat: int) -> dict[str, Any]:
    """A warm-up stream, then ``repeat`` runs of ``streams`` concurrent streams; each run's numbers and
    the run with the median p95 latency as the headline."""
    streams_at_once(target.grpc, frames[:WARMUP_FRAMES], preset, 1, target.metadata)  # loads the models
    runs = []
    for _ in range(repeat):
        before = triton_counters(target.metrics_url) if target.metrics_url else None
        started, cpu, wall = time.strftime("%H:%M:%S"), cpu_snapshot(target), time.perf_counter()
        result = summarise(frames, streams_at_once(target.grpc, frames, preset, streams, target.metadata))
        result["started"] = started
        result["cpu"] = cpu_use(
            cpu,
            cpu_snapshot(target),
            time.perf_counter() - wall,
            result["frames_sent"],
            result["frames_analysed"],
        )
        if before is not None and target.metrics_url:
            result["triton"] = triton_delta(before, triton_counters(target.metrics_url))
        result["meets_target"] = meets(result)
        runs.append(result)
    ranked = sorted(runs, key=lambda r: r["latency_ms"]["p95"] if r["latency_ms"]["p95"] is not None else 1e9)
    return {"median_run": ranked[len(ranked) // 2], "runs": runs}


def cpu_use(
    before: dict[str, float], after: dict[str, float], wall_s: float, frames: int, analysed: int
) -> dict[str, Any]:
    """CPU milliseconds per frame sent, per component, per frame analysed, and the share of the machine's
    CPUs they used."""
    used = {name: after[name] - before[name] for name in after}
    total = sum(used.values())
    return {
        "ms_per_frame": {name: round(s / frames * 1000, 1) for name, s in used.items()},
        "total_ms_per_frame": round(total / frames * 1000, 1),
        "total_ms_per_analysed_frame": round(total / analysed * 1000, 1) if analysed else None,
        "share_of_cpus": round(total / (wall_s * (os.cpu_count() or 1)), 3),
    }


def meets(result: dict[str, Any]) -> bool:
    p95 = result["latency_ms"]["p95"]
    return bool(
        not result["errors"]
        and p95 is not None
        and p95 < TARGET_P95_MS
        and result["answered"] >= TARGET_ANSWERED
    )


def setup_name(args: argparse.Namespace, fps: float | None) -> str:
    where = "triton" if args.triton or args.stack else "embedded"
    name = f"{where}-{args.preset}-{round(fps) if fps else 'all'}fps"
    if args.model_threads:
        name += f"-threads{args.model_threads}"
    if args.max_inflight:
        name += f"-queue{args.max_inflight}"
    if args.loops > 1:
        name += f"-loops{args.loops}"
    if args.streams > 1:
        name += f"-x{args.streams}"
    return name


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# Live streaming benchmark (gRPC StreamFrames)",
        "",
        "Frames JPEG-encoded at long side 640 and sent at their real times (the clip's rate, or every frame "
        "that keeps the stated rate); target: p95 client latency < "
        f"{TARGET_P95_MS:.0f} ms with >= {TARGET_ANSWERED:.0%} of the frames answered. Each set-up was "
        "measured in several runs one after the other on a shared machine (the 1-minute load average when "
        "it started is given; 2 means both CPUs already busy with other work): the first table shows the run "
        "with the median p95, the second every run. Set-up names: `triton` = the local stack (tritonserver "
        "on the CPU repository, kinematics service, gateway: separate processes); `threadsN` = N onnxruntime "
        "threads per Triton model instance (default 1); `queueN` = GAITWAY_STREAM_MAX_INFLIGHT_FRAMES "
        "(default 2); `loopsN` = the clip played N times in a row. CPU ms / frame sent: CPU time of each "
        "process group of the stack (and of the benchmark process itself) over the run, divided by the "
        "frames sent; at 30 fps on 2 CPUs the node has 66.7 CPU ms per frame.",
        "",
        "| set-up | machine, date | streams x fps | answered | p50 / p95 ms (client) | server queue p95 ms | "
        "decode + inference p50 / p95 ms | detector ms / call | 2D model ms / frame | window analysis ms | "
        "CPU ms / frame sent | steps | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in sorted(doc["setups"].items()):
        r = entry["median_run"]
        t = r["session_timing_ms"]
        lines.append(
            f"| {name} | {entry['machine']}, {entry['date']}, load {_load(entry)} | "
            f"{r['streams']} x {r['send_fps']} | "
            f"{r['frames_analysed']}/{r['frames_sent']} ({r['answered']:.0%}) | "
            f"{r['latency_ms']['p50']} / {r['latency_ms']['p95']} | {r['queue_ms']['p95']} | "
            f"{r['inference_ms']['p50']} / {r['inference_ms']['p95']} | {t['detect_per_call']} | "
            f"{t['pose2d_per_frame']} | {t['window_per_analysis']} | {_cpu(r)} | {r['steps']} | "
            f"{'yes' if r['meets_target'] else 'no'} |"
        )
    lines += [
        "",
        "| set-up | run started | answered | p50 / p95 / max ms | CPU ms per analysed frame (share of the "
        "CPUs) | Triton per model: requests, queue / compute (infer + in/out) ms per request |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in sorted(doc["setups"].items()):
        for r in entry["runs"]:
            triton = "; ".join(
                f"{m} {v['requests']:.0f}, {v['queue_ms']} / {v['compute_infer_ms']} + {v['compute_io_ms']}"
                for m, v in r.get("triton", {}).items()
            )
            lines.append(
                f"| {name} | {r['started']} | {r['answered']:.0%} | {r['latency_ms']['p50']} / "
                f"{r['latency_ms']['p95']} / {r['latency_ms']['max']} | {_cpu_run(r)} | {triton or '-'} |"
            )
    notes = [e["note"] for e in doc["setups"].values() if e.get("note")]
    if notes:
        lines += ["", *[f"* {n}" for n in sorted(set(notes))]]
    return "\n".join(lines) + "\n"


def _cpu(run: dict[str, Any]) -> str:
    """'61.2 (triton 38.0, gateway 15.1, ...; 92 % of the CPUs)' from a run's ``cpu``."""
    cpu = run.get("cpu")
    if not cpu:
        return "-"
    parts = ", ".join(f"{name} {ms}" for name, ms in cpu["ms_per_frame"].items())
    return f"{cpu['total_ms_per_frame']} ({parts}; {cpu['share_of_cpus']:.0%} of the CPUs)"


def _cpu_run(run: dict[str, Any]) -> str:
    cpu = run.get("cpu")
    if not cpu or cpu.get("total_ms_per_analysed_frame") is None:
        return "-"
    return f"{cpu['total_ms_per_analysed_frame']} ({cpu['share_of_cpus']:.0%})"


def _load(entry: dict[str, Any]) -> str:
    """The 1-minute load average when the set-up started (how busy the shared machine was)."""
    load = entry.get("load_average_1_5_15")
    return str(load["start"][0]) if isinstance(load, dict) else "-"


def merge(out: Path, name: str, entry: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"setups": {}}
    if out.exists():
        with contextlib.suppress(ValueError):
            old = json.loads(out.read_text())
            if isinstance(old.get("setups"), dict):
                doc = old
    doc["setups"][name] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))
    return doc


def main() -> None:
    shared = Path(os.environ.get("GAITWAY_SHARED_DIR", REPO.parent / "shared"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(shared / "data/running-treadmill-phone/IMG_5396.mp4"))
    ap.add_argument("--out", type=Path, default=REPO / "loadtests/results/stream.json")
    ap.add_argument("--preset", default="lightning")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--triton", action="store_true", help="start a local stack (real Triton) and use it")
    where.add_argument("--stack", type=Path, help="use the running stack of this folder (make up)")
    ap.add_argument("--model-threads", type=int, help="with --triton: onnxruntime threads per Triton model")
    ap.add_argument(
        "--max-inflight", type=int, help="with --triton: GAITWAY_STREAM_MAX_INFLIGHT_FRAMES of the gateway"
    )
    ap.add_argument("--fps", type=float, help="camera rate to send at (default: every frame of the clip)")
    ap.add_argument("--loops", type=int, default=1, help="play the clip this many times in a row per stream")
    ap.add_argument("--streams", type=int, default=1, help="concurrent streams")
    ap.add_argument("--repeat", type=int, default=1, help="measured runs")
    ap.add_argument("--note", default="", help="a line stored with the results (e.g. the machine's load)")
    args = ap.parse_args()
    if (args.model_threads or args.max_inflight) and not args.triton:
        ap.error("--model-threads and --max-inflight need --triton")

    frames = at_rate(looped(encode_frames(args.video), args.loops), args.fps)
    load_start = [round(x, 2) for x in os.getloadavg()]
    if args.triton:
        env = {"GAITWAY_STREAM_MAX_INFLIGHT_FRAMES": str(args.max_inflight)} if args.max_inflight else {}
        with fresh_stack(args.preset, model_threads=args.model_threads, env=env) as (_, target):
            result = measure(target, frames, args.preset, streams=args.streams, repeat=args.repeat)
    else:
        setup = running_stack(args.stack) if args.stack else embedded(args.preset)
        with setup as target:
            result = measure(target, frames, args.preset, streams=args.streams, repeat=args.repeat)
    entry = {
        "video": os.path.basename(args.video),
        "loops": args.loops,
        "preset": args.preset,
        "where": "local stack (tritonserver CPU repository, kinematics service, gateway)"
        if args.triton or args.stack
        else "gateway in-process, embedded onnxruntime",
        "model_threads": args.model_threads,
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average_1_5_15": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "max_inflight_frames": target.max_inflight_frames,
        "note": args.note,
        **result,
    }
    clip_fps = (len(frames) - 1) / (frames[-1][0] - frames[0][0])
    name = setup_name(args, args.fps or clip_fps)
    merge(args.out, name, entry)
    r = result["median_run"]
    lat = r["latency_ms"]
    print(
        f"{name}: {r['frames_sent']} frames sent, {r['frames_analysed']} analysed ({r['answered']:.0%}), "
        f"{r['frames_dropped']} dropped, {r['steps']} steps; latency ms p50 {lat['p50']} p95 {lat['p95']} "
        f"max {lat['max']} (median of {args.repeat} runs; target p95 < {TARGET_P95_MS:.0f} ms, "
        f">= {TARGET_ANSWERED:.0%} answered: {'met' if r['meets_target'] else 'not met'})"
    )
    for run in result["runs"]:
        print(f"  run {run['started']}: {run['answered']:.0%} answered, p95 {run['latency_ms']['p95']} ms")


if __name__ == "__main__":
    main()
