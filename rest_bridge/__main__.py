"""``python -m rest_bridge``: serve the bridge with uvicorn."""

from __future__ import annotations

import argparse
from functools import partial
from typing import TYPE_CHECKING

from genserve._internal.cmdline import Parser, listen_problem, one_line, port_number

if TYPE_CHECKING:
    import uvicorn

    from rest_bridge.settings import BridgeSettings


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="genserve bridge", description="genserve REST bridge")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=partial(port_number, allow_zero=False), default=8000, help="HTTP port"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="once listening, print the URLs, data folder and inference servers as one JSON "
        "line on standard output",
    )
    return parser


def started(settings: BridgeSettings, host: str, port: int) -> dict[str, object]:
    """What ``genserve bridge --json`` prints once listening."""
    from sqlalchemy.engine import make_url

    shown = "[" + host + "]" if ":" in host else host
    return {
        "base_url": settings.base_url,
        "listening": f"http://{shown}:{port}",
        "host": host,
        "port": port,
        "docs": f"{settings.base_url}/docs",
        "data_dir": str(settings.data_dir),
        "database": make_url(settings.db_url).render_as_string(hide_password=True),
        "inference_targets": [t.strip() for t in settings.inference_targets.split(",") if t],
    }


def _announce_when_started(server: uvicorn.Server, answer: dict[str, object]) -> None:
    """``--json``: the start-up line, printed from a thread once uvicorn listens."""
    import threading
    import time

    from genserve._internal.cmdline import print_json

    def watch() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.05)
        print_json(answer, line=True)

    threading.Thread(target=watch, name="announce", daemon=True).start()


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
    config = uvicorn.Config(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )
    server = uvicorn.Server(config)
    if args.json:
        _announce_when_started(server, started(settings, args.host, args.port))
    server.run()


if __name__ == "__main__":
    main()
