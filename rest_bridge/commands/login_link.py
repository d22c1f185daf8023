"""``genserve accounts login-link EMAIL``: a one-time link that signs in to the web pages.

For an account made by an operator command (``genserve up``, ``genserve keys create``),
which has no password: the link opens the projects page signed in as it. It works
once, within ``--minutes`` (15 by default). The URL starts with the bridge's
``GENSERVE_PUBLIC_BASE_URL``.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from genserve._internal.cmdline import fail, print_json
from rest_bridge.commands.database import account_or_none, open_database


def link_url(base_url: str, token: str) -> str:
    return f"{base_url}/login/link?token={token}"


def cmd_login_link(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage.login_links import create_login_link

    engine, secret, settings = open_database()
    with Session(engine, expire_on_commit=False) as session:
        account = account_or_none(session, args.email)
        if account is None or account.id is None:
            return fail(f"no account with the email {args.email}")
        token = create_login_link(
            session,
            account_id=account.id,
            secret=secret,
            lifetime=timedelta(minutes=args.minutes),
        )
    if args.json:
        print_json({"email": account.email, "url": link_url(settings.base_url, token)})
        return 0
    print(link_url(settings.base_url, token))
    return 0


def _minutes(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 24 * 60:
        raise argparse.ArgumentTypeError("between 1 and 1440 minutes")
    return value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``login-link`` under ``genserve accounts``."""
    parser = commands.add_parser(
        "login-link", help="print a one-time link that signs in to the web pages"
    )
    parser.add_argument("email")
    parser.add_argument("--minutes", type=_minutes, default=15, help="how long it works")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=cmd_login_link)
