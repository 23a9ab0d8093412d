"""The lab exports (C3D, TRC, MOT) read back: ezc3d for the C3D, small parsers of OpenSim's TRC and MOT
layouts written here from the formats' descriptions. Known truths: an analytic runner whose joints, knee
angles and events are designed, and a real analysis of a video whose arrays the files must reproduce."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ezc3d
import numpy as np
import pytest
from gateway_support import DEMO3, gateway_settings

from gateway.core import AnalysisOutcome, AnalysisSpec, Engine, RunnerInfo
from services.errors import InputError
from services.kinematics.labformats import (
    MARKERS,
    MAX_BRIDGED_GAP_S,
    LabEvent,
    LabTrial,
    trial_from_poses,
    write_c3d,
    write_lab_exports,
    write_mot,
    write_trc,
)
from services.kinematics.schema import EventOut, KinematicsResponse
from services.pose.sequence import frame_rate
from services.pose.skeletons import H36M17

FS = 100.0  # Hz, the analytic runner's frame rate
STRIDE_HZ = 1.4


# --------------------------------------------------------------------------------------------------------
# an analytic runner


def knee_truth(t: np.ndarray, side: str) -> np.ndarray:
    """Knee flexion (deg) of the analytic runner: 40 +- 30 deg once per stride, the sides in antiphase."""
    phase = 0.0 if side == "right" else np.pi
    return 40.0 + 30.0 * np.sin(2 * np.pi * STRIDE_HZ * t + phase)


def thigh_truth(t: np.ndarray, side: str) -> np.ndarray:
    phase = 1.0 if side == "right" else 1.0 + np.pi
    return 10.0 + 25.0 * np.sin(2 * np.pi * STRIDE_HZ * t + phase)


def lean_truth(t: np.ndarray) -> np.ndarray:
    return 8.0 + 2.0 * np.sin(4 * np.pi * STRIDE_HZ * t)


def runner_lab(t: np.ndarray) -> dict[str, np.ndarray]:
    """H36M joint -> (T, 3) metres in the lab frame (X forward, Y left, Z up), pelvis at the origin: legs of a
    0.45 m thigh and a 0.43 m shank in sagittal planes at their hips, with the designed thigh angles (from the
    downward vertical, + forward) and knee flexions; a trunk leaning forward by ``lean_truth``."""
    zero = np.zeros_like(t)

    def at(x: np.ndarray | float, y: float, z: np.ndarray | float) -> np.ndarray:
        return np.stack([zero + x, zero + y, zero + z], axis=1)

    j: dict[str, np.ndarray] = {"pelvis": at(0.0, 0.0, 0.0)}
    for side, y in (("right", -0.1), ("left", 0.1)):
        phi = np.radians(thigh_truth(t, side))
        shank = phi - np.radians(knee_truth(t, side))
        hip = at(0.0, y, 0.0)
        knee = hip + 0.45 * np.stack([np.sin(phi), zero, -np.cos(phi)], axis=1)
        j |= {f"{side}_hip": hip, f"{side}_knee": knee}
        j[f"{side}_ankle"] = knee + 0.43 * np.stack([np.sin(shank), zero, -np.cos(shank)], axis=1)
    lean = np.radians(lean_truth(t))
    up = np.stack([np.sin(lean), zero, np.cos(lean)], axis=1)
    j["spine"] = 0.25 * up
    j["thorax"] = 0.5 * up
    j["neck_nose"] = 0.62 * up + at(0.08, 0.0, 0.0)
    j["head"] = 0.72 * up
    for side, y in (("right", -0.18), ("left", 0.18)):
        shoulder = j["thorax"] + at(0.0, y, 0.0)
        j[f"{side}_shoulder"] = shoulder
        j[f"{side}_elbow"] = shoulder + at(0.0, 0.0, -0.28)
        j[f"{side}_wrist"] = j[f"{side}_elbow"] + at(0.2, 0.0, 0.0)
    return j


def to_camera(lab: dict[str, np.ndarray], facing: int) -> np.ndarray:
    """(T, 17, 3) H36M poses in camera axes (x right, y down, z away) of a runner moving towards +x
    (``facing`` +1, the camera sees the right side) or -x (-1, the left side)."""
    pose = np.stack([lab[name] for name in H36M17.joints], axis=1)
    x, y, z = pose[..., 0], pose[..., 1], pose[..., 2]
    cam = np.stack([x, -z, y], axis=-1) if facing > 0 else np.stack([-x, -z, -y], axis=-1)
    return np.asarray(cam)


def knee_from_points(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray) -> np.ndarray:
    a, b = hip - knee, ankle - knee
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.asarray(180.0 - np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


EVENTS = [
    ("right", "strike", 0.105),
    ("right", "toe_off", 0.352),
    ("left", "strike", 0.461),
    ("left", "toe_off", 0.7),
]


def response(t: np.ndarray, series: dict[str, np.ndarray], sources: dict[str, str] | None = None) -> Any:
    """A kinematics response holding only what the exports read: times, events, angle series."""
    return KinematicsResponse(
        steps=[],
        summary={},
        summary_by_side={},
        asymmetry_pct={},
        events=[EventOut(side=s, kind=k, index=round(tt * FS), t=tt) for s, k, tt in EVENTS],
        t=[float(x) for x in t],
        series={k: [None if not np.isfinite(x) else float(x) for x in v] for k, v in series.items()},
        flags=[],
        units={},
        series_sources=sources or dict.fromkeys(series, "3d"),
    )


def analytic_series(t: np.ndarray) -> dict[str, np.ndarray]:
    out = {f"{s}_knee_flexion_deg": knee_truth(t, s) for s in ("left", "right")}
    out |= {f"{s}_hip_flexion_deg": thigh_truth(t, s) + lean_truth(t) for s in ("left", "right")}
    out |= {f"{s}_elbow_flexion_deg": np.full(t.size, 90.0) for s in ("left", "right")}
    out |= {f"{s}_ankle_dorsiflexion_deg": np.full(t.size, np.nan) for s in ("left", "right")}
    out["trunk_lean_deg"] = lean_truth(t)
    return out


@pytest.fixture(scope="module")
def analytic() -> tuple[np.ndarray, dict[str, np.ndarray], LabTrial]:
    t = np.arange(200) / FS
    lab = runner_lab(t)
    trial = trial_from_poses(
        t,
        to_camera(lab, +1),
        metric=True,
        units="m",
        metrics=response(t, analytic_series(t)),
        description="run",
    )
    return t, lab, trial


# --------------------------------------------------------------------------------------------------------
# readers of the OpenSim text formats


def read_trc(path: Path) -> tuple[dict[str, str], list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(header values by key, marker names, frame numbers (M,), times (M,), coordinates (M, N, 3))."""
    lines = path.read_text().split("\n")
    assert lines[0].split("\t")[:3] == ["PathFileType", "4", "(X/Y/Z)"]
    meta = dict(zip(lines[1].split("\t"), lines[2].split("\t"), strict=True))
    head = lines[3].split("\t")
    assert head[:2] == ["Frame#", "Time"]
    names = [n for n in head[2:] if n]
    axes = lines[4].split("\t")
    assert axes[2:] == [f"{a}{i}" for i in range(1, len(names) + 1) for a in "XYZ"]
    rows = [line.split("\t") for line in lines[5:] if line]
    assert all(len(r) == 2 + 3 * len(names) for r in rows)
    values = np.array([[float(c) if c else np.nan for c in r[2:]] for r in rows]).reshape(len(rows), -1, 3)
    return meta, names, np.array([int(r[0]) for r in rows]), np.array([float(r[1]) for r in rows]), values


def read_mot(path: Path) -> tuple[dict[str, str], list[str], list[str], np.ndarray]:
    """(header keys, header comment lines, column names, data (R, C))."""
    lines = path.read_text().split("\n")
    end = lines.index("endheader")
    meta = dict(line.split("=", 1) for line in lines[1:end] if "=" in line)
    comments = [line for line in lines[1:end] if line and "=" not in line]
    columns = lines[end + 1].split("\t")
    data = np.array([[float(c) for c in line.split("\t")] for line in lines[end + 2 :] if line])
    assert data.shape[1] == len(columns)
    return meta, comments, columns, data


# --------------------------------------------------------------------------------------------------------
# analytic runner


@pytest.mark.parametrize("facing", [1, -1])
def test_lab_frame_is_forward_left_up_whichever_way_the_runner_moves(facing: int) -> None:
    t = np.arange(150) / FS
    lab = runner_lab(t)
    trial = trial_from_poses(t, to_camera(lab, facing), metric=True, units="m")
    for name, joint in MARKERS.items():
        np.testing.assert_allclose(trial.markers[name], lab[joint], atol=1e-9, err_msg=name)
    assert trial.rate_hz == FS
    np.testing.assert_allclose(trial.t, t, atol=1e-12)


def test_c3d_holds_the_points_in_mm_the_rate_and_the_events(
    analytic: tuple[np.ndarray, dict[str, np.ndarray], LabTrial], tmp_path: Path
) -> None:
    t, lab, trial = analytic
    write_c3d(trial, tmp_path / "gait.c3d")
    c3d = ezc3d.c3d(str(tmp_path / "gait.c3d"))
    point = c3d["parameters"]["POINT"]
    assert point["RATE"]["value"][0] == FS
    assert point["UNITS"]["value"] == ["mm"]
    assert point["LABELS"]["value"] == list(MARKERS)
    assert c3d["header"]["points"]["size"] == 17 and c3d["header"]["points"]["last_frame"] == t.size - 1
    assert c3d["parameters"]["ANALOG"]["USED"]["value"][0] == 0 and c3d["data"]["analogs"].size == 0
    pts = c3d["data"]["points"]  # (4, N, M)
    for i, (name, joint) in enumerate(MARKERS.items()):
        np.testing.assert_allclose(pts[:3, i].T, lab[joint] * 1000.0, atol=1e-3, err_msg=name)  # float32 mm
    labels = point["LABELS"]["value"]
    for side, s in (("right", "R"), ("left", "L")):
        legs = (pts[:3, labels.index(f"{s}{j}")].T for j in ("Hip", "Knee", "Ankle"))
        np.testing.assert_allclose(knee_from_points(*legs), knee_truth(t, side), atol=1e-3)
    ev = c3d["parameters"]["EVENT"]
    assert ev["USED"]["value"][0] == len(EVENTS) and ev["USED"]["type"] == 2
    assert ev["CONTEXTS"]["value"] == ["Right", "Right", "Left", "Left"]
    assert ev["LABELS"]["value"] == ["Foot Strike", "Foot Off", "Foot Strike", "Foot Off"]
    times = ev["TIMES"]["value"]  # row 0 minutes, row 1 seconds
    np.testing.assert_array_equal(times[0], 0.0)
    np.testing.assert_allclose(times[1], [e[2] for e in EVENTS], atol=1e-6)
    assert ev["ICON_IDS"]["value"].tolist() == [1, 2, 1, 2] and ev["ICON_IDS"]["type"] == 2
    assert ev["GENERIC_FLAGS"]["value"].tolist() == [0, 0, 0, 0]


def test_event_times_past_a_minute_are_minutes_and_seconds(tmp_path: Path) -> None:
    t = np.arange(100) / FS
    trial = trial_from_poses(t, to_camera(runner_lab(t), 1), metric=True, units="m")
    late = LabTrial(**{**trial.__dict__, "events": (LabEvent(side="left", kind="strike", t=125.25),)})
    write_c3d(late, tmp_path / "late.c3d")
    times = ezc3d.c3d(str(tmp_path / "late.c3d"))["parameters"]["EVENT"]["TIMES"]["value"]
    np.testing.assert_allclose(times[:, 0], [2.0, 5.25], atol=1e-5)


def test_trc_is_opensim_y_up_in_metres(
    analytic: tuple[np.ndarray, dict[str, np.ndarray], LabTrial], tmp_path: Path
) -> None:
    t, lab, trial = analytic
    hidden = dict(trial.markers)
    hidden["LWrist"] = hidden["LWrist"].copy()
    hidden["LWrist"][10:20] = np.nan
    write_trc(LabTrial(**{**trial.__dict__, "markers": hidden}), tmp_path / "markers.trc")
    meta, names, frames, times, xyz = read_trc(tmp_path / "markers.trc")
    assert meta == {
        "DataRate": "100", "CameraRate": "100", "NumFrames": str(t.size), "NumMarkers": "17", "Units": "m",
        "OrigDataRate": "100", "OrigDataStartFrame": "1", "OrigNumFrames": str(t.size),
    }  # fmt: skip
    assert names == list(MARKERS)
    np.testing.assert_array_equal(frames, np.arange(1, t.size + 1))
    np.testing.assert_allclose(times, t, atol=1e-6)
    for i, (name, joint) in enumerate(MARKERS.items()):
        x, y, z = lab[joint].T  # lab: X forward, Y left, Z up -> OpenSim: X forward, Y up, Z right
        expected = np.stack([x, z, -y], axis=1)
        if name == "LWrist":
            expected[10:20] = np.nan
        np.testing.assert_allclose(xyz[:, i], expected, atol=1e-6, err_msg=name)
    rhip, lhip = xyz[:, names.index("RHip")], xyz[:, names.index("LHip")]
    assert np.all(rhip[:, 2] > lhip[:, 2])  # OpenSim's Z points to the right


def test_mot_holds_the_angles_under_opensim_names_with_their_signs(
    analytic: tuple[np.ndarray, dict[str, np.ndarray], LabTrial], tmp_path: Path
) -> None:
    t, _, trial = analytic
    write_mot(trial, tmp_path / "angles.mot")
    meta, comments, columns, data = read_mot(tmp_path / "angles.mot")
    assert (tmp_path / "angles.mot").read_text().split("\n")[0] == "Coordinates"
    assert meta == {"version": "1", "nRows": str(t.size), "nColumns": "8", "inDegrees": "yes"}
    assert columns == [
        "time", "pelvis_tilt", "hip_flexion_r", "hip_flexion_l", "knee_angle_r", "knee_angle_l",
        "elbow_flex_r", "elbow_flex_l",
    ]  # fmt: skip
    col = {name: data[:, i] for i, name in enumerate(columns)}
    np.testing.assert_allclose(col["time"], t, atol=1e-6)
    for side, s in (("right", "r"), ("left", "l")):
        np.testing.assert_allclose(col[f"knee_angle_{s}"], knee_truth(t, side), atol=1e-4)
        np.testing.assert_allclose(col[f"hip_flexion_{s}"], thigh_truth(t, side) + lean_truth(t), atol=1e-4)
    np.testing.assert_allclose(col["pelvis_tilt"], -lean_truth(t), atol=1e-4)  # forward lean = anterior
    text = " ".join(comments)
    assert "knee_angle positive for flexion" in text and "ankle_angle positive for dorsiflexion" in text
    assert "ankle_angle_r left out: not measured" in text


def test_mot_bridges_short_gaps_leaves_out_long_ones_and_crops_unknown_edges(
    analytic: tuple[np.ndarray, dict[str, np.ndarray], LabTrial], tmp_path: Path
) -> None:
    t, _, trial = analytic
    angles = {k: v.copy() for k, v in trial.angles.items()}
    short = int(MAX_BRIDGED_GAP_S * FS) - 4  # 6 frames, where the knee angle changes fastest
    angles["right_knee_flexion_deg"][33 : 33 + short] = np.nan
    angles["left_elbow_flexion_deg"][80:120] = np.nan  # 0.4 s
    angles["left_hip_flexion_deg"][:5] = np.nan
    write_mot(LabTrial(**{**trial.__dict__, "angles": angles}), tmp_path / "angles.mot")
    meta, comments, columns, data = read_mot(tmp_path / "angles.mot")
    assert (
        "elbow_flex_l" not in columns
        and "elbow_flex_l left out: missing over more than 0.1 s" in " ".join(comments)
    )
    assert meta["nRows"] == str(t.size - 5) and np.isfinite(data).all()
    np.testing.assert_allclose(data[:, 0], t[5:], atol=1e-6)
    knee = data[:, columns.index("knee_angle_r")]
    np.testing.assert_allclose(knee, knee_truth(t[5:], "right"), atol=0.1)  # the bridged frames too


def test_irregular_frame_times_are_resampled_onto_the_frame_rate() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(300) / FS + rng.uniform(-0.002, 0.002, 300)
    t[0] = 0.0
    lab = runner_lab(t)
    trial = trial_from_poses(t, to_camera(lab, 1), metric=True, units="m")
    assert trial.rate_hz == pytest.approx(frame_rate(t)) and abs(trial.rate_hz - FS) < 1.0
    np.testing.assert_allclose(np.diff(trial.t), 1.0 / trial.rate_hz, atol=1e-9)
    legs = (trial.markers[f"R{j}"] for j in ("Hip", "Knee", "Ankle"))
    knee = knee_from_points(*legs)
    ok = np.isfinite(knee)
    assert ok.sum() >= 295
    np.testing.assert_allclose(knee[ok], knee_truth(trial.t[ok], "right"), atol=0.3)


def test_without_a_metric_scale_only_the_mot_is_written(tmp_path: Path) -> None:
    t = np.arange(120) / FS
    pose = to_camera(runner_lab(t), 1) * 3.7  # the lifter's own units
    fake = SimpleNamespace(
        t=t,
        kps3d=pose,
        sequence=SimpleNamespace(metric=False, units3d="model units"),
        info=SimpleNamespace(path="clip.mp4"),
    )
    out = write_lab_exports(fake, response(t, analytic_series(t)), tmp_path)  # type: ignore[arg-type]
    assert set(out.paths) == {"mot"} and set(out.skipped) == {"c3d", "trc"}
    assert all("--height" in why for why in out.skipped.values())
    (warning,) = out.warnings  # one reason, one sentence
    assert warning.startswith("c3d and trc exports not written: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["angles.mot"]
    trial = trial_from_poses(t, pose, metric=False, units="model units")
    with pytest.raises(InputError, match="metric"):
        write_c3d(trial, tmp_path / "x.c3d")
    with pytest.raises(InputError, match="metric"):
        write_trc(trial, tmp_path / "x.trc")


def test_an_analysis_without_running_metrics_still_gets_its_points(tmp_path: Path) -> None:
    t = np.arange(120) / FS
    fake = SimpleNamespace(
        t=t,
        kps3d=to_camera(runner_lab(t), 1),
        sequence=SimpleNamespace(metric=True, units3d="m"),
        info=SimpleNamespace(path="clip.mp4"),
    )
    out = write_lab_exports(fake, None, tmp_path)  # type: ignore[arg-type]
    assert set(out.paths) == {"c3d", "trc"} and "mot" in out.skipped
    assert ezc3d.c3d(str(out.paths["c3d"]))["parameters"]["EVENT"]["USED"]["value"][0] == 0


def test_an_analysis_without_a_skeleton_gets_no_lab_file_and_says_why(tmp_path: Path) -> None:
    t = np.arange(50) / FS
    fake = SimpleNamespace(
        t=t,
        kps3d=np.full((50, 17, 3), np.nan),
        sequence=SimpleNamespace(metric=True, units3d="m"),
        info=SimpleNamespace(path="clip.mp4"),
    )
    out = write_lab_exports(fake, None, tmp_path)  # type: ignore[arg-type]
    assert out.paths == {} and set(out.skipped) == {"c3d", "trc", "mot"}
    assert all("NaN" in why for why in out.skipped.values()) and list(tmp_path.iterdir()) == []
    (warning,) = out.warnings
    assert warning.startswith("c3d and trc and mot exports not written: ")


# --------------------------------------------------------------------------------------------------------
# a real analysis


@pytest.fixture(scope="module")
def demo3(tmp_path_factory: pytest.TempPathFactory) -> tuple[AnalysisOutcome, Path, Any]:
    """demo3 (47 frames, 29.97 fps, one foot contact) analysed on the lightning preset with a height."""
    root = tmp_path_factory.mktemp("demo3")
    engine = Engine(gateway_settings(root))
    outcome = engine.analyze(
        DEMO3, root / "run", AnalysisSpec(runner=RunnerInfo(height_m=1.7), preset="lightning")
    )
    assert outcome.metrics is not None, outcome.metrics_error
    return outcome, root / "lab", write_lab_exports(outcome.result, outcome.metrics, root / "lab")


def test_a_video_analysis_exports_c3d_trc_and_mot(demo3: tuple[AnalysisOutcome, Path, Any]) -> None:
    outcome, _, out = demo3
    assert out.skipped == {} and {k: p.name for k, p in out.paths.items()} == {
        "c3d": "gait.c3d", "trc": "markers.trc", "mot": "angles.mot",
    }  # fmt: skip
    result, metrics = outcome.result, outcome.metrics
    assert metrics is not None
    c3d = ezc3d.c3d(str(out.paths["c3d"]))
    assert c3d["parameters"]["POINT"]["RATE"]["value"][0] == pytest.approx(frame_rate(result.t), rel=1e-6)
    assert abs(c3d["parameters"]["POINT"]["RATE"]["value"][0] - 29.97) < 0.01
    labels = c3d["parameters"]["POINT"]["LABELS"]["value"]
    assert len(labels) >= 17 and c3d["parameters"]["POINT"]["UNITS"]["value"] == ["mm"]
    pts = c3d["data"]["points"][:3].transpose(2, 1, 0)  # (M, N, 3) mm
    assert pts.shape[0] == len(result.t)
    # the same skeleton: every bone as long as in the analysis' own 3D (a rotation keeps lengths)
    src = result.kps3d * 1000.0
    for a, b in H36M17.edges:
        name_a = next(n for n, j in MARKERS.items() if j == H36M17.joints[a])
        name_b = next(n for n, j in MARKERS.items() if j == H36M17.joints[b])
        got = np.linalg.norm(pts[:, labels.index(name_a)] - pts[:, labels.index(name_b)], axis=1)
        want = np.linalg.norm(src[:, a] - src[:, b], axis=1)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=0.01)
    # lab axes: the right hip on the runner's right (-Y), the head above the pelvis (+Z)
    assert np.nanmedian(pts[:, labels.index("RHip"), 1]) < 0 < np.nanmedian(pts[:, labels.index("LHip"), 1])
    assert np.nanmedian(pts[:, labels.index("Head"), 2]) > 500
    # the events are the kinematics engine's
    ev = c3d["parameters"]["EVENT"]
    want = sorted(metrics.events, key=lambda e: e.t)
    assert any(e.kind == "strike" for e in want)
    assert ev["USED"]["value"][0] == len(want)
    assert ev["CONTEXTS"]["value"] == [e.side.capitalize() for e in want]
    assert ev["LABELS"]["value"] == [{"strike": "Foot Strike", "toe_off": "Foot Off"}[e.kind] for e in want]
    np.testing.assert_allclose(ev["TIMES"]["value"][1], [e.t - result.t[0] for e in want], atol=1e-5)
    # the TRC holds the same points, OpenSim's way
    meta, names, _, times, xyz = read_trc(out.paths["trc"])
    assert names == labels and meta["Units"] == "m" and int(meta["NumFrames"]) == len(result.t)
    np.testing.assert_allclose(times, result.t - result.t[0], atol=1e-6)
    lab_m = pts / 1000.0
    np.testing.assert_allclose(xyz, np.stack([lab_m[..., 0], lab_m[..., 2], -lab_m[..., 1]], -1), atol=2e-6)
    # the MOT holds the reported angle series
    _, _, columns, data = read_mot(out.paths["mot"])
    assert {"knee_angle_r", "knee_angle_l", "hip_flexion_r", "hip_flexion_l"} <= set(columns)
    rows = np.rint(data[:, 0] * frame_rate(result.t)).astype(int)  # the frames it kept
    for coord, series in (
        ("knee_angle_r", "right_knee_flexion_deg"),
        ("hip_flexion_l", "left_hip_flexion_deg"),
    ):
        reported = np.array([np.nan if v is None else v for v in metrics.series[series]])[rows]
        known = np.isfinite(reported)  # the rest: short gaps the MOT bridged
        assert known.mean() > 0.9
        np.testing.assert_allclose(data[known, columns.index(coord)], reported[known], atol=1e-4)
