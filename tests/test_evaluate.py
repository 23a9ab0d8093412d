"""Evaluation tool: known truths of the pure functions (services.kinematics.evaluate) and the
``gaitway evaluate`` sub-commands on the shared reference data (H36M, COCO, RBDS mocap)."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway import evaluate as cli_evaluate
from services.errors import FrameRateError, NoValidDataError, ShapeError
from services.kinematics.evaluate import (
    align,
    angle_rmse,
    estimate_forward,
    estimate_lag,
    evaluate_3d,
    h36m17_from_legs,
    n_mpjpe,
    per_joint_errors,
    project_to_side_camera,
    resample,
    side_camera,
)
from services.pose.metrics import mpjpe
from services.settings import Settings

# ----------------------------------------------------------------------------------------------------
# 3D errors
# ----------------------------------------------------------------------------------------------------


def test_n_mpjpe_of_a_scaled_copy_is_zero() -> None:
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(5, 17, 3))
    gt -= gt[:, :1]
    scales = np.array([0.5, 0.9, 1.0, 1.3, 2.0])[:, None, None]
    pred = gt * scales
    np.testing.assert_allclose(n_mpjpe(pred, gt), 0.0, atol=1e-12)
    assert np.all(mpjpe(pred[[0, 1, 3, 4]], gt[[0, 1, 3, 4]]) > 0.01)
    # a rotation is not forgiven (no Procrustes); a wrong scale on top of noise is mostly forgiven
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert np.all(n_mpjpe(gt @ rot.T, gt) > 0.1)
    noisy = gt + rng.normal(scale=0.02, size=gt.shape)
    assert np.all(n_mpjpe(1.5 * noisy, gt) < 0.5 * mpjpe(1.5 * noisy, gt))


def test_per_joint_errors_of_a_known_offset() -> None:
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(4, 6, 3))
    offsets = np.zeros((6, 3))
    offsets[:, 0] = 0.01 * np.arange(6)  # joint j is off by j cm along x
    offsets[3] = [0.0, 0.03, 0.04]  # joint 3 by 5 cm
    pred = gt + offsets
    expected = [0.0, 0.01, 0.02, 0.05, 0.04, 0.05]
    np.testing.assert_allclose(per_joint_errors(pred, gt), expected, atol=1e-12)
    pred[0, 2] = np.nan  # a missing joint leaves that pose out of that joint's mean only
    np.testing.assert_allclose(per_joint_errors(pred, gt), expected, atol=1e-12)
    pred[:, 4] = np.nan
    assert math.isnan(per_joint_errors(pred, gt)[4])
    with pytest.raises(ShapeError):
        per_joint_errors(pred[:, :5], gt)


def test_evaluate_3d_table_and_incomplete_poses() -> None:
    rng = np.random.default_rng(2)
    gt = rng.normal(size=(3, 4, 3))
    gt -= gt[:, :1]
    pred = gt * 1.1
    pred[2, 1] = np.nan
    names = ["pelvis", "a", "b", "c"]
    res = evaluate_3d(pred, gt, names)
    assert res["n_poses"] == 2 and res["joints"] == names
    assert res["n_mpjpe"] == pytest.approx(0.0, abs=1e-12)
    assert res["pa_mpjpe"] == pytest.approx(0.0, abs=1e-9)
    assert res["mpjpe"] == pytest.approx(float(mpjpe(pred[:2], gt[:2]).mean()))
    assert res["per_joint"]["pelvis"] == 0.0
    assert len(res["per_pose"]["mpjpe"]) == 2
    with pytest.raises(NoValidDataError):
        evaluate_3d(np.full_like(gt, np.nan), gt, names)
    with pytest.raises(ShapeError):
        evaluate_3d(pred, gt, names[:3])


# ----------------------------------------------------------------------------------------------------
# Resampling and temporal alignment
# ----------------------------------------------------------------------------------------------------


def _gait_like(t: np.ndarray) -> np.ndarray:
    """A knee-angle-like periodic signal (1.43 strides/s, three harmonics), degrees."""
    w = 2 * np.pi * 1.43
    return np.asarray(40 + 30 * np.sin(w * t) + 15 * np.sin(2 * w * t + 1.0) + 5 * np.sin(3 * w * t + 2.0))


@pytest.mark.parametrize("lag", [0.123, -0.123, 0.0, 0.0371])
@pytest.mark.parametrize("kind", ["sine", "gait"])
def test_estimate_lag_recovers_a_delay_across_sampling_rates(lag: float, kind: str) -> None:
    def f(t: np.ndarray) -> np.ndarray:
        return np.sin(2 * np.pi * 1.4 * t) if kind == "sine" else _gait_like(t)

    t_a = np.arange(0.0, 10.0, 1 / 60)  # 60 Hz video
    t_b = 0.05 + np.arange(0.0, 9.9, 1 / 150)  # 150 Hz mocap, another start time
    a, b = f(t_a), f(t_b - lag)  # b shows a's events `lag` seconds later
    assert abs(estimate_lag(t_a, a, t_b, b, max_lag_s=0.3) - lag) < 1e-3
    assert abs(estimate_lag(t_b, b, t_a, a, max_lag_s=0.3) + lag) < 1e-3
    # NaN-safe: a gap in one signal, scattered dropouts in the other
    a[100:130] = np.nan
    b[::7] = np.nan
    assert abs(estimate_lag(t_a, a, t_b, b, max_lag_s=0.3) - lag) < 1e-3


def test_estimate_lag_errors() -> None:
    t = np.arange(0.0, 2.0, 0.01)
    with pytest.raises(NoValidDataError):
        estimate_lag(t, np.full(t.shape, np.nan), t, np.sin(t), max_lag_s=0.1)
    with pytest.raises(FrameRateError):
        estimate_lag(t[::-1], np.sin(t), t, np.sin(t), max_lag_s=0.1)
    with pytest.raises(NoValidDataError):  # no overlap within the allowed lags
        estimate_lag(t, np.sin(t), t + 100.0, np.sin(t), max_lag_s=0.1)


def test_resample_is_exact_on_linear_signals() -> None:
    t_src = np.sort(np.random.default_rng(3).uniform(0.0, 2.0, 50))
    x = np.stack([3.0 * t_src - 1.0, -0.5 * t_src + 2.0], axis=1)[:, :, None] * np.ones(
        (1, 1, 3)
    )  # (T, 2, 3)
    t_dst = np.linspace(t_src[0], t_src[-1], 333)
    out = resample(t_src, x, t_dst)
    assert out.shape == (333, 2, 3)
    np.testing.assert_allclose(out[:, 0, 0], 3.0 * t_dst - 1.0, atol=1e-12)
    np.testing.assert_allclose(out[:, 1, 2], -0.5 * t_dst + 2.0, atol=1e-12)
    # no extrapolation; gaps are not bridged; a sample hit exactly keeps its value even next to a gap
    y = 2.0 * t_src
    y[10] = np.nan
    r = resample(t_src, y, np.array([t_src[0] - 0.1, t_src[-1] + 0.1, t_src[9], (t_src[9] + t_src[10]) / 2]))
    assert math.isnan(r[0]) and math.isnan(r[1]) and math.isnan(r[3])
    assert r[2] == pytest.approx(2.0 * t_src[9])


def test_align_and_angle_rmse_after_alignment() -> None:
    t_ref = np.arange(0.0, 8.0, 1 / 150)
    t_vid = np.arange(0.0, 8.0, 1 / 60)
    lag = 0.123
    ref = {"left_knee_flexion_deg": _gait_like(t_ref), "right_knee_flexion_deg": _gait_like(t_ref + 0.35)}
    pred = {
        "left_knee_flexion_deg": _gait_like(t_vid - lag) + 2.0,  # 2 degrees off, delayed
        "right_knee_flexion_deg": _gait_like(t_vid - lag + 0.35),
        "only_in_pred": t_vid,
    }
    rmse = angle_rmse(pred, ref, t_pred=t_vid, t_ref=t_ref, max_lag_s=0.3)
    assert set(rmse) == {"left_knee_flexion_deg", "right_knee_flexion_deg"}
    assert rmse["left_knee_flexion_deg"] == pytest.approx(2.0, abs=0.05)
    assert rmse["right_knee_flexion_deg"] < 0.3  # linear interpolation of the 60 Hz series
    # without alignment the delay costs many degrees
    unaligned = angle_rmse(pred, ref, t_pred=t_vid, t_ref=t_ref, lag_s=0.0)
    assert unaligned["right_knee_flexion_deg"] > 10.0
    # same time base, NaN-aware
    same = angle_rmse({"k": np.array([1.0, np.nan, 3.0])}, {"k": np.array([2.0, 5.0, np.nan])})
    assert same["k"] == pytest.approx(1.0)

    al = align(t_ref, ref["right_knee_flexion_deg"], t_vid, pred["right_knee_flexion_deg"], max_lag_s=0.3)
    assert al.lag_s == pytest.approx(lag, abs=1e-3)
    assert al.t[0] >= t_ref[0] and al.t[-1] + al.lag_s <= t_vid[-1] + 1e-9
    np.testing.assert_allclose(al.other, al.ref, atol=0.5)  # 60 Hz linear interpolation


# ----------------------------------------------------------------------------------------------------
# Virtual camera
# ----------------------------------------------------------------------------------------------------


def test_side_camera_projection_known_points() -> None:
    up, forward = (
        np.array([0.0, 1.0, 0.0]),
        np.array([1.0, 0.0, 0.0]),
    )  # RBDS lab: +X forward, +Y up, +Z right
    target = np.array([0.3, 1.0, -0.2])
    f, d, wh = 1500.0, 5.0, (1920, 1080)
    pts = (target + np.array([[0.0, 0.0, 0.0], up, forward, [0.0, 0.0, 1.0]]))[None]  # (1, 4, 3)
    uv = project_to_side_camera(pts, up, forward, distance_m=d, focal_px=f, image_wh=wh, target=target)
    assert uv.shape == (1, 4, 2)
    np.testing.assert_allclose(uv[0, 0], [960.0, 540.0], atol=1e-9)  # on the camera axis: image centre
    np.testing.assert_allclose(uv[0, 1], [960.0, 540.0 - f / d], atol=1e-9)  # 1 m up: f/d px higher
    np.testing.assert_allclose(uv[0, 2], [960.0 - f / d, 540.0], atol=1e-9)  # seen from the left: faces left
    # towards the camera's far side (the runner's right) the same point shrinks to the centre
    assert uv[0, 3, 1] == pytest.approx(540.0)
    right = project_to_side_camera(
        pts, up, forward, distance_m=d, focal_px=f, image_wh=wh, target=target, side="right"
    )
    np.testing.assert_allclose(right[0, 2], [960.0 + f / d, 540.0], atol=1e-9)
    cam = side_camera(up, forward, target, distance_m=d, focal_px=f, image_wh=wh)
    np.testing.assert_allclose(cam.to_camera(target), [0.0, 0.0, d], atol=1e-12)
    np.testing.assert_allclose(
        cam.to_camera(target + up) - cam.to_camera(target), [0.0, -1.0, 0.0], atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(cam.rotation), 1.0)


def test_legs_to_h36m_with_a_synthetic_upper_body() -> None:
    up = np.array([0.0, 1.0, 0.0])
    n = 3
    legs = {
        "pelvis": [0.0, 1.0, 0.0], "left_hip": [0.0, 1.0, -0.09], "right_hip": [0.0, 1.0, 0.09],
        "left_knee": [0.05, 0.55, -0.1], "right_knee": [0.05, 0.55, 0.1], "left_ankle": [0.0, 0.1, -0.1],
        "right_ankle": [0.0, 0.1, 0.1], "left_heel": [-0.05, 0.05, -0.1], "right_heel": [-0.05, 0.05, 0.1],
        "left_toe": [0.15, 0.02, -0.1], "right_toe": [0.15, 0.02, 0.1],
    }  # fmt: skip
    joints = {k: np.tile(np.array(v), (n, 1)) for k, v in legs.items()}
    fwd = estimate_forward(joints, up)
    np.testing.assert_allclose(fwd, [1.0, 0.0, 0.0], atol=1e-12)
    pose, synthetic = h36m17_from_legs(joints, up, fwd)
    assert pose.shape == (n, 17, 3) and np.isfinite(pose).all()
    assert synthetic == tuple(range(7, 17))
    np.testing.assert_array_equal(pose[:, 3], joints["right_ankle"])
    assert np.all(pose[:, 8, 1] > pose[:, 0, 1] + 0.3)  # thorax above the pelvis
    assert np.all(pose[:, 14, 2] > pose[:, 11, 2])  # right shoulder on the right (+Z)


# ----------------------------------------------------------------------------------------------------
# Sub-commands on the shared data
# ----------------------------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gaitway")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_evaluate.add_parser(sub)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def settings(shared: Path, model_dirs: list[Path]) -> Settings:
    return Settings(shared_dir=shared, models_dir=os.pathsep.join(str(d) for d in model_dirs))


def _run(argv: list[str], settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    out = tmp_path / f"{argv[1]}.json"
    assert cli_evaluate.run(_parse([*argv, "--json", str(out)]), settings) == 0
    printed = capsys.readouterr().out
    return json.loads(out.read_text()), printed


def test_evaluate_h36m(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """GT-2D path reproduces SemGCN's 19.1 mm (README, tests/test_lifting.py); detected 2D measured 106."""
    res, printed = _run(["evaluate", "h36m"], settings, tmp_path, capsys)
    assert res["gt2d"]["n_poses"] == 4
    assert res["gt2d"]["mpjpe"] == pytest.approx(19.1, abs=0.2)
    assert res["gt2d"]["pa_mpjpe"] == pytest.approx(14.5, abs=0.2)
    assert res["gt2d"]["n_mpjpe"] == pytest.approx(19.2, abs=0.3)
    assert len(res["gt2d"]["per_joint"]) == 16 and res["gt2d"]["per_joint"]["pelvis"] == 0.0
    assert res["detected2d"]["mpjpe"] < 125.0 and res["detected2d"]["pa_mpjpe"] < 95.0
    assert "ground-truth 2D" in printed and "19.1" in printed and "right_knee" in printed


def test_evaluate_coco(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Measured (thunder): PCK@0.2 0.912 / 0.923, PCK@0.1 0.901 / 0.884, mean OKS 0.842 / 0.837."""
    res, printed = _run(["evaluate", "coco"], settings, tmp_path, capsys)
    assert res["n_people"] == 12 and res["n_detector_matches"] == 12
    for key in ("gt_boxes", "detector_boxes"):
        assert res[key]["pck_0.2"] >= 0.88
        assert res[key]["pck_0.1"] >= 0.85
        assert res[key]["oks_mean"] >= 0.80
        assert res[key]["pck_0.1"] <= res[key]["pck_0.2"]
    assert "PCK@0.2" in printed


def test_evaluate_rbds(
    settings: Settings, shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shared / "data/mocap-running-rbds"
    res, printed = _run(
        [
            "evaluate",
            "rbds",
            "--run",
            str(root / "RBDS001runT35.c3d"),
            "--static",
            str(root / "RBDS001static.c3d"),
        ],
        settings,
        tmp_path,
        capsys,
    )
    assert res["frames"] == 4500
    assert res["synthetic_joints"] and "incomplete" in printed  # RBDS has no upper-body markers
    legs = res["legs_3d_mm"]
    assert legs["n_poses"] > 4000
    assert legs["mpjpe"] < 150.0 and legs["pa_mpjpe"] < 100.0
    assert abs(res["angle_lag_s"]) < 0.01  # same clock
    for side in ("left", "right"):
        assert res["angle_rmse_deg"][f"{side}_knee_flexion_deg"] < 15.0
    # mocap metrics vs the published RBDS001 values (measured 171.4 steps/min; knee at strike R 14.8 / L 9.3,
    # stance peak R 39.4 / L 38.8 vs published 16.3 / 12.0 and 42.2 / 42.4)
    m = res["mocap_metrics"]
    assert m["cadence_spm"]["both"]["measured"] == pytest.approx(171.0, abs=3.0)
    assert m["cadence_spm"]["both"]["lifted"] == pytest.approx(171.0, abs=5.0)
    for key in ("knee_flexion_ic_deg", "knee_flexion_peak_stance_deg"):
        for side in ("left", "right"):
            assert m[key][side]["measured"] == pytest.approx(m[key][side]["published"], abs=5.0)
    assert m["contact_time_s"]["both"]["measured"] == pytest.approx(0.227, abs=0.02)  # force plate
    assert "published" in printed and "lifted" in printed
    # the sole's angle at contact is the ankle's dorsiflexion plus the shank's forward inclination: the
    # processed file's ankle angle at foot strike (its own static offset) and Gaitway's tibia angle give
    # Gaitway's foot strike angle to within the two labs' offsets; RBDS001 lands about level (midfoot)
    ankle = _processed(root, "ankleAngZ35")
    for side, s in (("left", "L"), ("right", "R")):
        expected = ankle[s] + m["tibia_angle_ic_deg"][side]["measured"]
        assert m["foot_strike_angle_deg"][side]["measured"] == pytest.approx(expected, abs=4.0)
        assert -1.6 < m["foot_strike_angle_deg"][side]["measured"] < 8.0
        assert 0.0 < m["tibia_angle_ic_deg"][side]["measured"] < 15.0
        assert 5.0 < m["vertical_oscillation_cm"][side]["measured"] < 12.0


def _processed(root: Path, column: str) -> dict[str, float]:
    """Value at foot strike (0 % of the gait cycle) of a column of RBDS001processed.txt, per side."""
    table = np.genfromtxt(root / "RBDS001processed.txt", delimiter="\t", names=True)
    return {s: float(table[f"{s}{column}"][0]) for s in ("L", "R")}
