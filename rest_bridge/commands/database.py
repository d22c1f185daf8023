"""The operator's way into the bridge's database: the bridge's settings, engine and key secret."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from rest_bridge.settings import BridgeSettings
    from storage.models import Account

PLANS = ("free", "pro", "enterprise")


def open_database() -> tuple[Engine, bytes, BridgeSettings]:
    """The same settings a bridge in this environment reads; migrated before use."""
    from rest_bridge.settings import BridgeSettings
    from storage.db import make_engine, migrate

    settings = BridgeSettings()
    engine = make_engine(settings.db_url)
    migrate(engine)
    return engine, settings.secret_bytes(), settings


def account_or_none(session: Session, email: str) -> Account | None:
    from storage.accounts import account_by_email, normalise_email

    return account_by_email(session, normalise_email(email))


def when(value: datetime | None) -> str:
    from storage.models import aware

    return aware(value).strftime("%Y-%m-%d %H:%M UTC") if value is not None else "never"
