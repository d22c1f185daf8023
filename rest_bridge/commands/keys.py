"""``genserve keys``: create, list and revoke an account's API keys."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from genserve._internal.cmdline import fail, print_json
from rest_bridge.commands.database import (
    PLANS,
    account_or_none,
    email_address,
    open_database,
    when,
)

if TYPE_CHECKING:
    from genserve._internal.cmdline import Subparsers


def cmd_create(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage.accounts import TooManyKeys, create_account, create_api_key, normalise_email

    engine, secret, settings = open_database()
    cap = settings.max_keys_per_account
    with Session(engine, expire_on_commit=False) as session:
        account = account_or_none(session, args.email)
        if account is None:
            account = create_account(
                session,
                email=normalise_email(args.email),
                plan=args.plan,
                points=settings.signup_points,
            )
        assert account.id is not None
        try:
            new = create_api_key(
                session, account_id=account.id, secret=secret, name=args.name, max_live=cap
            )
        except TooManyKeys:
            return fail(
                f"{account.email} already has {cap} live keys, the most an account may hold "
                "(GENSERVE_MAX_KEYS_PER_ACCOUNT); revoke one first: "
                f"genserve keys list --email {account.email}, then genserve keys revoke <id>"
            )
    if args.json:
        print_json({"id": new.record.id, "name": new.record.name, "key": new.plaintext})
        return 0
    print(new.plaintext)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from storage.accounts import list_api_keys

    engine, _, _ = open_database()
    with Session(engine, expire_on_commit=False) as session:
        account = account_or_none(session, args.email)
        if account is None or account.id is None:
            return fail(f"no account with the email {args.email}")
        keys = list_api_keys(session, account.id)
    if args.json:
        print_json(
            [
                {
                    "id": k.id,
                    "name": k.name,
                    "key": f"{k.prefix}…{k.last_four}",
                    "created_at": when(k.created_at),
                    "last_used_at": when(k.last_used_at),
                    "revoked_at": when(k.revoked_at) if k.revoked_at else None,
                }
                for k in keys
            ]
        )
        return 0
    print(f"{'id':>5}  {'name':<24} {'key':<16} {'created':<20} {'last used':<20} status")
    for k in keys:
        status = f"revoked {when(k.revoked_at)}" if k.revoked_at else "active"
        print(
            f"{k.id:>5}  {k.name:<24} {k.prefix + '…' + k.last_four:<16} "
            f"{when(k.created_at):<20} {when(k.last_used_at):<20} {status}"
        )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """By id (from ``keys list``) or by the key itself, as when one has leaked."""
    from sqlmodel import Session

    from storage.accounts import api_key_by_id_or_hash, revoke_api_key
    from storage.keys import hash_key, is_well_formed

    engine, secret, _ = open_database()
    with Session(engine, expire_on_commit=False) as session:
        if args.key.isdigit():
            key = api_key_by_id_or_hash(session, key_id=int(args.key))
        elif is_well_formed(args.key):
            key = api_key_by_id_or_hash(session, key_hash=hash_key(args.key, secret))
        else:
            return fail("give a key id (see `genserve keys list`) or the whole key")
        if key is None or key.id is None:
            return fail("no such key")
        if not revoke_api_key(session, key_id=key.id):
            return fail(f"key {key.id} was already revoked")
    if args.json:
        print_json({"id": key.id, "name": key.name, "key": f"{key.prefix}…{key.last_four}"})
        return 0
    print(f"revoked key {key.id} ({key.prefix}…{key.last_four})")
    return 0


def register(subparsers: Subparsers) -> None:
    keys = subparsers.add_parser("keys", help="API keys")
    commands = keys.add_subparsers(dest="keys_command", required=True)
    create = commands.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument(
        "--email", default="operator@localhost", type=email_address, help="owning account"
    )
    create.add_argument("--name", default="default", help="a label for the key")
    create.add_argument("--plan", default="free", choices=PLANS, help="for a new account")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(func=cmd_create)
    listing = commands.add_parser("list", help="an account's keys (never the keys themselves)")
    listing.add_argument("--email", required=True)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_list)
    revoke = commands.add_parser("revoke", help="end a key at once")
    revoke.add_argument("key", help="the key's id, or the whole key")
    revoke.add_argument("--json", action="store_true", help="print JSON")
    revoke.set_defaults(func=cmd_revoke)
