"""An analysis in the files a biomechanics lab opens: C3D (Vicon Nexus, Visual3D, Mokka, pyCGM2, Kinetics
Toolkit), TRC markers and MOT joint angles (OpenSim, Pose2Sim).

:func:`write_lab_exports` writes all three from an analysis; :func:`lab_trial` gathers what they hold into a
:class:`LabTrial`, and :func:`write_c3d`, :func:`write_trc` and :func:`write_mot` write one file each.

Points
------
The 17 H36M joints the lifter gives, named as the Pose2Sim marker sets name the same points (HALPE_26,
COCO_17, BODY_25: ``Hip``, ``RHip``, ``RKnee``, ``RAnkle``, ``Neck``, ``Nose``, ``Head``, ``LShoulder``,
...), so Pose2Sim's OpenSim models, scaling and inverse-kinematics set-ups take them as they are; H36M's
lumbar point, which no Pose2Sim set has, is ``Spine`` (:data:`MARKERS`). They are joint centres lifted from
one video, not skin markers: root-relative (the ``Hip`` point, the pelvis, stays at the origin, since a
single camera does not observe where the body is) and without feet (no heel or toe point in 3D).

Lab frame
---------
One fixed right-handed frame per clip, as Vicon's: **X** the runner's mean facing direction (horizontal),
**Y** to the runner's left, **Z** up (:func:`lab_rotation`; the facing and vertical directions are the
kinematics engine's own, :func:`services.kinematics.angles.body_axes`). The TRC uses OpenSim's ground frame
instead: **X** forward, **Y** up, **Z** to the right, i.e. ``(X, Z, -Y)`` of the lab frame.

Units and scale
---------------
C3D points are millimetres (``POINT:UNITS = mm``), TRC markers metres (``Units = m``): both are written only
when the 3D is metric (the analysis was given the runner's height). Without a scale the lifter's units are
no length a lab tool can use, so the C3D and the TRC are not written (:class:`LabExports` says why), rather
than written in units every tool would read as millimetres or metres. The MOT holds angles, which need no
scale, and is written either way.

Time base
---------
Every file is on one uniform grid at the analysis' true frame rate (``1 / median frame interval`` of the real
times, so a slow-motion clip gets its capture rate): ``POINT:RATE`` of the C3D, ``DataRate`` of the TRC, the
``time`` column of the MOT. Times count seconds from the clip's first analysed frame (frame 1 = 0 s). Frames
whose times lie off that grid (variable frame rate) are linearly interpolated onto it
(:func:`services.kinematics.evaluate.resample`); missing values stay missing.

Gait events
-----------
The foot strikes and toe-offs the kinematics engine detected (``KinematicsResponse.events``), in the C3D's
``EVENT`` group as Vicon writes them: ``CONTEXTS`` ``Left``/``Right``, ``LABELS`` ``Foot Strike``/``Foot
Off``, ``TIMES`` as (minutes, seconds) pairs, ``ICON_IDS`` 1 (strike) / 2 (off), ``GENERIC_FLAGS`` 0.

Joint angles (MOT)
------------------
The angle series Gaitway reports (``KinematicsResponse.series``: low-passed, each from the source the
engine chose for the clip, named in the header), under the OpenSim coordinate names of the Rajagopal and
Pose2Sim models (:data:`MOT_COORDINATES`), in degrees, with their sign conventions:

* ``hip_flexion_r/l`` = hip flexion, positive = flexion. Gaitway measures the thigh against the trunk line
  (it sees no pelvis orientation), so the pelvis is taken to move with the trunk:
* ``pelvis_tilt`` = minus the trunk's forward lean (OpenSim: positive = posterior tilt, the trunk rotating
  backwards); ``lumbar_extension`` (Pose2Sim: ``L5_S1_Flex_Ext``) is not written and keeps its default 0.
* ``knee_angle_r/l`` = knee flexion, positive = flexion (Rajagopal, Pose2Sim; gait2392 counts flexion
  negative: negate the column for that model).
* ``ankle_angle_r/l`` = ankle dorsiflexion, positive = dorsiflexion, 0 = heel-toe line perpendicular to the
  shank (no static-trial offset removed); only where the 2D keypoints have heels and toes (Halpe-26).
* ``elbow_flex_r/l`` = elbow flexion, positive = flexion.

OpenSim's motion reader (``Storage``, which the GUI's "Load Motion" uses) stops at the first missing value,
so the MOT has none (:func:`mot_table`): short gaps are bridged, a coordinate missing over a longer stretch
is left out, and rows at either end where a written coordinate is unknown are cropped; the header says what
was done. Missing markers are empty fields in the TRC (OpenSim's inverse kinematics skips them) and points
with residual -1 in the C3D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import ezc3d
import numpy as np

from services.errors import InputError, ShapeError
from services.kinematics.angles import body_axes
from services.kinematics.evaluate import resample
from services.kinematics.model import FloatArray, motion_from_h36m
from services.kinematics.schema import KinematicsResponse
from services.pose.sequence import fill_gaps, frame_rate
from services.pose.skeletons import H36M17

if TYPE_CHECKING:
    from services.pose.pipeline import AnalysisResult

__all__ = [
    "C3D_FILE",
    "EVENT_LABELS",
    "MARKERS",
    "MAX_BRIDGED_GAP_S",
    "MOT_COORDINATES",
    "MOT_FILE",
    "TRC_FILE",
    "LabEvent",
    "LabExports",
    "LabTrial",
    "MotTable",
    "lab_rotation",
    "lab_trial",
    "mot_table",
    "trial_from_poses",
    "write_c3d",
    "write_lab_exports",
    "write_mot",
    "write_trc",
]

#: file names of the exports in an analysis folder (artifact name -> file)
C3D_FILE = "gait.c3d"
TRC_FILE = "markers.trc"
MOT_FILE = "angles.mot"

#: marker name (Pose2Sim) -> the H36M-17 joint it is (:data:`services.pose.skeletons.H36M17`), in H36M order
MARKERS: dict[str, str] = {
    "Hip": "pelvis", "RHip": "right_hip", "RKnee": "right_knee", "RAnkle": "right_ankle",
    "LHip": "left_hip", "LKnee": "left_knee", "LAnkle": "left_ankle", "Spine": "spine", "Neck": "thorax",
    "Nose": "neck_nose", "Head": "head", "LShoulder": "left_shoulder", "LElbow": "left_elbow",
    "LWrist": "left_wrist", "RShoulder": "right_shoulder", "RElbow": "right_elbow", "RWrist": "right_wrist",
}  # fmt: skip

#: OpenSim coordinate -> (Gaitway angle series, sign applied); conventions in the module docstring
MOT_COORDINATES: dict[str, tuple[str, float]] = {
    "pelvis_tilt": ("trunk_lean_deg", -1.0),
    "hip_flexion_r": ("right_hip_flexion_deg", 1.0),
    "hip_flexion_l": ("left_hip_flexion_deg", 1.0),
    "knee_angle_r": ("right_knee_flexion_deg", 1.0),
    "knee_angle_l": ("left_knee_flexion_deg", 1.0),
    "ankle_angle_r": ("right_ankle_dorsiflexion_deg", 1.0),
    "ankle_angle_l": ("left_ankle_dorsiflexion_deg", 1.0),
    "elbow_flex_r": ("right_elbow_flexion_deg", 1.0),
    "elbow_flex_l": ("left_elbow_flexion_deg", 1.0),
}

#: gait event kind -> (C3D label, Vicon icon id)
EVENT_LABELS: dict[str, tuple[str, int]] = {"strike": ("Foot Strike", 1), "toe_off": ("Foot Off", 2)}
_CONTEXTS = {"left": "Left", "right": "Right"}
#: the C3D parameter type code of 16-bit integers
_C3D_INT = 2
#: frames off the uniform grid by more than this fraction of a frame interval are resampled onto it
_GRID_TOLERANCE = 0.01
#: longest gap (seconds) inside an angle series that the MOT bridges (the 2D keypoints' own limit)
MAX_BRIDGED_GAP_S = 0.1
#: the MOT header's conventions (no "=" in it: OpenSim reads "key=value" header lines as metadata)
_MOT_SIGNS = (
    "Sign conventions (degrees): hip_flexion positive for flexion (the thigh against the trunk line); "
    "pelvis_tilt is minus the trunk's forward lean, positive for posterior tilt (the pelvis is taken to "
    "move with the trunk; lumbar_extension is not written and stays 0); knee_angle positive for flexion "
    "(Rajagopal and Pose2Sim models; negate it for gait2392); ankle_angle positive for dorsiflexion (0 with "
    "the heel-toe line perpendicular to the shank); elbow_flex positive for flexion."
)


@dataclass(frozen=True)
class LabEvent:
    """A gait event on the lab files' time base."""

    side: str  # "left" | "right"
    kind: str  # "strike" | "toe_off"
    t: float  # seconds from the first frame


@dataclass(frozen=True)
class LabTrial:
    """What the lab files hold: an analysis on a uniform time grid, in the lab frame.

    ``t`` ``(M,)`` is ``i / rate_hz``; ``markers`` maps each name of :data:`MARKERS` to ``(M, 3)`` positions
    in the lab frame (X forward, Y left, Z up), in metres when ``metric`` (else in ``units``); ``angles`` maps
    Gaitway angle series names to ``(M,)`` degrees, ``angle_sources`` each to its source ("2d", "3d", ...).
    NaN = missing."""

    rate_hz: float
    t: FloatArray
    markers: dict[str, FloatArray]
    metric: bool
    units: str
    events: tuple[LabEvent, ...] = ()
    angles: dict[str, FloatArray] = field(default_factory=dict)
    angle_sources: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        t = np.asarray(self.t)
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise InputError(f"rate_hz must be a positive frame rate, got {self.rate_hz}")
        if t.ndim != 1 or t.size < 1:
            raise ShapeError(f"t must be shaped (M,) with M >= 1, got {t.shape}")
        for name, arr in self.markers.items():
            if np.shape(arr) != (t.size, 3):
                raise ShapeError(f"marker {name!r} must be shaped ({t.size}, 3), got {np.shape(arr)}")
        for name, arr in self.angles.items():
            if np.shape(arr) != (t.size,):
                raise ShapeError(f"angle {name!r} must be shaped ({t.size},), got {np.shape(arr)}")


@dataclass(frozen=True)
class LabExports:
    """The files :func:`write_lab_exports` wrote (artifact name -> path) and why each other one was not."""

    paths: dict[str, Path]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """One sentence per reason a file was not written (files skipped for the same reason share it),
        for the analysis' warnings."""
        by_reason: dict[str, list[str]] = {}
        for name, why in self.skipped.items():
            by_reason.setdefault(why, []).append(name)
        return [
            f"{' and '.join(names)} export{'s' if len(names) > 1 else ''} not written: {why}"
            for why, names in by_reason.items()
        ]


# --------------------------------------------------------------------------------------------------------
# from an analysis to a LabTrial


def lab_rotation(forward: FloatArray, up: FloatArray) -> FloatArray:
    """The ``(3, 3)`` rotation whose rows are the lab axes X (forward), Y (left), Z (up) in the source frame.

    ``forward`` ``(T, 3)`` per-frame facing directions (NaN rows ignored) or ``(3,)``; ``up`` ``(3,)``. X is
    the mean facing direction made horizontal, Z = ``up``, Y = Z x X; the rotation is proper (det +1), so a
    right-handed source frame gives a right-handed lab frame. ``lab = source @ R.T``."""
    z = np.asarray(up, np.float64)
    z = z / np.linalg.norm(z)
    f = np.atleast_2d(np.asarray(forward, np.float64))
    f = f[np.all(np.isfinite(f), axis=1)]
    if f.size == 0:
        raise InputError("cannot set the lab frame: the runner's facing direction is never known")
    x = f.mean(axis=0)
    x -= x.dot(z) * z
    if np.linalg.norm(x) < 1e-6:  # the runner faced both ways equally: take the first frame's direction
        x = f[0] - f[0].dot(z) * z
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def _grid(t: FloatArray) -> tuple[float, FloatArray, bool]:
    """(rate, uniform times from t[0], whether ``t`` lies on that grid)."""
    rate = round(frame_rate(t), 6)
    n = round(float(t[-1] - t[0]) * rate) + 1
    grid = t[0] + np.arange(n) / rate
    on = n == t.size and float(np.max(np.abs(grid - t))) <= _GRID_TOLERANCE / rate
    return rate, grid, on


def trial_from_poses(
    t: FloatArray,
    pose3d: FloatArray,
    *,
    metric: bool,
    units: str,
    metrics: KinematicsResponse | None = None,
    description: str = "",
) -> LabTrial:
    """The lab trial of H36M-17 poses ``pose3d`` ``(T, 17, 3)`` in camera axes (x right, y down, z away;
    :func:`services.kinematics.model.motion_from_h36m`) at real times ``t`` ``(T,)`` seconds, in metres when
    ``metric`` (else in ``units``), with the gait events and angle series of ``metrics`` when given.

    The joints are turned into the lab frame (:func:`lab_rotation` of the runner's axes) and everything is put
    on the uniform grid of the frame rate (see the module docstring). Raises :class:`InputError` (shapes,
    times) as :func:`services.kinematics.angles.body_axes` does."""
    t = np.asarray(t, np.float64)
    pose = np.asarray(pose3d, np.float64)
    if t.ndim != 1 or t.size < 2:
        raise ShapeError(f"t must be shaped (T,) with T >= 2 (a frame rate is needed), got {t.shape}")
    if pose.shape != (t.size, H36M17.num_joints, 3):
        raise ShapeError(f"3D poses must be shaped ({t.size}, 17, 3), got {pose.shape}")
    forward, up, _ = body_axes(motion_from_h36m(t, pose, metric=metric))
    lab = pose @ lab_rotation(forward, up).T
    rate, grid, on_grid = _grid(t)
    if not on_grid:
        lab = resample(t, lab, grid)
    markers = {name: lab[:, H36M17.index(joint)] for name, joint in MARKERS.items()}
    events: tuple[LabEvent, ...] = ()
    angles: dict[str, FloatArray] = {}
    sources: dict[str, str] = {}
    if metrics is not None:
        events = tuple(
            LabEvent(side=e.side, kind=e.kind, t=float(e.t) - float(t[0]))
            for e in sorted(metrics.events, key=lambda e: e.t)
            if e.kind in EVENT_LABELS and e.side in _CONTEXTS
        )
        mt = np.asarray(metrics.t, np.float64)
        same = on_grid and mt.shape == t.shape
        same = same and bool(np.allclose(mt, t, rtol=0, atol=_GRID_TOLERANCE / rate))
        wanted = {series for series, _ in MOT_COORDINATES.values()}
        for name in sorted(wanted & set(metrics.series)):
            values = np.array([np.nan if v is None else v for v in metrics.series[name]], np.float64)
            if values.shape != mt.shape:
                raise ShapeError(f"series {name!r} has {values.size} values for {mt.size} times")
            angles[name] = values if same else resample(mt, values, grid)
            sources[name] = metrics.series_sources.get(name, "")
    return LabTrial(
        rate_hz=rate,
        t=grid - grid[0],
        markers=markers,
        metric=metric,
        units="m" if metric else units,
        events=events,
        angles=angles,
        angle_sources=sources,
        description=description or "Gaitway analysis",
    )


def lab_trial(
    result: AnalysisResult, metrics: KinematicsResponse | None, *, name: str | None = None
) -> LabTrial:
    """The lab trial of an analysis (:func:`trial_from_poses` of its 3D poses) and, when ``metrics`` is given
    (running metrics were computed), of its gait events and angle series. ``name``: how the files' headers
    name the video (default: its file name)."""
    return trial_from_poses(
        result.t,
        result.kps3d,
        metric=result.sequence.metric,
        units=result.sequence.units3d,
        metrics=metrics,
        description=f"Gaitway analysis of {name or Path(result.info.path).name}",
    )


# --------------------------------------------------------------------------------------------------------
# writers


def _require_metric(trial: LabTrial) -> None:
    """C3D and TRC hold lengths: refuse a 3D pose in the lifter's own units."""
    if not trial.metric:
        raise InputError(
            f"a metric 3D pose is needed, but this analysis is in {trial.units}: "
            "give the runner's height (--height) to scale it to metres"
        )


def _int_parameter(c3d: ezc3d.c3d, group: str, name: str, values: list[int]) -> None:
    """Add an integer parameter (ezc3d's ``add_parameter`` stores Python integers as floats)."""
    c3d.add_parameter(group, name, np.asarray(values, np.float64))
    c3d["parameters"][group][name]["type"] = _C3D_INT
    c3d["parameters"][group][name]["value"] = np.asarray(values, np.int64)


def write_c3d(trial: LabTrial, path: Path) -> None:
    """The trial as a C3D file: the markers in millimetres (lab frame, ``POINT:UNITS mm``) at
    ``POINT:RATE = trial.rate_hz``, missing points with residual -1, the gait events in the ``EVENT`` group,
    no analog channels. Raises :class:`InputError` when the trial is not metric."""
    _require_metric(trial)
    c3d = ezc3d.c3d()
    names = list(trial.markers)
    points = np.stack([trial.markers[n] for n in names], axis=1) * 1000.0  # (M, N, 3) mm
    data = np.ones((4, len(names), trial.t.size))
    data[:3] = points.transpose(2, 1, 0)
    c3d["parameters"]["POINT"]["RATE"]["value"] = [trial.rate_hz]
    c3d["parameters"]["POINT"]["LABELS"]["value"] = names
    c3d["parameters"]["POINT"]["DESCRIPTIONS"]["value"] = [
        f"{MARKERS[n]} (H36M joint centre lifted from video)" if n in MARKERS else n for n in names
    ]
    c3d["parameters"]["POINT"]["UNITS"]["value"] = ["mm"]
    c3d["data"]["points"] = data
    residuals = np.where(np.all(np.isfinite(points), axis=2), 0.0, -1.0).T[None]  # (1, N, M)
    c3d["data"]["meta_points"]["residuals"] = residuals
    c3d.add_parameter("POINT", "X_SCREEN", ["+X"])
    c3d.add_parameter("POINT", "Y_SCREEN", ["+Z"])
    c3d.add_parameter("MANUFACTURER", "COMPANY", ["Gaitway"])
    c3d.add_parameter("MANUFACTURER", "SOFTWARE", ["gaitway"])
    c3d.add_parameter("SUBJECTS", "NAMES", [""])
    _int_parameter(c3d, "SUBJECTS", "USES_PREFIXES", [0])
    events = trial.events
    minutes = [math.floor(e.t / 60.0) for e in events]
    _int_parameter(c3d, "EVENT", "USED", [len(events)])
    if events:
        labels = [EVENT_LABELS[e.kind][0] for e in events]
        c3d.add_parameter("EVENT", "CONTEXTS", [_CONTEXTS[e.side] for e in events])
        c3d.add_parameter("EVENT", "LABELS", labels)
        c3d.add_parameter(
            "EVENT", "DESCRIPTIONS", [f"{label} detected by Gaitway from video" for label in labels]
        )
        c3d.add_parameter("EVENT", "SUBJECTS", [""] * len(events))
        times = [[float(m) for m in minutes], [e.t - 60.0 * m for e, m in zip(events, minutes, strict=True)]]
        c3d.add_parameter("EVENT", "TIMES", np.array(times, np.float64))
        _int_parameter(c3d, "EVENT", "ICON_IDS", [EVENT_LABELS[e.kind][1] for e in events])
        _int_parameter(c3d, "EVENT", "GENERIC_FLAGS", [0] * len(events))
    path.parent.mkdir(parents=True, exist_ok=True)
    c3d.write(str(path))


def _cell(v: float, digits: int) -> str:
    """``v`` with ``digits`` decimals (never "-0.000"), empty when missing."""
    return f"{round(v, digits) + 0.0:.{digits}f}" if math.isfinite(v) else ""


def write_trc(trial: LabTrial, path: Path) -> None:
    """The trial as an OpenSim marker file (TRC): OpenSim's ground frame (X forward, Y up, Z right), metres,
    one row per frame with its number (from 1) and time, missing markers as empty fields. Raises
    :class:`InputError` when the trial is not metric."""
    _require_metric(trial)
    names = list(trial.markers)
    n = trial.t.size
    rate = f"{trial.rate_hz:.6g}"
    lines = [
        f"PathFileType\t4\t(X/Y/Z)\t{path.name}",
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
        f"{rate}\t{rate}\t{n}\t{len(names)}\tm\t{rate}\t1\t{n}",
        "Frame#\tTime\t" + "\t".join(f"{name}\t\t" for name in names).rstrip("\t"),
        "\t\t" + "\t".join(f"X{i}\tY{i}\tZ{i}" for i in range(1, len(names) + 1)),
        "",
    ]
    opensim = np.stack([trial.markers[name] for name in names], axis=1)[..., [0, 2, 1]] * [1.0, 1.0, -1.0]
    for i in range(n):
        cells = [_cell(float(v), 6) for v in opensim[i].ravel()]
        lines.append(f"{i + 1}\t{trial.t[i]:.6f}\t" + "\t".join(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class MotTable:
    """What the MOT file holds: ``time`` ``(R,)`` seconds, OpenSim coordinate -> ``(R,)`` degrees (complete:
    no NaN), and each coordinate of :data:`MOT_COORDINATES` left out -> why."""

    time: FloatArray
    columns: dict[str, FloatArray]
    left_out: dict[str, str]
    bridged: dict[str, int]  # coordinate -> frames whose short gap was bridged


def mot_table(trial: LabTrial) -> MotTable:
    """The trial's angles as OpenSim coordinates (:data:`MOT_COORDINATES`, signs applied), complete in every
    row, because OpenSim's motion reader (``Storage``, the GUI's) stops at the first missing value:

    * gaps inside a series up to :data:`MAX_BRIDGED_GAP_S` are bridged
      (:func:`services.pose.sequence.fill_gaps`, the rule the 2D keypoints follow);
    * a series missing in every frame, or over a longer gap inside the clip, is left out;
    * rows before the first or after the last frame where every kept series is known are cropped (the file
      keeps the trial's times, so it stays aligned with the C3D and TRC)."""
    t = np.asarray(trial.t, np.float64)
    columns: dict[str, FloatArray] = {}
    left_out: dict[str, str] = {}
    bridged: dict[str, int] = {}
    for coord, (series, sign) in MOT_COORDINATES.items():
        values = trial.angles.get(series)
        if values is None or not np.isfinite(values).any():
            left_out[coord] = "not measured in this clip"
            continue
        known = np.isfinite(values)
        packed = np.stack([np.where(known, values, 0.0), np.zeros_like(t), known.astype(np.float64)], axis=-1)
        filled, was_filled = fill_gaps(packed[:, None, :], t, min_score=0.5, max_gap_s=MAX_BRIDGED_GAP_S)
        out = sign * filled[:, 0, 0]
        ok = np.flatnonzero(np.isfinite(out))
        if not np.isfinite(out[ok[0] : ok[-1] + 1]).all():
            left_out[coord] = f"missing over more than {MAX_BRIDGED_GAP_S:g} s inside the clip"
            continue
        columns[coord] = out
        if was_filled.any():
            bridged[coord] = int(was_filled.sum())
    if not columns:
        return MotTable(time=t[:0], columns={}, left_out=left_out, bridged={})
    complete = np.all(np.isfinite(np.stack(list(columns.values()))), axis=0)
    rows = np.flatnonzero(complete)
    keep = slice(int(rows[0]), int(rows[-1]) + 1) if rows.size else slice(0, 0)
    return MotTable(
        time=t[keep], columns={c: v[keep] for c, v in columns.items()}, left_out=left_out, bridged=bridged
    )


def write_mot(trial: LabTrial, path: Path) -> None:
    """The trial's joint angles as an OpenSim motion file (MOT, ``inDegrees=yes``): ``time`` and the OpenSim
    coordinates of :func:`mot_table`, with the sign conventions, each column's source and what was left out or
    bridged in the header. Raises :class:`InputError` when no angle can be written."""
    table = mot_table(trial)
    if not table.columns or table.time.size == 0:
        raise InputError(
            "no joint angle was measured in any frame: there is nothing to write to a motion file"
        )
    names = list(table.columns)
    sources = ", ".join(f"{c} {trial.angle_sources.get(MOT_COORDINATES[c][0]) or 'unknown'}" for c in names)
    header = [
        "Coordinates",
        "version=1",
        f"nRows={table.time.size}",
        f"nColumns={len(names) + 1}",
        "inDegrees=yes",
        "",
        f"{trial.description}: the joint angles Gaitway reports, under OpenSim coordinate names.",
        _MOT_SIGNS,
        "Sources (2d: 2D sagittal keypoints, 2d_corrected: the same with the view undone, 3d: lifted 3D): "
        f"{sources}.",
    ]
    header += [f"{c} left out: {why}." for c, why in table.left_out.items()]
    header += [f"{c}: {n} frames bridged over short gaps." for c, n in table.bridged.items()]
    header.append("endheader")
    lines = [*header, "\t".join(["time", *names])]
    data = np.column_stack([table.time, *table.columns.values()])
    for row in data:
        lines.append("\t".join([f"{row[0]:.6f}", *(_cell(v, 4) for v in row[1:])]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_lab_exports(
    result: AnalysisResult, metrics: KinematicsResponse | None, out_dir: Path, *, name: str | None = None
) -> LabExports:
    """Write the C3D, TRC and MOT files of an analysis into ``out_dir`` (names :data:`C3D_FILE`,
    :data:`TRC_FILE`, :data:`MOT_FILE`; artifact names ``c3d``, ``trc``, ``mot``).

    The C3D and the TRC need a metric 3D pose (the runner's height) and the MOT the running metrics' angle
    series; a file that cannot be written is left out, with the reason in :attr:`LabExports.skipped`.
    ``name``: how the files' headers name the video (default: its file name)."""
    try:
        trial = lab_trial(result, metrics, name=name)
    except InputError as exc:  # e.g. the runner's facing never seen: the other artifacts still stand
        return LabExports(paths={}, skipped=dict.fromkeys(("c3d", "trc", "mot"), str(exc)))
    paths: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    writers = (("c3d", C3D_FILE, write_c3d), ("trc", TRC_FILE, write_trc), ("mot", MOT_FILE, write_mot))
    for name, filename, write in writers:
        if name == "mot" and metrics is None:
            skipped[name] = "the running metrics (and their joint angles) were not computed"
            continue
        try:
            write(trial, out_dir / filename)
        except InputError as exc:
            skipped[name] = str(exc)
            continue
        paths[name] = out_dir / filename
    return LabExports(paths=paths, skipped=skipped)
