"""Known truths of services.kinematics.events and .metrics on a synthetic running gait with known
cadence, contact time, knee angles, vertical oscillation and overstride, at 60 fps and 150 Hz; slow
motion; quality flags; errors."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from synthetic_runner import stride_profile, two_link_legs

from services.errors import InputError
from services.kinematics.events import detect_events
from services.kinematics.metric_defs import METRIC_DEFS, METRICS, PLOTTED
from services.kinematics.metrics import analyze_motion, summarize
from services.kinematics.model import FLAGS, GaitEvent, Keypoints2D, KinematicsResult, Motion
from services.kinematics.report import plot_steps
from services.kinematics.schema import KinematicsResponse, to_response
from services.pose.skeletons import COCO17

Array = NDArray[np.float64]
THIGH, SHANK = 0.48, 0.46
ANKLE_H = 0.08  # ankle height above the ground when the foot is flat
HEEL_RISE = 0.07  # the ankle rises this much during push-off
HEEL = np.array([-0.05, -0.06, 0.0])
TOE = np.array([0.15, -0.06, 0.0])
CADENCE, CONTACT, SPEED, HIP_H, OSC = 170.0, 0.25, 2.6, 0.92, 0.03
STEP = 60.0 / CADENCE
STRIDE = 2.0 * STEP
T0 = {"right": 0.1, "left": 0.1 + STEP}  # first strike of each foot


TAU, X, Z = stride_profile(stride=STRIDE, contact=CONTACT, speed=SPEED, heel_rise=HEEL_RISE)


def pelvis_height(t: Array) -> Array:
    """Lowest at mid-stance of every step, excursion 2 * OSC."""
    return np.asarray(HIP_H - OSC * np.cos(2 * np.pi * (t - T0["right"] - CONTACT / 2) / STEP))


def running_motion(
    fs: float = 60.0, *, duration: float = 6.0, time_scale: float = 1.0, frame: str = "lab"
) -> Motion:
    """A treadmill runner (pelvis fixed forward) at CADENCE steps/min with CONTACT s contacts, 2-link
    legs placed by inverse kinematics. ``frame``: "lab" (X forward, Y up, Z right) or "camera"
    (right-to-left runner: x right, y down, z away). ``time_scale`` stretches time (slow motion)."""
    t = np.arange(round(duration * fs)) / fs
    pelvis = np.stack([np.zeros_like(t), pelvis_height(t), np.zeros_like(t)], axis=1)
    joints = {"pelvis": pelvis, "thorax": pelvis + np.array([0.05, 0.5, 0.0])}
    joints |= two_link_legs(
        t, pelvis, t0=T0, stride=STRIDE, profile=(TAU, X, Z), thigh=THIGH, shank=SHANK, ankle_h=ANKLE_H
    )
    for side in ("left", "right"):
        joints[f"{side}_heel"] = joints[f"{side}_ankle"] + HEEL
        joints[f"{side}_toe"] = joints[f"{side}_ankle"] + TOE
    up = np.array([0.0, 1.0, 0.0])
    if frame == "camera":
        rot = np.array([[-1.0, 0, 0], [0, -1, 0], [0, 0, 1]])
        joints = {k: v @ rot.T + np.array([0.2, 0.1, 5.0]) for k, v in joints.items()}
        up = rot @ up
    return Motion(t=t * time_scale, joints=joints, up=up, metric=True, source="mocap")


def knee_at(side: str, t: float) -> float:
    """Exact knee flexion at time t (law of cosines on the designed hip-ankle distance)."""
    tau = (t - T0[side]) % STRIDE
    x = float(np.interp(tau, TAU, X, period=STRIDE))
    z = float(np.interp(tau, TAU, Z, period=STRIDE))
    d = math.hypot(x, float(pelvis_height(np.array([t]))[0]) - ANKLE_H - z)
    return 180.0 - math.degrees(math.acos((THIGH**2 + SHANK**2 - d**2) / (2 * THIGH * SHANK)))


def phase_error(t: float, t0: float) -> float:
    """Signed distance (s) of t from the nearest time t0 + k * STRIDE."""
    return (t - t0 + STRIDE / 2) % STRIDE - STRIDE / 2


@pytest.fixture(scope="module", params=[60.0, 150.0], ids=["60fps", "150Hz"])
def result(request: pytest.FixtureRequest) -> KinematicsResult:
    return analyze_motion(running_motion(request.param))


# --------------------------------------------------------------------------------------------------------
# events


@pytest.mark.parametrize("fs", [60.0, 150.0])
def test_events_at_the_designed_times(fs: float) -> None:
    events = detect_events(running_motion(fs))
    for side in ("left", "right"):
        strikes = [e for e in events if e.side == side and e.kind == "strike"]
        toe_offs = [e for e in events if e.side == side and e.kind == "toe_off"]
        assert len(strikes) >= 7 and len(toe_offs) >= 7
        # strike within 15 ms, toe-off within 20 ms (peak knee extension follows toe-off slightly)
        assert max(abs(phase_error(e.t, T0[side])) for e in strikes) < 0.015
        assert max(abs(phase_error(e.t, T0[side] + CONTACT)) for e in toe_offs) < 0.02
        for e in strikes + toe_offs:
            assert abs(e.t - running_motion(fs).t[e.index]) <= 0.5 / fs + 1e-9
    kinds = [e.kind for e in events if e.side == "right"]
    assert all(a != b for a, b in itertools.pairwise(kinds))  # strike / toe-off alternate


def test_zeni_strike_is_the_heel_forward_maximum() -> None:
    """method="zeni": the strike is the maximum of the heel's forward position relative to the pelvis,
    found with sub-frame precision through the low-pass and the parabolic refinement."""
    fs = 60.0
    t_max = float(TAU[np.argmax(X)])  # heel = ankle + constant: same time as the ankle's maximum
    events = detect_events(running_motion(fs), method="zeni")
    strikes = [e for e in events if e.kind == "strike" and e.side == "right"]
    assert strikes
    assert max(abs(phase_error(e.t, T0["right"] + t_max)) for e in strikes) < 0.004


def test_sinusoid_extrema_with_sub_frame_precision() -> None:
    """Analytic signal: feet swinging sinusoidally about the pelvis at 1.4 Hz -> Zeni strikes at the
    maxima of the sine, recovered to within 2 ms at 30 fps (frame interval 33 ms) through the filter."""
    fs, f = 30.0, 1.4
    t = np.arange(int(8 * fs)) / fs
    joints = {"pelvis": np.stack([np.zeros_like(t), np.ones_like(t), np.zeros_like(t)], axis=1)}
    for side, phase in (("right", 0.0), ("left", np.pi)):
        x = 0.4 * np.sin(2 * np.pi * f * t + phase)
        z = 0.09 if side == "right" else -0.09
        joints[f"{side}_hip"] = joints["pelvis"] + np.array([0, 0, z])
        joints[f"{side}_ankle"] = np.stack([x, 0.1 + 0 * t, z + 0 * t], axis=1)
        joints[f"{side}_knee"] = (joints[f"{side}_hip"] + joints[f"{side}_ankle"]) / 2 + np.array([0.1, 0, 0])
    m = Motion(t=t, joints=joints, up=np.array([0, 1.0, 0]), metric=True, source="video")
    events = detect_events(m, method="zeni")
    for e in events:
        phase = 0.0 if e.side == "right" else np.pi
        target = 0.25 if e.kind == "strike" else 0.75  # maxima / minima of the sine, in cycles
        cyc = (f * e.t + phase / (2 * np.pi) - target + 0.5) % 1.0 - 0.5
        assert abs(cyc / f) < 0.002, (e, cyc / f)
    assert len([e for e in events if e.kind == "strike"]) >= 20


def test_events_survive_a_short_gap() -> None:
    m = running_motion(60.0)
    joints = {k: v.copy() for k, v in m.joints.items()}
    joints["left_heel"][100:104] = np.nan  # 4 frames
    joints["left_knee"][200:203] = np.nan
    r = analyze_motion(replace(m, joints=joints))
    assert abs(r.summary["cadence_spm"].mean - CADENCE) < 1.0
    assert r.summary["cadence_spm"].n >= 12


# --------------------------------------------------------------------------------------------------------
# metrics


def test_metrics_recovered(result: KinematicsResult) -> None:
    s = result.summary
    assert abs(s["cadence_spm"].mean - CADENCE) < 1.0
    assert abs(s["step_time_s"].mean - STEP) < 0.003
    assert abs(s["contact_time_s"].mean - CONTACT) < 0.015
    assert abs(s["flight_time_s"].mean - (STEP - CONTACT)) < 0.015
    assert abs(s["duty_factor"].mean - CONTACT / STRIDE) < 0.02
    assert abs(s["vertical_oscillation_cm"].mean - 200 * OSC) < 0.3
    leg = THIGH + SHANK
    assert abs(s["vertical_oscillation_pct_leg"].mean - 100 * 2 * OSC / leg) < 0.5
    for side in ("left", "right"):
        by = result.summary_by_side[side]
        assert 10.0 < by["knee_flexion_peak_stance_deg"].mean < 90.0
        # foot lands ahead of the pelvis by X[0] - 5 cm (heel); the foot retracts ~1 cm per 4 ms
        assert abs(by["overstride_cm"].mean - 100 * (X[0] + HEEL[0])) < 4.0
        assert by["cadence_spm"].n >= 6
    assert abs(result.asymmetry_pct["cadence_spm"]) < 1.0
    assert abs(result.asymmetry_pct["contact_time_s"]) < 2.0
    assert result.flags == []
    assert all(not st.flags and not st.excluded for st in result.steps)
    assert s["cadence_spm"].ci95_low < s["cadence_spm"].mean < s["cadence_spm"].ci95_high
    # step structure: every strike is a step; all but each foot's last end with the other foot's strike
    complete = [st for st in result.steps if st.next_strike is not None]
    assert len(result.steps) - len(complete) <= 2
    for st in complete:
        assert st.next_strike is not None and st.next_strike.side != st.side
        assert st.toe_off is not None and st.strike.t < st.toe_off.t < st.next_strike.t
    for st in result.steps:
        assert set(st.metrics) == set(METRICS)
        assert set(st.sources.values()) == {"mocap"}
    assert result.units["vertical_oscillation_cm"] == "cm"
    assert result.units["vertical_oscillation_pct_leg"] == "% leg length"
    assert result.units["left_knee_flexion_deg"] == "deg"
    assert result.series["left_knee_flexion_deg"].shape == result.t.shape
    assert result.series_sources["left_knee_flexion_deg"] == "mocap"


def test_segment_angles_at_contact(result: KinematicsResult) -> None:
    """Designed truths of the synthetic runner: its trunk (pelvis -> thorax, 5 cm forward over 50 cm) leans
    atan(0.1) = 5.71 deg forward throughout; its feet (heel -> toe) stay horizontal, so the foot strike angle
    is 0 (a midfoot strike); the tibia angle at the strike is the designed shank's, and hip flexion (thigh
    against the trunk line continued downwards, which a forward lean tilts backwards) is the thigh's angle
    from the vertical plus the trunk's lean."""
    lean = math.degrees(math.atan2(0.05, 0.5))
    for st in result.steps:
        side = st.side
        assert st.metrics["foot_strike_angle_deg"] == pytest.approx(0.0, abs=0.5)
        assert st.foot_strike == "midfoot"
        if st.toe_off is not None:
            assert st.metrics["trunk_lean_stance_deg"] == pytest.approx(lean, abs=0.2)
        tibia, thigh = shank_and_thigh_at(side, st.strike.t)
        assert st.metrics["tibia_angle_ic_deg"] == pytest.approx(tibia, abs=2.0)
        assert st.metrics["hip_flexion_ic_deg"] == pytest.approx(thigh + lean, abs=2.0)
    assert result.foot_strike_pattern == {"midfoot": len(result.steps)}


def shank_and_thigh_at(side: str, t: float) -> tuple[float, float]:
    """Exact sagittal shank and thigh angles from the downward vertical (deg, + = distal end forward) of
    the designed runner at time t (the knee from the same inverse kinematics as running_motion)."""
    m = running_motion(600.0, duration=t + 0.01)
    i = round(t * 600.0)
    hip, knee, ankle = (m.joints[f"{side}_{j}"][i] for j in ("hip", "knee", "ankle"))

    def from_down(v: Array) -> float:
        return math.degrees(math.atan2(v[0], -v[1]))

    return from_down(ankle - knee), from_down(knee - hip)


def test_knee_at_strike(result: KinematicsResult) -> None:
    """The knee angle read at each detected strike is the true one at that instant (the detected strike
    itself is checked against the designed one in test_events_at_the_designed_times; this synthetic
    knee flexes ~0.6°/ms after landing, twice as fast as in real running). The 12 Hz low-pass of the
    angle series and the linear interpolation between 60 fps frames round the knee's corner at landing
    by up to ~2°."""
    for st in result.steps:
        assert st.metrics["knee_flexion_ic_deg"] == pytest.approx(knee_at(st.side, st.strike.t), abs=3.0)
        assert 0.0 < st.metrics["knee_flexion_ic_deg"] < 60.0


def test_peak_stance_knee_is_the_maximum_over_contact(result: KinematicsResult) -> None:
    knee = result.series["right_knee_flexion_deg"]
    for st in result.steps:
        if st.side == "right" and st.toe_off is not None:
            window = knee[st.strike.index : st.toe_off.index + 1]
            assert st.metrics["knee_flexion_peak_stance_deg"] == pytest.approx(np.max(window), abs=0.5)


def test_camera_frame_gives_the_same_metrics() -> None:
    lab = analyze_motion(running_motion(60.0))
    cam = analyze_motion(running_motion(60.0, frame="camera"))
    for name in METRICS:
        assert cam.summary[name].mean == pytest.approx(lab.summary[name].mean, rel=1e-6, abs=1e-6), name


def test_slow_motion_clip_is_flagged() -> None:
    r = analyze_motion(running_motion(240.0, duration=6.0, time_scale=4.0))
    timed = [st for st in r.steps if math.isfinite(st.metrics["cadence_spm"])]
    assert abs(float(np.median([st.metrics["cadence_spm"] for st in timed])) - CADENCE / 4) < 1.0
    assert any("--slowmo" in f and "slow motion" in f for f in r.flags)
    # an implausible cadence leaves out every timing metric of its step, and only those
    for st in timed:
        assert st.excluded["cadence_spm"] == ("implausible",)
        assert "implausible" in st.excluded["contact_time_s"]
        assert "knee_flexion_ic_deg" not in st.excluded
    assert r.summary["cadence_spm"].n == 0 and r.summary["knee_flexion_ic_deg"].n > 10


def test_non_metric_lengths_in_leg_lengths() -> None:
    """Without a metric scale no metric is named after a unit it does not hold: the *_cm metrics are not
    measured (and a note says what would give them), the *_pct_leg ones are."""
    m = running_motion(60.0)
    r = analyze_motion(replace(m, metric=False))
    assert r.units["vertical_oscillation_pct_leg"] == "% leg length"
    assert r.summary["vertical_oscillation_cm"].n == 0
    assert all(math.isnan(st.metrics["overstride_cm"]) for st in r.steps)
    assert r.summary["vertical_oscillation_pct_leg"].mean == pytest.approx(
        100 * 2 * OSC / (THIGH + SHANK), rel=0.05
    )
    assert "pelvis_height_pct_leg" in r.series and "pelvis_height_cm" not in r.series
    assert any("--height" in f and "overstride_cm" in f for f in r.flags)


def test_flags_leave_out_only_the_metrics_whose_frames_they_touch() -> None:
    """A low-confidence knee in frames 120-160 and one repaired swap at frame 250: each flag leaves out
    only the metrics that read those frames (a strike-instant metric only when its +-50 ms lie there; a
    stance metric when the stance holds the frame; timing never for a swap, and never for the knee's
    confidence, which no timing metric reads)."""
    m = running_motion(60.0)
    n = m.t.size
    conf = np.ones(n)
    conf[120:160] = 0.1
    swapped = np.zeros(n, dtype=bool)
    swapped[250] = True
    kps = Keypoints2D(xy=side_view(m), skeleton="coco17", image_wh=(1280, 720), swapped=swapped)
    r = analyze_motion(replace(m, confidence={"left_knee": conf, "right_knee": conf}, keypoints2d=kps))
    t = m.t
    seen_low = seen_swap_stance_only = False
    for st in r.steps:
        assert set(st.flags) <= set(FLAGS)
        assert "cadence_spm" not in st.excluded and "contact_time_s" not in st.excluded
        strike = np.flatnonzero(np.abs(t - st.strike.t) <= 0.05)
        if (strike >= 120).all() and (strike < 160).all():
            assert "low_confidence" in st.excluded["knee_flexion_ic_deg"]
            seen_low = True
        if st.next_strike is not None and (st.next_strike.index + 4 < 120 or st.strike.index - 4 >= 160):
            assert "low_confidence" not in st.flags
        stance = range(st.strike.index, (st.toe_off or st.strike).index + 1)
        if 250 in stance and abs(t[250] - st.strike.t) > 0.05:
            assert "swap_repaired" in st.excluded["knee_flexion_peak_stance_deg"]
            assert "knee_flexion_ic_deg" not in st.excluded
            seen_swap_stance_only = True
        if st.next_strike is None or not st.strike.index - 3 <= 250 <= st.next_strike.index + 3:
            assert "swap_repaired" not in st.flags
    assert seen_low and seen_swap_stance_only


def side_view(m: Motion, yaw_deg: float = 0.0) -> Array:
    """COCO-17 keypoints (T, 17, 3) of a lab-frame Motion seen from its right side, runner turned by
    ``yaw_deg``."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    j = m.joints
    head = j["thorax"] + np.array([0.02, 0.25, 0.0])
    pts: dict[str, Array] = {
        "nose": head + np.array([0.1, 0, 0]),
        "left_eye": head + np.array([0.08, 0.03, -0.03]),
        "right_eye": head + np.array([0.08, 0.03, 0.03]),
        "left_ear": head + np.array([0, 0, -0.07]),
        "right_ear": head + np.array([0, 0, 0.07]),
    }
    for side, sign in (("left", -1.0), ("right", 1.0)):
        pts[f"{side}_shoulder"] = j["thorax"] + np.array([0, 0, sign * 0.18])
        pts[f"{side}_elbow"] = pts[f"{side}_shoulder"] + np.array([0, -0.3, 0])
        pts[f"{side}_wrist"] = pts[f"{side}_elbow"] + np.array([0.2, 0.1, 0])
        for name in ("hip", "knee", "ankle"):
            pts[f"{side}_{name}"] = j[f"{side}_{name}"]
    out = np.zeros((m.t.size, 17, 3))
    for i, name in enumerate(COCO17.joints):
        p = pts[name]
        out[:, i, 0] = 500 + 400 * (p[:, 0] * c + p[:, 2] * s)
        out[:, i, 1] = 700 - 400 * p[:, 1]
        out[:, i, 2] = 0.9
    return out


def test_out_of_plane_and_side_view_flags() -> None:
    """Angles are withheld where the camera's view is beyond the validated yaw, not where 2D and 3D
    disagree: the runner turned 65 deg gets out_of_plane steps; square to the camera none."""
    m = running_motion(60.0)
    kps = Keypoints2D(xy=side_view(m, yaw_deg=65.0), skeleton="coco17", image_wh=(1280, 720))
    r = analyze_motion(replace(m, keypoints2d=kps, source="video"))
    assert sum("out_of_plane" in st.flags for st in r.steps) > len(r.steps) / 2
    assert any("beyond the range where an angle source is validated" in f for f in r.flags)
    for st in r.steps:
        if "out_of_plane" in st.flags:
            assert "knee_flexion_ic_deg" in st.excluded and "cadence_spm" not in st.excluded
            assert abs(st.yaw_deg) > 30.0
    side_on = Keypoints2D(xy=side_view(m), skeleton="coco17", image_wh=(1280, 720))
    r2 = analyze_motion(replace(m, keypoints2d=side_on, source="video"))
    assert not any("out_of_plane" in st.flags for st in r2.steps)
    assert all(abs(st.yaw_deg) < 5.0 and st.view == "sagittal" for st in r2.steps)
    assert all(st.sources["knee_flexion_ic_deg"] == "2d" for st in r2.steps)
    assert any("pelvic_drop_deg" in f for f in r2.flags)  # a side view: pelvic drop unreliable
    assert np.any(np.isfinite(r2.series["pelvic_drop_deg"]))


def test_summarize() -> None:
    s = summarize([1.0, 2.0, 3.0, float("nan")])
    assert (s.mean, s.n) == (2.0, 3)
    assert s.sd == pytest.approx(1.0)
    assert s.ci95_high - s.mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # t(0.975, 2)
    one = summarize([5.0])
    assert one.mean == 5.0 and one.n == 1 and math.isnan(one.sd) and math.isnan(one.ci95_low)
    assert summarize([]).n == 0 and math.isnan(summarize([]).mean)


# --------------------------------------------------------------------------------------------------------
# errors


def _with(m: Motion, **joints: Array) -> Motion:
    return replace(m, joints={**m.joints, **joints})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m: _with(m, left_knee=np.zeros((5, 3))), "shaped"),
        (lambda m: replace(m, joints={k: np.full_like(v, np.nan) for k, v in m.joints.items()}), "NaN"),
        (lambda m: replace(m, t=m.t[::-1].copy()), "increasing"),
        (lambda m: replace(m, t=np.zeros_like(m.t)), "increasing"),
        (lambda m: replace(m, joints={k: v for k, v in m.joints.items() if "knee" not in k}), "knee"),
        (
            lambda m: replace(m, t=m.t[:12], joints={k: v[:12] for k, v in m.joints.items()}),
            "no foot strike",
        ),
        (lambda m: replace(m, confidence={"left_knee": np.ones(3)}), "confidence"),
    ],
)
def test_bad_input_raises_input_error(make: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        analyze_motion(make(running_motion(60.0)))  # type: ignore[operator]


def test_unknown_event_method_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="method"):
        detect_events(running_motion(60.0), method="magic")


def test_events_are_gait_events() -> None:
    events = detect_events(running_motion(60.0))
    assert all(isinstance(e, GaitEvent) and e.kind in ("strike", "toe_off") for e in events)
    assert [e.t for e in events] == sorted(e.t for e in events)


def test_root_relative_video_takes_vertical_oscillation_from_2d() -> None:
    """Video lifters output root-relative 3D (pelvis fixed at 0): the pelvis height then comes from the
    2D hip midpoint, scaled by the legs' 3D/2D length ratio. The side view draws the runner at 400 px/m,
    so the designed 2*OSC excursion must come back in cm; without 2D it is not measurable (NaN)."""
    m = running_motion(60.0)
    rooted = {k: v - m.joints["pelvis"] for k, v in m.joints.items()}
    kps = Keypoints2D(xy=side_view(m), skeleton="coco17", image_wh=(1280, 720))
    video = replace(m, joints=rooted, keypoints2d=kps, source="video")
    r = analyze_motion(video)
    assert abs(r.summary["vertical_oscillation_cm"].mean - 200 * OSC) < 0.5
    blind = analyze_motion(replace(video, keypoints2d=None))
    assert blind.summary["vertical_oscillation_cm"].n == 0
    assert all(math.isnan(st.metrics["vertical_oscillation_cm"]) for st in blind.steps)


def test_every_metric_is_defined_once_and_documented() -> None:
    """The registry is the one place a metric is defined: every name unique, every plotted metric in the
    plot grid, each listed in the README's metric table with its unit."""
    names = [d.name for d in METRIC_DEFS]
    assert len(names) == len(set(names))
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme[readme.index("### The metrics") : readme.index("### Angle source by camera view")]
    for d in METRIC_DEFS:
        assert f"`{d.name}`" in table, d.name
        if d.normal is not None:
            assert d.normal_source, d.name
    fig = plot_steps(analyze_to_response(running_motion(60.0)))
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == [d.title for d in PLOTTED]


def analyze_to_response(m: Motion) -> KinematicsResponse:
    return to_response(analyze_motion(m))
