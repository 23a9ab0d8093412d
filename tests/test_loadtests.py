"""The load-test tools: the autoscaler arithmetic and the Triton counters on known values, and a small,
bounded run of the locust scenarios and of the Triton load generator against a real local stack."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SHARED

sys.path.insert(0, str(REPO / "loadtests"))

import triton_load
from bench_stream import Target, at_rate, fresh_stack, merge, triton_delta

from gateway.stack import LocalStack

# --------------------------------------------------------------------------------------------------------
# arithmetic


@pytest.mark.parametrize(
    ("ratio", "current", "expected"),
    [
        (0.0, 1, 1),  # nothing queues: never below one replica
        (0.5, 1, 1),  # at the target
        (0.54, 3, 3),  # within the 10 % tolerance: no change
        (1.0, 1, 2),
        (1.6, 2, 7),  # ceil(2 * 1.6 / 0.5) = ceil(6.4)
        (0.1, 4, 1),  # scale in: ceil(4 * 0.1 / 0.5) = ceil(0.8)
        (None, 3, 3),  # no metric: no change
    ],
)
def test_hpa_replicas_follow_the_autoscaling_v2_formula(
    ratio: float | None, current: int, expected: int
) -> None:
    assert triton_load.hpa_replicas(ratio, target=0.5, current=current) == expected


def _levels(*points: tuple[int, float]) -> list[dict[str, Any]]:
    return [{"concurrency": c, "queue_compute_ratio": r} for c, r in points]


def test_settled_replicas_read_the_measured_curve() -> None:
    curve = _levels((1, 0.0), (2, 0.2), (4, 1.0), (8, 3.0))
    assert triton_load.settled_replicas(curve, 1) == 1
    assert triton_load.settled_replicas(curve, 2) == 1  # 0.2 <= 0.5
    assert triton_load.settled_replicas(curve, 4) == 2  # 4 alone: 1.0; 2 each: 0.2
    assert triton_load.settled_replicas(curve, 3) == 2  # 3 alone: 0.6 (interpolated); 1.5 each: 0.1
    assert triton_load.settled_replicas(curve, 8) == 3  # 8/2 = 4 each: 1.0; 8/3 each: 0.47
    assert triton_load.settled_replicas(curve, 16) == 6  # beyond the curve alone; 16/6 each: 0.47
    assert triton_load.settled_replicas(_levels((1, 2.0)), 1) is None  # never at the target


def test_triton_delta_gives_per_request_means_and_the_ratio() -> None:
    keys = (
        "nv_inference_request_success",
        "nv_inference_exec_count",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_output_duration_us",
    )
    before = {"pose2d": dict(zip(keys, (10, 5, 1000, 2000, 100, 100), strict=True))}
    after = {
        "pose2d": dict(zip(keys, (30, 10, 21000, 42000, 300, 300), strict=True)),
        "detector": dict(zip(keys, (0, 0, 0, 0, 0, 0), strict=True)),  # idle: left out
    }
    delta = triton_delta(before, after)
    assert set(delta) == {"pose2d"}
    d = delta["pose2d"]
    assert d["requests"] == 20 and d["executions"] == 5
    assert d["queue_ms"] == pytest.approx(1.0)  # 20 000 us over 20 requests
    assert d["compute_infer_ms"] == pytest.approx(2.0)
    assert d["compute_io_ms"] == pytest.approx(0.02)
    assert d["queue_compute_ratio"] == pytest.approx(0.5)


def test_frames_are_kept_at_the_camera_rate() -> None:
    frames = [(i / 60 + (0.0005 if i % 7 == 0 else 0.0), b"x") for i in range(120)]  # 60 fps with jitter
    kept = at_rate(frames, 30)
    assert len(kept) == 60 and [t for t, _ in kept] == [t for t, _ in frames[::2]]
    assert at_rate(frames, None) == frames
    assert len(at_rate(frames, 10)) == 20


def test_results_of_other_setups_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "stream.json"
    run = {
        "streams": 1,
        "send_fps": 30.0,
        "frames_sent": 10,
        "frames_analysed": 9,
        "answered": 0.9,
        "latency_ms": {"p50": 1.0, "p95": 2.0, "max": 3.0},
        "queue_ms": {"p95": 0.5},
        "inference_ms": {"p50": 1.0, "p95": 1.5},
        "session_timing_ms": {"detect_per_call": 1, "pose2d_per_frame": 2, "window_per_analysis": 3},
        "steps": 0,
        "meets_target": True,
        "started": "12:00:00",
    }
    entry = {"machine": "m", "date": "d", "median_run": run, "runs": [run]}
    merge(out, "a", entry)
    doc = merge(out, "b", entry)
    assert set(doc["setups"]) == {"a", "b"} == set(json.loads(out.read_text())["setups"])
    md = out.with_suffix(".md").read_text()
    assert "| a |" in md and "| b |" in md


# --------------------------------------------------------------------------------------------------------
# against a real local stack

LOAD_KEY = "gw_test_" + secrets.token_urlsafe(12)


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[LocalStack, Target]]:
    env = {"GAITWAY_POLL_INTERVAL_S": "0.2"}
    with fresh_stack("lightning", env=env, keys={"loadtest": f"{LOAD_KEY}:1000:100000"}) as started:
        yield started


def _stats(prefix: Path) -> dict[str, dict[str, Any]]:
    """name -> locust's final stats entry (``--json-file``)."""
    return {e["name"]: e for e in json.loads(Path(f"{prefix}.json").read_text())}


@pytest.mark.triton
@pytest.mark.slow
def test_locust_scenarios_run_once_each_without_a_failure(
    stack: tuple[LocalStack, Target], tmp_path: Path
) -> None:
    local, _ = stack
    prefix = tmp_path / "smoke"
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO / "loadtests/locustfile.py"), "--headless"]
    cmd += ["--stack-dir", str(local.root), "--api-key", LOAD_KEY, "-u", "2", "-r", "2", "--run-time", "100s"]
    cmd += ["--iterations", "1", "--live-frames", "30", "--poll-interval", "0.3", "--json-file", str(prefix)]
    cmd += ["--clip", str(SHARED / "data/running-side-outdoor/demo3.mp4"), "MobileUser", "PartnerUser"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=150, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    stats = _stats(prefix)
    assert all(e["num_failures"] == 0 for e in stats.values()), done.stderr[-3000:]
    once = ["POST /v1/analyses", "AnalyzeVideo", "WatchAnalysis", "StreamFrames"]
    # each user's one iteration is one whole analysis, ended done (a failed one counts as a failure)
    once += ["analysis (HTTP)", "analysis (gRPC)"]
    once += [f"GET /v1/analyses/{{id}}/artifacts/{name}" for name in ("metrics", "steps")]
    assert {name: stats.get(name, {}).get("num_requests") for name in once} == dict.fromkeys(once, 1)
    # every one of the 30 live frames was answered: keypoints, or dropped under backpressure
    answered = sum(stats[n]["num_requests"] for n in ("frame keypoints", "frame dropped") if n in stats)
    assert answered == 30
    assert stats["frame keypoints"]["num_requests"] >= 1


@pytest.mark.triton
@pytest.mark.slow
def test_triton_load_generator_counts_what_triton_counts(stack: tuple[LocalStack, Target]) -> None:
    local, target = stack
    assert target.metrics_url is not None
    doc = triton_load.run(
        local.triton_grpc,
        target.metrics_url,
        preset="lightning",
        role="pose2d",
        levels=[1],
        seconds=2.0,
        video=str(SHARED / "data/running-treadmill-phone/IMG_5396.mp4"),
    )
    assert doc["model"] == "pose2d_movenet" and doc["weights"] == "movenet-lightning"
    (level,) = doc["levels"]
    assert level["errors"] == 0 and level["requests"] > 0
    assert level["server_requests"] == level["requests"]  # every answered request, counted once by Triton
    assert level["mean_batch"] == 1.0  # MoveNet has no batch dimension: one request per execution
    # one request in flight and two model instances: a request never waits behind another
    assert level["server_queue_ms"] < level["server_compute_ms"]
    assert level["hpa_replicas_from_1"] == 1 and level["settled_replicas"] == 1
