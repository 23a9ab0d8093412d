"""API keys, rate limits and quotas, shared by the HTTP and gRPC APIs and by every replica.

Keys are random tokens given to a client once; the store keeps only their SHA-256. Each key has a request
rate limit and a daily quota of analyses; failed authentications are throttled per client address. The
limits live in the store (token buckets and job counts), so they hold across replicas and restarts.

Signed links open one analysis' viewer without a key (a mobile app's web view, a coach's browser): the
token is ``<expiry>.<HMAC-SHA256 of scope, analysis id and expiry>`` under a secret the store makes once
and every replica shares. A bad or expired token counts as a failed authentication.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from gateway.records import ApiKey, Store
from services.errors import (
    AuthenticationError,
    InputError,
    LinkExpiredError,
    RateLimitedError,
)
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
        self._link_secret: bytes | None = None

    def check(self, secret: str | None, *, client: str = "") -> ApiKey:
        """The key of ``secret``, after its rate limit. Raises AuthenticationError, or RateLimitedError for
        a key over its rate or a ``client`` (address) that failed to authenticate too often."""
        if not self.settings.require_api_key:
            return ANONYMOUS
        self._throttle(client)
        try:
            if not secret:
                raise AuthenticationError(
                    "missing API key: send 'x-api-key: <key>' or 'authorization: Bearer <key>'"
                )
            key = self.store.authenticate(secret)
        except AuthenticationError:
            self._failed(client)
            raise
        wait = self.store.take(f"key:{key.id}", per_min=key.requests_per_min, burst=key.requests_per_min)
        if wait > 0:
            raise RateLimitedError(
                f"rate limit of {key.requests_per_min} requests/min reached", retry_after_s=round(wait, 2)
            )
        return key

    def _throttle(self, client: str) -> None:
        rate = self.settings.auth_failures_per_min
        if client and (wait := self.store.peek(f"authfail:{client}", per_min=rate, burst=rate)) > 0:
            raise RateLimitedError(
                "too many failed authentications from this address", retry_after_s=round(wait, 2)
            )

    def _failed(self, client: str) -> None:
        rate = self.settings.auth_failures_per_min
        if client:
            self.store.take(f"authfail:{client}", per_min=rate, burst=rate)

    # -- signed links ----------------------------------------------------------------------------------

    def _link_mac(self, scope: str, job_id: str, expires: int) -> str:
        if self._link_secret is None:
            self._link_secret = self.store.secret("links")
        mac = hmac.new(self._link_secret, f"{scope}:{job_id}:{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:24]).decode().rstrip("=")

    def sign_link(self, scope: str, job_id: str, *, ttl_s: float) -> tuple[str, int]:
        """A token opening ``scope`` ("viewer", "video"...) of analysis ``job_id`` for ``ttl_s`` seconds,
        and its expiry (Unix seconds)."""
        expires = int(time.time() + ttl_s)
        return f"{expires}.{self._link_mac(scope, job_id, expires)}", expires

    def check_link(self, scope: str, job_id: str, token: str, *, client: str = "") -> None:
        """Accept ``token`` for ``scope`` of ``job_id`` or raise AuthenticationError (LinkExpiredError for
        an expired one); failures are throttled like wrong keys."""
        self._throttle(client)
        expires_text, _, mac = token.partition(".")
        valid = (
            expires_text.isdigit()
            and len(expires_text) <= 12
            and hmac.compare_digest(mac, self._link_mac(scope, job_id, int(expires_text)))
        )
        if not valid:
            self._failed(client)
            raise AuthenticationError("the link is not valid")
        if int(expires_text) < time.time():
            self._failed(client)
            raise LinkExpiredError("the link has expired: ask the app for a new one")

    def check_quota(self, key: ApiKey) -> None:
        """Refuse a new analysis early when the key has used its daily quota (rolling 24 h); the binding
        decision is the store's, when the job is inserted (the same rule and the same Retry-After)."""
        if key is not ANONYMOUS:
            self.store.check_quota(key.id, key.jobs_per_day)


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
