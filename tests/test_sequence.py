"""Known truths of services.pose.sequence: filter response, gap filling, swap repair, VFR, NaN policy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy.signal import butter, sosfreqz

from services.pose.sequence import (
    CleanedSequence,
    CleaningParams,
    clean_sequence,
    fill_gaps,
    frame_rate,
    lowpass,
    repair_lr_swaps,
)
from services.pose.skeletons import COCO17, H36M17, HALPE26, Skeleton

Array = NDArray[np.float64]
FS = 60.0
STRIDE_HZ = 1.45


def running_sequence(
    n: int = 300,
    *,
    fs: float = FS,
    noise: float = 0.0,
    seed: int = 0,
    skeleton: Skeleton = COCO17,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A side-view runner crossing the frame: legs and arms oscillate in antiphase, the ankle reaches
    ~37 px/frame at 60 fps, body ~520 px tall. Returns (kps (T, J, 3), t (T,))."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    phi = 2 * np.pi * STRIDE_HZ * t
    hip = np.stack([150 + 100 * t, 300 + 8 * np.sin(2 * phi)], axis=-1)
    const = np.ones(n)
    xy = np.zeros((n, skeleton.num_joints, 2))

    def put(name: str, value: NDArray[np.float64]) -> None:
        if name in skeleton.joints:
            xy[:, skeleton.index(name)] = value

    for s, prefix in ((0, "left_"), (1, "right_")):
        p = phi + s * np.pi
        h = hip + np.stack([(-4 + 8 * s) * const, 0 * const], axis=-1)
        knee = h + np.stack([70 * np.sin(p), 110 + 15 * np.cos(p)], axis=-1)
        ankle = h + np.stack(
            [150 * np.sin(p) + 40 * np.sin(2 * phi), 215 - 35 * np.clip(np.sin(p - 1.2), 0, None)], axis=-1
        )
        shoulder = hip + np.stack([(-5 + 10 * s) * const, -250 * const], axis=-1)
        elbow = shoulder + np.stack([-45 * np.sin(p), 75 + 5 * np.cos(p)], axis=-1)
        wrist = elbow + np.stack([35 - 30 * np.sin(p), 50 - 20 * np.sin(p)], axis=-1)
        for name, value in (
            ("hip", h),
            ("knee", knee),
            ("ankle", ankle),
            ("shoulder", shoulder),
            ("elbow", elbow),
            ("wrist", wrist),
            ("eye", hip + np.array([25 - 4 * s, -325])),
            ("ear", hip + np.array([5 - 4 * s, -318])),
            ("heel", ankle + np.array([-15, 12])),
            ("big_toe", ankle + np.array([30, 18])),
            ("small_toe", ankle + np.array([25, 20])),
        ):
            put(prefix + name, value)
    put("nose", hip + np.array([30, -320]))
    put("head", hip + np.array([10, -360]))
    put("neck", hip + np.array([0, -270]))
    put("hip", hip)
    xy += noise * rng.standard_normal(xy.shape)
    kps = np.concatenate([xy, np.full((n, skeleton.num_joints, 1), 0.9)], axis=-1)
    return kps, t


def limb_flip(skeleton: Skeleton) -> NDArray[np.intp]:
    """flip_permutation restricted to the limbs (swap repair leaves face pairs alone)."""
    limbs = ("hip", "knee", "ankle", "heel", "toe", "shoulder", "elbow", "wrist")
    perm = np.arange(skeleton.num_joints)
    for left, right in skeleton.lr_pairs:
        if any(tok in skeleton.joints[left] for tok in limbs):
            perm[left], perm[right] = right, left
    return perm


def inject(
    kps: NDArray[np.float64], frames: NDArray[np.bool_], perm: NDArray[np.intp]
) -> NDArray[np.float64]:
    out = kps.copy()
    out[frames] = kps[frames][:, perm]
    return out


def away_from_crossings(n: int, *, fs: float = FS, margin: float = 0.6) -> NDArray[np.bool_]:
    """Frames where the legs are well apart (|sin(phase)| > margin): swaps there are unambiguous."""
    return np.abs(np.sin(2 * np.pi * STRIDE_HZ * np.arange(n) / fs)) > margin


def swap_mask(n: int, starts_lengths: list[tuple[int, int]]) -> NDArray[np.bool_]:
    mask = np.zeros(n, dtype=np.bool_)
    for start, length in starts_lengths:
        mask[start : start + length] = True
    return mask


def separated_swaps(n: int, lengths: list[int], *, seed: int) -> NDArray[np.bool_]:
    """Swaps of the given lengths at random places where the limbs are apart, >= 8 frames between."""
    rng = np.random.default_rng(seed)
    ok = away_from_crossings(n)
    mask = np.zeros(n, dtype=np.bool_)
    for length in lengths:
        for _ in range(1000):
            start = int(rng.integers(0, n - length + 1))
            window = slice(max(0, start - 8), start + length + 8)
            if ok[start : start + length].all() and not mask[window].any():
                mask[start : start + length] = True
                break
        else:  # pragma: no cover - the generator always finds room in these tests
            raise AssertionError("no room for the swap")
    return mask


# ----------------------------------------------------------------------------------------------------------
# low-pass


def sine_projection(y: NDArray[np.float64], t: NDArray[np.float64], f: float) -> tuple[float, float]:
    """Amplitude and phase of the f-Hz component of y by least squares."""
    design = np.column_stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t), np.ones_like(t)])
    (a, b, _), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(np.hypot(a, b)), float(np.arctan2(b, a))


def test_lowpass_keeps_1hz_with_zero_phase_and_attenuates_10hz_as_designed() -> None:
    t = np.arange(600) / FS  # 10 s
    slow = np.sin(2 * np.pi * 1.0 * t)
    fast = np.sin(2 * np.pi * 10.0 * t)
    y = lowpass(slow + fast, t, cutoff_hz=6.0, order=4)
    mid = slice(120, 480)  # 2 s away from the edges, an integer number of periods of both

    amp1, phase1 = sine_projection(y[mid], t[mid], 1.0)
    assert amp1 == pytest.approx(1.0, rel=0.02)
    assert abs(phase1) < 2 * np.pi * 1.0 / FS  # under one sample of delay

    peaks_true = np.flatnonzero((slow[1:-1] > slow[:-2]) & (slow[1:-1] >= slow[2:])) + 1
    peaks_true = peaks_true[(peaks_true > 120) & (peaks_true < 480)]
    for p in peaks_true:
        window = np.arange(p - 10, p + 11)
        assert abs(window[np.argmax(y[window])] - p) <= 1

    # analytic gain of the forward-backward pair is |H(f)|^2 of the per-pass filter
    sos = butter(4, 6.0, fs=FS, output="sos")
    _, h = sosfreqz(sos, worN=[10.0], fs=FS)
    gain_pair = float(np.abs(h[0]) ** 2)
    amp10, _ = sine_projection(y[mid] - slow[mid], t[mid], 10.0)
    assert 20 * np.log10(gain_pair) < -20.0  # -40 dB for order 4 at 10 Hz, 6 Hz cutoff, 60 fps
    assert amp10 == pytest.approx(gain_pair, rel=0.05)


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("freq", [3.0, 6.0, 9.0])
def test_lowpass_steady_state_gain_is_squared_butterworth(order: int, freq: float) -> None:
    t = np.arange(1200) / FS
    y = lowpass(np.cos(2 * np.pi * freq * t), None, fs=FS, cutoff_hz=6.0, order=order)
    _, h = sosfreqz(butter(order, 6.0, fs=FS, output="sos"), worN=[freq], fs=FS)
    amp, phase = sine_projection(y[300:900], t[300:900], freq)
    assert amp == pytest.approx(abs(h[0]) ** 2, rel=0.01, abs=1e-4)
    if amp > 1e-3:
        assert abs(np.sin(phase - np.pi / 2)) < 1e-2  # still a pure cosine: zero phase


def test_lowpass_passes_score_through_and_filters_xy() -> None:
    kps, t = running_sequence(120, noise=3.0)
    out = lowpass(kps, t, cutoff_hz=8.0)
    np.testing.assert_array_equal(out[..., 2], kps[..., 2])
    assert np.std(np.diff(out[:, 15, 0], 2)) < 0.5 * np.std(np.diff(kps[:, 15, 0], 2))
    as_xyz = lowpass(kps, t, cutoff_hz=8.0, has_score=False)  # e.g. (x, y, z): every channel filtered
    np.testing.assert_allclose(as_xyz[..., 2], 0.9)
    np.testing.assert_array_equal(as_xyz[..., :2], out[..., :2])


def test_lowpass_clamps_cutoff_below_nyquist_at_low_frame_rates() -> None:
    t = np.arange(100) / 10.0  # 10 fps, Nyquist 5 Hz
    x = np.sin(2 * np.pi * 0.5 * t)
    y = lowpass(x, t, cutoff_hz=8.0)  # runs at 0.4 * fs = 4 Hz instead of failing
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y[20:80] - x[20:80])) < 0.01


def test_lowpass_filters_each_finite_run_separately() -> None:
    t = np.arange(200) / FS
    x = np.where(t < 1.5, 10.0, 500.0) + np.sin(2 * np.pi * t)
    x[88:92] = np.nan  # the step sits inside the gap: nothing may leak across it
    y = lowpass(x, t, cutoff_hz=6.0)
    assert np.array_equal(np.isnan(y), np.isnan(x))
    np.testing.assert_allclose(y[:88], 10 + np.sin(2 * np.pi * t[:88]), atol=0.01)
    np.testing.assert_allclose(y[92:], 500 + np.sin(2 * np.pi * t[92:]), atol=0.01)


def test_lowpass_short_runs_follow_the_documented_policy() -> None:
    x = np.full(40, np.nan)
    x[3] = 7.0  # single sample: unchanged
    x[10:15] = [1.0, 2.0, 3.0, 4.0, 5.0]  # shorter than padlen: filtered, linear trend kept
    x[20:23] = 4.0
    y = lowpass(x, None, fs=FS, cutoff_hz=6.0)
    assert y[3] == 7.0
    np.testing.assert_allclose(y[10:15], x[10:15], atol=1e-9)
    np.testing.assert_allclose(y[20:23], 4.0)
    assert np.array_equal(np.isnan(y), np.isnan(x))


def test_lowpass_vfr_resamples_to_true_time() -> None:
    rng = np.random.default_rng(4)
    # a phone dropping to 30 fps half way, with jitter: treating it as uniform would warp time
    dt = np.concatenate([np.full(240, 1 / 60), np.full(120, 1 / 30)]) * rng.uniform(0.85, 1.15, 360)
    t = np.concatenate([[0.0], np.cumsum(dt)])
    slow = 100 * np.sin(2 * np.pi * 1.2 * t) + 20 * np.sin(2 * np.pi * 3.5 * t)
    y = lowpass(slow, t, cutoff_hz=6.0)
    inner = (t > 0.5) & (t < t[-1] - 0.5)
    assert np.sqrt(np.mean((y[inner] - slow[inner]) ** 2)) < 0.3  # 3.5 Hz is at -0.1 dB
    # the naive path (samples assumed uniform at the median rate) sees 3.5 Hz as 7 Hz in the 30 fps part
    naive = lowpass(slow, None, fs=frame_rate(t), cutoff_hz=6.0)
    assert np.sqrt(np.mean((naive[inner] - slow[inner]) ** 2)) > 5.0


def test_lowpass_regular_timestamps_equal_the_fs_path() -> None:
    t = 3.0 + np.arange(300) / FS
    x = np.random.default_rng(0).standard_normal(300)
    np.testing.assert_allclose(lowpass(x, t, cutoff_hz=8.0), lowpass(x, None, fs=FS, cutoff_hz=8.0))


def test_lowpass_millisecond_rounded_timestamps_take_the_uniform_path() -> None:
    t = np.round(np.arange(300) / FS, 3)  # 16 or 17 ms apart: regular within a tenth of a frame
    x = np.random.default_rng(1).standard_normal(300)
    uniform = lowpass(x, None, fs=frame_rate(t), cutoff_hz=8.0)
    np.testing.assert_allclose(lowpass(x, t, cutoff_hz=8.0), uniform)


def test_frame_rate_is_robust_to_dropped_frames() -> None:
    t = np.delete(np.arange(100) / 30.0, [10, 11, 50])
    assert frame_rate(t) == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cutoff_hz": 0.0, "fs": FS}, "cutoff_hz"),
        ({"cutoff_hz": 6.0, "fs": FS, "order": 0}, "order"),
        ({"cutoff_hz": 6.0}, "fs"),
        ({"cutoff_hz": 6.0, "fs": -1.0}, "fs"),
    ],
)
def test_lowpass_rejects_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lowpass(np.zeros(50), None, **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------
# gap filling


def single_joint(x: NDArray[np.float64], y: NDArray[np.float64], score: float = 0.8) -> NDArray[np.float64]:
    return np.stack([x, y, np.full_like(x, score)], axis=-1)[:, None, :]


def test_fill_gaps_linear_is_exact_and_quadratic_close() -> None:
    t = np.arange(60) / FS
    truth = single_joint(100 + 200 * t, 50 - 80 * t + 300 * t**2)
    kps = truth.copy()
    kps[20:25, 0, :2] = np.nan  # 5 missing frames (NaN, score 0)
    kps[20:25, 0, 2] = 0.0
    kps[40, 0, 2] = 0.75  # bracketing score lower than the others
    kps[41:44, 0, 2] = 0.1  # 3 low-score frames count as missing too
    out, filled = fill_gaps(kps, t, min_score=0.3, max_gap_s=0.1)
    assert filled[:, 0].tolist() == [20 <= i < 25 or 41 <= i < 44 for i in range(60)]
    np.testing.assert_allclose(out[:, 0, 0], truth[:, 0, 0], atol=1e-9)  # x is linear: exact
    np.testing.assert_allclose(out[:, 0, 1], truth[:, 0, 1], atol=0.5)  # y quadratic (0.75 px off a line)
    np.testing.assert_array_equal(out[20:25, 0, 2], 0.8)
    np.testing.assert_array_equal(out[41:44, 0, 2], 0.75)  # min of the neighbours
    np.testing.assert_array_equal(out[~filled[:, 0], 0], kps[~filled[:, 0], 0])


def test_fill_gaps_respects_max_gap_and_edges() -> None:
    t = np.arange(60) / FS
    kps = single_joint(100 + 200 * t, 50 - 80 * t)
    kps[10:16, 0, 2] = 0.0  # 6 frames = 0.1 s: filled
    kps[30:37, 0, 2] = 0.0  # 7 frames: too long
    kps[:3, 0, 2] = 0.0  # leading: never extrapolated
    kps[57:, 0, 2] = 0.0  # trailing
    out, filled = fill_gaps(kps, t, max_gap_s=0.1)
    assert filled[10:16, 0].all()
    assert not filled[30:37, 0].any() and not filled[:3, 0].any() and not filled[57:, 0].any()
    for missing in (slice(30, 37), slice(0, 3), slice(57, 60)):
        assert np.isnan(out[missing, 0, :2]).all()
        np.testing.assert_array_equal(out[missing, 0, 2], 0.0)  # score kept


def test_fill_gaps_measures_gaps_in_real_time() -> None:
    t = np.arange(60) / FS
    t[30:] += 0.05  # 3 frames dropped by the camera between 29 and 30
    kps = single_joint(100 + 200 * t, 50 + 0 * t)
    kps[27:30, 0, 2] = 0.0  # 3 missing frames, but 6 frame intervals of real time: 0.1 s
    _, filled = fill_gaps(kps, t, max_gap_s=0.1)
    assert filled[27:30, 0].all()
    _, filled = fill_gaps(kps, t, max_gap_s=0.09)
    assert not filled.any()


def test_fill_gaps_all_missing_joint_stays_nan() -> None:
    kps, t = running_sequence(30)
    kps[:, 3, :2] = np.nan
    kps[:, 4, 2] = 0.0
    kps[5, 6, 2] = 0.0  # one valid neighbourhood elsewhere
    out, filled = fill_gaps(kps, t)
    assert np.isnan(out[:, 3:5, :2]).all()
    assert not filled[:, 3:5].any()
    assert filled[5, 6]


# ----------------------------------------------------------------------------------------------------------
# swap repair


@pytest.mark.parametrize("skeleton", [COCO17, HALPE26, H36M17])
@pytest.mark.parametrize("noise", [0.0, 3.0])
def test_clean_sequence_is_not_swapped(skeleton: Skeleton, noise: float) -> None:
    kps, _ = running_sequence(600, noise=noise, seed=7, skeleton=skeleton)
    out, swapped = repair_lr_swaps(kps, skeleton)
    assert not swapped.any()
    np.testing.assert_array_equal(out, kps)


@pytest.mark.parametrize("skeleton", [COCO17, HALPE26])
@pytest.mark.parametrize("noise", [0.0, 3.0])
def test_injected_swaps_of_1_to_5_frames_are_repaired_exactly(skeleton: Skeleton, noise: float) -> None:
    kps, _ = running_sequence(600, noise=noise, seed=1, skeleton=skeleton)
    frames = separated_swaps(600, [1, 2, 3, 4, 5, 1, 2, 3, 4, 5], seed=2)
    bad = inject(kps, frames, limb_flip(skeleton))
    out, swapped = repair_lr_swaps(bad, skeleton)
    np.testing.assert_array_equal(swapped, frames)
    np.testing.assert_array_equal(out, kps)


def test_swaps_at_the_ends_of_the_sequence_are_repaired() -> None:
    kps, _ = running_sequence(200)
    kps = kps[10:]  # start with the legs apart (at frame 0 they cross), end likewise
    ok = away_from_crossings(200)[10:]
    assert ok[:3].all() and ok[-2:].all()
    frames = swap_mask(190, [(0, 3), (188, 2)])
    out, swapped = repair_lr_swaps(inject(kps, frames, limb_flip(COCO17)), COCO17)
    np.testing.assert_array_equal(swapped, frames)
    np.testing.assert_array_equal(out, kps)


def test_legs_and_arms_are_repaired_independently() -> None:
    kps, _ = running_sequence(300, noise=1.0)
    perm = np.arange(17)
    for left, right in ((13, 14), (15, 16), (11, 12)):  # legs only
        perm[left], perm[right] = right, left
    legs = separated_swaps(300, [3, 2], seed=5)
    bad = inject(kps, legs, perm)
    perm = np.arange(17)
    for left, right in ((5, 6), (7, 8), (9, 10)):  # arms only
        perm[left], perm[right] = right, left
    arms = separated_swaps(300, [4], seed=11) & ~legs
    bad = inject(bad, arms, perm)
    out, swapped = repair_lr_swaps(bad, COCO17)
    np.testing.assert_array_equal(swapped, legs | arms)
    np.testing.assert_array_equal(out, kps)


def test_swap_with_only_the_near_leg_visible_is_repaired() -> None:
    kps, _ = running_sequence(300, noise=1.0)
    far = [12, 14, 16]  # right hip, knee, ankle occluded throughout
    kps[:, far, 2] = 0.05
    kps[:, far, :2] = np.nan
    frames = separated_swaps(300, [3, 5], seed=3)
    bad = inject(kps, frames, limb_flip(COCO17))  # the visible leg is labelled "right" there
    out, swapped = repair_lr_swaps(bad, COCO17)
    np.testing.assert_array_equal(swapped, frames)
    np.testing.assert_array_equal(out, kps)


def test_coincident_left_and_right_are_never_swapped() -> None:
    kps, _ = running_sequence(120)
    both_on_one_leg = kps.copy()
    for left, right in ((11, 12), (13, 14), (15, 16)):
        both_on_one_leg[40:60, right] = both_on_one_leg[40:60, left]  # detector put both labels on one leg
    out, swapped = repair_lr_swaps(both_on_one_leg, COCO17)
    assert not swapped[40:60].any()
    np.testing.assert_array_equal(out[40:60], both_on_one_leg[40:60])


def test_swap_spanning_a_leg_crossing_is_repaired_up_to_the_ambiguity() -> None:
    kps, _ = running_sequence(300)
    crossing = int(np.argmin(np.abs(np.sin(2 * np.pi * STRIDE_HZ * np.arange(100, 200) / FS)))) + 100
    frames = swap_mask(300, [(crossing - 2, 5)])
    out, _ = repair_lr_swaps(inject(kps, frames, limb_flip(COCO17)), COCO17)
    # frames whose limbs are far apart are exact; at the crossing itself left ~ right, so either is fine
    apart = away_from_crossings(300, margin=0.3)
    np.testing.assert_array_equal(out[apart], kps[apart])
    assert np.max(np.abs(out - kps)) < 35.0


@pytest.mark.parametrize("length", [8, 12, 16])
def test_long_swap_starting_at_a_crossing_is_repaired(length: int) -> None:
    # detectors typically lose the labels where the legs cross and recover them later with a jump
    kps, _ = running_sequence(300)
    phase = np.sin(2 * np.pi * STRIDE_HZ * np.arange(300) / FS)
    crossing = int(np.flatnonzero(np.diff(np.sign(phase)) != 0)[5])
    frames = swap_mask(300, [(crossing + 1, length)])
    out, swapped = repair_lr_swaps(inject(kps, frames, limb_flip(COCO17)), COCO17)
    apart = np.abs(phase) > 0.3
    np.testing.assert_array_equal(swapped[apart], frames[apart])
    assert not (swapped & ~frames).any()
    np.testing.assert_array_equal(out[apart], kps[apart])


def test_repair_rejects_skeleton_mismatch() -> None:
    kps, _ = running_sequence(10)
    with pytest.raises(ValueError, match="joints"):
        repair_lr_swaps(kps, HALPE26)


# ----------------------------------------------------------------------------------------------------------
# the pipeline


def test_clean_sequence_end_to_end() -> None:
    truth, t = running_sequence(600, skeleton=HALPE26)
    rng = np.random.default_rng(9)
    kps = truth.copy()
    kps[..., :2] += 2.0 * rng.standard_normal(kps[..., :2].shape)
    frames = separated_swaps(600, [2, 4], seed=8)
    kps = inject(kps, frames, limb_flip(HALPE26))
    kps[100:104, 15, :2] = np.nan  # left ankle lost for 4 frames
    kps[100:104, 15, 2] = 0.0
    kps[300:340, 16, 2] = 0.1  # right ankle occluded for 40 frames: too long to fill
    kps[:, 3, :2] = np.nan  # an ear never seen

    result = clean_sequence(kps, t, HALPE26)

    assert isinstance(result, CleanedSequence)
    assert result.keypoints.shape == kps.shape and result.keypoints.dtype == np.float64
    np.testing.assert_array_equal(result.swapped, frames)
    assert result.filled[100:104, 15].all() and result.filled.sum() == 4
    assert np.isnan(result.keypoints[300:340, 16, :2]).all()
    np.testing.assert_array_equal(result.keypoints[300:340, 16, 2], 0.1)
    assert np.isnan(result.keypoints[:, 3, :2]).all()
    err = np.abs(result.keypoints[..., :2] - truth[..., :2])
    inner = err[20:-20]
    assert np.nanmax(inner) < 8.0  # 2 px noise, 37 px/frame ankles
    assert np.nanmean(inner) < 1.5


def test_clean_sequence_vfr_timestamps() -> None:
    rng = np.random.default_rng(1)
    # real times of a variable frame rate phone (50-70 fps); the runner is rendered densely and sampled there
    t = np.concatenate([[0.0], np.cumsum(rng.uniform(1 / 70, 1 / 50, 399))])
    dense, t_dense = running_sequence(4000, fs=600.0)
    truth = np.stack([np.interp(t, t_dense, col) for col in dense.reshape(4000, -1).T], axis=-1).reshape(
        400, *dense.shape[1:]
    )
    kps = truth.copy()
    kps[..., :2] += 1.0 * rng.standard_normal(kps[..., :2].shape)
    result = clean_sequence(kps, t, COCO17)
    err = np.abs(result.keypoints[20:-20, :, :2] - truth[20:-20, :, :2])
    assert not result.swapped.any()
    assert np.mean(err) < 1.0
    assert np.max(err) < 6.0


def test_clean_sequence_low_frame_rate_and_tiny_inputs() -> None:
    kps, t = running_sequence(40, fs=12.0)
    result = clean_sequence(kps, t, COCO17)  # cutoff clamped to 4.8 Hz
    assert np.all(np.isfinite(result.keypoints))
    one = clean_sequence(kps[:1], t[:1], COCO17)
    np.testing.assert_array_equal(one.keypoints, kps[:1])
    two = clean_sequence(kps[:2], t[:2], COCO17)
    assert two.keypoints.shape == (2, 17, 3)


def test_clean_sequence_all_nan_input_stays_nan_without_warnings() -> None:
    kps = np.full((50, 17, 3), np.nan)
    kps[..., 2] = 0.0
    result = clean_sequence(kps, np.arange(50) / FS, COCO17)
    assert np.isnan(result.keypoints[..., :2]).all()
    assert not result.filled.any() and not result.swapped.any()


def test_inputs_are_not_mutated() -> None:
    kps, t = running_sequence(120, noise=2.0, skeleton=HALPE26)
    kps[10:14, 15, :2] = np.nan
    kps[20:22, 16, 2] = 0.1
    kps = inject(kps, swap_mask(120, [(50, 2)]), limb_flip(HALPE26))
    kps.setflags(write=False)
    t.setflags(write=False)
    before_k, before_t = kps.copy(), t.copy()
    clean_sequence(kps, t, HALPE26)
    fill_gaps(kps, t)
    repair_lr_swaps(kps, HALPE26)
    lowpass(kps, t, cutoff_hz=8.0)
    lowpass(kps[..., 0], None, fs=FS, cutoff_hz=8.0)
    np.testing.assert_array_equal(kps, before_k)
    np.testing.assert_array_equal(t, before_t)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda k, t: (k[..., :2], t), "kps"),
        (lambda k, t: (k, t[:-1]), "t must be shaped"),
        (lambda k, t: (k, t[::-1]), "increasing"),
        (lambda k, t: (k, np.where(np.arange(t.size) == 3, np.nan, t)), "finite"),
    ],
)
def test_clean_sequence_rejects_bad_inputs(
    make: Callable[[Array, Array], tuple[Array, Array]], match: str
) -> None:
    kps, t = running_sequence(20)
    bad_kps, bad_t = make(kps, t)
    with pytest.raises(ValueError, match=match):
        clean_sequence(bad_kps, bad_t, COCO17)


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="cutoff_hz"):
        CleaningParams(cutoff_hz=-1.0)
    with pytest.raises(ValueError, match="order"):
        CleaningParams(order=0)
    with pytest.raises(ValueError, match="max_gap_s"):
        CleaningParams(max_gap_s=float("nan"))


# ----------------------------------------------------------------------------------------------------------
# properties


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.floats(-1e4, 1e4, allow_nan=False),
    n=st.integers(1, 120),
    holes=st.lists(st.integers(0, 119), max_size=30),
    fs=st.floats(5.0, 240.0),
    cutoff=st.floats(0.5, 50.0),
    order=st.integers(1, 6),
    jitter=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**16),
)
def test_lowpass_of_a_constant_is_the_constant(
    value: float, n: int, holes: list[int], fs: float, cutoff: float, order: int, jitter: float, seed: int
) -> None:
    x = np.full(n, value)
    x[[h for h in holes if h < n]] = np.nan
    # jitter > VFR_TOLERANCE takes the resampling path
    t = np.cumsum(1 + jitter * np.random.default_rng(seed).uniform(-1, 1, n)) / fs
    y = (
        lowpass(x, t, cutoff_hz=cutoff, order=order)
        if jitter > 0
        else lowpass(x, None, fs=fs, cutoff_hz=cutoff, order=order)
    )
    assert np.array_equal(np.isnan(y), np.isnan(x))
    np.testing.assert_allclose(y[~np.isnan(y)], value, rtol=1e-9, atol=1e-9 * max(1.0, abs(value)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    noise=st.floats(0.0, 20.0),
    n_swaps=st.integers(0, 15),
    n_missing=st.integers(0, 200),
)
def test_swap_repair_is_idempotent(seed: int, noise: float, n_swaps: int, n_missing: int) -> None:
    rng = np.random.default_rng(seed)
    kps, _ = running_sequence(150, noise=noise, seed=seed)
    frames = np.zeros(150, dtype=np.bool_)
    frames[rng.integers(0, 150, n_swaps)] = True  # arbitrary places, crossings included
    kps = inject(kps, frames, limb_flip(COCO17))
    kps[rng.integers(0, 150, n_missing), rng.integers(0, 17, n_missing), 2] = 0.0
    once, _ = repair_lr_swaps(kps, COCO17)
    twice, swapped_again = repair_lr_swaps(once, COCO17)
    assert not swapped_again.any()
    np.testing.assert_array_equal(twice, once)
