"""Contract test of the production (GPU) model repository: every config.pbtxt agrees with the served
contract of its family (services.pose.families) and with the ONNX graph that is served (STYLE item 8).

The served graph is the source ONNX after export.prepare's dimension rewrite (batch policy, pinned input
size) and, for the 2D pose families, the uint8 wire input (export.prepare.served_graph); onnxslim and FP16
never change graph inputs/outputs (tests/test_export.py).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from conftest import REPO
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from export.prepare import Dim, graph_signature, served_graph
from services.errors import ModelError
from services.pose.families import FAMILIES, get_family
from services.pose.models import ModelStore, get_manifest

REPOSITORY = REPO / "model_repository"
#: one served model per family, named by the registry
EXPECTED = {f.triton_model for f in FAMILIES.values()}
DTYPES = {
    "float32": pb.TYPE_FP32,
    "int32": pb.TYPE_INT32,
    "int64": pb.TYPE_INT64,
    "uint8": pb.TYPE_UINT8,
}
#: models whose source ONNX may legitimately be absent (produced by the MotionBERT port)
OPTIONAL_ONNX = {"lifter_motionbert"}


def load_config(name: str) -> pb.ModelConfig:
    return text_format.Parse((REPOSITORY / name / "config.pbtxt").read_text(), pb.ModelConfig())


def param(config: pb.ModelConfig, key: str) -> str:
    return config.parameters[key].string_value if key in config.parameters else ""


def config_io(config: pb.ModelConfig) -> dict[str, tuple[int, list[int]]]:
    return {t.name: (t.data_type, list(t.dims)) for t in (*config.input, *config.output)}


def expected_io(
    io: dict[str, tuple[str, tuple[Dim, ...]]], max_batch_size: int
) -> dict[str, tuple[int, list[int]]]:
    """ONNX signature -> Triton dims: symbolic = -1, batch dim dropped when Triton batches."""
    out = {}
    for name, (dtype, dims) in io.items():
        if max_batch_size > 0:
            assert dims[0] == "batch", f"{name}: Triton batching needs a dynamic first dim, got {dims}"
            dims = dims[1:]
        out[name] = (DTYPES[dtype], [d if isinstance(d, int) else -1 for d in dims])
    return out


def served_signature(config: pb.ModelConfig, store: ModelStore) -> dict[str, tuple[int, list[int]]] | None:
    """The I/O of the prepared graph of the config's model (or its signature stand-in); None if absent."""
    family = param(config, "family")
    candidates = [n for n in (param(config, "model"), param(config, "signature_stand_in")) if n]
    for name in candidates:
        try:
            manifest = get_manifest(name)
            path = store.resolve(name).path
        except ModelError:
            continue
        assert manifest.family == family
        model = onnx.load(str(path), load_external_data=False)
        served_graph(model, get_family(family), input_size=manifest.input_size, what=name)
        sig = graph_signature(model)
        return expected_io({**sig.inputs, **sig.outputs}, config.max_batch_size)
    if config.name in OPTIONAL_ONNX:
        return None
    pytest.fail(f"{config.name}: no ONNX found for {candidates} on the model search path")


def test_repository_holds_one_config_per_role_model() -> None:
    found = {p.parent.name for p in REPOSITORY.glob("*/config.pbtxt")}
    assert found == EXPECTED, "a family in services/pose/families.py needs model_repository/<name>/"
    for name in EXPECTED:
        config = load_config(name)
        assert config.name == name  # Triton requires the folder name
        family = get_family(param(config, "family"))
        assert family.triton_model == name and param(config, "role") == family.role


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_matches_family_contract(name: str) -> None:
    config = load_config(name)
    contract = get_family(param(config, "family")).served()
    io = config_io(config)
    specs = {s.name: s for s in (*contract.inputs, *contract.outputs)}
    assert set(io) == set(specs)
    assert [t.name for t in config.input] == [s.name for s in contract.inputs]
    if contract.batch == "one":
        assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    for tensor, spec in specs.items():
        dtype, dims = io[tensor]
        assert dtype == DTYPES[spec.dtype], tensor
        want = spec.dims[1:] if config.max_batch_size > 0 else spec.dims
        assert len(dims) == len(want), tensor
        for got, w in zip(dims, want, strict=True):
            if isinstance(w, int):
                assert got == w, (tensor, dims, want)
            elif w == "batch":
                assert got == (1 if contract.batch == "one" else -1), (tensor, dims)
    for warmup in config.model_warmup:
        for key, value in warmup.inputs.items():
            assert key in specs and value.data_type == io[key][0]
            assert len(value.dims) == len(io[key][1]) and all(d > 0 for d in value.dims)
            assert all(c in (-1, d) for c, d in zip(io[key][1], value.dims, strict=True))


@pytest.fixture(scope="module")
def motionbert_dir(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official weights are not obtainable here: the tiny reference checkpoint in the official format,
    exported by the same code, has the production graph's tensor names, dtypes and dynamic axes."""
    from export.motionbert.convert import export_onnx, load_checkpoint

    root = tmp_path_factory.mktemp("models")
    model = load_checkpoint(shared / "reference/motionbert/tiny_checkpoint.bin", "tiny")
    export_onnx(model, root / get_manifest("motionbert-lite").file)
    return root


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_matches_served_onnx(name: str, model_dirs: list[Path], motionbert_dir: Path) -> None:
    config = load_config(name)
    expected = served_signature(config, ModelStore([REPO / "models", *model_dirs, motionbert_dir]))
    assert expected is not None
    assert config_io(config) == expected


def test_preprocessing_parameters_match_manifests() -> None:
    for name in EXPECTED - OPTIONAL_ONNX:
        config = load_config(name)
        manifest = get_manifest(param(config, "model"))
        assert manifest.family == param(config, "family")
        size = param(config, "input_size_wh")
        if size:
            assert tuple(int(v) for v in size.split(",")) == manifest.input_size, name
        if param(config, "skeleton"):
            assert param(config, "skeleton") == manifest.skeleton, name
    pose2d = load_config("pose2d")
    assert param(pose2d, "mean") == "123.675,116.28,103.53" and param(pose2d, "simcc_split_ratio") == "2.0"
    assert list(pose2d.dynamic_batching.preferred_batch_size) == [8, 16]
    assert (
        pose2d.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
        and pose2d.instance_group[0].count == 2
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_wire_and_tensorrt_facts_match_the_registry(name: str) -> None:
    """The served uint8 input and its normalisation parameters, and the TensorRT plan's batch range, are
    the family registry's."""
    config = load_config(name)
    family = get_family(param(config, "family"))
    wire = family.wire
    if wire is None:
        assert not param(config, "wire")
        assert all(t.data_type != pb.TYPE_UINT8 for t in config.input)
    else:
        (tensor,) = [t for t in config.input if t.name == wire.input]
        assert tensor.data_type == pb.TYPE_UINT8 and list(tensor.dims)[-1] == 3
        assert param(config, "wire").startswith(f"{wire.dtype} {wire.layout} RGB")
        assert param(config, "color_order") == wire.channels and param(config, "layout") == wire.layout
        if wire.mean is not None and wire.std is not None:
            assert [float(v) for v in param(config, "mean").split(",")] == list(wire.mean)
            assert [float(v) for v in param(config, "std").split(",")] == list(wire.std)
        else:
            assert not param(config, "mean") and not param(config, "std")
    if config.platform == "tensorrt_plan":
        assert family.tensorrt is not None, f"{name}: a TensorRT plan needs the family's profile"
        assert config.max_batch_size == family.tensorrt.max_batch


def test_generated_cpu_repository_keeps_the_contracts(
    model_dirs: list[Path], motionbert_dir: Path, tmp_path: Path
) -> None:
    """The CPU repository (python backend) serves every role under the GPU repository's name with the
    same tensor names and dtypes; each dim equals the ONNX graph's or the graph leaves it dynamic."""
    from export.repository import generate

    store = ModelStore([*model_dirs, motionbert_dir])
    names = [
        "rtmdet-nano-person",
        "movenet-thunder",
        "rtmpose-m-coco17-random",
        "semgcn-h36m",
        "motionbert-lite",
    ]
    generate(tmp_path, [store.resolve(n) for n in names])
    served = {p.parent.name for p in tmp_path.glob("*/config.pbtxt")}
    assert served == EXPECTED
    for name in sorted(EXPECTED):
        cpu = text_format.Parse((tmp_path / name / "config.pbtxt").read_text(), pb.ModelConfig())
        gpu = load_config(name)
        assert {t.name for t in (*cpu.input, *cpu.output)} == {t.name for t in (*gpu.input, *gpu.output)}
        graph = graph_signature(
            onnx.load(str(tmp_path / name / "1" / "model.onnx"), load_external_data=False)
        )
        onnx_io = {**graph.inputs, **graph.outputs}
        for tensor, (dtype, dims) in config_io(cpu).items():
            onnx_dtype, onnx_dims = onnx_io[tensor]
            if cpu.max_batch_size > 0:  # Triton adds the batch dim: the graph's first dim must be dynamic
                assert not isinstance(onnx_dims[0], int), f"{name}.{tensor}: fixed batch {onnx_dims}"
                onnx_dims = onnx_dims[1:]
            want_dims = [d if isinstance(d, int) else -1 for d in onnx_dims]
            assert dtype == DTYPES[onnx_dtype], f"{name}.{tensor}: dtype"
            assert len(dims) == len(want_dims) and all(
                w in (-1, d) for d, w in zip(dims, want_dims, strict=True)
            ), f"{name}.{tensor}: {dims} vs ONNX {want_dims}"
