"""Prometheus metrics and structured logs of the gateway.

Metrics live in one :class:`Telemetry` object per server (its own registry, so tests can build many
servers in one process); ``/metrics`` on the HTTP port exposes it. Logs are one JSON object per line
with the request id of the HTTP request or gRPC call that caused them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: the current request id (set by the HTTP middleware and the gRPC interceptor)
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "gaitway_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.http_latency = Histogram(
            "gaitway_http_request_seconds", "HTTP request latency", ["route", "method"], registry=r
        )
        self.grpc_requests = Counter("gaitway_grpc_requests", "gRPC calls", ["method", "code"], registry=r)
        self.grpc_latency = Histogram(
            "gaitway_grpc_request_seconds",
            "gRPC call latency",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "gaitway_job_stage_seconds",
            "time per analysis stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.jobs_finished = Counter(
            "gaitway_jobs_finished", "analyses finished", ["state", "code"], registry=r
        )
        self.job_retries = Counter(
            "gaitway_job_retries", "analysis retries after a dependency failed", registry=r
        )
        self.queue_depth = Gauge("gaitway_queue_depth", "accepted analyses waiting for a worker", registry=r)
        self.running = Gauge("gaitway_jobs_running", "analyses running now", registry=r)
        self.triton_seconds = Histogram(
            "gaitway_triton_call_seconds",
            "Triton inference latency seen by the gateway",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stream_frame_seconds = Histogram(
            "gaitway_stream_frame_seconds",
            "StreamFrames: frame in to keypoints out",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stream_frames_dropped = Counter(
            "gaitway_stream_frames_dropped", "StreamFrames frames dropped under backpressure", registry=r
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id and any ``extra`` fields."""

    _STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id.get(),
        }
        for key, value in record.__dict__.items():
            if key not in self._STD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_logging(*, json_logs: bool, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per readiness probe otherwise
