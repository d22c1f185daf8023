"""``/readyz`` names every dependency that is not answering; ``/healthz`` only says alive.

The routes are called with stand-ins for the bridge's state, so a database or a
Redis that has gone away can be shown without stopping the shared ones (a bridge
with no inference server is in tests/rest_bridge/test_failures.py).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from rest_bridge.edge.errors import ApiError
from rest_bridge.routes.service import healthz, readyz


class _Client:
    def __init__(self, serving: list[bool]) -> None:
        self.links = {
            f"10.0.0.{i}:50051": SimpleNamespace(serving=s) for i, s in enumerate(serving)
        }
        self.refreshed = 0

    async def refresh(self, deadline_s: float = 2.0) -> None:
        self.refreshed += 1


class _Limits:
    def __init__(self, reachable: bool) -> None:
        self.reachable = reachable

    async def check(self) -> bool:
        return self.reachable


def _state(
    database: bool = True,
    redis: bool | None = None,
    serving: tuple[bool, ...] = (True,),
) -> Any:
    async def db(fn: Callable[..., Any], *args: Any) -> Any:
        if not database:
            raise OSError("connection refused by db.internal:5432")
        return None

    return SimpleNamespace(
        settings=SimpleNamespace(
            redis_url=None if redis is None else "redis://cache.internal:6379/0",
            retry_after_s=7,
        ),
        db=db,
        ratelimits=_Limits(bool(redis)),
        client=_Client(list(serving)),
    )


async def test_ready_when_everything_answers() -> None:
    state = _state(redis=True, serving=(False, True))
    answer = await readyz(state)
    assert answer["data"] == {
        "status": "ready",
        "checks": {"database": "ok", "inference": "ok", "redis": "ok"},
    }
    assert state.client.refreshed == 1  # the catalogue follows the servers


async def test_without_redis_it_says_so() -> None:
    answer = await readyz(_state())
    assert answer["data"]["checks"]["redis"] == "not configured"


@pytest.mark.parametrize(
    ("state", "failing"),
    [
        (_state(database=False), {"database": "unreachable"}),
        (_state(redis=False), {"redis": "unreachable"}),
        (_state(serving=(False, False)), {"inference": "none of 2 serving"}),
        (
            _state(database=False, redis=False, serving=(False,)),
            {"database": "unreachable", "inference": "none of 1 serving", "redis": "unreachable"},
        ),
    ],
)
async def test_not_ready_names_what_is_missing(state: Any, failing: dict[str, str]) -> None:
    with pytest.raises(ApiError) as raised:
        await readyz(state)
    err = raised.value
    assert (err.status, err.code, err.headers) == (503, "not_ready", {"Retry-After": "7"})
    assert {d["field"]: d["message"] for d in err.details or []} == failing
    for name in failing:
        assert name in err.message
    assert "internal" not in err.message  # hosts and errors stay in the log


async def test_alive_whatever_the_dependencies_do() -> None:
    assert (await healthz())["data"] == {"status": "ok"}
