"""GET /api/v1/account: the caller's plan, points and this hour's rate-limit state."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlmodel import Session

from rest_bridge.callers.keys import CurrentCaller, StateDep
from rest_bridge.callers.limits import Window
from rest_bridge.edge.answers import AccountAnswer, Ok, error_responses
from rest_bridge.edge.envelope import ok
from rest_bridge.edge.errors import ApiError
from storage.models import Account

router = APIRouter(prefix="/api/v1", tags=["account"])


@router.get("/account", response_model=Ok[AccountAnswer], responses=error_responses())
async def get_account(caller: CurrentCaller, state: StateDep, request: Request) -> dict[str, Any]:
    def load(session: Session) -> Account | None:
        return session.get(Account, caller.account_id)

    account = await state.db(load)
    if account is None:
        raise ApiError(404, "not_found", "The account no longer exists.")
    window: Window = request.scope["state"]["ratelimit"]
    return ok(
        {
            "email": account.email,
            "plan": account.plan,
            "points": account.points,
            "limit": window.limit,
            "remaining": window.remaining,
            "reset": window.reset,
        }
    )
