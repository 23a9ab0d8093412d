"""One interface to the kinematics engine, two hosts: in-process (the embedded default) and the HTTP service.

Both take and return the same schema objects, so the CLI and the gateway produce identical results whether
or not a kinematics URL is configured.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx
import numpy as np
from numpy.typing import NDArray

from services.errors import ERROR_BY_CODE, GaitwayError, InputError, ServiceUnavailableError
from services.kinematics.metrics import analyze_motion
from services.kinematics.schema import (
    Keypoints2DIn,
    KinematicsRequest,
    KinematicsResponse,
    RunnerInfo,
    to_motion,
    to_response,
)
from services.pose.skeletons import SKELETONS


class KinematicsClient(Protocol):
    def analyze(self, req: KinematicsRequest) -> KinematicsResponse: ...


class LocalKinematics:
    """The library, called in-process."""

    def __init__(self, *, min_confidence: float = 0.3) -> None:
        self.min_confidence = min_confidence

    def analyze(self, req: KinematicsRequest) -> KinematicsResponse:
        return to_response(analyze_motion(to_motion(req), min_confidence=self.min_confidence))


class HttpKinematics:
    """The kinematics service over HTTP. Error bodies become the same exceptions the library raises."""

    def __init__(
        self, base_url: str, *, timeout_s: float = 60.0, transport: httpx.BaseTransport | None = None
    ):
        self._client = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    def analyze(self, req: KinematicsRequest) -> KinematicsResponse:
        try:
            r = self._client.post("/v1/kinematics", content=req.model_dump_json(), headers=_JSON)
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(f"kinematics service unreachable: {exc}") from exc
        if r.status_code == 200:
            return KinematicsResponse.model_validate_json(r.content)
        try:
            body = r.json()["error"]
            cls = ERROR_BY_CODE.get(body["code"], InputError if r.status_code < 500 else GaitwayError)
            raise cls(body["message"])
        except (ValueError, KeyError, TypeError):
            raise ServiceUnavailableError(f"kinematics service answered {r.status_code}") from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpKinematics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_JSON = {"content-type": "application/json"}


def _listify(a: NDArray[np.float64]) -> list[Any]:
    """Nested lists with NaN as None (JSON null)."""
    obj = a.astype(object)
    obj[~np.isfinite(a)] = None
    out: list[Any] = obj.tolist()
    return out


#: Motion joint -> COCO-17 keypoints whose 2D score is that joint's confidence (the lowest is used)
CONFIDENCE_SOURCES = {
    "pelvis": ("left_hip", "right_hip"),
    **{f"{s}_{j}": (f"{s}_{j}",) for s in ("left", "right") for j in ("hip", "knee", "ankle", "shoulder",
                                                                       "elbow", "wrist")},
}  # fmt: skip


def request_from_poses(
    t: NDArray[np.float64],
    pose3d: NDArray[np.float64],
    *,
    metric: bool,
    keypoints2d: NDArray[np.float64] | None = None,
    skeleton2d: str = "coco17",
    image_wh: tuple[int, int] = (0, 0),
    swapped: NDArray[np.bool_] | None = None,
    height_m: float | None = None,
    treadmill_speed_mps: float | None = None,
) -> KinematicsRequest:
    """The kinematics request for one analysed video: H36M-17 3D in camera axes plus the 2D it came from
    (2D scores become per-joint confidences)."""
    kps = None
    confidence = None
    if keypoints2d is not None:
        kps = Keypoints2DIn(
            skeleton=skeleton2d,  # type: ignore[arg-type]
            image_wh=image_wh,
            xy=_listify(keypoints2d),
            swapped=None if swapped is None else [bool(v) for v in swapped],
        )
        names = SKELETONS[skeleton2d].joints
        scores = np.nan_to_num(keypoints2d[..., 2])
        confidence = {
            joint: _listify(np.min([scores[:, names.index(src)] for src in sources], axis=0))
            for joint, sources in CONFIDENCE_SOURCES.items()
        }
    return KinematicsRequest(
        t=[float(v) for v in t],
        pose3d=_listify(pose3d),
        metric=metric,
        keypoints2d=kps,
        confidence=confidence,
        runner=RunnerInfo(height_m=height_m, treadmill_speed_mps=treadmill_speed_mps),
    )
