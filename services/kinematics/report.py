"""Files a coach reads: ``metrics.json``, ``steps.csv``, ``metrics.xlsx`` and three PNG plots.

:func:`write_metrics` writes the first two (the analysis' result; cheap), :func:`write_xlsx` and
:func:`write_plots` the rest (the report; most of the time goes to matplotlib, imported only by them).
Every file is written under a temporary name and renamed into place, so a reader never meets half of it.

* ``angles.png``: knee and hip flexion over time per side, stance phases shaded, foot strikes marked;
* ``steps.png``: the plotted metrics of :data:`services.kinematics.metric_defs.PLOTTED` per step (bars,
  left/right coloured, steps a flag excludes pale) with each side's mean and 95 % confidence band and the
  metric's normal range;
* ``trajectories.png``: ankle paths relative to the pelvis in the runner's sagittal plane, and the pelvis
  height the vertical oscillation is measured from, over time.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from services.files import atomic_path
from services.kinematics.metric_defs import METRIC_DEFS, METRICS, PLOTTED, MetricDef
from services.kinematics.schema import KinematicsResponse, StepOut

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLOURS = {"left": "#ff8c00", "right": "#00a0ff"}
_SOURCE_LABEL = {
    "2d": "2D sagittal",
    "2d_corrected": "2D, view corrected",
    "3d": "lifted 3D",
    "mocap": "motion capture",
}
#: per-step columns besides the metrics
_STEP_COLUMNS = ["step", "side", "strike_t", "toe_off_t", "next_strike_t", "view", "yaw_deg", "angle_source",
                 "foot_strike"]  # fmt: skip
FloatArray = NDArray[np.float64]
#: resolution of the PNG plots (dots per inch of their figure sizes)
PLOT_DPI = 110
#: the file of each artifact these functions write, by artifact name
FILES = {
    "metrics": "metrics.json",
    "steps": "steps.csv",
    "xlsx": "metrics.xlsx",
    "angles_plot": "angles.png",
    "steps_plot": "steps.png",
    "trajectories_plot": "trajectories.png",
}


def _cell(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _step_row(i: int, s: StepOut) -> list[object]:
    return [
        i,
        s.side,
        s.strike.t,
        None if s.toe_off is None else s.toe_off.t,
        None if s.next_strike is None else s.next_strike.t,
        s.view,
        s.yaw_deg,
        s.sources.get("knee_flexion_ic_deg", ""),
        s.foot_strike or "",
    ]


def _excluded(s: StepOut) -> str:
    return "; ".join(f"{name}: {', '.join(flags)}" for name, flags in s.excluded.items())


def write_steps_csv(resp: KinematicsResponse, path: Path) -> None:
    names = list(METRICS)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*_STEP_COLUMNS, *names, "flags", "excluded"])
        for i, s in enumerate(resp.steps):
            row = [_cell(v) if isinstance(v, float) else v for v in _step_row(i, s)]
            w.writerow([*row, *(_cell(s.metrics.get(n)) for n in names), ";".join(s.flags), _excluded(s)])


def _normal(d: MetricDef) -> str:
    return "" if d.normal is None else f"{d.normal[0]:g}-{d.normal[1]:g}"


def write_xlsx(resp: KinematicsResponse, path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    bold = Font(bold=True)
    ws = wb.active
    ws.title = "Summary"
    ws.append(["metric", "title", "unit", "mean", "SD", "95% CI low", "95% CI high", "steps", "left mean",
               "right mean", "asymmetry %", "normal range", "normal range source"])  # fmt: skip
    for d in METRIC_DEFS:
        summ = resp.summary[d.name]
        left = resp.summary_by_side.get("left", {}).get(d.name)
        right = resp.summary_by_side.get("right", {}).get(d.name)
        ws.append(
            [d.name, d.title, resp.units.get(d.name, d.unit), summ.mean, summ.sd, summ.ci95_low,
             summ.ci95_high, summ.n, left.mean if left else None, right.mean if right else None,
             resp.asymmetry_pct.get(d.name), _normal(d), d.normal_source]
        )  # fmt: skip
    for flag in resp.flags:
        ws.append([])
        ws.append(["note", flag])
    steps = wb.create_sheet("Steps")
    names = list(METRICS)
    steps.append([*_STEP_COLUMNS, *names, "flags", "excluded"])
    for i, s in enumerate(resp.steps):
        steps.append([*_step_row(i, s), *(s.metrics.get(n) for n in names), ", ".join(s.flags), _excluded(s)])
    series = wb.create_sheet("Series")
    keys = list(resp.series)
    series.append(["t", *keys])
    series.append(["source", *(resp.series_sources.get(k, "") for k in keys)])
    for i, t in enumerate(resp.t):
        series.append([t, *(resp.series[k][i] for k in keys)])
    defs = wb.create_sheet("Definitions")
    defs.append(["metric", "title", "unit", "kind", "frames read", "definition", "normal range", "source",
                 "left out by"])  # fmt: skip
    for d in METRIC_DEFS:
        defs.append([d.name, d.title, d.unit, d.kind, d.window, d.description, _normal(d), d.normal_source,
                     ", ".join(sorted(d.excluded_by))])  # fmt: skip
    for sheet in (ws, steps, series, defs):
        for c in sheet[1]:
            c.font = bold
        sheet.freeze_panes = "A2"
    with atomic_path(path) as tmp:
        wb.save(tmp)


def _arr(values: list[float | None]) -> FloatArray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def plot_angles(resp: KinematicsResponse) -> Figure:
    from matplotlib.figure import Figure

    t = np.asarray(resp.t)
    rows = [("knee_flexion_deg", "Knee flexion (deg)"), ("hip_flexion_deg", "Hip flexion (deg)")]
    fig = Figure(figsize=(11, 6.5))
    axes = fig.subplots(len(rows), 1, sharex=True)
    for ax, (key, label) in zip(axes, rows, strict=True):
        for side in ("left", "right"):
            series = resp.series.get(f"{side}_{key}")
            if series is not None:
                ax.plot(t, _arr(series), color=COLOURS[side], lw=1.6, label=side)
        for s in resp.steps:
            end = s.toe_off.t if s.toe_off is not None else s.strike.t
            ax.axvspan(s.strike.t, end, color=COLOURS[s.side], alpha=0.12, lw=0)
            ax.axvline(s.strike.t, color=COLOURS[s.side], lw=0.8, ls="--")
        source = resp.series_sources.get(f"left_{key}", "")
        ax.set_ylabel(f"{label}\n{_SOURCE_LABEL.get(source, source)}")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", title="shaded: stance, dashed: foot strike")
    axes[-1].set_xlabel("time (s)")
    cad = resp.summary.get("cadence_spm")
    title = "Joint angles over time"
    if cad and cad.mean is not None:
        title += f" — cadence {cad.mean:.0f} steps/min over {cad.n} steps"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_steps(resp: KinematicsResponse) -> Figure:
    from matplotlib.figure import Figure

    cols = 4
    rows = math.ceil(len(PLOTTED) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.3 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(PLOTTED) :]:
        ax.set_axis_off()
    for ax, d in zip(axes, PLOTTED, strict=False):
        values = [s.metrics.get(d.name) for s in resp.steps]
        x = np.arange(len(values))
        if d.normal is not None:
            ax.axhspan(*d.normal, color="0.85", zorder=0, lw=0)
        for i, (s, v) in enumerate(zip(resp.steps, values, strict=True)):
            if v is None:
                continue
            excluded = d.name in s.excluded
            ax.bar(
                i,
                v,
                color=COLOURS[s.side],
                alpha=0.35 if excluded else 0.9,
                hatch="//" if excluded else None,
                edgecolor="k",
                lw=0.3,
            )
        summ_all = resp.summary.get(d.name)
        measured = any(v is not None for v in values)
        if summ_all is not None and summ_all.n == 0:
            note = "left out of the summary:\nsee the flags" if measured else "not measured\n(see the notes)"
            box = {"facecolor": "white", "alpha": 0.85}
            ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=9, bbox=box)
        for side in ("left", "right"):
            summ = resp.summary_by_side.get(side, {}).get(d.name)
            if summ and summ.mean is not None and summ.ci95_low is not None and summ.ci95_high is not None:
                ax.axhspan(summ.ci95_low, summ.ci95_high, color=COLOURS[side], alpha=0.15)
                ax.axhline(summ.mean, color=COLOURS[side], lw=1.2)
        ax.set_title(d.title, fontsize=10)
        ax.set_ylabel(resp.units.get(d.name, d.unit))
        ax.set_xlabel("step")
        ax.set_xticks(x[:: max(1, len(x) // 10)] if len(x) else [])
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        "Per step: orange left, blue right; pale and hatched = left out of the summary by a quality flag; "
        "line = side mean, band = 95 % CI; grey = typical range of healthy runners"
    )
    fig.tight_layout()
    return fig


def sagittal_plane(joints: dict[str, FloatArray], up: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Unit forward (3,) and up (3,) axes of the runner (median facing direction from the hips)."""
    right = np.nanmedian(joints["right_hip"] - joints["left_hip"], axis=0)
    right -= right.dot(up) * up
    forward = np.cross(up, right)
    return forward / np.linalg.norm(forward), up


def plot_trajectories(
    resp: KinematicsResponse, joints: dict[str, FloatArray], up: FloatArray, *, unit: str
) -> Figure:
    from matplotlib.figure import Figure

    forward, up = sagittal_plane(joints, up)
    pelvis = joints["pelvis"]
    t = np.asarray(resp.t)
    fig = Figure(figsize=(12, 5))
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    for side in ("left", "right"):
        ankle = joints[f"{side}_ankle"] - pelvis
        ax.plot(ankle @ forward, ankle @ up, color=COLOURS[side], lw=1, label=f"{side} ankle")
    ax.plot([0], [0], "ko", label="pelvis (origin)")
    ax.set_aspect("equal")
    ax.set_xlabel(f"forward ({unit})")
    ax.set_ylabel(f"up ({unit})")
    ax.set_title("Ankle paths relative to the pelvis (sagittal plane)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    name = "pelvis_height_cm" if "pelvis_height_cm" in resp.series else "pelvis_height_pct_leg"
    height = resp.series.get(name)
    if height is not None:
        bx.plot(t, _arr(height), color="k", lw=1.2, label="pelvis height (median = 0)")
        for s in resp.steps:
            bx.axvline(s.strike.t, color=COLOURS[s.side], lw=0.8, ls="--")
        vo_name = "vertical_oscillation_cm" if name.endswith("_cm") else "vertical_oscillation_pct_leg"
        vo = resp.summary.get(vo_name)
        if vo is not None and vo.mean is not None:
            unit_vo = resp.units.get(vo_name, "cm")
            bx.set_title(f"Pelvis height over time: vertical oscillation {vo.mean:.1f} {unit_vo} per step")
        else:
            bx.set_title("Pelvis height over time")
        bx.set_ylabel(resp.units.get(name, "cm"))
    bx.set_xlabel("time (s)")
    bx.grid(alpha=0.3)
    bx.legend(fontsize=8, title="dashed: foot strikes", title_fontsize=8)
    fig.tight_layout()
    return fig


def metrics_document(resp: KinematicsResponse, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``metrics.json`` document: schema, ``metadata`` (video, fps...), then the response's fields."""
    return {
        "schema": "gaitway.metrics",
        "schema_version": 1,
        **(metadata or {}),
        **resp.model_dump(mode="json"),
    }


def read_metrics(path: Path) -> KinematicsResponse:
    """The kinematics response a ``metrics.json`` holds (its schema and metadata fields are ignored)."""
    return KinematicsResponse.model_validate_json(path.read_bytes())


def write_metrics(
    resp: KinematicsResponse, out_dir: Path, *, metadata: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write ``metrics.json`` and ``steps.csv`` into ``out_dir`` (which must exist); returns name -> path."""
    paths = {name: out_dir / FILES[name] for name in ("metrics", "steps")}
    with atomic_path(paths["metrics"]) as tmp:
        tmp.write_text(json.dumps(metrics_document(resp, metadata), separators=(",", ":")))
    write_steps_csv(resp, paths["steps"])
    return paths


def write_plots(
    resp: KinematicsResponse,
    out_dir: Path,
    *,
    joints: dict[str, FloatArray] | None = None,
    up: FloatArray | None = None,
    unit: str = "m",
    dpi: int = PLOT_DPI,
) -> dict[str, Path]:
    """Write the PNG plots into ``out_dir`` (which must exist): angles and steps, and with ``joints`` (name
    -> (T, 3) positions in ``unit``) and ``up`` (3,) the trajectories; returns name -> path."""
    figures = {"angles_plot": lambda: plot_angles(resp), "steps_plot": lambda: plot_steps(resp)}
    if joints is not None and up is not None:
        figures["trajectories_plot"] = lambda: plot_trajectories(resp, joints, up, unit=unit)
    paths = {}
    for name, make in figures.items():
        paths[name] = out_dir / FILES[name]
        with atomic_path(paths[name]) as tmp:
            make().savefig(tmp, dpi=dpi, format="png")
    return paths
