"""API keys, rate limits and quotas, shared by the HTTP and gRPC APIs.

Keys are random tokens given to a client once; the store keeps only their SHA-256. Each key has a
request rate limit (token bucket, per process) and a daily quota of analyses (counted in the job store,
so it holds across restarts and replicas).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.settings import GatewaySettings
from gateway.store import ApiKey, JobStore
from services.errors import AuthenticationError, InputError, QuotaExceededError, RateLimitedError

ANONYMOUS = ApiKey(
    id="key_anonymous",
    name="anonymous",
    jobs_per_day=10**9,
    requests_per_min=10**9,
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
    revoked=False,
)


def secret_from_headers(headers: Iterable[tuple[str, str]]) -> str | None:
    """The API key of a request: ``x-api-key: K`` or ``authorization: Bearer K`` (HTTP headers or gRPC
    metadata; names case-insensitive)."""
    for name, value in headers:
        key = name.lower()
        if key == "x-api-key" and value:
            return value.strip()
        if key == "authorization" and value.lower().startswith("bearer "):
            return value[7:].strip()
    return None


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class Access:
    """Authenticates keys and applies their rate limits and quotas."""

    def __init__(self, settings: GatewaySettings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def check(self, secret: str | None) -> ApiKey:
        """The key of ``secret``, after its rate limit. Raises AuthenticationError / RateLimitedError."""
        if not self.settings.require_api_key:
            return ANONYMOUS
        if not secret:
            raise AuthenticationError(
                "missing API key: send 'x-api-key: <key>' or 'authorization: Bearer <key>'"
            )
        key = self.store.authenticate(secret)
        self._take(key)
        return key

    def _take(self, key: ApiKey) -> None:
        rate = key.requests_per_min / 60.0
        now = time.monotonic()
        with self._lock:
            b = self._buckets.get(key.id)
            if b is None:
                b = self._buckets[key.id] = _Bucket(tokens=float(key.requests_per_min), stamp=now)
            b.tokens = min(float(key.requests_per_min), b.tokens + (now - b.stamp) * rate)
            b.stamp = now
            if b.tokens < 1.0:
                wait = (1.0 - b.tokens) / rate
                raise RateLimitedError(
                    f"rate limit of {key.requests_per_min} requests/min reached", retry_after_s=round(wait, 2)
                )
            b.tokens -= 1.0

    def check_quota(self, key: ApiKey) -> None:
        """Refuse a new analysis when the key has used its daily quota (rolling 24 h)."""
        if key is ANONYMOUS:
            return
        used = self.store.count_since(key.id, datetime.now(UTC) - timedelta(days=1))
        if used >= key.jobs_per_day:
            raise QuotaExceededError(f"daily quota of {key.jobs_per_day} analyses used", retry_after_s=3600.0)


def load_keys_file(path: Path, store: JobStore, settings: GatewaySettings) -> int:
    """Load ``name:secret[:jobs_per_day[:requests_per_min]]`` lines (``#`` comments) into the store."""
    count = 0
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(":")
        if len(parts) < 2 or not parts[0] or len(parts[1]) < 16:
            raise InputError(f"{path.name} line {lineno}: expected name:secret (secret of 16+ characters)")
        try:
            jobs = int(parts[2]) if len(parts) > 2 and parts[2] else settings.default_jobs_per_day
            rate = int(parts[3]) if len(parts) > 3 and parts[3] else settings.default_requests_per_min
        except ValueError:
            raise InputError(f"{path.name} line {lineno}: quota and rate must be integers") from None
        store.create_key(parts[0], jobs_per_day=jobs, requests_per_min=rate, secret=parts[1])
        count += 1
    return count
