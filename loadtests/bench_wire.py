"""Wire benchmark (``make bench``): bytes per frame between the pose client and Triton, float vs uint8.

For each 2D pose model (MoveNet Thunder and Lightning, RTMPose-m COCO-17 and Halpe-26: random weights, but
the architecture's tensor sizes) the real detector finds the runner on frames spread over a video and the
family's codec makes the crop the pipeline makes. Each crop is then put into the gRPC request message
exactly as the Triton client builds it (``ModelInferRequest``, the message of ``ModelInfer`` and of each
``ModelStreamInfer`` request), in two representations:

* **float**: the network's own input (normalised float32 NCHW for RTMPose, int32 NHWC for MoveNet), what
  crossed the wire before the wire format;
* **uint8**: the crop as it travels now (uint8 NHWC RGB; the served graph normalises it).

Bytes are the serialised message plus gRPC's 5-byte message prefix (HTTP/2 framing, a few bytes per 16 KB,
is left out). The response (the network outputs, computed on the real crops) is the same both ways. The
detector request (still float32 NCHW, 320x320) is given per detection: the pipeline detects on every
``det_interval``-th frame (15 by default) and again after a poor pose, so it adds at least 1/15 of its size
per frame. Client CPU time per crop (the crop itself, and the numpy normalisation the uint8 path leaves to
the server) is the median over the frames. Results go to a JSON file and a Markdown table beside it.

    python loadtests/bench_wire.py --video CLIP.mp4 --out loadtests/results/wire.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tritonclient.grpc import service_pb2
from tritonclient.grpc._utils import _get_inference_request  # the request builder both clients use
from tritonclient.utils import np_to_triton_dtype

from services.pose.detect import rtmdet_decode, rtmdet_preprocess
from services.pose.families import get_family
from services.pose.ingest import VideoReader
from services.pose.models import ModelStore, get_manifest
from services.pose.pose2d import make_codec, network_input
from services.pose.runtime import OnnxRunner
from services.pose.tracking import TrackerParams
from services.pose.triton import TritonBackend
from services.settings import Settings

POSE_MODELS = ("movenet-thunder", "movenet-lightning", "rtmpose-m-coco17-random", "rtmpose-m-halpe26-random")
DETECTOR = "rtmdet-nano-person"
GRPC_PREFIX = 5  # compressed flag + 4-byte length before every gRPC message
FPS = (30, 60)


def request_bytes(model: str, inputs: dict[str, NDArray[Any]], outputs: list[str]) -> int:
    """Serialised size of the gRPC inference request carrying ``inputs``, plus the gRPC prefix."""
    ins, outs = TritonBackend._request(inputs, outputs)
    request = _get_inference_request(
        model_name=model,
        inputs=ins,
        model_version="",
        request_id="p0",
        outputs=outs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters=None,
    )
    return int(request.ByteSize()) + GRPC_PREFIX


def response_bytes(model: str, outputs: dict[str, NDArray[Any]]) -> int:
    """Serialised size of the inference response carrying ``outputs``, plus the gRPC prefix."""
    response = service_pb2.ModelInferResponse(model_name=model, model_version="1", id="p0")
    for name, x in outputs.items():
        arr = np.ascontiguousarray(x)
        tensor = response.outputs.add()
        tensor.name, tensor.datatype = name, np_to_triton_dtype(arr.dtype)
        tensor.shape.extend(arr.shape)
        response.raw_output_contents.append(arr.tobytes())
    return int(response.ByteSize()) + GRPC_PREFIX


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


def measure(video: Path, store: ModelStore, *, frames: int) -> dict[str, Any]:
    detector = OnnxRunner(store.resolve(DETECTOR).path, threads=1)
    det_family = get_family(get_manifest(DETECTOR).family)
    with VideoReader(video, max_long_side=640) as reader:
        images = [f.image for f in itertools.islice(reader, 0, None, 30)][:frames]
    samples: list[tuple[NDArray[np.uint8], NDArray[np.float64]]] = []
    det_bytes: list[int] = []
    for image in images:
        x, letterbox = rtmdet_preprocess(image, input_wh=get_manifest(DETECTOR).input_size)
        dets, labels = detector.run({"input": x})
        det_bytes.append(request_bytes(det_family.triton_model, {"input": x}, ["dets", "labels"]))
        boxes = rtmdet_decode(dets[0], labels[0], letterbox, score_threshold=0.3)
        if len(boxes):
            samples.append((image, boxes[:1]))
    if not samples:
        raise SystemExit("bench_wire: the detector found nobody in the sampled frames")

    rows: list[dict[str, Any]] = []
    for name in POSE_MODELS:
        manifest = get_manifest(name)
        family = get_family(manifest.family)
        wire = family.wire
        assert wire is not None, f"{family.name} has no wire format"
        codec = make_codec(manifest.family, skeleton=manifest.skeleton, input_wh=manifest.input_size)
        runner = OnnxRunner(store.resolve(name).path, threads=1)
        outputs = [s.name for s in family.contract.outputs]
        sizes: dict[str, list[int]] = {"float": [], "uint8": [], "response": []}
        crop_s: list[float] = []
        normalise_s: list[float] = []
        for image, boxes in samples:
            start = time.perf_counter()
            crops, _ = codec.preprocess(image, boxes)
            crop_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            net = network_input(crops, wire)
            normalise_s.append(time.perf_counter() - start)
            sizes["float"].append(request_bytes(family.triton_model, {wire.input: net}, outputs))
            sizes["uint8"].append(request_bytes(family.triton_model, {wire.input: crops}, outputs))
            result = dict(zip(runner.output_names, runner.run({wire.input: net}), strict=True))
            sizes["response"].append(response_bytes(family.triton_model, result))
        w, h = manifest.input_size
        float_b, uint8_b = max(sizes["float"]), max(sizes["uint8"])
        rows.append(
            {
                "model": name,
                "family": family.name,
                "triton_model": family.triton_model,
                "crop_wh": [w, h],
                "float_tensor": f"{wire.network_dtype} {wire.network_layout}",
                "float_request_bytes": float_b,
                "uint8_request_bytes": uint8_b,
                "request_ratio": round(float_b / uint8_b, 3),
                "response_bytes": max(sizes["response"]),
                "client_crop_ms": _median_ms(crop_s),
                "client_normalise_ms": _median_ms(normalise_s),
                "pose_mb_per_s": {
                    str(fps): {"float": round(float_b * fps / 1e6, 2), "uint8": round(uint8_b * fps / 1e6, 2)}
                    for fps in FPS
                },
            }
        )
    interval = TrackerParams().det_interval
    return {
        "frames": len(samples),
        "detector": {
            "model": DETECTOR,
            "tensor": "float32 NCHW (no wire format yet)",
            "request_bytes": max(det_bytes),
            "det_interval": interval,
            "bytes_per_frame_at_interval": round(max(det_bytes) / interval),
        },
        "pose2d": rows,
    }


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    det = doc["detector"]
    lines = [
        f"# Wire benchmark — {doc['video']}",
        "",
        f"{doc['machine']}; {doc['when']}. {doc['frames']} frames spread over the video, one runner crop "
        "each.",
        "Bytes = serialised gRPC `ModelInferRequest` as tritonclient builds it + 5-byte gRPC prefix, "
        "per crop = per frame (one runner).",
        "",
        "| pose model | crop | float request (before) | uint8 request (now) | ratio | response "
        "| 60 fps float | 60 fps uint8 | client normalise |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["pose2d"]:
        w, h = r["crop_wh"]
        fps60 = r["pose_mb_per_s"]["60"]
        lines.append(
            f"| {r['model']} (`{r['triton_model']}`) | {w}x{h} | {r['float_request_bytes']:,} B "
            f"({r['float_tensor']}) | {r['uint8_request_bytes']:,} B | {r['request_ratio']}x "
            f"| {r['response_bytes']:,} B | {fps60['float']} MB/s | {fps60['uint8']} MB/s "
            f"| {r['client_normalise_ms']} ms |"
        )
    lines += [
        "",
        f"Detector (`{det['model']}`, {det['tensor']}): {det['request_bytes']:,} B per detection; at one "
        f"detection every {det['det_interval']} frames that adds {det['bytes_per_frame_at_interval']:,} B "
        "per frame (more after poor poses).",
        "",
        "Client normalise = the numpy cast/normalise/transpose per crop that the uint8 path moves into the "
        "served graph (median; the crop itself costs "
        + ", ".join(f"{r['client_crop_ms']} ms ({r['model']})" for r in doc["pose2d"])
        + ").",
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("loadtests/results/wire.json"))
    ap.add_argument("--frames", type=int, default=12, help="frames sampled (every 30th)")
    args = ap.parse_args()
    store = ModelStore(Settings().model_search_path())
    doc = measure(args.video, store, frames=args.frames)
    doc = {
        "video": args.video.name,
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "when": time.strftime("%Y-%m-%d %H:%M"),
        **doc,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    write_markdown(doc, args.out.with_suffix(".md"))
    sys.stdout.write(args.out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
