"""Motion-capture input: marker files in, :class:`~services.kinematics.model.Motion` (joint centres) out.

Readers (all return :class:`MarkerData`, positions in metres, NaN where a marker is missing):

* :func:`read_c3d` -- any C3D file, through ezc3d (``POINT:LABELS``, ``POINT:UNITS``, ``POINT:RATE``; points
  with a negative residual or exactly (0, 0, 0) are missing).
* :func:`read_qualisys_tsv` -- Qualisys Track Manager 3D TSV export (key/value header, then
  ``Frame  Time  <marker> X  <marker> Y  <marker> Z ...``), millimetres.
* :func:`read_rbds_txt` -- the Running Biomechanics Data Set text files (``Time`` then ``<marker>X/Y/Z``), mm.
* :func:`read_markers` -- picks one of the above from the file's suffix and content.

Joint centres from any supported marker set (:func:`lab_joint_centres`, :func:`lab_motion`): the labels' roles
come from :mod:`services.kinematics.markersets` (RBDS, Plug-in-Gait lower and full body, cluster models with a
static calibration trial, joint-centre channels such as ``LHJC`` / ``LKJC`` / ``LAJC``), then:

1. **Calibration** (the CAST approach, Cappozzo et al. 1995, Clin Biomech 10:171-178): in the static trial
   every anatomical landmark is expressed relative to its segment's tracking cluster (the segment's markers
   seen in both trials: pelvis ASIS/PSIS/SACR/iliac crests; thigh and shank clusters or wands; foot markers).
2. **Tracking**: in every running frame the cluster's pose is the least-squares rigid transform (rotation by
   SVD, Söderkvist & Wedin 1993, J Biomech 26:1473-1477, with the reflection fix of Kabsch / Umeyama) from the
   static cluster to the visible cluster markers (at least 3), and the landmarks follow it. A landmark that
   is also in the run is taken from the run, its gaps filled from the carried position.
3. **Joint centres**: hip = the lab's channel, else Harrington et al. (2007) regression from the pelvis
   markers (of the static trial when there is one; Bell et al. 1990 as an option, :data:`HJC_METHODS`); knee
   and ankle = the lab's channel, else the midpoint of the epicondyle / malleolus markers, else Plug-in-Gait's
   chord function from the lateral and wand markers (:func:`chord_joint_centre`); heel and toe markers
   (RBDS: heel bottom and ``MT2``, a static-only landmark carried by the foot cluster); pelvis = midpoint of
   the hips.

RBDS (Fukuchi, Fukuchi & Duarte 2017, PeerJ 5:e3298) goes through the same code (:func:`rbds_motion`).
Markers whose labels were swapped between the static and the running trial are found from the clusters'
inter-marker distances and repaired (:func:`match_cluster_labels`; RBDS001's running trials swap ``R.MT1`` and
``R.MT5``).

Gaps: interior gaps up to ``max_gap_s`` are filled by a cubic spline through the valid samples
(:func:`fill_gaps`); longer gaps and gaps at the ends stay NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.errors import InputError, NoValidDataError
from services.kinematics.markersets import (
    JOINT_CENTRE_ROLES,
    SIDE_LETTER,
    SUPPORTED_MARKER_SETS,
    Roles,
    assign_roles,
    describe_marker_set,
    normalise_label,
)
from services.kinematics.model import FloatArray, Motion

__all__ = [
    "DEFAULT_ANKLE_WIDTH_MM",
    "DEFAULT_KNEE_WIDTH_MM",
    "DEFAULT_MARKER_DIAMETER_MM",
    "DEFAULT_MAX_GAP_S",
    "ESSENTIAL_JOINTS",
    "HJC_METHODS",
    "LABEL_CHECK_TOLERANCE_M",
    "MOTION_JOINTS",
    "JointCentres",
    "MarkerData",
    "SegmentCalibration",
    "VerticalForce",
    "calibrate_segment",
    "chord_joint_centre",
    "fill_gaps",
    "hip_joint_centres",
    "lab_joint_centres",
    "lab_motion",
    "lowpass",
    "match_cluster_labels",
    "motion_from_markers",
    "rbds_joint_centres",
    "rbds_motion",
    "read_c3d",
    "read_force_plates",
    "read_markers",
    "read_qualisys_tsv",
    "read_rbds_txt",
    "standing_foot_angles",
    "track_segment",
    "vertical_axis",
]

#: joint names a Motion may hold (see services.kinematics.model)
MOTION_JOINTS = (
    "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_toe", "right_toe", "thorax", "neck", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip

#: metres per unit
_UNIT_SCALE = {"mm": 1e-3, "cm": 1e-2, "dm": 1e-1, "m": 1.0}

#: default longest gap (seconds) that :func:`fill_gaps` fills
DEFAULT_MAX_GAP_S = 0.1


# ------------------------------------------------------------------------------------------------------------
# Marker data and readers
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarkerData:
    """Marker trajectories of one trial, in the file's lab frame, converted to metres."""

    t: FloatArray  # (T,) seconds
    markers: dict[str, FloatArray]  # label -> (T, 3) metres, NaN where missing
    rate_hz: float
    source: str  # the file it came from
    source_units: str = "mm"  # the file's length unit (converted to metres here)
    format: str = ""  # "c3d" | "qtm_tsv" | "rbds_txt" | "" (built in memory)
    header: dict[str, tuple[str, ...]] = field(default_factory=dict)  # file metadata (e.g. the QTM header)
    #: the lab software's model outputs (C3D points such as ``LKneeAngles``), label -> (T, 3) in the file's
    #: own units (degrees for angles), NaN where missing; never among ``markers``
    outputs: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.t.shape[0])

    @property
    def labels(self) -> list[str]:
        return list(self.markers)

    def marker(self, name: str) -> FloatArray:
        """One marker's (T, 3) trajectory; InputError naming the file when it is absent."""
        try:
            return self.markers[name]
        except KeyError:
            raise InputError(
                f"{self.source}: marker {name!r} not found (markers: {', '.join(self.markers) or 'none'})"
            ) from None

    def valid(self, name: str) -> NDArray[np.bool_]:
        """(T,) frames where the marker has a position."""
        return np.isfinite(self.marker(name)).all(axis=1)


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if not p.is_file():
        raise InputError(f"{p}: not a file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty")
    return p


def _unit_scale(units: str, source: Path) -> float:
    u = units.strip().lower()
    if u not in _UNIT_SCALE:
        raise InputError(
            f"{source}: unsupported length unit {units!r} (expected one of {', '.join(_UNIT_SCALE)})"
        )
    return _UNIT_SCALE[u]


def _unique(labels: Sequence[str]) -> list[str]:
    """Labels made unique (a repeated label gets a ``#2``, ``#3`` ... suffix)."""
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        n = seen.get(lab, 0) + 1
        seen[lab] = n
        out.append(lab if n == 1 else f"{lab}#{n}")
    return out


def _param(params: Mapping[str, Any], group: str, name: str) -> Any:
    try:
        return params[group][name]["value"]
    except (KeyError, TypeError):
        return None


def read_c3d(path: str | Path, *, zero_is_missing: bool = True) -> MarkerData:
    """Marker trajectories of a C3D file (ezc3d), in metres.

    Point labels come from ``POINT:LABELS`` (then ``LABELS2``, ``LABELS3`` ... for large files), units from
    ``POINT:UNITS`` (mm when absent), the rate from ``POINT:RATE`` (else the header). Points listed as model
    outputs (``POINT:ANGLES``, ``FORCES``, ``MOMENTS``, ``POWERS``, ``SCALARS``, ``REACTIONS``) or named like
    one (``...Angles``, ``...Moment``, ``...Power``, ``...Force``, ``...GRF``) are not markers: they go to
    :attr:`MarkerData.outputs` unscaled (degrees for angles). A point is missing (NaN) when its residual is
    negative or, with ``zero_is_missing``, when it is exactly (0, 0, 0), the way many systems write gaps.
    ``t`` starts at the first frame's time, ``first_frame / rate``. The numeric ``PROCESSING`` parameters
    (Plug-in-Gait's subject measurements: ``LKneeWidth``, ``MarkerDiameter`` ... in mm) are kept in
    :attr:`MarkerData.header` as ``"PROCESSING:<name>"``.
    """
    p = _check_file(path)
    try:
        import ezc3d
    except ImportError as err:  # pragma: no cover - ezc3d is a dependency
        raise InputError(f"{p}: reading C3D needs the ezc3d package ({err})") from err
    try:
        c3d = ezc3d.c3d(str(p))
    except Exception as err:  # ezc3d raises plain RuntimeError/IOError on bad input
        raise InputError(f"{p}: not a readable C3D file ({err})") from err

    params = c3d["parameters"]
    points = np.asarray(c3d["data"]["points"], np.float64)  # (4, N, T)
    if points.ndim != 3 or points.shape[1] == 0 or points.shape[2] == 0:
        raise InputError(f"{p}: C3D file holds no 3D points")
    n_points, n_frames = points.shape[1], points.shape[2]

    labels: list[str] = []
    for key in ["LABELS"] + [f"LABELS{i}" for i in range(2, 100)]:
        value = _param(params, "POINT", key)
        if value is None:
            break
        labels.extend(str(v).strip() for v in value)
    labels = labels[:n_points] + [f"POINT{i + 1}" for i in range(len(labels), n_points)]
    labels = [lab or f"POINT{i + 1}" for i, lab in enumerate(labels)]

    not_markers: set[str] = set()
    for key in ("ANGLES", "FORCES", "MOMENTS", "POWERS", "SCALARS", "REACTIONS"):
        value = _param(params, "POINT", key)
        if value is not None:
            not_markers.update(str(v).strip() for v in value)

    units_value = _param(params, "POINT", "UNITS")
    units = str(units_value[0]).strip() if units_value is not None and len(units_value) else "mm"
    scale = _unit_scale(units, p)

    rate_value = _param(params, "POINT", "RATE")
    rate = float(rate_value[0]) if rate_value is not None and len(rate_value) else 0.0
    if not rate > 0:
        rate = float(c3d["header"]["points"].get("frame_rate", 0.0))
    if not (rate > 0 and math.isfinite(rate)):
        raise InputError(f"{p}: C3D file has no valid point rate")
    first = int(c3d["header"]["points"].get("first_frame", 0))

    raw = points[:3].transpose(1, 2, 0)  # (N, T, 3), file units
    missing = ~np.isfinite(raw).all(axis=2)
    residuals = c3d["data"]["meta_points"].get("residuals") if "meta_points" in c3d["data"] else None
    if residuals is not None:
        res = np.asarray(residuals, np.float64).reshape(-1, n_points, n_frames)[0]
        missing |= res < 0
    if zero_is_missing:
        missing |= (raw == 0).all(axis=2)
    raw = raw.copy()
    raw[missing] = np.nan

    markers: dict[str, FloatArray] = {}
    outputs: dict[str, FloatArray] = {}
    for i, lab in enumerate(_unique(labels)):
        if labels[i] in not_markers or _MODEL_OUTPUT.search(labels[i]):
            outputs[lab] = np.ascontiguousarray(raw[i])
        else:
            markers[lab] = np.ascontiguousarray(raw[i] * scale)
    if not markers:
        raise InputError(f"{p}: C3D file holds no marker trajectories")
    header: dict[str, tuple[str, ...]] = {}
    processing = params.get("PROCESSING", {})
    for name, entry in processing.items() if isinstance(processing, dict) else ():
        value = entry.get("value") if isinstance(entry, dict) else None
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiu" and value.size == 1:
            header[f"PROCESSING:{name}"] = (repr(float(value.reshape(-1)[0])),)
    t = (first + np.arange(n_frames, dtype=np.float64)) / rate
    return MarkerData(
        t=t,
        markers=markers,
        rate_hz=rate,
        source=str(p),
        source_units=units,
        format="c3d",
        header=header,
        outputs=outputs,
    )


#: point labels that are model outputs, not markers (Vicon Plug-in-Gait and similar)
_MODEL_OUTPUT = re.compile(r"(Angles?|Moments?|Powers?|Forces?|GRF)$", re.IGNORECASE)


@dataclass(frozen=True)
class VerticalForce:
    """The vertical force channel of one force plate of a C3D file (sign and scale as recorded)."""

    t: FloatArray  # (S,) seconds, on the points' clock
    fz: FloatArray  # (S,)
    rate_hz: float
    label: str  # the analog channel(s) it was read from


def read_force_plates(path: str | Path) -> list[VerticalForce]:
    """The vertical force of every force plate of a C3D file (empty when it has none).

    Plates come from ``FORCE_PLATFORM:CHANNEL`` (types 1, 2 and 4: the third channel is Fz; type 3, Kistler:
    the sum of its four vertical channels); without a ``FORCE_PLATFORM`` group, analog channels labelled like
    a vertical force (``F1Z``, ``Fz1``, ``Force.Fz2``) are used. The values are as stored (the analog scale
    applied by ezc3d): callers find the unloaded level and the loading direction from the signal itself.
    """
    p = _check_file(path)
    import ezc3d

    try:
        c3d = ezc3d.c3d(str(p))
    except Exception as err:  # ezc3d raises plain RuntimeError/IOError on bad input
        raise InputError(f"{p}: not a readable C3D file ({err})") from err
    params = c3d["parameters"]
    analogs = np.asarray(c3d["data"]["analogs"], np.float64)
    if analogs.ndim != 3 or analogs.shape[1] == 0 or analogs.shape[2] == 0:
        return []
    channels = analogs[0]  # (C, S)
    rate_value = _param(params, "ANALOG", "RATE")
    rate = float(rate_value[0]) if rate_value is not None and len(rate_value) else 0.0
    point_rate_value = _param(params, "POINT", "RATE")
    point_rate = float(point_rate_value[0]) if point_rate_value is not None and len(point_rate_value) else 0.0
    if not (rate > 0 and point_rate > 0):
        return []
    first = int(c3d["header"]["points"].get("first_frame", 0))
    t = first / point_rate + np.arange(channels.shape[1], dtype=np.float64) / rate
    labels = [str(v).strip() for v in (_param(params, "ANALOG", "LABELS") or [])]
    labels += [f"channel {i + 1}" for i in range(len(labels), channels.shape[0])]
    plates: list[VerticalForce] = []
    table = _param(params, "FORCE_PLATFORM", "CHANNEL")
    types = _param(params, "FORCE_PLATFORM", "TYPE")
    if table is not None and np.asarray(table).size:
        chan = np.asarray(table, np.int64).reshape(np.asarray(table).shape[0], -1)  # (6 or 8, plates)
        kinds = np.asarray(types, np.int64).reshape(-1) if types is not None else np.full(chan.shape[1], 2)
        for k in range(chan.shape[1]):
            kind = int(kinds[k]) if k < kinds.size else 2
            rows = [4, 5, 6, 7] if kind == 3 and chan.shape[0] >= 8 else [2]
            idx = [int(chan[r, k]) - 1 for r in rows]
            if all(0 <= i < channels.shape[0] for i in idx):
                fz = channels[idx].sum(axis=0)
                plates.append(VerticalForce(t=t, fz=fz, rate_hz=rate, label="+".join(labels[i] for i in idx)))
        return plates
    for i, lab in enumerate(labels):
        if re.fullmatch(r"(?:FORCE)?(?:F\d+Z|FZ\d*)", re.sub(r"[^A-Z0-9]", "", lab.upper())):
            plates.append(VerticalForce(t=t, fz=channels[i].copy(), rate_hz=rate, label=lab))
    return plates


def _read_lines(p: Path) -> list[tuple[int, str]]:
    """(1-based line number, text) of the file's non-blank lines."""
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise InputError(f"{p}: cannot read file ({err})") from err
    if b"\x00" in raw[:4096]:
        raise InputError(f"{p}: binary file, not a text marker file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return [(n, line.rstrip("\r\n")) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^[-+]?(nan|inf)$", re.IGNORECASE)
_MISSING_TOKENS = {"", "nan", "null", "na", "n/a", "-"}


def _parse_table(rows: Sequence[tuple[int, str]], n_cols: int, p: Path) -> FloatArray:
    """Tab-separated numbers -> (rows, n_cols) float array; empty / NaN / NULL fields are NaN."""
    out = np.full((len(rows), n_cols), np.nan)
    for r, (lineno, line) in enumerate(rows):
        fields = line.split("\t")
        while len(fields) > n_cols and not fields[-1].strip():
            fields.pop()
        if len(fields) != n_cols:
            raise InputError(
                f"{p}: line {lineno}: {len(fields)} fields, expected {n_cols} (truncated, or not this format)"
            )
        for c, f in enumerate(fields):
            s = f.strip()
            if s.lower() in _MISSING_TOKENS:
                continue
            try:
                out[r, c] = float(s)
            except ValueError:
                raise InputError(f"{p}: line {lineno}: {s[:30]!r} is not a number") from None
    return out


def read_qualisys_tsv(path: str | Path, *, units: str = "mm", zero_is_missing: bool = True) -> MarkerData:
    """Marker trajectories of a Qualisys Track Manager 3D TSV export, in metres.

    The header is key/value lines (``NO_OF_FRAMES``, ``FREQUENCY``, ``MARKER_NAMES`` ...; kept in
    :attr:`MarkerData.header`), then optionally the column header row ``Frame  Time  <marker> X ...``, then
    one row per frame. Without the ``Frame``/``Time`` columns, times are ``frame / FREQUENCY``. QTM writes
    positions in millimetres; missing markers (empty fields, ``NULL`` or, with ``zero_is_missing``, exactly
    (0, 0, 0)) are NaN.
    """
    p = _check_file(path)
    lines = _read_lines(p)
    header: dict[str, tuple[str, ...]] = {}
    i = 0
    while i < len(lines):
        fields = lines[i][1].split("\t")
        key = fields[0].strip()
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            break
        header[key] = tuple(f.strip() for f in fields[1:] if f.strip())
        i += 1
    if "FREQUENCY" not in header or "MARKER_NAMES" not in header:
        raise InputError(f"{p}: not a Qualisys TSV 3D export (no FREQUENCY / MARKER_NAMES header)")
    included = header.get("DATA_INCLUDED", ("3D",))
    if included and included[0].upper() != "3D":
        raise InputError(
            f"{p}: Qualisys TSV holds {included[0]!r} data, only 3D marker exports are supported"
        )
    try:
        rate = float(header["FREQUENCY"][0])
    except (IndexError, ValueError):
        raise InputError(f"{p}: invalid FREQUENCY {header['FREQUENCY']!r}") from None
    if not (rate > 0 and math.isfinite(rate)):
        raise InputError(f"{p}: invalid FREQUENCY {rate}")
    names = list(header["MARKER_NAMES"])
    if not names:
        raise InputError(f"{p}: MARKER_NAMES is empty")
    n_markers = len(names)

    has_frame_time = False
    if i < len(lines):
        first = [f.strip() for f in lines[i][1].split("\t")]
        if first and not _NUMBER.match(first[0]):  # column header row
            while first and not first[-1]:
                first.pop()
            cols = first
            if cols[:2] == ["Frame", "Time"]:
                has_frame_time = True
                cols = cols[2:]
            expected = [f"{n} {a}" for n in names for a in "XYZ"]
            if cols[: len(expected)] != expected:
                raise InputError(
                    f"{p}: column header does not match MARKER_NAMES (got {' | '.join(cols[:6])} ...)"
                )
            i += 1
    rows = lines[i:]
    if not rows:
        raise InputError(f"{p}: Qualisys TSV has no data rows")
    if not has_frame_time:
        n_fields = len(rows[0][1].rstrip("\t").split("\t"))
        has_frame_time = n_fields == 3 * n_markers + 2
    n_cols = 3 * n_markers + (2 if has_frame_time else 0)
    data = _parse_table(rows, n_cols, p)
    declared = header.get("NO_OF_FRAMES", ())
    if declared and declared[0].isdigit() and int(declared[0]) != len(rows):
        raise InputError(f"{p}: header says {declared[0]} frames, the file has {len(rows)} rows (truncated?)")
    if has_frame_time:
        t = data[:, 1].copy()
        xyz_cols = data[:, 2:]
        if not np.isfinite(t).all():
            t = (data[:, 0] - 1.0) / rate if np.isfinite(data[:, 0]).all() else np.arange(len(rows)) / rate
    else:
        t = np.arange(len(rows), dtype=np.float64) / rate
        xyz_cols = data
    scale = _unit_scale(units, p)
    markers: dict[str, FloatArray] = {}
    for k, name in enumerate(_unique(names)):
        xyz = xyz_cols[:, 3 * k : 3 * k + 3] * scale
        bad = ~np.isfinite(xyz).all(axis=1)
        if zero_is_missing:
            bad |= (xyz == 0).all(axis=1)
        xyz[bad] = np.nan
        markers[name] = np.ascontiguousarray(xyz)
    return MarkerData(
        t=t, markers=markers, rate_hz=rate, source=str(p), source_units=units, format="qtm_tsv", header=header
    )


#: a rate measured from a time column this close (relative) to a whole number of Hz is taken as that number
_RATE_SNAP = 1e-3


def _rate_from_times(t: FloatArray, p: Path) -> float:
    """The sampling rate of a time column that may be rounded or slightly off.

    RBDS text files round 1/150 s steps to 1 ms (0.007, 0.013, ...) and some span ``linspace(0, 30, 4500)``
    rather than 4500 frames at 150 Hz; the mean rate ``(n - 1) / duration`` is snapped to the nearest whole
    number of Hz when within 0.1 % of it (the capture rate), else kept as it is.
    """
    if t.shape[0] < 2 or not np.isfinite(t).all():
        raise InputError(f"{p}: time column must have at least two finite values")
    span = float(t[-1] - t[0])
    if not span > 0 or np.any(np.diff(t) <= 0):
        raise InputError(f"{p}: time column is not increasing")
    rate = (t.shape[0] - 1) / span
    whole = float(round(rate))
    return whole if whole > 0 and abs(rate - whole) <= _RATE_SNAP * rate else rate


def read_rbds_txt(path: str | Path, *, rate_hz: float | None = None, units: str = "mm") -> MarkerData:
    """Marker trajectories of a Running Biomechanics Data Set text file (``RBDS001runT25markers.txt``,
    ``RBDS001static.txt`` ...), in metres.

    Tab-separated: a header row ``Time`` then ``<marker>X  <marker>Y  <marker>Z`` per marker, then one row per
    frame; positions in mm; ``NaN`` where missing. The time column is rounded to 1 ms in these files, so the
    rate is recovered from it (the mean rate, snapped to a whole number of Hz within 0.1 %; or given as
    ``rate_hz``) and ``t`` is rebuilt as ``t0 + i / rate``.
    """
    p = _check_file(path)
    lines = _read_lines(p)
    if not lines:
        raise InputError(f"{p}: file is empty")
    cols = [c.strip() for c in lines[0][1].split("\t")]
    while cols and not cols[-1]:
        cols.pop()
    if not cols or cols[0].lower() != "time":
        raise InputError(f"{p}: not an RBDS marker text file (first column is not 'Time')")
    names: list[str] = []
    rest = cols[1:]
    if not rest or len(rest) % 3:
        raise InputError(f"{p}: expected 'Time' then X/Y/Z columns per marker, got {len(rest)} columns")
    for k in range(0, len(rest), 3):
        a, b, c = rest[k : k + 3]
        name = a[:-1]
        if not (a.endswith("X") and b == name + "Y" and c == name + "Z" and name):
            raise InputError(f"{p}: columns {a!r}, {b!r}, {c!r} are not one marker's X/Y/Z")
        names.append(name)
    if len(lines) < 2:
        raise InputError(f"{p}: no data rows")
    data = _parse_table(lines[1:], len(cols), p)
    t_file = data[:, 0]
    if rate_hz is None:
        rate = _rate_from_times(t_file, p)
    else:
        rate = float(rate_hz)
        if not rate > 0:
            raise ValueError("rate_hz must be positive")
    t0 = float(t_file[0]) if np.isfinite(t_file[0]) else 0.0
    t = t0 + np.arange(data.shape[0], dtype=np.float64) / rate
    scale = _unit_scale(units, p)
    markers: dict[str, FloatArray] = {}
    for k, name in enumerate(_unique(names)):
        xyz = data[:, 1 + 3 * k : 4 + 3 * k] * scale
        xyz[~np.isfinite(xyz).all(axis=1)] = np.nan
        markers[name] = np.ascontiguousarray(xyz)
    return MarkerData(
        t=t, markers=markers, rate_hz=rate, source=str(p), source_units=units, format="rbds_txt"
    )


def read_markers(path: str | Path) -> MarkerData:
    """Any supported marker file: ``.c3d``, a QTM TSV (``NO_OF_FRAMES`` header) or RBDS text (``Time``)."""
    p = _check_file(path)
    if p.suffix.lower() == ".c3d":
        return read_c3d(p)
    with p.open("rb") as fh:
        head = fh.read(64)
    if head.startswith(b"NO_OF_FRAMES") or head.lstrip(b"\xef\xbb\xbf").startswith(b"NO_OF_FRAMES"):
        return read_qualisys_tsv(p)
    if head.lstrip(b"\xef\xbb\xbf").lower().startswith(b"time\t"):
        return read_rbds_txt(p)
    if head[1:2] == b"\x50":  # C3D without the suffix: the header's second byte is the parameter key 0x50
        return read_c3d(p)
    raise InputError(f"{p}: unknown marker file format (expected .c3d, Qualisys TSV or RBDS text)")


# ------------------------------------------------------------------------------------------------------------
# Gaps and filtering
# ------------------------------------------------------------------------------------------------------------


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    if not mask.any():
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def _fill_one(xyz: FloatArray, max_gap: int) -> FloatArray:
    from scipy.interpolate import CubicSpline

    bad = ~np.isfinite(xyz).all(axis=1)
    n = xyz.shape[0]
    gaps = [(a, b) for a, b in _runs(bad) if a > 0 and b < n and b - a <= max_gap]
    if not gaps:
        return xyz
    good = np.flatnonzero(~bad)
    out = xyz.copy()
    idx = np.concatenate([np.arange(a, b) for a, b in gaps])
    if good.size >= 4:
        out[idx] = CubicSpline(good, xyz[good], axis=0)(idx)
    else:
        for k in range(3):
            out[idx, k] = np.interp(idx, good, xyz[good, k])
    return out


def fill_gaps(data: MarkerData, max_gap_s: float = DEFAULT_MAX_GAP_S) -> MarkerData:
    """Interior gaps of at most ``max_gap_s`` filled by a cubic spline through each marker's valid samples.

    Longer gaps, gaps at the start or end of the trial and markers that are never seen stay NaN.
    """
    max_gap = math.floor(max_gap_s * data.rate_hz + 1e-9)
    if max_gap < 1:
        return data
    markers = {k: _fill_one(v, max_gap) for k, v in data.markers.items()}
    return replace(data, markers=markers)


def lowpass(x: FloatArray, rate_hz: float, cutoff_hz: float, order: int = 4) -> FloatArray:
    """Zero-lag Butterworth low-pass (``filtfilt``, so the effective order is ``2 * order``) along axis 0.

    NaN gaps are respected: each finite run is filtered on its own; runs too short to filter are left
    unchanged.
    """
    from scipy.signal import butter, filtfilt

    if not 0 < cutoff_hz < rate_hz / 2:
        raise ValueError(
            f"cutoff {cutoff_hz} Hz must be between 0 and the Nyquist frequency {rate_hz / 2} Hz"
        )
    b, a = butter(order, cutoff_hz / (rate_hz / 2))
    pad = 3 * max(len(a), len(b))
    arr = np.asarray(x, np.float64)
    flat = arr.reshape(arr.shape[0], -1)
    out = flat.copy()
    ok = np.isfinite(flat).all(axis=1)
    for s, e in _runs(ok):
        if e - s > pad:
            out[s:e] = filtfilt(b, a, flat[s:e], axis=0)
    return out.reshape(arr.shape)


# ------------------------------------------------------------------------------------------------------------
# Rigid-body calibration and tracking
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentCalibration:
    """A segment's tracking cluster and its anatomical landmarks, all from the static trial (metres)."""

    name: str
    cluster: tuple[str, ...]  # tracking marker labels
    cluster_ref: FloatArray  # (N, 3) static positions of the cluster markers
    landmarks: dict[str, FloatArray]  # landmark name -> (3,) static position


def _static_position(static: MarkerData, name: str) -> FloatArray:
    xyz = static.marker(name)
    ok = np.isfinite(xyz).all(axis=1)
    if not ok.any():
        raise InputError(f"{static.source}: marker {name!r} is never visible in the static trial")
    return np.asarray(np.median(xyz[ok], axis=0), np.float64)


def calibrate_segment(
    static: MarkerData,
    name: str,
    cluster: Sequence[str],
    landmarks: Sequence[str] = (),
    extra: Mapping[str, FloatArray] | None = None,
) -> SegmentCalibration:
    """Calibrate one segment from the static trial: the median position over the static frames of each cluster
    marker and of each landmark (``landmarks`` are marker labels; ``extra`` are computed points, e.g. a hip
    joint centre)."""
    if len(cluster) < 3:
        raise ValueError(f"segment {name}: a cluster needs at least 3 markers")
    ref = np.stack([_static_position(static, m) for m in cluster])
    spread = np.linalg.svd(ref - ref.mean(axis=0), compute_uv=False)
    if spread[1] < 1e-3:
        raise InputError(f"{static.source}: the {name} cluster markers are collinear in the static trial")
    lms = {m: _static_position(static, m) for m in landmarks}
    if extra:
        lms.update({k: np.asarray(v, np.float64) for k, v in extra.items()})
    return SegmentCalibration(name=name, cluster=tuple(cluster), cluster_ref=ref, landmarks=lms)


def _kabsch(ref: FloatArray, cur: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Rigid transforms ``cur ~ R @ ref + d`` per frame: ref (N, 3), cur (F, N, 3) -> R (F, 3, 3), d (F, 3),
    rms residual (F,)."""
    ref_c = ref.mean(axis=0)
    cur_c = cur.mean(axis=1)
    a = ref - ref_c
    b = cur - cur_c[:, None, :]
    h = np.einsum("ni,fnj->fij", a, b)  # (F, 3, 3) = sum a^T b
    u, _, vt = np.linalg.svd(h)
    v = np.swapaxes(vt, 1, 2)
    ut = np.swapaxes(u, 1, 2)
    d = np.sign(np.linalg.det(v @ ut))
    d[d == 0] = 1.0
    fix = np.zeros((cur.shape[0], 3, 3))
    fix[:, 0, 0] = 1.0
    fix[:, 1, 1] = 1.0
    fix[:, 2, 2] = d
    rot = v @ fix @ ut
    disp = cur_c - np.einsum("fij,j->fi", rot, ref_c)
    fitted = np.einsum("fij,nj->fni", rot, ref) + disp[:, None, :]
    rms = np.sqrt(np.mean(np.sum((fitted - cur) ** 2, axis=2), axis=1))
    return rot, disp, rms


def _cluster_tracks(run: MarkerData, labels: Sequence[str], segment: str) -> FloatArray:
    """(T, N, 3) positions of a cluster's markers; a marker absent from the file is NaN throughout (at least 3
    must be there)."""
    present = [m for m in labels if m in run.markers]
    if len(present) < 3:
        absent = ", ".join(m for m in labels if m not in run.markers)
        raise InputError(
            f"{run.source}: the {segment} cluster needs at least 3 of its markers; absent: {absent}"
        )
    nan = np.full((run.n_frames, 3), np.nan)
    return np.stack([run.markers.get(m, nan) for m in labels], axis=1)


def _median_distances(xyz: FloatArray) -> FloatArray:
    """(N, N) median over frames of the distances between N markers (T, N, 3); NaN where never both seen."""
    step = max(1, xyz.shape[0] // 500)
    sub = xyz[::step]
    d = np.linalg.norm(sub[:, :, None, :] - sub[:, None, :, :], axis=3)  # (T', N, N)
    out = np.full(d.shape[1:], np.nan)
    for i, j in np.ndindex(*out.shape):
        col = d[:, i, j]
        col = col[np.isfinite(col)]
        if col.size:
            out[i, j] = np.median(col)
    return out


#: a cluster whose static and running inter-marker distances differ by more than this (mean, metres) is
#: checked for swapped labels
LABEL_CHECK_TOLERANCE_M = 0.01


def match_cluster_labels(run: MarkerData, calib: SegmentCalibration) -> tuple[str, ...]:
    """The running-trial labels that correspond to the calibration's cluster markers, in its order.

    Normally the same labels. When the running trial's inter-marker distances disagree with the static trial's
    (mean absolute difference above :data:`LABEL_CHECK_TOLERANCE_M`), every relabelling of the cluster is
    tried (clusters of up to 7 markers) and the one that best reproduces the static distances is returned when
    it at least halves the mismatch: it repairs markers whose labels were swapped between the static and the
    running trial (in RBDS001's running trials ``R.MT1`` and ``R.MT5`` are swapped).
    """
    from itertools import permutations

    names = calib.cluster
    cur = _cluster_tracks(run, names, calib.name)
    ref = np.linalg.norm(calib.cluster_ref[:, None] - calib.cluster_ref[None, :], axis=2)
    dist = _median_distances(cur)
    if not np.isfinite(dist).all():
        return names

    def mismatch(order: Sequence[int]) -> float:
        idx = np.asarray(order)
        return float(np.mean(np.abs(ref - dist[np.ix_(idx, idx)])))

    identity = tuple(range(len(names)))
    base = mismatch(identity)
    if base <= LABEL_CHECK_TOLERANCE_M or len(names) > 7:
        return names
    best = min(permutations(identity), key=mismatch)
    if mismatch(best) <= 0.5 * base:
        return tuple(names[i] for i in best)
    return names


def track_segment(
    run: MarkerData, calib: SegmentCalibration, run_labels: Sequence[str] | None = None
) -> tuple[dict[str, FloatArray], FloatArray]:
    """The segment's landmarks in every frame of ``run``, from the least-squares pose of its cluster.

    ``run_labels`` are the running trial's labels of the cluster markers (default: the same as in the static
    trial; see :func:`match_cluster_labels`). Every frame uses the cluster markers visible in it (at least 3,
    not collinear); frames with fewer are NaN. Returns landmark name -> (T, 3) and the (T,) RMS fit residual
    of the cluster (metres; NaN where not tracked), a measure of soft-tissue / marker-placement error.
    """
    labels = calib.cluster if run_labels is None else tuple(run_labels)
    if len(labels) != len(calib.cluster):
        raise ValueError(
            f"segment {calib.name}: {len(labels)} running labels for {len(calib.cluster)} markers"
        )
    cur = _cluster_tracks(run, labels, calib.name)  # (T, N, 3)
    n_frames = cur.shape[0]
    visible = np.isfinite(cur).all(axis=2)  # (T, N)
    out = {k: np.full((n_frames, 3), np.nan) for k in calib.landmarks}
    rms_all = np.full(n_frames, np.nan)
    lm = np.stack(list(calib.landmarks.values())) if calib.landmarks else np.zeros((0, 3))
    patterns, inverse = np.unique(visible, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for k, pattern in enumerate(patterns):
        if pattern.sum() < 3:
            continue
        ref = calib.cluster_ref[pattern]
        if np.linalg.svd(ref - ref.mean(axis=0), compute_uv=False)[1] < 1e-3:
            continue
        frames = np.flatnonzero(inverse == k)
        rot, disp, rms = _kabsch(ref, cur[frames][:, pattern])
        rms_all[frames] = rms
        if lm.shape[0]:
            pos = np.einsum("fij,lj->fli", rot, lm) + disp[:, None, :]
            for j, name in enumerate(calib.landmarks):
                out[name][frames] = pos[:, j]
    return out, rms_all


# ------------------------------------------------------------------------------------------------------------
# Hip joint centre
# ------------------------------------------------------------------------------------------------------------

#: hip joint centre regressions (see :func:`hip_joint_centres`)
HJC_METHODS = ("harrington", "bell")


def hip_joint_centres(
    r_asis: FloatArray,
    l_asis: FloatArray,
    r_psis: FloatArray,
    l_psis: FloatArray,
    method: str = "harrington",
) -> tuple[FloatArray, FloatArray]:
    """Right and left hip joint centres ((..., 3) each, same units as the input, metres expected).

    * ``"harrington"``: Harrington ME, Zavatsky AB, Lawson SEM, Yuan Z, Theologis TN. Prediction of the hip
      joint centre in adults, children, and patients with cerebral palsy based on magnetic resonance imaging.
      J Biomech 2007;40(3):595-602. In mm: x = -0.24 PD - 9.9, y = -0.30 PW - 10.9, z = +/-(0.33 PW + 7.3).
    * ``"bell"``: Bell AL, Pedersen DR, Brand RA. A comparison of the accuracy of several hip center location
      prediction methods. J Biomech 1990;23(6):617-621: x = -0.19 PW, y = -0.30 PW, z = +/-0.36 PW.

    Pelvis frame (ISB, Wu et al. 2002, J Biomech 35:543-548): origin mid-ASIS; z from left to right ASIS; x
    anterior, in the plane of the ASISs and the mid-PSIS, perpendicular to z; y = z x x (superior).
    """
    r_asis, l_asis, r_psis, l_psis = (np.asarray(v, np.float64) for v in (r_asis, l_asis, r_psis, l_psis))
    origin = 0.5 * (r_asis + l_asis)
    mid_psis = 0.5 * (r_psis + l_psis)
    z = r_asis - l_asis
    pw = np.linalg.norm(z, axis=-1, keepdims=True)
    z = z / pw
    v = origin - mid_psis
    x = v - np.sum(v * z, axis=-1, keepdims=True) * z
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    if method == "harrington":
        pd = np.linalg.norm(v, axis=-1, keepdims=True)
        mm = 1e-3  # the regression's constants are in mm; inputs are in metres
        cx = -0.24 * pd - 9.9 * mm
        cy = -0.30 * pw - 10.9 * mm
        cz = 0.33 * pw + 7.3 * mm
    elif method == "bell":
        cx, cy, cz = -0.19 * pw, -0.30 * pw, 0.36 * pw
    else:
        raise ValueError(f"unknown hip joint centre method {method!r} (expected one of {HJC_METHODS})")
    right = origin + cx * x + cy * y + cz * z
    left = origin + cx * x + cy * y - cz * z
    return right, left


# ------------------------------------------------------------------------------------------------------------
# Joint centres of any marker set -> Motion
# ------------------------------------------------------------------------------------------------------------

#: Plug-in-Gait's subject measurements (mm) assumed when the file carries none and no medial marker gives them
DEFAULT_KNEE_WIDTH_MM = 100.0
DEFAULT_ANKLE_WIDTH_MM = 70.0
DEFAULT_MARKER_DIAMETER_MM = 14.0

#: the joints the running metrics cannot do without
ESSENTIAL_JOINTS = tuple(f"{s}_{j}" for s in ("left", "right") for j in ("hip", "knee", "ankle"))

_SIDE_PREFIX = SIDE_LETTER


@dataclass(frozen=True)
class JointCentres:
    """Joint centres of a running trial, how each was found and how well the marker clusters were tracked."""

    joints: dict[str, FloatArray]  # Motion joint name -> (T, 3) metres, lab frame
    residuals: dict[str, FloatArray]  # segment ("pelvis", "R.thigh", ...) -> (T,) RMS cluster-fit residual, m
    relabelled: dict[str, dict[str, str]]  # segment -> {static label: running-trial label} for repaired swaps
    methods: dict[str, str] = field(default_factory=dict)  # joint -> how it was found, naming the markers
    marker_set: str = ""  # services.kinematics.markersets.describe_marker_set
    notes: tuple[str, ...] = ()  # assumptions made (default widths, duplicate labels ...)


def chord_joint_centre(
    proximal: FloatArray, lateral: FloatArray, wand: FloatArray, offset_m: float
) -> FloatArray:
    """Plug-in-Gait's chord function: the joint centre ``offset_m`` (half the joint width plus the marker's
    radius) medial of the ``lateral`` marker, in the plane of the ``proximal`` joint centre, the lateral
    marker and the ``wand`` marker, on the side away from the wand, such that the proximal centre -> joint
    centre line is perpendicular to the joint centre -> lateral marker line (Davis et al. 1991, Hum Mov Sci
    10:575-587). Arrays ``(..., 3)`` in metres; NaN where an input is missing."""
    lat = np.asarray(lateral, np.float64)
    a = np.asarray(proximal, np.float64) - lat
    with np.errstate(invalid="ignore", divide="ignore"):
        length = np.linalg.norm(a, axis=-1, keepdims=True)
        e1 = a / length
        w = np.asarray(wand, np.float64) - lat
        w = w - np.sum(w * e1, axis=-1, keepdims=True) * e1
        e2 = w / np.linalg.norm(w, axis=-1, keepdims=True)
        cos = np.clip(offset_m / length, -1.0, 1.0)
    sin = np.sqrt(1.0 - cos**2)
    return np.asarray(lat + offset_m * (cos * e1 - sin * e2), np.float64)


def _visible(data: MarkerData | None, label: str | None) -> bool:
    return (
        data is not None
        and label is not None
        and label in data.markers
        and bool(np.isfinite(data.markers[label]).all(axis=1).any())
    )


def _counts(data: MarkerData) -> dict[str, int]:
    return {k: int(np.isfinite(v).all(axis=1).sum()) for k, v in data.markers.items()}


def _same_labels(static: MarkerData, run: MarkerData) -> MarkerData:
    """The static trial with each label written as the run writes it when they differ only in subject prefix,
    case or separators (``Runner:LASI`` / ``LASI``)."""
    by_norm = {normalise_label(lab): lab for lab in run.markers}
    renamed = {by_norm.get(normalise_label(k), k): v for k, v in static.markers.items()}
    return static if renamed.keys() == static.markers.keys() else replace(static, markers=renamed)


def _width_offset_m(
    trials: Sequence[MarkerData], side: str, joint: str, medial: tuple[FloatArray, FloatArray] | None
) -> tuple[float, str]:
    """Half the knee or ankle width plus the marker radius (m) for the chord function, and where it came from:
    the file's ``PROCESSING`` parameters, the static trial's medial marker, or the default."""
    s = _SIDE_PREFIX[side]
    long = "Left" if side == "left" else "Right"
    for data in trials:
        h = data.header
        width = h.get(f"PROCESSING:{s}{joint}Width") or h.get(f"PROCESSING:{long}{joint}Width")
        if width:
            marker = h.get("PROCESSING:MarkerDiameter", (str(DEFAULT_MARKER_DIAMETER_MM),))
            mm = float(width[0]) + float(marker[0])
            if mm > 0:
                return mm / 2000.0, f"{s}{joint}Width {float(width[0]):.0f} mm from the file"
    if medial is not None:
        d = float(np.linalg.norm(medial[0] - medial[1]))
        return d / 2.0, f"{joint.lower()} width {1000 * d:.0f} mm between the static trial's markers"
    mm = (DEFAULT_KNEE_WIDTH_MM if joint == "Knee" else DEFAULT_ANKLE_WIDTH_MM) + DEFAULT_MARKER_DIAMETER_MM
    return (
        mm / 2000.0,
        f"{joint.lower()} width ASSUMED {mm - DEFAULT_MARKER_DIAMETER_MM:.0f} mm (not in the file)",
    )


#: the roles in words, for the errors
_ROLE_WORDS = {
    "HJC": "hip joint-centre channel", "KJC": "knee joint-centre channel",
    "AJC": "ankle joint-centre channel",
    "KNEE": "lateral knee marker", "KNEE_MED": "medial knee marker", "ANKLE": "lateral ankle marker",
    "ANKLE_MED": "medial ankle marker", "HEEL": "heel marker", "TOE": "toe marker", "THI": "thigh wand",
    "TIB": "tibia wand",
}  # fmt: skip


class _Builder:
    """Joint centres from roles: each landmark is taken from the run when it is there (its gaps bridged by
    the static calibration), else carried from the static trial by its segment's cluster."""

    def __init__(self, run: MarkerData, static: MarkerData | None, hjc_method: str) -> None:
        self.run, self.static, self.hjc_method = run, static, hjc_method
        self.rr = assign_roles(run.labels, _counts(run))
        self.sr = assign_roles(static.labels, _counts(static)) if static is not None else None
        self.carried: dict[str, dict[str, FloatArray]] = {}
        self.why_not: dict[str, str] = {}
        self.residuals: dict[str, FloatArray] = {}
        self.relabelled: dict[str, dict[str, str]] = {}
        self.notes: list[str] = []
        for roles, what in ((self.rr, "run"), (self.sr, "static trial")):
            if roles is None:
                continue
            for role, others in roles.duplicates.items():
                self.notes.append(
                    f"{what}: {role} taken from {roles.single[role]} (also matched: {', '.join(others)})"
                )

    def segment(self, seg: str, extra: Mapping[str, FloatArray] | None = None) -> dict[str, FloatArray]:
        """The static landmarks of ``seg`` carried into the run by its tracking cluster (cached; empty when
        there is no static trial or no cluster of 3 markers seen in both trials)."""
        if seg in self.carried:
            return self.carried[seg]
        self.carried[seg] = {}
        if self.static is None or self.sr is None:
            self.why_not[seg] = "no static trial"
            return {}
        jc = {lab for key, lab in self.sr.single.items() if key.split(".")[-1] in JOINT_CENTRE_ROLES}
        cluster = [
            m
            for m in self.rr.members(seg)
            if m not in jc and _visible(self.static, m) and _visible(self.run, m)
        ]
        if len(cluster) < 3:
            self.why_not[seg] = (
                f"the {seg} cluster needs at least 3 markers seen in both the run and the static trial "
                f"(found {', '.join(cluster) or 'none'})"
            )
            return {}
        landmarks = [
            lab
            for key, lab in self.sr.single.items()
            if lab in self.sr.members(seg) and _visible(self.static, lab)
        ]
        calib = calibrate_segment(self.static, seg, cluster, landmarks, extra=extra)
        labels = match_cluster_labels(self.run, calib)
        swaps = {a: b for a, b in zip(calib.cluster, labels, strict=True) if a != b}
        if swaps:
            self.relabelled[seg] = swaps
        self.carried[seg], self.residuals[seg] = track_segment(self.run, calib, labels)
        return self.carried[seg]

    def point(self, seg: str, key: str) -> tuple[FloatArray | None, str]:
        """A role's trajectory: the run's marker (gaps filled from the static calibration), else the static
        trial's landmark carried by the segment cluster. (None, why) when neither exists."""
        run_label = self.rr.get(key)
        static_label = self.sr.get(key) if self.sr is not None else None
        carried = self.segment(seg).get(static_label) if static_label is not None else None
        if _visible(self.run, run_label):
            assert run_label is not None
            label = self.relabelled.get(seg, {}).get(run_label, run_label)
            xyz = self.run.markers[label].copy()
            if carried is not None:
                missing = ~np.isfinite(xyz).all(axis=1)
                xyz[missing] = carried[missing]
            return xyz, run_label
        if carried is not None:
            return carried, f"{static_label} (static trial, carried by the {seg} cluster)"
        if static_label is not None:
            return None, f"{static_label} is only in the static trial and {self.why_not.get(seg, '')}"
        return None, f"no {_ROLE_WORDS.get(key.split('.')[-1], key)} ({key.replace('.', '')})"

    def pelvis_markers(
        self, data: MarkerData, roles: Roles, static: bool
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray] | None:
        def get(key: str) -> FloatArray | None:
            label = roles.get(key)
            if not _visible(data, label):
                return None
            assert label is not None
            return _static_position(data, label) if static else data.markers[label]

        r_asis, l_asis = get("R.ASIS"), get("L.ASIS")
        r_psis, l_psis = get("R.PSIS"), get("L.PSIS")
        if r_psis is None or l_psis is None:
            r_psis = l_psis = get("SACR")
        if r_asis is None or l_asis is None or r_psis is None or l_psis is None:
            return None
        return r_asis, l_asis, r_psis, l_psis

    def hips(self) -> tuple[dict[str, FloatArray], dict[str, str]]:
        joints: dict[str, FloatArray] = {}
        methods: dict[str, str] = {}
        extra: dict[str, FloatArray] = {}
        static_jc = self.sr is not None and all(_visible(self.static, self.sr.get(f"{s}.HJC")) for s in "LR")
        if self.static is not None and self.sr is not None and not static_jc:
            pelvis = self.pelvis_markers(self.static, self.sr, static=True)
            if pelvis is not None:
                r_hjc, l_hjc = hip_joint_centres(*pelvis, method=self.hjc_method)
                extra = {"R.HJC (regression)": r_hjc, "L.HJC (regression)": l_hjc}
        carried = self.segment("pelvis", extra) if self.static is not None else {}
        per_frame = None
        for side, s in _SIDE_PREFIX.items():
            xyz, how = self.point("pelvis", f"{s}.HJC")
            if xyz is None and f"{s}.HJC (regression)" in carried:
                xyz = carried[f"{s}.HJC (regression)"]
                how = f"{self.hjc_method.title()} regression on the static pelvis, carried by its cluster"
            if xyz is None:
                if per_frame is None:
                    markers = self.pelvis_markers(self.run, self.rr, static=False)
                    per_frame = (
                        None if markers is None else hip_joint_centres(*markers, method=self.hjc_method)
                    )
                if per_frame is not None:
                    xyz = per_frame[0] if side == "right" else per_frame[1]
                    how = f"{self.hjc_method.title()} regression on the run's pelvis markers, every frame"
                else:
                    how = f"no hip joint-centre channel ({s}HJC) and no {s}ASIS + {s}PSIS/SACR markers"
            if xyz is not None:
                joints[f"{side}_hip"] = xyz
            methods[f"{side}_hip"] = how
        return joints, methods

    def distal(
        self,
        side: str,
        seg: str,
        roles: tuple[str, str, str, str],
        width: str,
        proximal: FloatArray | None,
    ) -> tuple[FloatArray | None, str]:
        """Knee (``seg`` thigh) or ankle (shank) centre: a joint-centre channel, else the midpoint of the
        lateral and medial markers, else the chord function from the lateral and wand markers."""
        s = _SIDE_PREFIX[side]
        jc, lat, med, wand = roles
        xyz, how = self.point(f"{s}.{seg}", f"{s}.{jc}")
        if xyz is not None:
            return xyz, how
        reasons = [how]
        lateral, how_l = self.point(f"{s}.{seg}", f"{s}.{lat}")
        medial, how_m = self.point(f"{s}.{seg}", f"{s}.{med}")
        if lateral is not None and medial is not None:
            return 0.5 * (lateral + medial), f"midpoint of {how_l} and {how_m}"
        reasons.append(how_m if lateral is not None else how_l)
        wand_label = self.rr.get(f"{s}.{wand}")
        if lateral is not None and proximal is not None and _visible(self.run, wand_label):
            assert wand_label is not None
            static_pair = None
            if (
                self.sr is not None
                and _visible(self.static, self.sr.get(f"{s}.{lat}"))
                and _visible(self.static, self.sr.get(f"{s}.{med}"))
            ):
                assert self.static is not None
                static_pair = (
                    _static_position(self.static, self.sr.single[f"{s}.{lat}"]),
                    _static_position(self.static, self.sr.single[f"{s}.{med}"]),
                )
            trials = [self.run] + ([self.static] if self.static is not None else [])
            offset, source = _width_offset_m(trials, side, width, static_pair)
            if "ASSUMED" in source:
                self.notes.append(f"{side} {source}")
            centre = chord_joint_centre(proximal, lateral, self.run.markers[wand_label], offset)
            return centre, f"chord function from {how_l} and {wand_label} ({source})"
        if lateral is not None:
            reasons.append(f"no {_ROLE_WORDS[wand]} ({s}{wand}) for the chord function")
        return None, "; ".join(r for r in reasons if r)

    def build(self) -> JointCentres:
        joints, methods = self.hips()
        if "left_hip" in joints and "right_hip" in joints:
            joints["pelvis"] = 0.5 * (joints["left_hip"] + joints["right_hip"])
            methods["pelvis"] = "midpoint of the hip joint centres"
        for side, s in _SIDE_PREFIX.items():
            knee, methods[f"{side}_knee"] = self.distal(
                side, "thigh", ("KJC", "KNEE", "KNEE_MED", "THI"), "Knee", joints.get(f"{side}_hip")
            )
            if knee is not None:
                joints[f"{side}_knee"] = knee
            ankle, methods[f"{side}_ankle"] = self.distal(
                side, "shank", ("AJC", "ANKLE", "ANKLE_MED", "TIB"), "Ankle", knee
            )
            if ankle is not None:
                joints[f"{side}_ankle"] = ankle
            for joint, role in (("heel", "HEEL"), ("toe", "TOE")):
                xyz, how = self.point(f"{s}.foot", f"{s}.{role}")
                methods[f"{side}_{joint}"] = how
                if xyz is not None:
                    joints[f"{side}_{joint}"] = xyz
        self.upper_body(joints, methods)
        missing = [j for j in ESSENTIAL_JOINTS if j not in joints]
        if missing:
            raise InputError(self.missing_message(missing, methods))
        return JointCentres(
            joints=joints,
            residuals=self.residuals,
            relabelled=self.relabelled,
            methods={k: v for k, v in methods.items() if k in joints},
            marker_set=describe_marker_set(self.rr, self.sr),
            notes=tuple(self.notes),
        )

    def upper_body(self, joints: dict[str, FloatArray], methods: dict[str, str]) -> None:
        """Plug-in-Gait full-body markers standing for the upper-body joints (no joint-centre model)."""

        def mean_of(labels: Sequence[str | None]) -> FloatArray | None:
            if not labels or not all(_visible(self.run, lab) for lab in labels):
                return None
            return np.mean([self.run.markers[str(lab)] for lab in labels], axis=0)

        pairs: list[tuple[str, Sequence[str | None]]] = [
            ("thorax", [self.rr.get("C7"), self.rr.get("CLAV")]),
            ("head", list(self.rr.lists.get("HEAD", ()))),
        ]
        for side, s in _SIDE_PREFIX.items():
            pairs += [
                (f"{side}_shoulder", [self.rr.get(f"{s}.SHO")]),
                (f"{side}_elbow", [self.rr.get(f"{s}.ELB")]),
                (f"{side}_wrist", list(self.rr.lists.get(f"{s}.WRIST", ()))),
            ]
        for joint, labels in pairs:
            xyz = mean_of(labels)
            if xyz is not None:
                joints[joint] = xyz
                methods[joint] = " + ".join(str(lab) for lab in labels) + " (markers, no joint-centre model)"

    def missing_message(self, missing: Sequence[str], methods: Mapping[str, str]) -> str:
        def listing(data: MarkerData) -> str:
            labels = data.labels
            shown = ", ".join(labels[:30]) + (f" ... ({len(labels)} in all)" if len(labels) > 30 else "")
            return f"{Path(data.source).name} ({len(labels)} markers: {shown})"

        detail = "; ".join(f"{j.replace('_', ' ')}: {methods.get(j, 'not found')}" for j in missing)
        static = listing(self.static) if self.static is not None else "none given (--static)"
        return (
            f"{self.run.source}: cannot build the {', '.join(j.replace('_', ' ') for j in missing)} joint "
            f"centre(s) ({detail}). Expected one of the marker sets: {' | '.join(SUPPORTED_MARKER_SETS)}. "
            f"Found: run {listing(self.run)}; static trial: {static}"
        )


def lab_joint_centres(
    run: MarkerData,
    static: MarkerData | None = None,
    *,
    hjc_method: str = "harrington",
    max_gap_s: float = DEFAULT_MAX_GAP_S,
) -> JointCentres:
    """Joint centres of a running trial in any supported marker set (roles from
    :func:`services.kinematics.markersets.assign_roles`), calibrated on the subject's static trial when given.

    * **hips**: hip joint-centre channels (run, else static carried by the pelvis cluster), else the
      regression (:func:`hip_joint_centres`) on the static trial's ASIS/PSIS (SACR for both PSIS) carried by
      the pelvis cluster, else the regression on the run's pelvis markers in every frame; pelvis = their
      midpoint.
    * **knees / ankles**: joint-centre channels (``LKJC``, ``LAJC``: run, else static carried by the thigh /
      shank cluster), else the midpoint of the lateral and medial epicondyle / malleolus markers (each from
      the run or carried), else Plug-in-Gait's chord function (:func:`chord_joint_centre`) from the lateral
      marker, the thigh / tibia wand and the proximal joint centre, with the knee / ankle width from the
      file's ``PROCESSING`` parameters, the static trial's medial marker, or a default (noted).
    * **heel, toe**: ``HEEL`` / ``TOE`` markers, run or carried by the foot cluster.
    * **upper body** (Plug-in-Gait full body): thorax = mean of C7 and CLAV, head = mean of the head markers,
      shoulders, elbows = the SHO / ELB markers, wrists = mean of WRA and WRB.

    Carrying (CAST): every static landmark of a segment is expressed in the frame of the segment's cluster
    (its markers seen in both trials, at least 3) and follows the cluster's least-squares rigid pose in each
    running frame (:func:`track_segment`); cluster labels swapped between the trials are repaired
    (:func:`match_cluster_labels`). A landmark also present in the run is taken from the run, its gaps filled
    from the carried position. Raises InputError naming the expected marker sets and the labels found when
    a hip, knee or ankle cannot be built.
    """
    run_f = fill_gaps(run, max_gap_s)
    static_f = None if static is None else _same_labels(fill_gaps(static, max_gap_s), run_f)
    return _Builder(run_f, static_f, hjc_method).build()


def vertical_axis(joints: Mapping[str, FloatArray]) -> FloatArray:
    """The lab axis (+-X, +-Y or +-Z) pointing up: the one along which the pelvis stands highest above the
    ankles (median over frames)."""
    ankles = [joints[k] for k in ("left_ankle", "right_ankle") if k in joints]
    if "pelvis" not in joints or not ankles:
        raise NoValidDataError("the pelvis and an ankle are needed to find the vertical")
    d = np.nanmedian(joints["pelvis"] - np.mean(ankles, axis=0), axis=0)
    if not np.isfinite(d).all():
        raise NoValidDataError("the pelvis and the ankles are never seen together")
    axis = int(np.argmax(np.abs(d)))
    up = np.zeros(3)
    up[axis] = math.copysign(1.0, float(d[axis]))
    return up


def lab_motion(
    run: MarkerData,
    static: MarkerData | None = None,
    *,
    height_m: float | None = None,
    treadmill_speed_mps: float | None = None,
    hjc_method: str = "harrington",
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    lowpass_hz: float | None = None,
    up: Sequence[float] | None = None,
    centres: JointCentres | None = None,
) -> Motion:
    """A Motion (metres, the lab frame, ``source = "mocap"``) of a running trial in any supported marker set
    (:func:`lab_joint_centres`; pass ``centres`` when already built). ``up`` defaults to the lab axis found by
    :func:`vertical_axis` (+Y in the RBDS lab, +Z in most Vicon / QTM labs). ``lowpass_hz`` optionally smooths
    the joint trajectories with a zero-lag 4th-order Butterworth filter (:func:`lowpass`); by default the
    reconstructed positions are left unfiltered. With a static trial, the standing foot angle
    (:func:`standing_foot_angles`) is recorded for the foot strike angle."""
    jc = centres or lab_joint_centres(run, static, hjc_method=hjc_method, max_gap_s=max_gap_s)
    joints = jc.joints
    if lowpass_hz is not None:
        joints = {k: lowpass(v, run.rate_hz, lowpass_hz) for k, v in joints.items()}
    up_v = vertical_axis(jc.joints) if up is None else np.asarray(up, np.float64) / np.linalg.norm(up)
    return Motion(
        t=np.asarray(run.t, np.float64),
        joints=joints,
        up=up_v,
        metric=True,
        source="mocap",
        height_m=height_m,
        treadmill_speed_mps=treadmill_speed_mps,
        static_foot_angle_deg={}
        if static is None
        else standing_foot_angles(_same_labels(fill_gaps(static, max_gap_s), run), up_v),
    )


def rbds_joint_centres(
    run: MarkerData,
    static: MarkerData,
    *,
    hjc_method: str = "harrington",
    max_gap_s: float = DEFAULT_MAX_GAP_S,
) -> JointCentres:
    """Joint centres of an RBDS running trial (Fukuchi et al. 2017), calibrated on the subject's static
    trial: :func:`lab_joint_centres` on the RBDS marker set (hips by Harrington on the static pelvis carried
    by the six pelvis markers, knees and ankles as epicondyle and malleolus midpoints carried by the thigh and
    shank clusters, toe = ``MT2`` carried by the foot cluster, heel = ``Heel.Bottom``; RBDS001's swapped
    ``R.MT1`` / ``R.MT5`` labels are repaired and reported in :attr:`JointCentres.relabelled`)."""
    return lab_joint_centres(run, static, hjc_method=hjc_method, max_gap_s=max_gap_s)


def rbds_motion(
    run: MarkerData,
    static: MarkerData,
    *,
    height_m: float | None = None,
    treadmill_speed_mps: float | None = None,
    hjc_method: str = "harrington",
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    lowpass_hz: float | None = None,
) -> Motion:
    """A Motion of an RBDS running trial (:func:`lab_motion`; the RBDS lab frame is +X anterior, +Y up, +Z
    right, so ``up = (0, 1, 0)``). Joints: pelvis, left/right hip, knee, ankle, heel and toe."""
    return lab_motion(
        run,
        static,
        height_m=height_m,
        treadmill_speed_mps=treadmill_speed_mps,
        hjc_method=hjc_method,
        max_gap_s=max_gap_s,
        lowpass_hz=lowpass_hz,
    )


def standing_foot_angles(static: MarkerData, up: FloatArray) -> dict[str, float]:
    """Per side, the angle (deg) of the foot line used for the foot strike angle (the ``HEEL`` -> ``TOE``
    markers of :func:`lab_joint_centres`: RBDS heel bottom -> second metatarsal head, Plug-in-Gait LHEE ->
    LTOE) above the horizontal while standing: the offset the foot strike angle is measured from (Altman &
    Davis 2012). Median over the static trial; a side whose markers are missing is left out."""
    roles = assign_roles(static.labels)
    out: dict[str, float] = {}
    for side, s in _SIDE_PREFIX.items():
        heel, toe = roles.get(f"{s}.HEEL"), roles.get(f"{s}.TOE")
        if not (_visible(static, heel) and _visible(static, toe)):
            continue
        assert heel is not None and toe is not None
        foot = np.nanmedian(static.marker(toe) - static.marker(heel), axis=0)
        rise = float(foot @ up)
        if np.isfinite(rise):
            out[side] = math.degrees(math.atan2(rise, float(np.linalg.norm(foot - rise * up))))
    return out


def motion_from_markers(
    markers: MarkerData,
    mapping: Mapping[str, str | Sequence[str]],
    *,
    up: Sequence[float] = (0.0, 0.0, 1.0),
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    height_m: float | None = None,
    treadmill_speed_mps: float | None = None,
) -> Motion:
    """A Motion straight from markers: each joint is one marker or the mean of several (``mapping``: joint
    name -> marker label or labels), after :func:`fill_gaps`.

    ``up`` is the lab's vertical axis (Z for most C3D / QTM labs, ``(0, 1, 0)`` for the RBDS lab). No
    joint-centre model is applied, so markers stand for the joints as they are (skin markers lie a few cm off
    the joint centres).
    """
    unknown = sorted(set(mapping) - set(MOTION_JOINTS))
    if unknown:
        raise ValueError(f"unknown joint names {unknown} (expected names from {MOTION_JOINTS})")
    up_v = np.asarray(up, np.float64)
    if up_v.shape != (3,) or not np.linalg.norm(up_v) > 0:
        raise ValueError("up must be a non-zero 3-vector")
    filled = fill_gaps(markers, max_gap_s)
    joints: dict[str, FloatArray] = {}
    for joint, labels in mapping.items():
        names = [labels] if isinstance(labels, str) else list(labels)
        if not names:
            raise ValueError(f"joint {joint}: no markers given")
        stack = np.stack([filled.marker(n) for n in names])
        joints[joint] = stack.mean(axis=0)  # NaN wherever one of the markers is missing
    return Motion(
        t=np.asarray(markers.t, np.float64),
        joints=joints,
        up=up_v / np.linalg.norm(up_v),
        metric=True,
        source="mocap",
        height_m=height_m,
        treadmill_speed_mps=treadmill_speed_mps,
    )
