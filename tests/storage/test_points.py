"""Debits never go below zero and refunds happen once, under real concurrency on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from storage import points
from storage.accounts import create_account
from storage.db import make_engine, migrate
from storage.models import Generation


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('pts') / 'p.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    eng = make_engine(url)
    migrate(eng)
    yield eng
    eng.dispose()


def test_concurrent_debits_never_overdraw(engine: Engine) -> None:
    with Session(engine) as s:
        account = create_account(s, email=None, points=40)
    assert account.id is not None

    def attempt(_: int) -> bool:
        with Session(engine, expire_on_commit=False) as s:
            try:
                points.start_generation(
                    s, Generation(account_id=account.id, kind="image", model="m", points_cost=4)
                )
                return True
            except points.InsufficientPoints:
                return False

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(25)))
    assert sum(results) == 10
    with Session(engine) as s:
        assert points.balance(s, account.id) == 0
        assert points.ledger_sum(s, account.id) == 0


def test_refund_happens_exactly_once(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as s:
        account = create_account(s, email=None, points=20)
        assert account.id is not None
        gen = Generation(account_id=account.id, kind="image", model="m", points_cost=8)
        assert points.start_generation(s, gen) == 12

    def refund(_: int) -> bool:
        with Session(engine) as s:
            return points.finish_unsuccessfully(s, gen.id, status="failed", code="x", message="y")

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(refund, range(12)))
    assert sum(results) == 1
    with Session(engine) as s:
        assert points.balance(s, account.id) == 20
        assert points.ledger_sum(s, account.id) == 20
