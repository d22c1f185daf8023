"""The operator's way into the bridge's database: the bridge's settings, engine and key secret."""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from rest_bridge.settings import BridgeSettings
    from storage.models import Account

PLANS = ("free", "pro", "enterprise")


def open_database() -> tuple[Engine, bytes, BridgeSettings]:
    """The same settings a bridge in this environment reads; migrated before use.

    Settings that do not validate, or a database that cannot be reached, stop the
    command with one line (``SystemExit``), not a traceback.
    """
    from pydantic import ValidationError
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from genserve._internal.cmdline import one_line
    from rest_bridge.settings import BridgeSettings
    from storage.db import make_engine, migrate

    try:
        settings = BridgeSettings()
    except ValidationError as exc:
        raise SystemExit(f"genserve: invalid settings: {one_line(exc)}") from None
    try:
        engine = make_engine(settings.db_url)
        migrate(engine)
    except (SQLAlchemyError, OSError, ValueError) as exc:
        shown = make_url(settings.db_url).render_as_string(hide_password=True)
        reason = one_line(getattr(exc, "orig", None) or exc)
        raise SystemExit(f"genserve: cannot open the database {shown}: {reason}") from None
    return engine, settings.secret_bytes(), settings


OPERATOR_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
"""``name@host``: the sign-up page's rule without its dotted domain (``operator@localhost``)."""


def email_address(text: str) -> str:
    """An ``--email`` that may name a new account, normalised as the accounts store it."""
    from storage.accounts import normalise_email

    email = normalise_email(text)
    if not OPERATOR_EMAIL.fullmatch(email):
        raise argparse.ArgumentTypeError(f"{text!r} is not an email address")
    return email


def account_or_none(session: Session, email: str) -> Account | None:
    from storage.accounts import account_by_email, normalise_email

    return account_by_email(session, normalise_email(email))


def when(value: datetime | None) -> str:
    from storage.models import aware

    return aware(value).strftime("%Y-%m-%d %H:%M UTC") if value is not None else "never"
