"""export.prepare (contract validation, batch policy, wire input, FP16, parity) and export.tensorrt (argument
logic, family profiles)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import SHARED
from numpy.typing import NDArray
from onnx import TensorProto, helper

from export import prepare, tensorrt
from export.prepare import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    PreparedModel,
    prepare_model,
    prepare_onnx,
)
from services.errors import ModelError
from services.pose.detect import rtmdet_decode, rtmdet_preprocess
from services.pose.families import WireFormat, get_family
from services.pose.ingest import VideoReader
from services.pose.models import ModelStore, get_manifest, sha256_of
from services.pose.pose2d import make_codec, network_input
from services.pose.runtime import OnnxRunner

MODELS = ["rtmdet-nano-person", "movenet-thunder", "semgcn-h36m", "rtmpose-m-coco17-random"]
RTMPOSE_IO = SHARED / "reference" / "rtmpose" / "rtmpose-m_coco17_random_io.npz"
RTMPOSE_GOLDEN = SHARED / "reference" / "rtmpose" / "decode_golden.npz"
TREADMILL = SHARED / "data" / "running-treadmill-phone" / "IMG_5396.mp4"
#: uint8-served graph vs the float path (raw graph fed by network_input) on the same crops. The two compute
#: the same float32 arithmetic (measured: identical to the bit); the bounds leave room for kernel choices.
WIRE_PARITY_PX = 0.01
WIRE_PARITY_SCORE = 1e-4


@pytest.fixture(scope="module")
def store(model_dirs: list[Path]) -> ModelStore:
    return ModelStore(model_dirs)


@pytest.fixture(scope="module")
def prepared(store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> dict[str, PreparedModel]:
    out = tmp_path_factory.mktemp("prepared")
    return {name: prepare_model(name, out / name, store=store) for name in MODELS}


@pytest.fixture(scope="module")
def prepared_fp16(store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> dict[str, PreparedModel]:
    out = tmp_path_factory.mktemp("prepared16")
    return {name: prepare_model(name, out / name, store=store, fp16=True) for name in MODELS}


def run(path: Path, feeds: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    runner = OnnxRunner(path, threads=2)
    return dict(zip(runner.output_names, runner.run(feeds), strict=True))


def peak_relative(a: NDArray[Any], b: NDArray[Any]) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("name", MODELS)
def test_prepared_model_keeps_contract_and_outputs(name: str, prepared: dict[str, PreparedModel]) -> None:
    p = prepared[name]
    family = get_family(get_manifest(name).family)
    contract = family.served()
    model = onnx.load(str(p.path))
    prepare.validate_signature(model, family, served=True)  # raises on any name/dtype/rank change
    onnx.checker.check_model(model, full_check=True)
    assert max(p.parity.values()) <= FP32_TOLERANCE
    assert p.nodes_after <= p.nodes_before  # onnxslim folded something, added nothing
    record = json.loads(p.record_path.read_text())
    assert record["sha256"] == sha256_of(p.path) == p.sha256
    assert record["source_sha256"] == get_manifest(name).sha256
    first_dims = {dims[0] for _, dims in (*p.inputs.values(), *p.outputs.values())}
    assert first_dims == ({"batch"} if contract.batch == "dynamic" else {1})


def test_batch_one_families_are_pinned_and_detector_to_its_input_size(
    prepared: dict[str, PreparedModel],
) -> None:
    assert prepared["rtmdet-nano-person"].inputs == {"input": ("float32", (1, 3, 320, 320))}
    assert prepared["rtmdet-nano-person"].outputs["dets"][1] == (1, "num_dets", 5)  # symbolic 5 pinned
    # the 2D pose graphs take the crops as they travel: uint8 RGB, NHWC
    assert prepared["movenet-thunder"].inputs == {"input:0": ("uint8", (1, 256, 256, 3))}
    assert prepared["rtmpose-m-coco17-random"].inputs == {"input": ("uint8", ("batch", 256, 192, 3))}
    assert prepared["movenet-thunder"].wire == "uint8 NHWC RGB" and prepared["semgcn-h36m"].wire == ""
    assert prepared["semgcn-h36m"].inputs == {"kp2d_norm": ("float32", ("batch", 16, 2))}  # N -> batch


def test_rtmpose_runs_any_batch_and_matches_source_and_pytorch(
    store: ModelStore, prepared: dict[str, PreparedModel], tmp_path: Path
) -> None:
    source = store.resolve("rtmpose-m-coco17-random").path
    wire = get_family("rtmpose").wire
    assert wire is not None
    path = prepared["rtmpose-m-coco17-random"].path
    rng = np.random.default_rng(11)
    for batch in (1, 4):
        pixels = rng.integers(0, 256, (batch, 256, 192, 3), dtype=np.uint8)
        ref, got = run(source, {"input": network_input(pixels, wire)}), run(path, {"input": pixels})
        for key, bins in (("simcc_x", 384), ("simcc_y", 512)):
            assert got[key].shape == (batch, 17, bins)
            # random-weight logits are ~1e-6: judge the error relative to their peak, and the decoded bins
            assert peak_relative(got[key], ref[key]) <= FP32_TOLERANCE
            np.testing.assert_array_equal(got[key].argmax(-1), ref[key].argmax(-1))
    # the network inside, prepared with its own float input, against PyTorch before export
    floating = prepare_model("rtmpose-m-coco17-random", tmp_path, store=store, keep_network_input=True)
    assert floating.inputs == {"input": ("float32", ("batch", 3, 256, 192))} and floating.wire == ""
    golden = np.load(RTMPOSE_IO)
    out = run(floating.path, {"input": golden["input"]})
    for key in ("simcc_x", "simcc_y"):
        assert peak_relative(out[key], golden[key]) <= FP32_TOLERANCE  # vs PyTorch before export


def test_uint8_rtmpose_graph_matches_rtmlib_float_input(
    store: ModelStore, prepared: dict[str, PreparedModel]
) -> None:
    """rtmlib's golden crop (uint8) through the served graph = rtmlib's golden float network input through
    the raw graph: the normalisation moved into the graph is rtmlib's."""
    golden = np.load(RTMPOSE_GOLDEN)
    served = run(prepared["rtmpose-m-coco17-random"].path, {"input": golden["affine_warped_bgr"][None]})
    raw = run(store.resolve("rtmpose-m-coco17-random").path, {"input": golden["affine_model_input"]})
    for key in ("simcc_x", "simcc_y"):
        assert peak_relative(served[key], raw[key]) <= FP32_TOLERANCE
        np.testing.assert_array_equal(served[key].argmax(-1), raw[key].argmax(-1))


@pytest.fixture(scope="module")
def treadmill_crops(store: ModelStore) -> list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]:
    """Nine frames across the treadmill video with the runner's RTMDet box."""
    detector = OnnxRunner(store.resolve("rtmdet-nano-person").path)
    out = []
    with VideoReader(TREADMILL, max_long_side=640) as reader:
        for frame in itertools.islice(reader, 0, None, 48):
            x, letterbox = rtmdet_preprocess(frame.image)
            dets, labels = detector.run({"input": x})
            boxes = rtmdet_decode(dets[0], labels[0], letterbox, score_threshold=0.3)
            assert len(boxes) >= 1
            out.append((frame.image, boxes[:1]))
    assert len(out) == 9
    return out


@pytest.mark.parametrize("name", ["movenet-thunder", "rtmpose-m-coco17-random"])
def test_uint8_served_keypoints_equal_float_path_on_real_crops(
    name: str,
    store: ModelStore,
    prepared: dict[str, PreparedModel],
    treadmill_crops: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]],
) -> None:
    """Keypoints from the uint8-served graph vs the float path (the raw graph, crops normalised in numpy)
    on real crops of the treadmill video (RTMPose: random weights, so its keypoints are only compared)."""
    manifest = get_manifest(name)
    wire = get_family(manifest.family).wire
    assert wire is not None
    codec = make_codec(manifest.family, skeleton=manifest.skeleton, input_wh=manifest.input_size)
    raw = OnnxRunner(store.resolve(name).path)
    served = OnnxRunner(prepared[name].path)
    assert served.input_dtypes == ["uint8"] and raw.input_dtypes == [wire.network_dtype]
    for image, boxes in treadmill_crops:
        crops_u8, crops = codec.preprocess(image, boxes)
        assert crops_u8.dtype == np.uint8
        float_path = codec.postprocess(raw.run({wire.input: network_input(crops_u8, wire)}), crops)
        uint8_path = codec.postprocess(served.run({wire.input: crops_u8}), crops)
        np.testing.assert_array_equal(np.isnan(uint8_path), np.isnan(float_path))
        np.testing.assert_allclose(uint8_path[..., :2], float_path[..., :2], atol=WIRE_PARITY_PX, rtol=0)
        np.testing.assert_allclose(uint8_path[..., 2], float_path[..., 2], atol=WIRE_PARITY_SCORE, rtol=0)
    if name == "movenet-thunder":  # a trained model: the runner is found with confident keypoints
        assert np.mean(uint8_path[..., 2] > 0.3) > 0.5


def test_batch_one_graphs_really_reject_batch_two(prepared: dict[str, PreparedModel]) -> None:
    # the reason they are served with max_batch_size 0: the prepared graph states batch 1, ORT enforces it
    with pytest.raises(Exception, match="input"):
        run(prepared["movenet-thunder"].path, {"input:0": np.zeros((2, 256, 256, 3), np.uint8)})


@pytest.mark.parametrize("name", MODELS)
def test_fp16_variant_loads_keeps_io_dtypes_and_agrees(
    name: str, prepared: dict[str, PreparedModel], prepared_fp16: dict[str, PreparedModel]
) -> None:
    p16 = prepared_fp16[name]
    assert p16.fp16 and p16.tolerance == FP16_TOLERANCE
    assert p16.inputs == prepared[name].inputs and p16.outputs == prepared[name].outputs
    assert max(p16.parity.values()) <= FP16_TOLERANCE
    model = onnx.load(str(p16.path))
    weights = [i for i in model.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    fp16_bytes = sum(len(i.raw_data) for i in weights if i.data_type == TensorProto.FLOAT16)
    assert fp16_bytes > 0.5 * sum(len(i.raw_data) for i in weights)
    assert p16.path.stat().st_size < 0.75 * prepared[name].path.stat().st_size


def test_wrong_signature_is_a_model_error(store: ModelStore, tmp_path: Path) -> None:
    semgcn = store.resolve("semgcn-h36m").path
    with pytest.raises(ModelError, match="does not have the rtmpose signature") as err:
        prepare_onnx(semgcn, tmp_path / "model.onnx", family="rtmpose", input_size=(192, 256))
    assert "kp2d_norm" in str(err.value) and not (tmp_path / "model.onnx").exists()
    movenet = store.resolve("movenet-thunder").path
    with pytest.raises(ModelError, match=r"dim 1 \(H\) is 256"):
        prepare_onnx(movenet, tmp_path / "m.onnx", family="movenet", input_size=(192, 192))
    with pytest.raises(ModelError, match="no tensor contract"):
        prepare_onnx(semgcn, tmp_path / "m.onnx", family="yolo")


def _pose_graph(
    path: Path, *, batch: int | str, out_name: str = "pose3d", reshape_batch_one: bool = False
) -> Path:
    """A MotionBERT-shaped toy graph: pose3d = pose2d * 2 (+ a constant [1, ...] reshape if asked)."""
    x = helper.make_tensor_value_info("pose2d", TensorProto.FLOAT, [batch, "T", 17, 3])
    y = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [batch, "T", 17, 3])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    nodes = [helper.make_node("Mul", ["pose2d", "two"], ["scaled" if reshape_batch_one else out_name])]
    inits = [two]
    if reshape_batch_one:
        inits.append(helper.make_tensor("shape", TensorProto.INT64, [4], [1, -1, 17, 3]))
        nodes.append(helper.make_node("Reshape", ["scaled", "shape"], [out_name]))
    graph = helper.make_graph(nodes, "toy", [x], [y], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_fixed_batch_is_made_dynamic_and_frames_stay_symbolic(tmp_path: Path) -> None:
    src = _pose_graph(tmp_path / "toy.onnx", batch=1)
    p = prepare_onnx(src, tmp_path / "out" / "model.onnx", family="motionbert")
    assert p.inputs == {"pose2d": ("float32", ("batch", "frames", 17, 3))}
    out = run(p.path, {"pose2d": np.ones((3, 5, 17, 3), np.float32)})["pose3d"]
    np.testing.assert_array_equal(out, 2.0)


def test_graph_with_constant_batch_cannot_be_made_dynamic(tmp_path: Path) -> None:
    src = _pose_graph(tmp_path / "toy.onnx", batch=1, reshape_batch_one=True)
    with pytest.raises(ModelError, match="at batch 2"):
        prepare_onnx(src, tmp_path / "out" / "model.onnx", family="motionbert")
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_wrong_output_name_is_rejected(tmp_path: Path) -> None:
    src = _pose_graph(tmp_path / "toy.onnx", batch="B", out_name="output")
    with pytest.raises(ModelError, match=r"outputs are \['output'\], expected \['pose3d'\]"):
        prepare_onnx(src, tmp_path / "model.onnx", family="motionbert")


@pytest.mark.parametrize(
    "wire",
    [
        WireFormat("x", "float32", "NCHW", "BGR", (103.53, 116.28, 123.675), (57.375, 57.12, 58.395)),
        WireFormat("x", "float32", "NHWC", "RGB", (1.0, 2.0, 3.0), (4.0, 5.0, 6.0)),
        WireFormat("x", "int32", "NCHW"),
    ],
)
def test_wire_nodes_equal_numpy_float_path(wire: WireFormat, tmp_path: Path) -> None:
    """Every wire-format step (channel order, cast, mean/std, layout, dtype) does in the graph exactly what
    network_input does in numpy: an Identity network wrapped, fed pixels, returns the numpy tensor."""
    elem = TensorProto.FLOAT if wire.network_dtype == "float32" else TensorProto.INT32
    shape: list[int | str] = ["batch", 3, 6, 5] if wire.network_layout == "NCHW" else ["batch", 6, 5, 3]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", elem, shape)],
        [helper.make_tensor_value_info("y", elem, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    prepare.wrap_wire_input(model, wire)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(tmp_path / "wrapped.onnx"))
    pixels = np.random.default_rng(5).integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)
    got = run(tmp_path / "wrapped.onnx", {"x": pixels})["y"]
    want = network_input(pixels, wire)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_prepare_cli_writes_model_and_record(model_dirs: list[Path], tmp_path: Path) -> None:
    search = ":".join(str(d) for d in model_dirs)
    assert prepare.main(["semgcn-h36m", "--out", str(tmp_path), "--models-dir", search]) == 0
    record = json.loads((tmp_path / "model.onnx.json").read_text())
    assert record["sha256"] == sha256_of(tmp_path / "model.onnx") and record["family"] == "semgcn"
    assert prepare.main(["no-such-model", "--out", str(tmp_path), "--models-dir", search]) == 5


# --- export.tensorrt: what can be checked without a GPU -------------------------------------------------


def test_shape_parsing() -> None:
    assert tensorrt.parse_shape("8x3x256x192") == (8, 3, 256, 192)
    assert tensorrt.parse_shapes(["input:0:1x256x256x3"]) == {"input:0": (1, 256, 256, 3)}
    assert tensorrt.parse_shapes(["a:1x2,b:3x4"]) == {"a": (1, 2), "b": (3, 4)}
    assert tensorrt.parse_shapes(["1x3"]) == {None: (1, 3)}
    for bad in ("8x3xfoo", "0x3", ""):
        with pytest.raises(ModelError):
            tensorrt.parse_shape(bad)


def test_profiles_are_checked_against_the_graph() -> None:
    inputs = {"input": (None, 3, 256, 192)}
    mins, opts, maxs = {None: (1, 3, 256, 192)}, {None: (8, 3, 256, 192)}, {None: (32, 3, 256, 192)}
    (profile,) = tensorrt.build_profiles(inputs, mins, opts, maxs)
    assert profile == tensorrt.InputProfile("input", (1, 3, 256, 192), (8, 3, 256, 192), (32, 3, 256, 192))
    with pytest.raises(ModelError, match="min <= opt <= max"):
        tensorrt.build_profiles(inputs, opts, mins, maxs)
    with pytest.raises(ModelError, match="static 256"):
        tensorrt.build_profiles(inputs, mins, opts, {None: (32, 3, 320, 192)})
    with pytest.raises(ModelError, match="rank"):
        tensorrt.build_profiles(inputs, {None: (1, 3, 256)}, opts, maxs)
    with pytest.raises(ModelError, match="no input 'x'"):
        tensorrt.build_profiles(inputs, {"x": (1,)}, {"x": (1,)}, {"x": (1,)})
    with pytest.raises(ModelError, match="dynamic dims"):
        tensorrt.build_profiles({"a": (None, 2), "b": (None, 3)}, {"a": (1, 2)}, {"a": (1, 2)}, {"a": (1, 2)})
    static = tensorrt.build_profiles({"input:0": (1, 256, 256, 3)}, {}, {}, {})
    assert static[0].min == static[0].max == (1, 256, 256, 3)


def test_family_profiles_come_from_the_registry(prepared: dict[str, PreparedModel]) -> None:
    """RTMPose's registered profile (batch 1 / 16 / 32) on the served uint8 graph and on the raw float one."""
    served = tensorrt.onnx_input_dims(prepared["rtmpose-m-coco17-random"].path)
    assert tensorrt.family_profiles(served, "rtmpose") == (
        tensorrt.InputProfile("input", (1, 256, 192, 3), (16, 256, 192, 3), (32, 256, 192, 3)),
    )
    raw = tensorrt.onnx_input_dims(SHARED / "reference" / "rtmpose" / "rtmpose-m_coco17_random.onnx")
    (profile,) = tensorrt.family_profiles(raw, "rtmpose")
    assert (profile.min, profile.opt, profile.max) == ((1, 3, 256, 192), (16, 3, 256, 192), (32, 3, 256, 192))
    registered = get_family("rtmpose").tensorrt
    assert registered is not None and profile.max[0] == registered.max_batch == 32
    clip = tensorrt.family_profiles({"pose2d": (None, None, 17, 3)}, "motionbert")
    assert (clip[0].min, clip[0].opt, clip[0].max) == ((1, 1, 17, 3), (2, 243, 17, 3), (8, 243, 17, 3))
    with pytest.raises(ModelError, match="no TensorRT profile"):
        tensorrt.family_profiles({"kp2d_norm": (None, 16, 2)}, "semgcn")


def test_trtexec_command_line() -> None:
    profiles = [tensorrt.InputProfile("input:0", (1, 4), (2, 4), (8, 4))]
    cmd = tensorrt.trtexec_command(
        "trtexec", Path("m.onnx"), Path("m.plan"), profiles, fp16=True, workspace_mib=1024
    )
    assert "--minShapes='input:0':1x4" in cmd and "--maxShapes='input:0':8x4" in cmd and "--fp16" in cmd


def test_tensorrt_cli_explains_missing_tensorrt(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tensorrt, "_import_tensorrt", lambda: None)
    monkeypatch.setattr(tensorrt.shutil, "which", lambda _name: None)
    src = str(store.resolve("semgcn-h36m").path)
    argv = [
        src,
        "--out",
        str(tmp_path / "model.plan"),
        "--min",
        "1x16x2",
        "--opt",
        "64x16x2",
        "--max",
        "256x16x2",
    ]
    assert tensorrt.main([*argv, "--fp16"]) == 5
    err = capsys.readouterr().err
    assert "TensorRT is not available" in err and "GPU" in err
    assert not (tmp_path / "model.plan").exists()
    # argument errors are reported before TensorRT is looked for
    assert (
        tensorrt.main(
            [src, "--out", str(tmp_path / "p"), "--min", "1x16x3", "--opt", "1x16x3", "--max", "2x16x3"]
        )
        == 5
    )
    assert "static 2" in capsys.readouterr().err
    # --family takes the registered profile; a family without one says so
    assert tensorrt.main([src, "--out", str(tmp_path / "p"), "--family", "semgcn"]) == 5
    assert "no TensorRT profile" in capsys.readouterr().err
    rtmpose = str(store.resolve("rtmpose-m-coco17-random").path)
    assert tensorrt.main([rtmpose, "--out", str(tmp_path / "r.plan"), "--family", "rtmpose"]) == 5
    assert "TensorRT is not available" in capsys.readouterr().err  # the profile itself was accepted
