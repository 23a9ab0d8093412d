"""MotionBERT (DSTformer) port: checkpoint layout, golden outputs of the official code, ONNX export and the
end-to-end path through MotionBERTCodec + OnnxRunner.

Reference data: ``<shared>/reference/motionbert`` (found through GAITWAY_SHARED_DIR, see conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# torch and onnx come with the `export` extra (pip install -e '.[export]'); without them: skipped.
import torch
from conftest import SHARED
from numpy.typing import NDArray

from export.motionbert.convert import (
    INPUT_NAME,
    OUTPUT_NAME,
    build_model,
    export_onnx,
    extract_state_dict,
    load_checkpoint,
    main,
    resolve_config,
)
from export.motionbert.dstformer import FULL, LITE, TINY, DSTformer, DSTformerConfig
from services.pose.lifting import MOTIONBERT_WINDOW, MotionBERTCodec, flip_h36m
from services.pose.runtime import OnnxRunner

F32 = NDArray[np.float32]
ATOL = 1e-4  # README: a faithful fp32 port matches the official outputs to < 1e-4


def ref_file(name: str) -> Path:
    path = SHARED / "reference" / "motionbert" / name
    if not path.is_file():
        pytest.fail(f"shared reference file missing: {path} (set GAITWAY_SHARED_DIR)")
    return path


@pytest.fixture(scope="module")
def golden() -> dict[str, NDArray[Any]]:
    with np.load(ref_file("tiny_golden.npz")) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def tiny() -> DSTformer:
    return load_checkpoint(ref_file("tiny_checkpoint.bin"), "tiny")


def run_torch(model: DSTformer, x: NDArray[Any], *, return_rep: bool = False) -> F32:
    with torch.no_grad():
        return model(
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), return_rep=return_rep
        ).numpy()


# ----------------------------------------------------------------------------------------------------
# Architecture and checkpoint layout
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cfg"), [("full", FULL), ("lite", LITE)])
def test_state_dict_matches_official_layout(name: str, cfg: DSTformerConfig) -> None:
    ref = json.loads(ref_file(f"keys_{name}.json").read_text())
    assert resolve_config(name) == cfg
    assert DSTformerConfig.from_dict(ref) == cfg  # the "hyperparameters" block gives the same config
    state = DSTformer(cfg).state_dict()
    ours = [("module." + k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()]
    theirs = [(e["key"], e["shape"], e["dtype"]) for e in ref["keys"]]
    assert ours == theirs  # same keys, shapes, dtypes and order
    assert sum(v.numel() for v in state.values()) == ref["total_parameters"]


def test_tiny_config_file_and_preset_agree() -> None:
    data = json.loads(ref_file("tiny_config.json").read_text())
    assert resolve_config(ref_file("tiny_config.json")) == TINY
    assert sum(p.numel() for p in DSTformer(TINY).parameters()) == data["num_parameters"]


def test_config_rejects_unsupported_settings() -> None:
    with pytest.raises(ValueError, match="att_fuse"):
        DSTformerConfig.from_dict({"att_fuse": False})
    with pytest.raises(ValueError, match="layernorm_eps"):
        DSTformerConfig.from_dict({"layernorm_eps": 1e-5})
    with pytest.raises(ValueError, match="divisible"):
        DSTformerConfig(dim_feat=30, num_heads=4)
    with pytest.raises(ValueError, match="--config"):
        resolve_config("huge")


def test_checkpoint_variants_load(tmp_path: Path, tiny: DSTformer) -> None:
    state = tiny.state_dict()
    # an official training checkpoint also holds epoch, lr, optimizer state and a numpy min_loss
    official = {
        "epoch": 3,
        "lr": 0.0002,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0002, "params": [0, 1]}]},
        "min_loss": np.float64(41.5),
        "model_pos": {"module." + k: v for k, v in state.items()},
    }
    torch.save(official, tmp_path / "official.bin")
    torch.save(state, tmp_path / "bare.bin")  # a plain, unprefixed state dict
    for name in ("official.bin", "bare.bin"):
        loaded = load_checkpoint(tmp_path / name, "tiny")
        assert not loaded.training
        for k, v in loaded.state_dict().items():
            torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    # strict loading: a missing or extra key is an error, not a silent partial load
    broken = dict(state)
    broken.pop("head.bias")
    torch.save({"model_pos": broken}, tmp_path / "broken.bin")
    with pytest.raises(RuntimeError, match=r"head\.bias"):
        load_checkpoint(tmp_path / "broken.bin", "tiny")
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_checkpoint(tmp_path / "bare.bin", DSTformerConfig(dim_feat=64, dim_rep=64, depth=2, maxlen=27))
    with pytest.raises(ValueError, match="not a tensor"):
        extract_state_dict({"model_pos": {"module.x": 1}})


# ----------------------------------------------------------------------------------------------------
# Golden outputs of the official implementation (tiny checkpoint)
# ----------------------------------------------------------------------------------------------------


def test_golden_outputs(tiny: DSTformer, golden: dict[str, NDArray[Any]]) -> None:
    x = golden["x"]
    np.testing.assert_allclose(run_torch(tiny, x), golden["out"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(run_torch(tiny, x, return_rep=True), golden["rep"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(run_torch(tiny, golden["x_T9"]), golden["out_T9"], rtol=0, atol=ATOL)
    flipped_out = run_torch(tiny, flip_h36m(x))
    np.testing.assert_allclose(flipped_out, golden["out_of_flipped_input"], rtol=0, atol=ATOL)
    flipavg = (run_torch(tiny, x) + flip_h36m(flipped_out)) / 2
    np.testing.assert_allclose(flipavg, golden["out_flipavg"], rtol=0, atol=ATOL)
    rootrel = flipavg.copy()
    rootrel[:, :, 0, :] = 0
    np.testing.assert_allclose(rootrel, golden["out_flipavg_rootrel"], rtol=0, atol=ATOL)
    # the fp64 reference: the port is also faithful in double precision
    with torch.no_grad():
        out64 = tiny.double()(torch.from_numpy(x.astype(np.float64))).numpy()
    tiny.float()
    np.testing.assert_allclose(out64, golden["out_fp64"], rtol=0, atol=1e-9)


def test_batch_independence_and_clip_length_limits(tiny: DSTformer, golden: dict[str, NDArray[Any]]) -> None:
    x = golden["x"]
    np.testing.assert_allclose(run_torch(tiny, x[1:]), golden["out"][1:], rtol=0, atol=ATOL)
    np.testing.assert_allclose(run_torch(tiny, x[:1, :1]).shape, (1, 1, 17, 3))
    with pytest.raises(ValueError, match="maxlen"):
        run_torch(tiny, np.concatenate([x, x[:, :1]], axis=1))


# ----------------------------------------------------------------------------------------------------
# ONNX export
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mb_tiny") / "tiny.onnx"
    code = main(["--checkpoint", str(ref_file("tiny_checkpoint.bin")), "--config", "tiny", "--out", str(out)])
    assert code == 0
    return out


def test_tiny_onnx_matches_golden(tiny_onnx: Path, tiny: DSTformer, golden: dict[str, NDArray[Any]]) -> None:
    import onnx

    graph = onnx.load(str(tiny_onnx)).graph
    dims = [
        [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*graph.input, *graph.output)
    ]
    assert [v.name for v in graph.input] == [INPUT_NAME]
    assert [v.name for v in graph.output] == [OUTPUT_NAME]
    assert dims == [["batch", "frames", 17, 3]] * 2
    runner = OnnxRunner(tiny_onnx, threads=2)
    assert runner.input_names == [INPUT_NAME] and runner.output_names == [OUTPUT_NAME]
    x = golden["x"]
    np.testing.assert_allclose(runner(x), golden["out"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(runner(golden["x_T9"]), golden["out_T9"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(runner(x[:1]), golden["out"][:1], rtol=0, atol=ATOL)  # B = 1
    x3 = np.concatenate([x, flip_h36m(x[:1]).astype(np.float32)])  # B = 3
    expected3 = np.concatenate([golden["out"], golden["out_of_flipped_input"][:1]])
    np.testing.assert_allclose(runner(x3), expected3, rtol=0, atol=ATOL)
    flipavg = (runner(x) + flip_h36m(runner(flip_h36m(x).astype(np.float32)))) / 2
    np.testing.assert_allclose(flipavg, golden["out_flipavg"], rtol=0, atol=ATOL)
    short = x[:, :5]
    np.testing.assert_allclose(runner(short), run_torch(tiny, short), rtol=0, atol=ATOL)


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--config", "tiny", "--out", str(tmp_path / "x.onnx")])  # neither checkpoint nor random
    capsys.readouterr()
    code = main(
        ["--checkpoint", str(tmp_path / "nope.bin"), "--config", "tiny", "--out", str(tmp_path / "x.onnx")]
    )
    assert code == 1
    assert "error" in capsys.readouterr().err


def test_fixed_frames_export(tmp_path: Path, tiny: DSTformer, golden: dict[str, NDArray[Any]]) -> None:
    path = export_onnx(tiny, tmp_path / "fixed.onnx", example_frames=9, dynamic_frames=False)
    runner = OnnxRunner(path, threads=1)
    assert runner.input_shapes == [["batch", 9, 17, 3]]
    np.testing.assert_allclose(runner(golden["x_T9"]), golden["out_T9"], rtol=0, atol=ATOL)


# ----------------------------------------------------------------------------------------------------
# Full-size random-weight export, end to end through MotionBERTCodec
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def full_random(tmp_path_factory: pytest.TempPathFactory) -> tuple[DSTformer, OnnxRunner]:
    """Full-size (42.5 M parameters) DSTformer with O(1) random weights, exported to ONNX (~15 s on 2 cores;
    not timed here) and opened in onnxruntime with 2 threads."""
    model = build_model("full", random_seed=7)
    path = export_onnx(model, tmp_path_factory.mktemp("mb_full") / "motionbert_full_random.onnx")
    return model, OnnxRunner(path, threads=2)


def test_full_onnx_parity(full_random: tuple[DSTformer, OnnxRunner]) -> None:
    model, runner = full_random
    rng = np.random.default_rng(1)
    for batch, frames in ((1, 16), (3, 24)):
        x = rng.uniform(-1, 1, (batch, frames, 17, 3)).astype(np.float32)
        expected = run_torch(model, x)
        assert np.abs(expected).max() > 0.1  # random O(1) weights: a real signal, not ~0
        np.testing.assert_allclose(runner(x), expected, rtol=0, atol=ATOL)


def synthetic_run(num_frames: int, image_wh: tuple[int, int]) -> NDArray[np.float64]:
    """A side-view runner-like H36M-17 2D track in pixels (legs and arms swinging), with some missing
    joints."""
    w, h = image_wh
    template = np.array(
        [
            [0, 0], [-15, 0], [-15, 90], [-15, 180], [15, 0], [15, 90], [15, 180], [0, -60], [0, -120],
            [5, -140], [0, -170], [20, -115], [25, -60], [30, -10], [-20, -115], [-25, -60], [-30, -10],
        ],
        dtype=np.float64,
    )  # fmt: skip
    t = np.arange(num_frames) / 60.0
    phase = 2 * np.pi * 1.4 * t[:, None]
    kps = np.zeros((num_frames, 17, 3))
    kps[..., :2] = template[None] * 2.0 + np.array([w / 2, h / 2])
    swing = np.zeros((num_frames, 17))
    swing[:, [2, 3, 15, 16]] = 1.0  # right knee/ankle, right elbow/wrist
    swing[:, [5, 6, 12, 13]] = -1.0
    kps[..., 0] += 60.0 * swing * np.sin(phase)
    kps[..., 1] += 8.0 * np.sin(2 * phase)  # vertical oscillation
    kps[..., 2] = 0.9
    rng = np.random.default_rng(3)
    missing = rng.random((num_frames, 17)) < 0.03
    kps[missing] = [np.nan, np.nan, 0.0]
    return kps


def test_codec_end_to_end_with_full_export(full_random: tuple[DSTformer, OnnxRunner]) -> None:
    _, runner = full_random
    seen: list[tuple[int, ...]] = []

    def run(batch: F32) -> F32:
        seen.append(batch.shape)
        assert batch.dtype == np.float32
        return runner(batch)

    kps2d = synthetic_run(400, (1080, 1920))
    pose = MotionBERTCodec().lift(kps2d, image_wh=(1080, 1920), run=run)
    assert pose.shape == (400, 17, 3)
    assert np.all(np.isfinite(pose))
    np.testing.assert_array_equal(pose[:, 0, :], 0.0)  # root-relative
    assert np.abs(pose[:, 1:]).max() > 1e-3
    assert seen and all(
        len(s) == 4 and s[0] >= 1 and 1 <= s[1] <= MOTIONBERT_WINDOW and s[2:] == (17, 3) for s in seen
    )
    assert sum(s[0] for s in seen) == 4  # 2 windows (0 and 157) x (plain + flipped)
