"""Known truths of services.kinematics.timebase: the spring-mass excursion against a numerical integration of
the sine-force model; the period finder on a sine; a synthetic runner whose body follows that model exactly
(ballistic flights, known contact) at several slow-motion factors, a synthetic "runner" whose body moves
in anti-phase (the walking signature), a motionless body; real treadmill motion capture (RBDS001, 3.5 m/s)
re-timed; and, marked slow, the real pipeline on IMG_5396 (treadmill running, 168 steps/min) and the
walking demo clip re-timed without metadata by :func:`services.pose.retime.retime`."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED
from numpy.typing import NDArray
from synthetic_runner import stride_profile, two_link_legs

from gateway.core import AnalysisSpec, Engine, RunnerInfo, kinematics_request
from services.errors import InputError
from services.kinematics.metrics import analyze_motion
from services.kinematics.mocap import rbds_motion, read_c3d
from services.kinematics.model import Keypoints2D, Motion
from services.kinematics.schema import to_motion
from services.kinematics.timebase import (
    CUES,
    G_MPS2,
    LEG_LENGTH_PRIOR_M,
    TimeBaseEstimate,
    estimate_time_base,
    excursion_m,
    period_samples,
)
from services.pose.pipeline import analyze_video
from services.pose.retime import retime
from services.settings import Settings

Array = NDArray[np.float64]

# --------------------------------------------------------------------------------------------------------
# a synthetic runner: the legs of tests/test_kinematics_metrics.py, the body on the sine-force model

CADENCE, CONTACT, SPEED = 170.0, 0.25, 3.0
STEP = 60.0 / CADENCE
STRIDE = 2.0 * STEP
THIGH, SHANK, ANKLE_H, HEEL_RISE, HIP_H = 0.48, 0.46, 0.08, 0.07, 0.90
T0 = {"right": 0.1, "left": 0.1 + STEP}
PX_PER_M = 600.0


def sine_force_height(n: int = 4000, contact: float = CONTACT, step: float = STEP) -> tuple[Array, Array]:
    """One step of the centre of mass' height (m, zero mean) from a strike (tau = 0): vertical force
    ``F_max sin(pi tau / contact)`` during contact, free fall after, ``F_max`` such that the mean force is
    the body weight (Morin et al. 2005); integrated numerically on a fine grid, periodic."""
    tau = np.arange(n) * step / n
    f_max = G_MPS2 * math.pi / 2.0 * step / contact
    accel = np.where(tau < contact, f_max * np.sin(np.pi * tau / contact) - G_MPS2, -G_MPS2)
    v = np.cumsum(accel) * step / n
    v -= v.mean()
    z = np.cumsum(v) * step / n
    return tau, z - z.mean()


TAU_COM, Z_COM = sine_force_height()
TAU, X, Z = stride_profile(stride=STRIDE, contact=CONTACT, speed=SPEED, heel_rise=HEEL_RISE)


def runner(
    fs: float = 60.0,
    *,
    factor: float = 1.0,
    antiphase: bool = False,
    metric: bool = True,
    duration: float = 6.0,
) -> Motion:
    """A treadmill runner filmed from the side at ``fs`` frames per real second, played ``factor`` times
    slower: 3D joints (lab frame, metres unless ``metric`` is False: then a third of that) and the 2D
    keypoints of a side-view camera (``PX_PER_M`` pixels per metre). The pelvis and head follow the
    sine-force model exactly (``antiphase``: mirrored, highest at mid-stance as in walking)."""
    t = np.arange(round(duration * fs)) / fs
    com = np.interp((t - T0["right"]) % STEP, TAU_COM, Z_COM, period=STEP)
    com = -com if antiphase else com
    pelvis = np.stack([np.zeros_like(t), HIP_H + com, np.zeros_like(t)], axis=1)
    joints = {"pelvis": pelvis}
    joints |= two_link_legs(
        t, pelvis, t0=T0, stride=STRIDE, profile=(TAU, X, Z), thigh=THIGH, shank=SHANK, ankle_h=ANKLE_H
    )
    head, shoulders = pelvis + np.array([0.05, 0.70, 0.0]), pelvis + np.array([0.03, 0.52, 0.0])
    eye, nose = np.array([0.08, 0.03, 0.0]), np.array([0.10, 0.0, 0.0])
    legs = ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
    coco = {0: head + nose, 1: head + eye, 2: head + eye, 3: head, 4: head, 5: shoulders, 6: shoulders}
    coco |= {11 + i: joints[name] for i, name in enumerate(legs)}  # COCO-17 order
    kps = np.full((t.size, 17, 3), np.nan)
    kps[..., 2] = 0.0
    for i, p in coco.items():  # image x = forward, y down
        kps[:, i, 0] = 640.0 + PX_PER_M * p[:, 0]
        kps[:, i, 1] = 1000.0 - PX_PER_M * p[:, 1]
        kps[:, i, 2] = 0.9
    if not metric:
        joints = {name: xyz / 3.0 for name, xyz in joints.items()}
    return Motion(
        t=t * factor,
        joints=joints,
        up=np.array([0.0, 1.0, 0.0]),
        metric=metric,
        source="video",
        keypoints2d=Keypoints2D(xy=kps, skeleton="coco17", image_wh=(1280, 1280)),
    )


def assert_pinned(est: TimeBaseEstimate, truth: float, *, tol: float) -> None:
    """Re-timed and applied: factor within ``tol`` of the truth, inside its interval, a running cadence."""
    assert est.applies and est.running and est.factor is not None
    assert est.factor == pytest.approx(truth, rel=tol)
    assert est.low is not None and est.high is not None and est.low < truth < est.high
    assert est.cue in CUES


# --------------------------------------------------------------------------------------------------------
# pure helpers


@pytest.mark.parametrize(("contact", "step"), [(0.25, STEP), (0.20, 0.35), (0.30, 0.34), (0.244, 0.353)])
def test_excursion_is_that_of_the_integrated_sine_force_model(contact: float, step: float) -> None:
    _, z = sine_force_height(20000, contact, step)
    assert excursion_m(contact, step - contact) == pytest.approx(float(z.max() - z.min()), rel=2e-3)


def test_excursion_scales_with_time_squared_and_refuses_nonsense() -> None:
    assert excursion_m(0.75, 0.3) == pytest.approx(9.0 * excursion_m(0.25, 0.1))
    assert excursion_m(0.25, 0.1, g_mps2=G_MPS2 / 4) == pytest.approx(excursion_m(0.25, 0.1) / 4)
    for contact, flight in [(0.0, 0.1), (-0.1, 0.2), (0.3, -0.05), (math.nan, 0.1)]:
        assert math.isnan(excursion_m(contact, flight))


def test_period_of_a_sine_with_gaps_and_none_in_noise() -> None:
    n = np.arange(600, dtype=np.float64)
    x = np.sin(2 * np.pi * n / 37.3) + 0.3 * np.sin(4 * np.pi * n / 37.3 + 1.0)
    x[100:112] = np.nan
    period, peak = period_samples(x)
    assert period == pytest.approx(37.3, abs=0.2) and peak > 0.9
    noise = np.random.default_rng(3).standard_normal(600)
    assert math.isnan(period_samples(noise)[0])
    assert math.isnan(period_samples(np.full(50, np.nan))[0])


# --------------------------------------------------------------------------------------------------------
# the synthetic runner


@pytest.mark.parametrize("fs", [30.0, 60.0, 150.0])
def test_real_time_runner_keeps_the_nominal_time_base(fs: float) -> None:
    est = estimate_time_base(runner(fs))
    assert est.factor == 1.0 and est.cue == "nominal" and not est.applies and est.running
    assert est.low is not None and est.high is not None and est.low < 1.0 < est.high
    assert est.cadence_spm == pytest.approx(CADENCE, rel=0.02)
    assert est.signal == "head_2d"
    # the body falls freely in flight: the ballistic cue finds g; the spring-mass cue is the exact model
    # up to the detected toe-off (a few ms late on these legs)
    assert est.estimates["ballistic"].factor == pytest.approx(1.0, abs=0.01)
    assert est.estimates["spring_mass"].factor == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("fs", [30.0, 60.0])
@pytest.mark.parametrize("factor", [2.5, 4.0, 8.0, 13.0])
def test_slow_motion_runner_factor_is_recovered(fs: float, factor: float) -> None:
    est = estimate_time_base(runner(fs, factor=factor))
    assert_pinned(est, factor, tol=0.03)
    assert est.cadence_nominal_spm == pytest.approx(CADENCE / factor, rel=0.02)
    assert est.cadence_spm == pytest.approx(CADENCE, rel=0.03)
    # the estimate works in samples: it is the same whatever the factor
    reference = estimate_time_base(runner(fs, factor=2.5))
    assert reference.factor is not None and est.factor is not None
    assert est.factor / factor == pytest.approx(reference.factor / 2.5, rel=1e-6)


def test_a_factor_above_the_cadence_range_is_corrected_down() -> None:
    est = estimate_time_base(runner(60.0, factor=0.5))  # a 2x time-lapse: 340 steps/min nominal
    assert_pinned(est, 0.5, tol=0.03)


def test_without_a_runner_height_the_population_prior_widens_the_interval() -> None:
    metric = estimate_time_base(runner(60.0, factor=4.0))
    prior = estimate_time_base(runner(60.0, factor=4.0, metric=False))
    assert_pinned(prior, 4.0, tol=0.08)
    for cue in ("ballistic", "spring_mass"):
        wide, narrow = prior.estimates[cue], metric.estimates[cue]
        assert wide.high / wide.low > narrow.high / narrow.low
    # the legs are 0.94 m; the prior says LEG_LENGTH_PRIOR_M, so lengths and the factor scale accordingly
    expected = math.sqrt((THIGH + SHANK) / LEG_LENGTH_PRIOR_M)
    assert prior.estimates["ballistic"].factor / 4.0 == pytest.approx(expected, rel=0.01)


def test_a_given_time_base_is_never_overridden() -> None:
    right = estimate_time_base(runner(60.0), given=True)
    assert right.factor == 1.0 and right.cue == "given" and not right.applies
    assert any("agrees" in note for note in right.notes)
    wrong = estimate_time_base(runner(60.0, factor=4.0), given=True)  # metadata says real time; it is not
    assert wrong.factor == 1.0 and wrong.cue == "given" and not wrong.applies
    assert any("questions" in note for note in wrong.notes)


@pytest.mark.parametrize("factor", [1.0, 3.0])
def test_a_body_highest_at_mid_stance_is_not_running(factor: float) -> None:
    est = estimate_time_base(runner(60.0, factor=factor, antiphase=True))
    assert not est.running and est.factor is None and not est.applies and est.cadence_spm is None
    assert est.cue == "none" and any("not look like running" in note for note in est.notes)


def test_a_motionless_body_is_not_timed() -> None:
    moving = runner(60.0)
    still = dataclasses.replace(
        moving, joints={name: np.repeat(xyz[:1], xyz.shape[0], axis=0) for name, xyz in moving.joints.items()}
    )
    still = dataclasses.replace(still, keypoints2d=None)
    est = estimate_time_base(still)
    assert est.factor is None and not est.applies and not est.running
    assert any("no periodic stride" in note for note in est.notes)


def test_estimate_is_deterministic_and_does_not_mutate_its_input() -> None:
    motion = runner(60.0, factor=4.0)
    t_before = motion.t.copy()
    a, b = estimate_time_base(motion), estimate_time_base(motion)
    assert a == b
    np.testing.assert_array_equal(motion.t, t_before)


def test_an_invalid_motion_is_an_input_error() -> None:
    motion = runner(60.0)
    with pytest.raises(InputError):
        estimate_time_base(dataclasses.replace(motion, t=motion.t[::-1].copy()))


# --------------------------------------------------------------------------------------------------------
# RBDS001: real treadmill running, motion capture at 150 Hz (3.5 m/s, 171 steps/min by the force plate)

RBDS = SHARED / "data/mocap-running-rbds"


@pytest.fixture(scope="module")
def rbds() -> Motion:
    return rbds_motion(read_c3d(RBDS / "RBDS001runT35.c3d"), read_c3d(RBDS / "RBDS001static.c3d"))


def test_rbds_real_time_is_consistent_with_one(rbds: Motion) -> None:
    est = estimate_time_base(rbds)
    assert est.cue == "nominal" and est.factor == 1.0 and not est.applies and est.running
    assert est.signal == "segmental_com_3d"
    assert est.low is not None and est.high is not None and est.low < 1.0 < est.high
    for cue in ("ballistic", "spring_mass"):
        c = est.estimates[cue]
        assert c.low < 1.0 < c.high and c.factor == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("factor", [3.0, 5.0, 8.0])
def test_rbds_re_timed_factor_is_recovered(rbds: Motion, factor: float) -> None:
    est = estimate_time_base(dataclasses.replace(rbds, t=rbds.t * factor))
    assert_pinned(est, factor, tol=0.05)  # acceptance: 15 %; measured 1.2 %
    assert est.cue in ("ballistic", "spring_mass")
    assert est.cadence_spm == pytest.approx(171.0, rel=0.03)


# --------------------------------------------------------------------------------------------------------
# real videos through the pipeline, re-timed without metadata (slow)

TREADMILL = SHARED / "data/running-treadmill-phone/IMG_5396.mp4"
WALKING = SHARED / "data/walking-side-sports2d/demo.mp4"
TREADMILL_CADENCE = 168.0  # steps/min (NOTES.md; 60 fps, 388 frames)
RUNNER_HEIGHT_M = 1.78


@pytest.fixture(scope="module")
def engine() -> Engine:
    models = os.pathsep.join(str(SHARED / d) for d in ("models", "reference"))
    return Engine(Settings(shared_dir=SHARED, models_dir=models, triton_url=""))


def _video_motion(engine: Engine, path: Path, tmp: Path, factor: float, height_m: float | None) -> Motion:
    """``path`` re-timed by ``factor`` (no metadata), analysed with the lightning preset, and turned into
    the Motion the kinematics service builds from the gateway's request."""
    dst = tmp / f"{path.stem}_x{factor:g}.mp4"
    retime(path, dst, factor)
    spec = AnalysisSpec(preset="lightning", runner=RunnerInfo(height_m=height_m))
    with engine.backend(engine.models(spec), pose_workers=spec.pose_workers) as backend:
        result = analyze_video(dst, backend, spec.options(engine.settings))
    assert result.info.time_scale == 1.0 and result.info.capture_fps is None  # nothing tells the factor
    return to_motion(kinematics_request(result.sequence, spec.runner))


@pytest.fixture(scope="module")
def treadmill(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> dict[float, Motion]:
    tmp = tmp_path_factory.mktemp("retimed")
    return {k: _video_motion(engine, TREADMILL, tmp, k, RUNNER_HEIGHT_M) for k in (1.0, 3.0, 5.0, 8.0)}


@pytest.fixture(scope="module")
def walking(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> dict[float, Motion]:
    tmp = tmp_path_factory.mktemp("retimed")
    return {k: _video_motion(engine, WALKING, tmp, k, None) for k in (1.0, 3.0)}


@pytest.mark.slow
def test_treadmill_video_at_real_time_is_not_corrected(treadmill: dict[float, Motion]) -> None:
    est = estimate_time_base(treadmill[1.0])
    assert est.factor == 1.0 and est.cue == "nominal" and not est.applies and est.running
    assert est.low is not None and est.high is not None and est.low < 1.0 < est.high
    assert est.cadence_spm == pytest.approx(TREADMILL_CADENCE, rel=0.03)


@pytest.mark.slow
@pytest.mark.parametrize("factor", [3.0, 5.0, 8.0])
def test_treadmill_video_slow_motion_factor_is_recovered(
    treadmill: dict[float, Motion], factor: float
) -> None:
    motion = treadmill[factor]
    est = estimate_time_base(motion)
    assert_pinned(est, factor, tol=0.15)
    assert est.factor is not None and est.cadence_spm is not None
    assert est.cadence_spm == pytest.approx(TREADMILL_CADENCE, rel=0.05)
    # re-timed by the estimate, the engine measures a running cadence within 5 % of the truth
    corrected = dataclasses.replace(motion, t=motion.t / est.factor)
    cadence = analyze_motion(corrected).summary["cadence_spm"].mean
    assert cadence == pytest.approx(TREADMILL_CADENCE, rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("factor", [1.0, 3.0])
def test_walking_video_is_never_made_running(walking: dict[float, Motion], factor: float) -> None:
    est = estimate_time_base(walking[factor])
    assert not est.running and not est.applies
    assert est.factor is None and est.cadence_spm is None  # not pinned down: walking is time-base free
    # not a running cadence on the nominal time base either (the walker takes ~100 steps/min)
    assert est.cadence_nominal_spm == pytest.approx(100.0 / factor, rel=0.1)
