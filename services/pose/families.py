"""Model families: every fact about a family in one table, :data:`FAMILIES`.

A *family* is a network architecture with one pre/post-processing rule (RTMDet, RTMPose, MoveNet, SemGCN,
MotionBERT). A model (a manifest in ``models.toml``) names its family; everything the system needs to run,
export and serve a model is looked up here:

* ``role`` — which pipeline stage it fills (detector, pose2d, lifter);
* the codec factory (``pose2d_codec`` / ``lifter_codec``: the pure pre/post-processing of
  :mod:`services.pose.pose2d` and :mod:`services.pose.lifting`);
* ``contract`` — the tensor names, dtypes and dims of the family's ONNX graph (checked by ``export.prepare``);
* ``wire`` — how 2D crops travel to the server and what the served graph does before the network (below);
  :meth:`Family.served` is the contract of the graph that is served;
* ``triton_model`` — the model name in both Triton repositories (CPU python backend, GPU production);
* ``cpu`` — batching facts of the CPU Triton repository (``export.repository``);
* ``tensorrt`` — the optimisation profile for a TensorRT plan (``export.tensorrt --family``);
* ``lifter_units`` — the units of a lifter's output before height scaling.

**Wire format.** Crops cross the network as uint8 ``(N, H, W, 3)`` RGB (a quarter of float32). The rule that
turns them into the network's own input — channel order, cast, ``(x - mean) / std``, layout — is the
family's :class:`WireFormat`; it is applied in two places that tests hold equal: inside the served graph
(nodes prepended by ``export.prepare``) and in numpy (:func:`services.pose.pose2d.network_input`) when a raw
graph runs in-process.

Adding a family: one :class:`Family` entry here, its codec (for a new pre/post-processing rule), its
manifests in ``models.toml`` and a ``model_repository/<triton_model>/config.pbtxt``;
``tests/test_families.py`` says what is missing.

This module imports nothing heavy (no numpy, onnx, onnxruntime, tritonclient): command lines read it at
start-up. Codec factories import their module when called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar, Literal

from services.errors import ModelError

if TYPE_CHECKING:
    from services.pose.lifting import LifterCodec
    from services.pose.pose2d import Pose2DCodec

Dim = int | str
Role = Literal["detector", "pose2d", "lifter"]
BatchPolicy = Literal["dynamic", "one"]

#: tensor dtype names used in contracts -> Triton ``TYPE_*`` suffixes
TRITON_DTYPES = {"float32": "FP32", "float16": "FP16", "int32": "INT32", "int64": "INT64", "uint8": "UINT8"}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, dtype (``float32``, ``int32``, ``int64``, ``uint8``) and dims.

    Dims are ints (fixed) or names (variable): ``batch``; ``H``/``W`` from the manifest's input size;
    ``K`` the keypoint count of the manifest's skeleton; any other name is free (``frames``, ``num_dets``).
    """

    name: str
    dtype: str
    dims: tuple[Dim, ...]


@dataclass(frozen=True)
class Contract:
    """What a graph's inputs and outputs must look like.

    ``batch``: ``dynamic`` (the first dim of every tensor is the symbolic ``batch``) or ``one`` (the graph
    only runs at batch 1). ``choices`` restricts named dims to a set of values; a named dim used in several
    tensors must have the same value everywhere. ``random`` describes verification inputs: ``normal``
    (N(0,1) float), ``uniform`` (U(-1,1) float) or ``pixels`` (integers 0-255).
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batch: BatchPolicy
    choices: Mapping[str, frozenset[int]] = field(default_factory=dict)
    #: named dims whose value comes from the manifest's ``input_size`` (width, height)
    pin_from_manifest: tuple[str, ...] = ()
    random: str = "normal"
    #: value used for a free named dim (other than batch) when making verification inputs
    probe_sizes: Mapping[str, int] = field(default_factory=dict)
    #: ops kept in float32 by the FP16 conversion (besides onnxconverter-common's default block list)
    fp16_keep_float32: tuple[str, ...] = ()
    #: output holding NMS detections: after FP16 conversion it is compared by box IoU, not elementwise
    detections: str = ""


@dataclass(frozen=True)
class WireFormat:
    """Crops on the wire (uint8 ``(N, H, W, 3)``, RGB) -> the network input ``input``.

    Steps, in order: reorder channels to ``channels``; cast to float32 (or straight to ``network_dtype``
    when there is no ``mean``); ``(x - mean) / std`` per channel (in ``channels`` order); transpose to
    ``network_layout``; cast to ``network_dtype``.
    """

    input: str
    network_dtype: Literal["float32", "int32"]
    network_layout: Literal["NCHW", "NHWC"]
    channels: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    #: on the wire: always uint8 NHWC
    dtype: ClassVar[str] = "uint8"
    layout: ClassVar[str] = "NHWC"

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ValueError("a wire format gives both mean and std, or neither")


@dataclass(frozen=True)
class CpuServing:
    """Batching of the family's model in the CPU Triton repository (python backend around onnxruntime)."""

    max_batch_size: int  # 0 = no batching dimension
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    #: largest batch one onnxruntime call takes (0 = whatever the batcher forms)
    onnx_max_batch: int = 0
    #: model instances (each its own stub process and onnxruntime session); >1 only where nothing batches
    instances: int = 1


@dataclass(frozen=True)
class TensorRTProfile:
    """One optimisation profile: named dim (``batch``, ``frames``) -> (min, opt, max)."""

    dims: Mapping[str, tuple[int, int, int]]

    @property
    def max_batch(self) -> int:
        return self.dims["batch"][2]


@dataclass(frozen=True)
class Family:
    """Everything about one model family (see the module docstring)."""

    name: str
    role: Role
    contract: Contract
    triton_model: str
    cpu: CpuServing
    wire: WireFormat | None = None
    tensorrt: TensorRTProfile | None = None
    lifter_units: str = ""
    #: (skeleton name, input size (w, h)) -> the 2D codec; pose2d families only
    pose2d_codec: Callable[[str, tuple[int, int]], Pose2DCodec] | None = None
    #: () -> the lifter codec; lifter families only
    lifter_codec: Callable[[bool], LifterCodec] | None = None  # (root_relative) -> codec

    def served(self) -> Contract:
        """The contract of the served graph: the network's, with the wire input (uint8 NHWC pixels) in
        place of the network input for families that have a wire format."""
        if self.wire is None:
            return self.contract
        wire = self.wire
        inputs = tuple(
            TensorSpec(s.name, wire.dtype, (s.dims[0], "H", "W", 3)) if s.name == wire.input else s
            for s in self.contract.inputs
        )
        return replace(self.contract, inputs=inputs, random="pixels")


def _rtmpose_codec(skeleton: str, input_wh: tuple[int, int]) -> Pose2DCodec:
    from services.pose.pose2d import RTMPoseCodec
    from services.pose.skeletons import SKELETONS

    return RTMPoseCodec(skeleton=SKELETONS[skeleton], input_wh=input_wh)


def _movenet_codec(skeleton: str, input_wh: tuple[int, int]) -> Pose2DCodec:
    from services.pose.pose2d import MoveNetCodec

    if skeleton != "coco17":
        raise ModelError(f"MoveNet has COCO-17 keypoints, not {skeleton!r}")
    return MoveNetCodec(input_wh=input_wh)


def _semgcn_codec(root_relative: bool) -> LifterCodec:
    from services.pose.lifting import SemGCNCodec

    if not root_relative:
        raise ModelError("SemGCN outputs root-relative poses only")
    return SemGCNCodec()


def _motionbert_codec(root_relative: bool) -> LifterCodec:
    from services.pose.lifting import MotionBERTCodec

    # a global-trajectory checkpoint (MB_ft_h36m_global_lite) is made root-relative by subtracting its pelvis
    return MotionBERTCodec(rootrel_model=root_relative)


_FAMILIES = (
    Family(
        name="rtmdet",
        role="detector",
        # mmdeploy end2end graph (NMS inside): batch 1 only, spatial dims pinned to the manifest's 320x320
        contract=Contract(
            inputs=(TensorSpec("input", "float32", ("batch", 3, "H", "W")),),
            outputs=(
                TensorSpec("dets", "float32", ("batch", "num_dets", 5)),
                TensorSpec("labels", "int64", ("batch", "num_dets")),
            ),
            batch="one",
            pin_from_manifest=("H", "W"),
            detections="dets",
        ),
        triton_model="detector",
        cpu=CpuServing(max_batch_size=4, max_queue_delay_us=500, onnx_max_batch=1),
    ),
    Family(
        name="rtmpose",
        role="pose2d",
        contract=Contract(
            inputs=(TensorSpec("input", "float32", ("batch", 3, "H", "W")),),
            outputs=(
                TensorSpec("simcc_x", "float32", ("batch", "K", 384)),
                TensorSpec("simcc_y", "float32", ("batch", "K", 512)),
            ),
            batch="dynamic",
            choices={"K": frozenset({17, 26}), "H": frozenset({256}), "W": frozenset({192})},
            pin_from_manifest=("H", "W"),
        ),
        wire=WireFormat(
            input="input",
            network_dtype="float32",
            network_layout="NCHW",
            channels="RGB",
            mean=(123.675, 116.28, 103.53),
            std=(58.395, 57.12, 57.375),
        ),
        triton_model="pose2d",
        cpu=CpuServing(max_batch_size=16, preferred_batch_sizes=(4, 8, 16), max_queue_delay_us=2000),
        tensorrt=TensorRTProfile({"batch": (1, 16, 32)}),
        pose2d_codec=_rtmpose_codec,
    ),
    Family(
        name="movenet",
        role="pose2d",
        # tf2onnx graph: reshapes to constant [1, ...] shapes, so batch 1 only; normalises inside itself
        contract=Contract(
            inputs=(TensorSpec("input:0", "int32", ("batch", "H", "W", 3)),),
            outputs=(TensorSpec("Identity:0", "float32", ("batch", 1, 17, 3)),),
            batch="one",
            pin_from_manifest=("H", "W"),
            random="pixels",
        ),
        wire=WireFormat(input="input:0", network_dtype="int32", network_layout="NHWC", channels="RGB"),
        triton_model="pose2d_movenet",
        # batch-1 graph: concurrent frames run on two instances instead of queueing
        cpu=CpuServing(max_batch_size=0, instances=2),
        pose2d_codec=_movenet_codec,
    ),
    Family(
        name="semgcn",
        role="lifter",
        contract=Contract(
            inputs=(TensorSpec("kp2d_norm", "float32", ("batch", 16, 2)),),
            outputs=(TensorSpec("kp3d", "float32", ("batch", 16, 3)),),
            batch="dynamic",
            random="uniform",
        ),
        triton_model="lifter",
        cpu=CpuServing(max_batch_size=256, preferred_batch_sizes=(64, 256), max_queue_delay_us=1000),
        lifter_units="m (average H36M subject scale)",
        lifter_codec=_semgcn_codec,
    ),
    Family(
        name="motionbert",
        role="lifter",
        contract=Contract(
            inputs=(TensorSpec("pose2d", "float32", ("batch", "frames", 17, 3)),),
            outputs=(TensorSpec("pose3d", "float32", ("batch", "frames", 17, 3)),),
            batch="dynamic",
            random="uniform",
            probe_sizes={"frames": 27},
            fp16_keep_float32=("LayerNormalization", "ReduceMean", "Pow", "Sqrt", "Softmax"),
        ),
        triton_model="lifter_motionbert",
        # clips of up to 243 frames; the batcher only groups clips of the same length
        cpu=CpuServing(max_batch_size=8, preferred_batch_sizes=(2, 4, 8), max_queue_delay_us=1000),
        tensorrt=TensorRTProfile({"batch": (1, 2, 8), "frames": (1, 243, 243)}),
        lifter_units="normalised (crop box = 2)",
        lifter_codec=_motionbert_codec,
    ),
)

#: every known family by name
FAMILIES: Mapping[str, Family] = {f.name: f for f in _FAMILIES}


def get_family(name: str) -> Family:
    """The family ``name``; :class:`~services.errors.ModelError` naming the known ones otherwise."""
    if name not in FAMILIES:
        raise ModelError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def family_of_triton_model(model: str) -> Family:
    """The family a Triton model name serves."""
    for f in FAMILIES.values():
        if f.triton_model == model:
            return f
    raise ModelError(f"no model family is served as Triton model {model!r}")


def named_dims(family: Family, *, input_size: tuple[int, int], skeleton: str) -> dict[str, int]:
    """Values of the named dims a manifest fixes: ``W``/``H`` from ``input_size`` (width, height) where the
    contract pins them, ``K`` from the skeleton where the contract uses it."""
    values: dict[str, int] = {}
    if family.contract.pin_from_manifest:
        values["W"], values["H"] = int(input_size[0]), int(input_size[1])
    used = {d for s in (*family.contract.inputs, *family.contract.outputs) for d in s.dims}
    if "K" in used:
        from services.pose.skeletons import SKELETONS

        if skeleton not in SKELETONS:
            raise ModelError(f"{family.name}: unknown skeleton {skeleton!r}")
        values["K"] = SKELETONS[skeleton].num_joints
    return values
