"""Camera view from 2D keypoints, the yaw-corrected 2D path, the validation sweep on RBDS mocap and the
angle-source policy (services/kinematics/view.py, services/kinematics/view_validation.py)."""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway import evaluate as cli_evaluate
from services.errors import ShapeError
from services.kinematics.angles import sagittal_angles_2d
from services.kinematics.evaluate import PinholeCamera
from services.kinematics.mocap import rbds_motion, read_markers
from services.kinematics.model import Keypoints2D
from services.kinematics.view import (
    ANGLE_KEYS,
    KEYPOINT_PRIOR,
    MAX_RMSE_DEG,
    TABLE_PATH,
    ViewErrorTable,
    ViewEstimate,
    WidthPrior,
    choose_angle_source,
    correct_foreshortening,
    estimate_view,
    estimate_views,
    load_view_errors,
    view_kind,
    withhold_tolerance_deg,
    yaw_per_frame,
)
from services.kinematics.view_validation import (
    FRAMINGS,
    Trial,
    evaluate_case,
    prepare_trial,
    summarise,
    yawed_camera,
)
from services.pose.backends import make_lifter_codec
from services.pose.models import ModelStore
from services.pose.runtime import OnnxRunner
from services.pose.skeletons import COCO17
from services.settings import Settings

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
WH = (1920, 1080)
UP, FWD, RIGHT = np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
THIGH_M = SHANK_M = 0.45


# ----------------------------------------------------------------------------------------------------
# A synthetic runner seen by an independently built camera
# ----------------------------------------------------------------------------------------------------


def _runner(prior: WidthPrior = KEYPOINT_PRIOR, n: int = 120) -> tuple[FloatArray, FloatArray]:
    """One stride of a runner in a right-handed lab (+X forward, +Y up, +Z right) as COCO-17 3D points
    (n, 17, 3), and the true knee flexion (n, 2) left/right. Hip and shoulder widths are the prior's
    ratios x the leg length; the pelvis rotates +-5 deg about the vertical and the shoulders twice that the
    other way; legs swing in their sagittal planes (thigh +-25 deg, knee 5-85 deg)."""
    ph = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    leg = THIGH_M + SHANK_M
    pelvis = np.array([0.0, 1.0, 0.0])
    psi = np.radians(5.0) * np.sin(ph)
    hip_axis = np.cos(psi)[:, None] * RIGHT - np.sin(psi)[:, None] * FWD
    sh_axis = np.cos(2 * psi)[:, None] * RIGHT + np.sin(2 * psi)[:, None] * FWD
    pts: dict[str, FloatArray] = {}
    knee_flexion = []
    for side, sign, offset in (("left", -1.0, 0.0), ("right", 1.0, np.pi)):
        hip = pelvis + sign * prior.hip_width * leg / 2 * hip_axis
        thigh = np.radians(25.0) * np.sin(ph + offset)
        flex = np.radians(45.0 + 40.0 * np.sin(ph + offset + 1.0))
        knee = hip + THIGH_M * (np.sin(thigh)[:, None] * FWD - np.cos(thigh)[:, None] * UP)
        shank = thigh - flex
        ankle = knee + SHANK_M * (np.sin(shank)[:, None] * FWD - np.cos(shank)[:, None] * UP)
        shoulder = pelvis + 0.5 * UP + sign * prior.shoulder_width * leg / 2 * sh_axis
        pts |= {f"{side}_hip": hip, f"{side}_knee": knee, f"{side}_ankle": ankle}
        pts |= {f"{side}_shoulder": shoulder, f"{side}_elbow": shoulder - 0.28 * UP}
        pts[f"{side}_wrist"] = shoulder - 0.28 * UP + 0.25 * FWD
        pts[f"{side}_eye"] = pelvis + 0.75 * UP + 0.05 * FWD + sign * 0.03 * RIGHT
        pts[f"{side}_ear"] = pelvis + 0.75 * UP - 0.02 * FWD + sign * 0.07 * RIGHT
        knee_flexion.append(np.degrees(flex))
    pts["nose"] = pelvis + 0.72 * UP + 0.1 * FWD
    xyz = np.stack([np.broadcast_to(pts[j], (n, 3)) for j in COCO17.joints], axis=1)
    return xyz, np.stack(knee_flexion, axis=1)


def _camera(yaw_deg: float, side: str, distance_m: float = 20.0, focal_px: float = 4000.0) -> PinholeCamera:
    """From first principles: the camera sits on the runner's ``side`` turned by ``yaw_deg`` towards the
    runner's front (yaw +90: in front), level, looking at the pelvis."""
    th = math.radians(yaw_deg)
    lateral = -RIGHT if side == "left" else RIGHT
    where = math.cos(th) * lateral + math.sin(th) * FWD  # pelvis -> camera
    view = -where
    y = -UP
    x = np.cross(y, view)
    return PinholeCamera(np.stack([x, y, view]), np.array([0.0, 1.0, 0.0]) + distance_m * where, focal_px, WH)


def _keypoints(
    yaw_deg: float, side: str = "left", prior: WidthPrior = KEYPOINT_PRIOR, distance_m: float = 20.0
) -> Keypoints2D:
    xyz, _ = _runner(prior)
    uv = _camera(yaw_deg, side, distance_m=distance_m, focal_px=200.0 * distance_m).project(xyz)
    return Keypoints2D(np.concatenate([uv, np.ones((*uv.shape[:2], 1))], axis=-1), "coco17", WH)


def _tolerance(yaw_deg: float) -> float:
    """With the body exactly at the prior's proportions the error left is the selection's 2D leg length:
    the 90th percentile of the swinging legs is ~1 % short at 45 deg and ~2.5 % at 60 deg, and a relative
    error e moves the yaw by e tan(yaw) rad (0.6 and 2.5 deg), plus < 0.3 deg of perspective at 20 m."""
    return 1.0 if abs(yaw_deg) <= 45 else 2.5


# ----------------------------------------------------------------------------------------------------
# View estimate
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("yaw", [-60, -45, -30, -15, 0, 15, 30, 45, 60])
def test_yaw_of_a_projected_runner_has_the_right_value_and_sign(yaw: float, side: str) -> None:
    est = estimate_view(_keypoints(yaw, side))
    assert est.yaw_deg == pytest.approx(yaw, abs=_tolerance(yaw))
    assert est.n_frames == 120
    assert est.kind == view_kind(yaw)
    # the reported uncertainty is mostly the prior's, cv x tan(yaw) rad to first order (the asin is
    # steeper beyond 45 deg: larger there), plus the sampling scatter of the median (< 1 deg)
    linear = math.degrees(KEYPOINT_PRIOR.cv * math.tan(math.radians(abs(yaw))))
    if abs(yaw) <= 45:
        assert est.yaw_sd_deg == pytest.approx(linear, rel=0.15, abs=1.0)
    else:
        assert linear < est.yaw_sd_deg < 2 * linear


@pytest.mark.parametrize(("yaw", "kind"), [(90, "frontal"), (75, "frontal"), (-75, "rear"), (-90, "rear")])
def test_frontal_and_rear_views(yaw: float, kind: str) -> None:
    """Facing the camera the right hip appears on the image left (frontal, +), from behind on the right."""
    for side in ("left", "right"):
        est = estimate_view(_keypoints(yaw, side))
        assert est.kind == kind
        assert est.yaw_deg == pytest.approx(yaw, abs=5.0 if abs(yaw) == 75 else 0.5)


def test_a_mirrored_video_gives_the_same_yaw() -> None:
    """A detector on a mirrored video labels the limbs anatomically, i.e. x -> W - x with left and right
    swapped: the same yaw (it is a runner seen from the other side). Mirroring x alone (labels kept) is a
    left-handed scene and negates the yaw."""
    kps = _keypoints(30.0)
    xy = kps.xy.copy()
    xy[..., 0] = WH[0] - xy[..., 0]
    mirrored = replace(kps, xy=xy[:, COCO17.flip_permutation()])
    assert estimate_view(mirrored).yaw_deg == pytest.approx(estimate_view(kps).yaw_deg, abs=1e-9)
    assert estimate_view(replace(kps, xy=xy)).yaw_deg == pytest.approx(-estimate_view(kps).yaw_deg, abs=1e-9)


def test_missing_hips_fall_back_to_the_shoulders() -> None:
    """Without hips the shoulders give the yaw (they counter-rotate, the median removes it) and twice the
    shank stands in for the leg (thigh = shank here, as in Winter's proportions)."""
    kps = _keypoints(30.0)
    xy = kps.xy.copy()
    xy[:, [COCO17.index("left_hip"), COCO17.index("right_hip")], 2] = 0.0
    est = estimate_view(replace(kps, xy=xy))
    assert est.n_frames == 120
    assert est.yaw_deg == pytest.approx(30.0, abs=1.5)
    # shoulders alone missing: the hips are used and nothing changes
    xy = kps.xy.copy()
    xy[:, [COCO17.index("left_shoulder"), COCO17.index("right_shoulder")], 2] = 0.0
    assert estimate_view(replace(kps, xy=xy)).yaw_deg == pytest.approx(estimate_view(kps).yaw_deg)


def test_all_missing_or_too_few_frames_is_unknown() -> None:
    kps = _keypoints(20.0)
    xy = kps.xy.copy()
    xy[..., 2] = 0.1  # below min_score everywhere
    est = estimate_view(replace(kps, xy=xy))
    assert est.kind == "unknown" and math.isnan(est.yaw_deg) and math.isnan(est.yaw_sd_deg)
    assert est.n_frames == 0
    assert np.isnan(yaw_per_frame(replace(kps, xy=xy))).all()
    assert estimate_view(kps, frames=[0, 1]).kind == "unknown"  # fewer than min_frames
    assert estimate_view(kps, frames=[0, 1], min_frames=2).kind == "sagittal"


def test_robust_to_dropped_keypoints_and_frame_selections() -> None:
    kps = _keypoints(-40.0)
    full = estimate_view(kps)
    rng = np.random.default_rng(0)
    xy = kps.xy.copy()
    xy[..., 2] = np.where(rng.random(xy.shape[:2]) < 0.3, 0.05, 1.0)  # 30 % of keypoints unusable
    xy[5, :, :2] = np.nan
    assert estimate_view(replace(kps, xy=xy)).yaw_deg == pytest.approx(full.yaw_deg, abs=1.0)
    mask = np.zeros(120, bool)
    mask[10:70] = True
    by_mask, by_index = estimate_views(kps, [mask, np.arange(10, 70)])
    assert by_mask == by_index == estimate_view(kps, np.arange(10, 70))
    with pytest.raises(ShapeError):
        estimate_view(kps, np.ones(5, bool))


def test_view_kind_boundaries() -> None:
    assert [view_kind(y) for y in (0.0, 22.5, -22.6, 67.4, 67.5, -67.5, math.nan)] == [
        "sagittal", "sagittal", "oblique", "oblique", "frontal", "rear", "unknown",
    ]  # fmt: skip


def test_correct_foreshortening_recovers_the_sagittal_knee_angle() -> None:
    """The synthetic legs swing in sagittal planes, so their image angles at yaw 0 are the true flexion;
    at 40 deg the image foreshortens them (errors of several degrees) and stretching x by 1 / cos(40)
    undoes it up to perspective: the oblique sagittal plane spans +-0.4 m of depth, 0.8 deg at 20 m, so
    the camera is 100 m away here (0.16 deg)."""
    _, truth = _runner()
    kps = _keypoints(40.0, distance_m=100.0)
    raw = sagittal_angles_2d(kps)
    fixed = sagittal_angles_2d(correct_foreshortening(kps, 40.0))
    for i, side in enumerate(("left", "right")):
        key = f"{side}_knee_flexion_deg"
        assert np.max(np.abs(raw[key] - truth[:, i])) > 5.0
        assert np.max(np.abs(fixed[key] - truth[:, i])) < 0.25
    # per-frame yaw; NaN or beyond the limit -> those frames missing; the input untouched
    yaw = np.full(120, 40.0)
    yaw[:3] = [math.nan, 70.0, -40.0]
    out = correct_foreshortening(kps, yaw)
    assert np.isnan(out.xy[:2, :, :2]).all() and (out.xy[:2, :, 2] == 0).all()
    np.testing.assert_allclose(out.xy[2:4], correct_foreshortening(kps, 40.0).xy[2:4])
    assert np.isfinite(kps.xy).all()
    with pytest.raises(ShapeError):
        correct_foreshortening(kps, np.zeros(7))


# ----------------------------------------------------------------------------------------------------
# The committed table and the policy
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(TABLE_PATH.read_text())
    return doc


def _scores(table: ViewErrorTable, lifter: str, i: int) -> dict[str, float]:
    rows = {**table.sources, **({"3d": table.lifters[lifter]} if lifter in table.lifters else {})}
    return {name: float(np.mean([r[a][i] for a in ANGLE_KEYS])) for name, r in rows.items()}


def test_the_table_summarises_its_cases(committed: dict[str, Any]) -> None:
    """The per-bin numbers are the RMS of the committed cases (nobody edited them by hand)."""
    summary = summarise(committed["cases"], bins_deg=committed["bins_deg"])
    for name, block in committed["sources"].items():
        for angle in ANGLE_KEYS:
            got = summary["by_source"][name]["rmse_deg"][angle]
            np.testing.assert_allclose(got, block["rmse_deg"][angle], atol=2e-3)
    for block in committed["lifters"].values():
        np.testing.assert_allclose(
            summary["by_source"]["3d"]["rmse_deg"]["knee_flexion"],
            block["rmse_deg"]["knee_flexion"],
            atol=2e-3,
        )
    assert len(committed["cases"]) == 2 * len(FRAMINGS) * len(committed["method"]["yaws_deg"])
    assert "NOT hip flexion" in committed["angles"]["thigh_angle"]


def test_2d_error_is_small_side_on_and_grows_with_yaw(committed: dict[str, Any]) -> None:
    """Square to the runner the 2D knee RMSE is a fraction of a degree (0.3-1.2 deg was measured with the
    camera off the pelvis' plane by the feet's 6.7 deg); foreshortening makes it grow with |yaw|."""
    table = load_view_errors()
    knee, thigh = table.sources["2d"]["knee_flexion"], table.sources["2d"]["thigh_angle"]
    assert table.bins_deg[0] == 0.0 and knee[0] < 0.5 and thigh[0] < 0.5
    assert np.all(np.diff(knee) > 0) and np.all(np.diff(thigh) > 0)
    assert knee[table.bin_index(30.0) or 0] > 3.0


def test_policy_picks_the_lower_error_source_at_the_estimated_yaw(committed: dict[str, Any]) -> None:
    """For every case of the sweep, driven by the ESTIMATED yaw (of the clip, and the extremes of its
    step-long windows), the chosen source is the best at the TRUE yaw within 0.1 deg (5-deg bins: near a
    crossing of two sources the estimate may land in the neighbouring bin, where they are nearly equal);
    up to |yaw| 30 the clip estimate is never withheld."""
    table = load_view_errors()
    for lifter in committed["lifters"]:
        for case in committed["cases"]:
            i = table.bin_index(abs(case["yaw_deg"]))
            assert i is not None
            scores = _scores(table, lifter, i)
            sd = float(case["yaw_est_sd_deg"])
            for key in ("yaw_est_deg", "step_yaw_est_min_deg", "step_yaw_est_max_deg"):
                yaw = math.nan if case[key] is None else float(case[key])
                choice = choose_angle_source(ViewEstimate(yaw, sd, view_kind(yaw), 10), lifter)
                if choice.source is None:
                    assert key != "yaw_est_deg" or abs(case["yaw_deg"]) > 30
                    continue
                assert scores[choice.source] <= min(scores.values()) + 0.1, (case, key, choice)
                assert set(choice.rmse_deg) == set(ANGLE_KEYS)
            yaw = math.nan if case["yaw_est_deg"] is None else float(case["yaw_est_deg"])
            policy = choose_angle_source(ViewEstimate(yaw, sd, view_kind(yaw), 1), lifter)
            assert case["policy"] == policy.source


def test_withhold_tolerance(committed: dict[str, Any]) -> None:
    table = load_view_errors()
    for lifter in committed["lifters"]:
        tol = withhold_tolerance_deg(lifter)
        last = table.bin_index(tol - table.half_width_deg)
        assert last is not None and tol == table.bins_deg[last] + table.half_width_deg
        for i in range(last + 1):  # every bin up to the tolerance has a source within MAX_RMSE_DEG
            best = choose_angle_source(ViewEstimate(table.bins_deg[i], 0.0, "oblique", 10), lifter)
            assert best.source is not None and max(best.rmse_deg.values()) <= MAX_RMSE_DEG
        if last + 1 < len(table.bins_deg):  # the next one has none
            rows = {**table.sources, "3d": table.lifters[lifter]}
            assert all(any(r[a][last + 1] > MAX_RMSE_DEG for a in ANGLE_KEYS) for r in rows.values())
        beyond = choose_angle_source(ViewEstimate(tol + 1.0, 0.0, "oblique", 10), lifter)
        assert beyond.source is None and "beyond" in beyond.reason
        assert math.isnan(beyond.rmse_deg["knee_flexion"])
        # one SD of the estimate's uncertainty is kept as a margin (or not, with sd_margin=0)
        near = ViewEstimate(tol - 2.0, 3.0, "oblique", 10)
        assert choose_angle_source(near, lifter).source is None
        assert choose_angle_source(near, lifter, sd_margin=0.0).source is not None
    assert (
        withhold_tolerance_deg("semgcn", max_rmse_deg=math.inf) == table.bins_deg[-1] + table.half_width_deg
    )
    assert withhold_tolerance_deg(None) == math.inf


def test_policy_never_picks_an_unvalidated_family() -> None:
    """On a table where a lifter's 3D beats 2D everywhere, that family gets "3d", a family without rows
    never does; motion capture always reports its measured 3D; an unknown view reports nothing."""
    bins = (0.0, 10.0, 20.0)
    flat = {a: (3.0, 3.0, 3.0) for a in ANGLE_KEYS}
    table = ViewErrorTable(
        bins, 5.0, {"2d": flat, "2d_corrected": flat}, {"semgcn": {a: (1.0,) * 3 for a in ANGLE_KEYS}}
    )
    view = ViewEstimate(12.0, 2.0, "sagittal", 30)
    assert choose_angle_source(view, "semgcn", table=table).source == "3d"
    other = choose_angle_source(view, "motionbert", table=table)
    assert other.source == "2d" and other.rmse_deg == {"knee_flexion": 3.0, "thigh_angle": 3.0}
    assert "not validated" in other.reason
    assert choose_angle_source(view, None, table=table).source == "3d"
    unknown = ViewEstimate(math.nan, math.nan, "unknown", 0)
    assert choose_angle_source(unknown, "semgcn", table=table).source is None
    assert choose_angle_source(ViewEstimate(30.0, 1.0, "oblique", 9), "semgcn", table=table).source is None
    with pytest.raises(ValueError):
        choose_angle_source(view, "semgcn", angles=("hip_flexion",), table=table)


# ----------------------------------------------------------------------------------------------------
# The sweep on RBDS001 reproduces the committed table
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rbds001(shared: Path) -> Trial:
    root = shared / "data/mocap-running-rbds"
    motion = rbds_motion(read_markers(root / "RBDS001runT35.c3d"), read_markers(root / "RBDS001static.c3d"))
    return prepare_trial(motion, "RBDS001", ("RBDS001runT35.c3d", "RBDS001static.c3d"), frame_step=3)


@pytest.fixture(scope="module")
def semgcn(model_dirs: list[Path]) -> Any:
    model = ModelStore(model_dirs).resolve("semgcn-h36m")
    codec = make_lifter_codec(model.manifest.family)
    runner = OnnxRunner(model.path, threads=2)
    return lambda kps, wh: codec.lift(kps, image_wh=wh, run=runner)


def test_yawed_camera_matches_the_first_principles_camera(rbds001: Trial) -> None:
    for side in ("left", "right"):
        for yaw in (-50.0, 0.0, 35.0):
            cam = yawed_camera(
                UP, FWD, np.zeros(3), yaw, distance_m=5.0, focal_px=1000.0, image_wh=WH, side=side
            )
            ref = _camera(yaw, side, distance_m=5.0, focal_px=1000.0)
            np.testing.assert_allclose(cam.rotation, ref.rotation, atol=1e-12)
            np.testing.assert_allclose(
                cam.centre - np.zeros(3), ref.centre - np.array([0.0, 1.0, 0.0]), atol=1e-12
            )
    assert rbds001.stature_m == pytest.approx(1.81, abs=0.02)  # RBDS001 is 181 cm (NOTES.md)


@pytest.mark.parametrize(
    ("framing", "yaw"), [("h36m_like", 0.0), ("landscape_5m", 30.0), ("portrait_8m", -20.0)]
)
def test_sweep_reproduces_the_committed_cases(
    rbds001: Trial, semgcn: Any, committed: dict[str, Any], framing: str, yaw: float
) -> None:
    row = evaluate_case(rbds001, next(f for f in FRAMINGS if f.name == framing), yaw, lift=semgcn)
    ref = next(
        c
        for c in committed["cases"]
        if (c["subject"], c["framing"], c["yaw_deg"]) == ("RBDS001", framing, yaw)
    )
    for key in ("yaw_est_deg", "yaw_est_sd_deg", "step_yaw_est_min_deg", "step_yaw_est_max_deg"):
        assert row[key] == pytest.approx(ref[key], abs=0.01), key
    for source, angles in ref["rmse_deg"].items():
        for angle, value in angles.items():
            assert row["rmse_deg"][source][angle] == pytest.approx(value, abs=0.02), (source, angle)
    if yaw == 0.0:
        assert row["rmse_deg"]["2d"]["knee_flexion"] < 0.5


@pytest.mark.slow
def test_cli_views(
    shared: Path, model_dirs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sub-command on one trial, coarsely subsampled (5 Hz) to stay fast; the table file is not
    rewritten without --write-table."""
    root = shared / "data/mocap-running-rbds"
    parser = argparse.ArgumentParser(prog="gaitway")
    cli_evaluate.add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "views.json"
    before = TABLE_PATH.stat().st_mtime_ns
    run, static = str(root / "RBDS001runT35.c3d"), str(root / "RBDS001static.c3d")
    argv = ["evaluate", "views", "--run", run, "--static", static, "--frame-step", "30", "--json", str(out)]
    args = parser.parse_args(argv)
    settings = Settings(shared_dir=shared, models_dir=os.pathsep.join(str(d) for d in model_dirs))
    assert cli_evaluate.run(args, settings) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["schema"] == "gaitway.view_errors" and doc["method"]["frame_step"] == 30
    assert len(doc["cases"]) == len(FRAMINGS) * len(doc["method"]["yaws_deg"])
    assert set(doc["lifters"]) == {"semgcn"}
    zero = next(c for c in doc["cases"] if c["framing"] == "h36m_like" and c["yaw_deg"] == 0.0)
    assert all(v is not None for src in zero["rmse_deg"].values() for v in src.values())
    assert zero["policy"] == "2d" and zero["rmse_deg"]["2d"]["knee_flexion"] < 0.5
    assert "THIGH" in printed and "2d_corrected" in printed and "policy: angles withheld" in printed
    assert TABLE_PATH.stat().st_mtime_ns == before
    with pytest.raises(cli_evaluate.InputError):
        cli_evaluate.run(parser.parse_args(["evaluate", "views", "--run", "a.c3d"]), settings)
