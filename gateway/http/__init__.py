"""The HTTP API for mobile apps (FastAPI). Routes only convert requests and call the job manager
(:class:`gateway.jobs.JobManager`), whose public API is async.

    POST   /v1/analyses                       upload a video (raw body), returns the new analysis (202)
    GET    /v1/analyses                       list your analyses, newest first (cursor pagination)
    GET    /v1/analyses/{id}                  status: state, stage, progress, error
    GET    /v1/analyses/{id}/result           poses + metrics JSON of a finished analysis
    GET    /v1/analyses/{id}/artifacts        the artifacts of a finished analysis
    GET    /v1/analyses/{id}/artifacts/{name} one artifact file (CSV, XLSX, PNG, JSON)
    DELETE /v1/analyses/{id}                  delete an analysis and its files (cancels it if running)
    GET    /healthz  /readyz  /metrics        liveness, readiness (Triton, kinematics), Prometheus
    GET    /docs  /redoc  /openapi.json       the API's documentation, served without a CDN

Modules: :mod:`~gateway.http.app` (``create_app``), :mod:`~gateway.http.routes` (``/v1/analyses``),
:mod:`~gateway.http.ops` (operations), :mod:`~gateway.http.deps` (manager, API key, upload size),
:mod:`~gateway.http.errors` (exception handlers), :mod:`~gateway.http.models` (response bodies),
:mod:`~gateway.http.middleware` (request id, metrics, access log), :mod:`~gateway.http.docs`.
"""

from gateway.http.app import create_app

__all__ = ["create_app"]
