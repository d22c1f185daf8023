"""Authentication of every API request (a bearer key, or a signed-in page's session)
and the hourly limit each request counts against.

Order: the client address's failure brake, the header's shape, the key's
checksum, the keyed hash, then the key's hourly counter. Failed attempts count
against the address, so keys cannot be guessed at speed. The brake never refuses
a valid key, since many clients may share an address (NAT, a proxy): a braked
address still has its key checked, and anything but a live key is answered 429,
the same answer whatever was wrong with it, without counting further failures.
That costs what any request costs (a checksum, then one HMAC and one indexed
read, the stored hash compared in constant time), and tells a braked client no
more than an unbraked one learns: a valid key works; keys carry ~190 random bits.

A signed-in page is the same caller through its session (the pages are clients
of ``/api/v1`` like any other, and have no routes of their own):

- The session cookie is a credential only together with the session's CSRF token
  in ``X-CSRF-Token`` (``callers.sessions.session_pair``); the cookie alone is
  answered like no credential at all (401, ``Missing API key``), so a cross-site
  form cannot spend with it. A token that does not match, or a session that has
  ended, is a counted failure (401) like an unknown key; a right token from
  another origin (``Origin``/``Referer``) is 403 ``forbidden``.
- A key wins: with an ``Authorization`` header (or a key in the query, refused as
  ever) the request is a key's request and the cookie is not looked at.
- The hourly counter of a session is its account's newest live key's, the one the
  pages spent through before they called ``/api/v1``: one account with one key has
  one budget whichever way it calls, and Settings → API Keys shows the pages' use.
  An account without a live key counts on its own account counter
  (``RateLimits.hit_account``), at the same plan limit; its requests record no key.
- Everything else (the brake, the 429 and its headers, points, errors, and a body
  parsed after authentication) is the key's code path, shared.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from rest_bridge.callers.limits import RateLimiterUnavailable, Window
from rest_bridge.callers.sessions import same_origin, session_csrf, session_pair, tokens_match
from rest_bridge.edge.errors import ApiError
from rest_bridge.state import BridgeState, get_state
from storage.accounts import PLANS, key_owner
from storage.keys import hash_key, is_well_formed
from storage.models import Account, ApiKey
from storage.sessions import session_caller

QUERY_KEY_NAMES = ("api_key", "apikey", "key", "token", "access_token")


@dataclass(frozen=True)
class Caller:
    account_id: int
    key_id: int | None
    """The key whose hourly count the request moved; None for a keyless account's session."""
    plan: str


class _AuthFailure(ApiError):
    """A 401 that counts against the client address (it presented something to check)."""


def _unauthorized(message: str, counted: bool = True) -> ApiError:
    cls = _AuthFailure if counted else ApiError
    return cls(401, "invalid_api_key", message, headers={"WWW-Authenticate": "Bearer"})


def limiter_unavailable(state: BridgeState) -> ApiError:
    return ApiError(
        503,
        "overloaded",
        "The rate-limit store cannot be reached; retry shortly.",
        headers={"Retry-After": str(state.settings.retry_after_s)},
    )


def client_address(request: Request) -> str:
    """The peer, as uvicorn reports it (``X-Forwarded-For`` only from trusted proxies).

    An IPv6 client usually holds a whole /64, so the brake counts the /64.
    """
    host = request.client.host if request.client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def too_many_failures(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"Too many failed authentication attempts from this address; retry in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )


def bearer_token(request: Request) -> str:
    if any(name in request.query_params for name in QUERY_KEY_NAMES):
        raise _unauthorized(
            "API keys are not accepted in the query string; send Authorization: Bearer <key>."
        )
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized(
            "Missing API key: send the header Authorization: Bearer <key>.", counted=False
        )
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():  # schemes are case-insensitive
        raise _unauthorized("The Authorization header must read: Bearer <key>.")
    return token.strip()


def set_rate_headers(request: Request, window: Window) -> None:
    """Left for the envelope middleware, which puts them on every response, errors included."""
    scope_state: dict[str, Any] = request.scope.setdefault("state", {})
    scope_state.setdefault("extra_headers", {}).update(window.headers())
    scope_state["ratelimit"] = window


def _carries_key(request: Request) -> bool:
    return "authorization" in request.headers or any(
        name in request.query_params for name in QUERY_KEY_NAMES
    )


async def _key_holder(request: Request, state: BridgeState) -> tuple[Account, ApiKey]:
    token = bearer_token(request)
    if not is_well_formed(token):
        raise _unauthorized("The API key is malformed; copy it again from Settings → API Keys.")
    found = await state.db(key_owner, hash_key(token, state.secret))
    if found is None:
        raise _unauthorized("The API key is unknown or has been revoked.")
    key, account = found
    return account, key


async def _session_holder(
    request: Request, state: BridgeState, token: str | None, csrf: str
) -> tuple[Account, ApiKey | None]:
    if token is None:
        raise _unauthorized(
            "No session: log in again, or send the header Authorization: Bearer <key>.",
            counted=False,
        )
    if not tokens_match(session_csrf(state.secret, token), csrf):
        raise _unauthorized("The session's CSRF token does not match; reload the page.")
    if not same_origin(request, state.settings):
        raise ApiError(403, "forbidden", "This request did not come from a genserve page.")
    found = await state.db(session_caller, token)
    if found is None:
        raise _unauthorized("The session has ended; log in again.")
    return found


async def authenticate(
    request: Request, state: Annotated[BridgeState, Depends(get_state)]
) -> Caller:
    scope_state: dict[str, Any] = request.scope.setdefault("state", {})
    known = scope_state.get("caller")
    if isinstance(known, Caller):
        return known  # a request is counted once, however many times it is authenticated
    limits = state.ratelimits
    address = client_address(request)
    session = None if _carries_key(request) else session_pair(request)
    try:
        braked = await limits.address_blocked(address)
        key: ApiKey | None
        try:
            if session is None:
                account, key = await _key_holder(request, state)
            else:
                account, key = await _session_holder(request, state, *session)
        except ApiError as refused:
            if braked is not None:  # only a live credential passes a braked address
                raise too_many_failures(braked) from None
            if isinstance(refused, _AuthFailure):
                await limits.address_failed(address)
            raise
        assert account.id is not None
        limit = PLANS.get(account.plan, PLANS["free"])
        if key is not None:
            assert key.id is not None
            window = await limits.hit_key(key.id, limit)
        else:
            window = await limits.hit_account(account.id, limit)
    except RateLimiterUnavailable as exc:
        raise limiter_unavailable(state) from exc
    set_rate_headers(request, window)
    if not window.allowed:
        retry = window.retry_after()
        counted = "This key" if session is None else "This account's newest key"
        if key is None:
            counted = "This account"
        raise ApiError(
            429,
            "rate_limited",
            f"{counted} has used its {window.limit} requests for this hour; "
            f"retry in {retry} s or move to a larger plan.",
            headers={"Retry-After": str(retry)},
        )
    caller = Caller(
        account_id=account.id,
        key_id=key.id if key is not None else None,
        plan=account.plan,
    )
    scope_state["caller"] = caller
    return caller


CurrentCaller = Annotated[Caller, Depends(authenticate)]
StateDep = Annotated[BridgeState, Depends(get_state)]

_KEY_IN_TEXT = re.compile(r"gsk_[0-9A-Za-z]+")
_KEY_IN_QUERY = re.compile(r"((?:^|[?&])(?:" + "|".join(QUERY_KEY_NAMES) + r")=)[^&\s]*", re.I)


_CAPABILITY_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{32}(?=/)")
"""An output file's token where it opens a path (``/files/<token>/<name>``, a blob key)."""


def redact(text: str) -> str:
    """Keys, keys in queries and output files' capability tokens, out of a log line."""
    text = _KEY_IN_QUERY.sub(r"\1[redacted]", _KEY_IN_TEXT.sub("gsk_[redacted]", text))
    return _CAPABILITY_IN_TEXT.sub("[token]", text)


class KeyRedactor(logging.Filter):
    """Keeps keys out of the logs, the access log's request lines included."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_key_redaction() -> None:
    """Adds the filter to the loggers that see request lines (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error", "rest_bridge"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, KeyRedactor) for f in logger.filters):
            logger.addFilter(KeyRedactor())
