"""The order waiting work runs in: plan priority first, then accounts in turn.

A device's waiting work is held per priority level (higher first), and within
a level per account, each account's own work in arrival order. The next to run
is the first work of the account whose turn it is at the highest level with
work; that account then goes to the back of its level's turn. So one account's
hundred queued jobs hold another account's one back by at most one job per
account ahead of it in the turn, never by the hundred.

Iterating the queue gives the exact order it would pop in if nothing else
arrived: the positions the queue announces are the truth of the moment.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from genserve.vocabulary import ACCOUNT_METADATA, PLAN_METADATA

DEFAULT_PRIORITIES: dict[str, int] = {"enterprise": 2, "pro": 1, "free": 0}
"""Plan priorities: higher runs first."""

INTERNAL_ACCOUNT = "internal"
"""The account of a caller that names none (an internal service calling gRPC directly)."""


@dataclass(frozen=True)
class Origin:
    """Who a piece of work is for: its account and its place in the priority order."""

    account: str = INTERNAL_ACCOUNT
    plan: str = ""
    priority: int = 0


class Policy:
    """Turns a request's metadata into its ``Origin``: plan priorities and the default plan."""

    def __init__(
        self, priorities: Mapping[str, int] | None = None, default_plan: str = "free"
    ) -> None:
        self.priorities = dict(DEFAULT_PRIORITIES if priorities is None else priorities)
        self.default_plan = default_plan

    def origin(self, metadata: Mapping[str, str]) -> Origin:
        """The caller ``metadata`` names; the default plan when it names none or an unknown one."""
        account = metadata.get(ACCOUNT_METADATA, "").strip() or INTERNAL_ACCOUNT
        plan = metadata.get(PLAN_METADATA, "").strip().lower()
        if plan not in self.priorities:
            plan = self.default_plan
        return Origin(account=account, plan=plan, priority=self.priorities.get(plan, 0))


class HasOrigin(Protocol):
    @property
    def origin(self) -> Origin: ...


T = TypeVar("T", bound=HasOrigin)


class FairQueue(Generic[T]):
    """Waiting work by priority level, accounts taking turns within a level."""

    def __init__(self) -> None:
        # priority -> account -> that account's work; an account's place in the
        # dict is its place in the level's turn (the first one goes next).
        self._levels: dict[int, dict[str, collections.deque[T]]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __contains__(self, item: object) -> bool:
        origin = getattr(item, "origin", None)
        if not isinstance(origin, Origin):
            return False
        work = self._levels.get(origin.priority, {}).get(origin.account)
        return work is not None and any(w is item for w in work)

    def append(self, item: T) -> None:
        origin = item.origin
        level = self._levels.setdefault(origin.priority, {})
        level.setdefault(origin.account, collections.deque()).append(item)
        self._count += 1

    def remove(self, item: T) -> None:
        origin = item.origin
        level = self._levels[origin.priority]
        work = level[origin.account]
        for i, waiting in enumerate(work):
            if waiting is item:
                del work[i]
                break
        else:
            raise ValueError("not in the queue")
        self._count -= 1
        if not work:
            del level[origin.account]  # back at the end of the turn when it returns
            if not level:
                del self._levels[origin.priority]

    def popleft(self) -> T:
        """The next to run; its account goes to the back of its level's turn."""
        if not self._count:
            raise IndexError("pop from an empty queue")
        priority = max(self._levels)
        level = self._levels[priority]
        account = next(iter(level))
        work = level.pop(account)
        item = work.popleft()
        self._count -= 1
        if work:
            level[account] = work  # re-inserted: the back of the turn
        elif not level:
            del self._levels[priority]
        return item

    def __iter__(self) -> Iterator[T]:
        """Every waiting item in the order ``popleft`` would give them."""
        for priority in sorted(self._levels, reverse=True):
            turns = [list(work) for work in self._levels[priority].values()]
            depth = max(len(t) for t in turns)
            for round_ in range(depth):
                for work in turns:
                    if round_ < len(work):
                        yield work[round_]
