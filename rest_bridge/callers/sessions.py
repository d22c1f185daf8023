"""Cookies, CSRF tokens and the headers every page carries.

Signed-in forms carry an HMAC of the session token under the server secret, so
only a page the server rendered for that session can submit them. Forms shown
before sign-in (sign-up, log-in) carry an HMAC of a random value that is also
kept in a SameSite=Strict cookie. Every POST must also come from this origin
when the browser says where it comes from.

The pages' scripts call the public ``/api/v1`` routes with the session cookie and
the session's CSRF token in the ``X-CSRF-Token`` header; ``callers.keys`` takes that
pair as a credential (``session_pair``), never the cookie alone, so a cross-site form
or a cross-origin ``fetch`` (which cannot read the token) cannot use the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request
from starlette.responses import Response

from rest_bridge.settings import BridgeSettings

SESSION_COOKIE = "gs_session"
FORM_COOKIE = "gs_form"
FORM_COOKIE_MAX_AGE = 24 * 3600
CSRF_HEADER = "x-csrf-token"
MAX_SESSION_TOKEN = 128


def _mac(secret: bytes, purpose: str, value: str) -> str:
    return hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def session_csrf(secret: bytes, session_token: str) -> str:
    return _mac(secret, "csrf-session", session_token)


def form_csrf(secret: bytes, form_nonce: str) -> str:
    return _mac(secret, "csrf-form", form_nonce)


def tokens_match(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def session_pair(request: Request) -> tuple[str | None, str] | None:
    """The session cookie (None when absent or oversized) and the CSRF header, when the
    header is there; None when it is not (the cookie alone is no credential)."""
    csrf = request.headers.get(CSRF_HEADER)
    if csrf is None:
        return None
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > MAX_SESSION_TOKEN:
        token = None
    return token, csrf


def form_nonce(request: Request) -> tuple[str, bool]:
    """The anonymous forms' cookie value, and whether it has to be (re)sent."""
    current = request.cookies.get(FORM_COOKIE)
    if current and 20 <= len(current) <= 64:
        return current, False
    return secrets.token_urlsafe(24), True


def same_origin(request: Request, settings: BridgeSettings) -> bool:
    """False only when the browser names another origin (or an opaque one)."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return True
        try:
            parts = urlsplit(referer)
        except ValueError:  # not a URL (``http://[``): no origin of ours
            return False
        origin = f"{parts.scheme}://{parts.netloc}"
    own = {f"{request.url.scheme}://{request.headers.get('host', '')}"}
    public = urlsplit(settings.base_url)
    own.add(f"{public.scheme}://{public.netloc}")
    return origin in own


def set_session_cookie(
    response: Response, token: str, settings: BridgeSettings, max_age: int
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
    )


def clear_session_cookie(response: Response, settings: BridgeSettings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=settings.secure_cookies
    )


def set_form_cookie(response: Response, nonce: str, settings: BridgeSettings) -> None:
    response.set_cookie(
        FORM_COOKIE,
        nonce,
        max_age=FORM_COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
    )


def page_headers(nonce: str) -> dict[str, str]:
    """No framing, no caching (a new key is on the page once), scripts only by nonce."""
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
