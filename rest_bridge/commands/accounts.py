"""``genserve accounts``: create accounts, list them, move plans, grant points."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from genserve._internal.cmdline import fail, print_json
from rest_bridge.commands import login_link
from rest_bridge.commands.database import (
    PLANS,
    account_or_none,
    email_address,
    open_database,
    when,
)

if TYPE_CHECKING:
    from genserve._internal.cmdline import Subparsers


def _read_password() -> str:
    """One line from standard input: never an argument, which other users could see."""
    return sys.stdin.readline().rstrip("\r\n")


def cmd_create(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage.accounts import EmailTaken, create_account, normalise_email
    from storage.passwords import hash_password, password_problem

    engine, _, settings = open_database()
    password_hash = None
    if args.password_stdin:
        password = _read_password()
        problem = password_problem(password)
        if problem:
            return fail(problem)
        password_hash = hash_password(password)
    opening = settings.signup_points if args.points is None else args.points
    with Session(engine, expire_on_commit=False) as session:
        try:
            account = create_account(
                session,
                email=normalise_email(args.email),
                password_hash=password_hash,
                plan=args.plan,
                points=opening,
            )
        except EmailTaken:
            return fail(f"an account with the email {args.email} already exists")
    if args.json:
        print_json(
            {
                "id": account.id,
                "email": account.email,
                "plan": account.plan,
                "points": account.points,
                "password": password_hash is not None,
            }
        )
        return 0
    print(f"account {account.id} {account.email} plan={account.plan} points={account.points}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage.accounts import list_accounts

    engine, _, _ = open_database()
    with Session(engine, expire_on_commit=False) as session:
        rows = list_accounts(session)
    if args.json:
        print_json(
            [
                {
                    "id": r.account.id,
                    "email": r.account.email,
                    "plan": r.account.plan,
                    "points": r.account.points,
                    "live_keys": r.active_keys,
                    "created_at": when(r.account.created_at),
                }
                for r in rows
            ]
        )
        return 0
    print(f"{'id':>5}  {'email':<40} {'plan':<10} {'points':>8} {'keys':>4}  created")
    for row in rows:
        a = row.account
        print(
            f"{a.id:>5}  {a.email or '-':<40} {a.plan:<10} {a.points:>8} "
            f"{row.active_keys:>4}  {when(a.created_at)}"
        )
    return 0


def cmd_set_plan(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage.accounts import PLANS as REQUESTS_PER_HOUR
    from storage.accounts import set_plan

    engine, _, _ = open_database()
    with Session(engine, expire_on_commit=False) as session:
        account = account_or_none(session, args.email)
        if account is None or account.id is None:
            return fail(f"no account with the email {args.email}")
        set_plan(session, account_id=account.id, plan=args.plan)
    if args.json:
        print_json(
            {
                "id": account.id,
                "email": account.email,
                "plan": args.plan,
                "requests_per_hour": REQUESTS_PER_HOUR[args.plan],
            }
        )
        return 0
    print(
        f"account {account.id} is now on {args.plan} "
        f"({REQUESTS_PER_HOUR[args.plan]} requests/hour per key)"
    )
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage import points

    engine, _, _ = open_database()
    with Session(engine, expire_on_commit=False) as session:
        account = account_or_none(session, args.email)
        if account is None or account.id is None:
            return fail(f"no account with the email {args.email}")
        balance = points.grant(session, account.id, args.amount)
    if args.json:
        print_json(
            {"id": account.id, "email": account.email, "granted": args.amount, "points": balance}
        )
        return 0
    print(f"granted {args.amount} points to account {account.id}; balance {balance}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive whole number")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def register(subparsers: Subparsers) -> None:
    accounts = subparsers.add_parser("accounts", help="accounts, plans and points")
    commands = accounts.add_subparsers(dest="accounts_command", required=True)
    create = commands.add_parser("create", help="create an account")
    create.add_argument("--email", required=True, type=email_address)
    create.add_argument("--plan", default="free", choices=PLANS)
    create.add_argument(
        "--points", type=_non_negative, help="opening balance (default: the sign-up grant)"
    )
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read a password for the web pages from one line of standard input",
    )
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(func=cmd_create)
    listing = commands.add_parser("list", help="list accounts")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_list)
    plan = commands.add_parser("set-plan", help="move an account to another plan")
    plan.add_argument("email")
    plan.add_argument("plan", choices=PLANS)
    plan.add_argument("--json", action="store_true", help="print JSON")
    plan.set_defaults(func=cmd_set_plan)
    grant = commands.add_parser("grant", help="add points to an account (recorded in the ledger)")
    grant.add_argument("email")
    grant.add_argument("amount", type=_positive)
    grant.add_argument("--json", action="store_true", help="print JSON")
    grant.set_defaults(func=cmd_grant)
    login_link.add_parser(commands)
