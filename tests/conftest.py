"""Shared fixtures: a real inference server, real bridges on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from storage.accounts import create_account, create_api_key
from storage.db import make_engine, migrate
from storage.models import Asset, Generation
from tests.utils.lanes import SLOW_MARKERS, needs
from tests.utils.procs import ROOT, Proc, free_port, start_bridge, start_inference

SERVER_FIXTURES = frozenset({"inference", "bridge", "redis_bridges"})
DATABASE_FIXTURES = frozenset({"pg_url", "redis_prefix", "redis_bridges"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test by what it uses: ``browser`` (its folder), ``server`` and
    ``database`` (its fixtures; a bridge on PostgreSQL needs both). Tests that start
    servers themselves carry the marker in their module; ``tests/utils/lanes.py`` fails
    any that does not, in the fast lane."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        marks = {m.name for m in item.iter_markers()}
        wanted = set()
        if "browser" in item.path.parts:
            wanted |= {"browser", "server"}
        if names & SERVER_FIXTURES:
            wanted.add("server")
        callspec = getattr(item, "callspec", None)
        params = callspec.id.split("-") if callspec is not None else []
        if names & DATABASE_FIXTURES or "postgresql" in params:
            wanted.add("database")
        for marker in wanted - marks:
            assert marker in SLOW_MARKERS
            item.add_marker(getattr(pytest.mark, marker))


KEY_SECRET = "test-secret-" + "x" * 40
PG_ADMIN_URL = os.environ.get(
    "GENSERVE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Built-in small models, built once and reused across runs (ignored by git)."""
    path = Path(os.environ.get("GENSERVE_TEST_MODEL_CACHE", ROOT / "data" / "test-models"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@dataclass
class InferenceProc:
    proc: Proc
    port: int
    metrics_port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def rpc_count(self) -> float:
        """Generation RPCs the server has finished, from its Prometheus endpoint."""
        body = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        total = 0.0
        for line in body.splitlines():
            if line.startswith("genserve_inference_requests_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture(scope="session")
def inference(model_cache: Path, logs: Path) -> Iterator[InferenceProc]:
    proc, port, metrics_port = start_inference(model_cache, logs)
    yield InferenceProc(proc, port, metrics_port)
    proc.stop()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, dropped afterwards."""
    yield from fresh_pg_database()


def fresh_pg_database() -> Iterator[str]:
    """Creates a database of its own (bridges sharing one also share its work queues)."""
    needs("database", "PostgreSQL")
    name = "genserve_test_" + secrets.token_hex(4)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@dataclass
class Bridge:
    base: str
    engine: Engine
    data_dir: Path
    proc: Proc

    def new_key(self, points: int = 100, plan: str = "free") -> str:
        with Session(self.engine, expire_on_commit=False) as session:
            account = create_account(
                session, email=f"{secrets.token_hex(6)}@example.test", plan=plan, points=points
            )
            assert account.id is not None
            return create_api_key(
                session, account_id=account.id, secret=KEY_SECRET.encode(), name="test"
            ).plaintext

    def row_counts(self) -> tuple[int, int]:
        """Generations and assets in the bridge's database."""
        with Session(self.engine) as s:
            gens = s.exec(select(func.count()).select_from(Generation)).one()
            assets = s.exec(select(func.count()).select_from(Asset)).one()
        return int(gens), int(assets)

    def blob_files(self) -> int:
        root = self.data_dir / "blobs"
        return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=120)


def bridge_env(data_dir: Path, db_url: str, target: str, **extra: str) -> dict[str, str]:
    return {
        "GENSERVE_DATA_DIR": str(data_dir),
        "DATABASE_URL": db_url,
        "GENSERVE_INFERENCE_TARGETS": target,
        "GENSERVE_KEY_SECRET": KEY_SECRET,
        # Shared bridges see many deliberate bad keys from 127.0.0.1; the brake on failed
        # authentication is tested on bridges of its own (tests/rest_bridge/test_ratelimit.py).
        "GENSERVE_AUTH_FAILURE_LIMITS": "100000/minute",
        # Likewise many sign-ups and log-ins; their limits are tested in test_abuse.py.
        "GENSERVE_SIGNUP_LIMITS": "100000/minute",
        "GENSERVE_LOGIN_LIMITS": "100000/minute",
        # Tests stand for many clients by sending X-Forwarded-For from 127.0.0.1 (WebUser);
        # a bridge trusts no proxy unless told (tests/rest_bridge/test_exposed.py).
        "GENSERVE_TRUSTED_PROXIES": "127.0.0.1",
        **extra,
    }


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def bridge(
    request: pytest.FixtureRequest,
    inference: InferenceProc,
    tmp_path_factory: pytest.TempPathFactory,
    logs: Path,
) -> Iterator[Bridge]:
    data_dir = tmp_path_factory.mktemp(f"bridge-{request.param}")
    if request.param == "sqlite":
        db_url = f"sqlite:///{data_dir / 'genserve.db'}"
    else:
        db_url = request.getfixturevalue("pg_url")
    proc, base = start_bridge(bridge_env(data_dir, db_url, inference.target), logs)
    engine = make_engine(db_url)
    migrate(engine)
    yield Bridge(base=base, engine=engine, data_dir=data_dir, proc=proc)
    proc.stop()
    engine.dispose()


REDIS_URL = os.environ.get("GENSERVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    """A key prefix of this run's own in the shared Redis; its keys are deleted afterwards."""
    import redis

    needs("database", "Redis")
    prefix = "genserve-test-" + secrets.token_hex(6)
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield prefix
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)
    client.close()


@dataclass
class BridgePair:
    """Two bridge processes on one PostgreSQL database, sharing rate limits through Redis."""

    first: Bridge
    second: Bridge

    @property
    def engine(self) -> Engine:
        return self.first.engine

    def new_key(self, points: int = 100, plan: str = "free") -> str:
        return self.first.new_key(points=points, plan=plan)


@pytest.fixture(scope="session")
def redis_bridges(
    pg_url: str,
    redis_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
    logs: Path,
) -> Iterator[BridgePair]:
    """No inference server behind them: they serve keys, limits and accounts, not generations."""
    engine = make_engine(pg_url)
    migrate(engine)
    bridges = []
    target = f"127.0.0.1:{free_port()}"
    for name in ("a", "b"):
        data_dir = tmp_path_factory.mktemp(f"redis-bridge-{name}")
        env = bridge_env(
            data_dir,
            pg_url,
            target,
            REDIS_URL=REDIS_URL,
            GENSERVE_RATELIMIT_PREFIX=redis_prefix,
            GENSERVE_AUTH_FAILURE_LIMITS="5/minute",
        )
        proc, base = start_bridge(env, logs, wait_healthy=False)
        bridges.append(Bridge(base=base, engine=engine, data_dir=data_dir, proc=proc))
    yield BridgePair(*bridges)
    for b in bridges:
        b.proc.stop()
    engine.dispose()
