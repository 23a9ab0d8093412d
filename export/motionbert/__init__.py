"""MotionBERT (DSTformer) in torch: checkpoint loading and ONNX export for the 3D lifter."""

from export.motionbert.dstformer import FULL, LITE, PRESETS, TINY, DSTformer, DSTformerConfig, randomize_

__all__ = ["FULL", "LITE", "PRESETS", "TINY", "DSTformer", "DSTformerConfig", "randomize_"]
