"""The family registry (services/pose/families.py) is the single source of every fact about a model family:
each place that used to hold its own table is a lookup in it, and every family's contract fits the real ONNX
graphs of the shared model set, the CPU repository spec and the served GPU config.pbtxt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REPO
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from export.prepare import CONTRACTS, graph_signature, served_graph, validate_signature
from export.repository import spec_for
from services.errors import ModelError
from services.pose.backends import make_lifter_codec
from services.pose.families import FAMILIES, TRITON_DTYPES, Family, get_family, named_dims
from services.pose.models import ModelStore, manifests
from services.pose.pose2d import make_codec, network_input
from services.pose.stages import LIFTER_UNITS
from services.pose.triton import TRITON_MODEL_NAMES, triton_model_name

#: manifests whose ONNX file is in the shared model set (the others are official downloads)
SHARED_MODELS = [
    "rtmdet-nano-person",
    "movenet-thunder",
    "movenet-lightning",
    "semgcn-h36m",
    "rtmpose-m-coco17-random",
    "rtmpose-m-halpe26-random",
]
HEAVY = ("numpy", "onnx", "onnxruntime", "tritonclient", "torch", "cv2", "grpc", "scipy")


def test_every_manifest_names_a_family_of_its_role() -> None:
    for name, m in manifests().items():
        assert get_family(m.family).role == m.role, name
    roles = {f.role for f in FAMILIES.values()}
    assert roles == {"detector", "pose2d", "lifter"}
    assert len({f.triton_model for f in FAMILIES.values()}) == len(FAMILIES)  # one Triton model each
    for f in FAMILIES.values():
        assert (f.pose2d_codec is not None) == (f.role == "pose2d"), f.name
        assert (f.lifter_codec is not None) == bool(f.lifter_units) == (f.role == "lifter"), f.name
        assert f.wire is None or f.role == "pose2d", f.name


def test_the_old_tables_are_lookups_in_the_registry() -> None:
    assert {f.name: f.triton_model for f in FAMILIES.values()} == TRITON_MODEL_NAMES
    assert {f.name: f.contract for f in FAMILIES.values()} == CONTRACTS
    assert LIFTER_UNITS == {
        "semgcn": "m (average H36M subject scale)",
        "motionbert": "normalised (crop box = 2)",
    }
    assert triton_model_name("movenet") == "pose2d_movenet"
    for lifter in ("semgcn", "motionbert"):
        assert make_lifter_codec(lifter).name == lifter
    for bad in (lambda: get_family("vitpose"), lambda: triton_model_name("vitpose")):
        with pytest.raises(ModelError, match="unknown model family 'vitpose'") as err:
            bad()
        assert err.value.code == ModelError.code and "movenet" in str(err.value)
    with pytest.raises(ModelError, match="no 2D pose codec"):
        make_codec("semgcn", skeleton="h36m16", input_wh=(16, 2))


def test_served_contract_swaps_in_the_uint8_wire_input() -> None:
    rtmpose, movenet, semgcn = get_family("rtmpose"), get_family("movenet"), get_family("semgcn")
    (served,) = rtmpose.served().inputs
    assert (served.name, served.dtype, served.dims) == ("input", "uint8", ("batch", "H", "W", 3))
    assert rtmpose.served().outputs == rtmpose.contract.outputs and rtmpose.served().random == "pixels"
    assert movenet.served().inputs[0].dims == ("batch", "H", "W", 3)
    assert movenet.served().inputs[0].dtype == "uint8" and movenet.contract.inputs[0].dtype == "int32"
    assert semgcn.served() is semgcn.contract
    # black and white pixels through RTMPose's rule: (0 - mean) / std and (255 - mean) / std, CHW
    wire = rtmpose.wire
    assert wire is not None and wire.mean is not None and wire.std is not None
    pixels = np.zeros((1, 2, 2, 3), np.uint8)
    pixels[0, 1] = 255
    x = network_input(pixels, wire)
    assert x.shape == (1, 3, 2, 2) and x.dtype == np.float32
    for c in range(3):
        np.testing.assert_allclose(x[0, c, 0], -wire.mean[c] / wire.std[c], rtol=1e-6)
        np.testing.assert_allclose(x[0, c, 1], (255 - wire.mean[c]) / wire.std[c], rtol=1e-6)
    assert movenet.wire is not None
    np.testing.assert_array_equal(network_input(pixels, movenet.wire), pixels.astype(np.int32))
    with pytest.raises(ValueError, match="uint8"):
        network_input(pixels.astype(np.float32), wire)


def _gpu_config(family: Family) -> pb.ModelConfig:
    text = (REPO / "model_repository" / family.triton_model / "config.pbtxt").read_text()
    return text_format.Parse(text, pb.ModelConfig())


@pytest.mark.parametrize("name", SHARED_MODELS)
def test_family_contract_fits_real_graph_cpu_spec_and_gpu_config(name: str, model_dirs: list[Path]) -> None:
    """One family entry describes the raw graph, the served graph, the CPU repository's tensors and the
    GPU repository's config (names, dtypes, ranks; dims where the config serves this very model)."""
    resolved = ModelStore(model_dirs).resolve(name)
    m = resolved.manifest
    family = get_family(m.family)
    model = onnx.load(str(resolved.path), load_external_data=False)
    values = named_dims(family, input_size=m.input_size, skeleton=m.skeleton)
    bound = validate_signature(model, family)  # the raw graph has the network contract
    assert {k: bound[k] for k in values if k in bound} == {k: v for k, v in values.items() if k in bound}
    served_graph(model, family, input_size=m.input_size, what=name)
    validate_signature(model, family, served=True, pinned=values)
    sig = graph_signature(model)
    graph_io = {**sig.inputs, **sig.outputs}

    spec = spec_for(resolved)
    assert spec.name == family.triton_model and spec.max_batch_size == family.cpu.max_batch_size
    for tensor in (*spec.inputs, *spec.outputs):
        dtype, dims = graph_io[tensor.name]
        assert TRITON_DTYPES[dtype] == tensor.dtype, (name, tensor.name)
        graph_dims = dims[1:] if spec.max_batch_size > 0 else dims
        assert len(graph_dims) == len(tensor.dims)
        assert all(t == -1 or t == g for t, g in zip(tensor.dims, graph_dims, strict=True)), (tensor, dims)

    gpu = _gpu_config(family)
    gpu_io = {t.name: t for t in (*gpu.input, *gpu.output)}
    assert set(gpu_io) == set(graph_io)
    same_model = gpu.parameters["model"].string_value == name or (
        "signature_stand_in" in gpu.parameters and gpu.parameters["signature_stand_in"].string_value == name
    )
    for tensor_name, (dtype, dims) in graph_io.items():
        gpu_tensor = gpu_io[tensor_name]
        assert pb.DataType.Name(gpu_tensor.data_type) == f"TYPE_{TRITON_DTYPES[dtype]}", tensor_name
        want = dims[1:] if gpu.max_batch_size > 0 else dims
        assert len(gpu_tensor.dims) == len(want)
        if same_model:
            assert list(gpu_tensor.dims) == [d if isinstance(d, int) else -1 for d in want], tensor_name


@pytest.mark.parametrize("name", [n for n, m in manifests().items() if m.role == "pose2d"])
def test_codec_factory_builds_the_manifest_codec(name: str) -> None:
    m = manifests()[name]
    family = get_family(m.family)
    codec = make_codec(m.family, skeleton=m.skeleton, input_wh=m.input_size)
    assert codec.family == family.name and codec.input_wh == m.input_size
    assert codec.skeleton.name == m.skeleton
    crops, _ = codec.preprocess(np.zeros((480, 640, 3), np.uint8), np.array([[100.0, 50.0, 300.0, 450.0]]))
    w, h = m.input_size
    assert crops.dtype == np.uint8 and crops.shape == (1, h, w, 3)  # the served input without its batch dim


def test_families_module_imports_nothing_heavy() -> None:
    """Command lines read the registry at start-up: it must not pull numpy, onnx, onnxruntime, tritonclient,
    torch or OpenCV in."""
    code = (
        "import json, sys; import services.pose.families as f; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == []
