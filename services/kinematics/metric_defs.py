"""The running metrics, one definition each: name, unit, kind, the frames it reads, plausible and normal
ranges with their literature source, how it is computed and how it is plotted.

Everything else follows from :data:`METRIC_DEFS`: the per-step table and its CSV/XLSX columns, the
summaries, which quality flag can exclude which metric (:data:`FLAG_EXCLUDES`), the ``implausible`` flag,
the plots (:data:`PLOTTED`) and the definitions written into ``metrics.json``. Adding a metric is adding
one :class:`MetricDef`.

Conventions
-----------
* A metric is read from one step (:class:`StepContext`): a foot strike, the same foot's toe-off, the other
  foot's next strike (end of the step) and the same foot's next strike (end of the stride). Values that
  need an event the clip does not show are NaN.
* ``window`` says which frames a metric reads, and so which frames' quality flags can exclude it:
  ``"strike"`` the instants around the foot strike (``STRIKE_MARGIN_S`` either side, the support of the
  low-pass filters), ``"stance"`` strike -> toe-off, ``"step"`` strike -> the other foot's next strike,
  ``"events"`` the instants around each event the value is timed from.
* Angles come from the step's angle source (2D sagittal or 3D; see :mod:`services.kinematics.metrics`),
  lengths from the same source's positions. ``*_cm`` metrics need a metric scale (the runner's height, or
  motion capture) and are NaN without one; ``*_pct_leg`` are percent of the leg length (hip -> knee ->
  ankle) and are always available.
* Normal ranges are typical values of healthy distance runners at endurance speeds (about 2.5-4.5 m/s)
  from the cited source; they orient a coach and are no diagnostic cut-offs. Conventions differ between
  labs (hip angles relative to the pelvis or the trunk, static offsets), so compare like with like.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from services.kinematics.model import FloatArray, GaitEvent

__all__ = [
    "FLAG_EXCLUDES",
    "METRICS",
    "METRIC_DEFS",
    "PLOTTED",
    "STRIKE_MARGIN_S",
    "MetricDef",
    "StepContext",
    "definitions",
    "foot_strike_pattern",
]

Kind = Literal["timing", "angle", "length"]
Window = Literal["strike", "stance", "step", "events"]

#: half-width (seconds) of the frames an instant's value depends on (the 12 Hz low-pass's support)
STRIKE_MARGIN_S = 0.05

#: foot strike angle thresholds (deg, foot angle at contact minus standing): Altman & Davis 2012
REARFOOT_ABOVE_DEG = 8.0
FOREFOOT_BELOW_DEG = -1.6


@dataclass(frozen=True)
class StepContext:
    """What a metric of one step reads. Series are ``(T,)`` on the clip's frames, already low-passed and
    taken from the step's angle source; positions are in the Motion's units (``leg`` = leg length in them;
    ``cm`` = centimetres per unit, None when the scale is not metric)."""

    side: str
    t: FloatArray
    strike: GaitEvent
    toe_off: GaitEvent | None
    next_strike: GaitEvent | None  # the other foot's next strike
    next_same: GaitEvent | None  # the same foot's next strike
    angles: dict[str, FloatArray]  # name -> (T,) degrees, from the step's source
    ahead: FloatArray  # (T,) striking foot (heel, else ankle) ahead of the pelvis along forward, units
    height: FloatArray  # (T,) pelvis height, units
    leg: float
    cm: float | None
    static_foot_deg: float  # standing foot angle of this side (0 when unknown)

    def at(self, series: FloatArray, time: float) -> float:
        """Linear interpolation at ``time`` (NaN next to a NaN)."""
        return float(np.interp(time, self.t, series))

    def angle_at_strike(self, name: str) -> float:
        return self.at(self.angles[f"{self.side}_{name}"], self.strike.t)

    def stance(self, series: FloatArray) -> FloatArray:
        """The series from the strike to the toe-off (empty without a toe-off)."""
        if self.toe_off is None:
            return np.empty(0)
        return series[self.strike.index : self.toe_off.index + 1]

    def step(self, series: FloatArray) -> FloatArray:
        """The series from the strike to the other foot's next strike (empty without it)."""
        if self.next_strike is None:
            return np.empty(0)
        return series[self.strike.index : self.next_strike.index + 1]


def _finite(x: FloatArray) -> FloatArray:
    return x[np.isfinite(x)]


def _nanmax(x: FloatArray) -> float:
    x = _finite(x)
    return float(x.max()) if x.size else math.nan


def _nanmean(x: FloatArray) -> float:
    x = _finite(x)
    return float(x.mean()) if x.size else math.nan


def _excursion(x: FloatArray) -> float:
    x = _finite(x)
    return float(x.max() - x.min()) if x.size >= 2 else math.nan


def _step_time(c: StepContext) -> float:
    return c.next_strike.t - c.strike.t if c.next_strike is not None else math.nan


def _contact(c: StepContext) -> float:
    return c.toe_off.t - c.strike.t if c.toe_off is not None else math.nan


def _flight(c: StepContext) -> float:
    if c.toe_off is None or c.next_strike is None:
        return math.nan
    return c.next_strike.t - c.toe_off.t


def _duty(c: StepContext) -> float:
    if c.next_same is None:
        return math.nan
    return _contact(c) / (c.next_same.t - c.strike.t)


def _knee_peak(c: StepContext) -> float:
    knee = c.angles[f"{c.side}_knee_flexion_deg"]
    if c.toe_off is None:
        return math.nan
    return max(_nanmax(c.stance(knee)), c.angle_at_strike("knee_flexion_deg"))


def _hip_extension(c: StepContext) -> float:
    hip = c.angles[f"{c.side}_hip_flexion_deg"]
    return _nanmax(-c.stance(hip)) if c.toe_off is not None else math.nan


def _trunk_stance(c: StepContext) -> float:
    return _nanmean(c.stance(c.angles["trunk_lean_deg"]))


def _foot_strike_angle(c: StepContext) -> float:
    return c.angle_at_strike("foot_angle_deg") - c.static_foot_deg


def _overstride(c: StepContext) -> float:
    return c.at(c.ahead, c.strike.t)


def _oscillation(c: StepContext) -> float:
    return _excursion(c.step(c.height))


def _cm(value: Callable[[StepContext], float]) -> Callable[[StepContext], float]:
    return lambda c: value(c) * c.cm if c.cm is not None else math.nan


def _pct_leg(value: Callable[[StepContext], float]) -> Callable[[StepContext], float]:
    return lambda c: 100.0 * value(c) / c.leg


def _at_strike(name: str) -> Callable[[StepContext], float]:
    return lambda c: c.angle_at_strike(name)


_NOVACHECK = "Novacheck 1998, Gait Posture 7:77-95 (the biomechanics of running, review)"
_MOORE = "Moore 2016, Sports Med 46:793-807 (is there an economical running technique? review)"


@dataclass(frozen=True)
class MetricDef:
    """One per-step running metric."""

    name: str  # key in the step table; the unit is in the name where it is fixed
    title: str  # for tables and plots
    unit: str
    kind: Kind
    window: Window
    #: joints whose 2D confidence the value depends on ("{side}" = the striking side)
    joints: tuple[str, ...]
    compute: Callable[[StepContext], float]
    description: str
    plausible: tuple[float, float] | None = None  # outside: flagged implausible
    normal: tuple[float, float] | None = None  # typical range of healthy runners
    normal_source: str = ""
    #: horizontal (fore-aft) quantities are foreshortened in an oblique view; vertical ones are not
    horizontal: bool = False
    #: read from midpoints of left/right pairs only (mid-hips, mid-shoulders), which a left/right swap
    #: leaves where they are
    midline: bool = False
    #: what the value needs beyond the legs: "feet" (heel and toe points), "trunk", "metric" (a metric scale)
    needs: tuple[str, ...] = ()
    plotted: bool = False

    @property
    def excluded_by(self) -> frozenset[str]:
        """The quality flags that can leave this metric out of the summaries."""
        flags = {"low_confidence", "implausible"}
        if self.kind != "timing" and not self.midline:
            flags.add("swap_repaired")
        if self.kind == "angle" or self.horizontal:
            flags.add("out_of_plane")
        return frozenset(flags)


_LEG = ("{side}_hip", "{side}_knee", "{side}_ankle")
_TIMING_JOINTS = ("pelvis", "left_ankle", "right_ankle")

METRIC_DEFS: tuple[MetricDef, ...] = (
    MetricDef(
        "cadence_spm", "Cadence", "steps/min", "timing", "events", _TIMING_JOINTS,
        lambda c: 60.0 / _step_time(c),
        "60 / step time", plausible=(120.0, 230.0), normal=(160.0, 185.0),
        normal_source="Heiderscheit et al. 2011, Med Sci Sports Exerc 43:296-302 (preferred step rates)",
        plotted=True,
    ),
    MetricDef(
        "step_time_s", "Step time", "s", "timing", "events", _TIMING_JOINTS, _step_time,
        "foot strike -> the other foot's next strike", normal=(0.325, 0.375),
        normal_source="from the cadence range",
    ),
    MetricDef(
        "contact_time_s", "Ground contact", "s", "timing", "events", _TIMING_JOINTS, _contact,
        "foot strike -> the same foot's toe-off", plausible=(0.1, 0.5), normal=(0.2, 0.3),
        normal_source=_MOORE, plotted=True,
    ),
    MetricDef(
        "flight_time_s", "Flight", "s", "timing", "events", _TIMING_JOINTS, _flight,
        "toe-off -> the other foot's next strike (negative: double support, i.e. walking)",
        normal=(0.05, 0.15), normal_source=_MOORE,
    ),
    MetricDef(
        "duty_factor", "Duty factor", "fraction", "timing", "events", _TIMING_JOINTS, _duty,
        "contact time / stride time (strike -> the same foot's next strike)", normal=(0.28, 0.40),
        normal_source="Lussiana et al. 2019, Int J Sports Physiol Perform (the aerial-terrestrial continuum)",
    ),
    MetricDef(
        "knee_flexion_ic_deg", "Knee flexion at contact", "deg", "angle", "strike", _LEG,
        _at_strike("knee_flexion_deg"), "knee flexion of the striking leg at the foot strike (0 = straight)",
        plausible=(0.0, 60.0), normal=(10.0, 25.0), normal_source=_NOVACHECK, plotted=True,
    ),
    MetricDef(
        "knee_flexion_peak_stance_deg", "Peak knee flexion in stance", "deg", "angle", "stance", _LEG,
        _knee_peak, "largest knee flexion of the striking leg from the strike to the toe-off",
        plausible=(10.0, 90.0), normal=(35.0, 50.0), normal_source=_NOVACHECK, plotted=True,
    ),
    MetricDef(
        "hip_flexion_ic_deg", "Hip flexion at contact", "deg", "angle", "strike",
        (*_LEG, "pelvis", "left_shoulder", "right_shoulder"), _at_strike("hip_flexion_deg"),
        "thigh (hip -> knee) ahead of the trunk line (shoulders -> pelvis) at the foot strike",
        plausible=(-20.0, 80.0), normal=(20.0, 40.0),
        normal_source=_NOVACHECK + "; measured there against the pelvis, which tilts forward ~10 deg",
        needs=("trunk",), plotted=True,
    ),
    MetricDef(
        "hip_extension_peak_deg", "Peak hip extension", "deg", "angle", "stance",
        (*_LEG, "pelvis", "left_shoulder", "right_shoulder"), _hip_extension,
        "largest extension (thigh behind the trunk line) of the stance leg from the strike to the toe-off",
        plausible=(-30.0, 50.0), normal=(5.0, 20.0), normal_source=_NOVACHECK, needs=("trunk",),
        plotted=True,
    ),
    MetricDef(
        "trunk_lean_stance_deg", "Trunk lean in stance", "deg", "angle", "stance",
        ("pelvis", "left_shoulder", "right_shoulder"), _trunk_stance,
        "mean forward lean of the trunk (pelvis -> shoulders) from the vertical, strike to toe-off",
        plausible=(-20.0, 45.0), normal=(3.0, 15.0),
        normal_source="Teng & Powers 2014, J Orthop Sports Phys Ther 44:785-792", needs=("trunk",),
        midline=True, plotted=True,
    ),
    MetricDef(
        "tibia_angle_ic_deg", "Tibia angle at contact", "deg", "angle", "strike", _LEG[1:],
        _at_strike("tibia_angle_deg"),
        "shank (knee -> ankle) from the vertical at the foot strike; + = ankle ahead of the knee (reaching)",
        plausible=(-30.0, 40.0), normal=(-5.0, 10.0),
        normal_source="Souza 2016, Phys Med Rehabil Clin N Am 27:217-236 (a near-vertical tibia at loading; "
        "forward inclination goes with overstriding)",
        plotted=True,
    ),
    MetricDef(
        "foot_strike_angle_deg", "Foot strike angle", "deg", "angle", "strike", ("{side}_ankle",),
        _foot_strike_angle,
        "foot (heel -> toe) from the horizontal at the strike minus standing; + = toes up. Rearfoot above "
        f"{REARFOOT_ABOVE_DEG:g}, forefoot below {FOREFOOT_BELOW_DEG:g} (midfoot between)",
        plausible=(-40.0, 40.0),
        normal_source="Altman & Davis 2012, Gait Posture 35:298-300 (pattern thresholds; no normal value)",
        needs=("feet",), plotted=True,
    ),
    MetricDef(
        "overstride_cm", "Overstride", "cm", "length", "strike", (*_LEG, "pelvis"), _cm(_overstride),
        "horizontal distance of the striking foot (heel, else ankle) ahead of the pelvis at the strike",
        normal_source="Souza 2016 (foot landing ahead of the centre of mass); no consensus normal value",
        horizontal=True, needs=("metric",), plotted=True,
    ),
    MetricDef(
        "overstride_pct_leg", "Overstride", "% leg length", "length", "strike", (*_LEG, "pelvis"),
        _pct_leg(_overstride), "overstride as a percentage of the leg length (hip -> knee -> ankle)",
        normal_source="no consensus normal value", horizontal=True,
    ),
    MetricDef(
        "vertical_oscillation_cm", "Vertical oscillation", "cm", "length", "step", ("pelvis",),
        _cm(_oscillation), "the pelvis' vertical excursion (max - min) from the strike to the next strike",
        plausible=(0.5, 25.0), normal=(5.0, 10.0), normal_source=_MOORE, needs=("metric",), midline=True,
        plotted=True,
    ),
    MetricDef(
        "vertical_oscillation_pct_leg", "Vertical oscillation", "% leg length", "length", "step",
        ("pelvis",), _pct_leg(_oscillation), "vertical oscillation as a percentage of the leg length",
        normal=(6.0, 12.0), normal_source=_MOORE + "; 5-10 cm over a leg of about 0.85 m", midline=True,
    ),
)  # fmt: skip

#: metric name -> unit
METRICS: dict[str, str] = {d.name: d.unit for d in METRIC_DEFS}
#: quality flag -> the metrics it can exclude
FLAG_EXCLUDES: dict[str, frozenset[str]] = {
    flag: frozenset(d.name for d in METRIC_DEFS if flag in d.excluded_by)
    for flag in ("low_confidence", "swap_repaired", "out_of_plane", "implausible")
}
#: the metrics drawn in the per-step plot, in order
PLOTTED: tuple[MetricDef, ...] = tuple(d for d in METRIC_DEFS if d.plotted)


def foot_strike_pattern(angle_deg: float) -> str | None:
    """ "rearfoot", "midfoot" or "forefoot" from a foot strike angle (Altman & Davis 2012); None for NaN."""
    if not math.isfinite(angle_deg):
        return None
    if angle_deg > REARFOOT_ABOVE_DEG:
        return "rearfoot"
    if angle_deg < FOREFOOT_BELOW_DEG:
        return "forefoot"
    return "midfoot"


def definitions() -> dict[str, dict[str, object]]:
    """Every metric's definition as JSON types (written into ``metrics.json``)."""
    return {
        d.name: {
            "title": d.title,
            "unit": d.unit,
            "kind": d.kind,
            "window": d.window,
            "description": d.description,
            "normal": list(d.normal) if d.normal is not None else None,
            "normal_source": d.normal_source,
            "plausible": list(d.plausible) if d.plausible is not None else None,
            "excluded_by": sorted(d.excluded_by),
            "needs": list(d.needs),
        }
        for d in METRIC_DEFS
    }
