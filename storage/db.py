"""Engine, sessions and migrations: SQLite by default, PostgreSQL through DATABASE_URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here, the driver this project installs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(
                "PRAGMA synchronous=NORMAL"
            )  # WAL: durable across app crashes, one fsync per checkpoint
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


MIGRATION_LOCK_KEY = 0x67656E7365727665  # "genserve": the advisory lock migrations hold


def migrate(engine: Engine) -> None:
    """Applies every Alembic migration up to head (idempotent; run at start-up).

    Several processes may start at once against one empty database: each takes
    the same lock first (a PostgreSQL advisory lock held until its transaction
    ends, or a lock file beside a SQLite database), so one migrates and the
    others then find the schema at head.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock on ``<database>.migrate.lock`` for a SQLite file; nothing otherwise."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: one process migrates at a time by convention
        yield
        return
    with open(f"{database}.migrate.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
