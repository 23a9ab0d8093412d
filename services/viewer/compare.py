"""Comparison of two analyses (run A, the reference, and run B): joint-angle curves over the gait cycle and
the running metrics side by side, as data (:func:`compare_runs`) and as one self-contained HTML page
(:func:`render_comparison`, :func:`write_comparison`; the CLI's ``gaitway compare A/ B/``).

Gait cycles
-----------
A cycle is one foot's contact to the same foot's next contact, from the strikes in ``metrics.json``'s
``events`` (the steps' contact times). A cycle is *complete* when both contacts lie in the clip, it holds
at most one contact of the other foot (two mean this foot's contact in between was missed) and it lasts
between :data:`CYCLE_RANGE` times the median cycle of the run (an irregular event otherwise). Each angle
series is resampled on the cycle's own time, contact = 0 % and next contact = 100 %, in :data:`POINTS`
points (linear interpolation), and averaged per run, side and angle with the sample SD across cycles. An
angle without a side (trunk lean) is averaged over each foot's cycles in turn.

Only cycles none of whose frames is flagged for the angle enter its curves (``include_flagged`` keeps them,
and the page says so). A frame is flagged for an angle when

* ``missing``: the angle has no value there;
* ``swap_repaired``: a left/right swap of the 2D keypoints was repaired in it (``poses.json`` records the
  repair per frame, not per keypoint, so any repaired frame counts; trunk lean is immune to swaps);
* ``out_of_plane``: it lies in a step whose view is beyond the validated yaw (``metrics.json``);
* ``low_confidence``: the mean 2D score over the cycle of a keypoint the angle reads is below
  :data:`MIN_CONFIDENCE` (the kinematics' own rule, at the scope of the cycle);
* ``implausible``: the step opened by the cycle's contact has a metric of this angle outside its
  plausible range.

Statistics
----------
The difference curve is B's mean curve minus A's. A metric's difference (B − A of the step means) is
*significant* when it exceeds the half-width of its 95 % confidence interval,
``|diff| > t_crit · sqrt(SE_a² + SE_b²)`` with ``SE = SD / sqrt(n)`` and ``t_crit`` the 97.5 % quantile of
Student's t at the Welch–Satterthwaite degrees of freedom (Welch's unequal-variance t-test at the 5 %
level; :func:`welch`). It needs n >= 2 steps in both runs. The steps of one clip are not independent
samples of a runner's gait, so this says whether the two analyses differ beyond their step-to-step
scatter, not that the runner changed.

Each metric and curve records its angle sources (2D sagittal, 2D with the view's foreshortening undone,
lifted 3D, motion capture); when the two runs measured it with different methods (2D against 3D) a warning
says that the difference partly reflects the method.

Errors: :class:`services.errors.NoValidDataError` (code ``no_valid_data``) for a run without running
metrics, :class:`services.errors.ClipTooShortError` (``clip_too_short``) for a run without a complete
gait cycle, :class:`services.errors.InputError` (``invalid_input``) for a folder that holds no analysis,
:class:`services.errors.ShapeError` (``invalid_shape``) when a run's poses and metrics do not belong
together.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import t as student_t

from services.errors import ClipTooShortError, InputError, NoValidDataError, ShapeError
from services.kinematics.metric_defs import definitions as default_definitions
from services.plain import to_plain

__all__ = [
    "CYCLE_RANGE",
    "MIN_CONFIDENCE",
    "POINTS",
    "GaitCycle",
    "compare_runs",
    "data_path",
    "default_labels",
    "format_table",
    "gait_cycles",
    "normalise_cycle",
    "render_comparison",
    "welch",
    "write_comparison",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
Doc = Mapping[str, Any]

SCHEMA = "gaitway.comparison"
SCHEMA_VERSION = 1
#: samples of a normalised gait cycle: 0, 1, ..., 100 %
POINTS = 101
#: a complete cycle lasts between these multiples of the run's median cycle
CYCLE_RANGE = (0.67, 1.5)
#: mean 2D keypoint score below which a cycle is ``low_confidence`` (the kinematics' default)
MIN_CONFIDENCE = 0.3
#: two-sided confidence level of the metric differences
LEVEL = 0.95
SIDES = ("left", "right")

#: angles in the order they are shown; others found in both runs follow alphabetically
_ANGLE_ORDER = ("knee_flexion", "hip_flexion", "thigh_angle", "tibia_angle", "ankle_dorsiflexion",
                "foot_angle", "trunk_lean", "elbow_flexion", "pelvic_drop")  # fmt: skip
_ANGLE_TITLES = {
    "knee_flexion": "Knee flexion",
    "hip_flexion": "Hip flexion",
    "thigh_angle": "Thigh angle",
    "tibia_angle": "Tibia angle",
    "ankle_dorsiflexion": "Ankle dorsiflexion",
    "foot_angle": "Foot angle",
    "trunk_lean": "Trunk lean",
    "elbow_flexion": "Elbow flexion",
    "pelvic_drop": "Pelvic drop",
}
#: 2D keypoints whose scores an angle's confidence rests on ("{side}": the cycle's side)
_ANGLE_KEYPOINTS: dict[str, tuple[str, ...]] = {
    "knee_flexion": ("{side}_hip", "{side}_knee", "{side}_ankle"),
    "hip_flexion": ("{side}_hip", "{side}_knee", "left_shoulder", "right_shoulder"),
    "thigh_angle": ("{side}_hip", "{side}_knee"),
    "tibia_angle": ("{side}_knee", "{side}_ankle"),
    "ankle_dorsiflexion": ("{side}_knee", "{side}_ankle", "{side}_heel", "{side}_big_toe"),
    "foot_angle": ("{side}_heel", "{side}_big_toe"),
    "trunk_lean": ("left_shoulder", "right_shoulder", "left_hip", "right_hip"),
    "elbow_flexion": ("{side}_shoulder", "{side}_elbow", "{side}_wrist"),
    "pelvic_drop": ("left_hip", "right_hip"),
}
#: angles read from midpoints of left/right pairs only, which a left/right swap leaves where they are
_SWAP_IMMUNE = frozenset({"trunk_lean"})
#: angle -> the per-step metrics read from it (their ``implausible`` flag excludes the cycle)
_ANGLE_METRICS = {
    "knee_flexion": ("knee_flexion_ic_deg", "knee_flexion_peak_stance_deg"),
    "hip_flexion": ("hip_flexion_ic_deg", "hip_extension_peak_deg"),
    "tibia_angle": ("tibia_angle_ic_deg",),
    "foot_angle": ("foot_strike_angle_deg",),
    "trunk_lean": ("trunk_lean_stance_deg",),
}
#: angle source -> the measuring method it belongs to (a difference in method is warned about)
METHODS = {"2d": "2D sagittal", "2d_corrected": "2D sagittal", "3d": "3D", "mocap": "3D"}
SOURCE_LABELS = {
    "2d": "2D sagittal",
    "2d_corrected": "2D sagittal, view corrected",
    "3d": "lifted 3D",
    "mocap": "3D motion capture",
}
FLAG_NAMES = ("missing", "swap_repaired", "out_of_plane", "low_confidence", "implausible")


# --- gait cycles -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GaitCycle:
    """One foot's contact (``start``, seconds) to its next contact (``end``); ``toe_off`` the same foot's
    toe-off in between (None when not detected)."""

    side: str
    start: float
    end: float
    toe_off: float | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def toe_off_pct(self) -> float | None:
        return None if self.toe_off is None else 100.0 * (self.toe_off - self.start) / self.duration


def gait_cycles(metrics: Doc) -> tuple[list[GaitCycle], list[dict[str, Any]]]:
    """The complete gait cycles of an analysis (see the module docstring) in time order, and the rejected
    candidates as ``{"side", "start", "end", "reason"}``."""
    events = metrics.get("events") or [
        s["strike"] for s in metrics.get("steps", []) if isinstance(s, Mapping) and "strike" in s
    ]
    t = metrics.get("t") or []
    t_lo, t_hi = (float(t[0]), float(t[-1])) if t else (-math.inf, math.inf)
    strikes = sorted((e for e in events if e.get("kind", "strike") == "strike"), key=lambda e: e["t"])
    toe_offs = sorted((e for e in events if e.get("kind") == "toe_off"), key=lambda e: e["t"])
    candidates: list[tuple[GaitCycle, int]] = []
    for i, e in enumerate(strikes):
        nxt = next((f for f in strikes[i + 1 :] if f["side"] == e["side"]), None)
        if nxt is None:
            continue
        start, end = float(e["t"]), float(nxt["t"])
        others = sum(1 for f in strikes if f["side"] != e["side"] and start < f["t"] < end)
        toe = next((o for o in toe_offs if o["side"] == e["side"] and start < o["t"] < end), None)
        cycle = GaitCycle(e["side"], start, end, None if toe is None else float(toe["t"]))
        candidates.append((cycle, others))
    if not candidates:
        return [], []
    median = float(np.median([c.duration for c, _ in candidates]))
    kept: list[GaitCycle] = []
    rejected: list[dict[str, Any]] = []
    for c, others in candidates:
        reason = None
        if c.start < t_lo or c.end > t_hi:
            reason = "outside the clip"
        elif others > 1:
            reason = "a contact of this foot was missed (two contacts of the other foot in between)"
        elif not CYCLE_RANGE[0] * median <= c.duration <= CYCLE_RANGE[1] * median:
            reason = f"irregular: {c.duration:.3f} s against a median of {median:.3f} s"
        if reason is None:
            kept.append(c)
        else:
            rejected.append({"side": c.side, "start": c.start, "end": c.end, "reason": reason})
    return kept, rejected


def normalise_cycle(
    t: Sequence[float] | FloatArray,
    y: Sequence[float] | FloatArray,
    start: float,
    end: float,
    points: int = POINTS,
) -> FloatArray:
    """``y(t)`` resampled at ``points`` equally spaced instants from ``start`` (0 %) to ``end`` (100 %) by
    linear interpolation; NaN wherever a neighbouring sample is NaN."""
    tt = np.asarray(t, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    return np.interp(start + np.linspace(0.0, 1.0, points) * (end - start), tt, yy)


def _frames(t: FloatArray, c: GaitCycle) -> slice:
    """The frames a cycle's resampling reads (the samples around its start and end included)."""
    lo = max(int(np.searchsorted(t, c.start, side="right")) - 1, 0)
    hi = min(int(np.searchsorted(t, c.end, side="left")), t.size - 1)
    return slice(lo, hi + 1)


# --- one run ---------------------------------------------------------------------------------------------
def _floats(values: Sequence[Any] | None) -> FloatArray:
    return np.array([math.nan if v is None else v for v in values or []], dtype=np.float64)


class _Run:
    """What the comparison reads of one analysis: series, cycles and the frames' quality flags."""

    def __init__(self, poses: Doc, metrics: Doc, label: str) -> None:
        if not isinstance(metrics, Mapping) or not metrics:
            raise NoValidDataError(f"run {label} has no running metrics (no metrics.json)")
        if not isinstance(poses, Mapping):
            raise InputError(f"run {label}: poses.json is not a JSON object")
        summary = metrics.get("summary")
        steps = metrics.get("steps")
        if not isinstance(summary, Mapping) or not isinstance(steps, list):
            raise InputError(
                f"run {label}: metrics.json holds no summary and steps (not a Gaitway analysis?)"
            )
        if not steps or not any((s or {}).get("n", 0) > 0 for s in summary.values()):
            raise NoValidDataError(f"run {label} has no running metrics: no step was measured")
        self.label = label
        self.poses = poses
        self.metrics = metrics
        self.steps: list[Mapping[str, Any]] = steps
        self.t = _floats(metrics.get("t"))
        if self.t.size < 2:
            raise InputError(f"run {label}: metrics.json holds no time series")
        self.series: Mapping[str, Any] = metrics.get("series") or {}
        self.series_sources: Mapping[str, str] = metrics.get("series_sources") or {}
        self.cycles, self.rejected = gait_cycles(metrics)
        if not self.cycles:
            raise ClipTooShortError(
                f"run {label} has no complete gait cycle (a foot's contact to its next contact): "
                f"{len(self.rejected)} candidate(s) rejected"
            )
        n = self.t.size
        frames = poses.get("frames") or []
        if frames and len(frames) != n:
            raise ShapeError(
                f"run {label}: poses.json has {len(frames)} frames, metrics.json {n}: "
                "they are not from the same analysis"
            )
        self.swapped = np.array([bool(f.get("swap_repaired")) for f in frames] or [False] * n, dtype=np.bool_)
        joints = (poses.get("skeletons", {}).get("keypoints2d", {}) or {}).get("joints") or []
        self.scores: dict[str, FloatArray] = {}
        if frames and joints:
            xy = [f.get("keypoints2d") or [] for f in frames]
            for k, name in enumerate(joints):
                self.scores[name] = np.array(
                    [math.nan if len(row) <= k or row[k][2] is None else row[k][2] for row in xy],
                    dtype=np.float64,
                )
        self.out_of_plane = np.zeros(n, dtype=np.bool_)
        for s in steps:
            if "out_of_plane" in (s.get("flags") or []):
                last = s.get("next_strike") or s.get("toe_off") or s["strike"]
                self.out_of_plane[s["strike"]["index"] : last["index"] + 1] = True

    def key(self, angle: str, side: str) -> str | None:
        for k in (f"{side}_{angle}_deg", f"{angle}_deg"):
            if k in self.series:
                return k
        return None

    def angles(self) -> list[str]:
        """Angle names with a finite value (sided names without their side)."""
        out = set()
        for k, v in self.series.items():
            if not k.endswith("_deg") or not np.isfinite(_floats(v)).any():
                continue
            name = k[: -len("_deg")]
            for side in SIDES:
                name = name.removeprefix(f"{side}_")
            out.add(name)
        return sorted(out)

    def step_at(self, c: GaitCycle) -> Mapping[str, Any] | None:
        return next(
            (s for s in self.steps if s["side"] == c.side and abs(s["strike"]["t"] - c.start) < 1e-6), None
        )

    def cycle_flags(self, c: GaitCycle, angle: str, y: FloatArray) -> list[str]:
        frames = _frames(self.t, c)
        flags = []
        if not np.isfinite(y[frames]).all():
            flags.append("missing")
        if angle not in _SWAP_IMMUNE and self.swapped[frames].any():
            flags.append("swap_repaired")
        if self.out_of_plane[frames].any():
            flags.append("out_of_plane")
        for template in _ANGLE_KEYPOINTS.get(angle, ()):
            score = self.scores.get(template.format(side=c.side))
            if score is not None and float(np.nan_to_num(score[frames], nan=0.0).mean()) < MIN_CONFIDENCE:
                flags.append("low_confidence")
                break
        step = self.step_at(c)
        excluded = (step or {}).get("excluded") or {}
        if any("implausible" in excluded.get(m, ()) for m in _ANGLE_METRICS.get(angle, ())):
            flags.append("implausible")
        return flags

    def curve(self, angle: str, side: str, *, include_flagged: bool) -> dict[str, Any]:
        """Mean and SD over this side's usable cycles of one angle."""
        key = self.key(angle, side)
        cycles = [c for c in self.cycles if c.side == side]
        out: dict[str, Any] = {
            "series": key,
            "source": self.series_sources.get(key) if key else None,
            "cycles": len(cycles),
            "n": 0,
            "mean": None,
            "sd": None,
            "used": [],
            "excluded": {},
            "toe_off_pct": None,
        }
        if key is None:
            return out
        y = _floats(self.series[key])
        if y.size != self.t.size:
            raise ShapeError(f"run {self.label}: series {key} has {y.size} values for {self.t.size} frames")
        rows, used, toe = [], [], []
        excluded: Counter[str] = Counter()
        for c in cycles:
            flags = self.cycle_flags(c, angle, y)
            if flags and (not include_flagged or "missing" in flags):
                excluded.update(flags)
                continue
            rows.append(normalise_cycle(self.t, y, c.start, c.end))
            used.append(c.start)
            if c.toe_off_pct is not None:
                toe.append(c.toe_off_pct)
        out["used"] = used
        out["excluded"] = dict(excluded)
        out["n"] = len(rows)
        if rows:
            m = np.vstack(rows)
            out["mean"] = m.mean(axis=0)
            out["sd"] = m.std(axis=0, ddof=1) if len(rows) >= 2 else None
            out["toe_off_pct"] = float(np.mean(toe)) if toe else None
        return out

    def metric_sources(self, name: str) -> dict[str, int]:
        """Angle source -> steps, over the steps whose value of ``name`` enters the summary (else all)."""
        with_source = [s for s in self.steps if name in (s.get("sources") or {})]
        counted = [
            s
            for s in with_source
            if name not in (s.get("excluded") or {}) and (s.get("metrics") or {}).get(name) is not None
        ]
        return dict(Counter(s["sources"][name] for s in counted or with_source))

    def angle_sources(self) -> dict[str, list[str]]:
        """Angle source -> the angles (without side) of the series measured with it."""
        out: dict[str, set[str]] = {}
        for key, source in self.series_sources.items():
            if key.endswith("_deg"):
                name = key[: -len("_deg")].removeprefix("left_").removeprefix("right_")
                out.setdefault(source, set()).add(name)
        return {source: sorted(names) for source, names in sorted(out.items())}

    def info(self) -> dict[str, Any]:
        video = self.poses.get("video") or {}
        models = self.poses.get("models") or {}
        by_side = Counter(c.side for c in self.cycles)
        return {
            "label": self.label,
            "video": video.get("file") or self.metrics.get("video"),
            "duration_s": video.get("duration_s") or float(self.t[-1] - self.t[0]),
            "fps": self.metrics.get("fps") or video.get("fps"),
            "frames": int(self.t.size),
            "models": {role: (m or {}).get("name") for role, m in models.items()},
            "height_m": (self.poses.get("processing") or {}).get("height_m"),
            "units3d": (self.poses.get("units") or {}).get("keypoints3d"),
            "view": self.metrics.get("view") or {},
            "angle_sources": self.angle_sources(),
            "cycles": [
                {"side": c.side, "start": c.start, "end": c.end, "toe_off": c.toe_off} for c in self.cycles
            ],
            "cycles_by_side": {side: by_side.get(side, 0) for side in SIDES},
            "cycles_rejected": self.rejected,
            "notes": list(self.metrics.get("flags") or []),
            "date": None,  # the documents carry none; write_comparison sets the analysis date
        }


# --- statistics ------------------------------------------------------------------------------------------
def welch(
    mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int, *, level: float = LEVEL
) -> dict[str, Any]:
    """Welch's comparison of two means from their summaries: ``diff`` (B − A), ``se`` (its standard error
    ``sqrt(SD_a²/n_a + SD_b²/n_b)``), ``df`` (Welch–Satterthwaite), ``t_crit`` (the ``(1 + level) / 2``
    quantile of Student's t at ``df``), ``half_width`` (``t_crit · se``), ``ci`` (diff ± half-width), ``t``
    and ``p`` (two-sided), and ``significant``: ``|diff| > half_width``. Needs ``n >= 2`` in both.
    When both SDs are 0, ``df`` and ``t_crit`` are None and any non-zero difference is significant."""
    if n_a < 2 or n_b < 2:
        raise ValueError("Welch's test needs at least two values in each group")
    diff = mean_b - mean_a
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se = math.sqrt(va + vb)
    if se == 0.0:
        return {"diff": diff, "se": 0.0, "df": None, "t_crit": None, "half_width": 0.0, "ci": [diff, diff],
                "t": None, "p": 1.0 if diff == 0 else 0.0, "significant": diff != 0}  # fmt: skip
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    t_crit = float(student_t.ppf(0.5 + level / 2.0, df))
    half = t_crit * se
    t_stat = diff / se
    return {
        "diff": diff,
        "se": se,
        "df": df,
        "t_crit": t_crit,
        "half_width": half,
        "ci": [diff - half, diff + half],
        "t": t_stat,
        "p": float(2.0 * student_t.sf(abs(t_stat), df)),
        "significant": abs(diff) > half,
    }


def _methods(sources: Mapping[str, int] | Sequence[str | None]) -> list[str]:
    return sorted({METHODS.get(s, s) for s in sources if s})


def _method_warning(what: str, labels: tuple[str, str], a: list[str], b: list[str]) -> str | None:
    if not a or not b or a == b:
        return None
    return (
        f"{what}: {labels[0]} measured with {' + '.join(a)}, {labels[1]} with {' + '.join(b)}; "
        "the difference partly reflects the method"
    )


def _summary(doc: Doc, name: str) -> tuple[float | None, float | None, int]:
    s = (doc.get("summary") or {}).get(name) or {}
    return s.get("mean"), s.get("sd"), int(s.get("n") or 0)


def _metric_rows(ra: _Run, rb: _Run, labels: tuple[str, str]) -> list[dict[str, Any]]:
    defs: dict[str, Any] = dict(default_definitions())
    defs.update(rb.metrics.get("definitions") or {})
    defs.update(ra.metrics.get("definitions") or {})
    names = [n for n in ra.metrics["summary"] if n in rb.metrics["summary"]]
    order = {n: i for i, n in enumerate(defs)}
    names.sort(key=lambda n: order.get(n, len(order)))
    rows = []
    for name in names:
        d = defs.get(name) or {}
        unit_a = (ra.metrics.get("units") or {}).get(name, d.get("unit", ""))
        unit_b = (rb.metrics.get("units") or {}).get(name, d.get("unit", ""))
        sides: list[dict[str, Any]] = []
        for run in (ra, rb):
            mean, sd, n = _summary(run.metrics, name)
            sources = run.metric_sources(name)
            sides.append({"mean": mean, "sd": sd, "n": n, "sources": sources, "methods": _methods(sources)})
        a, b = sides
        row: dict[str, Any] = {
            "name": name,
            "title": d.get("title", name),
            "unit": unit_a,
            "normal": d.get("normal"),
            "a": a,
            "b": b,
            "diff": None,
            "test": None,
            "significant": None,
            "note": None,
            "warning": _method_warning(d.get("title", name), labels, a["methods"], b["methods"]),
        }
        if a["mean"] is not None and b["mean"] is not None:
            row["diff"] = b["mean"] - a["mean"]
        if unit_a != unit_b:
            row["note"] = f"units differ ({unit_a} against {unit_b}): not compared"
            row["diff"] = None
        elif a["n"] < 2 or b["n"] < 2 or a["sd"] is None or b["sd"] is None:
            missing = [lab for lab, s in zip(labels, sides, strict=True) if s["n"] < 2]
            row["note"] = (
                "not measured"
                if a["n"] == 0 and b["n"] == 0
                else f"fewer than 2 steps in {', '.join(missing)}"
            )
        else:
            row["test"] = welch(a["mean"], a["sd"], a["n"], b["mean"], b["sd"], b["n"])
            row["significant"] = row["test"]["significant"]
        rows.append(row)
    return rows


def _curves(ra: _Run, rb: _Run, labels: tuple[str, str], include_flagged: bool) -> list[dict[str, Any]]:
    found_a, found_b = set(ra.angles()), set(rb.angles())
    names = [a for a in _ANGLE_ORDER if a in found_a | found_b]
    names += sorted((found_a | found_b) - set(names))
    out = []
    for angle in names:
        title = _ANGLE_TITLES.get(angle, angle.replace("_", " ").capitalize())
        unreliable = {
            note
            for run in (ra, rb)
            for note in run.metrics.get("flags") or []
            if note.startswith(f"{angle}_deg is unreliable")
        }
        for side in SIDES:
            a = ra.curve(angle, side, include_flagged=include_flagged)
            b = rb.curve(angle, side, include_flagged=include_flagged)
            diff = None if a["mean"] is None or b["mean"] is None else b["mean"] - a["mean"]
            warnings = [w for w in [_method_warning(title, labels, _methods([a["source"]]),
                                                    _methods([b["source"]]))] if w]  # fmt: skip
            warnings += sorted(unreliable)
            summary = None
            if diff is not None:
                k = int(np.argmax(np.abs(diff)))
                summary = {
                    "mean_abs": float(np.mean(np.abs(diff))),
                    "rms": float(np.sqrt(np.mean(diff**2))),
                    "max_abs": float(abs(diff[k])),
                    "max_at_pct": 100.0 * k / (POINTS - 1),
                }
            out.append({"angle": angle, "title": title, "unit": "deg", "side": side, "a": a, "b": b,
                        "diff": diff, "diff_summary": summary, "warnings": warnings})  # fmt: skip
    return out


def compare_runs(
    a: tuple[Doc, Doc], b: tuple[Doc, Doc], *, labels: tuple[str, str], include_flagged: bool = False
) -> dict[str, Any]:
    """Compare two analyses, each given as its ``(poses, metrics)`` documents (``poses.json``,
    ``metrics.json``); B is compared with A (differences are B − A). Returns JSON types only:
    ``runs`` (per run: video, models, angle sources, the complete cycles), ``curves`` (per angle and side:
    each run's mean and SD over its unflagged cycles at :data:`POINTS` points of the gait cycle, the
    difference curve, warnings), ``metrics`` (per metric of both summaries: both runs' mean, SD, n and angle
    sources, the difference and its Welch test), ``warnings`` and ``method`` (the rules, in words).
    Raises :class:`NoValidDataError` for a run without metrics, :class:`ClipTooShortError` for a run
    without a complete gait cycle."""
    ra = _Run(a[0], a[1], labels[0])
    rb = _Run(b[0], b[1], labels[1])
    metrics = _metric_rows(ra, rb, labels)
    curves = _curves(ra, rb, labels, include_flagged)
    warnings = [m["warning"] for m in metrics if m["warning"]]
    for c in curves:
        warnings += [w for w in c["warnings"] if w not in warnings]
    for key, run in (("a", ra), ("b", rb)):
        empty = [c for c in curves if c[key]["n"] == 0 and c[key]["series"] is not None and c[key]["cycles"]]
        if empty:
            flags: Counter[str] = Counter()
            for c in empty:
                flags.update(c[key]["excluded"])
            which = ", ".join(f"{c['title'].lower()} ({c['side']})" for c in empty)
            why = ", ".join(f"{f} ×{k}" for f, k in flags.most_common())
            warnings.append(
                f"{run.label}: no cycle free of quality flags for {which} (flags met: {why}; "
                "`gaitway compare --include-flagged` draws them anyway)"
            )
    data = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "labels": list(labels),
        "points": POINTS,
        "include_flagged": include_flagged,
        "runs": [ra.info(), rb.info()],
        "curves": curves,
        "metrics": metrics,
        "warnings": warnings,
        "method": {
            "cycles": "a foot's contact to the same foot's next contact, time-normalised to 0-100 % "
            f"({POINTS} points, linear interpolation); complete when both contacts lie in the clip, at most "
            f"one contact of the other foot falls in between and it lasts {CYCLE_RANGE[0]:g}-"
            f"{CYCLE_RANGE[1]:g} x the run's median cycle",
            "flags": "kept"
            if include_flagged
            else "a cycle enters an angle's curves only when none of its "
            "frames is flagged for that angle: " + ", ".join(FLAG_NAMES),
            "significance": "Welch's unequal-variance t-test at the 5 % level: a difference is significant "
            "when |B - A| > t_crit * sqrt(SE_A^2 + SE_B^2), SE = SD / sqrt(n), t_crit the 97.5 % quantile of "
            "Student's t at the Welch-Satterthwaite degrees of freedom; n >= 2 steps in both runs",
        },
    }
    plain: dict[str, Any] = to_plain(data)
    return plain


# --- files and the page ----------------------------------------------------------------------------------
def data_path(page: Path) -> Path:
    """Where :func:`write_comparison` writes the data of ``page``: beside it, ``<page name>.json``."""
    return page.with_suffix(".json")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{what} cannot be read: {path.name} ({exc.__class__.__name__})", detail=str(path)
        ) from None


def _load(folder: Path, label: str) -> tuple[Doc, Doc, str | None]:
    if not folder.is_dir():
        raise InputError(f"run {label}: {folder} is not a folder written by `gaitway analyze`")
    poses_path, metrics_path = folder / "poses.json", folder / "metrics.json"
    if not poses_path.is_file():
        raise InputError(
            f"run {label}: {folder} holds no poses.json (not a folder written by `gaitway analyze`)"
        )
    if not metrics_path.is_file():
        raise NoValidDataError(
            f"run {label} has no running metrics: {folder} holds poses.json but no metrics.json"
        )
    poses = _read_json(poses_path, f"run {label}'s poses.json")
    metrics = _read_json(metrics_path, f"run {label}'s metrics.json")
    date = datetime.fromtimestamp(metrics_path.stat().st_mtime).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return poses, metrics, date.strip()


def default_labels(a_dir: Path, b_dir: Path) -> tuple[str, str]:
    """The folders' names, with their parents' when the names are the same."""
    a, b = a_dir.resolve(), b_dir.resolve()
    if a.name != b.name:
        return a.name, b.name
    if a == b:
        return f"{a.name} (A)", f"{b.name} (B)"
    return f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}"


def write_comparison(
    a_dir: Path,
    b_dir: Path,
    out: Path,
    *,
    labels: tuple[str, str] | None = None,
    include_flagged: bool = False,
    title: str | None = None,
) -> Path:
    """Compare the analyses in two folders written by ``gaitway analyze`` and write the page to ``out``
    (a folder: ``out/comparison.html``), its data beside it (:func:`data_path`). Returns the page's path."""
    labels = labels or default_labels(a_dir, b_dir)
    poses_a, metrics_a, date_a = _load(Path(a_dir), labels[0])
    poses_b, metrics_b, date_b = _load(Path(b_dir), labels[1])
    data = compare_runs(
        (poses_a, metrics_a), (poses_b, metrics_b), labels=labels, include_flagged=include_flagged
    )
    for run, folder, date in zip(data["runs"], (a_dir, b_dir), (date_a, date_b), strict=True):
        run["folder"] = str(Path(folder).resolve())
        run["date"] = date
    out = Path(out)
    if out.is_dir() or out.suffix == "":
        out = out / "comparison.html"
    if out.suffix.lower() == ".json":
        raise InputError(f"the page must not be a .json file ({out.name}): its data is written beside it")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_comparison(data, title=title or f"{labels[0]} vs {labels[1]}"), encoding="utf-8")
    data_path(out).write_text(json.dumps(data, indent=1, allow_nan=False), encoding="utf-8")
    return out


def _static(name: str) -> str:
    return (resources.files("services.viewer") / "static" / name).read_text(encoding="utf-8")


def _num(v: Any, digits: int = 1) -> str:
    if v is None or not isinstance(v, int | float) or not math.isfinite(v):
        return "–"
    return f"{v:.{digits}f}"


def _digits(unit: str, values: Sequence[Any]) -> int:
    """Decimals that show a metric: by its magnitude (seconds and fractions need more)."""
    finite = [abs(v) for v in values if isinstance(v, int | float) and math.isfinite(v) and v != 0]
    if not finite:
        return 1
    return 3 if max(finite) < 1 else 2 if max(finite) < 10 and unit in {"s", "fraction"} else 1


def _sources_text(sources: Mapping[str, int]) -> str:
    if not sources:
        return ""
    return "; ".join(f"{SOURCE_LABELS.get(s, s)} ×{n}" for s, n in sorted(sources.items()))


def _mean_sd(s: Mapping[str, Any], digits: int) -> str:
    if not s["n"] or s["mean"] is None:
        return "<small>not measured</small>"
    sd = "" if s["sd"] is None else f" ± {_num(s['sd'], digits)}"
    return f"{_num(s['mean'], digits)}{sd} <small>({s['n']})</small>"


def _metric_table(data: Mapping[str, Any]) -> str:
    la, lb = (html.escape(x) for x in data["labels"])
    e = html.escape
    head = (
        f"<tr><th scope='col'>Metric</th><th scope='col'>{la}<br><small>mean ± SD (n)</small></th>"
        f"<th scope='col'>{lb}<br><small>mean ± SD (n)</small></th><th scope='col'>B − A<br>"
        "<small>95 % CI</small></th><th scope='col'>Significant</th><th scope='col'>Angle source</th></tr>"
    )
    rows = []
    for m in data["metrics"]:
        a, b, test = m["a"], m["b"], m["test"]
        d = _digits(m["unit"], [a["mean"], b["mean"], a["sd"], b["sd"]])
        cls = ["sig"] if m["significant"] else []
        if m["warning"]:
            cls.append("method-differs")
        if m["significant"]:
            verdict = "<span class='badge yes'>yes</span>"
        elif m["significant"] is False:
            verdict = "<span class='badge no'>no</span>"
        else:
            verdict = f"<span class='badge na'>n/a</span> <small>{e(m['note'] or '')}</small>"
        ci = ""
        if test is not None:
            ci = f"<br><small>{_num(test['ci'][0], d)} to {_num(test['ci'][1], d)}</small>"
        diff = "–" if m["diff"] is None else f"{m['diff']:+.{d}f}"
        src = []
        for lab, side in zip(data["labels"], (a, b), strict=True):
            if side["sources"]:
                src.append(f"{e(lab)}: {e(_sources_text(side['sources']))}")
        if m["warning"]:
            src.append(f"<span class='warn'>⚠ {e(m['warning'])}</span>")
        cells = [
            f"<th scope='row'>{e(m['title'])} <small>{e(m['unit'])}</small></th>",
            f"<td>{_mean_sd(a, d)}</td>",
            f"<td>{_mean_sd(b, d)}</td>",
            f"<td class='diff'>{diff}{ci}</td>",
            f"<td>{verdict}</td>",
            f"<td class='src'>{'<br>'.join(src)}</td>",
        ]
        attr = f" class='{' '.join(cls)}'" if cls else ""
        rows.append(f"<tr data-metric='{e(m['name'])}'{attr}>{''.join(cells)}</tr>")
    return f"<table class='metrics'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _runs_table(data: Mapping[str, Any]) -> str:
    e = html.escape
    ra, rb = data["runs"]

    def row(title: str, fn: Any) -> str:
        return f"<tr><th scope='row'>{e(title)}</th><td>{e(str(fn(ra)))}</td><td>{e(str(fn(rb)))}</td></tr>"

    def models(r: Mapping[str, Any]) -> str:
        m = r["models"]
        return " + ".join(str(m[k]) for k in ("detector", "pose2d", "lifter") if m.get(k)) or "–"

    def cycles(r: Mapping[str, Any]) -> str:
        by = r["cycles_by_side"]
        rej = len(r["cycles_rejected"])
        return f"{len(r['cycles'])} (left {by['left']}, right {by['right']})" + (
            f"; {rej} rejected" if rej else ""
        )

    def sources(r: Mapping[str, Any]) -> str:
        parts = [
            f"{SOURCE_LABELS.get(s, s)}: {', '.join(n.replace('_', ' ') for n in names)}"
            for s, names in r["angle_sources"].items()
        ]
        return "; ".join(parts) or "–"

    def clip(r: Mapping[str, Any]) -> str:
        return f"{_num(r['duration_s'], 2)} s, {r['frames']} frames at {_num(r['fps'], 1)} fps"

    def view(r: Mapping[str, Any]) -> str:
        v = r["view"]
        return f"{v.get('kind', '–')}, yaw {_num(v.get('yaw_deg'), 0)} deg" if v else "–"

    body = "".join(
        [
            row("Video", lambda r: r["video"] or "–"),
            row("Analysed", lambda r: r["date"] or "–"),
            row("Clip", clip),
            row("Models", models),
            row("Angle sources", sources),
            row("Camera view", view),
            row("Runner height", lambda r: f"{r['height_m']} m" if r["height_m"] else "not given"),
            row("Complete gait cycles", cycles),
            row("Folder", lambda r: r.get("folder") or "–"),
        ]
    )
    la, lb = (e(x) for x in data["labels"])
    return (
        f"<table class='runs'><thead><tr><th></th><th scope='col'><span class='swatch a'></span>A: {la}</th>"
        f"<th scope='col'><span class='swatch b'></span>B: {lb}</th></tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body data-viewer-state="loading" data-cycles-a="{cycles_a}" data-cycles-b="{cycles_b}">
<header>
<h1>{title}</h1>
<p class="sub">Gaitway comparison of two analyses: A = {label_a}, B = {label_b}; differences are B − A.</p>
</header>
<main>
<section id="runs"><h2>Runs</h2><div class="table-wrap">{runs}</div></section>
{warnings}
<section id="curves-section">
<h2>Joint angles over the gait cycle</h2>
<p class="help">Each panel: mean (line) ± SD (band) of each run over its cycles, 0 % = foot contact,
100 % = the same foot's next contact; dashed lines: mean toe-off. Below: the difference of the means (B − A).
Tap or hover a panel to read the values.</p>
<div id="legend"></div>
<div id="curves"><noscript>The curves need JavaScript; the table below does not.</noscript></div>
</section>
<section id="metrics-section">
<h2>Running metrics</h2>
<p class="help">Mean ± SD over the steps that count (n), the difference B − A with its 95 % confidence
interval. <b>Significant</b> (highlighted): |B − A| exceeds the combined 95 % confidence interval,
t<sub>crit</sub> · √(SE<sub>A</sub>² + SE<sub>B</sub>²) with SE = SD / √n and t<sub>crit</sub> the 97.5 %
quantile of Student's t at the Welch–Satterthwaite degrees of freedom (Welch's t-test, 5 % level).
The steps of one clip are not independent samples of a runner's gait: a significant difference says the two
analyses differ beyond their step-to-step scatter.</p>
<div class="table-wrap">{metrics}</div>
</section>
<section id="method">
<h2>Method</h2>
<ul>
<li><b>Gait cycles:</b> {m_cycles}.</li>
<li><b>Quality flags:</b> {m_flags}.</li>
<li><b>Significance:</b> {m_sig}.</li>
<li><b>Angle sources:</b> 2D sagittal (from the video's keypoints, optionally with the view's foreshortening
undone) or 3D (lifted, or motion capture). When the runs used different methods the difference partly
reflects the method, and a warning says so.</li>
</ul>
{notes}
</section>
</main>
<footer>Written by <code>gaitway compare</code>. Self-contained: no network access.</footer>
<script type="application/json" id="comparison-data">{data}</script>
<script>
{js}
</script>
</body>
</html>
"""


def _embed(data: Mapping[str, Any]) -> str:
    """JSON safe inside a <script> element (no ``<``, so no ``</script>`` nor ``<!--``)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _rounded(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return value


def render_comparison(data: Mapping[str, Any], *, title: str) -> str:
    """One self-contained HTML page of a comparison (:func:`compare_runs`): inline CSS and JavaScript, no
    network, opens from ``file://``. Once its script has drawn the curves the body carries
    ``data-viewer-state="ready"`` (``"error"`` when drawing failed), ``data-cycles-a`` and ``data-cycles-b``
    (the runs' complete gait cycles)."""
    e = html.escape
    warnings = data.get("warnings") or []
    warn_html = ""
    if warnings:
        items = "".join(f"<li>{e(w)}</li>" for w in warnings)
        warn_html = f"<section id='warnings'><h2>Warnings</h2><ul class='warnings'>{items}</ul></section>"
    notes = []
    for run in data["runs"]:
        if run["notes"]:
            items = "".join(f"<li>{e(n)}</li>" for n in run["notes"])
            notes.append(f"<details><summary>Notes of {e(run['label'])}</summary><ul>{items}</ul></details>")
    method = data["method"]
    return _PAGE.format(
        title=e(title),
        css=_static("compare.css"),
        js=_static("compare.js"),
        cycles_a=len(data["runs"][0]["cycles"]),
        cycles_b=len(data["runs"][1]["cycles"]),
        label_a=e(data["labels"][0]),
        label_b=e(data["labels"][1]),
        runs=_runs_table(data),
        warnings=warn_html,
        metrics=_metric_table(data),
        m_cycles=e(method["cycles"]),
        m_flags=e(method["flags"]),
        m_sig=e(method["significance"]),
        notes="".join(notes),
        data=_embed(_rounded(dict(data))),
    )


def format_table(data: Mapping[str, Any]) -> str:
    """The metric table as text: metric, A, B, B − A, significant (``n/a``: fewer than 2 steps)."""
    la, lb = data["labels"]
    w = max(12, len(la), len(lb))
    lines = [f"{'metric':<36}{la[:w]:>{w}}  {lb[:w]:>{w}}  {'B - A':>10}  significant"]
    for m in data["metrics"]:
        a, b = m["a"], m["b"]
        d = _digits(m["unit"], [a["mean"], b["mean"]])
        name = f"{m['title']} ({m['unit']})"
        sig = {True: "yes", False: "no", None: "n/a"}[m["significant"]]
        if m["warning"]:
            sig += "  (methods differ)"
        diff = "–" if m["diff"] is None else f"{m['diff']:+.{d}f}"
        lines.append(
            f"{name[:35]:<36}{_num(a['mean'], d):>{w}}  {_num(b['mean'], d):>{w}}  {diff:>10}  {sig}"
        )
    return "\n".join(lines) + "\n"
