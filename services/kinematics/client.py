"""One interface to the kinematics engine, two hosts: in-process (the embedded default) and the HTTP service.

Both take and return the same schema objects, so the CLI and the gateway produce identical results whether
or not a kinematics URL is configured.
"""

from __future__ import annotations

from typing import Protocol

import httpx

from services.errors import ERROR_BY_CODE, GaitwayError, InputError, ServiceUnavailableError
from services.kinematics.metrics import analyze_motion
from services.kinematics.schema import KinematicsRequest, KinematicsResponse, to_motion, to_response


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
            raise ServiceUnavailableError(
                "the kinematics service is unreachable",
                dependency="kinematics",
                detail=f"{self._client.base_url}: {type(exc).__name__}: {exc}",
            ) from exc
        if r.status_code == 200:
            return KinematicsResponse.model_validate_json(r.content)
        try:
            body = r.json()["error"]
            cls = ERROR_BY_CODE.get(body["code"], InputError if r.status_code < 500 else GaitwayError)
            raise cls(body["message"])
        except (ValueError, KeyError, TypeError):
            raise ServiceUnavailableError(
                f"the kinematics service answered {r.status_code}",
                dependency="kinematics",
                detail=f"{self._client.base_url}: HTTP {r.status_code}",
            ) from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpKinematics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_JSON = {"content-type": "application/json"}
