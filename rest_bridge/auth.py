"""Bearer-key authentication: shape and checksum first, then the keyed hash."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from rest_bridge.errors import ApiError
from rest_bridge.state import BridgeState, get_state
from storage.accounts import key_owner
from storage.keys import hash_key, is_well_formed

QUERY_KEY_NAMES = ("api_key", "apikey", "key", "token", "access_token")


@dataclass(frozen=True)
class Caller:
    account_id: int
    key_id: int
    plan: str


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "invalid_api_key", message, headers={"WWW-Authenticate": "Bearer"})


def bearer_token(request: Request) -> str:
    if any(name in request.query_params for name in QUERY_KEY_NAMES):
        raise _unauthorized(
            "API keys are not accepted in the query string; send Authorization: Bearer <key>."
        )
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("Missing API key: send the header Authorization: Bearer <key>.")
    scheme, _, token = header.strip().partition(" ")
    if scheme != "Bearer" or not token.strip():
        raise _unauthorized("The Authorization header must read: Bearer <key>.")
    return token.strip()


async def authenticate(
    request: Request, state: Annotated[BridgeState, Depends(get_state)]
) -> Caller:
    token = bearer_token(request)
    if not is_well_formed(token):
        raise _unauthorized("The API key is malformed; copy it again from Settings → API Keys.")
    found = await state.db(key_owner, hash_key(token, state.secret))
    if found is None:
        raise _unauthorized("The API key is unknown or has been revoked.")
    key, account = found
    assert key.id is not None and account.id is not None
    caller = Caller(account_id=account.id, key_id=key.id, plan=account.plan)
    request.scope.setdefault("state", {})["caller"] = caller
    return caller


CurrentCaller = Annotated[Caller, Depends(authenticate)]
StateDep = Annotated[BridgeState, Depends(get_state)]
