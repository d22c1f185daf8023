"""The ``genserve`` command: operator tasks and the servers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _bridge_state() -> tuple[object, bytes]:
    from rest_bridge.settings import BridgeSettings
    from storage.db import make_engine, migrate

    settings = BridgeSettings()
    engine = make_engine(settings.db_url)
    migrate(engine)
    return engine, settings.secret_bytes()


def cmd_keys_create(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from rest_bridge.settings import BridgeSettings
    from storage.accounts import account_by_email, create_account, create_api_key

    engine, secret = _bridge_state()
    settings = BridgeSettings()
    with Session(engine, expire_on_commit=False) as session:  # type: ignore[arg-type]
        account = account_by_email(session, args.email)
        if account is None:
            account = create_account(
                session, email=args.email, plan=args.plan, points=settings.signup_points
            )
        assert account.id is not None
        new = create_api_key(session, account_id=account.id, secret=secret, name=args.name)
    print(new.plaintext)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("--email", default="operator@localhost", help="owning account")
    create.add_argument("--name", default="default", help="a label for the key")
    create.add_argument("--plan", default="free", choices=["free", "pro", "enterprise"])
    create.set_defaults(func=cmd_keys_create)

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
