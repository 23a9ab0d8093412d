"""API keys, rate limits and quotas, shared by the HTTP and gRPC APIs and by every replica.

Keys are random tokens given to a client once; the store keeps only their SHA-256. Each key has a request
rate limit and a daily quota of analyses; failed authentications are throttled per client address. The
limits live in the store (token buckets and job counts), so they hold across replicas and restarts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.records import ApiKey, Store
from services.errors import AuthenticationError, InputError, QuotaExceededError, RateLimitedError
from services.settings import Settings

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


class Access:
    """Authenticates keys and applies their rate limits and quotas, and throttles failed attempts."""

    anonymous = ANONYMOUS

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    def check(self, secret: str | None, *, client: str = "") -> ApiKey:
        """The key of ``secret``, after its rate limit. Raises AuthenticationError, or RateLimitedError for
        a key over its rate or a ``client`` (address) that failed to authenticate too often."""
        if not self.settings.require_api_key:
            return ANONYMOUS
        failures = f"authfail:{client}"
        rate = self.settings.auth_failures_per_min
        if client:
            wait = self.store.peek(failures, per_min=rate, burst=rate)
            if wait > 0:
                raise RateLimitedError(
                    "too many failed authentications from this address", retry_after_s=round(wait, 2)
                )
        try:
            if not secret:
                raise AuthenticationError(
                    "missing API key: send 'x-api-key: <key>' or 'authorization: Bearer <key>'"
                )
            key = self.store.authenticate(secret)
        except AuthenticationError:
            if client:
                self.store.take(failures, per_min=rate, burst=rate)
            raise
        wait = self.store.take(f"key:{key.id}", per_min=key.requests_per_min, burst=key.requests_per_min)
        if wait > 0:
            raise RateLimitedError(
                f"rate limit of {key.requests_per_min} requests/min reached", retry_after_s=round(wait, 2)
            )
        return key

    def check_quota(self, key: ApiKey) -> None:
        """Refuse a new analysis early when the key has used its daily quota (rolling 24 h); the binding
        decision is the store's, when the job is inserted."""
        if key is ANONYMOUS:
            return
        used = self.store.count_since(key.id, datetime.now(UTC) - timedelta(days=1))
        if used >= key.jobs_per_day:
            raise QuotaExceededError(f"daily quota of {key.jobs_per_day} analyses used", retry_after_s=3600.0)


def load_keys_file(path: Path, store: Store, settings: Settings) -> int:
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
