"""Triton load generator: a concurrency sweep over gRPC with real network inputs.

``perf_analyzer`` is not in the ``tritonclient`` wheel, and the ``perf-analyzer`` wheels of Triton 2.5x need
glibc >= 2.38, which this machine does not have; this script does its job with ``tritonclient.grpc.aio``.

Inputs are real: frames of the treadmill clip (long side 640), the runner found by the served detector,
and the exact tensors the gateway sends (the 2D codec's crops in the served model's input dtype, or the
detector's letterboxed image). At each concurrency level C, C workers send requests back to back (closed
loop) for ``--seconds``; the level reports requests/s, client latency p50/p95/p99 and, from Triton's
metrics endpoint read before and after the level (``nv_inference_request_success``, ``..._exec_count``,
``..._queue_duration_us``, ``..._compute_infer_duration_us``, ``..._compute_input/output_duration_us``), the
mean queue and compute time per request, the mean batch size and the queue/compute ratio an autoscaler
reads (``nv_inference_queue_duration_us`` / ``nv_inference_compute_infer_duration_us``). For a target
ratio it also gives the replica count a Kubernetes HPA would ask for from one replica at that load
(``ceil(replicas * ratio / target)``, no change within the HPA's 10 % tolerance) and the replica count where
the load, split evenly, brings every replica's ratio to the target or below (from the measured curve).

Where Triton runs: ``--triton`` starts one (``services.pose.triton.TritonServer``) on a CPU repository
generated for ``--preset`` in a temporary folder; ``--url HOST:PORT --metrics-url URL`` uses a running one.

Results are merged into ``--out`` under ``<preset>/<model>`` (other runs kept), with a Markdown report beside.

    python loadtests/triton_load.py --triton --preset lightning --concurrency 1,2,4,8 --seconds 6
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc.aio as grpcclient
from numpy.typing import NDArray
from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

from services.pose.backends import ModelSet
from services.pose.detect import rtmdet_preprocess
from services.pose.families import get_family
from services.pose.ingest import VideoReader
from services.pose.models import ModelStore, get_preset
from services.pose.pose2d import graph_feed
from services.pose.triton import TritonBackend, TritonServer, triton_model_name
from services.settings import Settings

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "loadtests"))

from bench_stream import percentiles, triton_counters, triton_delta  # noqa: E402

#: the queue/compute ratio the autoscaler is assumed to target (see the HPA in k8s/)
TARGET_RATIO = 0.5
#: the HPA leaves the replica count alone while the metric is within this fraction of its target
HPA_TOLERANCE = 0.1
INPUT_FRAMES = 24  # distinct inputs cycled through


def models_dir(settings: Settings) -> str:
    shared = settings.shared_dir.resolve()
    return settings.models_dir or os.pathsep.join(str(shared / d) for d in ("models", "reference"))


def model_set(preset: str) -> ModelSet:
    settings = Settings(models_dir=models_dir(Settings()))
    return ModelSet.resolve(ModelStore(settings.model_search_path()), get_preset(preset))


def real_inputs(url: str, models: ModelSet, role: str, video: str, count: int = INPUT_FRAMES) -> list[Any]:
    """``count`` request inputs of ``role`` ("pose2d" or "detector") from frames spread over ``video``:
    ``(input name, array)`` pairs as the gateway sends them."""
    with VideoReader(video, max_long_side=640) as reader:
        images = [f.image for f in reader]
    picks = [images[i] for i in np.linspace(0, len(images) - 1, count).astype(int)]
    with TritonBackend(models, url=url) as backend:
        if role == "detector":
            det = models.detector.manifest
            return [rtmdet_preprocess(im, input_wh=det.input_size)[0] for im in picks]
        pose = models.pose2d.manifest
        config = _config(url, triton_model_name(pose.family))
        dtype = np.dtype(triton_to_np_dtype(config["input"][0]["data_type"].removeprefix("TYPE_"))).name
        out = []
        for im in picks:
            boxes = backend.detect(im, score_threshold=0.3)
            if len(boxes) == 0:
                continue
            crops, _ = backend.pose_codec.preprocess(im, boxes[:1, :4])
            out.append(graph_feed(crops, get_family(pose.family).wire, input_dtype=dtype))
        if not out:
            raise RuntimeError("the detector found nobody in the clip")
        return out


def _config(url: str, model: str) -> dict[str, Any]:
    async def get() -> dict[str, Any]:
        client = grpcclient.InferenceServerClient(url)
        try:
            return dict((await client.get_model_config(model, as_json=True))["config"])
        finally:
            await client.close()

    return asyncio.run(get())


async def _level(
    url: str, model: str, input_name: str, arrays: Sequence[NDArray[Any]], concurrency: int, seconds: float
) -> tuple[list[float], int, float]:
    """C closed-loop workers for ``seconds``: (latencies ms, errors, wall seconds)."""
    client = grpcclient.InferenceServerClient(url)
    requests = []
    for a in arrays:
        x = grpcclient.InferInput(input_name, list(a.shape), np_to_triton_dtype(a.dtype))
        x.set_data_from_numpy(np.ascontiguousarray(a))
        requests.append(x)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                await client.infer(model, [requests[i % len(requests)]], client_timeout=60)
                latencies.append((time.perf_counter() - start) * 1000)
            except Exception:
                errors += 1
            i += concurrency

    began = time.perf_counter()
    try:
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    finally:
        await client.close()
    return latencies, errors, time.perf_counter() - began


def hpa_replicas(ratio: float | None, *, target: float = TARGET_RATIO, current: int = 1) -> int:
    """The replica count an ``autoscaling/v2`` HPA asks for at this metric value (its tolerance kept)."""
    if ratio is None:
        return current
    if abs(ratio / target - 1.0) <= HPA_TOLERANCE:
        return current
    return max(1, math.ceil(current * ratio / target))


def settled_replicas(
    levels: list[dict[str, Any]], concurrency: int, *, target: float = TARGET_RATIO
) -> int | None:
    """The fewest replicas n whose share of ``concurrency`` requests in flight (C/n each) gives a ratio at
    or below ``target`` on the measured curve (linear between measured levels); None beyond the curve."""
    points = sorted(
        (lv["concurrency"], lv["queue_compute_ratio"])
        for lv in levels
        if lv["queue_compute_ratio"] is not None
    )
    if not points:
        return None
    xs, ys = zip(*points, strict=True)
    for n in range(1, concurrency + 1):
        share = concurrency / n
        if share > xs[-1]:
            continue
        if float(np.interp(share, xs, ys)) <= target:
            return n
    return None


def sweep(
    url: str,
    metrics_url: str,
    model: str,
    arrays: Sequence[NDArray[Any]],
    levels: Sequence[int],
    *,
    seconds: float,
    target: float = TARGET_RATIO,
) -> list[dict[str, Any]]:
    """One warm-up second, then each concurrency level (see the module docstring)."""
    input_name = _config(url, model)["input"][0]["name"]
    asyncio.run(_level(url, model, input_name, arrays, 1, 1.0))
    out: list[dict[str, Any]] = []
    for c in levels:
        before = triton_counters(metrics_url)
        latencies, errors, wall = asyncio.run(_level(url, model, input_name, arrays, c, seconds))
        server = triton_delta(before, triton_counters(metrics_url)).get(model, {})
        ratio = server.get("queue_compute_ratio")
        requests, executions = server.get("requests"), server.get("executions")
        out.append(
            {
                "concurrency": c,
                "requests": len(latencies),
                "server_requests": requests,
                "errors": errors,
                "throughput_rps": round(len(latencies) / wall, 2),
                "latency_ms": percentiles(latencies),
                "server_queue_ms": server.get("queue_ms"),
                "server_compute_ms": server.get("compute_infer_ms"),
                "server_compute_io_ms": server.get("compute_io_ms"),
                "mean_batch": round(requests / executions, 2) if requests and executions else None,
                "queue_compute_ratio": ratio,
                "hpa_replicas_from_1": hpa_replicas(ratio, target=target),
            }
        )
    for lv in out:
        lv["settled_replicas"] = settled_replicas(out, lv["concurrency"], target=target)
    return out


@contextlib.contextmanager
def local_triton(preset: str) -> Iterator[TritonServer]:
    """A tritonserver on a CPU repository generated for ``preset`` (the repository's default settings)."""
    from export.repository import generate

    models = model_set(preset)
    with tempfile.TemporaryDirectory(prefix="gaitway-triton-load-") as tmp:
        generate(Path(tmp), [models.detector, models.pose2d, models.lifter])
        with TritonServer(Path(tmp), startup_timeout_s=180) as server:
            yield server


def run(
    url: str,
    metrics_url: str,
    *,
    preset: str,
    role: str,
    levels: Sequence[int],
    seconds: float,
    video: str,
    target: float = TARGET_RATIO,
) -> dict[str, Any]:
    models = model_set(preset)
    manifest = models.detector.manifest if role == "detector" else models.pose2d.manifest
    model = triton_model_name(manifest.family)
    arrays = real_inputs(url, models, role, video)
    return {
        "model": model,
        "weights": manifest.name,
        "preset": preset,
        "input": {
            "shape": list(arrays[0].shape),
            "dtype": str(arrays[0].dtype),
            "bytes": int(arrays[0].nbytes),
        },
        "seconds_per_level": seconds,
        "target_ratio": target,
        "levels": sweep(url, metrics_url, model, arrays, levels, seconds=seconds, target=target),
    }


def markdown(runs: dict[str, dict[str, Any]]) -> str:
    """The report of every run in ``runs`` (name -> run document)."""
    lines = ["# Triton load (concurrency sweeps)", ""]
    for name in sorted(runs):
        lines += markdown_run(runs[name])
    return "\n".join(lines)


def markdown_run(doc: dict[str, Any]) -> list[str]:
    lines = [
        f"## {doc['model']} ({doc['weights']}, preset {doc['preset']})",
        "",
        f"{doc['machine']}; {doc['date']}; load average before the run {doc['load_average_1_5_15']}. "
        f"{doc['where']}. Closed loop: C clients send back to back for {doc['seconds_per_level']} s per "
        "level; "
        f"input {doc['input']['dtype']} {doc['input']['shape']} ({doc['input']['bytes'] / 1024:.0f} KB) from "
        "real frames. Queue and compute are Triton's own per-request means over the level; ratio = queue / "
        f"compute (infer). HPA target ratio {doc['target_ratio']}: 'HPA from 1' is the count it asks for "
        "when one replica carries the level; 'settled' the fewest replicas whose share of the level keeps "
        "the ratio at or below the target (measured curve; '-' beyond it). The client shares the 2 CPUs "
        "with the server.",
        "",
        "| C | requests/s | p50 ms | p95 ms | p99 ms | queue ms | compute ms | mean batch | queue/compute | "
        "HPA from 1 | settled | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in doc["levels"]:
        lat = lv["latency_ms"]
        lines.append(
            f"| {lv['concurrency']} | {lv['throughput_rps']} | {lat['p50']} | {lat['p95']} | {lat['p99']} | "
            f"{lv['server_queue_ms']} | {lv['server_compute_ms']} | {lv['mean_batch']} | "
            f"{lv['queue_compute_ratio']} | {lv['hpa_replicas_from_1']} | {lv['settled_replicas'] or '-'} | "
            f"{lv['errors']} |"
        )
    return [*lines, ""]


def describe(doc: dict[str, Any], where: str) -> dict[str, Any]:
    return {
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "where": where,
        **doc,
    }


def main() -> None:
    shared = Settings().shared_dir
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--triton", action="store_true", help="start a local Triton on a generated repository"
    )
    source.add_argument("--url", help="gRPC HOST:PORT of a running Triton")
    ap.add_argument("--metrics-url", help="its metrics endpoint (with --url), e.g. http://HOST:8002/metrics")
    ap.add_argument("--preset", default="lightning")
    ap.add_argument("--role", choices=("pose2d", "detector"), default="pose2d")
    ap.add_argument("--concurrency", default="1,2,4,8", help="comma-separated levels")
    ap.add_argument("--seconds", type=float, default=6.0, help="per level")
    ap.add_argument("--target-ratio", type=float, default=TARGET_RATIO)
    ap.add_argument("--video", default=str(shared / "data/running-treadmill-phone/IMG_5396.mp4"))
    ap.add_argument("--out", type=Path, default=REPO / "loadtests/results/triton_load.json")
    args = ap.parse_args()
    if args.url and not args.metrics_url:
        ap.error("--url needs --metrics-url")
    levels = [int(c) for c in args.concurrency.split(",")]
    load = [round(x, 2) for x in os.getloadavg()]
    options = {"preset": args.preset, "role": args.role, "levels": levels, "seconds": args.seconds}
    if args.triton:
        with local_triton(args.preset) as server:
            doc = run(
                server.grpc_url, server.metrics_url, video=args.video, target=args.target_ratio, **options
            )
        where = "local tritonserver (python backend, CPU repository as generated by export.repository)"
    else:
        doc = run(args.url, args.metrics_url, video=args.video, target=args.target_ratio, **options)
        where = "running Triton"
    doc = describe({"load_average_1_5_15": load, **doc}, where)
    runs: dict[str, dict[str, Any]] = {}
    if args.out.exists():  # the runs of other presets and models are kept
        with contextlib.suppress(ValueError, AttributeError):
            runs = dict(json.loads(args.out.read_text()).get("runs", {}))
    runs[f"{args.preset}/{doc['model']}"] = doc
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(runs))
    print("\n".join(markdown_run(doc)))


if __name__ == "__main__":
    main()
