"""Detector and 2D pose codecs against reference numbers (rtmlib golden vectors, models README)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from services.errors import ModelError
from services.pose.detect import rtmdet_decode, rtmdet_preprocess
from services.pose.families import get_family
from services.pose.pose2d import (
    Crops,
    MoveNetCodec,
    RTMPoseCodec,
    affine_crop,
    bbox_xyxy_to_cs,
    fix_aspect_ratio,
    graph_feed,
    network_input,
    simcc_argmax,
    warp_matrix,
)
from services.pose.runtime import OnnxRunner
from services.pose.skeletons import COCO17


@pytest.fixture(scope="module")
def golden(shared: Path) -> dict[str, np.ndarray]:
    return dict(np.load(shared / "reference/rtmpose/decode_golden.npz"))


def test_box_to_center_scale_matches_rtmlib(golden: dict[str, np.ndarray]) -> None:
    center, scale = bbox_xyxy_to_cs(golden["bboxes_xyxy"], padding=float(golden["bbox_padding"]))
    np.testing.assert_allclose(center, golden["center"], atol=1e-9)
    np.testing.assert_allclose(scale, golden["scale_padded"], atol=1e-9)
    np.testing.assert_allclose(fix_aspect_ratio(scale, aspect=0.75), golden["scale_fixed_aspect"], atol=1e-9)


def test_warp_matrices_match_rtmlib(golden: dict[str, np.ndarray]) -> None:
    center, scale = bbox_xyxy_to_cs(golden["bboxes_xyxy"])
    scale = fix_aspect_ratio(scale, aspect=0.75)
    for i in range(len(center)):
        np.testing.assert_allclose(
            warp_matrix(center[i], scale[i], (192, 256)), golden["warp_mat"][i], atol=1e-9
        )
        np.testing.assert_allclose(
            warp_matrix(center[i], scale[i], (192, 256), inv=True), golden["warp_mat_inv"][i], atol=1e-9
        )


def test_crop_and_normalisation_match_rtmlib(golden: dict[str, np.ndarray]) -> None:
    i = int(golden["affine_bbox_index"])
    center, scale = bbox_xyxy_to_cs(golden["bboxes_xyxy"][i : i + 1])
    scale = fix_aspect_ratio(scale, aspect=0.75)
    crop = affine_crop(golden["affine_src_image_bgr"], center[0], scale[0], (192, 256))
    # The golden crop was made with OpenCV 5.0; 4.x rounds a few bilinear pixels the other way.
    diff = np.abs(crop.astype(int) - golden["affine_warped_bgr"])
    assert diff.max() <= 1 and (diff > 0).mean() < 0.05
    # rtmlib normalises the image as given (its BGR frame) with the RGB means: same arithmetic as the
    # family's wire format (the numpy float path)
    wire = get_family("rtmpose").wire
    assert wire is not None and wire.mean is not None and wire.std is not None
    np.testing.assert_array_equal(wire.mean, golden["norm_mean"])
    np.testing.assert_array_equal(wire.std, golden["norm_std"])
    x = network_input(golden["affine_warped_bgr"][None], wire)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, golden["affine_model_input"], atol=1e-6)
    batch, _ = RTMPoseCodec().preprocess(golden["affine_src_image_bgr"], golden["bboxes_xyxy"][i : i + 1])
    assert batch.dtype == np.uint8 and batch.shape == (1, 256, 192, 3)  # the crop as it travels
    np.testing.assert_allclose(network_input(batch, wire), golden["affine_model_input"], atol=1 / 57.0 + 1e-6)


def test_simcc_decode_matches_rtmlib_to_1e4_px(golden: dict[str, np.ndarray]) -> None:
    locs, scores = simcc_argmax(golden["simcc_x"], golden["simcc_y"])
    np.testing.assert_array_equal(locs, golden["locs_simcc_bins"])
    np.testing.assert_allclose(scores, golden["scores_rtmlib_mean"], atol=1e-7)
    center, scale = bbox_xyxy_to_cs(golden["bboxes_xyxy"])
    crops = Crops(center=center, scale=fix_aspect_ratio(scale, aspect=0.75))
    kps = RTMPoseCodec().decode(golden["simcc_x"], golden["simcc_y"], crops)
    np.testing.assert_allclose(kps[..., :2], golden["keypoints_img"], atol=1e-4)
    valid = golden["scores_rtmlib_mean"] > 0
    np.testing.assert_allclose(
        kps[..., :2][valid], golden["keypoints_img_via_inverse_warp"][valid], atol=1e-4
    )
    # mmpose's score rule
    locs_min, scores_min = simcc_argmax(golden["simcc_x"], golden["simcc_y"], score_rule="min")
    np.testing.assert_allclose(scores_min, golden["scores_mmpose_min"], atol=1e-7)
    np.testing.assert_array_equal(locs_min, golden["locs_simcc_bins_mmpose"])
    # the pipeline-facing output hides joints the model did not place
    out = RTMPoseCodec().postprocess([golden["simcc_x"], golden["simcc_y"]], crops)
    assert np.isnan(out[~valid][:, :2]).all() and (out[~valid][:, 2] == 0).all()
    assert not valid[0, 3]  # the golden's all-negative joint


def test_rtmdet_reference_box(shared: Path) -> None:
    """models README: top box on the H36M S1 frame is (407.1, 278.0, 528.9, 643.3), score 0.80."""
    path = next((shared / "data/h36m-samples/S1").rglob("S1_Directions_1.54138969_000001.jpg"))
    image = cv2.imread(str(path))[..., ::-1].copy()
    runner = OnnxRunner(shared / "models/rtmdet-nano-person/end2end.onnx")
    x, letterbox = rtmdet_preprocess(image)
    dets, labels = runner.run({"input": x})
    boxes = rtmdet_decode(dets[0], labels[0], letterbox, score_threshold=0.3)
    np.testing.assert_allclose(boxes[0, :4], [407.1, 278.0, 528.9, 643.3], atol=0.15)
    assert boxes[0, 4] == pytest.approx(0.80, abs=0.01)


def test_movenet_decoding_maps_crop_coordinates_back() -> None:
    """A keypoint at crop-relative (y, x) lands where the inverse crop transform puts it."""
    codec = MoveNetCodec(input_wh=(256, 256))
    boxes = np.array([[100.0, 50.0, 200.0, 350.0]])
    _, crops = codec.preprocess(np.zeros((400, 300, 3), np.uint8), boxes)
    out = np.zeros((1, 1, 17, 3), np.float32)
    out[0, 0, :, 0] = 0.5  # y at crop centre
    out[0, 0, :, 1] = 0.25  # x a quarter across
    out[0, 0, :, 2] = 0.9
    kps = codec.postprocess([out], crops)
    side = 300 * 1.25  # box height x padding; square crop
    np.testing.assert_allclose(kps[0, :, 0], 150 - side / 4, atol=1e-9)
    np.testing.assert_allclose(kps[0, :, 1], 200, atol=1e-9)
    np.testing.assert_allclose(kps[0, :, 2], 0.9, atol=1e-6)


def test_rtmpose_random_graph_runs_batched(shared: Path) -> None:
    """Plumbing only (random weights): the official signature, dynamic batch, decoded shape."""
    runner = OnnxRunner(shared / "reference/rtmpose/rtmpose-m_coco17_random.onnx")
    assert runner.input_names == ["input"] and runner.output_names == ["simcc_x", "simcc_y"]
    codec = RTMPoseCodec(skeleton=COCO17)
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 200, 400], [300, 50, 500, 470], [0, 0, 640, 480]], float)
    crops_u8, crops = codec.preprocess(image, boxes)
    wire = get_family("rtmpose").wire
    assert wire is not None
    outs = runner.run({"input": network_input(crops_u8, wire)})
    assert outs[0].shape == (3, 17, 384) and outs[1].shape == (3, 17, 512)
    ref = np.load(shared / "reference/rtmpose/rtmpose-m_coco17_random_io.npz")
    got = runner.run({"input": ref["input"]})
    np.testing.assert_allclose(got[0], ref["simcc_x"], atol=1e-9, rtol=1e-3)
    assert codec.postprocess(outs, crops).shape == (3, 17, 3)


def test_graph_feed_follows_the_graph_input_dtype() -> None:
    """A served graph (uint8 input) gets the crops as they are; a raw graph gets them normalised by the
    family's wire format (the float path); any other dtype is a clear error."""
    crops = np.random.default_rng(4).integers(0, 256, (2, 256, 192, 3), dtype=np.uint8)
    rtmpose, movenet = get_family("rtmpose").wire, get_family("movenet").wire
    assert rtmpose is not None and movenet is not None
    assert graph_feed(crops, rtmpose, input_dtype="uint8") is crops
    np.testing.assert_array_equal(
        graph_feed(crops, rtmpose, input_dtype="float32"), network_input(crops, rtmpose)
    )
    fed = graph_feed(crops, movenet, input_dtype="int32")
    assert fed.dtype == np.int32 and fed.shape == crops.shape
    assert graph_feed(crops, None, input_dtype="float32") is crops  # a family without a wire format
    with pytest.raises(ModelError, match="takes float16"):
        graph_feed(crops, rtmpose, input_dtype="float16")
