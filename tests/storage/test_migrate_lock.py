"""Processes that start at the same moment against one empty database all migrate cleanly.

Each runs ``storage.db.migrate`` in a process of its own, released together once
every one has imported and connected, so the migrations really race; without the
lock one of them dies with ``UniqueViolation`` on ``pg_type`` (PostgreSQL) or
``table ... already exists`` (SQLite).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from storage.db import MIGRATIONS, make_engine
from tests.conftest import fresh_pg_database
from tests.utils.procs import ROOT

PROCESSES = 4

RACER = """
import sys, time
from sqlalchemy import text
from storage.db import make_engine, migrate
engine = make_engine(sys.argv[1])
with engine.connect() as conn:  # connected before the start, so only the migration races
    conn.execute(text("SELECT 1"))
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
migrate(engine)
engine.dispose()
print("migrated")
"""


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'race.db'}"
    else:
        yield from fresh_pg_database()


def test_simultaneous_migrations_all_succeed_and_reach_head(empty_database: str) -> None:
    start_at = time.time() + 6.0  # time enough for every process to import and connect
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, empty_database, str(start_at)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(PROCESSES)
    ]
    outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in procs]
    assert time.time() > start_at, "a process finished before the start: not a race"
    failed = [out for p, out in zip(procs, outputs, strict=True) if p.returncode != 0]
    assert failed == [], failed[0][-3000:]
    assert all("migrated" in out for out in outputs)

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    engine = make_engine(empty_database)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            assert list(versions) == [head]
            tables = set(inspect(conn).get_table_names())
        assert {"account", "api_key", "generation", "asset"} <= tables
    finally:
        engine.dispose()
