"""Hourly request limits per API key (or per account, for a signed-in page of an account
without a live key), a brake on failed authentication per client address,
and per-address limits on the web page's sign-ups and log-ins.

Counters live in Redis when ``REDIS_URL`` is set, shared by every bridge process;
otherwise in this process, which is then the only one that may serve.
Fixed windows of one hour: the count is one atomic ``INCRBY`` (a Lua script in
Redis), so concurrent requests over several processes are counted exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from limits import RateLimitItem, RateLimitItemPerHour, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError

from rest_bridge.settings import BridgeSettings

KEY_NAMESPACE = "requests"
ACCOUNT_NAMESPACE = "account-requests"
FAILURE_NAMESPACE = "auth-failures"
ATTEMPT_NAMESPACES = {"signup": "signups", "login": "logins"}


class RateLimiterUnavailable(Exception):
    """The shared counter store could not be reached."""


@dataclass(frozen=True)
class Window:
    """One key's position in its hourly window, after (or without) counting a request."""

    limit: int
    remaining: int
    reset: int  # Unix seconds
    allowed: bool = True

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }

    def retry_after(self) -> int:
        return max(1, self.reset - int(time.time()))


class HourlyRequests(RateLimitItemPerHour):
    """Keyed by the API key alone, not by the amount: a plan change keeps this hour's count."""

    def key_for(self, *identifiers: bytes | str | int | float) -> str:
        return "/".join([self.namespace, *(str(i) for i in identifiers), "hour"])


def redacted_url(url: str) -> str:
    """The URL without its password, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redis_problem(url: str, timeout_s: float = 5.0) -> str | None:
    """Why Redis at ``url`` cannot be used (one line), or ``None`` when it answers a PING."""
    import redis

    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
    except ValueError as exc:
        return f"REDIS_URL {redacted_url(url)} is not a Redis URL: {exc}"
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"REDIS_URL {redacted_url(url)} cannot be reached: {redact_password(reason, url)}"
    finally:
        client.close()
    return None


def redact_password(text: str, url: str) -> str:
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


class RateLimits:
    """The bridge's counters, in one store."""

    def __init__(
        self,
        storage: Storage,
        failure_limits: list[RateLimitItem],
        shared: bool,
        attempt_limits: dict[str, list[RateLimitItem]] | None = None,
    ) -> None:
        """``attempt_limits``: per-address limits of the web forms, by ``signup`` and ``login``."""
        self.storage = storage
        self.failure_limits = failure_limits
        self.shared = shared
        self.attempt_limits = attempt_limits or _default_attempt_limits()
        self._fixed = FixedWindowRateLimiter(storage)

    @classmethod
    def from_settings(cls, settings: BridgeSettings) -> RateLimits:
        failures = parse_many(settings.auth_failure_limits)
        attempts = {
            "signup": parse_many(settings.signup_limits),
            "login": parse_many(settings.login_limits),
        }
        if settings.redis_url:
            storage: Storage = RedisStorage(
                "async+" + settings.redis_url,
                implementation="redispy",
                key_prefix=settings.ratelimit_prefix,
                wrap_exceptions=True,
                socket_timeout=5,
                socket_connect_timeout=5,
            )
            return cls(storage, failures, shared=True, attempt_limits=attempts)
        return cls(
            MemoryStorage(wrap_exceptions=True), failures, shared=False, attempt_limits=attempts
        )

    @classmethod
    def in_process(cls) -> RateLimits:
        """Counters for one process with the default failure limits."""
        return cls(
            MemoryStorage(wrap_exceptions=True),
            parse_many(BridgeSettings.model_fields["auth_failure_limits"].default),
            shared=False,
        )

    async def check(self) -> bool:
        return await self.storage.check()

    async def hit_key(self, key_id: int, limit: int) -> Window:
        """Counts one request for the key; ``allowed`` is False once the hour's limit is spent."""
        return await self._hit(KEY_NAMESPACE, key_id, limit)

    async def hit_account(self, account_id: int, limit: int) -> Window:
        """Counts one request of a signed-in page whose account has no live key."""
        return await self._hit(ACCOUNT_NAMESPACE, account_id, limit)

    async def _hit(self, namespace: str, identifier: int, limit: int) -> Window:
        item = HourlyRequests(limit, namespace=namespace)
        key = item.key_for(identifier)
        try:
            count = await self.storage.incr(key, item.get_expiry())
            reset = await self.storage.get_expiry(key)
        except StorageError as exc:
            raise RateLimiterUnavailable(str(exc)) from exc
        return Window(
            limit=limit,
            remaining=max(0, limit - count),
            reset=math.ceil(reset),
            allowed=count <= limit,
        )

    async def peek_key(self, key_id: int, limit: int) -> Window:
        """The key's window without counting a request (for the settings page)."""
        item = HourlyRequests(limit, namespace=KEY_NAMESPACE)
        try:
            stats = await self._fixed.get_window_stats(item, str(key_id))
        except StorageError as exc:
            raise RateLimiterUnavailable(str(exc)) from exc
        return Window(limit=limit, remaining=stats.remaining, reset=math.ceil(stats.reset_time))

    async def address_blocked(self, address: str) -> int | None:
        """Seconds to wait when this address has failed too often, else None."""
        try:
            for item in self.failure_limits:
                if not await self._fixed.test(item, FAILURE_NAMESPACE, address):
                    stats = await self._fixed.get_window_stats(item, FAILURE_NAMESPACE, address)
                    return max(1, math.ceil(stats.reset_time - time.time()))
        except StorageError as exc:
            raise RateLimiterUnavailable(str(exc)) from exc
        return None

    async def address_failed(self, address: str) -> None:
        try:
            for item in self.failure_limits:
                await self._fixed.hit(item, FAILURE_NAMESPACE, address)
        except StorageError as exc:
            raise RateLimiterUnavailable(str(exc)) from exc

    async def attempt(self, form: str, address: str) -> int | None:
        """Counts one ``signup`` or ``login`` attempt from the address.

        Returns the seconds to wait when the address is past one of the form's
        limits (the attempt is then refused), else None.
        """
        namespace = ATTEMPT_NAMESPACES[form]
        try:
            for item in self.attempt_limits[form]:
                if not await self._fixed.hit(item, namespace, address):
                    stats = await self._fixed.get_window_stats(item, namespace, address)
                    return max(1, math.ceil(stats.reset_time - time.time()))
        except StorageError as exc:
            raise RateLimiterUnavailable(str(exc)) from exc
        return None


def _default_attempt_limits() -> dict[str, list[RateLimitItem]]:
    fields = BridgeSettings.model_fields
    return {
        "signup": parse_many(str(fields["signup_limits"].default)),
        "login": parse_many(str(fields["login_limits"].default)),
    }
