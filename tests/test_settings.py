"""The one settings object: every GAITWAY_* variable reaches its field, and analyses take their defaults
from it."""

from __future__ import annotations

import pytest

from gateway.core import AnalysisSpec
from services.settings import Settings


def test_environment_variables_reach_their_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAITWAY_MAX_LONG_SIDE_PX", "480")  # pose
    monkeypatch.setenv("GAITWAY_QUEUE_LIMIT", "3")  # gateway
    monkeypatch.setenv("GAITWAY_KINEMATICS_MAX_FRAMES", "1234")  # kinematics service
    settings = Settings()
    assert settings.max_long_side_px == 480
    assert settings.queue_limit == 3
    assert settings.kinematics_max_frames == 1234


def test_an_unset_spec_field_takes_the_setting() -> None:
    settings = Settings(max_long_side_px=480, det_interval_frames=5, pose_workers=1)
    options = AnalysisSpec().options(settings)
    assert (options.max_long_side, options.tracker.det_interval, options.pose_workers) == (480, 5, 1)
    options = AnalysisSpec(max_long_side=320, det_interval=7, pose_workers=3).options(settings)
    assert (options.max_long_side, options.tracker.det_interval, options.pose_workers) == (320, 7, 3)
