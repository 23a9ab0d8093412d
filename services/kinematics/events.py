"""Foot strike and toe-off detection for running, from joint trajectories alone (no force plate).

Anchors: Zeni et al. (method "zeni")
------------------------------------
Zeni, Richards & Higginson (2008), *Two simple methods for determining gait events during treadmill and
overground walking using kinematic data*, Gait & Posture 27:710-714. Each foot's position *relative to
the pelvis* along the runner's forward axis (:func:`services.kinematics.angles.body_axes`) oscillates
once per stride:

* strike anchor = a local maximum of ``(heel - pelvis) . forward`` (the ankle when there is no heel);
* toe-off anchor = a local minimum of ``(toe - pelvis) . forward`` (the ankle when there is no toe).

Being relative to the pelvis, the signal is the same on a treadmill and overground and needs no ground
level, so it works for root-relative lifted 3D video poses as well as for marker-based joint centres.
The pelvis is the ``pelvis`` joint, else the midpoint of the hips.

In running these extrema are not the contact events: on RBDS001 (treadmill, 150 Hz, force plate with a
2 % threshold as truth) the heel maximum comes 25-30 ms *before* foot strike (the foot is retracted before
it lands) and the toe minimum 100-150 ms *after* toe-off (the foot keeps moving backwards in early
swing), which makes contact times ~60 % too long and puts swing-phase knee flexion into "stance".

Running refinement (method "running" = "auto", the default)
------------------------------------------------------------
* **Foot strike**: the first instant after the strike anchor at which the striking point's velocity
  relative to the pelvis falls below :data:`STRIKE_VELOCITY_FRACTION` (75 %) of its stance value (the
  median velocity between the strike and toe-off anchors): a foot on the ground moves backwards relative
  to the pelvis at the running speed, treadmill or overground. Linear interpolation between frames.
* **Toe-off**: the peak knee extension at push-off, i.e. the deepest local minimum of the knee flexion
  between the middle of the contact (half way from the refined strike to the toe-off anchor) and the
  toe-off anchor (a kinematic toe-off marker used for running, cf. Fellin et al. 2010, Gait & Posture
  32:336-341); parabolic sub-frame refinement.

On RBDS001 (RBDS001runT25/T35, 2.5 and 3.5 m/s, ~80 contacts per side each) this gives strikes within
-1..+4 ms (SD 3-6 ms) and toe-offs 13-16 ms late (SD 3 ms) against the force plate: contact time
0.240 s vs 0.227 s at 3.5 m/s, cadence 171.3 vs 171 steps/min. Strike anchors whose refinement window is
cut by the end of the clip, and toe-off anchors with no knee-extension minimum before them, are dropped
rather than reported unrefined; without knee angles the toe-off anchor itself is used.

Processing: short gaps (up to :data:`MAX_GAP_S`) are bridged linearly; the signals and the knee angle
are low-passed (zero-phase Butterworth, order 4, :data:`DEFAULT_CUTOFF_HZ`, via
:func:`services.pose.sequence.lowpass`, which handles NaN runs and variable frame rates); anchors are
picked per run of finite samples with :func:`scipy.signal.find_peaks` (none within :data:`EDGE_S` of either
end of a run, whose other side is unseen), with a refractory distance of
:data:`REFRACTORY_FRACTION` of the shortest stride allowed by the cadence prior (230 steps/min -> a stride
of 0.52 s) and a prominence of at least :data:`MIN_PROMINENCE_FRACTION` of the signal's 5-95 % range.
Slower strides (slow-motion clips included) are not excluded: the metrics flag them. Anchor times are
refined by a parabola through the extremum and its neighbours (``GaitEvent.t``; ``GaitEvent.index`` is
the nearest frame). Per foot, anchors must alternate strike / toe-off: of two anchors of the same kind
closer than half the median stride, the more extreme one is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.signal import find_peaks

from services.errors import InputError
from services.kinematics.angles import body_axes, joint, joint_angles, root_position
from services.kinematics.model import SIDES, FloatArray, GaitEvent, Motion
from services.pose.sequence import lowpass

__all__ = [
    "DEFAULT_CUTOFF_HZ",
    "MAX_CADENCE_SPM",
    "MIN_CADENCE_SPM",
    "EventSignals",
    "detect_events",
    "event_signals",
]

#: plausible running cadence (steps/min); the upper end sets the refractory distance of the peak picking
MIN_CADENCE_SPM = 120.0
MAX_CADENCE_SPM = 230.0
#: low-pass cutoff (Hz) of the foot-relative-to-pelvis signals: keeps ~4 stride harmonics at 1.4 Hz
DEFAULT_CUTOFF_HZ = 6.0
#: gaps up to this long (seconds) are bridged by linear interpolation before filtering
MAX_GAP_S = 0.1
#: refractory distance between two events of one kind on one foot, as a fraction of the shortest stride
REFRACTORY_FRACTION = 0.7
#: running strike: the foot's velocity relative to the pelvis reaches this fraction of its stance value
STRIKE_VELOCITY_FRACTION = 0.75
#: minimum prominence of an extremum, as a fraction of the signal's 5-95 percentile range
MIN_PROMINENCE_FRACTION = 0.25
#: an extremum closer than this (seconds) to either end of its run of data is not an anchor: its other side
#: is unseen, so whether it is one would depend on where the data happens to stop
EDGE_S = 0.1

_METHODS = ("auto", "running", "zeni")


@dataclass(frozen=True)
class EventSignals:
    """The filtered signals the events are picked from, ``(T,)`` each, in the Motion's units:
    ``strike[side]`` = (heel or ankle - pelvis) . forward, ``toe_off[side]`` = (toe or ankle - pelvis) .
    forward, with the joint names used."""

    strike: dict[str, FloatArray]
    toe_off: dict[str, FloatArray]
    strike_joint: dict[str, str]
    toe_off_joint: dict[str, str]


def _fill_short_gaps(x: FloatArray, t: FloatArray, max_gap_s: float) -> FloatArray:
    """Linear interpolation over interior NaN gaps spanning at most ``max_gap_s`` between the
    bracketing valid samples (minus one nominal frame)."""
    out = x.copy()
    valid = np.isfinite(x)
    idx = np.flatnonzero(valid)
    if idx.size < 2:
        return out
    gaps = np.flatnonzero(np.diff(idx) > 1)
    dt = float(np.median(np.diff(t)))
    for g in gaps:
        a, b = idx[g], idx[g + 1]
        if t[b] - t[a] - dt <= max_gap_s + 1e-9:
            out[a + 1 : b] = np.interp(t[a + 1 : b], [t[a], t[b]], [x[a], x[b]])
    return out


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _pick_joint(motion: Motion, side: str, names: tuple[str, ...]) -> tuple[str, FloatArray] | None:
    for name in names:
        arr = joint(motion, f"{side}_{name}")
        if arr is not None:
            return f"{side}_{name}", arr
    return None


def event_signals(motion: Motion, *, cutoff_hz: float = DEFAULT_CUTOFF_HZ) -> EventSignals:
    """The low-passed foot-relative-to-pelvis signals used by :func:`detect_events` (for plots and
    tests). Raises :class:`InputError` when the Motion lacks the pelvis (or hips) or a foot joint
    (heel/toe/ankle) of either side."""
    forward, _, _ = body_axes(motion)
    root = root_position(motion)
    if root is None:
        raise InputError("gait events need the pelvis or both hips, which the motion lacks")
    t = np.asarray(motion.t, dtype=np.float64)
    strike: dict[str, FloatArray] = {}
    toe_off: dict[str, FloatArray] = {}
    strike_joint: dict[str, str] = {}
    toe_off_joint: dict[str, str] = {}
    for side in SIDES:
        for kind, names, sig, used in (
            ("strike", ("heel", "ankle"), strike, strike_joint),
            ("toe_off", ("toe", "ankle"), toe_off, toe_off_joint),
        ):
            picked = _pick_joint(motion, side, names)
            if picked is None:
                raise InputError(
                    f"gait events ({kind}) need the {side} {' or '.join(names)}, which the motion lacks"
                )
            name, pos = picked
            rel = np.sum((pos - root) * forward, axis=1)
            rel = _fill_short_gaps(rel, t, MAX_GAP_S)
            sig[side] = lowpass(rel, t, cutoff_hz=cutoff_hz)
            used[side] = name
    return EventSignals(strike, toe_off, strike_joint, toe_off_joint)


def _extrema(x: FloatArray, t: FloatArray, fs: float, *, maximum: bool) -> list[tuple[int, float, float]]:
    """(nearest frame, interpolated time, value) of the prominent maxima (or minima) of ``x``."""
    finite = np.isfinite(x)
    if np.count_nonzero(finite) < 3:
        return []
    y = x if maximum else -x
    lo, hi = np.percentile(y[finite], [5.0, 95.0])
    prominence = max(MIN_PROMINENCE_FRACTION * float(hi - lo), 1e-12)
    min_stride = 2.0 * 60.0 / MAX_CADENCE_SPM
    distance = max(1, int(REFRACTORY_FRACTION * min_stride * fs))
    out: list[tuple[int, float, float]] = []
    frames = np.arange(x.size, dtype=np.float64)
    for start, stop in _runs(finite):
        if stop - start < 3:
            continue
        seg = y[start:stop]
        peaks, _ = find_peaks(seg, distance=distance, prominence=prominence)
        for p in peaks:
            i = start + int(p)
            if min(t[i] - t[start], t[stop - 1] - t[i]) < EDGE_S:
                continue  # too close to the end of the data for its shape (and prominence) to be known
            a, b, c = y[i - 1], y[i], y[i + 1]
            denom = a - 2.0 * b + c
            delta = 0.5 * (a - c) / denom if denom < 0 else 0.0
            delta = float(np.clip(delta, -0.5, 0.5))
            value = b - 0.25 * (a - c) * delta
            time = float(np.interp(i + delta, frames, t))
            nearest = int(np.clip(round(i + delta), 0, x.size - 1))
            out.append((nearest, time, float(value if maximum else -value)))
    return out


def _alternate(events: list[tuple[str, int, float, float]]) -> list[tuple[str, int, float, float]]:
    """Per-foot cleanup: of two consecutive events of the same kind closer than half the median stride,
    keep the more extreme one (strike: larger value, toe-off: smaller)."""
    events = sorted(events, key=lambda e: e[2])
    strikes = [e[2] for e in events if e[0] == "strike"]
    stride = float(np.median(np.diff(strikes))) if len(strikes) >= 2 else np.inf
    out: list[tuple[str, int, float, float]] = []
    for e in events:
        if out and out[-1][0] == e[0] and e[2] - out[-1][2] < 0.5 * stride:
            prev = out[-1]
            better = e[3] > prev[3] if e[0] == "strike" else e[3] < prev[3]
            if better:
                out[-1] = e
            continue
        out.append(e)
    return out


def _strike_from_velocity(v: FloatArray, t: FloatArray, anchor: int, end: int) -> tuple[int, float] | None:
    """First time in ``[anchor, end]`` where the foot's velocity relative to the pelvis falls below
    :data:`STRIKE_VELOCITY_FRACTION` of its median over that window (the stance plateau), linearly
    interpolated between frames; None when the window has no such crossing."""
    w = v[anchor : end + 1]
    if w.size < 3 or not np.all(np.isfinite(w)):
        return None
    plateau = float(np.median(w))
    if not plateau < 0:
        return None
    level = STRIKE_VELOCITY_FRACTION * plateau
    below = np.flatnonzero(w < level)
    if below.size == 0 or below[0] == 0:
        return None
    c = anchor + int(below[0])
    a, b = v[c - 1], v[c]
    frac = (a - level) / (a - b) if a != b else 1.0
    time = float(t[c - 1] + frac * (t[c] - t[c - 1]))
    return (c if frac >= 0.5 else c - 1), time


def _toe_off_from_knee(knee: FloatArray, t: FloatArray, start: int, anchor: int) -> tuple[int, float] | None:
    """The deepest local minimum of the knee flexion (peak extension at push-off) in ``[start, anchor]``,
    refined by a parabola; None when the window holds no interior minimum."""
    if anchor - start < 3:
        return None
    w = knee[start : anchor + 1]
    if not np.all(np.isfinite(w)):
        return None
    peaks, _ = find_peaks(-w)
    if peaks.size == 0:
        return None
    p = int(peaks[np.argmin(w[peaks])])
    i = start + p
    a, b, c = knee[i - 1], knee[i], knee[i + 1]
    denom = a - 2.0 * b + c
    delta = float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom > 0 else 0.0
    time = float(np.interp(i + delta, np.arange(t.size, dtype=np.float64), t))
    return int(np.clip(round(i + delta), 0, t.size - 1)), time


def _refine(
    side: str,
    raw: list[tuple[str, int, float, float]],
    signals: EventSignals,
    knee: FloatArray | None,
    t: FloatArray,
) -> list[tuple[str, int, float]]:
    """Running refinement of the Zeni anchors of one foot (see the module docstring). Where a
    neighbouring anchor is missing inside the data (a gap) the window uses the foot's typical anchor
    spacing; a strike with no toe-off anchor after it (its stance cut by the end of the data) is dropped
    rather than refined with a guessed window, so that whether it counts depends only on the frames
    around it, never on statistics of the whole sequence (a live window and the whole clip agree)."""
    velocity = np.gradient(signals.strike[side], t)
    n = t.size
    strikes = [(i, ti) for kind, i, ti, _ in raw if kind == "strike"]
    toe_offs = [(i, ti) for kind, i, ti, _ in raw if kind == "toe_off"]
    stride = float(np.median(np.diff([ti for _, ti in strikes]))) if len(strikes) >= 2 else np.inf

    def following(ti: float, pool: list[tuple[int, float]]) -> tuple[int, float] | None:
        nxt = [e for e in pool if ti < e[1] < ti + 0.8 * stride]
        return nxt[0] if nxt else None

    spans = [f[0] - i for i, ti in strikes if (f := following(ti, toe_offs)) is not None]
    typical = int(np.median(spans)) if spans else None
    out: list[tuple[str, int, float]] = []
    refined: list[tuple[int, float]] = []
    last_toe_off = toe_offs[-1][1] if toe_offs else -np.inf
    for i, ti in strikes:
        f = following(ti, toe_offs)
        if f is not None:
            end = f[0]
        elif typical is not None and ti < last_toe_off and i + typical < n:
            end = i + typical  # a toe-off anchor lost in a gap: the foot's typical span
        else:
            continue  # no toe-off anchor after it: its stance is cut by the end of the data
        hit = _strike_from_velocity(velocity, t, i, end)
        if hit is not None:
            refined.append(hit)
    out.extend(("strike", i, ti) for i, ti in refined)
    back = [i - s[0] for i, ti in toe_offs if (s := _preceding(ti, refined, stride)) is not None]
    typical_back = int(np.median(back)) if back else None
    for i, ti in toe_offs:
        hit = None
        if knee is not None:
            prev = _preceding(ti, refined, stride)
            if prev is not None:
                start = (prev[0] + i) // 2
            elif typical_back is not None:
                start = max(0, i - typical_back // 2)
            else:
                start = None
            if start is not None:
                hit = _toe_off_from_knee(knee, t, start, i)
            if hit is None:
                continue  # no push-off knee extension before the anchor: not a trustworthy toe-off
        out.append(("toe_off", *(hit if hit is not None else (i, ti))))
    return out


def _preceding(ti: float, pool: list[tuple[int, float]], stride: float) -> tuple[int, float] | None:
    prev = [e for e in pool if ti - 0.8 * stride < e[1] < ti]
    return prev[-1] if prev else None


def detect_events(
    motion: Motion, *, method: str = "auto", cutoff_hz: float = DEFAULT_CUTOFF_HZ
) -> list[GaitEvent]:
    """Foot strikes and toe-offs of both feet, sorted by time.

    Parameters
    ----------
    motion:
        A Motion with the pelvis (or both hips) and, per side, a heel or ankle (strike) and a toe or
        ankle (toe-off); the running refinement also uses the hip, knee and ankle. Treadmill or
        overground, motion capture or video.
    method:
        ``"zeni"``: the plain extrema of the foot position relative to the pelvis. ``"running"``: those
        extrema refined for running (module docstring). ``"auto"`` = ``"running"``.
    cutoff_hz:
        Low-pass cutoff of the signals in Hz (clamped to 0.4 x the frame rate).

    Returns
    -------
    ``GaitEvent`` list, sorted by ``t``: ``kind`` "strike" or "toe_off", ``side`` "left"/"right",
    ``t`` sub-frame time in seconds, ``index`` the nearest frame. Raises :class:`InputError` for an
    invalid Motion or one lacking the joints above; ``ValueError`` for an unknown ``method``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if not (np.isfinite(cutoff_hz) and cutoff_hz > 0):
        raise ValueError(f"cutoff_hz must be finite and > 0, got {cutoff_hz}")
    signals = event_signals(motion, cutoff_hz=cutoff_hz)
    t = np.asarray(motion.t, dtype=np.float64)
    fs = motion.fs
    angles = joint_angles(motion) if method != "zeni" else {}
    events: list[GaitEvent] = []
    for side in SIDES:
        raw = [("strike", i, ti, v) for i, ti, v in _extrema(signals.strike[side], t, fs, maximum=True)]
        raw += [("toe_off", i, ti, v) for i, ti, v in _extrema(signals.toe_off[side], t, fs, maximum=False)]
        raw = _alternate(raw)
        if method == "zeni":
            picked = [(kind, i, ti) for kind, i, ti, _ in raw]
        else:
            knee = angles[f"{side}_knee_flexion_deg"]
            knee_f = lowpass(knee, t, cutoff_hz=cutoff_hz) if np.any(np.isfinite(knee)) else None
            picked = _refine(side, raw, signals, knee_f, t)
        for kind, i, ti in picked:
            events.append(GaitEvent(side=side, kind=kind, index=i, t=ti))
    events.sort(key=lambda e: (e.t, e.side, e.kind))
    return events
