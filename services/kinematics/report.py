"""Files a coach reads: ``metrics.json``, ``steps.csv``, ``metrics.xlsx`` and three PNG plots.

* ``angles.png``: knee and hip flexion over time per side, stance phases shaded, foot strikes marked;
* ``steps.png``: key metrics per step (bars, left/right coloured, steps a flag excludes pale) with each
  side's mean and 95 % confidence band;
* ``trajectories.png``: ankle paths relative to the pelvis in the runner's sagittal plane, and the pelvis
  height the vertical oscillation is measured from, over time.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray
from openpyxl import Workbook
from openpyxl.styles import Font

from services.kinematics.model import FLAG_EXCLUDES, METRICS
from services.kinematics.schema import KinematicsResponse

COLOURS = {"left": "#ff8c00", "right": "#00a0ff"}
PLOTTED = (
    ("cadence_spm", "Cadence", "steps/min"),
    ("contact_time_s", "Ground contact", "s"),
    ("knee_flexion_ic_deg", "Knee flexion at contact", "deg"),
    ("knee_flexion_peak_stance_deg", "Peak knee flexion in stance", "deg"),
    ("vertical_oscillation_cm", "Vertical oscillation", "cm"),
    ("overstride_cm", "Overstride (foot ahead of hip)", "cm"),
)
FloatArray = NDArray[np.float64]


def _cell(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.4g}"


def write_steps_csv(resp: KinematicsResponse, path: Path) -> None:
    names = list(METRICS)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "side", "strike_t", "toe_off_t", "next_strike_t", *names, "flags"])
        for i, s in enumerate(resp.steps):
            w.writerow(
                [
                    i,
                    s.side,
                    f"{s.strike.t:.4f}",
                    "" if s.toe_off is None else f"{s.toe_off.t:.4f}",
                    "" if s.next_strike is None else f"{s.next_strike.t:.4f}",
                    *(_cell(s.metrics.get(n)) for n in names),
                    ";".join(s.flags),
                ]
            )


def write_xlsx(resp: KinematicsResponse, path: Path) -> None:
    wb = Workbook()
    bold = Font(bold=True)
    ws = wb.active
    ws.title = "Summary"
    ws.append(["metric", "unit", "mean", "SD", "95% CI low", "95% CI high", "steps", "left mean",
               "right mean", "asymmetry %"])  # fmt: skip
    for name, summ in resp.summary.items():
        left = resp.summary_by_side.get("left", {}).get(name)
        right = resp.summary_by_side.get("right", {}).get(name)
        ws.append(
            [name, resp.units.get(name, ""), summ.mean, summ.sd, summ.ci95_low, summ.ci95_high, summ.n,
             left.mean if left else None, right.mean if right else None, resp.asymmetry_pct.get(name)]
        )  # fmt: skip
    for flag in resp.flags:
        ws.append([])
        ws.append(["note", flag])
    steps = wb.create_sheet("Steps")
    names = list(METRICS)
    steps.append(["step", "side", "strike_t", "toe_off_t", *names, "flags"])
    for i, s in enumerate(resp.steps):
        steps.append(
            [i, s.side, s.strike.t, None if s.toe_off is None else s.toe_off.t,
             *(s.metrics.get(n) for n in names), ", ".join(s.flags)]
        )  # fmt: skip
    series = wb.create_sheet("Angles")
    keys = list(resp.series)
    series.append(["t", *keys])
    for i, t in enumerate(resp.t):
        series.append([t, *(resp.series[k][i] for k in keys)])
    for sheet in (ws, steps, series):
        for c in sheet[1]:
            c.font = bold
        sheet.freeze_panes = "A2"
    wb.save(path)


def _arr(values: list[float | None]) -> FloatArray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def plot_angles(resp: KinematicsResponse) -> Figure:
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
        ax.set_ylabel(label)
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
    fig = Figure(figsize=(13, 7))
    axes = fig.subplots(2, 3)
    for ax, (name, title, unit) in zip(axes.ravel(), PLOTTED, strict=True):
        unit = resp.units.get(name, unit)
        values = [s.metrics.get(name) for s in resp.steps]
        x = np.arange(len(values))
        for i, (s, v) in enumerate(zip(resp.steps, values, strict=True)):
            if v is None:
                continue
            excluded = any(name in FLAG_EXCLUDES.get(f, METRICS) for f in s.flags)
            ax.bar(
                i,
                v,
                color=COLOURS[s.side],
                alpha=0.35 if excluded else 0.9,
                hatch="//" if excluded else None,
                edgecolor="k",
                lw=0.3,
            )
        summ_all = resp.summary.get(name)
        if summ_all is not None and summ_all.n == 0 and values:
            note = "not summarised: every step\nis flagged for this metric"
            box = {"facecolor": "white", "alpha": 0.85}
            ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=9, bbox=box)
        for side in ("left", "right"):
            summ = resp.summary_by_side.get(side, {}).get(name)
            if summ and summ.mean is not None and summ.ci95_low is not None and summ.ci95_high is not None:
                ax.axhspan(summ.ci95_low, summ.ci95_high, color=COLOURS[side], alpha=0.15)
                ax.axhline(summ.mean, color=COLOURS[side], lw=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.set_xlabel("step")
        ax.set_xticks(x[:: max(1, len(x) // 10)] if len(x) else [])
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        "Per step: orange left, blue right; pale and hatched = left out of the summary by a quality flag; "
        "line = side mean, band = 95 % CI"
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
    height = resp.series.get("pelvis_height_cm")
    if height is not None:
        bx.plot(t, _arr(height), color="k", lw=1.2, label="pelvis height (median = 0)")
        for s in resp.steps:
            bx.axvline(s.strike.t, color=COLOURS[s.side], lw=0.8, ls="--")
        vo = resp.summary.get("vertical_oscillation_cm")
        if vo is not None and vo.mean is not None:
            unit_vo = resp.units.get("vertical_oscillation_cm", "cm")
            bx.set_title(f"Pelvis height over time: vertical oscillation {vo.mean:.1f} {unit_vo} per step")
        else:
            bx.set_title("Pelvis height over time")
        bx.set_ylabel(resp.units.get("pelvis_height_cm", "cm"))
    bx.set_xlabel("time (s)")
    bx.grid(alpha=0.3)
    bx.legend(fontsize=8, title="dashed: foot strikes", title_fontsize=8)
    fig.tight_layout()
    return fig


def write_report(
    resp: KinematicsResponse,
    out_dir: Path,
    *,
    joints: dict[str, FloatArray] | None = None,
    up: FloatArray | None = None,
    unit: str = "m",
    metadata: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write every kinematics artifact into ``out_dir``; returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out_dir / "metrics.json",
        "steps": out_dir / "steps.csv",
        "xlsx": out_dir / "metrics.xlsx",
        "angles_plot": out_dir / "angles.png",
        "steps_plot": out_dir / "steps.png",
    }
    doc = {
        "schema": "gaitway.metrics",
        "schema_version": 1,
        **(metadata or {}),
        **resp.model_dump(mode="json"),
    }
    paths["metrics"].write_text(json.dumps(doc, separators=(",", ":")))
    write_steps_csv(resp, paths["steps"])
    write_xlsx(resp, paths["xlsx"])
    for name, fig in (("angles_plot", plot_angles(resp)), ("steps_plot", plot_steps(resp))):
        fig.savefig(paths[name], dpi=110)
    if joints is not None and up is not None:
        paths["trajectories_plot"] = out_dir / "trajectories.png"
        fig = plot_trajectories(resp, joints, up, unit=unit)
        fig.savefig(paths["trajectories_plot"], dpi=110)
    return paths
