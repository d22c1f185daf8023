"""Sign-up, log-in, log-out and Settings → API Keys.

Sign-ups and log-ins are limited per client address (each costs an argon2 hash,
and a sign-up grants points); sign-ups can be closed (``GENSERVE_SIGNUP``), and an
account holds at most ``GENSERVE_MAX_KEYS_PER_ACCOUNT`` live keys.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from rest_bridge.callers.keys import StateDep, client_address
from rest_bridge.callers.limits import RateLimiterUnavailable
from rest_bridge.callers.sessions import (
    FORM_COOKIE,
    MAX_SESSION_TOKEN,
    SESSION_COOKIE,
    clear_session_cookie,
    form_csrf,
    form_nonce,
    page_headers,
    same_origin,
    session_csrf,
    set_form_cookie,
    set_session_cookie,
    tokens_match,
)
from rest_bridge.generation.base import NOT_TEXT
from rest_bridge.state import BridgeState
from rest_bridge.web import pages, reveal
from storage import sessions
from storage.accounts import (
    PLANS,
    EmailTaken,
    TooManyKeys,
    account_by_email,
    account_by_id,
    api_key_of,
    create_account,
    create_api_key,
    list_api_keys,
    normalise_email,
    revoke_api_key,
    set_password,
)
from storage.models import Account
from storage.passwords import hash_password, needs_rehash, password_problem, verify_password

router = APIRouter(tags=["web"], include_in_schema=False)

KEYS_PATH = "/settings/api-keys"
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
CREDENTIAL_FIELDS = frozenset({"csrf", "email", "password"})
MAX_FORM_FIELDS = 10


def _html(content: str, nonce: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers=page_headers(nonce))


def _nonce() -> str:
    return secrets.token_urlsafe(16)


def _message(
    title: str,
    message: str,
    status: int,
    link: tuple[str, str],
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    nonce = _nonce()
    page = pages.message_page(title=title, message=message, nonce=nonce, link=link)
    response = _html(page, nonce, status)
    response.headers.update(headers or {})
    return response


def _unavailable(state: BridgeState, back: str) -> HTMLResponse:
    retry = {"Retry-After": str(state.settings.retry_after_s)}
    return _message("Unavailable", "Try again shortly.", 503, (back, "Back"), headers=retry)


def _signups_closed(status: int) -> HTMLResponse:
    return _message(
        "Sign-ups are closed",
        "This server does not take new sign-ups; ask its operator for an account.",
        status,
        ("/login", "Log in"),
    )


async def _attempt_refused(state: BridgeState, form: str, address: str) -> Response | None:
    """Counts a sign-up or log-in attempt from the address; the page refusing it past the limit."""
    try:
        wait = await state.ratelimits.attempt(form, address)
    except RateLimiterUnavailable:
        return _unavailable(state, f"/{form}")
    if wait is None:
        return None
    what = "sign-ups" if form == "signup" else "log-in attempts"
    return _message(
        "Too many attempts",
        f"Too many {what} from this address; try again in {wait} s.",
        429,
        (f"/{form}", "Back"),
        headers={"Retry-After": str(wait)},
    )


def _forbidden() -> HTMLResponse:
    return _message(
        "Form expired",
        "This form could not be verified; reload the page and submit it again.",
        403,
        ("/", "Back"),
    )


def _unknown_fields(form: Mapping[str, object], allowed: frozenset[str]) -> list[str]:
    return sorted(set(form.keys()) - allowed)


def _refused_fields(names: list[str], back: str) -> HTMLResponse:
    return _message(
        "Refused",
        f"These fields cannot be set here: {', '.join(names)}. Nothing was changed.",
        422,
        (back, "Back"),
    )


def _field(form: Mapping[str, object], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


@dataclass
class SignedIn:
    account: Account
    token: str
    csrf: str


async def _signed_in(request: Request, state: BridgeState) -> SignedIn | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > MAX_SESSION_TOKEN:
        return None
    account = await state.db(sessions.session_account, token)
    if account is None:
        return None
    return SignedIn(account=account, token=token, csrf=session_csrf(state.secret, token))


def _to_login() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


async def _start_session(state: BridgeState, account_id: int, target: str) -> RedirectResponse:
    lifetime = timedelta(days=state.settings.session_days)
    token = await state.db(sessions.create_session, account_id=account_id, lifetime=lifetime)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, token, state.settings, int(lifetime.total_seconds()))
    return response


def _credentials_form(
    request: Request,
    state: BridgeState,
    mode: str,
    *,
    email: str = "",
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    form_value, fresh = form_nonce(request)
    nonce = _nonce()
    page = pages.credentials_page(
        mode=mode,
        csrf=form_csrf(state.secret, form_value),
        nonce=nonce,
        email=email,
        error=error,
        signup_open=state.settings.signup_open,
    )
    response = _html(page, nonce, status)
    if fresh:
        set_form_cookie(response, form_value, state.settings)
    return response


async def _credentials_post(
    request: Request, state: BridgeState, mode: str
) -> tuple[str, str] | Response:
    """The checked email and password of a sign-up or log-in form, or the page refusing it."""
    if not same_origin(request, state.settings):
        return _forbidden()
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    form_value = request.cookies.get(FORM_COOKIE)
    if form_value is None or not tokens_match(
        form_csrf(state.secret, form_value), _field(form, "csrf")
    ):
        return _forbidden()
    unknown = _unknown_fields(form, CREDENTIAL_FIELDS)
    if unknown:
        return _refused_fields(unknown, f"/{mode}")
    email = _field(form, "email")  # no valid email holds a control character (or NUL)
    return normalise_email("" if NOT_TEXT.search(email) else email), _field(form, "password")


@router.get("/")
async def home(request: Request, state: StateDep) -> Response:
    signed = await _signed_in(request, state)
    return RedirectResponse(KEYS_PATH if signed else "/login", status_code=303)


@router.get("/signup")
async def signup_form(request: Request, state: StateDep) -> Response:
    if not state.settings.signup_open:
        return _signups_closed(200)
    return _credentials_form(request, state, "signup")


@router.post("/signup")
async def signup(request: Request, state: StateDep) -> Response:
    if not state.settings.signup_open:
        return _signups_closed(403)
    checked = await _credentials_post(request, state, "signup")
    if isinstance(checked, Response):
        return checked
    email, password = checked
    problem = None if EMAIL.match(email) and len(email) <= 320 else "Enter a valid email address."
    problem = problem or password_problem(password)
    if problem:
        return _credentials_form(request, state, "signup", email=email, error=problem, status=422)
    refused = await _attempt_refused(state, "signup", client_address(request))
    if refused is not None:  # counted here, where the work (a hash, an account) would start
        return refused
    password_hash = await run_in_threadpool(hash_password, password)
    try:
        account = await state.db(
            create_account,
            email=email,
            password_hash=password_hash,
            plan="free",
            points=state.settings.signup_points,
        )
    except EmailTaken:
        return _credentials_form(
            request,
            state,
            "signup",
            email=email,
            error="An account with this email already exists; log in instead.",
            status=409,
        )
    assert account.id is not None
    return await _start_session(state, account.id, KEYS_PATH)


@router.get("/login")
async def login_form(request: Request, state: StateDep) -> Response:
    return _credentials_form(request, state, "login")


@router.post("/login")
async def login(request: Request, state: StateDep) -> Response:
    address = client_address(request)
    try:
        blocked = await state.ratelimits.address_blocked(address)
    except RateLimiterUnavailable:
        return _unavailable(state, "/login")
    if blocked is not None:
        return _message(
            "Too many attempts",
            f"Too many failed attempts from this address; try again in {blocked} s.",
            429,
            ("/login", "Back"),
            headers={"Retry-After": str(blocked)},
        )
    checked = await _credentials_post(request, state, "login")
    if isinstance(checked, Response):
        return checked
    email, password = checked
    refused = await _attempt_refused(state, "login", address)
    if refused is not None:  # every checked attempt counts, right or wrong: each is a hash
        return refused

    account = await state.db(account_by_email, email)
    stored = account.password_hash if account is not None else None
    # Verified whether or not the email has an account: the same work either way.
    valid = await run_in_threadpool(verify_password, stored, password)
    if account is None or not valid:
        try:
            await state.ratelimits.address_failed(address)
        except RateLimiterUnavailable:
            pass
        return _credentials_form(
            request,
            state,
            "login",
            email=email,
            error="The email or the password is not right.",
            status=401,
        )
    assert account.id is not None and stored is not None
    if needs_rehash(stored):
        new_hash = await run_in_threadpool(hash_password, password)
        await state.db(set_password, account_id=account.id, password_hash=new_hash)
    return await _start_session(state, account.id, KEYS_PATH)


async def _signed_form(
    request: Request, state: BridgeState
) -> tuple[SignedIn, FormData] | Response:
    """A signed-in session's form from this origin with its CSRF token, or the refusal."""
    signed = await _signed_in(request, state)
    if signed is None:
        return _to_login()
    if not same_origin(request, state.settings):
        return _forbidden()
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    if not tokens_match(signed.csrf, _field(form, "csrf")):
        return _forbidden()
    return signed, form


@router.post("/logout")
async def logout(request: Request, state: StateDep) -> Response:
    checked = await _signed_form(request, state)
    if isinstance(checked, Response):
        return checked
    signed, _form = checked
    await state.db(sessions.end_session, signed.token)
    response = _to_login()
    clear_session_cookie(response, state.settings)
    return response


@router.get("/settings")
async def settings_home() -> Response:
    return RedirectResponse(KEYS_PATH, status_code=303)


async def _keys_page(
    state: BridgeState,
    signed: SignedIn,
    *,
    new_key: tuple[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    account_id = signed.account.id
    assert account_id is not None

    def load(session: Session) -> tuple[Account | None, list[pages.KeyRow]]:
        account = account_by_id(session, account_id)
        keys = [k for k in list_api_keys(session, account_id) if k.revoked_at is None]
        rows = [
            pages.KeyRow(
                id=k.id or 0,
                name=k.name,
                prefix=k.prefix,
                last_four=k.last_four,
                created_at=k.created_at,
                last_used_at=k.last_used_at,
                used=None,
                limit=0,
            )
            for k in keys
        ]
        return account, rows

    account, rows = await state.db(load)
    if account is None:
        return _message("Signed out", "This account no longer exists.", 404, ("/signup", "Sign up"))
    limit = PLANS.get(account.plan, PLANS["free"])
    for row in rows:
        row.limit = limit
        try:
            window = await state.ratelimits.peek_key(row.id, limit)
        except RateLimiterUnavailable:
            continue
        row.used = limit - window.remaining
    nonce = _nonce()
    page = pages.keys_page(
        email=account.email or "",
        plan=account.plan,
        points=account.points,
        hourly_limit=limit,
        keys=rows,
        csrf=signed.csrf,
        nonce=nonce,
        webhook_secret=account.webhook_secret,
        new_key=new_key,
        error=error,
        max_keys=state.settings.max_keys_per_account,
    )
    return _html(page, nonce, status)


@router.get(KEYS_PATH)
async def keys_settings(request: Request, state: StateDep) -> Response:
    signed = await _signed_in(request, state)
    if signed is None:
        return _to_login()
    new_key = await reveal.take(request, state.settings, signed.token)  # once, after creating
    response = await _keys_page(state, signed, new_key=new_key)
    reveal.forget(request, state.settings, response)
    return response


@router.post(KEYS_PATH)
async def create_key(request: Request, state: StateDep) -> Response:
    """Creates a key and redirects to the page that shows it once (``reveal.py``)."""
    checked = await _signed_form(request, state)
    if isinstance(checked, Response):
        return checked
    signed, form = checked
    unknown = _unknown_fields(form, frozenset({"csrf", "name"}))
    if unknown:
        return _refused_fields(unknown, KEYS_PATH)
    name = _field(form, "name").strip() or "default"
    if len(name) > 100 or not name.isprintable():
        return await _keys_page(
            state, signed, error="A key name is at most 100 printable characters.", status=422
        )
    assert signed.account.id is not None
    try:
        new = await state.db(
            create_api_key,
            account_id=signed.account.id,
            secret=state.secret,
            name=name,
            max_live=state.settings.max_keys_per_account,
        )
    except TooManyKeys as exc:
        return await _keys_page(
            state,
            signed,
            error=f"This account already has {exc.limit} live keys, the most it may hold; "
            "revoke one to create another.",
            status=409,
        )
    # Post/redirect/get: a reload repeats the GET, which shows the key once and creates none.
    response = RedirectResponse(KEYS_PATH, status_code=303)
    await reveal.remember(request, state.settings, response, signed.token, name, new.plaintext)
    return response


@router.post(KEYS_PATH + "/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request, state: StateDep) -> Response:
    checked = await _signed_form(request, state)
    if isinstance(checked, Response):
        return checked
    signed, _form = checked
    account_id = signed.account.id
    assert account_id is not None

    def revoke(session: Session) -> bool:
        if not (key_id.isascii() and key_id.isdigit()) or len(key_id) > 18:
            return False
        if api_key_of(session, key_id=int(key_id), account_id=account_id) is None:
            return False
        revoke_api_key(session, key_id=int(key_id), account_id=account_id)
        return True

    if not await state.db(revoke):
        return _message("Not found", "No such key.", 404, (KEYS_PATH, "Back to API Keys"))
    return RedirectResponse(KEYS_PATH, status_code=303)
