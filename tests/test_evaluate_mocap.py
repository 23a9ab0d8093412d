"""``gaitway evaluate mocap`` on any lab's marker files, with known truths.

Real data: RBDS001 (Fukuchi et al. 2017, PeerJ 5:e3298) treadmill running at 3.5 m/s (C3D with the treadmill's
force plate) and 2.5 m/s (text export with a force file), with the static trial; a Qualisys QTM TSV export
whose markers are unlabelled (a clear error). Synthetic lab files are made here from RBDS001 with ezc3d:

* **Plug-in-Gait full body**: the RBDS pelvis markers renamed (LASI ...), the anatomical landmarks the RBDS
  run lacks (lateral knee and ankle, second metatarsal head) placed in every frame by this file's own
  rigid-body tracking, thigh and tibia wands, a rigid upper body riding on the pelvis, the knee and ankle
  widths as ``PROCESSING`` parameters, the treadmill's vertical force as an analog ``F1Z``, and
  ``LKneeAngles`` / ``LHipAngles`` / ``LAnkleAngles`` computed here by a different method than Gaitway's:
  Cardan angles of ISB segment frames (Grood & Suntay), hips by Bell et al. 1990 (Gaitway uses
  Harrington), the ankle's static offset removed as Plug-in-Gait does.
* **Vicon cluster model**: only the four-marker thigh and shank clusters, the pelvis and foot markers in the
  run (subject-prefixed labels ``Runner:LTHI1`` ...), the anatomical markers (LKNE LKNM LANK LMED LTOE) only
  in the static file; the same model outputs; no force plate, so the cadence truth is the heel markers'.
* the cluster model with **joint-centre channels** (LHJC LKJC LAJC) in the static trial instead of the
  medial markers.

Truths: the model outputs above (knee RMSE <= 5 deg per side, the issue's acceptance), the cadence of
RBDS001's force plate computed here (~171 steps/min at 3.5 m/s; NOTES.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import ezc3d
import numpy as np
import pytest
from conftest import SHARED
from scipy.spatial.transform import Rotation

from gateway import cli
from gateway import evaluate as cli_evaluate
from services.errors import InputError, NoValidDataError
from services.kinematics.evaluate import (
    agreement,
    cadence_from_strikes,
    estimate_forward,
    force_contacts,
    h36m17_from_legs,
    resample,
    rotate_onto,
    side_camera,
    synchronise,
)
from services.kinematics.labvalidation import compare_video, load_trial, mocap_document, reference_agreement
from services.kinematics.markersets import assign_roles, describe_marker_set, model_output_angles
from services.kinematics.mocap import chord_joint_centre, read_c3d
from services.kinematics.model import Keypoints2D
from services.pose.skeletons import COCO17, H36M17
from services.settings import Settings

RBDS = SHARED / "data/mocap-running-rbds"
TSV = SHARED / "data/qualisys-tsv-sample/Measurement1.tsv"
SIDES = {"left": "L", "right": "R"}
Array = np.ndarray

# ------------------------------------------------------------------------------------------------------------
# This file's own rigid-body tracking and joint angles (not the project's code)
# ------------------------------------------------------------------------------------------------------------


def _filled(x: Array) -> Array:
    """(T, 3) with NaN samples linearly interpolated per axis (edges held)."""
    out = x.copy()
    idx = np.arange(len(x))
    for k in range(3):
        ok = np.isfinite(x[:, k])
        out[:, k] = np.interp(idx, idx[ok], x[ok, k])
    return out


def _pose(ref: Array, cur: Array) -> tuple[Array, Array, Array]:
    """Per frame the rotation R and translation so that cur ~ R (ref - ref_c) + cur_c: ref (N, 3), cur (T, N,
    3) -> R (T, 3, 3), ref_c (3,), cur_c (T, 3). Horn's SVD solution, written out here."""
    ref_c, cur_c = ref.mean(axis=0), cur.mean(axis=1)
    h = np.einsum("ni,tnj->tij", ref - ref_c, cur - cur_c[:, None])
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("tji,tkj->tik", vt, u)))
    fix = np.broadcast_to(np.eye(3), (len(cur), 3, 3)).copy()
    fix[:, 2, 2] = d
    rot = np.einsum("tji,tjk,tlk->til", vt, fix, u)
    return rot, ref_c, cur_c


class _Rbds:
    """RBDS001 at 3.5 m/s: markers (mm -> m), segment poses and every anatomical landmark in every frame."""

    def __init__(self) -> None:
        self.run = {k: _filled(v) for k, v in read_c3d(RBDS / "RBDS001runT35.c3d").markers.items()}
        # the running trial labels R.MT1 and R.MT5 the other way round (NOTES: the files as published)
        self.run["R.MT1"], self.run["R.MT5"] = self.run["R.MT5"], self.run["R.MT1"]
        st = read_c3d(RBDS / "RBDS001static.c3d")
        self.static = {k: np.nanmedian(v, axis=0) for k, v in st.markers.items()}
        self.static_frames = {k: _filled(v) for k, v in st.markers.items()}
        self.n = len(next(iter(self.run.values())))
        self.clusters: dict[str, list[str]] = {
            "pelvis": ["R.ASIS", "L.ASIS", "R.PSIS", "L.PSIS", "R.Iliac.Crest", "L.Iliac.Crest"]
        }
        for s in "LR":
            pos = [(a, b) for a in ("Top", "Bottom") for b in ("Lateral", "Medial")]
            self.clusters[f"{s}.thigh"] = [f"{s}.Thigh.{a}.{b}" for a, b in pos]
            self.clusters[f"{s}.shank"] = [f"{s}.Shank.{a}.{b}" for a, b in pos]
            self.clusters[f"{s}.foot"] = [f"{s}.Heel.{p}" for p in ("Top", "Bottom", "Lateral")] + [
                f"{s}.MT1",
                f"{s}.MT5",
            ]
        self.poses = {
            seg: _pose(np.stack([self.static[m] for m in names]), np.stack([self.run[m] for m in names], 1))
            for seg, names in self.clusters.items()
        }

    def carry(self, seg: str, point: Array) -> Array:
        """A static-trial point (3,) carried into every running frame by a segment's cluster -> (T, 3)."""
        rot, ref_c, cur_c = self.poses[seg]
        return np.asarray(np.einsum("tij,j->ti", rot, point - ref_c) + cur_c)

    def landmark(self, side: str, name: str) -> Array:
        s = SIDES[side]
        seg = {"Knee": "thigh", "Knee.Medial": "thigh", "Ankle": "shank", "Ankle.Medial": "shank"}.get(
            name, "foot"
        )
        return self.carry(f"{s}.{seg}", self.static[f"{s}.{name}"])


def _pelvis_frame(r_asis: Array, l_asis: Array, r_psis: Array, l_psis: Array) -> tuple[Array, Array, float]:
    """ISB pelvis (x anterior, y up, z right) as (..., 3, 3) columns, its origin and the pelvis width."""
    origin = 0.5 * (r_asis + l_asis)
    z = r_asis - l_asis
    width = float(np.median(np.linalg.norm(z, axis=-1)))
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    v = origin - 0.5 * (r_psis + l_psis)
    x = v - np.sum(v * z, axis=-1, keepdims=True) * z
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return np.stack([x, np.cross(z, x), z], axis=-1), origin, width


def _segment_frame(proximal: Array, distal: Array, right: Array) -> Array:
    """(T, 3, 3) columns x anterior, y up (distal -> proximal), z right (``right`` made orthogonal)."""
    y = proximal - distal
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    z = right - np.sum(right * y, axis=-1, keepdims=True) * y
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    return np.stack([np.cross(y, z), y, z], axis=-1)


def _cardan(parent: Array, child: Array) -> Array:
    """(T, 3) angles (deg) of ``child`` in ``parent``: about z (flexion axis), then the floating x, then y."""
    rel = np.einsum("tji,tjk->tik", parent, child)
    return np.asarray(Rotation.from_matrix(rel).as_euler("ZXY", degrees=True))


class _Model:
    """Plug-in-Gait-like reference outputs from the RBDS landmarks: hips by Bell et al. (1990) in the ISB
    pelvis frame, knee / ankle centres at the epicondyle / malleolus midpoints, Cardan angles (flexion first)
    with Plug-in-Gait's signs (flexion and dorsiflexion positive), the ankle's standing angle removed."""

    def __init__(self, d: _Rbds) -> None:
        self.d = d
        frame, origin, width = _pelvis_frame(*(d.static[m] for m in ("R.ASIS", "L.ASIS", "R.PSIS", "L.PSIS")))
        offsets = {
            "right": np.array([-0.19, -0.30, 0.36]) * width,
            "left": np.array([-0.19, -0.30, -0.36]) * width,
        }
        self.static_hjc = {side: origin + frame @ off for side, off in offsets.items()}
        self.hjc = {side: d.carry("pelvis", p) for side, p in self.static_hjc.items()}
        self.pelvis, _, _ = _pelvis_frame(*(d.run[m] for m in ("R.ASIS", "L.ASIS", "R.PSIS", "L.PSIS")))
        self.kjc = {s: 0.5 * (d.landmark(s, "Knee") + d.landmark(s, "Knee.Medial")) for s in SIDES}
        self.ajc = {s: 0.5 * (d.landmark(s, "Ankle") + d.landmark(s, "Ankle.Medial")) for s in SIDES}
        self.angles: dict[str, Array] = {}
        for side in SIDES:
            sign = 1.0 if side == "right" else -1.0
            knee_axis = sign * (d.landmark(side, "Knee") - d.landmark(side, "Knee.Medial"))
            ankle_axis = sign * (d.landmark(side, "Ankle") - d.landmark(side, "Ankle.Medial"))
            femur = _segment_frame(self.hjc[side], self.kjc[side], knee_axis)
            tibia = _segment_frame(self.kjc[side], self.ajc[side], ankle_axis)
            heel, toe = d.run[f"{SIDES[side]}.Heel.Bottom"], d.landmark(side, "MT2")
            foot = self._foot(heel, toe, tibia)
            hip = _cardan(self.pelvis, femur)
            knee = _cardan(femur, tibia)
            ankle = _cardan(tibia, foot)
            knee[:, 0] *= -1.0  # tibia tilting back in the femur frame = flexion
            ankle[:, 0] -= self._static_ankle(side)
            self.angles[f"{side}_hip"], self.angles[f"{side}_knee"], self.angles[f"{side}_ankle"] = (
                hip,
                knee,
                ankle,
            )

    @staticmethod
    def _foot(heel: Array, toe: Array, tibia: Array) -> Array:
        x = toe - heel
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
        z = tibia[..., 2] - np.sum(tibia[..., 2] * x, axis=-1, keepdims=True) * x
        z = z / np.linalg.norm(z, axis=-1, keepdims=True)
        return np.stack([x, np.cross(z, x), z], axis=-1)

    def _static_ankle(self, side: str) -> float:
        st, s = self.d.static, SIDES[side]
        sign = 1.0 if side == "right" else -1.0
        kjc = 0.5 * (st[f"{s}.Knee"] + st[f"{s}.Knee.Medial"])
        ajc = 0.5 * (st[f"{s}.Ankle"] + st[f"{s}.Ankle.Medial"])
        tibia = _segment_frame(
            kjc[None], ajc[None], sign * (st[f"{s}.Ankle"] - st[f"{s}.Ankle.Medial"])[None]
        )
        foot = self._foot(st[f"{s}.Heel.Bottom"][None], st[f"{s}.MT2"][None], tibia)
        return float(_cardan(tibia, foot)[0, 0])


# ------------------------------------------------------------------------------------------------------------
# Writing lab files
# ------------------------------------------------------------------------------------------------------------


def _write_c3d(
    path: Path,
    points: dict[str, Array],
    *,
    rate: float = 150.0,
    angles: dict[str, Array] | None = None,
    processing: dict[str, float] | None = None,
    analogs: dict[str, Array] | None = None,
    analog_rate: float = 300.0,
) -> Path:
    """A C3D file: marker points (T, 3) in metres written in mm, model-output angles (T, 3) in degrees listed
    in POINT:ANGLES, PROCESSING parameters, analog channels."""
    c3d = ezc3d.c3d()
    angles = angles or {}
    labels = list(points) + list(angles)
    n = len(next(iter(points.values())))
    data = np.ones((4, len(labels), n))
    for i, lab in enumerate(labels):
        data[:3, i] = (points[lab] * 1000.0).T if lab in points else angles[lab].T
    c3d["parameters"]["POINT"]["RATE"]["value"] = [rate]
    c3d["parameters"]["POINT"]["LABELS"]["value"] = labels
    c3d["parameters"]["POINT"]["UNITS"]["value"] = ["mm"]
    c3d["data"]["points"] = data
    if angles:
        c3d.add_parameter("POINT", "ANGLES", list(angles))
    for name, value in (processing or {}).items():
        c3d.add_parameter("PROCESSING", name, [float(value)])
    if analogs:
        c3d["parameters"]["ANALOG"]["RATE"]["value"] = [analog_rate]
        c3d["parameters"]["ANALOG"]["LABELS"]["value"] = list(analogs)
        c3d["data"]["analogs"] = np.stack(list(analogs.values()))[None]
    c3d.write(str(path))
    return path


def _outputs(model: _Model, prefix: str = "") -> dict[str, Array]:
    return {
        f"{prefix}{s}{joint.title()}Angles": model.angles[f"{side}_{joint}"]
        for side, s in SIDES.items()
        for joint in ("hip", "knee", "ankle")
    }


def _upper_body(d: _Rbds) -> dict[str, Array]:
    """Plug-in-Gait full-body markers on a rigid upper body riding on the pelvis (trunk leaning 10 deg
    forward of the pelvis' vertical), in the ISB pelvis frame (metres from mid-ASIS)."""
    lean = math.radians(10.0)
    up = np.array([math.sin(lean), math.cos(lean), 0.0])
    places = {
        "C7": -0.10 * np.array([1, 0, 0]) + 0.52 * up, "CLAV": 0.04 * np.array([1, 0, 0]) + 0.45 * up,
        "T10": -0.14 * np.array([1, 0, 0]) + 0.30 * up, "STRN": 0.08 * np.array([1, 0, 0]) + 0.30 * up,
        "LSHO": 0.48 * up + [0, 0, -0.18], "RSHO": 0.48 * up + [0, 0, 0.18],
        "LELB": 0.22 * up + [-0.06, 0, -0.22], "RELB": 0.22 * up + [-0.06, 0, 0.22],
        "LWRA": 0.12 * up + [0.12, 0, -0.20], "LWRB": 0.12 * up + [0.10, 0, -0.17],
        "RWRA": 0.12 * up + [0.12, 0, 0.20], "RWRB": 0.12 * up + [0.10, 0, 0.17],
        "LFHD": 0.72 * up + [0.08, 0, -0.06], "RFHD": 0.72 * up + [0.08, 0, 0.06],
        "LBHD": 0.70 * up + [-0.10, 0, -0.06], "RBHD": 0.70 * up + [-0.10, 0, 0.06],
    }  # fmt: skip
    frame, origin, _ = _pelvis_frame(*(d.static[m] for m in ("R.ASIS", "L.ASIS", "R.PSIS", "L.PSIS")))
    return {name: d.carry("pelvis", origin + frame @ np.asarray(p, float)) for name, p in places.items()}


def _force_plate(path: Path) -> tuple[Array, float]:
    """The RBDS treadmill's vertical force channel (-F1Z, 300 Hz)."""
    c3d = ezc3d.c3d(str(path))
    labels = [str(v).strip() for v in c3d["parameters"]["ANALOG"]["LABELS"]["value"]]
    rate = float(c3d["parameters"]["ANALOG"]["RATE"]["value"][0])
    return np.asarray(c3d["data"]["analogs"][0][labels.index("F1Z")], np.float64), rate


def _plate_cadence(fz: Array, rate: float) -> float:
    """Steps per minute from the force: this file's own count (loaded above 50 N-equivalent: 5 % of the
    99th percentile of -F1Z over its 2nd percentile), mean step time over the trial."""
    load = -fz - np.percentile(-fz, 2)
    on = (load > 0.05 * np.percentile(load, 99)).astype(np.int8)
    strikes = np.flatnonzero(np.diff(on) == 1) + 1
    offs = np.flatnonzero(np.diff(on) == -1) + 1
    strikes = np.array([s for s in strikes if (offs > s).any() and (offs[offs > s][0] - s) / rate > 0.1])
    return 60.0 * (len(strikes) - 1) / ((strikes[-1] - strikes[0]) / rate)


@pytest.fixture(scope="module")
def rbds() -> _Rbds:
    return _Rbds()


@pytest.fixture(scope="module")
def model(rbds: _Rbds) -> _Model:
    return _Model(rbds)


@pytest.fixture(scope="module")
def truth_spm() -> float:
    fz, rate = _force_plate(RBDS / "RBDS001runT35.c3d")
    return _plate_cadence(fz, rate)


def _wand(d: _Rbds, side: str, segment: str, proximal: Array) -> Array:
    """A Plug-in-Gait wand marker placed as the model asks: on the segment's lateral side, 4 cm out from the
    skin, in the plane of the proximal joint centre and the joint's lateral-medial axis (static trial), then
    carried by the segment's cluster. ``proximal``: the static hip (thigh) or knee (shank) centre."""
    s, st = SIDES[side], d.static
    lat, med = ("Knee", "Knee.Medial") if segment == "thigh" else ("Ankle", "Ankle.Medial")
    centre = 0.5 * (st[f"{s}.{lat}"] + st[f"{s}.{med}"])
    axis = proximal - centre
    out = st[f"{s}.{lat}"] - st[f"{s}.{med}"]
    out = out - (out @ axis) / (axis @ axis) * axis
    half = 0.5 * float(np.linalg.norm(st[f"{s}.{lat}"] - st[f"{s}.{med}"]))
    point = centre + 0.45 * axis + (half + 0.04) * out / np.linalg.norm(out)
    return d.carry(f"{s}.{segment}", point)


def _pig_markers(d: _Rbds, model: _Model, side: str) -> dict[str, Array]:
    s, st = SIDES[side], d.static
    knee = 0.5 * (st[f"{s}.Knee"] + st[f"{s}.Knee.Medial"])
    return {
        f"{s}THI": _wand(d, side, "thigh", model.static_hjc[side]),
        f"{s}KNE": d.landmark(side, "Knee"),
        f"{s}TIB": _wand(d, side, "shank", knee),
        f"{s}ANK": d.landmark(side, "Ankle"),
        f"{s}HEE": d.run[f"{s}.Heel.Bottom"],
        f"{s}TOE": d.landmark(side, "MT2"),
    }


def _pelvis_markers(source: dict[str, Array]) -> dict[str, Array]:
    return {f"{s}{m[:3]}": source[f"{s}.{m}"] for s in "LR" for m in ("ASIS", "PSIS")}


@pytest.fixture(scope="module")
def pig_run(tmp_path_factory: pytest.TempPathFactory, rbds: _Rbds, model: _Model) -> Path:
    """A Plug-in-Gait full-body running trial with its model outputs, subject measurements and the treadmill's
    vertical force (an analog channel named F1Z, no FORCE_PLATFORM group)."""
    legs = _pig_markers(rbds, model, "left") | _pig_markers(rbds, model, "right")
    run = _pelvis_markers(rbds.run) | legs | _upper_body(rbds)
    st = rbds.static
    widths = {"MarkerDiameter": 14.0}
    for s in "LR":
        widths[f"{s}KneeWidth"] = 1000 * float(np.linalg.norm(st[f"{s}.Knee"] - st[f"{s}.Knee.Medial"])) - 14
        widths[f"{s}AnkleWidth"] = (
            1000 * float(np.linalg.norm(st[f"{s}.Ankle"] - st[f"{s}.Ankle.Medial"])) - 14
        )
    fz, rate = _force_plate(RBDS / "RBDS001runT35.c3d")
    path = tmp_path_factory.mktemp("pig") / "pig_run.c3d"
    return _write_c3d(
        path, run, angles=_outputs(model), processing=widths, analogs={"F1Z": fz}, analog_rate=rate
    )


def _cluster_names(s: str) -> dict[str, str]:
    """RBDS label -> Vicon cluster-model label, one side."""
    names = {}
    for i, (a, b) in enumerate((a, b) for a in ("Top", "Bottom") for b in ("Lateral", "Medial")):
        names[f"{s}.Thigh.{a}.{b}"] = f"{s}THI{i + 1}"
        names[f"{s}.Shank.{a}.{b}"] = f"{s}TIB{i + 1}"
    names |= {f"{s}.Heel.Bottom": f"{s}HEE", f"{s}.Heel.Top": f"{s}HEEL_TOP",
              f"{s}.Heel.Lateral": f"{s}HEEL_LAT", f"{s}.MT1": f"{s}MT1", f"{s}.MT5": f"{s}MT5",
              f"{s}.ASIS": f"{s}ASI", f"{s}.PSIS": f"{s}PSI"}  # fmt: skip
    return names


def _cluster_files(folder: Path, d: _Rbds, model: _Model, *, channels: bool) -> tuple[Path, Path]:
    """A Vicon cluster-model run (subject-prefixed labels, clusters, pelvis and foot markers only, the model
    outputs) and its static trial: the anatomical markers (``channels`` False) or joint-centre channels
    (``channels`` True: LHJC / LKJC / LAJC, hips by Bell, as the lab's static model might write them)."""
    prefix = "Runner:"
    run, static = {}, {}
    n_static = len(next(iter(d.static_frames.values())))
    for s in "LR":
        for rbds_name, name in _cluster_names(s).items():
            run[prefix + name] = d.run[rbds_name]
            static[prefix + name] = d.static_frames[rbds_name]
    for side, s in SIDES.items():
        st = d.static
        if channels:
            kjc = 0.5 * (st[f"{s}.Knee"] + st[f"{s}.Knee.Medial"])
            ajc = 0.5 * (st[f"{s}.Ankle"] + st[f"{s}.Ankle.Medial"])
            points = {
                f"{s}HJC": model.static_hjc[side],
                f"{s}KJC": kjc,
                f"{s}AJC": ajc,
                f"{s}TOE": st[f"{s}.MT2"],
            }
        else:
            points = {f"{s}KNE": st[f"{s}.Knee"], f"{s}KNM": st[f"{s}.Knee.Medial"],
                      f"{s}ANK": st[f"{s}.Ankle"], f"{s}MED": st[f"{s}.Ankle.Medial"],
                      f"{s}TOE": st[f"{s}.MT2"]}  # fmt: skip
        for name, p in points.items():
            static[prefix + name] = np.repeat(p[None], n_static, axis=0)
    tag = "jc" if channels else "anatomical"
    run_path = _write_c3d(folder / f"cluster_run_{tag}.c3d", run, angles=_outputs(model, prefix))
    return run_path, _write_c3d(folder / f"cluster_static_{tag}.c3d", static)


@pytest.fixture(scope="module")
def cluster_files(tmp_path_factory: pytest.TempPathFactory, rbds: _Rbds, model: _Model) -> tuple[Path, Path]:
    return _cluster_files(tmp_path_factory.mktemp("cluster"), rbds, model, channels=False)


# ------------------------------------------------------------------------------------------------------------
# CLI plumbing
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings(shared: Path, model_dirs: list[Path]) -> Settings:
    return Settings(shared_dir=shared, models_dir=os.pathsep.join(str(d) for d in model_dirs))


def _mocap(
    argv: list[str], settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, Any], str]:
    parser = argparse.ArgumentParser(prog="gaitway")
    cli_evaluate.add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "mocap.json"
    args = parser.parse_args(["evaluate", "mocap", *argv, "--json", str(out)])
    assert cli_evaluate.run(args, settings) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def _summary_keys_as_metrics_json(doc: dict[str, Any]) -> None:
    assert set(doc) >= {
        "reference",
        "summary",
        "summary_by_side",
        "cadence",
        "markers",
        "conventions",
        "notes",
    }
    assert "video" not in doc
    for stats in doc["summary"].values():
        assert set(stats) == {"mean", "sd", "ci95_low", "ci95_high", "n"}
    for key, v in doc["reference"].items():
        assert key.split("_")[0] in ("knee", "hip", "ankle") and key.split("_")[1] in ("left", "right")
        assert {"rmse_deg", "offset_deg", "r", "n"} <= set(v)


# ------------------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------------------


def test_roles_of_lab_labels() -> None:
    pig = ["LASI", "RASI", "LPSI", "RPSI", "LTHI", "LKNE", "LTIB", "LANK", "LHEE", "LTOE", "RTHI",
           "RKNE", "RTIB", "RANK", "RHEE", "RTOE", "C7", "T10", "CLAV", "STRN", "RBAK", "LSHO", "RSHO",
           "LELB", "RELB", "LWRA", "LWRB", "RWRA", "RWRB", "LFIN", "LFHD", "RFHD", "LBHD",
           "RBHD"]  # fmt: skip
    roles = assign_roles(pig)
    assert roles.get("L.KNEE") == "LKNE" and roles.get("R.THI") == "RTHI" and roles.get("C7") == "C7"
    assert roles.lists["L.WRIST"] == ("LWRA", "LWRB") and len(roles.lists["HEAD"]) == 4
    assert set(roles.unused) == {"RBAK", "LFIN"}
    assert describe_marker_set(roles, None) == "Plug-in-Gait full body"
    lower = assign_roles([lab for lab in pig if lab[:4] in {lab[:4] for lab in pig[:16]}])
    assert describe_marker_set(lower, None) == "Plug-in-Gait lower body"
    # subject prefixes, sides written as words or suffixes, cluster markers, joint-centre channels
    other = assign_roles(["Sub01:LTHI1", "Sub01:LTH2", "L_Thigh_3", "Knee_R", "LeftKnee", "RKNJC", "LHJC",
                          "RightAnkleJointCentre", "LSHN1", "LTIAD", "SACR"])  # fmt: skip
    assert other.get("R.KNEE") == "Knee_R" and other.get("L.KNEE") == "LeftKnee"
    assert other.get("R.KJC") == "RKNJC" and other.get("L.HJC") == "LHJC" and other.get("R.AJC")
    assert other.get("SACR") == "SACR"
    assert set(other.members("L.thigh")) >= {"Sub01:LTHI1", "Sub01:LTH2", "L_Thigh_3"}
    assert set(other.members("L.shank")) == {"LSHN1", "LTIAD"}
    # two labels for one role: the more visible one wins, the other is reported
    dup = assign_roles(["LKNE", "L_KNEE"], {"LKNE": 10, "L_KNEE": 900})
    assert dup.get("L.KNEE") == "L_KNEE" and dup.duplicates == {"L.KNEE": ("LKNE",)}
    assert model_output_angles(["Runner:LKneeAngles", "RightHipAngles", "LeftAnkleAngle", "LKneeMoment",
                                "LPelvisAngles"]) == {"knee_left": "Runner:LKneeAngles",
                                                     "hip_right": "RightHipAngles",
                                                     "ankle_left": "LeftAnkleAngle"}  # fmt: skip
    assert assign_roles(["New 0000", "New 0002"]).single == {}


def test_chord_joint_centre_geometry() -> None:
    """Plug-in-Gait's chord function on a known knee: hip centre 0.45 m above a knee centre at the origin,
    lateral knee marker 60 mm out along +z, thigh wand lateral and 0.2 m up: the centre found is the knee
    centre, and the proximal line is perpendicular to the centre -> marker line."""
    kjc = np.zeros(3)
    hip = np.array([0.0, 0.45, -0.02])  # the hip centre lies a little medial, as it does
    lateral = np.array([0.0, 0.0, 0.06])
    # the offset is what makes the right angle at the knee centre: |lateral - kjc| = 60 mm
    wand = np.array([0.0, 0.2, 0.12])
    got = chord_joint_centre(hip[None], lateral[None], wand[None], 0.06)[0]
    assert np.linalg.norm(got - lateral) == pytest.approx(0.06, abs=1e-12)
    assert (hip - got) @ (lateral - got) == pytest.approx(0.0, abs=1e-12)
    assert got[2] < lateral[2] and abs(got[0]) < 1e-12  # medial of the marker, in the wand's plane
    assert np.linalg.norm(got - kjc) < 0.004  # the small tilt of the hip-knee line
    assert np.isnan(chord_joint_centre(hip[None], np.full((1, 3), np.nan), wand[None], 0.06)).all()


def test_agreement_offset_sign_and_correlation() -> None:
    t = np.linspace(0.0, 3.0, 451)
    ref = 40 + 35 * np.sin(2 * np.pi * 1.43 * t)
    got = agreement(ref + 3.0, ref)
    assert got["rmse_deg"] == pytest.approx(3.0) and got["offset_deg"] == pytest.approx(3.0)
    assert got["sd_deg"] == pytest.approx(0.0, abs=1e-9) and got["r"] == pytest.approx(1.0)
    assert got["n"] == 451 and got["sign"] == 1
    flipped = agreement(ref + 3.0, -ref)  # a lab writing flexion negative: compared after negating it
    assert flipped["sign"] == -1 and flipped["offset_deg"] == pytest.approx(3.0)
    noisy = ref + np.random.default_rng(0).normal(scale=2.0, size=t.size)
    noisy[::10] = np.nan
    g = agreement(noisy, ref)
    assert g["n"] == 451 - 46 and g["rmse_deg"] == pytest.approx(2.0, abs=0.2) and g["r"] > 0.99
    assert math.isnan(agreement(np.full(5, np.nan), np.ones(5))["rmse_deg"])


def _knees(t: Array) -> dict[str, Array]:
    """Knee-angle-like signals of both legs: strides of 0.70 +- 0.01 s (a fixed random sequence, so gait's
    stride-to-stride variation is there) with the peak flexion varying by a few degrees."""
    rng = np.random.default_rng(7)
    bounds = np.concatenate([[-1.0], -1.0 + np.cumsum(rng.normal(0.70, 0.01, 80))])
    peak = rng.normal(1.0, 0.05, 80)
    k = np.clip(np.searchsorted(bounds, t, side="right") - 1, 0, 78)
    frac = (t - bounds[k]) / (bounds[k + 1] - bounds[k])

    def wave(p: Array, gain: Array) -> Array:
        return np.asarray(40 + 30 * gain * np.sin(p) + 15 * np.sin(2 * p + 1.0) + 5 * np.sin(3 * p + 2.0))

    phase = 2 * np.pi * frac
    return {
        "left_knee_flexion_deg": wave(phase, peak[k]),
        "right_knee_flexion_deg": wave(phase + np.pi, peak[k + 1]),
    }


@pytest.mark.parametrize("offset", [3.4567, 11.02, 0.0])
def test_synchronise_finds_a_video_inside_a_long_trial(offset: float) -> None:
    """A 60 Hz 'video' of 8 s starting ``offset`` s into a 150 Hz trial of 30 s: the offset is found over
    every lag (many strides), to a fraction of a video frame, and the next best candidate is clearly worse."""
    t_mocap = np.arange(0.0, 30.0, 1 / 150)
    t_video = np.arange(0.0, 8.0, 1 / 60)
    ref = _knees(t_mocap)
    video = {k: v + np.random.default_rng(1).normal(scale=1.0, size=t_video.size) for k, v in
             _knees(t_video + offset).items()}  # fmt: skip
    sync = synchronise(t_mocap, ref, t_video, video, max_lag_s=38.0)
    assert -sync.lag_s == pytest.approx(offset, abs=0.002)
    assert sync.r > 0.99 and sync.n_signals == 2
    assert sync.ambiguity < 0.5  # the runner-up leaves at least twice the misfit
    # one side alone is periodic every stride too; left vs right alone would be half a stride off
    swapped = {"left_knee_flexion_deg": video["right_knee_flexion_deg"],
               "right_knee_flexion_deg": video["left_knee_flexion_deg"]}  # fmt: skip
    assert abs(abs(synchronise(t_mocap, ref, t_video, swapped, max_lag_s=38.0).lag_s + offset) - 0.35) < 0.36
    with pytest.raises(NoValidDataError):
        synchronise(t_mocap, ref, t_video, {"other": t_video}, max_lag_s=1.0)


def test_force_contacts_and_cadence() -> None:
    """Half-sine contacts of 0.24 s every 0.35 s (171.4 steps/min) on a plate whose channel is negative when
    loaded and offset from zero, at 1000 Hz: strikes found to the sample, cadence exact."""
    t = np.arange(0.0, 10.0, 0.001)
    strikes = np.arange(0.3, 9.5, 0.35)
    load = np.zeros_like(t)
    for s in strikes:
        inside = (t >= s) & (t <= s + 0.24)
        load[inside] = 1500 * np.sin(np.pi * (t[inside] - s) / 0.24)
    fz = 12.0 - load + np.random.default_rng(2).normal(scale=2.0, size=t.size)
    fz[(t > 5.0) & (t < 5.005)] -= 400  # a 5 ms spike is not a contact
    hits, offs = force_contacts(t, fz)
    assert len(hits) == len(strikes)
    # the 5 % threshold is crossed a little after the strike: asin(0.05) / pi * 0.24 s = 3.8 ms
    np.testing.assert_allclose(hits - strikes, 0.0038, atol=0.002)
    np.testing.assert_allclose(offs - hits, 0.24 - 2 * 0.0038, atol=0.003)
    spm, steps = cadence_from_strikes(hits)
    assert spm == pytest.approx(60 / 0.35, abs=0.05) and steps == len(strikes) - 1
    # two plates overground: two contacts each, 4 consecutive steps; a pause splits runs
    spm, steps = cadence_from_strikes([0.0, 0.35, 0.70, 1.05, 9.0, 9.3])
    assert steps == 3 and spm == pytest.approx(60 / 0.35)
    assert math.isnan(cadence_from_strikes([1.0, 2.5])[0])


def test_rotate_onto_removes_the_camera_rotation() -> None:
    rng = np.random.default_rng(3)
    gt = rng.normal(size=(20, 7, 3))
    gt -= gt[:, :1]
    rot = Rotation.from_euler("xyz", [30, -70, 110], degrees=True)
    pred = rot.apply(gt.reshape(-1, 3)).reshape(gt.shape)
    pred[3, 2] = np.nan
    back = rotate_onto(pred, gt)
    ok = np.isfinite(back).all(axis=-1)
    np.testing.assert_allclose(back[ok], gt[ok], atol=1e-9)


# ------------------------------------------------------------------------------------------------------------
# Real RBDS files
# ------------------------------------------------------------------------------------------------------------


def test_rbds_c3d(
    settings: Settings, truth_spm: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RBDS001 at 3.5 m/s with its static trial: the RBDS marker set, the running metrics (as the RBDS
    sub-command and tests/test_mocap.py measure them), cadence against the treadmill's force plate read from
    the file (FORCE_PLATFORM group) and against the heel markers; no model outputs in the file."""
    doc, printed = _mocap(
        [str(RBDS / "RBDS001runT35.c3d"), "--static", str(RBDS / "RBDS001static.c3d")],
        settings,
        tmp_path,
        capsys,
    )
    _summary_keys_as_metrics_json(doc)
    assert doc["reference"] == {} and any("no model outputs" in n for n in doc["notes"])
    assert doc["markers"]["marker_set"] == "RBDS" and doc["markers"]["up"] == [0.0, 1.0, 0.0]
    assert doc["markers"]["relabelled"] == {"R.foot": {"R.MT1": "R.MT5", "R.MT5": "R.MT1"}}
    c = doc["cadence"]
    assert c["truth_source"].startswith("force plate") and c["force_plate_steps"] >= 80
    assert c["force_plate_spm"] == pytest.approx(truth_spm, abs=0.3)
    assert c["heel_marker_spm"] == pytest.approx(truth_spm, abs=0.5)
    assert abs(c["difference_spm"]) <= 2.0
    assert doc["summary"]["knee_flexion_ic_deg"]["n"] >= 80
    assert doc["summary_by_side"]["right"]["knee_flexion_ic_deg"]["mean"] == pytest.approx(14.8, abs=0.5)
    assert "cadence: Gaitway 171" in printed and "force plate" in printed and "knee_flexion_ic_deg" in printed


def _text_force_cadence(path: Path) -> float:
    """Steps per minute from the RBDS force text file: vertical force Fy > 200 N for 0.1 s or more, 300 Hz."""
    table = np.genfromtxt(path, delimiter="\t", names=True)
    on = (table["Fy"] > 200).astype(np.int8)
    ups = np.flatnonzero(np.diff(on) == 1) + 1
    downs = np.flatnonzero(np.diff(on) == -1) + 1
    strikes = np.array([u for u in ups if (downs > u).any() and (downs[downs > u][0] - u) / 300 >= 0.1])
    return 60.0 * (len(strikes) - 1) / ((strikes[-1] - strikes[0]) / 300)


def test_rbds_text_export(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The text export at 2.5 m/s (no force in the marker file): cadence truth from the heel markers,
    checked here against the force file's contacts (NOTES.md: ~158 steps/min)."""
    doc, _ = _mocap(
        [str(RBDS / "RBDS001runT25markers.txt"), "--static", str(RBDS / "RBDS001static.txt")],
        settings,
        tmp_path,
        capsys,
    )
    truth = _text_force_cadence(RBDS / "RBDS001runT25forces.txt")
    assert truth == pytest.approx(158, abs=2)
    c = doc["cadence"]
    assert doc["markers"]["format"] == "rbds_txt" and math.isnan(c["force_plate_spm"] or math.nan)
    assert "heel" in c["truth_source"] and c["truth_spm"] == pytest.approx(truth, abs=1.0)
    assert c["gaitway_spm"] == pytest.approx(truth, abs=2.0)


# ------------------------------------------------------------------------------------------------------------
# Synthetic lab files
# ------------------------------------------------------------------------------------------------------------


def _gaitway_static_ankle(d: _Rbds, side: str) -> float:
    """Gaitway's ankle angle definition (90 - angle(knee - ankle, toe - heel)) on the static trial."""
    st, s = d.static, SIDES[side]
    shank = 0.5 * (st[f"{s}.Knee"] + st[f"{s}.Knee.Medial"]) - 0.5 * (
        st[f"{s}.Ankle"] + st[f"{s}.Ankle.Medial"]
    )
    foot = st[f"{s}.MT2"] - st[f"{s}.Heel.Bottom"]
    cos = shank @ foot / np.linalg.norm(shank) / np.linalg.norm(foot)
    return 90.0 - math.degrees(math.acos(cos))


def test_plug_in_gait_full_body(
    pig_run: Path,
    rbds: _Rbds,
    truth_spm: float,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Plug-in-Gait names, no static trial: hips by the regression on the run's pelvis, knees and ankles by
    the chord function with the file's widths, a trunk from C7/CLAV. Against the file's own Cardan angles:
    knees within 5 deg RMSE (measured 2.6 / 1.3), r > 0.99; the hip offset is the trunk's lean on the pelvis
    (10 deg designed, plus the hip centres' difference) and the ankle offset the static ankle angle
    Plug-in-Gait removes; cadence from the analog F1Z channel."""
    doc, printed = _mocap([str(pig_run)], settings, tmp_path, capsys)
    _summary_keys_as_metrics_json(doc)
    mk = doc["markers"]
    assert mk["marker_set"] == "Plug-in-Gait full body"
    assert (
        "chord function" in mk["joint_centres"]["left_knee"]
        and "LKneeWidth" in mk["joint_centres"]["left_knee"]
    )
    assert "run's pelvis markers" in mk["joint_centres"]["right_hip"]
    assert set(mk["model_outputs"]) == {f"{s}{j}Angles" for s in "LR" for j in ("Hip", "Knee", "Ankle")}
    ref = doc["reference"]
    assert set(ref) == {f"{j}_{s}" for j in ("knee", "hip", "ankle") for s in ("left", "right")}
    for side in ("left", "right"):
        knee = ref[f"knee_{side}"]
        assert knee["rmse_deg"] <= 5.0 and knee["r"] > 0.99 and knee["n"] == 4500 and knee["sign"] == 1
        hip = ref[f"hip_{side}"]
        assert hip["gaitway_angle"] == f"{side}_hip_flexion_deg"  # the trunk is there
        assert 8.0 < hip["offset_deg"] < 16.0 and hip["sd_deg"] < 3.0 and hip["r"] > 0.99
        assert "offset: Gaitway reads" in hip["convention"]
        ankle = ref[f"ankle_{side}"]
        assert ankle["offset_deg"] == pytest.approx(_gaitway_static_ankle(rbds, side), abs=3.0)
        assert ankle["sd_deg"] < 3.0 and ankle["r"] > 0.98
    c = doc["cadence"]
    assert c["truth_source"].startswith("force plate (F1Z") and c["truth_spm"] == pytest.approx(
        truth_spm, abs=0.3
    )
    assert abs(c["gaitway_spm"] - truth_spm) <= 2.0
    assert doc["summary"]["hip_flexion_ic_deg"]["n"] >= 80  # the full body gives a trunk
    assert "knee_left" in printed and "LKneeAngles" in printed


def test_vicon_cluster_model_acceptance(
    cluster_files: tuple[Path, Path],
    truth_spm: float,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The issue's acceptance on a Vicon cluster-marker-model C3D of running with its static trial: knee RMSE
    <= 5 deg per side against the file's own knee angles, cadence within 2 steps/min of the truth (the
    treadmill's force plate, counted here). The anatomical markers are only in the static trial: the joint
    centres are carried into the run by the thigh and shank clusters."""
    run, static = cluster_files
    # without its static trial the cluster run cannot place a knee: a clear error naming what is missing
    with pytest.raises(InputError, match=r"cluster_run_anatomical\.c3d: cannot build .*knee.*--static"):
        load_trial(run)
    doc, printed = _mocap([str(run), "--static", str(static)], settings, tmp_path, capsys)
    mk = doc["markers"]
    assert mk["marker_set"] == "cluster model with static calibration"
    assert "Runner:LKNE (static trial, carried by the L.thigh cluster)" in mk["joint_centres"]["left_knee"]
    assert "carried by the R.shank cluster" in mk["joint_centres"]["right_ankle"]
    assert mk["joint_centres"]["right_toe"] == "Runner:RTOE (static trial, carried by the R.foot cluster)"
    for side in ("left", "right"):
        knee = doc["reference"][f"knee_{side}"]
        assert knee["rmse_deg"] <= 5.0 and knee["r"] > 0.995, (side, knee)
        assert knee["reference_label"] == f"Runner:{SIDES[side]}KneeAngles"
        # no trunk: the hip is compared as the thigh angle, offset by the pelvis' tilt
        assert doc["reference"][f"hip_{side}"]["gaitway_angle"] == f"{side}_thigh_angle_deg"
    c = doc["cadence"]
    assert "heel" in c["truth_source"]  # no force plate in this file
    assert abs(c["gaitway_spm"] - truth_spm) <= 2.0 and abs(c["truth_spm"] - truth_spm) <= 1.0
    assert "cluster model" in printed


def test_cluster_model_with_static_joint_centre_channels(
    tmp_path: Path, rbds: _Rbds, model: _Model, truth_spm: float
) -> None:
    """The static trial holds the lab's joint-centre channels (LHJC LKJC LAJC) instead of the medial
    markers: they are carried into the run by the pelvis, thigh and shank clusters."""
    run, static = _cluster_files(tmp_path, rbds, model, channels=True)
    trial = load_trial(run, static)
    assert trial.centres.marker_set == "cluster model with static joint-centre channels"
    assert trial.centres.methods["left_knee"] == "Runner:LKJC (static trial, carried by the L.thigh cluster)"
    assert trial.centres.methods["right_hip"] == "Runner:RHJC (static trial, carried by the pelvis cluster)"
    ref = reference_agreement(trial)
    for side in ("left", "right"):
        assert ref[f"knee_{side}"]["rmse_deg"] <= 5.0
        # the hip centres are the reference's own: the thigh angle moves with its hip angle
        assert ref[f"hip_{side}"]["sd_deg"] < 3.0
    assert abs(mocap_document(trial)["cadence"]["gaitway_spm"] - truth_spm) <= 2.0


def test_reversed_sign_convention_is_stated(pig_run: Path) -> None:
    """A lab writing knee flexion negative (and with the long label form): compared after negating, the
    numbers are those of the positive form and the convention says so."""
    trial = load_trial(pig_run)
    plain = reference_agreement(trial)["knee_left"]
    outputs = {"LeftKneeAngles": -trial.run.outputs["LKneeAngles"]}
    flipped = reference_agreement(replace(trial, run=replace(trial.run, outputs=outputs)))
    assert set(flipped) == {"knee_left"}
    k = flipped["knee_left"]
    assert k["sign"] == -1 and "opposite sign" in k["convention"]
    for key in ("rmse_deg", "offset_deg", "r", "n"):
        assert k[key] == pytest.approx(plain[key])


def _write_qtm_tsv(path: Path, markers: dict[str, Array], rate: float) -> Path:
    """A Qualisys Track Manager 3D TSV export (mm) of ``markers`` (metres)."""
    names = list(markers)
    n = len(markers[names[0]])
    lines = [f"NO_OF_FRAMES\t{n}", "NO_OF_CAMERAS\t8", f"NO_OF_MARKERS\t{len(names)}", f"FREQUENCY\t{rate:g}",
             "NO_OF_ANALOG\t0", "ANALOG_FREQUENCY\t0", "DESCRIPTION\t--", "TIME_STAMP\t2024-05-01, 10:00:00",
             "DATA_INCLUDED\t3D", "MARKER_NAMES\t" + "\t".join(names),
             "Frame\tTime\t" + "\t".join(f"{m} {a}" for m in names for a in "XYZ")]  # fmt: skip
    table = np.concatenate([markers[m] * 1000.0 for m in names], axis=1)
    for i, row in enumerate(table):
        lines.append(f"{i + 1}\t{i / rate:.5f}\t" + "\t".join(f"{v:.3f}" for v in row))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_qualisys_tsv_with_plug_in_gait_labels_in_a_z_up_lab(
    tmp_path: Path, rbds: _Rbds, model: _Model, truth_spm: float
) -> None:
    """Plug-in-Gait lower-body markers as a QTM TSV in a Z-up lab (X forward, Y left) and as a C3D in the
    RBDS lab (Y up): the vertical is found, and every angle and metric is the same (the engine uses the
    runner's own axes). No subject measurements in either: the default widths are used, and said."""
    legs = _pig_markers(rbds, model, "left") | _pig_markers(rbds, model, "right")
    markers = _pelvis_markers(rbds.run) | legs
    to_z_up = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    tsv = _write_qtm_tsv(tmp_path / "pig.tsv", {k: v @ to_z_up.T for k, v in markers.items()}, 150.0)
    trial = load_trial(tsv)
    assert trial.run.format == "qtm_tsv" and trial.centres.marker_set == "Plug-in-Gait lower body"
    np.testing.assert_array_equal(trial.motion.up, [0.0, 0.0, 1.0])
    assert any("knee width ASSUMED 100 mm" in n for n in trial.centres.notes)
    c3d = load_trial(_write_c3d(tmp_path / "pig_lower.c3d", markers))
    np.testing.assert_array_equal(c3d.motion.up, [0.0, 1.0, 0.0])
    for key in ("left_knee_flexion_deg", "right_thigh_angle_deg", "left_ankle_dorsiflexion_deg"):
        np.testing.assert_allclose(trial.angles[key], c3d.angles[key], atol=0.01)  # the TSV keeps 1 um
    assert trial.result.summary["knee_flexion_ic_deg"].mean == pytest.approx(
        c3d.result.summary["knee_flexion_ic_deg"].mean, abs=0.01
    )
    assert math.isnan(trial.result.summary["hip_flexion_ic_deg"].mean)  # no trunk in the lower body
    assert abs(mocap_document(trial)["cadence"]["gaitway_spm"] - truth_spm) <= 2.0


def test_unlabelled_qualisys_sample_is_a_clear_cli_error(capsys: pytest.CaptureFixture[str]) -> None:
    """The QTM sample's markers are unlabelled (New 0000 ...): exit 2 with one line naming the marker sets
    expected and the labels found, no traceback."""
    assert cli.main(["evaluate", "mocap", str(TSV)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gaitway: error [invalid_input]: ") and err.count("\n") == 1
    assert "Traceback" not in err
    assert "Plug-in-Gait" in err and "cluster models" in err and "RBDS" in err
    assert "Measurement1.tsv (15 markers: New 0000, New 0002" in err and "none given (--static)" in err


def test_cli_argument_errors(settings: Settings) -> None:
    parser = argparse.ArgumentParser(prog="gaitway")
    cli_evaluate.add_parser(parser.add_subparsers(dest="command", required=True))
    run = str(RBDS / "RBDS001runT35.c3d")
    with pytest.raises(InputError, match="--offset needs --video"):
        cli_evaluate.run(parser.parse_args(["evaluate", "mocap", run, "--offset", "1.5"]), settings)
    with pytest.raises(InputError, match=r"nope\.mp4: video not found"):
        cli_evaluate.run(parser.parse_args(["evaluate", "mocap", run, "--video", "nope.mp4"]), settings)
    argv = ["evaluate", "mocap", run, "--video", "a.mp4", "b.mp4", "--offset", "1", "--offset", "2"]
    args = parser.parse_args([*argv, "--offset", "3"])
    assert args.video == [Path("a.mp4"), Path("b.mp4")]
    with pytest.raises(InputError, match="one per --video"):
        cli_evaluate.run(args, settings)


# ------------------------------------------------------------------------------------------------------------
# A video of the run, made from the markers (a perfect 2D model and lifter, a side camera)
# ------------------------------------------------------------------------------------------------------------


def _video_from_mocap(trial: Any, offset: float, seconds: float = 8.0) -> tuple[Array, Array, Keypoints2D]:
    """60 Hz 'video' frames starting ``offset`` s into the trial: the H36M-17 joints (legs from the markers,
    a synthetic upper body) seen by a static side camera 5 m away: exact 2D (COCO-17) and the camera-axis
    3D a perfect lifter would give."""
    t = np.arange(0.0, seconds, 1 / 60)
    up = np.asarray(trial.motion.up)
    joints = {k: resample(trial.motion.t, v, t + offset) for k, v in trial.motion.joints.items()}
    forward = estimate_forward(joints, up)
    lab17, _ = h36m17_from_legs(joints, up, forward)
    cam = side_camera(up, forward, np.nanmean(lab17[:, 0], axis=0), image_wh=(1920, 1080))
    kps3d = cam.to_camera(lab17)
    kps3d = kps3d - kps3d[:, :1]
    uv = cam.project(lab17)
    h36m = {name: i for i, name in enumerate(H36M17.joints)}
    source = {"nose": "neck_nose", "left_eye": "head", "right_eye": "head", "left_ear": "head",
              "right_ear": "head"}  # fmt: skip
    xy = np.ones((len(t), 17, 3))
    for k, name in enumerate(COCO17.joints):
        xy[:, k, :2] = uv[:, h36m[source.get(name, name)]]
    return t, kps3d, Keypoints2D(xy=xy, skeleton="coco17", image_wh=(1920, 1080))


def test_video_against_the_markers(cluster_files: tuple[Path, Path]) -> None:
    """A video made from the cluster trial's own joint centres, starting 7.3456 s into it: the offset is
    found by cross-correlating the knee angles (to 2 ms), the 3D joints agree to a few mm after the one
    camera-to-lab rotation, and the 2D sagittal and 3D angles agree with the markers' (exact projection:
    the 2D path's error is the perspective of a 5 m camera)."""
    trial = load_trial(*cluster_files)
    t, kps3d, kps2d = _video_from_mocap(trial, 7.3456)
    found = compare_video(trial, t, kps3d, kps2d, metric=True)
    assert found["sync"]["offset_s"] == pytest.approx(7.3456, abs=0.002)
    assert found["sync"]["ambiguity"] < 0.5 and not found["notes"]
    assert found["frames_compared"] == len(t)
    e = found["joints_3d"]
    assert e["units"] == "mm" and e["n_poses"] == len(t) and e["mpjpe"] < 5.0 and e["pa_mpjpe"] < 5.0
    assert set(e["joints"]) == {
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
    }
    for side in ("left", "right"):
        assert found["angles"]["3d"][f"{side}_knee_flexion_deg"]["rmse_deg"] < 0.5
        assert found["angles"]["2d"][f"{side}_knee_flexion_deg"]["rmse_deg"] < 2.0
        assert found["angles"]["2d"][f"{side}_thigh_angle_deg"]["rmse_deg"] < 2.0
    given = compare_video(trial, t, kps3d, kps2d, metric=True, offset_s=7.3456)
    assert given["sync"] == {"method": "given offset", "offset_s": 7.3456}
    assert given["joints_3d"]["mpjpe"] < 1.0
    # a wrong offset shows: half a stride off, the knees disagree by tens of degrees
    wrong = compare_video(trial, t, kps3d, kps2d, metric=True, offset_s=7.3456 + 0.35)
    assert wrong["angles"]["3d"]["left_knee_flexion_deg"]["rmse_deg"] > 20.0
    with pytest.raises(NoValidDataError, match="do not overlap"):
        compare_video(trial, t, kps3d, kps2d, metric=True, offset_s=100.0)
