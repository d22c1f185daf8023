"""The operator's way in at each ``genserve up``: one kept key and a fresh log-in link.

The key is kept in ``<data dir>/operator.key``, readable by its user only (0600), and
printed again at every start while it stays live: restarts do not add keys. A key
revoked since (``genserve keys revoke``), or a lost file, gives a new key in its place.
The account is on the enterprise plan with ``GENSERVE_OPERATOR_POINTS``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from rest_bridge.settings import BridgeSettings

KEY_NAME = "make-up"
KEY_FILE = "operator.key"


@dataclass
class OperatorWayIn:
    key: str
    login_token: str
    new_key: bool
    over_cap: bool


def _kept_key(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


def _keep(path: Path, key: str) -> None:
    """Writes the key readable by its user only: a fresh file made 0600, then moved in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def operator_way_in(
    engine: Engine, secret: bytes, settings: BridgeSettings, email: str
) -> OperatorWayIn:
    from sqlmodel import Session

    from storage.accounts import (
        create_api_key,
        live_key_count,
        live_key_of,
        make_room_for_a_key,
        operator_account,
    )
    from storage.keys import hash_key, is_well_formed
    from storage.login_links import create_login_link

    path = settings.data_dir / KEY_FILE
    kept = _kept_key(path)
    with Session(engine, expire_on_commit=False) as session:
        account = operator_account(session, email=email, points=settings.operator_points)
        assert account.id is not None
        live = (
            kept is not None
            and is_well_formed(kept)
            and live_key_of(session, account_id=account.id, key_hash=hash_key(kept, secret))
            is not None
        )
        over_cap = False
        if live:
            assert kept is not None
            key, new_key = kept, False
        else:
            cap = settings.max_keys_per_account
            make_room_for_a_key(session, account_id=account.id, name=KEY_NAME, max_live=cap)
            # The operator's start key is made even past the cap (keys the operator named
            # themselves are never revoked here); the cap still holds for every other key.
            over_cap = live_key_count(session, account.id) >= cap
            key = create_api_key(
                session, account_id=account.id, secret=secret, name=KEY_NAME
            ).plaintext
            _keep(path, key)
            new_key = True
        token = create_login_link(
            session, account_id=account.id, secret=secret, lifetime=timedelta(minutes=15)
        )
    return OperatorWayIn(key=key, login_token=token, new_key=new_key, over_cap=over_cap)
