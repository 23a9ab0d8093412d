"""onnxruntime sessions for the embedded backend.

The only place that imports onnxruntime; its exceptions become :class:`services.errors.InferenceError`
or :class:`services.errors.ModelError` here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from services.errors import InferenceError, ModelError

#: onnxruntime's type strings -> numpy dtype names
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
}

try:
    import onnxruntime as ort
except ImportError:  # the runtime is an extra: gaitway[cpu] or gaitway[gpu]
    ort = None


class OnnxRunner:
    """One onnxruntime CPU session with explicit thread settings.

    ``threads`` is onnxruntime's intra-op thread count. ``spin`` keeps idle worker threads spinning, which
    lowers latency but burns the core another stage (video decoding) could use; off by default.
    """

    def __init__(self, path: Path, *, threads: int = 2, spin: bool = False) -> None:
        if ort is None:
            raise ModelError(
                "no inference runtime installed: install gaitway[cpu] (onnxruntime) or gaitway[gpu] "
                "(onnxruntime-gpu), not both"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load model {path}: {exc}") from exc
        self.path = path
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.input_shapes = [list(i.shape) for i in self._session.get_inputs()]
        #: numpy dtype names of the inputs (``float32``, ``uint8``...)
        self.input_dtypes = [_ORT_DTYPES.get(i.type, i.type) for i in self._session.get_inputs()]

    def run(self, feeds: Mapping[str, NDArray[np.generic]]) -> list[NDArray[np.float32]]:
        """Run the graph; outputs in ``self.output_names`` order."""
        try:
            return list(self._session.run(self.output_names, dict(feeds)))
        except Exception as exc:
            raise InferenceError(f"inference failed in {self.path.name}: {exc}") from exc

    def __call__(self, x: NDArray[np.generic]) -> NDArray[np.float32]:
        """Single-input, single-output convenience used by the lifter codecs."""
        return self.run({self.input_names[0]: x})[0]
