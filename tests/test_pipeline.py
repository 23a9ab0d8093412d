"""End to end on the real treadmill phone clip, through the CLI, with the offline default models."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import av
import cv2
import ezc3d
import numpy as np
import pytest

from gateway.cli import main
from services.errors import ServiceUnavailableError
from services.pose.backends import EmbeddedBackend, ModelSet
from services.pose.models import ModelStore, get_preset
from services.pose.pipeline import AnalysisOptions, analyze_video
from services.pose.retime import retime
from services.pose.skeletons import COCO17, H36M17

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def treadmill_run(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("treadmill")
    video = shared / "data/running-treadmill-phone/IMG_5396.mp4"
    dirs = os.pathsep.join(str(shared / d) for d in ("models", "reference"))
    code = main(
        ["analyze", str(video), "--out", str(out), "--models-dir", dirs, "--no-progress", "--height", "1.78"]
    )
    assert code == 0
    return out, json.loads((out / "poses.json").read_text())


def _array(frames: list[dict[str, Any]], key: str) -> np.ndarray:
    rows = [[[np.nan if v is None else v for v in joint] for joint in f[key]] for f in frames]
    return np.array(rows, dtype=float)


def test_video_metadata_and_models_are_recorded(treadmill_run: tuple[Path, dict[str, Any]]) -> None:
    _, doc = treadmill_run
    assert doc["schema"] == "gaitway.poses" and doc["schema_version"] == 1
    v = doc["video"]
    assert (v["width"], v["height"], v["fps"], v["num_frames"]) == (1080, 1920, 60.0, 388)
    assert doc["models"]["pose2d"]["name"] == "movenet-thunder"
    for role in ("detector", "pose2d", "lifter"):
        assert doc["models"][role]["checksum_verified"] and len(doc["models"][role]["sha256"]) == 64
    assert doc["skeletons"]["keypoints2d"]["joints"] == list(COCO17.joints)
    assert doc["units"]["keypoints3d"] == "m"
    assert len(doc["frames"]) == 388


def test_skeleton_on_95_percent_of_frames_and_anatomically_ordered(
    treadmill_run: tuple[Path, dict[str, Any]],
) -> None:
    _, doc = treadmill_run
    k2 = _array(doc["frames"], "keypoints2d")
    present = np.isfinite(k2[:, :, :2]).all(axis=2).sum(axis=1) >= 12
    assert present.mean() >= 0.95
    y = k2[..., 1]
    for hip, knee, ankle in ((11, 13, 15), (12, 14, 16)):
        ordered = (y[:, ankle] > y[:, knee]) & (y[:, knee] > y[:, hip])
        assert ordered.mean() >= 0.95, f"leg {COCO17.joints[hip]}: ordered on {ordered.mean():.0%} of frames"
    t = np.array([f["t"] for f in doc["frames"]])
    np.testing.assert_allclose(np.diff(t), 1 / 60, atol=1e-3)


def test_3d_is_root_relative_and_scaled_to_the_runner(treadmill_run: tuple[Path, dict[str, Any]]) -> None:
    _, doc = treadmill_run
    k3 = _array(doc["frames"], "keypoints3d")
    legs_and_trunk = [H36M17.index(j) for j in H36M17.joints if "wrist" not in j and "elbow" not in j]
    have = np.isfinite(k3[:, legs_and_trunk]).all(axis=(1, 2))
    assert have.mean() >= 0.95
    assert np.isfinite(k3).all(axis=2).mean() >= 0.95  # hidden joints (the far wrist) are the only gaps
    np.testing.assert_allclose(k3[have, 0], 0.0, atol=1e-9)
    # a shank (knee to ankle) of a 1.78 m runner is ~0.4 m (0.246 x height, anthropometric tables)
    shank = np.linalg.norm(
        k3[have][:, H36M17.index("left_knee")] - k3[have][:, H36M17.index("left_ankle")], axis=1
    )
    assert 0.3 < np.median(shank) < 0.55


def test_csv_and_contact_sheet(treadmill_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = treadmill_run
    with (out / "keypoints2d.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0][:5] == ["frame", "t", "nose_x", "nose_y", "nose_score"] and len(rows) == 389
    with (out / "poses3d.csv").open() as f:
        rows3 = list(csv.reader(f))
    assert rows3[0][2:5] == ["pelvis_x", "pelvis_y", "pelvis_z"] and len(rows3) == 389
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 300 and sheet.shape[1] > 600


def test_two_people_only_the_walker_is_kept(shared: Path, tmp_path: Path) -> None:
    """Sports2D demo: a man jumps on a roof (alone in view at first), a woman then walks across the
    foreground. The subject is the walker: every frame with a skeleton must be hers (feet on the ground,
    lower half of the frame), and the roof frames must be dropped with a warning."""
    dirs = os.pathsep.join(str(shared / d) for d in ("models", "reference"))
    video = shared / "data/walking-side-sports2d/demo.mp4"
    assert main(["analyze", str(video), "--out", str(tmp_path), "--models-dir", dirs, "--no-progress"]) == 0
    doc = json.loads((tmp_path / "poses.json").read_text())
    boxes = np.array([f["box"] if f["box"] else [np.nan] * 4 for f in doc["frames"]], float)
    kept = np.isfinite(boxes).all(axis=1)
    assert kept.sum() >= 100
    assert (boxes[kept, 3] > 0.7 * doc["video"]["height"]).all()
    assert not kept[:30].any()  # the walker has not entered yet
    assert any("another person" in w for w in doc["warnings"])


def test_overlay_video_has_every_frame(shared: Path, tmp_path: Path) -> None:
    dirs = os.pathsep.join(str(shared / d) for d in ("models", "reference"))
    video = shared / "data/running-side-outdoor/demo3.mp4"
    args = ["analyze", str(video), "--out", str(tmp_path), "--models-dir", dirs, "--no-progress", "--overlay"]
    assert main(args) == 0
    with av.open(str(tmp_path / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (480, 352)
        assert sum(1 for _ in container.decode(stream)) == 47


def test_pose_requests_in_flight_do_not_change_the_answer(model_dirs: list[Path], shared: Path) -> None:
    """With two 2D requests in flight a frame's crop comes from a pose one frame older; keypoints must
    agree with strictly sequential processing to within a few pixels (480x352 clip, runner ~250 px tall)."""
    models = ModelSet.resolve(ModelStore(model_dirs), get_preset("thunder"))
    video = shared / "data/running-side-outdoor/demo3.mp4"
    seq = analyze_video(video, EmbeddedBackend(models), AnalysisOptions(pose_workers=1))
    par = analyze_video(video, EmbeddedBackend(models, pose_threads=1), AnalysisOptions(pose_workers=2))
    both = np.isfinite(seq.kps2d[..., 0]) & np.isfinite(par.kps2d[..., 0])
    assert both.sum() >= 0.9 * np.isfinite(seq.kps2d[..., 0]).sum()
    diff = np.linalg.norm(seq.kps2d[..., :2] - par.kps2d[..., :2], axis=-1)[both]
    assert np.median(diff) < 2.0 and np.percentile(diff, 95) < 8.0


@pytest.mark.parametrize("pose_workers", [1, 2])
def test_a_backend_failing_mid_video_surfaces_its_own_error(
    model_dirs: list[Path], shared: Path, pose_workers: int
) -> None:
    """The inference server going away mid-video (decode thread running ahead) must end the analysis with
    that error, not with the reader's clean-up tripping over the running decoder."""
    models = ModelSet.resolve(ModelStore(model_dirs), get_preset("lightning"))
    backend = EmbeddedBackend(models, pose_threads=1)
    real = backend.pose2d
    calls = 0

    def failing(image: Any, boxes: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > 5:
            raise ServiceUnavailableError("the inference server (Triton) is unreachable", dependency="triton")
        return real(image, boxes)

    backend.pose2d = failing  # type: ignore[method-assign]
    video = shared / "data/running-treadmill-phone/IMG_5396.mp4"
    with pytest.raises(ServiceUnavailableError):
        analyze_video(video, backend, AnalysisOptions(pose_workers=pose_workers, prefetch=8))


@pytest.mark.parametrize(("preset", "joints"), [("rtmpose-random", 17), ("rtmpose-halpe26-random", 26)])
def test_rtmpose_family_runs_end_to_end(
    preset: str, joints: int, shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Plumbing only: random weights give meaningless keypoints, so only shapes and provenance are checked.
    The poses are written; no running metric comes out of them, which the exit code and one line say
    (the partial-result contract: never a silent success)."""
    dirs = os.pathsep.join(str(shared / d) for d in ("models", "reference"))
    video = shared / "data/running-side-outdoor/demo3.mp4"
    args = ["analyze", str(video), "--out", str(tmp_path), "--models-dir", dirs, "--no-progress"]
    assert main([*args, "--preset", preset]) == 2
    assert "partial result" in capsys.readouterr().err
    assert not (tmp_path / "metrics.json").exists()
    doc = json.loads((tmp_path / "poses.json").read_text())
    assert doc["models"]["pose2d"]["family"] == "rtmpose"
    assert doc["models"]["pose2d"]["random_weights"] is True
    assert len(doc["skeletons"]["keypoints2d"]["joints"]) == joints
    assert all(len(f["keypoints2d_raw"]) == joints and len(f["keypoints3d"]) == 17 for f in doc["frames"])


def test_models_command_lists_presets_and_states(shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = os.pathsep.join(str(shared / d) for d in ("models", "reference"))
    assert main(["models", "--models-dir", dirs]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert lines["movenet-thunder"].rstrip().endswith("ok")
    assert "missing" in lines["rtmpose-m-body7"]
    assert "RANDOM WEIGHTS" in lines["rtmpose-m-coco17-random"]
    assert "thunder" in lines


def _step_cadences(out: Path) -> np.ndarray:
    doc = json.loads((out / "metrics.json").read_text())
    return np.array([s["metrics"]["cadence_spm"] for s in doc["steps"]], dtype=float)


def test_running_metrics_of_the_treadmill_clip(treadmill_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = treadmill_run
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["schema"] == "gaitway.metrics"
    cadence = doc["summary"]["cadence_spm"]
    assert cadence["n"] >= 10 and 140 < cadence["mean"] < 200  # treadmill running range
    assert cadence["ci95_low"] < cadence["mean"] < cadence["ci95_high"]
    assert not any("slow motion" in f or "--slowmo" in f for f in doc["flags"])
    # root-relative 3D: the vertical oscillation comes from the 2D pelvis track (running: ~5-10 cm)
    vo = doc["summary"]["vertical_oscillation_cm"]
    assert vo["n"] >= 5 and 4.0 < vo["mean"] < 12.0
    with (out / "steps.csv").open() as f:
        assert len(list(csv.reader(f))) == len(doc["steps"]) + 1
    for name in ("angles.png", "steps.png", "trajectories.png", "metrics.xlsx"):
        assert (out / name).stat().st_size > 10_000


def test_the_cli_writes_lab_files_of_the_treadmill_clip(treadmill_run: tuple[Path, dict[str, Any]]) -> None:
    """`gaitway analyze IMG_5396.mp4 --height 1.78`: a C3D at the clip's 60 Hz with the 17 joints and the
    foot strikes the metrics found, a TRC and a MOT in OpenSim's layouts."""
    out, _ = treadmill_run
    metrics = json.loads((out / "metrics.json").read_text())
    c3d = ezc3d.c3d(str(out / "gait.c3d"))
    point = c3d["parameters"]["POINT"]
    assert point["RATE"]["value"][0] == 60.0 and point["UNITS"]["value"] == ["mm"]
    assert c3d["header"]["points"]["size"] >= 17 and c3d["header"]["analogs"]["size"] == 0
    ev = c3d["parameters"]["EVENT"]
    strikes = [
        (ctx, 60 * t[0] + t[1])
        for ctx, label, t in zip(
            ev["CONTEXTS"]["value"], ev["LABELS"]["value"], np.array(ev["TIMES"]["value"]).T, strict=True
        )
        if label == "Foot Strike"
    ]
    truth = [e for e in metrics["events"] if e["kind"] == "strike"]
    assert len(strikes) == len(truth) >= 10
    assert {ctx for ctx, _ in strikes} == {"Left", "Right"}
    got = sorted((ctx.lower(), round(t, 4)) for ctx, t in strikes)
    want = sorted((e["side"], round(e["t"], 4)) for e in truth)
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=0.5 / 60)
    trc = (out / "markers.trc").read_text().splitlines()
    assert trc[0].startswith("PathFileType") and "Units" in trc[1] and trc[2].split("\t")[4] == "m"
    mot = (out / "angles.mot").read_text()
    assert "inDegrees=yes" in mot and "knee_angle_r" in mot and "endheader" in mot


def test_coach_metrics_of_the_treadmill_clip(treadmill_run: tuple[Path, dict[str, Any]]) -> None:
    """IMG_5396 (side view, runner 1.78 m): the angle metrics a coach asks for come from the 2D sagittal
    path, on most of the 16-17 steps, each naming its source and that source's validated error, within
    the running literature's ranges (knee flexion at contact 5-30 deg, stance peak 35-60 deg)."""
    out, _ = treadmill_run
    doc = json.loads((out / "metrics.json").read_text())
    steps = doc["steps"]
    assert len(steps) >= 16
    assert doc["view"]["kind"] == "sagittal" and abs(doc["view"]["yaw_deg"]) < 22.5
    ranges = {
        "knee_flexion_ic_deg": (5.0, 30.0),
        "tibia_angle_ic_deg": (-10.0, 25.0),
        "overstride_cm": (0.0, 60.0),
        "trunk_lean_stance_deg": (-15.0, 20.0),
    }
    for name, (low, high) in ranges.items():
        reported = [s for s in steps if s["metrics"][name] is not None and name not in s["excluded"]]
        assert len(reported) >= 12, name
        assert all(s["sources"][name] in ("2d", "2d_corrected") for s in reported), name
        assert all(low <= s["metrics"][name] <= high for s in reported), name
    knee = [s for s in steps if "knee_flexion_ic_deg" not in s["excluded"]]
    assert all(0 < s["errors_deg"]["knee_flexion_ic_deg"] < 5 for s in knee)  # validated RMSE at its view
    peak = doc["summary"]["knee_flexion_peak_stance_deg"]
    assert peak["n"] >= 10 and 35.0 <= peak["mean"] <= 60.0
    assert doc["definitions"]["knee_flexion_ic_deg"]["normal"] == [10.0, 25.0]
    assert "Novacheck" in doc["definitions"]["knee_flexion_ic_deg"]["normal_source"]
    # the nominal time base is right, and the physics says so
    assert doc["time_base"]["source"] == "nominal" and not doc["time_base"]["applied"]


def test_slow_motion_without_metadata_is_retimed_from_physics(
    treadmill_run: tuple[Path, dict[str, Any]], shared: Path, tmp_path: Path
) -> None:
    """IMG_5396 re-timed 5x without metadata (the truth is known): the time base is estimated within 15 %,
    the whole analysis re-runs on it (2D cleaning included), and the cadence comes back within 5 % of the
    clip's own; every time-based value is marked as estimated."""
    slow = tmp_path / "slow.mp4"
    retime(shared / "data/running-treadmill-phone/IMG_5396.mp4", slow, 5.0)
    dirs = os.pathsep.join(str(shared / d) for d in ("models", "reference"))
    out = tmp_path / "out"
    assert main(["analyze", str(slow), "--out", str(out), "--models-dir", dirs, "--no-progress"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    tb = doc["time_base"]
    assert tb["applied"] and tb["estimated"] and tb["source"] == "estimated"
    assert tb["factor"] == pytest.approx(5.0, rel=0.15)
    assert tb["low"] < tb["factor"] < tb["high"]
    assert any("estimated from physics" in f for f in doc["flags"])
    real = json.loads((treadmill_run[0] / "metrics.json").read_text())["summary"]["cadence_spm"]["mean"]
    assert doc["summary"]["cadence_spm"]["mean"] == pytest.approx(real, rel=0.05)
    poses = json.loads((out / "poses.json").read_text())
    assert poses["frames"][-1]["t"] == pytest.approx(treadmill_run[1]["frames"][-1]["t"], rel=0.15)


def test_a_clip_shorter_than_a_stride_reports_its_contacts(shared: Path, tmp_path: Path) -> None:
    """demo3 (1.5 strides, 47 frames): no complete step, but metrics.json holds the contact it shows, with
    its angles and their source, and a note saying why there is no cadence."""
    dirs = os.pathsep.join(str(shared / d) for d in ("models", "reference"))
    video = shared / "data/running-side-outdoor/demo3.mp4"
    assert main(["analyze", str(video), "--out", str(tmp_path), "--models-dir", dirs, "--no-progress"]) == 0
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert len(doc["steps"]) >= 1
    contact = doc["steps"][0]
    assert contact["metrics"]["knee_flexion_ic_deg"] is not None
    assert contact["sources"]["knee_flexion_ic_deg"] in ("2d", "2d_corrected")
    assert contact["metrics"]["cadence_spm"] is None
    assert any("no complete step" in f for f in doc["flags"])
