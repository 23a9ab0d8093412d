"""Live-streaming benchmark of the gRPC ``StreamFrames`` call (``make bench``).

Starts the gateway's gRPC server in this process (embedded models, no API key) on a free port, then acts as
a phone app: every frame of the clip is JPEG-encoded beforehand at long side 640 and sent at its real
time (the client sleeps until each frame's timestamp). Per analysed frame it measures the latency from
handing the frame to gRPC to receiving its keypoints, and it counts frames dropped under backpressure and
steps received. A short warm-up stream (not measured) loads the models first. Results go to a JSON file
and a Markdown table beside it.

    python loadtests/bench_stream.py --video CLIP.mp4 --out loadtests/results/stream.json --preset lightning
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np

from gateway.proto.gaitway.v1 import gaitway_pb2 as pb
from gateway.proto.gaitway.v1 import gaitway_pb2_grpc as pb_grpc
from gateway.server import GrpcGatewayThread
from services.pose.ingest import VideoReader
from services.settings import Settings

REPO = Path(__file__).resolve().parents[1]

TARGET_P95_MS = 100.0
LONG_SIDE = 640
JPEG_QUALITY = 80
WARMUP_FRAMES = 30


def encode_frames(video: str) -> list[tuple[float, bytes]]:
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


def stream(
    stub: Any, frames: list[tuple[float, bytes]], preset: str
) -> tuple[dict[int, float], list[tuple[float, pb.FrameOut]]]:
    """Send ``frames`` in real time; returns (seq -> send time, [(receive time, answer)])."""
    sent: dict[int, float] = {}

    def requests() -> Iterator[pb.FrameIn]:
        yield pb.FrameIn(config=pb.StreamConfig(preset=preset))
        start = time.perf_counter()
        t0 = frames[0][0]
        for seq, (t, jpeg) in enumerate(frames):
            delay = start + (t - t0) - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[seq] = time.perf_counter()
            yield pb.FrameIn(frame=pb.Frame(seq=seq, t=t, image=jpeg))

    received = []
    for answer in stub.StreamFrames(requests(), timeout=600):
        received.append((time.perf_counter(), answer))
    return sent, received


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


def summarise(
    frames: list[tuple[float, bytes]], sent: dict[int, float], received: list[tuple[float, pb.FrameOut]]
) -> dict[str, Any]:
    latency, server, inference = [], [], []
    dropped, steps = 0, 0
    summary: dict[str, Any] = {}
    for when, answer in received:
        kind = answer.WhichOneof("payload")
        if kind == "keypoints":
            latency.append((when - sent[answer.keypoints.seq]) * 1000)
            server.append(answer.keypoints.latency_ms)
            inference.append(answer.keypoints.inference_ms)
        elif kind == "dropped":
            dropped += 1
        elif kind == "step":
            steps += 1
        elif kind == "summary":
            summary = {
                "frames_received": answer.summary.frames_received,
                "frames_analysed": answer.summary.frames_analysed,
                "frames_dropped": answer.summary.frames_dropped,
            }
    duration = frames[-1][0] - frames[0][0]
    return {
        "frames_sent": len(frames),
        "send_fps": round((len(frames) - 1) / duration, 2) if duration > 0 else None,
        "mean_jpeg_kb": round(sum(len(j) for _, j in frames) / len(frames) / 1024, 1),
        "frames_analysed": len(latency),
        "frames_dropped": dropped,
        "steps": steps,
        "latency_ms": percentiles(latency),
        "server_latency_ms": percentiles(server),
        "inference_ms": percentiles(inference),
        "server_counts": summary,
    }


def markdown(results: dict[str, Any]) -> str:
    r = results
    rows = [
        ("client: send -> keypoints", r["latency_ms"]),
        ("server: frame in -> keypoints out", r["server_latency_ms"]),
    ]
    rows.append(("server: decode + inference", r["inference_ms"]))
    lines = [
        f"# Live streaming benchmark — {r['video']}",
        "",
        f"{r['machine']}; {r['date']}. gRPC StreamFrames, preset {r['preset']}, frames JPEG-encoded at "
        f"long side {LONG_SIDE} ({r['mean_jpeg_kb']} KB mean) and sent at the clip's real rate "
        f"({r['send_fps']} fps), server queue of {r['max_inflight_frames']} frames.",
        "",
        "| latency (ms) | p50 | p95 | p99 | max | mean |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in rows:
        lines.append(
            f"| {name} | " + " | ".join(str(p[k]) for k in ("p50", "p95", "p99", "max", "mean")) + " |"
        )
    lines += [
        "",
        "| frames sent | analysed | dropped (backpressure) | steps received | p95 target | met |",
        "|---|---|---|---|---|---|",
        f"| {r['frames_sent']} | {r['frames_analysed']} | {r['frames_dropped']} | {r['steps']} | "
        f"< {TARGET_P95_MS:.0f} ms | {'yes' if r['meets_target'] else 'no'} |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    shared = Path(os.environ.get("GAITWAY_SHARED_DIR", REPO.parent / "shared"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(shared / "data/running-treadmill-phone/IMG_5396.mp4"))
    ap.add_argument("--out", type=Path, default=REPO / "loadtests/results/stream.json")
    ap.add_argument("--preset", default="lightning")
    args = ap.parse_args()

    frames = encode_frames(args.video)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp), preset=args.preset, require_api_key=False, log_json=False, grpc_port=0
        )
        gateway = GrpcGatewayThread(settings)
        channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
        try:
            stub = pb_grpc.AnalysisStub(channel)
            stream(stub, frames[:WARMUP_FRAMES], args.preset)  # loads the models
            sent, received = stream(stub, frames, args.preset)
        finally:
            channel.close()
            gateway.close()
    results: dict[str, Any] = {
        "video": os.path.basename(args.video),
        "preset": args.preset,
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, onnxruntime CPU",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "max_inflight_frames": settings.stream_max_inflight_frames,
        **summarise(frames, sent, received),
    }
    p95 = results["latency_ms"]["p95"]
    results["target_p95_ms"] = TARGET_P95_MS
    results["meets_target"] = p95 is not None and p95 < TARGET_P95_MS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    lat = results["latency_ms"]
    print(
        f"{results['frames_sent']} frames sent, {results['frames_analysed']} analysed, "
        f"{results['frames_dropped']} dropped, {results['steps']} steps; latency ms p50 {lat['p50']} "
        f"p95 {lat['p95']} p99 {lat['p99']} max {lat['max']} (target p95 < {TARGET_P95_MS:.0f})"
    )


if __name__ == "__main__":
    main()
