"""Load a MotionBERT checkpoint into :class:`DSTformer` and export it to ONNX.

CLI::

    python -m export.motionbert.convert --checkpoint best_epoch.bin --config full --out motionbert.onnx
    python -m export.motionbert.convert --config lite --random-weights --out lite_random.onnx

``--config`` is ``full``, ``lite``, ``tiny`` or the path of a JSON file with the hyper-parameters (the
official names: ``dim_feat``, ``dim_rep``, ``depth``, ``num_heads``, ``mlp_ratio``, ``maxlen``, ...).

The graph has one input ``pose2d`` ``[batch, frames, 17, 3]`` float32 (x, y, confidence in MotionBERT's
normalised units) and one output ``pose3d`` ``[batch, frames, 17, 3]``. Both ``batch`` and ``frames`` are
dynamic; ``frames`` must be between 1 and ``maxlen`` (243 for the released models): the temporal embedding
is sliced to the first ``frames`` rows, and a longer clip fails at run time in onnxruntime.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from export.motionbert.dstformer import PRESETS, DSTformer, DSTformerConfig, randomize_

__all__ = [
    "INPUT_NAME",
    "OPSET",
    "OUTPUT_NAME",
    "build_model",
    "export_onnx",
    "extract_state_dict",
    "load_checkpoint",
    "main",
    "resolve_config",
]

INPUT_NAME = "pose2d"
OUTPUT_NAME = "pose3d"
OPSET = 17
_PREFIX = "module."
_STATE_DICT_KEYS = ("model_pos", "model", "state_dict")


def resolve_config(spec: str | Path | Mapping[str, Any] | DSTformerConfig) -> DSTformerConfig:
    """A preset name (``full``, ``lite``, ``tiny``), a JSON file, a mapping or a config."""
    if isinstance(spec, DSTformerConfig):
        return spec
    if isinstance(spec, Mapping):
        return DSTformerConfig.from_dict(dict(spec))
    if isinstance(spec, str) and spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--config must be one of {sorted(PRESETS)} or a JSON file; got {spec!r}")
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return DSTformerConfig.from_dict(data)


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``; official training checkpoints may also pickle numpy scalars
    (``min_loss``), which are allow-listed on a second try. Nothing else is ever unpickled."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # numpy scalars pickle as ``numpy.core.multiarray.scalar`` (numpy 1) or ``numpy._core...`` (numpy 2)
        scalar = np.array(0.0)[()].__reduce__()[0]
        numpy_globals: list[Any] = [np.dtype, scalar]
        numpy_globals += [(scalar, f"numpy.{core}.multiarray.scalar") for core in ("core", "_core")]
        numpy_globals += [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
        with torch.serialization.safe_globals(numpy_globals):
            return torch.load(path, map_location="cpu", weights_only=True)


def extract_state_dict(obj: Any) -> dict[str, Tensor]:
    """The model state dict of a loaded checkpoint: ``obj['model_pos']`` (official format; also ``model``
    or ``state_dict``) or ``obj`` itself, with a leading ``module.`` (``nn.DataParallel``) removed from the
    keys."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint is a {type(obj).__name__}, expected a dict")
    for key in _STATE_DICT_KEYS:
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"checkpoint entry {key!r} is not a tensor (is this a MotionBERT checkpoint?)")
        name = key[len(_PREFIX) :] if key.startswith(_PREFIX) else key
        out[name] = value
    return out


def load_checkpoint(path: str | Path, config: str | Path | Mapping[str, Any] | DSTformerConfig) -> DSTformer:
    """Build the model for ``config``, load ``path`` with ``strict=True`` and return it in eval mode."""
    model = DSTformer(resolve_config(config))
    state = extract_state_dict(_torch_load(Path(path)))
    model.load_state_dict(state, strict=True)
    return model.eval()


def build_model(
    config: str | Path | Mapping[str, Any] | DSTformerConfig,
    checkpoint: str | Path | None = None,
    *,
    random_seed: int | None = None,
) -> DSTformer:
    """Model from a checkpoint, or with O(1)-scale random weights (:func:`randomize_`) when ``checkpoint`` is
    None (``random_seed`` defaults to 0)."""
    if checkpoint is not None:
        if random_seed is not None:
            raise ValueError("give either a checkpoint or a random seed, not both")
        return load_checkpoint(checkpoint, config)
    model = DSTformer(resolve_config(config))
    randomize_(model, 0 if random_seed is None else random_seed)
    return model.eval()


def export_onnx(
    model: DSTformer,
    out: str | Path,
    *,
    example_frames: int | None = None,
    dynamic_frames: bool = True,
    opset: int = OPSET,
) -> Path:
    """Export ``model`` (eval mode, fp32) to ``out``: input ``pose2d`` ``[batch, frames, J, dim_in]``,
    output ``pose3d``. ``batch`` is always dynamic; ``frames`` is dynamic (1..maxlen) unless
    ``dynamic_frames=False``, which fixes it to ``example_frames`` (default ``maxlen``)."""
    cfg = model.cfg
    frames = cfg.maxlen if example_frames is None else example_frames
    if not 1 <= frames <= cfg.maxlen:
        raise ValueError(f"example_frames must be in [1, {cfg.maxlen}]")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    # An example batch of 2 with non-trivial values so that no dimension gets specialised to 1.
    gen = torch.Generator().manual_seed(0)
    example = torch.rand(2, frames, cfg.num_joints, cfg.dim_in, generator=gen) * 2 - 1
    axes: dict[int, str] = {0: "batch"}
    if dynamic_frames:
        axes[1] = "frames"
    with warnings.catch_warnings():
        # the legacy (TorchScript) exporter is deprecated in favour of dynamo; it is still the simplest way
        # to get a plain opset-17 graph with named dynamic axes.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        with torch.no_grad():
            torch.onnx.export(
                _PoseOnly(model).eval(),
                (example,),
                str(out),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    return out


class _PoseOnly(nn.Module):
    """``pose2d -> pose3d`` only: keeps ``return_rep`` (a Python flag) out of the traced signature."""

    def __init__(self, model: DSTformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.motionbert.convert",
        description="Export a MotionBERT (DSTformer) checkpoint to ONNX (input pose2d, output pose3d).",
    )
    parser.add_argument("--checkpoint", type=Path, help="official checkpoint (.bin) with 'model_pos'")
    parser.add_argument("--config", required=True, help="full | lite | tiny | path to a JSON config")
    parser.add_argument("--out", type=Path, required=True, help="output .onnx file")
    parser.add_argument("--random-weights", action="store_true", help="no checkpoint: random O(1) weights")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-weights")
    parser.add_argument(
        "--fixed-frames",
        type=int,
        default=None,
        metavar="T",
        help="export with a fixed clip length T instead of a dynamic 'frames' axis",
    )
    args = parser.parse_args(argv)
    if (args.checkpoint is None) == (not args.random_weights):
        parser.error("give exactly one of --checkpoint or --random-weights")
    try:
        cfg = resolve_config(args.config)
        model = build_model(cfg, args.checkpoint, random_seed=args.seed if args.random_weights else None)
        start = time.perf_counter()
        path = export_onnx(
            model,
            args.out,
            example_frames=args.fixed_frames,
            dynamic_frames=args.fixed_frames is None,
        )
        elapsed = time.perf_counter() - start
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:
        sys.stderr.write(f"convert: error: {exc}\n")
        return 1
    params = sum(p.numel() for p in model.parameters())
    frames = (
        "frames (dynamic, 1.." + str(cfg.maxlen) + ")" if args.fixed_frames is None else args.fixed_frames
    )
    sys.stdout.write(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {params:,} parameters, opset {OPSET}) in "
        f"{elapsed:.1f} s\n"
        f"  input  {INPUT_NAME} [batch, {frames}, {cfg.num_joints}, {cfg.dim_in}] float32\n"
        f"  output {OUTPUT_NAME} [batch, {frames}, {cfg.num_joints}, {cfg.dim_out}] float32\n"
        f"  sha256 {_sha256(path)}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
