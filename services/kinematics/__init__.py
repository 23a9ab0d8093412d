"""The kinematics library: joint angles, gait events, per-step running metrics, quality flags, and the
motion-capture readers used to validate them. Pure numpy/scipy; no model runtime."""
