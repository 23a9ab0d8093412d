"""Build a TensorRT engine (``model.plan``) from a prepared ONNX file, with explicit optimisation profiles.

    python -m export.tensorrt model.onnx --out model.plan --family rtmpose --fp16
    python -m export.tensorrt model.onnx --out model.plan \\
        --min 1x256x192x3 --opt 8x256x192x3 --max 32x256x192x3 --fp16

``--family`` takes the family's profile from the registry (:mod:`services.pose.families`: RTMPose batch
1 / 16 / 32, MotionBERT batch 1 / 2 / 8 and frames 1 / 243 / 243) and the other dims from the graph. Shapes
are ``AxBxC`` for a graph with one dynamic input, or ``NAME:AxBxC`` (repeat the option, or separate with
commas) for several. Every input with a dynamic dim needs a min, opt and max shape; a static input may be
left out (its shape is its profile). ``min <= opt <= max`` elementwise, static dims must match the graph.

The engine is built with the ``tensorrt`` Python API when it is importable, otherwise with ``trtexec``
(found on PATH or given with ``--trtexec``; in NGC images it is ``/usr/src/tensorrt/bin/trtexec``). Either
needs a machine with an NVIDIA GPU and TensorRT, and the plan only runs on the same GPU architecture and
TensorRT version, so build it in (or next to) the Triton image that serves it. A JSON record with the build
time, the profiles and the sha256 of both files is written to ``model.plan.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from services.errors import GaitwayError, ModelError, status_of
from services.pose.families import FAMILIES, Dim, get_family
from services.pose.models import sha256_of

log = logging.getLogger(__name__)

Shape = tuple[int, ...]


class TensorRTUnavailableError(ModelError):
    """Neither the ``tensorrt`` module nor ``trtexec`` is available."""


@dataclass(frozen=True)
class InputProfile:
    """min / opt / max shapes of one network input (one optimisation profile entry)."""

    name: str
    min: Shape
    opt: Shape
    max: Shape


@dataclass(frozen=True)
class BuildResult:
    plan: Path
    sha256: str
    build_seconds: float
    builder: str  # "tensorrt-python" or "trtexec"
    fp16: bool
    profiles: tuple[InputProfile, ...]

    @property
    def record_path(self) -> Path:
        return self.plan.with_name(self.plan.name + ".json")


def parse_shape(text: str) -> Shape:
    """``"8x3x256x192"`` -> ``(8, 3, 256, 192)``; every dim a positive integer."""
    parts = text.strip().lower().split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise ModelError(f"shape {text!r} is not of the form AxBxC (positive integers)") from None
    if not dims or any(d <= 0 for d in dims):
        raise ModelError(f"shape {text!r} has a dim <= 0")
    return dims


def parse_shapes(texts: Sequence[str]) -> dict[str | None, Shape]:
    """Option values (``"NAME:AxB"`` or ``"AxB"``, possibly comma-separated) -> {name or None: shape}.

    The name is everything before the last ``:``, so tf2onnx names such as ``input:0`` work
    (``input:0:1x256x256x3``).
    """
    shapes: dict[str | None, Shape] = {}
    for text in texts:
        for item in filter(None, (t.strip() for t in text.split(","))):
            name, sep, shape = item.rpartition(":")
            key = name if sep else None
            if key in shapes:
                raise ModelError(f"shape given twice for {key or 'the input'}: {item!r}")
            shapes[key] = parse_shape(shape)
    return shapes


def onnx_input_dims(path: Path) -> dict[str, tuple[int | None, ...]]:
    """Graph inputs (initializers excluded) -> dims, ``None`` for a dynamic dim."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"cannot read ONNX file {path}: {exc}") from exc
    initializers = {i.name for i in model.graph.initializer}
    return {
        v.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim)
        for v in model.graph.input
        if v.name not in initializers
    }


def build_profiles(
    inputs: Mapping[str, tuple[int | None, ...]],
    mins: Mapping[str | None, Shape],
    opts: Mapping[str | None, Shape],
    maxs: Mapping[str | None, Shape],
) -> tuple[InputProfile, ...]:
    """Check the min/opt/max shapes against the graph's inputs and return one profile per input."""
    if not (mins.keys() == opts.keys() == maxs.keys()):
        raise ModelError("--min, --opt and --max must name the same inputs")
    named: dict[str, tuple[Shape, Shape, Shape]] = {}
    for key in mins:
        if key is None:
            dynamic = [n for n, dims in inputs.items() if any(d is None for d in dims)]
            if len(inputs) == 1:
                name = next(iter(inputs))
            elif len(dynamic) == 1:
                name = dynamic[0]
            else:
                raise ModelError(
                    f"the graph has inputs {sorted(inputs)}: name them, e.g. --min {next(iter(inputs))}:1x..."
                )
        else:
            name = key
        if name not in inputs:
            raise ModelError(f"the graph has no input {name!r}; its inputs are {sorted(inputs)}")
        named[name] = (mins[key], opts[key], maxs[key])

    profiles: list[InputProfile] = []
    for name, dims in inputs.items():
        if name not in named:
            if any(d is None for d in dims):
                raise ModelError(f"input {name!r} has dynamic dims {list(dims)}: give its --min/--opt/--max")
            static = tuple(int(d) for d in dims if d is not None)
            profiles.append(InputProfile(name, static, static, static))
            continue
        lo, mid, hi = named[name]
        for label, shape in (("min", lo), ("opt", mid), ("max", hi)):
            if len(shape) != len(dims):
                raise ModelError(
                    f"--{label} for {name!r} has rank {len(shape)}, the input has rank {len(dims)} "
                    f"({['?' if d is None else d for d in dims]})"
                )
            for axis, (s, d) in enumerate(zip(shape, dims, strict=True)):
                if d is not None and s != d:
                    raise ModelError(
                        f"--{label} for {name!r}: dim {axis} is static {d} in the graph, not {s}"
                    )
        if not all(a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True)):
            raise ModelError(f"input {name!r}: need min <= opt <= max in every dim, got {lo}, {mid}, {hi}")
        profiles.append(InputProfile(name, lo, mid, hi))
    return tuple(profiles)


def _dim_names(graph_dims: tuple[int | None, ...], candidates: Sequence[tuple[Dim, ...]]) -> tuple[Dim, ...]:
    """The contract dims (served or network) that fit a graph input's static dims."""
    for dims in candidates:
        if len(dims) == len(graph_dims) and all(
            not isinstance(c, int) or g is None or g == c for g, c in zip(graph_dims, dims, strict=True)
        ):
            return dims
    raise ModelError(
        f"an input {['?' if d is None else d for d in graph_dims]} fits none of the family's shapes"
    )


def family_profiles(inputs: Mapping[str, tuple[int | None, ...]], family: str) -> tuple[InputProfile, ...]:
    """Profiles from the family's TensorRT profile (named dims -> min/opt/max) and the graph's static dims."""
    fam = get_family(family)
    if fam.tensorrt is None:
        raise ModelError(f"family {family!r} has no TensorRT profile: give --min, --opt and --max")
    specs = [*fam.served().inputs, *fam.contract.inputs]
    mins: dict[str | None, Shape] = {}
    opts: dict[str | None, Shape] = {}
    maxs: dict[str | None, Shape] = {}
    for name, dims in inputs.items():
        if all(d is not None for d in dims):
            continue
        names = _dim_names(dims, [s.dims for s in specs if s.name == name])
        shapes: list[list[int]] = [[], [], []]
        for g, d in zip(dims, names, strict=True):
            if g is not None:
                values = (g, g, g)
            elif isinstance(d, str) and d in fam.tensorrt.dims:
                values = fam.tensorrt.dims[d]
            else:
                raise ModelError(f"input {name!r}: the {family} profile gives no range for dim {d!r}")
            for shape, v in zip(shapes, values, strict=True):
                shape.append(v)
        mins[name], opts[name], maxs[name] = (tuple(x) for x in shapes)
    return build_profiles(inputs, mins, opts, maxs)


def _fmt(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_command(
    trtexec: str,
    onnx_path: Path,
    plan: Path,
    profiles: Sequence[InputProfile],
    *,
    fp16: bool,
    workspace_mib: int,
) -> list[str]:
    """The trtexec command line equivalent to :func:`_build_with_python`."""

    def arg(attr: str) -> str:
        return ",".join(
            f"{repr(p.name) if ':' in p.name else p.name}:{_fmt(getattr(p, attr))}" for p in profiles
        )

    cmd = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={plan}"]
    cmd.append(f"--memPoolSize=workspace:{workspace_mib}M")
    if any(p.min != p.max for p in profiles):
        cmd += [f"--minShapes={arg('min')}", f"--optShapes={arg('opt')}", f"--maxShapes={arg('max')}"]
    if fp16:
        cmd.append("--fp16")
    return cmd


def _import_tensorrt() -> Any:
    """The ``tensorrt`` module, or None (imported lazily: it only exists on GPU machines)."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError:
        return None


def _build_with_python(
    trt: Any, onnx_path: Path, profiles: Sequence[InputProfile], *, fp16: bool, workspace_mib: int
) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT 8; implicit in 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for p in profiles:
        profile.set_shape(p.name, p.min, p.opt, p.max)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    return bytes(serialized)


def build_engine(
    onnx_path: Path,
    plan: Path,
    profiles: Sequence[InputProfile],
    *,
    fp16: bool = False,
    workspace_mib: int = 4096,
    trtexec: str = "",
) -> BuildResult:
    """Build ``plan`` from ``onnx_path``; raises :class:`TensorRTUnavailableError` without TensorRT."""
    trt = None if trtexec else _import_tensorrt()
    exe = trtexec or shutil.which("trtexec") or ""
    if trt is None and not exe:
        raise TensorRTUnavailableError(
            "TensorRT is not available here: building an engine needs a machine with an NVIDIA GPU and "
            "TensorRT (the `tensorrt` Python package or the `trtexec` tool, e.g. inside the "
            "nvcr.io/nvidia/tritonserver or tensorrt image whose TensorRT version will serve the plan). "
            "Without it, serve the ONNX file with the onnxruntime backend (optionally with its TensorRT "
            "accelerator)."
        )
    plan.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if trt is not None:
        plan.write_bytes(_build_with_python(trt, onnx_path, profiles, fp16=fp16, workspace_mib=workspace_mib))
        builder = f"tensorrt-python {getattr(trt, '__version__', '?')}"
    else:
        cmd = trtexec_command(exe, onnx_path, plan, profiles, fp16=fp16, workspace_mib=workspace_mib)
        log.info("running %s", " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not plan.is_file():
            tail = done.stderr[-2000:] or done.stdout[-2000:]
            raise ModelError(f"trtexec failed ({done.returncode}): {tail}")
        builder = "trtexec"
    result = BuildResult(
        plan=plan,
        sha256=sha256_of(plan),
        build_seconds=round(time.perf_counter() - start, 3),
        builder=builder,
        fp16=fp16,
        profiles=tuple(profiles),
    )
    record = {
        "plan": plan.name,
        "sha256": result.sha256,
        "onnx": str(onnx_path),
        "onnx_sha256": sha256_of(onnx_path),
        "builder": builder,
        "fp16": fp16,
        "workspace_mib": workspace_mib,
        "build_seconds": result.build_seconds,
        "profiles": [
            {"name": p.name, "min": list(p.min), "opt": list(p.opt), "max": list(p.max)} for p in profiles
        ],
    }
    result.record_path.write_text(json.dumps(record, indent=2) + "\n")
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export.tensorrt", description="Build a TensorRT engine from an ONNX file."
    )
    p.add_argument("onnx", type=Path, help="prepared ONNX file (see export.prepare)")
    p.add_argument("--out", type=Path, required=True, help="engine file to write, e.g. 1/model.plan")
    p.add_argument(
        "--family", choices=sorted(FAMILIES), help="take min/opt/max from the family's registered profile"
    )
    p.add_argument("--min", action="append", default=[], help="min shape: AxBxC or NAME:AxBxC (repeatable)")
    p.add_argument("--opt", action="append", default=[], help="shape the kernels are tuned for")
    p.add_argument("--max", action="append", default=[], help="max shape")
    p.add_argument("--fp16", action="store_true", help="allow FP16 kernels (I/O keep their dtypes)")
    p.add_argument("--workspace-mib", type=int, default=4096, help="builder workspace limit (MiB)")
    p.add_argument("--trtexec", default="", help="use this trtexec binary instead of the tensorrt module")
    return p


def profiles_from_args(args: argparse.Namespace) -> tuple[InputProfile, ...]:
    """Parse and validate the shape options against the ONNX graph's inputs (``--family`` without shape
    options: the family's registered profile)."""
    inputs = onnx_input_dims(args.onnx)
    if args.family and not (args.min or args.opt or args.max):
        return family_profiles(inputs, args.family)
    return build_profiles(inputs, parse_shapes(args.min), parse_shapes(args.opt), parse_shapes(args.max))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        profiles = profiles_from_args(args)
        result = build_engine(
            args.onnx,
            args.out,
            profiles,
            fp16=args.fp16,
            workspace_mib=args.workspace_mib,
            trtexec=args.trtexec,
        )
    except GaitwayError as err:
        sys.stderr.write(f"export.tensorrt: error [{err.code}]: {err}\n")
        return status_of(err).exit_code
    sys.stdout.write(f"{result.plan} built in {result.build_seconds} s ({result.builder})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
