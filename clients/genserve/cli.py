"""The ``genserve`` command: operator tasks and the servers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from rest_bridge.settings import BridgeSettings
    from storage.models import Account


def _bridge_state() -> tuple[Engine, bytes, BridgeSettings]:
    from rest_bridge.settings import BridgeSettings
    from storage.db import make_engine, migrate

    settings = BridgeSettings()
    engine = make_engine(settings.db_url)
    migrate(engine)
    return engine, settings.secret_bytes(), settings


def _fail(message: str) -> int:
    print(f"genserve: {message}", file=sys.stderr)
    return 1


def _when(value: datetime | None) -> str:
    from storage.models import aware

    return aware(value).strftime("%Y-%m-%d %H:%M UTC") if value is not None else "never"


def _read_password() -> str:
    """One line from standard input: never an argument, which other users could see."""
    return sys.stdin.readline().rstrip("\r\n")


def cmd_accounts_create(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage.accounts import EmailTaken, create_account, normalise_email
    from storage.passwords import hash_password, password_problem

    engine, _, settings = _bridge_state()
    password_hash = None
    if args.password_stdin:
        password = _read_password()
        problem = password_problem(password)
        if problem:
            return _fail(problem)
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
            return _fail(f"an account with the email {args.email} already exists")
    print(f"account {account.id} {account.email} plan={account.plan} points={account.points}")
    return 0


def _account_or_none(session: Session, email: str) -> Account | None:
    from storage.accounts import account_by_email, normalise_email

    return account_by_email(session, normalise_email(email))


def cmd_accounts_list(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage.accounts import list_accounts

    engine, _, _ = _bridge_state()
    with Session(engine, expire_on_commit=False) as session:
        rows = list_accounts(session)
    print(f"{'id':>5}  {'email':<40} {'plan':<10} {'points':>8} {'keys':>4}  created")
    for row in rows:
        a = row.account
        print(
            f"{a.id:>5}  {a.email or '-':<40} {a.plan:<10} {a.points:>8} "
            f"{row.active_keys:>4}  {_when(a.created_at)}"
        )
    return 0


def cmd_accounts_set_plan(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage.accounts import PLANS, set_plan

    engine, _, _ = _bridge_state()
    with Session(engine, expire_on_commit=False) as session:
        account = _account_or_none(session, args.email)
        if account is None or account.id is None:
            return _fail(f"no account with the email {args.email}")
        set_plan(session, account_id=account.id, plan=args.plan)
    print(f"account {account.id} is now on {args.plan} ({PLANS[args.plan]} requests/hour per key)")
    return 0


def cmd_accounts_grant(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage import points

    engine, _, _ = _bridge_state()
    with Session(engine, expire_on_commit=False) as session:
        account = _account_or_none(session, args.email)
        if account is None or account.id is None:
            return _fail(f"no account with the email {args.email}")
        balance = points.grant(session, account.id, args.amount)
    print(f"granted {args.amount} points to account {account.id}; balance {balance}")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage.accounts import create_account, create_api_key, normalise_email

    engine, secret, settings = _bridge_state()
    with Session(engine, expire_on_commit=False) as session:
        account = _account_or_none(session, args.email)
        if account is None:
            account = create_account(
                session,
                email=normalise_email(args.email),
                plan=args.plan,
                points=settings.signup_points,
            )
        assert account.id is not None
        new = create_api_key(session, account_id=account.id, secret=secret, name=args.name)
    print(new.plaintext)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage.accounts import list_api_keys

    engine, _, _ = _bridge_state()
    with Session(engine, expire_on_commit=False) as session:
        account = _account_or_none(session, args.email)
        if account is None or account.id is None:
            return _fail(f"no account with the email {args.email}")
        keys = list_api_keys(session, account.id)
    print(f"{'id':>5}  {'name':<24} {'key':<16} {'created':<20} {'last used':<20} status")
    for k in keys:
        status = f"revoked {_when(k.revoked_at)}" if k.revoked_at else "active"
        print(
            f"{k.id:>5}  {k.name:<24} {k.prefix + '…' + k.last_four:<16} "
            f"{_when(k.created_at):<20} {_when(k.last_used_at):<20} {status}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """By id (from ``keys list``) or by the key itself, as when one has leaked."""
    from sqlmodel import Session, select

    from storage.accounts import revoke_api_key
    from storage.keys import hash_key, is_well_formed
    from storage.models import ApiKey

    engine, secret, _ = _bridge_state()
    with Session(engine, expire_on_commit=False) as session:
        if args.key.isdigit():
            key = session.get(ApiKey, int(args.key))
        elif is_well_formed(args.key):
            key = session.exec(
                select(ApiKey).where(ApiKey.key_hash == hash_key(args.key, secret))
            ).first()
        else:
            return _fail("give a key id (see `genserve keys list`) or the whole key")
        if key is None or key.id is None:
            return _fail("no such key")
        if not revoke_api_key(session, key_id=key.id):
            return _fail(f"key {key.id} was already revoked")
    print(f"revoked key {key.id} ({key.prefix}…{key.last_four})")
    return 0


def cmd_inference(args: argparse.Namespace) -> int:
    from inference_server.server import main

    main(args.rest)
    return 0


def cmd_bridge(args: argparse.Namespace) -> int:
    from rest_bridge.__main__ import main

    main(args.rest)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from genserve.launcher import up

    return up(args.host, args.port, args.grpc_port, args.email)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    plans = ["free", "pro", "enterprise"]
    accounts = sub.add_parser("accounts", help="accounts, plans and points").add_subparsers(
        dest="accounts_command", required=True
    )
    acreate = accounts.add_parser("create", help="create an account")
    acreate.add_argument("--email", required=True)
    acreate.add_argument("--plan", default="free", choices=plans)
    acreate.add_argument(
        "--points", type=_non_negative, help="opening balance (default: the sign-up grant)"
    )
    acreate.add_argument(
        "--password-stdin",
        action="store_true",
        help="read a password for the web pages from one line of standard input",
    )
    acreate.set_defaults(func=cmd_accounts_create)
    alist = accounts.add_parser("list", help="list accounts")
    alist.set_defaults(func=cmd_accounts_list)
    aplan = accounts.add_parser("set-plan", help="move an account to another plan")
    aplan.add_argument("email")
    aplan.add_argument("plan", choices=plans)
    aplan.set_defaults(func=cmd_accounts_set_plan)
    agrant = accounts.add_parser("grant", help="add points to an account (recorded in the ledger)")
    agrant.add_argument("email")
    agrant.add_argument("amount", type=_positive)
    agrant.set_defaults(func=cmd_accounts_grant)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("--email", default="operator@localhost", help="owning account")
    create.add_argument("--name", default="default", help="a label for the key")
    create.add_argument("--plan", default="free", choices=plans, help="for a new account")
    create.set_defaults(func=cmd_keys_create)
    klist = keys.add_parser("list", help="an account's keys (never the keys themselves)")
    klist.add_argument("--email", required=True)
    klist.set_defaults(func=cmd_keys_list)
    revoke = keys.add_parser("revoke", help="end a key at once")
    revoke.add_argument("key", help="the key's id, or the whole key")
    revoke.set_defaults(func=cmd_keys_revoke)

    upp = sub.add_parser("up", help="start the inference server and the bridge, print a key")
    upp.add_argument("--host", default="127.0.0.1")
    upp.add_argument("--port", type=int, default=8000)
    upp.add_argument("--grpc-port", type=int, default=50051)
    upp.add_argument("--email", default="operator@localhost")
    upp.set_defaults(func=cmd_up)

    inf = sub.add_parser("inference", help="run the gRPC inference server")
    inf.add_argument("rest", nargs=argparse.REMAINDER)
    inf.set_defaults(func=cmd_inference)
    br = sub.add_parser("bridge", help="run the REST bridge")
    br.add_argument("rest", nargs=argparse.REMAINDER)
    br.set_defaults(func=cmd_bridge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("inference", "bridge"):
        ns = argparse.Namespace(rest=argv[1:])
        return cmd_inference(ns) if argv[0] == "inference" else cmd_bridge(ns)
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
