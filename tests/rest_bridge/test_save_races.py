"""A cancel that lands while the bridge saves a finished generation.

The save is held up for real: the test holds a PostgreSQL row lock on the
generation, so the bridge's ``UPDATE ... completed`` waits; the cancel (the client
going away, or ``POST .../cancel``) arrives while it waits; then the lock is let go.
The outcome must be whole: completed with its files and the points spent, or ended
unsuccessfully and refunded with no files, never a completed row without its files.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from storage.models import Account, ApiKey, Asset, Generation
from tests.conftest import Bridge

pytestmark = pytest.mark.server

BODY = {"prompt": "A lighthouse at dawn", "output_format": "png"}


def _wait(predicate, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    raise TimeoutError(what)


def _account_of(bridge: Bridge, key: str) -> int:
    with bridge.client(key) as c:
        email = c.get("/api/v1/account").json()["data"]["email"]
    with Session(bridge.engine) as s:
        account = s.exec(select(Account).where(Account.email == email)).one()
        assert account.id is not None
        return account.id


def _generation_of(bridge: Bridge, account_id: int) -> Generation | None:
    with Session(bridge.engine) as s:
        return s.exec(
            select(Generation).where(
                Generation.account_id == account_id, Generation.status == "running"
            )
        ).first()


def _completion_waiting(bridge: Bridge) -> bool:
    with bridge.engine.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database() AND query LIKE '%generation_time_ms%'"
            )
        ).scalar_one()
    return bool(waiting)


def _send_sync_request(bridge: Bridge, key: str) -> socket.socket:
    """A client that sends its request and will go away before the answer."""
    parts = urlsplit(bridge.base)
    sock = socket.create_connection((parts.hostname, parts.port))
    body = json.dumps(BODY).encode()
    sock.sendall(
        b"POST /api/v1/images HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


@pytest.mark.parametrize("cancel", ["client_gone", "post_cancel"])
def test_a_cancel_during_the_save_leaves_a_whole_outcome(bridge: Bridge, cancel: str) -> None:
    if bridge.engine.dialect.name != "postgresql":
        pytest.skip("holds the save with a PostgreSQL row lock")
    key = bridge.new_key(points=100)
    account_id = _account_of(bridge, key)
    sock = None
    if cancel == "client_gone":
        sock = _send_sync_request(bridge, key)
    else:
        with bridge.client(key) as c:
            started = c.post("/api/v1/images", json=BODY, headers={"Prefer": "respond-async"})
        assert started.status_code == 202, started.text
    gen = _wait(lambda: _generation_of(bridge, account_id), "the generation runs")
    with bridge.engine.connect() as lock:
        tx = lock.begin()
        lock.execute(text("SELECT id FROM generation WHERE id = :id FOR UPDATE"), {"id": gen.id})
        _wait(lambda: _completion_waiting(bridge), "the bridge's completion waits on the lock")
        answer: dict[str, httpx.Response] = {}
        if sock is not None:
            sock.close()  # the client goes away during the save
        else:

            def post_cancel() -> None:
                with bridge.client(key) as c:
                    answer["cancel"] = c.post(f"/api/v1/generations/{gen.id}/cancel")

            canceller = threading.Thread(target=post_cancel)
            canceller.start()
        time.sleep(1.0)  # the cancel reaches the task that awaits the save
        tx.rollback()  # the save goes on
    if cancel == "post_cancel":
        canceller.join(60)
        assert answer["cancel"].status_code == 200, answer["cancel"].text

    def ended() -> Generation | None:
        with Session(bridge.engine) as s:
            row = s.get(Generation, gen.id)
            return row if row is not None and row.status not in ("pending", "running") else None

    final = _wait(ended, "the generation ends")
    time.sleep(0.5)  # any clean-up after the end has run
    with Session(bridge.engine) as s:
        assets = s.exec(select(Asset).where(Asset.generation_id == gen.id)).all()
        balance = s.get(Account, account_id).points  # type: ignore[union-attr]
        assert s.exec(select(ApiKey).where(ApiKey.account_id == account_id)).first()
    files = [bridge.data_dir / "blobs" / a.blob_key for a in assets]
    if final.status == "completed":
        assert assets, "completed without assets"
        missing = [str(f) for f in files if not f.is_file()]
        assert not missing, f"completed, points spent ({balance}), files gone: {missing}"
        assert balance == 100 - final.points_cost
        for a in assets:
            assert httpx.get(f"{bridge.base}/files/{a.blob_key}").status_code == 200
    else:
        assert balance == 100, f"{final.status} but not refunded"
        assert not any(f.is_file() for f in files)
    if cancel == "post_cancel":
        assert answer["cancel"].json()["data"]["status"] == final.status
