"""A synthetic treadmill runner shared by the kinematics tests: the ankle's path relative to the pelvis over
one stride (a stance at the running speed with a realistic landing and heel rise, a swing that brings the
foot forward and back) and two-link legs placed on it by inverse kinematics. Everything about it is
designed, so the tests know the truth (event times, angles, lengths)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def stride_profile(
    *, stride: float, contact: float, speed: float, heel_rise: float, n: int = 4000
) -> tuple[Array, Array, Array]:
    """Ankle position relative to the pelvis over one stride from strike (tau = 0): forward x and height
    above flat-foot level z, on a fine grid.

    Stance [0, contact): the foot is on the ground, so it moves backwards relative to the pelvis at the
    running speed; as in real running (RBDS001 treadmill data: about 55 % of it at contact, 85 % 20 ms
    later) it lands at half that speed and settles within 30 ms, and the heel rises during the last
    40 % of stance. Swing: a smooth bump carries it forward and brings it back (foot retraction) to land
    again; the stride integrates to zero."""
    tau = np.linspace(0.0, stride, n, endpoint=False)
    stance = tau < contact
    v = np.empty(n)
    settle = np.clip(tau[stance] / 0.03, 0.0, 1.0)
    v[stance] = -speed * (0.5 + 0.5 * (3 * settle**2 - 2 * settle**3))
    s = (tau[~stance] - contact) / (stride - contact)
    base = -speed + 0.5 * speed * s
    bump = np.sin(np.pi * s) ** 1.5
    v[~stance] = base - (v[stance].sum() + base.sum()) / bump.sum() * bump
    x = np.cumsum(v) * (stride / n)
    x -= x.mean()
    z = np.zeros(n)
    rise = np.clip((tau[stance] - 0.6 * contact) / (0.4 * contact), 0.0, 1.0)
    z[stance] = heel_rise * (3 * rise**2 - 2 * rise**3)
    z[~stance] = heel_rise * (1 - s) + 0.25 * np.sin(np.pi * s)
    return tau, x, z


def two_link_legs(
    t: Array,
    pelvis: Array,
    *,
    t0: dict[str, float],
    stride: float,
    profile: tuple[Array, Array, Array],
    thigh: float,
    shank: float,
    ankle_h: float,
    half_width: float = 0.09,
) -> dict[str, Array]:
    """Hip, knee and ankle ``(T, 3)`` of both legs in a lab frame (X forward, Y up, Z right): each ankle on
    the stride ``profile`` (:func:`stride_profile`) from its first strike ``t0[side]``, hips ``half_width``
    either side of the pelvis, the knee placed by inverse kinematics of a thigh and a shank, pointing
    forward."""
    tau_p, x_p, z_p = profile
    joints: dict[str, Array] = {}
    for side, sign in (("right", 1.0), ("left", -1.0)):
        tau = (t - t0[side]) % stride
        x = np.interp(tau, tau_p, x_p, period=stride)
        z = np.interp(tau, tau_p, z_p, period=stride)
        hip = pelvis + np.array([0.0, 0.0, sign * half_width])
        ankle = np.stack([x, ankle_h + z, np.full_like(t, sign * half_width)], axis=1)
        d = ankle - hip
        length = np.linalg.norm(d, axis=1)
        assert length.max() < thigh + shank
        u = d / length[:, None]
        along = (thigh**2 - shank**2 + length**2) / (2 * length)
        perp = np.stack([-u[:, 1], u[:, 0], np.zeros_like(t)], axis=1)
        perp *= np.sign(perp[:, :1])  # the knee points forward
        knee = hip + u * along[:, None] + perp * np.sqrt(thigh**2 - along**2)[:, None]
        joints |= {f"{side}_hip": hip, f"{side}_knee": knee, f"{side}_ankle": ankle}
    return joints
