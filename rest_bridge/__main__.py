"""``python -m rest_bridge``: serve the bridge with uvicorn."""

from __future__ import annotations

import argparse
from functools import partial

from genserve._internal.cmdline import Parser, listen_problem, one_line, port_number


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="genserve bridge", description="genserve REST bridge")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=partial(port_number, allow_zero=False), default=8000, help="HTTP port"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from rest_bridge.edge.access_log import configure_logging
    from rest_bridge.settings import BridgeSettings

    try:
        settings = BridgeSettings().listening_on(args.host)
    except ValidationError as exc:
        raise SystemExit(f"genserve bridge: invalid settings: {one_line(exc)}") from None
    configure_logging(settings.log_format, settings.log_level)
    problem = listen_problem(args.host, args.port)
    if problem is None and settings.redis_url:
        from rest_bridge.callers.limits import redis_problem

        problem = redis_problem(settings.redis_url)
    if problem is not None:
        raise SystemExit(f"genserve bridge: {problem}")

    import uvicorn

    from rest_bridge.app import create_app

    # Our logging (configured above) and our access log (rest_bridge.edge.access_log): uvicorn's
    # records reach the same handler, and it writes no request lines of its own. Forwarded
    # headers only from the configured proxies (uvicorn's default believes 127.0.0.1, so any
    # local client could claim any address).
    proxies = settings.forwarded_allow_ips
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )


if __name__ == "__main__":
    main()
