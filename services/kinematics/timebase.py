"""The slow-motion factor of a running clip, estimated from physics when no metadata gives it.

A phone's slow-motion clip often carries no capture-rate metadata, and a wrong guess of the factor is never
caught by the cadence alone: a runner at 168 steps/min filmed 10x slowed lands inside the plausible
120-230 steps/min for any guess from about 7 to 13. :func:`estimate_time_base` estimates the factor ``k``
(4 = the clip plays 4x slower than life: real seconds = nominal seconds / k) from gravity and body size,
and says so when it cannot.

Time scale
----------
Slowing a clip by ``k`` multiplies every nominal time by ``k``: nominal velocities are ``v / k``, nominal
accelerations ``a / k**2``; lengths are unchanged. An acceleration known in real life and measured in
metres against nominal time gives ``k = sqrt(a_real / a_nominal)``. Both physics cues measure one.

The signal: a centre-of-mass proxy (height in metres, :func:`com_proxy_height`)
-------------------------------------------------------------------------------
* Video with 2D keypoints (``"head_2d"``): the mean image height of the face keypoints (a fixed set: those
  present in :data:`MIN_KEYPOINT_PRESENCE` of the frames), times metres per pixel. Face keypoints are
  skin landmarks a 2D model places to a few pixels and the head rides on the trunk; the joint keypoints
  are guesses under clothing that move with the limbs: on IMG_5396 (treadmill, 60 fps, truth k = 1) the
  lightning model's hip keypoint curved at -3.5 m/s^2 in flight (k = 1.7, the thigh swing drags it) and
  its shoulders moved 30 % less than thunder's, while the spring-mass cue on the face gave 0.98-0.99 of
  the truth with both models (on the head-and-shoulders mean: 1.03 and 0.95).
* Otherwise (``"segmental_com_3d"``: motion capture, 3D whose root moves): the lower body's segmental
  centre of mass with the head, arms and trunk riding on the pelvis (Dempster's fractions as tabulated by
  Winter, *Biomechanics and motor control of human movement*: thigh 0.100 at 43.3 % from the hip, shank
  0.0465 at 43.3 % from the knee, foot 0.0145, the remaining 0.678 at the pelvis). On RBDS001 it took
  the spring-mass estimate from 0.93 (pelvis alone) to 0.97 of the truth (1.00 with the toe-off lag
  below) and the ballistic one from 0.96 to 1.02.
* Metres: a metric Motion's own scale (a stated runner height; relative SD :data:`METRIC_SCALE_SD` for
  video, 0 for motion capture), pixels by the legs' median 3D over 2D length; without a height, the
  population prior :data:`LEG_LENGTH_PRIOR_M` for thigh + shank (relative SD :data:`LEG_LENGTH_PRIOR_SD`,
  which widens every physics interval). Both cues give ``k ~ scale ** -1/2``.

Gait events on a provisional time base
--------------------------------------
:func:`~services.kinematics.events.detect_events` works in seconds (refractory distances, low-pass cutoffs),
so on IMG_5396 re-timed 3x it duplicated strikes (step times of 0.02-1.1 s). So the stride period is found
in samples first (:func:`period_samples` on the two ankles' fore-aft separation: independent of the time
base), the clip gets the provisional time base ``k0`` that puts that stride at :data:`CADENCE_PRIOR_SPM`,
and the events are detected there; every cue estimates ``k / k0``. The estimate is therefore the same,
up to ``k``, whatever the factor. Steps are formed as in :func:`services.kinematics.metrics.analyze_motion`
(strike, the same foot's toe-off, the other foot's next strike; contact and flight times signed).

Cues (``TimeBaseEstimate.estimates``, keys :data:`CUES`)
-------------------------------------------------------
``ballistic``
    In flight the centre of mass falls freely. ``z = a t^2 + b_i t + c_i`` is fitted jointly over the
    flight phases (detected toe-off -> the other foot's strike, 3 samples or more each; per-flight offset
    and slope projected out, one shared curvature) and ``k = k0 sqrt(g / -a)``. Uncertainty: bootstrap
    over flights plus :data:`BALLISTIC_MODEL_SD` (larger for the head, which nods in flight).
``spring_mass``
    The sine-wave vertical-force model of Morin et al. (2005, J Appl Biomech 21:167-180): contact ``tc``,
    flight ``tf``; the centre of mass drops ``F_max tc^2 / (m pi^2) - g tc^2 / 8`` with ``F_max = m g pi /
    2 (tf / tc + 1)`` during contact and rises ``g tf^2 / 8`` in flight, so its excursion per step is
    :func:`excursion_m` ``= g (tc (tc + tf) / (2 pi) - tc^2 / 8 + tf^2 / 8)`` (every term ``g`` times a
    time squared; checked against a numerical integration of the model). Measured: the excursion of the
    mean step profile (each step resampled from strike to the other foot's strike) against the model at
    the median contact time, moved back by :data:`TOE_OFF_LAG_S` (the kinematic toe-off is late), and
    the median step time; ``k = k0 sqrt(model / measured)``. Uncertainty: bootstrap over steps plus
    :data:`SPRING_MASS_MODEL_SD`.
``cadence_prior``
    Running cadence :data:`CADENCE_PRIOR_SPM` +- :data:`CADENCE_PRIOR_SD_SPM` steps/min (1 SD): weak, it only
    sharpens a physics estimate (never decides alone: factors 7-13 all give a running cadence to a 10x clip).

The physics cues are combined by inverse variance in ``log k`` (their shared scale SD added once; two cues
that disagree beyond their independent SDs are not trusted), then with the cadence prior. ``cue`` is the
input with the largest share of the final weight.

Running
-------
Both physics cues need flight phases. A clip counts as running when the median flight time is positive
**and** the body is high when the feet are apart: the correlation of the pelvis height (and of the proxy)
with the ankles' fore-aft separation is at least :data:`MIN_RUNNING_CORRELATION` (the smaller of the two
counts). Running bodies are lowest at mid-stance, feet together, and highest in flight, feet apart;
walking (an inverted pendulum) is the reverse. The events alone are not enough: on the walking clip they
give positive "flight" times (0.09-0.29 nominal s) because the detector looks for running toe-offs, while
the correlations there are -0.2 (hips) and 0.0 (face), against 0.5-0.75 on IMG_5396 and RBDS001. A walking
gait is geometry (a pendulum has no time scale of its own that the video shows), so its factor is never
estimated.

Decision rule (``given=False``)
-------------------------------
1. No periodic gait, fewer than :data:`MIN_STEPS` steps, or not running: ``factor`` None, ``cue`` "none",
   ``applies`` False: the time base cannot be checked; no running cadence is to be reported.
2. Nominal cadence within 120-230 steps/min: the nominal time base stands (``factor`` 1, ``cue``
   "nominal", ``applies`` False; ``low``/``high`` the physics interval). The notes say whether the physics
   agrees (its interval contains 1); a disagreement is reported, never acted on.
3. Nominal cadence outside that range: the physics estimate combined with the cadence prior is applied
   (``applies`` True) when the physics pins it down (its own 95 % interval within +-:data:`MAX_HALF_WIDTH`)
   and the corrected cadence is a running cadence; otherwise ``factor`` is None. A factor below 1 (a
   time-lapse) is handled alike.

``given=True`` (metadata or the user set the factor, already applied): ``factor`` 1, ``cue`` "given",
never overridden; the notes say whether the physics agrees.

Measured (``loadtests/eval_timebase.py``; video: real pipeline, ``retime`` without metadata)
-------------------------------------------------------------------------------------------
Factor error of the applied estimate (cue; cadence after correction, steps/min):

* RBDS001 motion capture, 150 Hz (171 steps/min): x1 kept (physics 1.00, 0.97-1.06); x3, x5, x8 +1.2 %
  each (ballistic; 173.0).
* IMG_5396, lightning, height 1.78 m (168 steps/min): x1 kept (physics 1.02, 0.93-1.11); x3 +1.7 %, x5
  +1.8 %, x8 +3.3 % (spring_mass; 170.7, 170.9, 173.3).
* IMG_5396, thunder, height 1.78 m: x1 kept; x3 -0.4 %, x5 -0.8 %, x8 -3.4 % (spring_mass; 166.6, 165.8,
  161.7).
* IMG_5396, lightning, no height (population prior): x1 kept; x3 +4.2 %, x8 +5.7 % (174.8, 177.3).
* Walking demo (30 fps), x1, x2, x3: not running, factor None.

NaN policy
----------
NaN keypoints or joints drop the samples (ballistic fit, correlation) or the steps (spring-mass: a step
with any NaN in its resampled profile) they touch; what is left decides. An invalid Motion raises
:class:`services.errors.InputError`; an estimate that cannot be made is never an error: ``factor`` None,
with notes saying why. The input is never modified; the bootstrap is seeded (deterministic).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from services.kinematics.angles import body_axes, joint, root_position, validate_motion
from services.kinematics.body import leg_length, leg_length_px, pelvis_height
from services.kinematics.events import MAX_CADENCE_SPM, MIN_CADENCE_SPM, detect_events
from services.kinematics.model import SIDES, FloatArray, GaitEvent, Motion
from services.pose.skeletons import SKELETONS

__all__ = [
    "BALLISTIC_MODEL_SD",
    "CADENCE_PRIOR_SD_SPM",
    "CADENCE_PRIOR_SPM",
    "CUES",
    "G_MPS2",
    "LEG_LENGTH_PRIOR_M",
    "LEG_LENGTH_PRIOR_SD",
    "MAX_HALF_WIDTH",
    "METRIC_SCALE_SD",
    "MIN_KEYPOINT_PRESENCE",
    "MIN_RUNNING_CORRELATION",
    "MIN_STEPS",
    "SPRING_MASS_MODEL_SD",
    "TOE_OFF_LAG_S",
    "CueEstimate",
    "TimeBaseEstimate",
    "com_proxy_height",
    "estimate_time_base",
    "excursion_m",
    "period_samples",
]

#: standard gravity (m/s^2)
G_MPS2 = 9.81
#: running cadence prior: mean and 1 SD (steps/min)
CADENCE_PRIOR_SPM = 170.0
CADENCE_PRIOR_SD_SPM = 15.0
#: thigh + shank (hip -> knee -> ankle) of an adult runner without a stated height: 0.491 x a 1.72 m
#: stature (Drillis & Contini segment fractions; runners 1.55-1.90 m), and its relative SD
LEG_LENGTH_PRIOR_M = 0.845
LEG_LENGTH_PRIOR_SD = 0.055
#: relative SD of the metres of a metric video Motion (a stated height, the lifter's body proportions)
METRIC_SCALE_SD = 0.03
#: model SDs in log(factor), added to each cue's bootstrap SD, per signal: the proxy is not exactly the
#: centre of mass (the head nods in flight: ballistic 0.92-1.14 of the truth on IMG_5396 with two 2D
#: models, against 1.02 for the segmental centre of mass of RBDS001); the sine-force model is a model
BALLISTIC_MODEL_SD: Mapping[str, float] = MappingProxyType({"head_2d": 0.06, "segmental_com_3d": 0.03})
SPRING_MASS_MODEL_SD = 0.04
#: the kinematic toe-off of :func:`~services.kinematics.events.detect_events` comes this late (seconds;
#: 13-16 ms against the force plate on RBDS001), so the spring-mass cue moves it back by this much
TOE_OFF_LAG_S = 0.015
#: a physics estimate is pinned down when its 95 % interval lies within +-this fraction of it
MAX_HALF_WIDTH = 0.2
#: fewest complete steps (strike -> the other foot's strike) and flights the physics cues need
MIN_STEPS = 4
MIN_FLIGHTS = 3
#: running: correlation of the centre-of-mass proxy's height with the ankles' fore-aft separation
MIN_RUNNING_CORRELATION = 0.2
#: face keypoints used for the head: those present in at least this fraction of the frames showing the runner
MIN_KEYPOINT_PRESENCE = 0.9
#: the autocorrelation at the stride lag must reach this for a periodic gait
MIN_PERIODICITY = 0.3
#: samples per resampled step profile; bootstrap resamples
PROFILE_SAMPLES = 60
N_BOOTSTRAP = 400
#: names of the cues (``TimeBaseEstimate.estimates`` keys) and of the deciding inputs
CUES = ("ballistic", "spring_mass", "cadence_prior")

_Z95 = 1.959963984540054
_FACE = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
#: (segment mass fraction, proximal joint, distal joint, CoM fraction from proximal) per leg segment
_LEG_SEGMENTS = ((0.100, "hip", "knee", 0.433), (0.0465, "knee", "ankle", 0.433))
_FOOT_MASS = 0.0145


@dataclass(frozen=True)
class CueEstimate:
    """One cue's factor with its ~95 % interval (NaN when the cue is not available; ``note`` says why).
    ``n`` counts the flights (ballistic) or steps (spring-mass, cadence prior) it used."""

    factor: float
    low: float
    high: float
    n: int
    note: str = ""

    @property
    def available(self) -> bool:
        return math.isfinite(self.factor)


@dataclass(frozen=True)
class TimeBaseEstimate:
    """What :func:`estimate_time_base` found.

    ``factor``: the slow-motion factor the clip's time base should have (real seconds = nominal seconds /
    factor); 1 = the nominal time base stands; None = not pinned down (then nothing time-based should be
    reported). ``low``/``high``: ~95 % interval of the estimate behind it (for "nominal" and "given": the
    physics estimate that checked it; None without one). ``cue``:
    "given", "nominal", "ballistic", "spring_mass", "cadence_prior" or "none". ``applies``: the caller
    should re-time the clip by ``factor``. ``running``: flight phases were seen. ``estimates``: every cue
    (keys :data:`CUES`) relative to the nominal time base. ``cadence_nominal_spm``: the cadence on the
    nominal time base (NaN without a periodic gait); ``cadence_spm``: after re-timing by ``factor`` (None
    when ``factor`` is None). ``signal``: the centre-of-mass proxy used; ``notes``: sentences for people.
    """

    factor: float | None
    low: float | None
    high: float | None
    cue: str
    applies: bool
    running: bool
    estimates: dict[str, CueEstimate]
    cadence_nominal_spm: float
    cadence_spm: float | None
    signal: str
    notes: tuple[str, ...]


@dataclass(frozen=True)
class _Step:
    strike: float  # provisional seconds
    toe_off: float | None
    end: float  # the other foot's next strike

    @property
    def duration(self) -> float:
        return self.end - self.strike

    @property
    def contact(self) -> float:
        return math.nan if self.toe_off is None else self.toe_off - self.strike

    @property
    def flight(self) -> float:
        return math.nan if self.toe_off is None else self.end - self.toe_off


@dataclass(frozen=True)
class _LogCue:
    """An estimate of log(k / k0), its SD and the number of flights or steps behind it."""

    log_k: float
    sd: float
    n: int


# --------------------------------------------------------------------------------------------------------
# pure helpers


def excursion_m(contact_s: float, flight_s: float, *, g_mps2: float = G_MPS2) -> float:
    """Peak-to-trough vertical excursion (metres) of the centre of mass over one running step in the
    sine-wave vertical-force model (Morin et al. 2005): the drop during contact
    ``F_max tc^2 / (m pi^2) - g tc^2 / 8`` with ``F_max = m g pi / 2 (tf / tc + 1)``, plus the rise
    ``g tf^2 / 8`` during flight. ``contact_s`` > 0, ``flight_s`` >= 0 (seconds); NaN otherwise."""
    tc, tf = float(contact_s), float(flight_s)
    if not (math.isfinite(tc) and math.isfinite(tf) and tc > 0 and tf >= 0):
        return math.nan
    return g_mps2 * (tc * (tc + tf) / (2.0 * math.pi) - tc * tc / 8.0 + tf * tf / 8.0)


def _fill_nan(x: FloatArray) -> FloatArray | None:
    """Linear interpolation over NaN samples (edges held); None with fewer than 2 finite samples."""
    finite = np.isfinite(x)
    if np.count_nonzero(finite) < 2:
        return None
    idx = np.arange(x.size, dtype=np.float64)
    return np.asarray(np.interp(idx, idx[finite], x[finite]), dtype=np.float64)


def period_samples(x: FloatArray) -> tuple[float, float]:
    """The period, in samples, of the dominant periodicity of ``x`` ``(T,)`` and the normalised
    autocorrelation at it: the first autocorrelation maximum after the first zero crossing that reaches
    80 % of the largest one within half the series, refined by a parabola. NaN samples are bridged
    linearly. Returns ``(nan, nan)`` when there is no such maximum or it is below
    :data:`MIN_PERIODICITY`. The result does not depend on the time base."""
    filled = _fill_nan(np.asarray(x, dtype=np.float64))
    if filled is None or filled.size < 8:
        return math.nan, math.nan
    y = filled - filled.mean()
    n = y.size
    spec = np.fft.rfft(y, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n] / (n - np.arange(n))
    if not ac[0] > 0:
        return math.nan, math.nan
    ac = ac / ac[0]
    half = n // 2
    negative = np.flatnonzero(ac[:half] < 0)
    if negative.size == 0:
        return math.nan, math.nan
    lo = int(negative[0])
    window = ac[lo:half]
    if window.size < 3:
        return math.nan, math.nan
    interior = np.flatnonzero((window[1:-1] >= window[:-2]) & (window[1:-1] >= window[2:])) + 1
    if interior.size == 0:
        return math.nan, math.nan
    best = float(window[interior].max())
    pick = lo + int(interior[np.flatnonzero(window[interior] >= 0.8 * best)[0]])
    peak = float(ac[pick])
    if peak < MIN_PERIODICITY:
        return math.nan, peak
    a, b, c = ac[pick - 1], ac[pick], ac[pick + 1]
    denom = a - 2.0 * b + c
    delta = float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom < 0 else 0.0
    return pick + delta, peak


def _row_mean(rows: FloatArray) -> FloatArray:
    """Mean over axis 1 of rows that are entirely finite, NaN elsewhere (no RuntimeWarning)."""
    ok = np.all(np.isfinite(rows), axis=1)
    out = np.full(rows.shape[0], np.nan)
    out[ok] = rows[ok].mean(axis=1)
    return out


def _head_px(motion: Motion) -> FloatArray | None:
    """Image height (pixels, up) of the face, ``(T,)``: the mean of a fixed set of face keypoints (those
    present in at least :data:`MIN_KEYPOINT_PRESENCE` of the frames that show the runner's shoulders, so
    that the level does not jump when a keypoint comes and goes); NaN in frames lacking one of them; None
    when the set is empty or there are no 2D keypoints."""
    kps = motion.keypoints2d
    if kps is None:
        return None
    skel = SKELETONS[kps.skeleton]
    y = np.asarray(kps.xy, dtype=np.float64)[..., 1]
    seen = np.isfinite(_row_mean(y[:, [skel.index("left_shoulder"), skel.index("right_shoulder")]]))
    if not seen.any():
        return None
    face_idx = [skel.index(n) for n in _FACE]
    present = np.isfinite(y[seen][:, face_idx]).mean(axis=0) >= MIN_KEYPOINT_PRESENCE
    used = [i for i, p in zip(face_idx, present, strict=True) if p]
    if not used:
        return None
    return np.asarray(-_row_mean(y[:, used]), dtype=np.float64)


def _segmental_com(motion: Motion, up: FloatArray) -> FloatArray | None:
    """Height along ``up`` of the lower-body segmental centre of mass with the head, arms and trunk at the
    pelvis (module docstring), in the Motion's units; None without a moving pelvis or a complete leg
    chain (hip, knee, ankle on both sides)."""
    root = root_position(motion)
    if root is None:
        return None
    height = root @ up
    spread = float(np.nanmax(height) - np.nanmin(height)) if np.isfinite(height).any() else 0.0
    if not spread > 1e-6 * leg_length(motion):
        return None  # root-relative 3D: the pelvis carries no height
    total = (1.0 - 2.0 * (sum(m for m, *_ in _LEG_SEGMENTS) + _FOOT_MASS)) * height
    for side in SIDES:
        pts = {j: joint(motion, f"{side}_{j}") for j in ("hip", "knee", "ankle", "heel", "toe")}
        if pts["hip"] is None or pts["knee"] is None or pts["ankle"] is None:
            return None
        for mass, prox, dist, frac in _LEG_SEGMENTS:
            p, d = pts[prox], pts[dist]
            assert p is not None and d is not None
            total = total + mass * ((p + frac * (d - p)) @ up)
        heel, toe = pts["heel"], pts["toe"]
        foot = (heel + toe) / 2.0 if heel is not None and toe is not None else pts["ankle"]
        total = total + _FOOT_MASS * (foot @ up)
    return np.asarray(total, dtype=np.float64)


def com_proxy_height(motion: Motion) -> tuple[FloatArray, str, float] | None:
    """The centre-of-mass proxy's height ``(T,)`` in metres (upwards, arbitrary origin), its name and the
    relative SD of its metres (module docstring): "head_2d" from 2D keypoints, else
    "segmental_com_3d". None when the Motion has neither (root-relative 3D without 2D face and
    shoulders) or no leg length to scale by."""
    validate_motion(motion)
    up = np.asarray(motion.up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    px = _head_px(motion)
    if px is not None:
        legs_px = leg_length_px(motion)
        if motion.metric:
            m_per_px, sd = leg_length(motion) / legs_px, METRIC_SCALE_SD
        else:
            m_per_px, sd = LEG_LENGTH_PRIOR_M / legs_px, LEG_LENGTH_PRIOR_SD
        if math.isfinite(m_per_px) and m_per_px > 0:
            return px * m_per_px, "head_2d", sd
    com = _segmental_com(motion, up)
    if com is None:
        return None
    if motion.metric:
        sd = 0.0 if motion.source == "mocap" else METRIC_SCALE_SD
        return com, "segmental_com_3d", sd
    legs = leg_length(motion)
    if not (math.isfinite(legs) and legs > 0):
        return None
    return com * (LEG_LENGTH_PRIOR_M / legs), "segmental_com_3d", LEG_LENGTH_PRIOR_SD


def _steps(events: Sequence[GaitEvent]) -> list[_Step]:
    """Steps as :func:`services.kinematics.metrics.analyze_motion` forms them."""

    def after(t: float, side: str, kind: str) -> GaitEvent | None:
        return next((e for e in events if e.t > t and e.side == side and e.kind == kind), None)

    out: list[_Step] = []
    for e in events:
        if e.kind != "strike":
            continue
        other = "left" if e.side == "right" else "right"
        contra, same = after(e.t, other, "strike"), after(e.t, e.side, "strike")
        if contra is None or (same is not None and contra.t > same.t):
            continue
        toe = after(e.t, e.side, "toe_off")
        if toe is not None and same is not None and toe.t > same.t:
            toe = None
        out.append(_Step(e.t, None if toe is None else toe.t, contra.t))
    return out


def _ballistic(
    t: FloatArray, z: FloatArray, steps: Sequence[_Step], rng: np.random.Generator, model_sd: float
) -> _LogCue | str:
    """log(k / k0) from the shared flight-phase curvature (``t`` provisional seconds, ``z`` metres), or
    why not."""
    sxy: list[float] = []
    sxx: list[float] = []
    for s in steps:
        if s.toe_off is None or not s.flight > 0:
            continue
        sel = (t >= s.toe_off) & (t <= s.end) & np.isfinite(z)
        if np.count_nonzero(sel) < 3:
            continue
        tt = t[sel] - 0.5 * (s.toe_off + s.end)
        basis = np.stack([np.ones_like(tt), tt], axis=1)
        proj = basis @ np.linalg.pinv(basis)
        r2 = tt**2 - proj @ tt**2
        rz = z[sel] - proj @ z[sel]
        sxy.append(float(r2 @ rz))
        sxx.append(float(r2 @ r2))
    n = len(sxy)
    if n < MIN_FLIGHTS:
        return f"{n} flight phases with 3 or more samples (needs {MIN_FLIGHTS})"
    xy, xx = np.asarray(sxy), np.asarray(sxx)
    accel = 2.0 * xy.sum() / xx.sum()
    if not accel < 0:
        return f"the flight phases curve upwards ({accel:+.2f} m/s^2 on the provisional time base)"
    idx = rng.integers(0, n, size=(N_BOOTSTRAP, n))
    boot = 2.0 * xy[idx].sum(axis=1) / xx[idx].sum(axis=1)
    if np.mean(boot >= 0) > 0.025:
        return "the flight-phase curvature is not distinguishable from zero"
    log_boot = 0.5 * np.log(G_MPS2 / -boot[boot < 0])
    sd = math.hypot(float(np.std(log_boot)), model_sd)
    return _LogCue(0.5 * math.log(G_MPS2 / -accel), sd, n)


def _spring_mass(
    t: FloatArray, z: FloatArray, steps: Sequence[_Step], rng: np.random.Generator, model_sd: float
) -> _LogCue | str:
    """log(k / k0) from the mean step's vertical excursion against the sine-force model, or why not."""
    phase = np.arange(PROFILE_SAMPLES) / PROFILE_SAMPLES
    profiles: list[FloatArray] = []
    contacts: list[float] = []
    durations: list[float] = []
    for s in steps:
        if not (s.contact > 0 and s.flight > 0):
            continue
        prof = np.interp(s.strike + phase * s.duration, t, z)
        if not np.all(np.isfinite(prof)):
            continue
        profiles.append(prof - prof.mean())
        contacts.append(s.contact)
        durations.append(s.duration)
    n = len(profiles)
    if n < MIN_STEPS:
        return f"{n} complete running steps with a full centre-of-mass track (needs {MIN_STEPS})"
    prof_arr, tc, dur = np.asarray(profiles), np.asarray(contacts), np.asarray(durations)

    def log_k(rows: NDArray[np.intp]) -> float:
        mean = prof_arr[rows].mean(axis=0)
        measured = float(mean.max() - mean.min())
        c, d = float(np.median(tc[rows])) - TOE_OFF_LAG_S, float(np.median(dur[rows]))
        model = excursion_m(c, d - c)
        return 0.5 * math.log(model / measured) if measured > 0 and model > 0 else math.nan

    estimate = log_k(np.arange(n))
    if not math.isfinite(estimate):
        return "no vertical excursion or no flight in the median step"
    boot = np.array([log_k(rows) for rows in rng.integers(0, n, size=(N_BOOTSTRAP, n))])
    boot = boot[np.isfinite(boot)]
    sd = math.hypot(float(np.std(boot)) if boot.size > 1 else math.inf, model_sd)
    return _LogCue(estimate, sd, n)


def _correlation(a: FloatArray, b: FloatArray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if np.count_nonzero(ok) < 3:
        return math.nan
    x, y = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denom if denom > 0 else math.nan


def _in_running_range(cadence_spm: float) -> bool:
    return MIN_CADENCE_SPM <= cadence_spm <= MAX_CADENCE_SPM


# --------------------------------------------------------------------------------------------------------
# the estimator


def estimate_time_base(motion: Motion, *, given: bool = False, seed: int = 0) -> TimeBaseEstimate:
    """The slow-motion factor of a running clip from gravity, body size and the running-cadence prior.

    Parameters
    ----------
    motion:
        The runner on the clip's nominal time base (``motion.t`` as the file's timestamps say). Needs both
        ankles (and what :func:`~services.kinematics.events.detect_events` needs); the physics cues need 2D
        face and shoulder keypoints (video) or 3D joints whose pelvis moves (motion capture). Metres from
        ``motion.metric``, else the population prior :data:`LEG_LENGTH_PRIOR_M`.
    given:
        True when the time base was set by capture-rate metadata or by the user: it is never overridden
        (``factor`` 1, ``cue`` "given"); the physics only confirms or questions it in ``notes``.
    seed:
        Seed of the bootstrap resampling (the result is deterministic for a given seed).

    Returns
    -------
    :class:`TimeBaseEstimate` (decision rule in the module docstring). Raises
    :class:`services.errors.InputError` for an invalid Motion or one lacking the joints the gait events
    need; a factor that cannot be estimated is not an error (``factor`` None, ``notes`` say why).
    """
    validate_motion(motion)
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    estimates = {name: _missing("no periodic gait") for name in CUES}
    t = np.asarray(motion.t, dtype=np.float64)
    forward, _, _ = body_axes(motion)
    left, right = joint(motion, "left_ankle"), joint(motion, "right_ankle")
    if left is None or right is None:
        notes.append("the ankles are missing: no gait to time")
        return _undecided(estimates, math.nan, "none", notes, given)
    spread = np.sum((left - right) * forward, axis=1)
    stride, _ = period_samples(spread)
    if not math.isfinite(stride):
        notes.append("no periodic stride in the ankles' fore-aft motion: the time base is not estimated")
        return _undecided(estimates, math.nan, "none", notes, given)
    # provisional time base: the stride period in samples put at the prior cadence (module docstring)
    k0 = stride / 2.0 * float(np.median(np.diff(t))) / (60.0 / CADENCE_PRIOR_SPM)
    tp = t / k0
    steps = _steps(detect_events(dataclasses.replace(motion, t=tp)))
    if len(steps) < MIN_STEPS:
        notes.append(f"{len(steps)} complete steps (needs {MIN_STEPS}): the time base is not estimated")
        return _undecided(estimates, CADENCE_PRIOR_SPM / k0, "none", notes, given)
    step_p = float(np.median([s.duration for s in steps]))
    cadence_nominal = 60.0 / (step_p * k0)
    prior = _LogCue(
        math.log(step_p * CADENCE_PRIOR_SPM / 60.0), CADENCE_PRIOR_SD_SPM / CADENCE_PRIOR_SPM, len(steps)
    )
    estimates["cadence_prior"] = _interval(
        prior, k0, note=f"running cadence {CADENCE_PRIOR_SPM:.0f} +- {CADENCE_PRIOR_SD_SPM:.0f} steps/min"
    )

    # running: flight phases, and the body highest with the feet apart
    proxy = com_proxy_height(motion)
    signal, scale_log_sd = "none", 0.0
    root = root_position(motion)
    heights = [] if root is None else [pelvis_height(motion, root, np.asarray(motion.up, np.float64))]
    if proxy is not None:
        signal, scale_log_sd = proxy[1], proxy[2] / 2.0  # k ~ scale ** -1/2 for both physics cues
        heights.append(proxy[0])
    correlations = [c for h in heights if math.isfinite(c := _correlation(h, np.abs(spread)))]
    correlation = min(correlations) if correlations else math.nan
    flights = [s.flight for s in steps if s.toe_off is not None]
    median_flight_s = float(np.median(flights)) * k0 if flights else math.nan
    running = median_flight_s > 0 and correlation >= MIN_RUNNING_CORRELATION
    if not running:
        notes.append(
            f"no flight phase: the gait does not look like running (median flight {median_flight_s:+.3f} "
            f"nominal s; height vs feet-apart correlation {correlation:+.2f}, running >= "
            f"{MIN_RUNNING_CORRELATION}); a walking gait does not change with the time base, so the factor "
            "is not estimated and no running cadence should be reported"
        )
        for name in CUES:
            estimates[name] = _missing("not running: no flight phase")
        return _undecided(estimates, cadence_nominal, signal, notes, given)

    # the physics cues, and their inverse-variance combination (the shared scale SD added once)
    cues: dict[str, _LogCue] = {}
    if proxy is None:
        why = "no centre-of-mass track (2D face and shoulders, or 3D joints with a moving pelvis)"
        estimates["ballistic"] = estimates["spring_mass"] = _missing(why)
        notes.append(f"{why}: the physics cues are not available")
    else:
        model_sds = {"ballistic": BALLISTIC_MODEL_SD[signal], "spring_mass": SPRING_MASS_MODEL_SD}
        for name, cue_fn in (("ballistic", _ballistic), ("spring_mass", _spring_mass)):
            found = cue_fn(tp, proxy[0], steps, rng, model_sds[name])
            if isinstance(found, str):
                estimates[name] = _missing(found)
                notes.append(f"{name}: {found}")
            else:
                cues[name] = found
                estimates[name] = _interval(
                    _LogCue(found.log_k, math.hypot(found.sd, scale_log_sd), found.n), k0
                )
    physics = _combine(cues, scale_log_sd, notes)

    if given:
        notes.append(_consistency(physics, k0, "the given time base"))
        return _decided(1.0, physics, k0, "given", False, estimates, cadence_nominal, signal, notes)
    if _in_running_range(cadence_nominal):
        notes.append(f"nominal cadence {cadence_nominal:.0f} steps/min is a running cadence")
        notes.append(_consistency(physics, k0, "the nominal time base"))
        return _decided(1.0, physics, k0, "nominal", False, estimates, cadence_nominal, signal, notes)
    notes.append(
        f"nominal cadence {cadence_nominal:.0f} steps/min is outside the running range "
        f"{MIN_CADENCE_SPM:.0f}-{MAX_CADENCE_SPM:.0f}"
    )
    if physics is None or math.exp(_Z95 * physics.sd) - 1.0 > MAX_HALF_WIDTH:
        shown = "" if physics is None else f" ({_describe(_interval(physics, k0))})"
        notes.append(
            f"the physics does not pin the factor down{shown}: the time base is unknown; nothing "
            "time-based should be reported"
        )
        return _undecided(estimates, cadence_nominal, signal, notes, given, running=True)
    w_phys, w_prior = physics.sd**-2, prior.sd**-2
    final = _LogCue(
        (w_phys * physics.log_k + w_prior * prior.log_k) / (w_phys + w_prior), (w_phys + w_prior) ** -0.5, 0
    )
    factor = k0 * math.exp(final.log_k)
    if not _in_running_range(cadence_nominal * factor):
        notes.append(
            f"the physics factor {factor:.2f} gives {cadence_nominal * factor:.0f} steps/min, not a running "
            "cadence: not applied; the time base is unknown; nothing time-based should be reported"
        )
        return _undecided(estimates, cadence_nominal, signal, notes, given, running=True)
    # the deciding cue: the largest share of the final weight (physics split by the cues' own weights)
    own = {name: cue.sd**-2 for name, cue in cues.items()}
    weights = {name: w_phys * w / sum(own.values()) for name, w in own.items()} | {"cadence_prior": w_prior}
    decider = max(weights, key=lambda name: weights[name])
    notes.append(
        f"slow-motion factor {_describe(_interval(final, k0))} from "
        + ", ".join(f"{name} {estimates[name].factor:.2f}" for name in cues)
        + f" and the cadence prior: {cadence_nominal * factor:.0f} steps/min"
    )
    return _decided(factor, final, k0, decider, True, estimates, cadence_nominal, signal, notes)


def _missing(note: str) -> CueEstimate:
    return CueEstimate(math.nan, math.nan, math.nan, 0, note)


def _interval(cue: _LogCue, k0: float, *, note: str = "") -> CueEstimate:
    """A log(k / k0) estimate as a factor with its ~95 % interval."""
    k = k0 * math.exp(cue.log_k)
    return CueEstimate(k, k * math.exp(-_Z95 * cue.sd), k * math.exp(_Z95 * cue.sd), cue.n, note)


def _describe(c: CueEstimate) -> str:
    return f"{c.factor:.2f} ({c.low:.2f}-{c.high:.2f})"


def _combine(cues: dict[str, _LogCue], scale_log_sd: float, notes: list[str]) -> _LogCue | None:
    """Inverse-variance combination of the physics cues in log(k / k0) plus the shared scale SD; None
    without a cue or when two cues disagree beyond their (independent) uncertainties."""
    if not cues:
        return None
    if len(cues) == 2:
        a, b = cues["ballistic"], cues["spring_mass"]
        if abs(a.log_k - b.log_k) > _Z95 * math.hypot(a.sd, b.sd):
            notes.append(
                "the ballistic and spring-mass estimates disagree "
                f"({math.exp(a.log_k - b.log_k):.2f}x apart): the physics is not trusted"
            )
            return None
    weights = {name: cue.sd**-2 for name, cue in cues.items()}
    total = sum(weights.values())
    log_k = sum(weights[name] * cue.log_k for name, cue in cues.items()) / total
    return _LogCue(log_k, math.sqrt(1.0 / total + scale_log_sd**2), sum(c.n for c in cues.values()))


def _consistency(physics: _LogCue | None, k0: float, what: str) -> str:
    if physics is None:
        return f"the physics cannot check {what}"
    c = _interval(physics, k0)
    if c.low <= 1.0 <= c.high:
        return f"the physics agrees with {what}: factor {_describe(c)}"
    return (
        f"the physics questions {what}: it suggests a factor of {_describe(c)}; check the clip's frame rate"
    )


def _decided(
    factor: float,
    backing: _LogCue | None,
    k0: float,
    cue: str,
    applies: bool,
    estimates: dict[str, CueEstimate],
    cadence_nominal: float,
    signal: str,
    notes: list[str],
) -> TimeBaseEstimate:
    interval = None if backing is None else _interval(backing, k0)
    return TimeBaseEstimate(
        factor=factor,
        low=None if interval is None else interval.low,
        high=None if interval is None else interval.high,
        cue=cue,
        applies=applies,
        running=True,
        estimates=estimates,
        cadence_nominal_spm=cadence_nominal,
        cadence_spm=cadence_nominal * factor,
        signal=signal,
        notes=tuple(notes),
    )


def _undecided(
    estimates: dict[str, CueEstimate],
    cadence_nominal: float,
    signal: str,
    notes: list[str],
    given: bool,
    *,
    running: bool = False,
) -> TimeBaseEstimate:
    """Factor not pinned down (1 when given: a given time base stands); no running cadence."""
    return TimeBaseEstimate(
        factor=1.0 if given else None,
        low=None,
        high=None,
        cue="given" if given else "none",
        applies=False,
        running=running,
        estimates=estimates,
        cadence_nominal_spm=cadence_nominal,
        cadence_spm=cadence_nominal if given and running else None,
        signal=signal,
        notes=tuple(notes),
    )
