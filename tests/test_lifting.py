"""Tests of services.pose.lifting: layout maps, normalisations (vs official MotionBERT vectors), windowing and
blending with stand-in models, SemGCN with its real weights on 4 Human3.6M frames, metric scaling.

Shared files are found through GAITWAY_SHARED_DIR (default: <repo parent>/shared)."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from services.errors import InferenceError, InputError
from services.pose.lifting import (
    MOTIONBERT_WINDOW,
    SEMGCN_JOINTS,
    LifterCodec,
    MotionBERTCodec,
    SemGCNCodec,
    blend_weights,
    coco17_to_h36m17,
    estimate_neck_nose,
    flip_h36m,
    halpe26_to_h36m17,
    motionbert_crop_scale,
    motionbert_pixel_normalize,
    normalize_screen,
    scale_to_height,
    standing_height,
    window_starts,
)
from services.pose.metrics import mpjpe, pa_mpjpe
from services.pose.skeletons import COCO17, H36M17

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]


def shared_file(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared file missing: {path} (set GAITWAY_SHARED_DIR)")
    return path


@pytest.fixture(scope="module")
def golden() -> dict[str, NDArray[Any]]:
    with np.load(shared_file("reference", "motionbert", "tiny_golden.npz")) as npz:
        return {k: npz[k] for k in npz.files}


# ----------------------------------------------------------------------------------------------------
# Synthetic inputs
# ----------------------------------------------------------------------------------------------------


def running_sequence(t: int, seed: int = 0, missing: float = 0.05) -> F64:
    """(T, 17, 3) H36M pixel keypoints moving smoothly across a 1920x1080 frame, some joints NaN."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-120.0, 120.0, size=(17, 2))
    phase = rng.uniform(0, 2 * np.pi, size=(17, 2))
    time = np.arange(t, dtype=np.float64)[:, None, None]
    xy = (
        np.array([400.0 + 1.2 * time[:, 0, 0], 540.0 + 0.0 * time[:, 0, 0]]).T[:, None, :]
        + base
        + 40.0 * np.sin(2 * np.pi * time / 40.0 + phase)
    )
    score = rng.uniform(0.3, 1.0, size=(t, 17, 1))
    kps = np.concatenate([xy, score], axis=-1)
    kps[rng.random((t, 17)) < missing] = np.nan
    return np.asarray(kps, dtype=np.float64)


def motionbert_expected(codec: MotionBERTCodec, kps: F64, fn: Callable[[F32], F32]) -> F64:
    """A stand-in applied once to the whole normalised sequence, with the codec's root and NaN handling."""
    x, valid = codec.prepare(kps, (1920, 1080))
    out = fn(x[None])[0].astype(np.float64)
    out[:, 0, :] = 0.0
    out[valid.sum(axis=-1) < codec.min_valid_joints] = np.nan
    return np.asarray(out, dtype=np.float64)


def pointwise(batch: F32) -> F32:
    """Per-frame stand-in: (x, y, c) -> (x, y, x*y)."""
    assert batch.dtype == np.float32
    x, y = batch[..., 0], batch[..., 1]
    return np.asarray(np.stack([x, y, x * y], axis=-1), dtype=np.float32)


def add_window_mean(batch: F32) -> F32:
    """Window-dependent stand-in: adds the mean over the window's frames."""
    return np.asarray((batch + batch.mean(axis=1, keepdims=True)), dtype=np.float32)


def flip_equivariant(batch: F32) -> F32:
    """Window-dependent and flip-equivariant: odd in x, even in y/c, symmetric in the joints."""
    x, y, c = batch[..., 0], batch[..., 1], batch[..., 2]
    mx = x.mean(axis=(1, 2), keepdims=True)
    my = y.mean(axis=(1, 2), keepdims=True)
    mxx = (x * x).mean(axis=(1, 2), keepdims=True)
    return np.asarray(np.stack([x + mx + 0.3 * x * y, y + my, c * y + mxx], axis=-1), dtype=np.float32)


# ----------------------------------------------------------------------------------------------------
# Official MotionBERT vectors
# ----------------------------------------------------------------------------------------------------


def test_crop_scale_matches_official(golden: dict[str, NDArray[Any]]) -> None:
    out = motionbert_crop_scale(golden["crop_scale_in_px"])
    np.testing.assert_allclose(out, golden["crop_scale_out"], rtol=0, atol=1e-6)


def test_crop_scale_degenerate_cases() -> None:
    three = np.zeros((1, 17, 3))
    three[0, :3] = [[10, 20, 1], [30, 40, 1], [50, 60, 1]]
    assert np.all(motionbert_crop_scale(three) == 0)
    same = np.ones((2, 17, 3))
    assert np.all(motionbert_crop_scale(same) == 0)


def test_crop_scale_ignores_nan_joints(golden: dict[str, NDArray[Any]]) -> None:
    px = golden["crop_scale_in_px"].astype(np.float64)
    with_nan = px.copy()
    with_nan[3, 5] = np.nan  # the zero-confidence joint of the official example
    out = motionbert_crop_scale(with_nan)
    ok = np.ones(px.shape[:2], dtype=bool)
    ok[3, 5] = False
    np.testing.assert_allclose(out[ok], golden["crop_scale_out"][ok], rtol=0, atol=1e-6)
    assert np.all(np.isnan(out[3, 5]))


def test_pixel_mode_matches_official(golden: dict[str, NDArray[Any]]) -> None:
    w, h = (int(v) for v in golden["pixelmode_vid_wh"])
    out = motionbert_pixel_normalize(golden["crop_scale_in_px"], w, h)
    np.testing.assert_allclose(out, golden["pixelmode_out"], rtol=0, atol=1e-6)


def test_flip_matches_official(golden: dict[str, NDArray[Any]]) -> None:
    np.testing.assert_allclose(flip_h36m(golden["x"]), golden["x_flipped"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(flip_h36m(flip_h36m(golden["x"])), golden["x"])
    perm = H36M17.flip_permutation()
    np.testing.assert_array_equal(perm[golden["flip_left_joints"]], golden["flip_right_joints"])
    flipavg = (golden["out"] + flip_h36m(golden["out_of_flipped_input"])) / 2
    np.testing.assert_allclose(flipavg, golden["out_flipavg"], rtol=0, atol=1e-6)


def golden_lookup(golden: dict[str, NDArray[Any]], calls: list[tuple[int, ...]]) -> Callable[[F32], F32]:
    """A stand-in that answers the official tiny model's outputs for the golden inputs (and their flips)."""
    table = [(golden["x"][i], golden["out"][i]) for i in range(len(golden["x"]))]
    table += [(golden["x_flipped"][i], golden["out_of_flipped_input"][i]) for i in range(len(golden["x"]))]

    def run(batch: F32) -> F32:
        calls.append(batch.shape)
        out = []
        for item in batch:
            hits = [o for x, o in table if x.shape == item.shape and np.array_equal(x, item)]
            assert hits, "stand-in got an input that is not a golden input"
            out.append(hits[0])
        return np.asarray(np.stack(out), dtype=np.float32)

    return run


@pytest.mark.parametrize("flip", [True, False])
def test_infer_reproduces_official_clip_and_flip_average(golden: dict[str, NDArray[Any]], flip: bool) -> None:
    calls: list[tuple[int, ...]] = []
    codec = MotionBERTCodec(flip=flip)
    run = golden_lookup(golden, calls)
    for i in range(len(golden["x"])):
        got = codec.infer(golden["x"][i], run)
        want = golden["out_flipavg"][i] if flip else golden["out"][i]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        got[:, 0] = 0.0  # what lift() does for root-relative checkpoints
        want_rr = golden["out_flipavg_rootrel"][i] if flip else golden["out_noflip_rootrel"][i]
        np.testing.assert_allclose(got, want_rr, rtol=0, atol=1e-6)
    # T = 27 < 243: one clip (plus its flip), exactly as the official code
    assert all(shape[1] == 27 for shape in calls)


# ----------------------------------------------------------------------------------------------------
# Windowing and blending with stand-in models
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [5, 243, 244, 500, 1000])
def test_pointwise_standin_equals_whole_sequence(t: int) -> None:
    codec = MotionBERTCodec(flip=False)
    kps = running_sequence(t, seed=t)
    kps[t // 2, :10] = np.nan  # a frame with too few joints
    got = codec.lift(kps, image_wh=(1920, 1080), run=pointwise)
    want = motionbert_expected(codec, kps, pointwise)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert np.all(np.isnan(got[t // 2]))
    assert np.isnan(got).any(axis=(1, 2)).sum() == 1
    assert np.all(got[~np.isnan(got).any(axis=(1, 2)), 0] == 0)


@pytest.mark.parametrize("stride", [1, 50, 121, 162, 243])
def test_pointwise_standin_any_stride(stride: int) -> None:
    codec = MotionBERTCodec(flip=False, stride=stride)
    kps = running_sequence(700, seed=stride)
    got = codec.lift(kps, image_wh=(1920, 1080), run=pointwise)
    np.testing.assert_allclose(got, motionbert_expected(codec, kps, pointwise), rtol=0, atol=1e-6)


def test_default_plan() -> None:
    codec = MotionBERTCodec()
    assert codec.window == MOTIONBERT_WINDOW == 243
    assert codec.plan(1000) == (243, 162)
    assert codec.plan(100) == (100, 67)
    np.testing.assert_array_equal(window_starts(1000, 243, 162), [0, 162, 324, 486, 648, 757])
    np.testing.assert_array_equal(window_starts(244, 243, 162), [0, 1])
    np.testing.assert_array_equal(window_starts(243, 243, 162), [0])


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_blend_weights_cover_and_sum_to_one(data: st.DataObject) -> None:
    t = data.draw(st.integers(1, 1200), label="T")
    w = data.draw(st.integers(1, min(t, 243)), label="W")
    stride = data.draw(st.integers(max(1, w // 8), w), label="stride")
    starts, weights = blend_weights(t, w, stride)
    assert starts[0] == 0 and starts[-1] + w == t
    assert np.all(np.diff(starts) > 0) and np.all(np.diff(starts) <= stride)
    assert weights.shape == (len(starts), w)
    assert np.all(weights > 0) and np.all(weights <= 1 + 1e-12)
    total = np.zeros(t)
    count = np.zeros(t, dtype=int)
    for s, wk in zip(starts, weights, strict=True):
        total[s : s + w] += wk
        count[s : s + w] += 1
    assert np.all(count >= 1)
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-12)


def test_blend_weights_taper_at_interior_edges_only() -> None:
    starts, weights = blend_weights(1000, 243, 162)
    assert weights[0, 0] == 1.0 and weights[-1, -1] == 1.0  # sequence ends: the only cover, full weight
    for k in range(1, len(starts)):
        assert weights[k, 0] < 0.01  # a window fades in where it starts inside the sequence
        assert weights[k - 1, -1] < 0.01
    np.testing.assert_allclose(weights[1, 81:162], 1.0)  # flat middle where it is the only cover


@pytest.mark.parametrize("t", [500, 1000])
def test_window_dependent_standin_is_blended_continuously(t: int) -> None:
    codec = MotionBERTCodec(flip=False)
    time = np.arange(t, dtype=np.float64)
    x = np.zeros((t, 17, 3))
    x[..., 0] = 0.8 * np.sin(2 * np.pi * time / 400.0)[:, None]
    x[..., 1] = 0.5 * np.cos(2 * np.pi * time / 300.0)[:, None] + np.linspace(-0.3, 0.3, 17)
    x[..., 2] = 0.9
    x32 = x.astype(np.float32)
    got = codec.infer(x32, add_window_mean)

    w, stride = codec.plan(t)
    starts, weights = blend_weights(t, w, stride)
    means = np.stack([x32[s : s + w].astype(np.float64).mean(axis=0) for s in starts])
    want = x32.astype(np.float64).copy()
    for s, wk, m in zip(starts, weights, means, strict=True):
        want[s : s + w] += wk[:, None, None] * m
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)  # weighted average of every covering window

    jump = np.abs(np.diff(got, axis=0)).max(axis=(1, 2))  # jump[i]: frame i -> i + 1
    joins = np.zeros(t - 1, dtype=bool)
    for k in range(1, len(starts)):
        joins[starts[k] - 1] = True  # window k starts
        joins[starts[k - 1] + w - 1] = True  # window k - 1 ends
    assert joins.any()
    assert jump[joins].max() <= jump[~joins].max()
    # a hard switch between windows would jump by the difference of the window means: far larger
    hard = np.abs(np.diff(means, axis=0)).max(axis=(1, 2))
    assert hard.max() > 5 * jump.max()


@pytest.mark.parametrize("t", [27, 500])
def test_flip_averaging_with_equivariant_standin_is_a_no_op(t: int) -> None:
    kps = running_sequence(t, seed=7)
    a = MotionBERTCodec(flip=True).lift(kps, image_wh=(1920, 1080), run=flip_equivariant)
    b = MotionBERTCodec(flip=False).lift(kps, image_wh=(1920, 1080), run=flip_equivariant)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # ... whereas a stand-in that is not equivariant is changed by it
    c = MotionBERTCodec(flip=True).lift(kps, image_wh=(1920, 1080), run=pointwise)
    ok = ~np.isnan(c).any(axis=(1, 2))
    assert np.abs(c[ok][..., 2]).max() < 1e-6  # (x, y, xy) flip-averages to (x, y, 0)


@pytest.mark.parametrize(("t", "flip", "batch_size"), [(1000, True, 3), (1000, False, 8), (100, True, 1)])
def test_standin_receives_float32_clips_of_at_most_243_frames(t: int, flip: bool, batch_size: int) -> None:
    shapes: list[tuple[int, ...]] = []

    def recording(batch: F32) -> F32:
        assert isinstance(batch, np.ndarray) and batch.dtype == np.float32
        assert batch.flags.c_contiguous
        assert batch.ndim == 4 and batch.shape[2:] == (17, 3)
        assert 1 <= batch.shape[0] <= batch_size and 1 <= batch.shape[1] <= 243
        assert np.all(np.isfinite(batch)) and np.abs(batch).max() <= 1.0
        shapes.append(batch.shape)
        return batch.copy()

    codec = MotionBERTCodec(flip=flip, batch_size=batch_size)
    codec.lift(running_sequence(t), image_wh=(1920, 1080), run=recording)
    n_windows = len(window_starts(t, *codec.plan(t)))
    assert sum(s[0] for s in shapes) == n_windows * (2 if flip else 1)
    assert {s[1] for s in shapes} == {min(t, 243)}


def test_motionbert_missing_joints_are_zero_in_model_space() -> None:
    codec = MotionBERTCodec()
    kps = running_sequence(50, seed=3, missing=0.0)
    kps[4, 2] = np.nan
    kps[5, 3, 2] = 0.0  # zero score counts as missing
    x, valid = codec.prepare(kps, (1920, 1080))
    assert x.dtype == np.float32 and x.shape == (50, 17, 3)
    assert not valid[4, 2] and not valid[5, 3] and valid.sum() == 50 * 17 - 2
    np.testing.assert_array_equal(x[4, 2], 0.0)
    np.testing.assert_array_equal(x[5, 3], 0.0)
    # the box ignores them: same as normalising with them removed by the official rule (conf 0)
    official = kps.copy()
    official[4, 2] = [0.0, 0.0, 0.0]
    official[5, 3, 2] = 0.0
    ref = motionbert_crop_scale(official)
    np.testing.assert_allclose(x[valid], ref[valid], rtol=0, atol=1e-6)


def test_motionbert_pixel_normalization_and_global_root() -> None:
    kps = running_sequence(300, seed=5)
    codec = MotionBERTCodec(flip=False, normalization="pixel", rootrel_model=False)
    x, valid = codec.prepare(kps, (1920, 1080))
    ref = motionbert_pixel_normalize(kps, 1920, 1080)
    np.testing.assert_allclose(x[valid], ref[valid], rtol=0, atol=1e-5)
    out = codec.lift(kps, image_wh=(1920, 1080), run=pointwise)
    ok = ~np.isnan(out).any(axis=(1, 2))
    full = pointwise(x[None])[0].astype(np.float64)
    np.testing.assert_allclose(out[ok], (full - full[:, :1])[ok], rtol=0, atol=1e-6)


def test_motionbert_unusable_input_never_calls_the_model() -> None:
    def never(batch: F32) -> F32:
        raise AssertionError("the model must not run")

    codec = MotionBERTCodec()
    empty = codec.lift(np.zeros((0, 17, 3)), image_wh=(640, 480), run=never)
    assert empty.shape == (0, 17, 3)
    nan = codec.lift(np.full((30, 17, 3), np.nan), image_wh=(640, 480), run=never)
    assert nan.shape == (30, 17, 3) and np.all(np.isnan(nan))


def test_runner_with_wrong_output_raises_inference_error() -> None:
    def bad(batch: F32) -> F32:
        return batch[:, :-1]

    with pytest.raises(InferenceError):
        MotionBERTCodec().lift(running_sequence(40), image_wh=(1920, 1080), run=bad)
    with pytest.raises(InferenceError):
        SemGCNCodec().lift(running_sequence(3, missing=0.0), image_wh=(1920, 1080), run=lambda b: b)


def test_codecs_satisfy_protocol() -> None:
    codecs: list[LifterCodec] = [SemGCNCodec(), MotionBERTCodec()]
    assert [(c.name, c.window) for c in codecs] == [("semgcn", 1), ("motionbert", 243)]


# ----------------------------------------------------------------------------------------------------
# SemGCN
# ----------------------------------------------------------------------------------------------------


def test_normalize_screen() -> None:
    w, h = 1000, 1002
    pts = np.array([[0.0, 0.0, 0.7], [w, h, 0.2], [w / 2, h / 2, 1.0]])
    out = normalize_screen(pts, w, h)
    np.testing.assert_allclose(out[:, :2], np.array([[-1, -h / w], [1, h / w], [0, 0]]), atol=1e-12)
    np.testing.assert_array_equal(out[:, 2], pts[:, 2])


def test_semgcn_batches_nan_frames_and_neck() -> None:
    calls: list[tuple[int, ...]] = []

    def fake(batch: F32) -> F32:
        assert batch.dtype == np.float32 and batch.shape[1:] == (16, 2)
        calls.append(batch.shape)
        z = np.linalg.norm(batch, axis=-1, keepdims=True)
        return np.asarray(np.concatenate([batch + 0.5, z], axis=-1), dtype=np.float32)

    kps = running_sequence(600, seed=1, missing=0.0)
    kps[10, 9] = np.nan  # joint 9 is not used by SemGCN: frame stays usable
    kps[11, 3] = np.nan  # an ankle is: imputed for the network, NaN in the output
    kps[12] = np.nan
    kps[13, 0] = np.nan  # a core joint (pelvis): frame unusable
    kps[14, [3, 6, 13, 16]] = np.nan  # more than max_imputed=3 joints missing: unusable
    out = SemGCNCodec(batch_size=256).lift(kps, image_wh=(1920, 1080), run=fake)
    assert out.shape == (600, 17, 3)
    nan_rows = np.isnan(out).all(axis=(1, 2))
    np.testing.assert_array_equal(np.flatnonzero(nan_rows), [12, 13, 14])
    assert np.isnan(out[11, 3]).all() and np.isfinite(np.delete(out[11], 3, axis=0)).all()
    assert [c[0] for c in calls] == [256, 256, 85]
    np.testing.assert_array_equal(out[~nan_rows, 0], 0.0)
    nan_rows[11] = True  # imputed input: not comparable with the plain formula below
    norm = normalize_screen(kps[:, SEMGCN_JOINTS, :2], 1920, 1080)
    want = np.concatenate([norm + 0.5, np.linalg.norm(norm, axis=-1, keepdims=True)], axis=-1)
    want -= want[:, :1]
    np.testing.assert_allclose(out[~nan_rows][:, SEMGCN_JOINTS], want[~nan_rows], atol=1e-5)
    np.testing.assert_allclose(out[:, 9], estimate_neck_nose(out), atol=1e-12, equal_nan=True)


def load_h36m_samples() -> tuple[list[str], F64, F64, list[tuple[int, int]]]:
    """(image names, GT 2D part [4,17,3] px, GT 3D camera-frame [4,17,3] m, (w, h) per frame)."""
    root = SHARED / "data" / "h36m-samples"
    with np.load(shared_file("data", "h36m-samples", "test_h36m_body3d.npz")) as npz:
        names = [str(n) for n in npz["imgname"]]
        part = npz["part"].astype(np.float64)
        gt3d = npz["S"][..., :3].astype(np.float64)
    with open(root / "cameras.pkl", "rb") as f:
        cameras = pickle.load(f, encoding="latin1")
    sizes = []
    for name in names:
        m = re.match(r"(S\d+)/[^/]*\.(\d+)/", name)
        assert m, name
        cam = cameras[(m.group(1), m.group(2))]
        sizes.append((int(cam["w"]), int(cam["h"])))
    return names, part, gt3d, sizes


@pytest.fixture(scope="module")
def semgcn_runner() -> Callable[[F32], F32]:
    import onnxruntime as ort

    path = shared_file("models", "semgcn-h36m", "semgcn.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(x: F32) -> F32:
        return np.asarray(sess.run(None, {"kp2d_norm": x})[0], dtype=np.float32)

    return run


def semgcn_on_h36m(run: Callable[[F32], F32]) -> tuple[F64, F64]:
    _, part, gt3d, sizes = load_h36m_samples()
    codec = SemGCNCodec()
    pred = np.concatenate([codec.lift(part[i : i + 1], image_wh=sizes[i], run=run) for i in range(len(part))])
    return pred, gt3d - gt3d[:, :1]


def test_semgcn_real_weights_on_h36m(semgcn_runner: Callable[[F32], F32]) -> None:
    pred, gt = semgcn_on_h36m(semgcn_runner)
    assert pred.shape == (4, 17, 3) and np.all(np.isfinite(pred))
    np.testing.assert_array_equal(pred[:, 0], 0.0)
    joints = list(SEMGCN_JOINTS)
    err = mpjpe(pred[:, joints], gt[:, joints]) * 1000.0
    pa = pa_mpjpe(pred[:, joints], gt[:, joints]) * 1000.0
    # models/README.md: 19.1 mm (14.2 / 18.6 / 32.5 / 11.0 per frame)
    np.testing.assert_allclose(err, [14.2, 18.6, 32.5, 11.0], atol=0.1)
    assert err.mean() < 25.0
    assert np.all(pa < err) and pa.mean() < err.mean()
    # joint 9 (neck/nose) is estimated (SemGCN lacks it): measured 11 / 33 / 93 / 25 mm, always better than
    # the plain thorax-head midpoint (70 / 94 / 136 / 54 mm); in the S7 frame thorax and head are already
    # 50-60 mm off
    neck_err = np.linalg.norm(pred[:, 9] - gt[:, 9], axis=-1) * 1000.0
    midpoint_err = np.linalg.norm((pred[:, 8] + pred[:, 10]) / 2 - gt[:, 9], axis=-1) * 1000.0
    assert np.all(neck_err < midpoint_err) and neck_err.max() < 100.0


def test_semgcn_hidden_wrist_keeps_the_rest_of_the_pose(semgcn_runner: Callable[[F32], F32]) -> None:
    """A side view hides the far wrist: the frame still lifts, the wrist is NaN, the legs barely move."""
    _, part, _, sizes = load_h36m_samples()
    codec = SemGCNCodec()
    for i in range(len(part)):
        full = codec.lift(part[i : i + 1], image_wh=sizes[i], run=semgcn_runner)[0]
        hidden = part[i : i + 1].copy()
        hidden[0, H36M17.index("left_wrist"), :2] = np.nan
        got = codec.lift(hidden, image_wh=sizes[i], run=semgcn_runner)[0]
        assert np.isnan(got[H36M17.index("left_wrist")]).all()
        legs = [1, 2, 3, 4, 5, 6]
        assert np.linalg.norm(got[legs] - full[legs], axis=-1).max() < 0.03  # metres


def test_semgcn_batching_does_not_change_results(semgcn_runner: Callable[[F32], F32]) -> None:
    _, part, _, sizes = load_h36m_samples()
    seq = np.repeat(part[:1], 300, axis=0)
    seq[::7] = np.nan
    out = SemGCNCodec(batch_size=64).lift(seq, image_wh=sizes[0], run=semgcn_runner)
    single = SemGCNCodec().lift(part[:1], image_wh=sizes[0], run=semgcn_runner)[0]
    ok = ~np.isnan(out).any(axis=(1, 2))
    np.testing.assert_array_equal(ok, np.arange(300) % 7 != 0)
    np.testing.assert_allclose(out[ok], np.broadcast_to(single, out[ok].shape), atol=1e-6)


def test_metrics() -> None:
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(5, 16, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.linalg.det(q))
    moved = 1.7 * gt @ rot + np.array([0.3, -2.0, 5.0])
    np.testing.assert_allclose(pa_mpjpe(moved, gt), 0.0, atol=1e-12)
    assert np.all(mpjpe(moved, gt) > 0.1)
    np.testing.assert_allclose(mpjpe(gt + np.array([0.0, 3.0, 4.0]), gt), 5.0)
    noisy = gt + 0.05 * rng.normal(size=gt.shape)
    assert np.all(pa_mpjpe(noisy, gt) <= mpjpe(noisy, gt))
    mirrored = gt * np.array([-1.0, 1.0, 1.0])  # a reflection is not a rotation: not aligned away
    assert np.all(pa_mpjpe(mirrored, gt) > 0.1)


# ----------------------------------------------------------------------------------------------------
# Layout maps
# ----------------------------------------------------------------------------------------------------


def test_coco17_to_h36m17() -> None:
    rng = np.random.default_rng(1)
    coco = np.concatenate([rng.uniform(0, 500, (4, 17, 2)), rng.uniform(0.1, 1, (4, 17, 1))], axis=-1)
    h = coco17_to_h36m17(coco)
    assert h.shape == (4, 17, 3)
    for name in H36M17.joints:
        if name in COCO17.joints:
            np.testing.assert_array_equal(h[:, H36M17.index(name)], coco[:, COCO17.index(name)])
    np.testing.assert_array_equal(h[:, 9], coco[:, 0])  # neck_nose <- nose

    def mid(a: F64, b: F64) -> F64:
        return np.concatenate([(a[..., :2] + b[..., :2]) / 2, np.minimum(a[..., 2:], b[..., 2:])], axis=-1)

    np.testing.assert_allclose(h[:, 0], mid(coco[:, 11], coco[:, 12]))
    np.testing.assert_allclose(h[:, 8], mid(coco[:, 5], coco[:, 6]))
    np.testing.assert_allclose(h[:, 7], mid(h[:, 0], h[:, 8]))
    np.testing.assert_allclose(h[:, 10], coco[:, 1:5].mean(axis=1))

    partial = coco.copy()
    partial[0, [1, 3]] = np.nan  # left eye and ear gone: head from the right ones
    partial[1, 1:5] = np.nan  # no face point: no head
    partial[2, 12] = np.nan  # right hip gone: no pelvis and no spine
    hp = coco17_to_h36m17(partial)
    np.testing.assert_allclose(hp[0, 10], coco[0, [2, 4]].mean(axis=0))
    assert np.all(np.isnan(hp[1, 10]))
    assert np.all(np.isnan(hp[2, [0, 7, 1]])) and np.all(np.isfinite(hp[2, [4, 8, 10]]))
    # two channels work too
    np.testing.assert_allclose(coco17_to_h36m17(coco[..., :2]), h[..., :2])


def test_halpe26_to_h36m17_matches_motionbert_readme() -> None:
    readme_map = {0: 19, 1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 8: 18, 9: 0, 10: 17,
                  11: 5, 12: 7, 13: 9, 14: 6, 15: 8, 16: 10}  # fmt: skip
    rng = np.random.default_rng(2)
    halpe = rng.uniform(0, 1, (3, 26, 3))
    h = halpe26_to_h36m17(halpe)
    for dst, src in readme_map.items():
        np.testing.assert_array_equal(h[:, dst], halpe[:, src])
    np.testing.assert_allclose(h[:, 7], (halpe[:, 18] + halpe[:, 19]) / 2)  # score averaged too


# ----------------------------------------------------------------------------------------------------
# Metric scale
# ----------------------------------------------------------------------------------------------------


def known_skeleton(t: int, seed: int = 0) -> F64:
    """Root-relative H36M-17 frames with fixed bone lengths (metres), random orientation and knee bends."""
    rng = np.random.default_rng(seed)
    up = np.array([0.0, -1.0, 0.0])
    right = np.array([-1.0, 0.0, 0.0])
    frames = []
    for _ in range(t):
        p = np.zeros((17, 3))
        bend = rng.uniform(0, 0.8, size=2)
        for side, (hip, knee, ankle) in ((1.0, (1, 2, 3)), (-1.0, (4, 5, 6))):
            b = bend[0] if side > 0 else bend[1]
            p[hip] = side * 0.13 * right
            p[knee] = p[hip] - 0.44 * up
            p[ankle] = p[knee] + 0.44 * np.array([0.0, np.cos(b), np.sin(b)])
        p[7] = 0.23 * up
        p[8] = p[7] + 0.25 * up
        p[9] = p[8] + 0.12 * up + np.array([0.0, 0.0, -0.05])
        p[10] = p[8] + 0.2 * up
        p[11], p[14] = p[8] - 0.15 * right, p[8] + 0.15 * right
        p[12], p[15] = p[11] - 0.28 * up, p[14] - 0.28 * up
        p[13], p[16] = p[12] - 0.25 * up, p[15] - 0.25 * up
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        frames.append(p @ (q * np.sign(np.linalg.det(q))))
    return np.stack(frames)


def test_scale_to_height() -> None:
    pose = known_skeleton(50)
    chain = 0.2 + 0.25 + 0.23 + 0.13 + 0.44 + 0.44
    assert standing_height(pose) == pytest.approx(chain / 0.978, rel=1e-9)
    for height in (1.55, 1.80, 2.05):
        for units in (1.0, 0.004, 310.0):  # metres, normalised units, pixels
            scaled = scale_to_height(pose * units, height)
            assert standing_height(scaled) == pytest.approx(height, rel=0.01)
            np.testing.assert_allclose(scaled, pose * (height / standing_height(pose)), atol=1e-9)


def test_scale_to_height_with_missing_joints() -> None:
    pose = known_skeleton(20, seed=4)
    holey = pose.copy()
    holey[::2, 3] = np.nan  # one ankle missing in half the frames: the other leg is used
    holey[1] = np.nan
    assert standing_height(holey) == pytest.approx(standing_height(pose), rel=1e-9)
    with pytest.raises(InputError):
        scale_to_height(np.full((5, 17, 3), np.nan), 1.75)
    with pytest.raises(ValueError, match="height_m"):
        scale_to_height(pose, -1.0)


def test_h36m_ground_truth_height_is_plausible() -> None:
    _, _, gt3d, _ = load_h36m_samples()
    assert 1.60 < standing_height(gt3d - gt3d[:, :1]) < 1.90
