"""A new API key shown once, after a redirect: post/redirect/get with a one-time reveal.

"Create New Key" answers 303 to ``GET /settings/api-keys``, so a reload repeats
the GET, never the POST: it creates no second key. The key itself crosses the
redirect split in two, so that neither half alone reveals it:

- the server keeps ``key XOR pad`` for ``REVEAL_TTL_S`` seconds, under the hash of
  the session that created it (in Redis when ``REDIS_URL`` is set, so any bridge
  can show it; else in this process, as with the rate limits);
- the browser keeps the random ``pad`` (as long as the key) in a short-lived
  HttpOnly, SameSite=Strict cookie scoped to the settings page.

The first GET of that session takes (and deletes) the server half and clears the
cookie: the key is on that one page and on no later one. Nothing is written to
the database, and the plaintext is never stored anywhere.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from typing import Any, Protocol

from fastapi import Request
from starlette.responses import Response

from rest_bridge.settings import BridgeSettings
from storage.sessions import token_hash

REVEAL_COOKIE = "gs_reveal"
REVEAL_TTL_S = 120


class RevealStore(Protocol):
    async def put(self, name: str, value: bytes, ttl_s: int) -> None: ...

    async def take(self, name: str) -> bytes | None: ...


class LocalReveals:
    """This process's reveals (one bridge, no Redis)."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, bytes]] = {}

    async def put(self, name: str, value: bytes, ttl_s: int) -> None:
        now = time.monotonic()
        self._items = {k: v for k, v in self._items.items() if v[0] > now}
        self._items[name] = (now + ttl_s, value)

    async def take(self, name: str) -> bytes | None:
        item = self._items.pop(name, None)
        if item is None or item[0] <= time.monotonic():
            return None
        return item[1]


class RedisReveals:
    """Shared by every bridge on the Redis; ``GETDEL`` makes the reveal one-time everywhere."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.redis: Any = aioredis.Redis.from_url(url)

    async def put(self, name: str, value: bytes, ttl_s: int) -> None:
        await self.redis.set(name, value, ex=ttl_s)

    async def take(self, name: str) -> bytes | None:
        value: bytes | None = await self.redis.getdel(name)
        return value


def store_of(request: Request, settings: BridgeSettings) -> RevealStore:
    store: RevealStore | None = getattr(request.app.state, "reveals", None)
    if store is None:
        store = RedisReveals(settings.redis_url) if settings.redis_url else LocalReveals()
        request.app.state.reveals = store
    return store


def _name(settings: BridgeSettings, session_token: str, reveal_id: str) -> str:
    return f"{settings.ratelimit_prefix}:reveal:{token_hash(session_token)}:{reveal_id}"


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


async def remember(
    request: Request,
    settings: BridgeSettings,
    response: Response,
    session_token: str,
    key_name: str,
    plaintext: str,
) -> None:
    """Keeps the new key for the next page of this session; the pad goes in ``response``."""
    secret = plaintext.encode()
    pad = secrets.token_bytes(len(secret))
    reveal_id = secrets.token_urlsafe(12)
    held = json.dumps(
        {"name": key_name, "key": base64.b64encode(_xor(secret, pad)).decode()}
    ).encode()
    await store_of(request, settings).put(
        _name(settings, session_token, reveal_id), held, REVEAL_TTL_S
    )
    response.set_cookie(
        REVEAL_COOKIE,
        f"{reveal_id}.{base64.urlsafe_b64encode(pad).decode()}",
        max_age=REVEAL_TTL_S,
        path="/settings",
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
    )


async def take(
    request: Request, settings: BridgeSettings, session_token: str
) -> tuple[str, str] | None:
    """The (name, key) created just before this page, once; None on any later look."""
    cookie = request.cookies.get(REVEAL_COOKIE)
    if not cookie or len(cookie) > 200 or "." not in cookie:
        return None
    reveal_id, _, pad_text = cookie.partition(".")
    held = await store_of(request, settings).take(_name(settings, session_token, reveal_id))
    if held is None:
        return None
    try:
        item = json.loads(held)
        pad = base64.urlsafe_b64decode(pad_text)
        key = _xor(base64.b64decode(item["key"]), pad).decode("ascii")
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return str(item["name"]), key


def forget(request: Request, settings: BridgeSettings, response: Response) -> None:
    """Clears the cookie once it has been used (or was stale)."""
    if REVEAL_COOKIE in request.cookies:
        response.delete_cookie(
            REVEAL_COOKIE,
            path="/settings",
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookies,
        )
