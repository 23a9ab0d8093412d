"""``gaitway evaluate``: accuracy of the pose models and the kinematics on reference data.

    gaitway evaluate h36m [--data DIR]                    3D from ground-truth 2D and from detected 2D (mm)
    gaitway evaluate coco [--data DIR]                    2D PCK@0.2 / PCK@0.1 (box size) and mean OKS
    gaitway evaluate rbds --run RUN.c3d --static S.c3d    mocap -> virtual side camera -> lifter, and the
                                                          mocap running metrics next to the published values
    gaitway evaluate views [--run R --static S ...]       mocap -> yawed virtual cameras: 2D vs lifted 3D
                           [--write-table]                angle errors by yaw (services/kinematics/view.py)
    gaitway evaluate mocap RUN [--static S]               any lab's marker trial (C3D, Qualisys TSV, RBDS
                           [--video V ...] [--offset S]   text): Gaitway's metrics and angles against the
                                                          lab's own model outputs and cadence truth, and
                                                          videos of the run against the markers

Every sub-command takes ``--preset``, ``--pose2d``, ``--lifter``, ``--models-dir`` and ``--threads`` like
``gaitway analyze``, prints a table and, with ``--json FILE``, writes the numbers (NaN as null). The default
data folders are ``<shared>/data/h36m-samples`` and ``<shared>/data/coco-samples`` (``GAITWAY_SHARED_DIR``);
``views`` defaults to the RBDS001 and RBDS032 trials in ``<shared>/data/mocap-running-rbds``.
Errors are :class:`services.errors.GaitwayError` subclasses; the CLI prints them as one line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.argtypes import image_size, positive_float, positive_int
from services.errors import GaitwayError, InputError, NoValidDataError

if TYPE_CHECKING:  # the parser is built for every `gaitway` command: the heavy modules load in the commands
    import numpy as np
    from numpy.typing import NDArray

    from services.kinematics.labvalidation import MocapTrial
    from services.kinematics.model import KinematicsResult
    from services.pose.backends import EmbeddedBackend
    from services.pose.lifting import LifterCodec
    from services.pose.models import ModelStore, ResolvedModel
    from services.pose.runtime import OnnxRunner
    from services.settings import Settings

    FloatArray = NDArray[np.float64]

#: Published RBDS001 values at 3.5 m/s (Fukuchi et al. 2017; shared/data/mocap-running-rbds/NOTES.md: the
#: processed file's knee angles, the force plate's step rate and contact time)
RBDS001_T35 = {
    "cadence_spm": {"both": 171.0},
    "contact_time_s": {"both": 0.227},
    "knee_flexion_ic_deg": {"right": 16.3, "left": 12.0},
    "knee_flexion_peak_stance_deg": {"right": 42.2, "left": 42.4},
}

DETECTION_SCORE = 0.3
MATCH_IOU = 0.3

#: the trials ``evaluate views`` sweeps by default (run, static), in <shared>/data/mocap-running-rbds
RBDS_VIEW_TRIALS = (
    ("RBDS001runT35.c3d", "RBDS001static.c3d"),
    ("RBDS032runT35markers.txt", "RBDS032static.txt"),
)


# ----------------------------------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``evaluate`` and its sub-commands (``h36m``, ``coco``, ``rbds``, ``views``, ``mocap``) to the
    ``gaitway`` parser.
    Defaults that come from the settings (preset, models dir, shared data folder) are resolved in
    :func:`run`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--preset", default=None, help="model preset (default: GAITWAY_PRESET, thunder)")
    common.add_argument("--pose2d", default="", help="override the preset's 2D pose model")
    common.add_argument("--lifter", default="", help="override the preset's lifter model")
    common.add_argument("--models-dir", default=None, help="model search path (os.pathsep list)")
    common.add_argument("--threads", type=positive_int, default=None, help="onnxruntime threads per model")
    common.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the numbers here")

    ev = subparsers.add_parser("evaluate", help="accuracy on reference data (H36M, COCO, motion capture)")
    sub = ev.add_subparsers(dest="eval_command", required=True)

    h = sub.add_parser("h36m", parents=[common], help="3D MPJPE / PA-MPJPE / N-MPJPE on the H36M samples")
    h.add_argument("--data", type=Path, default=None, help="h36m-samples folder (default: shared data)")

    c = sub.add_parser("coco", parents=[common], help="2D PCK and OKS on the COCO samples")
    c.add_argument("--data", type=Path, default=None, help="coco-samples folder (default: shared data)")

    r = sub.add_parser(
        "rbds", parents=[common], help="RBDS mocap: lifter on a virtual side camera, metrics vs published"
    )
    r.add_argument("--run", type=Path, required=True, help="running trial (.c3d, RBDS .txt or QTM .tsv)")
    r.add_argument("--static", type=Path, required=True, help="the subject's static trial")
    r.add_argument("--distance-m", type=positive_float, default=5.0, help="camera distance (default 5 m)")
    r.add_argument("--focal-px", type=positive_float, default=1500.0, help="focal length (default 1500 px)")
    r.add_argument(
        "--image-size", type=image_size, default=(1920, 1080), help="WIDTHxHEIGHT (default 1920x1080)"
    )
    r.add_argument("--side", choices=("left", "right"), default="left", help="runner's side the camera sees")
    r.add_argument("--max-lag-s", type=positive_float, default=0.2, help="largest time lag searched")
    r.add_argument("--lowpass-hz", type=positive_float, default=None, help="low-pass the mocap joints")
    r.add_argument("--treadmill-speed", type=positive_float, default=None, help="belt speed in m/s")
    r.add_argument("--height", type=positive_float, default=None, help="runner height in metres")

    v = sub.add_parser(
        "views", parents=[common], help="RBDS mocap on yawed virtual cameras: 2D vs lifted 3D angle errors"
    )
    v.add_argument("--run", type=Path, action="append", default=None, help="running trial (repeatable)")
    v.add_argument("--static", type=Path, action="append", default=None, help="its static trial (repeatable)")
    v.add_argument(
        "--frame-step", type=positive_int, default=None, help="use every Nth mocap frame (default 3)"
    )
    v.add_argument(
        "--write-table", action="store_true", help="regenerate view_errors.json (the policy's table)"
    )

    m = sub.add_parser(
        "mocap",
        parents=[common],
        help="any lab's motion capture: Gaitway vs the lab's model outputs and cadence, videos vs markers",
    )
    m.add_argument("run", type=Path, help="running trial: .c3d, Qualisys .tsv or RBDS .txt")
    m.add_argument("--static", type=Path, default=None, help="the subject's static calibration trial")
    m.add_argument(
        "--video", type=Path, nargs="+", action="extend", default=None, help="videos of the same run"
    )
    m.add_argument(
        "--offset",
        type=float,
        action="append",
        default=None,
        metavar="S",
        help="mocap time (s) at the video's first frame (one, or one per video); default: found by "
        "cross-correlating the knee angles",
    )
    m.add_argument("--out", type=Path, default=None, help="keep the video analyses in this folder")
    m.add_argument("--height", type=positive_float, default=None, help="runner height in metres (video)")
    m.add_argument("--treadmill-speed", type=positive_float, default=None, help="belt speed in m/s")
    m.add_argument("--lowpass-hz", type=positive_float, default=None, help="low-pass the joint centres")
    m.add_argument(
        "--hjc", choices=("harrington", "bell"), default="harrington", help="hip joint-centre regression"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one ``evaluate`` sub-command: print its table, write ``--json`` when asked; the exit code."""
    if args.eval_command == "h36m":
        result = evaluate_h36m(args, settings)
        _print_h36m(result)
    elif args.eval_command == "coco":
        result = evaluate_coco(args, settings)
        _print_coco(result)
    elif args.eval_command == "rbds":
        result = evaluate_rbds(args, settings)
        _print_rbds(result)
    elif args.eval_command == "mocap":
        result = evaluate_mocap(args, settings)
        _print_mocap(result)
    elif args.eval_command == "views":
        from services.kinematics.view import TABLE_PATH
        from services.kinematics.view_validation import table_json

        result = evaluate_views(args, settings)
        _print_views(result)
        if args.write_table:
            _write_text(TABLE_PATH, table_json(result))
            sys.stdout.write(f"table written to {TABLE_PATH}\n")
    else:  # pragma: no cover - argparse enforces the choices
        raise InputError(f"unknown evaluate command {args.eval_command!r}")
    if args.json is not None:
        _write_json(args.json, result)
        sys.stdout.write(f"numbers written to {args.json}\n")
    return 0


# ----------------------------------------------------------------------------------------------------
# Shared plumbing
# ----------------------------------------------------------------------------------------------------


def _store(args: argparse.Namespace, settings: Settings) -> ModelStore:
    from services.pose.models import ModelStore

    models_dir = settings.models_dir if args.models_dir is None else args.models_dir
    return ModelStore(settings.model_copy(update={"models_dir": models_dir}).model_search_path())


def _preset_name(args: argparse.Namespace, settings: Settings) -> str:
    return str(args.preset or settings.preset)


def _threads(args: argparse.Namespace, settings: Settings) -> int:
    return int(args.threads or settings.ort_threads)


def _data_dir(args: argparse.Namespace, settings: Settings, name: str) -> Path:
    root = args.data if args.data is not None else settings.shared_dir / "data" / name
    if not root.is_dir():
        raise InputError(f"data folder not found: {root} (pass --data or set GAITWAY_SHARED_DIR)")
    return Path(root)


def _backend(args: argparse.Namespace, settings: Settings) -> EmbeddedBackend:
    from services.pose.backends import EmbeddedBackend, ModelSet
    from services.pose.models import get_preset

    preset = get_preset(_preset_name(args, settings))
    models = ModelSet.resolve(_store(args, settings), preset, pose2d=args.pose2d, lifter=args.lifter)
    return EmbeddedBackend(models, threads=_threads(args, settings))


def _model_info(*models: ResolvedModel) -> dict[str, dict[str, Any]]:
    return {
        m.manifest.role: {
            "name": m.manifest.name,
            "sha256": m.sha256,
            "random_weights": m.manifest.random_weights,
        }
        for m in models
    }


def _random_warning(info: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"{v['name']} has RANDOM WEIGHTS: its numbers are meaningless (plumbing only)"
        for v in info.values()
        if v["random_weights"]
    ]


def _rgb(path: Path) -> NDArray[np.uint8]:
    import cv2
    import numpy as np

    image = cv2.imread(str(path))
    if image is None:
        raise InputError(f"{path}: cannot read the image")
    return np.ascontiguousarray(image[..., ::-1])


def _write_json(path: Path, result: dict[str, Any]) -> None:
    from services.plain import to_plain

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(to_plain(result), indent=2, allow_nan=False) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _fmt(value: float | None, spec: str = ".1f") -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return format(value, spec)


# ----------------------------------------------------------------------------------------------------
# h36m
# ----------------------------------------------------------------------------------------------------


def evaluate_h36m(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """3D errors (mm) on the H36M samples from ground-truth 2D and from our detected 2D (detector + 2D model +
    lifter), root-aligned, on SemGCN's 16 joints (H36M-17 without the neck/nose)."""
    import pickle
    import re

    import numpy as np

    from services.kinematics.evaluate import evaluate_3d
    from services.pose.lifting import SEMGCN_JOINTS, to_h36m17
    from services.pose.skeletons import H36M17

    root = _data_dir(args, settings, "h36m-samples")
    try:
        data = np.load(root / "test_h36m_body3d.npz")
        with (root / "cameras.pkl").open("rb") as f:
            cameras = pickle.load(f, encoding="latin1")
        names = [str(n) for n in data["imgname"]]
        part = np.asarray(data["part"], np.float64)
        s3d = np.asarray(data["S"], np.float64)[..., :3]
    except (OSError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        raise InputError(f"{root}: not the h36m-samples layout ({exc})") from None
    backend = _backend(args, settings)
    gt = s3d - s3d[:, :1]
    pred_gt2d, pred_det = [], []
    detected = 0
    for i, name in enumerate(names):
        m = re.match(r"(S\d+)/[^/]*\.(\d+)/", name)
        if m is None or (m.group(1), m.group(2)) not in cameras:
            raise InputError(f"{root}: no camera for image {name}")
        cam = cameras[(m.group(1), m.group(2))]
        wh = (int(cam["w"]), int(cam["h"]))
        pred_gt2d.append(backend.lift(part[i : i + 1], image_wh=wh)[0])
        image = _rgb(root / name)
        dets = backend.detect(image, score_threshold=DETECTION_SCORE)
        if len(dets):
            detected += 1
            kps = backend.pose2d(image, dets[:1, :4])
            pred_det.append(
                backend.lift(
                    to_h36m17(kps, backend.pose_codec.skeleton), image_wh=(image.shape[1], image.shape[0])
                )[0]
            )
        else:
            pred_det.append(np.full((17, 3), np.nan))
    joints = list(SEMGCN_JOINTS)
    joint_names = [H36M17.joints[j] for j in joints]
    gt_mm = gt[:, joints] * 1000.0
    models = backend.models
    info = _model_info(models.detector, models.pose2d, models.lifter)
    metric = bool(getattr(backend.lifter_codec, "metric", True))
    notes = _random_warning(info)
    if not metric:
        notes.append("the lifter's output is not metric: MPJPE is in model units x 1000; use PA-/N-MPJPE")
    result: dict[str, Any] = {
        "command": "h36m",
        "data": str(root),
        "preset": _preset_name(args, settings),
        "models": info,
        "units": "mm",
        "n_images": len(names),
        "n_detected": detected,
        "gt2d": evaluate_3d(np.array(pred_gt2d)[:, joints] * 1000.0, gt_mm, joint_names),
        "notes": notes,
    }
    try:
        result["detected2d"] = evaluate_3d(np.array(pred_det)[:, joints] * 1000.0, gt_mm, joint_names)
    except NoValidDataError:
        result["detected2d"] = None
        notes.append("no pose could be lifted from the detected 2D")
    return result


def _print_h36m(r: dict[str, Any]) -> None:
    w = sys.stdout.write
    m = r["models"]
    w(
        f"H36M samples: {r['n_images']} images, {r['data']}\n"
        f"models: {m['detector']['name']} + {m['pose2d']['name']} + {m['lifter']['name']}"
        f" (preset {r['preset']})\n\n"
    )
    rows = [("ground-truth 2D", r["gt2d"]), ("detected 2D", r["detected2d"])]
    w(f"{'3D error (mm), root-aligned':<30}{'MPJPE':>8}{'PA-MPJPE':>10}{'N-MPJPE':>9}{'poses':>7}\n")
    for label, e in rows:
        if e is None:
            w(f"{label:<30}{'n/a':>8}{'n/a':>10}{'n/a':>9}{0:>7}\n")
            continue
        w(f"{label:<30}{e['mpjpe']:>8.1f}{e['pa_mpjpe']:>10.1f}{e['n_mpjpe']:>9.1f}{e['n_poses']:>7}\n")
    w(f"\n{'per joint (mm)':<30}{'GT 2D':>8}{'detected':>10}\n")
    for name in r["gt2d"]["joints"]:
        det = r["detected2d"]["per_joint"][name] if r["detected2d"] else math.nan
        w(f"  {name:<28}{r['gt2d']['per_joint'][name]:>8.1f}{_fmt(det):>10}\n")
    for note in r["notes"]:
        w(f"note: {note}\n")


# ----------------------------------------------------------------------------------------------------
# coco
# ----------------------------------------------------------------------------------------------------


def evaluate_coco(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """2D accuracy on the annotated COCO people with >= 5 labelled keypoints: each person cropped from the
    ground-truth box and from the detector's box that overlaps it most (IoU > 0.3, else a miss)."""
    import numpy as np

    from services.pose.metrics import oks, pck
    from services.pose.tracking import iou

    root = _data_dir(args, settings, "coco-samples")
    try:
        doc = json.loads((root / "test_coco.json").read_text())
        images = {i["id"]: i for i in doc["images"]}
        anns = [a for a in doc["annotations"] if a["num_keypoints"] >= 5]
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{root}: not the coco-samples layout ({exc})") from None
    if not anns:
        raise NoValidDataError(f"{root}: no person with >= 5 labelled keypoints")
    backend = _backend(args, settings)
    pred_gt_box, pred_det_box, gt, vis, size, area = [], [], [], [], [], []
    detections: dict[int, FloatArray] = {}
    loaded: dict[int, NDArray[np.uint8]] = {}
    matched = 0
    for ann in anns:
        image_id = ann["image_id"]
        if image_id not in loaded:
            loaded[image_id] = _rgb(root / images[image_id]["file_name"])
            detections[image_id] = backend.detect(loaded[image_id], score_threshold=DETECTION_SCORE)
        image, dets = loaded[image_id], detections[image_id]
        x, y, bw, bh = ann["bbox"]
        box = np.array([x, y, x + bw, y + bh], np.float64)
        kps = np.array(ann["keypoints"], np.float64).reshape(17, 3)
        pred_gt_box.append(backend.pose2d(image, box[None])[0][:17, :2])
        overlap = iou(box, dets[:, :4]) if len(dets) else np.zeros(0)
        if len(overlap) and overlap.max() > MATCH_IOU:
            matched += 1
            pred_det_box.append(backend.pose2d(image, dets[[int(np.argmax(overlap))], :4])[0][:17, :2])
        else:
            pred_det_box.append(np.full((17, 2), np.nan))
        gt.append(kps[:, :2])
        vis.append(kps[:, 2] > 0)
        size.append(max(bw, bh))
        area.append(ann["area"])

    def scores(pred: list[FloatArray]) -> dict[str, float]:
        return {
            "pck_0.2": pck(pred, gt, vis, size, alpha=0.2),
            "pck_0.1": pck(pred, gt, vis, size, alpha=0.1),
            "oks_mean": float(oks(pred, gt, vis, area).mean()),
        }

    models = backend.models
    info = _model_info(models.detector, models.pose2d)
    return {
        "command": "coco",
        "data": str(root),
        "preset": _preset_name(args, settings),
        "models": info,
        "n_people": len(anns),
        "n_keypoints": int(np.sum(vis)),
        "n_detector_matches": matched,
        "pck_norm": "longer side of the ground-truth box",
        "gt_boxes": scores(pred_gt_box),
        "detector_boxes": scores(pred_det_box),
        "notes": _random_warning(info),
    }


def _print_coco(r: dict[str, Any]) -> None:
    w = sys.stdout.write
    m = r["models"]
    w(
        f"COCO samples: {r['n_people']} people (>= 5 keypoints), {r['n_keypoints']} labelled keypoints, "
        f"{r['data']}\nmodels: {m['detector']['name']} + {m['pose2d']['name']} (preset {r['preset']})\n\n"
    )
    w(f"{'2D accuracy (PCK: box size)':<30}{'PCK@0.2':>9}{'PCK@0.1':>9}{'mean OKS':>10}\n")
    for label, key in (("ground-truth boxes", "gt_boxes"), ("detector boxes", "detector_boxes")):
        e = r[key]
        w(f"{label:<30}{e['pck_0.2']:>9.3f}{e['pck_0.1']:>9.3f}{e['oks_mean']:>10.3f}\n")
    w(f"detector matched {r['n_detector_matches']}/{r['n_people']} people (IoU > {MATCH_IOU})\n")
    for note in r["notes"]:
        w(f"note: {note}\n")


# ----------------------------------------------------------------------------------------------------
# rbds
# ----------------------------------------------------------------------------------------------------


def _lifter(args: argparse.Namespace, settings: Settings) -> tuple[ResolvedModel, LifterCodec, OnnxRunner]:
    from services.pose.backends import make_lifter_codec
    from services.pose.models import get_preset
    from services.pose.runtime import OnnxRunner

    preset = get_preset(_preset_name(args, settings))
    model = _store(args, settings).resolve(args.lifter or preset.lifter)
    codec = make_lifter_codec(model.manifest.family, root_relative=model.manifest.root_relative)
    return model, codec, OnnxRunner(model.path, threads=_threads(args, settings))


def _metric_mean(kin: KinematicsResult | None, metric: str, side: str) -> float:
    """Mean of a per-step metric over both sides (``side == "both"``) or one side; NaN when absent."""
    if kin is None:
        return math.nan
    summary = kin.summary if side == "both" else kin.summary_by_side.get(side, {})
    s = summary.get(metric)
    return float(s.mean) if s is not None and s.mean is not None else math.nan


def evaluate_rbds(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """RBDS mocap trial: joint centres -> virtual side camera -> H36M-17 2D -> lifter; 3D error on the
    legs (camera axes, root-aligned), knee-angle RMSE against the mocap angles, and the mocap running
    metrics next to the published values."""
    import numpy as np

    from services.kinematics.angles import joint_angles
    from services.kinematics.evaluate import (
        H36M_LEG_JOINTS,
        angle_rmse,
        common_lag,
        estimate_forward,
        evaluate_3d,
        h36m17_from_legs,
        side_camera,
    )
    from services.kinematics.metric_defs import METRIC_DEFS
    from services.kinematics.metrics import analyze_motion
    from services.kinematics.mocap import rbds_motion, read_markers
    from services.kinematics.model import motion_from_h36m
    from services.pose.skeletons import H36M17

    lifter_model, codec, runner = _lifter(args, settings)
    run_m, static_m = read_markers(args.run), read_markers(args.static)
    mocap = rbds_motion(
        run_m,
        static_m,
        height_m=args.height,
        treadmill_speed_mps=args.treadmill_speed,
        lowpass_hz=args.lowpass_hz,
    )
    up = np.asarray(mocap.up, np.float64)
    forward = estimate_forward(mocap.joints, up)
    lab17, synthetic = h36m17_from_legs(mocap.joints, up, forward)
    pelvis = lab17[:, 0]
    pelvis = pelvis[np.isfinite(pelvis).all(axis=-1)]
    if not len(pelvis):
        raise NoValidDataError(f"{args.run}: the pelvis is never reconstructed")
    cam = side_camera(
        up,
        forward,
        pelvis.mean(axis=0),
        distance_m=args.distance_m,
        focal_px=args.focal_px,
        image_wh=args.image_size,
        side=args.side,
    )
    uv = cam.project(lab17)
    kps = np.concatenate([uv, np.ones((*uv.shape[:-1], 1))], axis=-1)
    pred = codec.lift(kps, image_wh=args.image_size, run=runner)
    gt = cam.to_camera(lab17)
    gt = gt - gt[:, :1]
    legs = list(H36M_LEG_JOINTS)
    leg_names = [H36M17.joints[j] for j in legs]
    err3d = evaluate_3d(pred[:, legs] * 1000.0, gt[:, legs] * 1000.0, leg_names)

    lifted = motion_from_h36m(mocap.t, pred, metric=bool(getattr(codec, "metric", True)))
    ang_pred, ang_ref = joint_angles(lifted), joint_angles(mocap)
    keys = [
        k
        for k in sorted(set(ang_pred) & set(ang_ref))
        if ("knee_flexion" in k or "thigh_angle" in k)
        and np.isfinite(ang_pred[k]).any()
        and np.isfinite(ang_ref[k]).any()
    ]
    sel_pred, sel_ref = {k: ang_pred[k] for k in keys}, {k: ang_ref[k] for k in keys}
    lag = common_lag(sel_pred, sel_ref, t_pred=lifted.t, t_ref=mocap.t, max_lag_s=args.max_lag_s)
    rmse = angle_rmse(sel_pred, sel_ref, t_pred=lifted.t, t_ref=mocap.t, lag_s=lag)

    kin = analyze_motion(mocap)
    notes = _random_warning(_model_info(lifter_model))
    try:
        kin_lifted: KinematicsResult | None = analyze_motion(lifted)
    except GaitwayError as exc:
        kin_lifted = None
        notes.append(f"running metrics of the lifted 3D not computed [{exc.code}]: {exc}")
    validation: dict[str, dict[str, dict[str, float]]] = {}
    for metric, published in RBDS001_T35.items():
        validation[metric] = {
            side: {
                "measured": _metric_mean(kin, metric, side),
                "lifted": _metric_mean(kin_lifted, metric, side),
                "published": value,
            }
            for side, value in published.items()
        }
    for d in METRIC_DEFS:  # every other metric: measured on the mocap (no published value to compare)
        if d.name not in validation and kin.summary[d.name].n:
            validation[d.name] = {
                side: {
                    "measured": _metric_mean(kin, d.name, side),
                    "lifted": _metric_mean(kin_lifted, d.name, side),
                    "published": math.nan,
                }
                for side in ("left", "right")
            }
    by_side = kin.summary_by_side
    n_steps = {
        side: int(by_side[side]["cadence_spm"].n) if "cadence_spm" in by_side.get(side, {}) else 0
        for side in ("left", "right")
    }
    if synthetic:
        notes.append(
            "the markers have no upper body: the lifter's input is incomplete (joints "
            + ", ".join(H36M17.joints[j] for j in synthetic)
            + " are a synthetic rigid upper body), so only the legs are evaluated"
        )
    notes.extend(kin.flags)
    return {
        "command": "rbds",
        "run": str(args.run),
        "static": str(args.static),
        "lifter": _model_info(lifter_model)["lifter"],
        "frames": len(mocap.t),
        "rate_hz": float(run_m.rate_hz),
        "camera": {
            "side": args.side,
            "distance_m": args.distance_m,
            "focal_px": args.focal_px,
            "image_wh": list(args.image_size),
            "centre_m": cam.centre.tolist(),
            "forward": forward.tolist(),
        },
        "synthetic_joints": [H36M17.joints[j] for j in synthetic],
        "legs_3d_mm": err3d,
        "angle_lag_s": lag,
        "angle_rmse_deg": rmse,
        "mocap_metrics": validation,
        "mocap_steps": n_steps,
        "published_reference": "RBDS001 at 3.5 m/s (Fukuchi et al. 2017, PeerJ 5:e3298; "
        "171 steps/min from the force plate)",
        "notes": notes,
    }


def _print_rbds(r: dict[str, Any]) -> None:
    w = sys.stdout.write
    cam = r["camera"]
    w(
        f"RBDS trial {r['run']} ({r['frames']} frames at {r['rate_hz']:g} Hz), static {r['static']}\n"
        f"virtual camera on the runner's {cam['side']}, {cam['distance_m']:g} m, f = {cam['focal_px']:g} px, "
        f"{cam['image_wh'][0]}x{cam['image_wh'][1]}; lifter {r['lifter']['name']}\n\n"
    )
    e = r["legs_3d_mm"]
    w(f"{'3D legs (mm), root-aligned':<30}{'MPJPE':>8}{'PA-MPJPE':>10}{'N-MPJPE':>9}{'poses':>7}\n")
    w(f"{'lifted vs mocap':<30}{e['mpjpe']:>8.1f}{e['pa_mpjpe']:>10.1f}{e['n_mpjpe']:>9.1f}")
    w(f"{e['n_poses']:>7}\n")
    for name, v in e["per_joint"].items():
        w(f"  {name:<28}{v:>8.1f}\n")
    lag_ms = r["angle_lag_s"] * 1000
    w(f"\n{'angle RMSE (deg), lifted vs mocap':<40}{'RMSE':>8}   (time lag {lag_ms:.1f} ms)\n")
    for k, v in r["angle_rmse_deg"].items():
        w(f"  {k:<38}{_fmt(v):>8}\n")
    w(f"\n{'running metrics (step means)':<40}{'mocap':>8}{'lifted':>8}{'published':>11}\n")
    for metric, row in r["mocap_metrics"].items():
        for side, v in row.items():
            label = metric if side == "both" else f"{metric} ({side})"
            spec = ".3f" if abs(v["measured"]) < 5 else ".1f"
            cells = (_fmt(v["measured"], spec), _fmt(v["lifted"], spec), _fmt(v["published"], spec))
            w(f"  {label:<38}{cells[0]:>8}{cells[1]:>8}{cells[2]:>11}\n")
    w(f"steps: left {r['mocap_steps']['left']}, right {r['mocap_steps']['right']}; "
      f"published: {r['published_reference']}\n")  # fmt: skip
    for note in r["notes"]:
        w(f"note: {note}\n")


# ----------------------------------------------------------------------------------------------------
# views
# ----------------------------------------------------------------------------------------------------


def _view_trials(args: argparse.Namespace, settings: Settings) -> list[tuple[Path, Path]]:
    runs, statics = args.run or [], args.static or []
    if len(runs) != len(statics):
        raise InputError(f"give one --static per --run ({len(runs)} runs, {len(statics)} static trials)")
    if runs:
        return list(zip(runs, statics, strict=True))
    root = settings.shared_dir / "data" / "mocap-running-rbds"
    pairs = [(root / run, root / static) for run, static in RBDS_VIEW_TRIALS]
    missing = [str(p) for pair in pairs for p in pair if not p.is_file()]
    if missing:
        raise InputError(f"RBDS trials not found: {', '.join(missing)} (pass --run/--static or set "
                         "GAITWAY_SHARED_DIR)")  # fmt: skip
    return pairs


def evaluate_views(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """RBDS trials seen by virtual cameras yawed about the runner at several framings: knee and thigh angle
    RMSE per source (2D, yaw-corrected 2D, lifted 3D) and the yaw estimate's error per case, the table per
    ``|yaw|`` bin and the policy's choice (:func:`services.kinematics.view_validation.view_sweep`). The
    result is the ``view_errors.json`` document."""
    import re

    from services.kinematics.mocap import rbds_motion, read_markers
    from services.kinematics.view_validation import DEFAULT_FRAME_STEP, prepare_trial, view_sweep

    frame_step = args.frame_step or DEFAULT_FRAME_STEP
    lifter_model, codec, runner = _lifter(args, settings)
    trials = []
    for run_path, static_path in _view_trials(args, settings):
        motion = rbds_motion(read_markers(run_path), read_markers(static_path))
        m = re.search(r"RBDS\d+", run_path.name)
        subject = m.group(0) if m else run_path.stem
        trials.append(
            prepare_trial(motion, subject, (run_path.name, static_path.name), frame_step=frame_step)
        )

    def lift(kps: FloatArray, image_wh: tuple[int, int]) -> FloatArray:
        return codec.lift(kps, image_wh=image_wh, run=runner)

    info = _model_info(lifter_model)["lifter"]
    lifter = {"family": lifter_model.manifest.family, "name": info["name"], "sha256": info["sha256"]}
    doc = view_sweep(trials, lift=lift, lifter=lifter, frame_step=frame_step)
    notes = _random_warning(_model_info(lifter_model))
    if notes and args.write_table:
        raise InputError("refusing to write the view table from a lifter with random weights")
    doc["method"]["notes"] = notes
    return doc


def _print_views(r: dict[str, Any]) -> None:
    from services.kinematics.view import ANGLE_KEYS, MAX_RMSE_DEG, ViewErrorTable, withhold_tolerance_deg

    w = sys.stdout.write
    method = r["method"]
    lifter = method["lifter"] or {}
    family = lifter.get("family", "")
    trials = ", ".join(f"{t['subject']} ({' + '.join(t['files'])})" for t in method["trials"])
    w(
        f"camera views on motion capture: {trials}; every {method['frame_step']} frames\n"
        f"lifter {lifter.get('name', 'none')} ({family}); yaw prior {method['yaw_prior']['name']}\n"
        "angles: knee flexion and THIGH angle (thigh vs vertical, sagittal) - not hip flexion: the mocap\n"
        "has no upper body; RMSE in degrees against the mocap's 3D angles, both sides pooled\n\n"
    )
    src = ("2d", "2d_corrected", "3d")
    cols = "".join(f"{s:>7}" for s in ("2d", "2d_cor", "3d"))
    w(f"{'':<28}|{'knee flexion RMSE':^21}|{'thigh angle RMSE':^21}|{'yaw estimate (deg)':^27}|\n")
    w(f"{'subject':<9}{'framing':<14}{'yaw':>5}|{cols}|{cols}|{'clip':>7}{'err':>7}{'steps':>13}| policy\n")
    for c in r["cases"]:
        rmse = c["rmse_deg"]
        knee = "".join(f"{_fmt(rmse.get(s, {}).get('knee_flexion')):>7}" for s in src)
        thigh = "".join(f"{_fmt(rmse.get(s, {}).get('thigh_angle')):>7}" for s in src)
        step = f"{_fmt(c['step_yaw_est_min_deg'], '+.0f')}..{_fmt(c['step_yaw_est_max_deg'], '+.0f')}"
        w(
            f"{c['subject']:<9}{c['framing']:<14}{c['yaw_deg']:>+5.0f}|{knee}|{thigh}|"
            f"{_fmt(c['yaw_est_deg'], '+.1f'):>7}{_fmt(c['yaw_err_deg'], '+.1f'):>7}{step:>13}| "
            f"{c['policy'] or 'withheld'}\n"
        )
    half = r["bin_half_width_deg"]
    w(f"\nper |yaw| bin (+-{half:g} deg): RMS over cases of the RMSE (deg), knee / thigh\n")
    blocks = dict(r["sources"])
    for name, blk in r["lifters"].items():
        blocks[f"3d {name}"] = blk
    w(f"{'|yaw|':>6}{'n':>4}" + "".join(f"{s:>16}" for s in blocks) + f"{'yaw err med/max':>18}\n")
    for i, centre in enumerate(r["bins_deg"]):
        cells = "".join(
            f"{_fmt(b['rmse_deg']['knee_flexion'][i]) + ' / ' + _fmt(b['rmse_deg']['thigh_angle'][i]):>16}"
            for b in blocks.values()
        )
        e = r["yaw_abs_error"][i]
        n = next(iter(blocks.values()))["n"][i] if blocks else 0
        w(f"{centre:>6g}{n:>4}{cells}{_fmt(e['clip_median_deg']) + ' / ' + _fmt(e['clip_max_deg']):>18}\n")
    table = ViewErrorTable.from_dict(r)
    tol = withhold_tolerance_deg(family, table=table)
    w(
        f"\npolicy: angles withheld where |yaw| + 1 SD of its estimate exceeds {tol:g} deg (beyond it the "
        f"best source's RMSE exceeds {MAX_RMSE_DEG:g} deg for {' or '.join(ANGLE_KEYS)}, or the sweep ends)\n"
    )
    for note in method.get("notes", []):
        w(f"note: {note}\n")


# ----------------------------------------------------------------------------------------------------
# mocap
# ----------------------------------------------------------------------------------------------------


def _offsets(args: argparse.Namespace, videos: list[Path]) -> list[float | None]:
    given = args.offset or []
    if not given:
        return [None] * len(videos)
    if not videos:
        raise InputError("--offset needs --video")
    if len(given) == 1:
        return [given[0]] * len(videos)
    if len(given) != len(videos):
        raise InputError(
            f"give one --offset, or one per --video ({len(given)} offsets, {len(videos)} videos)"
        )
    return list(given)


def evaluate_mocap(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """A lab's motion-capture trial through Gaitway (:mod:`services.kinematics.labvalidation`): the marker
    set recognised, joint centres, the running metrics, the agreement with the file's own model outputs
    (``LKneeAngles`` ...), cadence against the force plates / heel markers; with ``--video``, each video
    analysed by the :class:`gateway.core.Engine` and compared with the markers."""
    from services.kinematics.labvalidation import load_trial, mocap_document

    videos = list(args.video or [])
    offsets = _offsets(args, videos)
    for video in videos:
        if not video.is_file():
            raise InputError(f"{video}: video not found")
    trial = load_trial(
        args.run,
        args.static,
        treadmill_speed_mps=args.treadmill_speed,
        lowpass_hz=args.lowpass_hz,
        hjc_method=args.hjc,
    )
    doc = mocap_document(trial)
    if videos:
        doc["video"] = _videos(args, settings, trial, videos, offsets)
    return doc


def _videos(
    args: argparse.Namespace,
    settings: Settings,
    trial: MocapTrial,
    videos: list[Path],
    offsets: list[float | None],
) -> dict[str, Any]:
    """Each video analysed (the same engine as ``gaitway analyze``) and compared with the markers."""
    import tempfile

    from gateway.core import AnalysisSpec, Engine, RunnerInfo
    from services.kinematics.labvalidation import compare_video
    from services.kinematics.model import Keypoints2D

    update: dict[str, Any] = {}
    if args.models_dir is not None:
        update["models_dir"] = args.models_dir
    if args.threads is not None:
        update["ort_threads"] = args.threads
    engine = Engine(settings.model_copy(update=update))
    spec = AnalysisSpec(
        runner=RunnerInfo(height_m=args.height, treadmill_speed_mps=args.treadmill_speed),
        preset=args.preset,
        pose2d=args.pose2d,
        lifter=args.lifter,
    )
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gaitway-mocap-") as tmp:
        for video, offset in zip(videos, offsets, strict=True):
            folder = (args.out if args.out is not None else Path(tmp)) / video.stem
            outcome = engine.analyze(video, folder, spec, name=video.name)
            seq = outcome.result.sequence
            kps2d = Keypoints2D(xy=seq.kps2d, skeleton=seq.skeleton.name, image_wh=seq.image_wh)
            entry = compare_video(trial, seq.t, seq.kps3d, kps2d, metric=seq.metric, offset_s=offset)
            models = outcome.result.models
            entry["models"] = _model_info(models.detector, models.pose2d, models.lifter)
            entry["notes"] = _random_warning(entry["models"]) + entry["notes"] + outcome.warnings
            if not seq.metric:
                entry["notes"].append("no --height: the lifted 3D is not in metres (MPJPE in model units)")
            if outcome.metrics is not None:
                cad = outcome.metrics.summary.get("cadence_spm")
                entry["cadence_spm"] = None if cad is None else cad.mean
            entry["analysis"] = str(folder) if args.out is not None else None
            out[video.name if sum(v.name == video.name for v in videos) == 1 else str(video)] = entry
    return out


def _print_mocap(r: dict[str, Any]) -> None:
    w = sys.stdout.write
    mk = r["markers"]
    static = Path(mk["static"]).name if mk["static"] else "none"
    w(
        f"motion capture: {Path(mk['run']).name} ({mk['frames']} frames at {mk['rate_hz']:g} Hz, "
        f"{mk['format']}), static {static}; marker set: {mk['marker_set']}\n"
    )
    for joint, how in mk["joint_centres"].items():
        w(f"  {joint:<15}{how}\n")
    c = r["cadence"]
    w(
        f"\ncadence: Gaitway {_fmt(c['gaitway_spm'])} steps/min ({r['steps']['left']} left + "
        f"{r['steps']['right']} right steps) vs {_fmt(c['truth_spm'])} from the {c['truth_source']}: "
        f"{_fmt(c['difference_spm'], '+.1f')}\n"
    )
    ref = r["reference"]
    if ref:
        w("\nGaitway vs the lab's model outputs (sagittal; offset = Gaitway - reference, deg)\n")
        w(f"{'joint':<13}{'RMSE':>7}{'offset':>8}{'SD':>6}{'r':>7}{'n':>7}  {'reference':<18}convention\n")
        for key, v in ref.items():
            w(
                f"{key:<13}{_fmt(v['rmse_deg']):>7}{_fmt(v['offset_deg'], '+.1f'):>8}{_fmt(v['sd_deg']):>6}"
                f"{_fmt(v['r'], '.3f'):>7}{v['n']:>7}  {v['reference_label']:<18}{v['convention']}\n"
            )
    w(f"\n{'running metrics (step means)':<34}{'mean':>8}{'SD':>7}{'n':>5}{'left':>8}{'right':>8}\n")
    for metric, s in r["summary"].items():
        if not s["n"]:
            continue
        sides = [r["summary_by_side"].get(side, {}).get(metric, {}).get("mean") for side in ("left", "right")]
        spec = ".3f" if s["mean"] is not None and abs(s["mean"]) < 5 else ".1f"
        w(
            f"  {metric:<32}{_fmt(s['mean'], spec):>8}{_fmt(s['sd'], spec):>7}{s['n']:>5}"
            f"{_fmt(sides[0], spec):>8}{_fmt(sides[1], spec):>8}\n"
        )
    for name, v in (r.get("video") or {}).items():
        sync = v["sync"]
        w(f"\nvideo {name}: {v['frames_compared']}/{v['frames']} frames on the markers; {sync['method']}, ")
        w(f"offset {sync['offset_s']:.3f} s")
        if "r" in sync:
            w(f" (r {_fmt(sync['r'], '.3f')}, next best {_fmt(sync['runner_up_r'], '.3f')})")
        w("\n")
        e = v["joints_3d"]
        if e is not None:
            w(
                f"  3D joints ({e['units']}): MPJPE {_fmt(e['mpjpe'])}, PA-MPJPE {_fmt(e['pa_mpjpe'])}, "
                f"N-MPJPE {_fmt(e['n_mpjpe'])} over {e['n_poses']} poses\n"
            )
        w(f"  {'angle vs markers (deg)':<34}{'source':>8}{'RMSE':>7}{'offset':>8}{'r':>7}{'n':>6}\n")
        for source, block in v["angles"].items():
            for key, a in block.items():
                w(
                    f"  {key:<34}{source:>8}{_fmt(a['rmse_deg']):>7}{_fmt(a['offset_deg'], '+.1f'):>8}"
                    f"{_fmt(a['r'], '.3f'):>7}{a['n']:>6}\n"
                )
        for note in v["notes"]:
            w(f"  note: {note}\n")
    for note in r["notes"]:
        w(f"note: {note}\n")
