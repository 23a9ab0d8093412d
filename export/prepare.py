"""Prepare a role's ONNX graph for serving: validate its tensor contract, fix its batch dimension, optionally
convert it to FP16, simplify it, check it and prove that it still computes the same thing.

Steps (:func:`prepare_model`)::

    source ONNX ──validate contract──▶ pin/rename dims ──onnxslim──▶ [FP16, I/O kept float32]
               ──[wire input: uint8 crops, normalised in the graph]──▶ onnx.checker
               ──onnxruntime: source vs prepared on seeded random inputs──▶ model.onnx + model.onnx.json

Every family's tensor contract (names, dtypes, shapes) is its entry in the family registry
(:data:`services.pose.families.FAMILIES`; :data:`CONTRACTS` here is a view of it); the Triton
``config.pbtxt`` files and ``tests/test_model_repository.py`` check against the same names (STYLE item 8).
Dimensions are written as ints (fixed), or names (variable); the names ``H`` and ``W`` are taken from the
manifest's ``input_size`` (width, height).

Wire input (families with a :class:`~services.pose.families.WireFormat`: RTMPose, MoveNet): the prepared
graph takes the crops as they travel, uint8 ``[batch, H, W, 3]`` RGB, under the network input's name;
:func:`wrap_wire_input` prepends the family's Cast / Sub / Div / Transpose nodes, so clients send a quarter
of the float32 bytes and the normalisation runs where the network runs. The parity check feeds the same
random pixels to the prepared graph and, normalised by :func:`services.pose.pose2d.network_input` (the
numpy float path), to the source graph. ``keep_network_input=True`` (``--network-input``) keeps the network's
own float input instead.

Batch policy per family:

* ``dynamic`` (RTMPose, SemGCN, MotionBERT): the first dimension of every input and output is made the
  symbolic ``batch`` (a graph exported with a fixed batch of 1 is relabelled, then run at batch 2 to prove
  the graph really is batch-agnostic).
* ``one`` (MoveNet, RTMDet mmdeploy end2end): the graphs only work at batch 1 (MoveNet's tf2onnx graph
  reshapes to constant ``[1, ...]`` shapes; mmdeploy's NMS tail broadcasts against one image's anchors),
  so the batch dimension is pinned to 1 and Triton serves them with ``max_batch_size: 0`` and several
  instances for concurrency instead of dynamic batching. RTMDet's spatial dims are pinned to the manifest's
  320x320 as well: its preprocessing always letterboxes to that size and TensorRT prefers static shapes.

Parity tolerance: per float output, ``max|prepared - source| / max|source|`` (the error relative to the
output's peak magnitude, so that RTMPose's random-weight logits of ~1e-6 are judged like trained ones):
<= 1e-4 for FP32 and <= :data:`FP16_TOLERANCE` for FP16. Integer outputs must be equal. Detector outputs are
matched by IoU for FP16 (:func:`detection_error`), where nearly tied scores change NMS's choice and order.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

from services.errors import GaitwayError, InferenceError, ModelError, status_of
from services.pose.families import (
    FAMILIES,
    BatchPolicy,
    Contract,
    Dim,
    Family,
    TensorSpec,
    WireFormat,
    get_family,
)
from services.pose.models import ModelStore, get_manifest, sha256_of
from services.pose.pose2d import network_input
from services.pose.runtime import OnnxRunner
from services.settings import Settings

log = logging.getLogger(__name__)

#: (dtype name, dims) of one graph tensor
Signature = tuple[str, tuple[Dim, ...]]

FP32_TOLERANCE = 1e-4
#: FP16 keeps 11 significant bits (relative step 4.9e-4); errors add up over the ~100 layers of RTMPose-m
#: and a random-weight head whose logits sit near fp16's subnormal range (~1e-6), hence 2 %.
FP16_TOLERANCE = 2e-2

_DTYPES: dict[str, int] = {
    "float32": onnx.TensorProto.FLOAT,
    "float16": onnx.TensorProto.FLOAT16,
    "int32": onnx.TensorProto.INT32,
    "int64": onnx.TensorProto.INT64,
    "uint8": onnx.TensorProto.UINT8,
}
_NUMPY_DTYPES: dict[str, type[np.generic]] = {
    "float32": np.float32,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
}


#: every family's network contract, by family name (a view of the family registry)
CONTRACTS: dict[str, Contract] = {name: f.contract for name, f in FAMILIES.items()}


@dataclass(frozen=True)
class GraphSignature:
    """Inputs and outputs of an ONNX graph: name -> (dtype name, dims with str for symbolic / unknown)."""

    inputs: dict[str, Signature]
    outputs: dict[str, Signature]


@dataclass(frozen=True)
class PreparedModel:
    """Result of :func:`prepare_model`; also written as JSON next to the ONNX file."""

    model: str
    family: str
    path: Path
    sha256: str
    source: Path
    source_sha256: str
    fp16: bool
    batch: BatchPolicy
    inputs: dict[str, Signature]
    outputs: dict[str, Signature]
    parity: dict[str, float]
    tolerance: float
    nodes_before: int
    nodes_after: int
    #: how the pose input travels (``uint8 NHWC RGB``), or "" when the graph takes the network's input
    wire: str = ""

    @property
    def record_path(self) -> Path:
        return record_path_for(self.path)


def record_path_for(path: Path) -> Path:
    """The JSON record written beside a prepared file: ``model.onnx`` -> ``model.onnx.json``."""
    return path.with_name(path.name + ".json")


def _dtype_name(elem_type: int) -> str:
    for name, code in _DTYPES.items():
        if code == elem_type:
            return name
    return onnx.TensorProto.DataType.Name(elem_type).lower()


def _value_dims(value: onnx.ValueInfoProto) -> tuple[Dim, ...]:
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in value.type.tensor_type.shape.dim
    )


def graph_signature(model: onnx.ModelProto) -> GraphSignature:
    """Names, dtypes and dims of the graph's real inputs (initializers excluded) and outputs."""
    initializers = {i.name for i in model.graph.initializer}

    def table(values: Sequence[onnx.ValueInfoProto]) -> dict[str, Signature]:
        return {
            v.name: (_dtype_name(v.type.tensor_type.elem_type), _value_dims(v))
            for v in values
            if v.name not in initializers
        }

    return GraphSignature(inputs=table(model.graph.input), outputs=table(model.graph.output))


def manifest_dims(family: Family, input_size: tuple[int, int] | None) -> dict[str, int]:
    """Values of the family's manifest-pinned dims (``H``, ``W``) from ``input_size`` (width, height)."""
    if not family.contract.pin_from_manifest:
        return {}
    if input_size is None:
        raise ModelError(f"{family.name}: the input size (width, height) is needed to pin H and W")
    return {"W": int(input_size[0]), "H": int(input_size[1])}


def validate_signature(
    model: onnx.ModelProto,
    family: Family,
    *,
    served: bool = False,
    pinned: Mapping[str, int] | None = None,
    what: str = "",
) -> dict[str, int]:
    """Check ``model``'s inputs/outputs against the family's network contract (``served``: the contract of
    the served graph, with the wire input); return the values bound to named dims.

    A fixed contract dim accepts a symbolic graph dim (it is pinned during preparation and verified by
    running the graph); a named contract dim accepts anything, but every fixed value it takes must agree
    across tensors, with ``pinned`` and with ``contract.choices``. Raises :class:`ModelError` naming every
    mismatch.
    """
    contract = family.served() if served else family.contract
    sig = graph_signature(model)
    label = what or family.name
    problems: list[str] = []
    bound: dict[str, int] = dict(pinned or {})

    def check(kind: str, actual: dict[str, Signature], specs: tuple[TensorSpec, ...]) -> None:
        expected = {s.name for s in specs}
        if set(actual) != expected:
            problems.append(
                f"{kind}s are {sorted(actual)}, expected {sorted(expected)}"
                " (tensor names are a contract: the Triton config and clients use them)"
            )
        for spec in specs:
            if spec.name not in actual:
                continue
            dtype, dims = actual[spec.name]
            if dtype != spec.dtype:
                problems.append(f"{kind} {spec.name!r} has dtype {dtype}, expected {spec.dtype}")
            if len(dims) != len(spec.dims):
                problems.append(
                    f"{kind} {spec.name!r} has rank {len(dims)} {list(dims)}, expected {len(spec.dims)} "
                    f"{list(spec.dims)}"
                )
                continue
            for axis, (got, want) in enumerate(zip(dims, spec.dims, strict=True)):
                if not isinstance(got, int):
                    continue
                if isinstance(want, int):
                    if got != want:
                        problems.append(f"{kind} {spec.name!r} dim {axis} is {got}, expected {want}")
                    continue
                if want == "batch" and contract.batch == "one" and got != 1:
                    problems.append(f"{kind} {spec.name!r} has batch {got}; this family runs at batch 1")
                allowed = contract.choices.get(want)
                if allowed is not None and got not in allowed:
                    problems.append(
                        f"{kind} {spec.name!r} dim {axis} ({want}) is {got}, "
                        f"expected one of {sorted(allowed)}"
                    )
                if want == "batch" and contract.batch == "dynamic":
                    continue  # a fixed batch is relabelled dynamic and then verified
                if want in bound and bound[want] != got:
                    problems.append(
                        f"{kind} {spec.name!r} dim {axis} ({want}) is {got}, "
                        f"but {want} = {bound[want]} elsewhere"
                    )
                bound.setdefault(want, got)

    check("input", sig.inputs, contract.inputs)
    check("output", sig.outputs, contract.outputs)
    if problems:
        kind = "served " if served and family.wire is not None else ""
        raise ModelError(f"{label} does not have the {kind}{family.name} signature: " + "; ".join(problems))
    return bound


def _set_dims(value: onnx.ValueInfoProto, dims: Sequence[Dim]) -> None:
    shape = value.type.tensor_type.shape
    for d, new in zip(shape.dim, dims, strict=True):
        if isinstance(new, int):
            d.Clear()
            d.dim_value = new
        else:
            d.Clear()
            d.dim_param = new


def apply_contract_dims(model: onnx.ModelProto, contract: Contract, bound: Mapping[str, int]) -> None:
    """Rewrite the graph's I/O dims in place: fixed contract dims and bound/pinned names become ints, other
    named dims get the contract's name (``N`` -> ``batch``), and the batch follows the family's policy."""
    specs = {s.name: s for s in (*contract.inputs, *contract.outputs)}
    renames: dict[str, str] = {}
    for value in (*model.graph.input, *model.graph.output):
        spec = specs.get(value.name)
        if spec is None:
            continue
        new_dims: list[Dim] = []
        for got, want in zip(_value_dims(value), spec.dims, strict=True):
            if isinstance(want, int):
                new_dims.append(want)
            elif want == "batch":
                new_dims.append(1 if contract.batch == "one" else "batch")
            elif want in bound:
                new_dims.append(bound[want])
            else:
                new_dims.append(want)
            if isinstance(got, str) and isinstance(new_dims[-1], str) and got != new_dims[-1]:
                renames[got] = str(new_dims[-1])
        _set_dims(value, new_dims)
    if renames:  # keep intermediate shape annotations consistent with the renamed I/O dims
        for value in model.graph.value_info:
            for d in value.type.tensor_type.shape.dim:
                if d.dim_param in renames:
                    d.dim_param = renames[d.dim_param]


def _optional(module: str, why: str) -> Any:
    """Import an export-only dependency (untyped, so imported by name) or raise a clear ModelError."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(f"{why}: pip install onnx onnxslim onnxconverter-common") from exc


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim: constant folding, dead-node elimination, operator fusion, shape inference."""
    onnxslim = _optional("onnxslim", "simplification needs the onnxslim package")
    try:
        slimmed = onnxslim.slim(model)
    except Exception as exc:  # onnxslim raises assorted errors
        raise ModelError(f"onnxslim could not simplify the graph: {exc}") from exc
    if not isinstance(slimmed, onnx.ModelProto):
        raise ModelError("onnxslim returned no model")
    return slimmed


def to_fp16(model: onnx.ModelProto, contract: Contract) -> onnx.ModelProto:
    """Weights and activations in float16; graph inputs and outputs stay as declared (float32) through
    Cast nodes, so clients and Triton configs do not change. onnxconverter-common's default block list plus
    the family's ``fp16_keep_float32`` ops stay in float32.

    onnxconverter-common leaves some float32 producers (``Cast(to=FLOAT)`` nodes of tf2onnx and mmdeploy
    shape arithmetic) feeding converted nodes, which gives graphs that mix float16 and float32 inputs on one
    node (onnx.checker: "inconsistent type"); :func:`_repair_mixed_precision` inserts the missing Casts.
    """
    float16 = _optional("onnxconverter_common.float16", "FP16 conversion needs onnxconverter-common")
    block = set(float16.DEFAULT_OP_BLOCK_LIST) | set(contract.fp16_keep_float32)
    try:
        # the converter warns once per weight it clamps to fp16's range (|w| < 1e-7 or > 65504): expected
        with warnings.catch_warnings(record=True) as clamped:
            warnings.simplefilter("always")
            converted = float16.convert_float_to_float16(
                model, keep_io_types=True, op_block_list=sorted(block)
            )
    except Exception as exc:
        raise ModelError(f"FP16 conversion failed: {exc}") from exc
    if clamped:
        log.info("FP16: %d weights clamped to the float16 range", len(clamped))
    return _repair_mixed_precision(converted, block)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    del model.graph.value_info[:]  # stale converter annotations would contradict the inferred types
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info)
    }
    types.update({i.name: i.data_type for i in inferred.graph.initializer})
    for node in inferred.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
    return types


def _repair_mixed_precision(model: onnx.ModelProto, block: set[str], *, rounds: int = 20) -> onnx.ModelProto:
    """Cast float32 inputs of float16 nodes to float16 (float16 inputs of blocked nodes to float32) until
    no node mixes the two."""
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    for _ in range(rounds):
        types = _elem_types(model)
        nodes: list[onnx.NodeProto] = []
        inserted = 0
        for node in model.graph.node:
            floats = {types.get(x) for x in node.input if x} & {f32, f16}
            if floats == {f32, f16}:
                target = f32 if node.op_type in block else f16
                for i, x in enumerate(node.input):
                    if x and types.get(x) in (f32, f16) and types.get(x) != target:
                        cast_out = f"{x}__to{'16' if target == f16 else '32'}__{node.name or len(nodes)}"
                        nodes.append(onnx.helper.make_node("Cast", [x], [cast_out], to=target, name=cast_out))
                        node.input[i] = cast_out
                        inserted += 1
            nodes.append(node)
        if not inserted:
            return model
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    raise ModelError("FP16 conversion left nodes with mixed float16/float32 inputs")


def random_inputs(
    contract: Contract, bound: Mapping[str, int], *, batch: int, seed: int = 0
) -> dict[str, NDArray[Any]]:
    """Seeded random feeds of the contract's shapes (``batch`` ignored for batch-1 families)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, NDArray[Any]] = {}
    for spec in contract.inputs:
        shape: list[int] = []
        for d in spec.dims:
            if isinstance(d, int):
                shape.append(d)
            elif d == "batch":
                shape.append(1 if contract.batch == "one" else batch)
            elif d in bound:
                shape.append(bound[d])
            elif d in contract.probe_sizes:
                shape.append(contract.probe_sizes[d])
            else:
                raise ModelError(f"no size known for dim {d!r} of {spec.name!r}")
        if contract.random == "pixels":
            feeds[spec.name] = rng.integers(0, 256, size=shape).astype(_NUMPY_DTYPES[spec.dtype])
        elif contract.random == "uniform":
            feeds[spec.name] = rng.uniform(-1.0, 1.0, size=shape).astype(_NUMPY_DTYPES[spec.dtype])
        else:
            feeds[spec.name] = rng.standard_normal(size=shape).astype(_NUMPY_DTYPES[spec.dtype])
    return feeds


def run_graph(path: Path, feeds: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """Run ``path`` on the CPU; outputs by name."""
    runner = OnnxRunner(path, threads=2)
    return dict(zip(runner.output_names, runner.run(feeds), strict=True))


def _run_per_item(path: Path, feeds: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """Run ``path`` one batch item at a time and stack the outputs (reference for the batch probe)."""
    runner = OnnxRunner(path, threads=2)
    size = len(next(iter(feeds.values())))
    parts = [runner.run({k: v[i : i + 1] for k, v in feeds.items()}) for i in range(size)]
    return {n: np.concatenate([p[j] for p in parts]) for j, n in enumerate(runner.output_names)}


def _iou(a: NDArray[Any], b: NDArray[Any]) -> NDArray[np.float64]:
    """IoU of one box ``a`` (x1, y1, x2, y2) with boxes ``b`` [M, 4]."""
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.asarray(inter / np.maximum(area, 1e-9), dtype=np.float64)


def detection_error(reference: NDArray[Any], candidate: NDArray[Any], *, top: int = 5) -> float:
    """Worst ``max(1 - IoU, |score difference|)`` over the ``top`` best reference boxes, each matched to
    the candidate box it overlaps most. Used for FP16 detectors, where NMS over nearly tied scores may keep
    a different tail of boxes or order them differently, so an elementwise comparison is meaningless."""
    worst = 0.0
    for ref_img, got_img in zip(reference, candidate, strict=True):
        if len(got_img) == 0:
            return 1.0 if len(ref_img) else 0.0
        for box in ref_img[np.argsort(-ref_img[:, 4], kind="stable")[:top]]:
            ious = _iou(box, got_img)
            best = int(np.argmax(ious))
            worst = max(worst, 1.0 - float(ious[best]), abs(float(got_img[best, 4] - box[4])))
    return worst


def compare_outputs(
    reference: Mapping[str, NDArray[Any]],
    candidate: Mapping[str, NDArray[Any]],
    *,
    tolerance: float,
    what: str,
    detections: str = "",
) -> dict[str, float]:
    """Peak-relative max error per float output (``max|c - r| / max|r|``); integers must be equal.

    Raises :class:`ModelError` on a missing output, a shape/dtype change or an error above ``tolerance``.
    With ``detections`` (an output name) that output is judged by :func:`detection_error` (its box count
    may change) and integer outputs only by their set of values (the detector is single-class).
    """
    match_detections = bool(detections)
    errors: dict[str, float] = {}
    for name, ref in reference.items():
        if name not in candidate:
            raise ModelError(f"{what}: output {name!r} disappeared")
        got = candidate[name]
        if got.dtype != ref.dtype or (got.shape != ref.shape and not match_detections):
            raise ModelError(
                f"{what}: output {name!r} is {got.dtype}{list(got.shape)}, was {ref.dtype}{list(ref.shape)}"
            )
        if not np.issubdtype(ref.dtype, np.floating):
            if match_detections:
                same = np.array_equal(np.unique(got), np.unique(ref))
            else:
                same = np.array_equal(got, ref)
            if not same:
                raise ModelError(f"{what}: integer output {name!r} changed")
            errors[name] = 0.0
            continue
        if np.all(np.isfinite(ref)) and not np.all(np.isfinite(got)):
            raise ModelError(f"{what}: output {name!r} has non-finite values")
        if name == detections:
            err = detection_error(ref, got)
            detail = f"box mismatch {err:.3g} (1 - IoU or score difference)"
        else:
            peak = float(np.max(np.abs(ref))) if ref.size else 0.0
            diff = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
            err = diff / peak if peak > 0 else diff
            detail = f"differs by {diff:.3g} ({err:.3g} of its peak {peak:.3g})"
        errors[name] = err
        if err > tolerance:
            raise ModelError(f"{what}: output {name!r} {detail}, tolerance {tolerance:g}")
    return errors


def _wire_steps(wire: WireFormat) -> list[tuple[str, dict[str, Any], list[onnx.TensorProto]]]:
    """The wire format's steps as (op, attributes, constant operands), in order (see WireFormat)."""
    steps: list[tuple[str, dict[str, Any], list[onnx.TensorProto]]] = []
    if wire.channels == "BGR":
        order = numpy_helper.from_array(np.array([2, 1, 0], np.int64), "wire_bgr_order")
        steps.append(("Gather", {"axis": 3}, [order]))
    if wire.mean is not None and wire.std is not None:
        steps.append(("Cast", {"to": onnx.TensorProto.FLOAT}, []))
        steps.append(("Sub", {}, [numpy_helper.from_array(np.array(wire.mean, np.float32), "wire_mean")]))
        steps.append(("Div", {}, [numpy_helper.from_array(np.array(wire.std, np.float32), "wire_std")]))
    if wire.network_layout == "NCHW":
        steps.append(("Transpose", {"perm": [0, 3, 1, 2]}, []))
    if wire.network_dtype != ("float32" if wire.mean is not None else wire.dtype):
        steps.append(("Cast", {"to": _DTYPES[wire.network_dtype]}, []))
    return steps


def wrap_wire_input(model: onnx.ModelProto, wire: WireFormat) -> onnx.ModelProto:
    """Make ``model`` take crops as they travel (in place; returns it).

    The network input ``wire.input`` becomes a uint8 ``[batch, H, W, 3]`` input of the same name, followed
    by the wire format's nodes (channel order, Cast, Sub mean, Div std, Transpose, Cast) that produce what
    the network took before. :func:`services.pose.pose2d.network_input` is the same rule in numpy.
    """
    graph = model.graph
    position = next((i for i, v in enumerate(graph.input) if v.name == wire.input), None)
    if position is None:
        raise ModelError(f"the graph has no input {wire.input!r} to receive the wire format")
    old = onnx.ValueInfoProto()
    old.CopyFrom(graph.input[position])
    dims = _value_dims(old)
    hw_c = (dims[2], dims[3], dims[1]) if wire.network_layout == "NCHW" else (dims[1], dims[2], dims[3])
    if len(dims) != 4 or hw_c[2] != 3:
        raise ModelError(f"input {wire.input!r} {list(dims)} is not a {wire.network_layout} 3-channel image")
    inner = f"{wire.input}__network"
    for node in graph.node:
        for i, x in enumerate(node.input):
            if x == wire.input:
                node.input[i] = inner
    steps = _wire_steps(wire)
    nodes: list[onnx.NodeProto] = []
    value = wire.input
    for k, (op, attrs, constants) in enumerate(steps):
        out = inner if k == len(steps) - 1 else f"wire_{k}_{op.lower()}"
        inputs = [value] + [c.name for c in constants]
        nodes.append(onnx.helper.make_node(op, inputs, [out], name=f"wire_{k}_{op.lower()}", **attrs))
        graph.initializer.extend(constants)
        value = out
    wire_input = onnx.helper.make_tensor_value_info(
        wire.input, _DTYPES[wire.dtype], [dims[0], hw_c[0], hw_c[1], 3]
    )
    inputs = list(graph.input)
    inputs[position] = wire_input
    del graph.input[:]
    graph.input.extend(inputs)
    old.name = inner
    graph.value_info.append(old)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *existing])
    return model


def network_feeds(feeds: Mapping[str, NDArray[Any]], family: Family) -> dict[str, NDArray[Any]]:
    """Feeds of a served graph (uint8 crops) -> feeds of the family's raw network (the numpy float path)."""
    wire = family.wire
    if wire is None:
        return dict(feeds)
    return {k: network_input(v, wire) if k == wire.input else v for k, v in feeds.items()}


def served_graph(
    model: onnx.ModelProto, family: Family, *, input_size: tuple[int, int] | None, what: str = ""
) -> tuple[onnx.ModelProto, dict[str, int]]:
    """The graph that is served for a raw ``model`` of ``family``, without simplification or a parity
    check (the CPU Triton repository): contract validated, dims pinned, wire input prepended. Returns it
    (``model``, changed in place) and the values bound to named dims."""
    bound = validate_signature(model, family, pinned=manifest_dims(family, input_size), what=what)
    apply_contract_dims(model, family.contract, bound)
    if family.wire is not None:
        wrap_wire_input(model, family.wire)
    return model, bound


def prepare_onnx(
    source: Path,
    out_path: Path,
    *,
    family: str,
    model_name: str = "",
    input_size: tuple[int, int] | None = None,
    fp16: bool = False,
    source_sha256: str = "",
    keep_network_input: bool = False,
) -> PreparedModel:
    """Prepare the ONNX file ``source`` of ``family`` into ``out_path`` (plus ``out_path.json``).

    Families with a wire format get the uint8 wire input unless ``keep_network_input``. The file is first
    written under a temporary name and only renamed to ``out_path`` after the checker and the onnxruntime
    parity check passed, so a failed preparation never leaves a servable-looking file.
    """
    if family not in FAMILIES:
        raise ModelError(f"no tensor contract for family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    fam = get_family(family)
    contract = fam.contract
    wire = None if keep_network_input else fam.wire
    name = model_name or source.stem
    try:
        model = onnx.load(str(source))
    except Exception as exc:
        raise ModelError(f"cannot read ONNX file {source}: {exc}") from exc
    pinned = manifest_dims(fam, input_size)
    bound = validate_signature(model, fam, pinned=pinned, what=f"model {name!r} ({source})")
    nodes_before = len(model.graph.node)

    apply_contract_dims(model, contract, bound)
    model = simplify(model)
    if fp16:
        model = to_fp16(model, contract)
    if wire is not None:  # last, so that the normalisation stays float32 in an FP16 graph
        wrap_wire_input(model, wire)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ModelError(f"prepared graph of {name!r} fails onnx.checker: {exc}") from exc
    validate_signature(model, fam, served=wire is not None, pinned=bound, what=f"prepared {name!r}")
    served = fam.served() if wire is not None else contract

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
    with tempfile.NamedTemporaryFile(dir=out_path.parent, suffix=".onnx.tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        onnx.save(model, str(tmp_path))
        parity: dict[str, float] = {}
        batches = (1, 2) if contract.batch == "dynamic" else (1,)
        for batch in batches:
            feeds = random_inputs(served, bound, batch=batch, seed=batch)
            source_feeds = network_feeds(feeds, fam) if wire is not None else feeds
            reference = run_graph(source, source_feeds) if batch == 1 else None
            try:
                candidate = run_graph(tmp_path, feeds)
                if reference is None:  # a source with a fixed batch of 1 cannot run the batch-2 probe
                    reference = _run_per_item(source, source_feeds)
            except InferenceError as exc:
                raise ModelError(
                    f"prepared {name!r} does not run at batch {batch}; its graph is not batch-agnostic "
                    f"(constant shapes inside?): {exc}"
                ) from exc
            errs = compare_outputs(
                reference,
                candidate,
                tolerance=tolerance,
                what=f"prepared {name!r} at batch {batch}",
                detections=contract.detections if fp16 else "",
            )
            for out_name, err in errs.items():
                parity[out_name] = max(parity.get(out_name, 0.0), err)
        tmp_path.replace(out_path)
    finally:
        tmp_path.unlink(missing_ok=True)

    sig = graph_signature(model)
    prepared = PreparedModel(
        model=name,
        family=family,
        path=out_path,
        sha256=sha256_of(out_path),
        source=source,
        source_sha256=source_sha256 or sha256_of(source),
        fp16=fp16,
        batch=contract.batch,
        inputs=sig.inputs,
        outputs=sig.outputs,
        parity=parity,
        tolerance=tolerance,
        nodes_before=nodes_before,
        nodes_after=len(model.graph.node),
        wire=f"{wire.dtype} {wire.layout} RGB" if wire is not None else "",
    )
    write_record(prepared)
    log.info("prepared %s -> %s (sha256 %s, parity %s)", name, out_path, prepared.sha256[:12], parity)
    return prepared


def write_record(prepared: PreparedModel) -> None:
    """The JSON record beside the prepared file (sha256, source, signature, parity)."""
    onnxslim = _optional("onnxslim", "simplification needs the onnxslim package")
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(prepared).items()}
    record["source"] = str(prepared.source)
    record["path"] = prepared.path.name
    record["tools"] = {"onnx": onnx.__version__, "onnxslim": onnxslim.__version__}
    prepared.record_path.write_text(json.dumps(record, indent=2) + "\n")


def prepare_model(
    name: str,
    out_dir: Path,
    *,
    store: ModelStore,
    fp16: bool = False,
    filename: str = "model.onnx",
    keep_network_input: bool = False,
) -> PreparedModel:
    """Prepare the manifest model ``name`` (found and checksum-verified through ``store``) into
    ``out_dir/filename``."""
    resolved = store.resolve(name)
    manifest = get_manifest(name)
    return prepare_onnx(
        resolved.path,
        out_dir / filename,
        family=manifest.family,
        model_name=name,
        input_size=manifest.input_size,
        fp16=fp16,
        source_sha256=resolved.sha256,
        keep_network_input=keep_network_input,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export.prepare",
        description="Validate, fix the batch dim of, optionally FP16-convert, simplify and verify an ONNX.",
    )
    p.add_argument("model", help="manifest name (see `gaitway models`) or an .onnx path with --family")
    p.add_argument("--out", type=Path, required=True, help="output folder (e.g. a Triton version folder)")
    p.add_argument("--filename", default="model.onnx", help="file name inside --out (default model.onnx)")
    p.add_argument("--fp16", action="store_true", help="weights/activations in float16 (I/O stay float32)")
    p.add_argument("--models-dir", default="", help="model search path (os.pathsep-separated)")
    p.add_argument("--family", choices=sorted(FAMILIES), help="family of an .onnx path given as MODEL")
    p.add_argument(
        "--network-input",
        action="store_true",
        help="keep the network's own (float) input instead of the uint8 crop input of RTMPose / MoveNet",
    )
    p.add_argument(
        "--input-size", default="", help="WxH for an .onnx path whose family pins it (e.g. 320x320)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.model.endswith(".onnx"):
            if not args.family:
                raise ModelError("an .onnx path needs --family")
            size = tuple(int(v) for v in args.input_size.split("x")) if args.input_size else None
            prepared = prepare_onnx(
                Path(args.model),
                args.out / args.filename,
                family=args.family,
                input_size=(size[0], size[1]) if size else None,
                fp16=args.fp16,
                keep_network_input=args.network_input,
            )
        else:
            settings = Settings(models_dir=args.models_dir) if args.models_dir else Settings()
            store = ModelStore(settings.model_search_path())
            prepared = prepare_model(
                args.model,
                args.out,
                store=store,
                fp16=args.fp16,
                filename=args.filename,
                keep_network_input=args.network_input,
            )
    except GaitwayError as err:
        sys.stderr.write(f"export.prepare: error [{err.code}]: {err}\n")
        return status_of(err).exit_code
    sys.stdout.write(f"{prepared.path} sha256 {prepared.sha256}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
