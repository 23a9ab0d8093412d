"""Inference backends: where the networks run. The pipeline only speaks roles.

``EmbeddedBackend`` runs every model in-process with onnxruntime; a Triton backend (same interface) sends the
same tensors to a Triton server. Codecs (pre/post-processing) are shared pure functions either way.

2D crops: the embedded backend runs the manifest's raw ONNX file, so it turns the uint8 crops into the
network's input in numpy (the float path, :func:`services.pose.pose2d.graph_feed`); given a served graph
(``export.prepare`` output, uint8 input) it feeds the crops as they are, like Triton.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from services.errors import ModelError
from services.pose.detect import rtmdet_decode, rtmdet_preprocess
from services.pose.families import get_family
from services.pose.lifting import LifterCodec
from services.pose.models import ModelStore, Preset, ResolvedModel
from services.pose.pose2d import Pose2DCodec, graph_feed, make_codec
from services.pose.runtime import OnnxRunner

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ModelSet:
    detector: ResolvedModel
    pose2d: ResolvedModel
    lifter: ResolvedModel

    @classmethod
    def resolve(cls, store: ModelStore, preset: Preset, *, pose2d: str = "", lifter: str = "") -> ModelSet:
        return cls(
            detector=store.resolve(preset.detector),
            pose2d=store.resolve(pose2d or preset.pose2d),
            lifter=store.resolve(lifter or preset.lifter),
        )


class PoseBackend(Protocol):
    models: ModelSet
    pose_codec: Pose2DCodec
    lifter_codec: LifterCodec

    def detect(self, image: NDArray[np.uint8], *, score_threshold: float) -> FloatArray: ...

    def pose2d(self, image: NDArray[np.uint8], boxes: FloatArray) -> FloatArray: ...

    def lift(self, kps2d_h36m: FloatArray, *, image_wh: tuple[int, int]) -> FloatArray: ...


def make_lifter_codec(family: str, *, root_relative: bool = True) -> LifterCodec:
    """The lifter codec of ``family`` (the registry's factory); ``root_relative``: the manifest's statement
    of whether the checkpoint predicts root-relative poses (False: a global trajectory)."""
    factory = get_family(family).lifter_codec
    if factory is None:
        raise ModelError(f"no lifter codec for family {family!r}")
    return factory(root_relative)


class EmbeddedBackend:
    """All three roles in-process (onnxruntime CPU)."""

    def __init__(self, models: ModelSet, *, threads: int = 2, pose_threads: int | None = None) -> None:
        """``threads``: onnxruntime intra-op threads per model; ``pose_threads`` overrides it for the 2D
        model (1 when the pipeline keeps several pose requests in flight, so they do not oversubscribe)."""
        self.models = models
        det = models.detector.manifest
        self._det_input = det.input_size
        self._detector = OnnxRunner(models.detector.path, threads=threads)
        p = models.pose2d.manifest
        self.pose_codec = make_codec(p.family, skeleton=p.skeleton, input_wh=p.input_size)
        self._pose_wire = get_family(p.family).wire
        self._pose = OnnxRunner(models.pose2d.path, threads=pose_threads or threads)
        self.lifter_codec = make_lifter_codec(
            models.lifter.manifest.family, root_relative=models.lifter.manifest.root_relative
        )
        self._lifter = OnnxRunner(models.lifter.path, threads=threads)

    def detect(self, image: NDArray[np.uint8], *, score_threshold: float) -> FloatArray:
        x, letterbox = rtmdet_preprocess(image, input_wh=self._det_input)
        dets, labels = self._detector.run({self._detector.input_names[0]: x})
        return rtmdet_decode(dets[0], labels[0], letterbox, score_threshold=score_threshold)

    def pose2d(self, image: NDArray[np.uint8], boxes: FloatArray) -> FloatArray:
        crops_u8, crops = self.pose_codec.preprocess(image, boxes)
        x = graph_feed(crops_u8, self._pose_wire, input_dtype=self._pose.input_dtypes[0])
        name = self._pose.input_names[0]
        step = self.pose_codec.max_batch or len(x)
        outs = [self._pose.run({name: x[i : i + step]}) for i in range(0, len(x), step)]
        merged = [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]
        return self.pose_codec.postprocess(merged, crops)

    def lift(self, kps2d_h36m: FloatArray, *, image_wh: tuple[int, int]) -> FloatArray:
        return self.lifter_codec.lift(kps2d_h36m, image_wh=image_wh, run=self._lifter)
