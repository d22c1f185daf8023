"""``GET /login/link?token=...``: a one-time log-in link signs the browser in.

The operator gets the link from ``genserve up`` or ``genserve accounts login-link``;
it works once, for ``storage.login_links.LINK_LIFETIME``, and answers 303 to the
settings page with a fresh session cookie, so the token leaves the address bar at
once (and no ``Referer`` carries it anywhere).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rest_bridge.callers.keys import StateDep
from rest_bridge.callers.sessions import page_headers, set_session_cookie
from rest_bridge.web import pages
from storage import sessions
from storage.login_links import use_login_link

LINK_PATH = "/login/link"
AFTER_LOG_IN = "/projects"

router = APIRouter(tags=["web"], include_in_schema=False)


def _refused() -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    page = pages.message_page(
        title="Link expired",
        message=(
            "This log-in link has expired or was already used. Ask the operator for a new "
            "one (genserve accounts login-link EMAIL), or log in with a password."
        ),
        nonce=nonce,
        link=("/login", "Log in"),
    )
    headers = {**page_headers(nonce), "Referrer-Policy": "no-referrer"}
    return HTMLResponse(page, status_code=400, headers=headers)


@router.get(LINK_PATH)
async def use_link(request: Request, state: StateDep, token: str = "") -> Response:
    account_id = await state.db(use_login_link, token, state.secret)
    if account_id is None:
        return _refused()
    lifetime = timedelta(days=state.settings.session_days)
    cookie = await state.db(sessions.create_session, account_id=account_id, lifetime=lifetime)
    response = RedirectResponse(AFTER_LOG_IN, status_code=303)
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    set_session_cookie(response, cookie, state.settings, int(lifetime.total_seconds()))
    return response
