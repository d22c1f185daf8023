"""The ``genserve`` command.

The client subcommands need only this package. The operator subcommands (``up``,
``inference``, ``bridge``, ``accounts``, ``keys``) come with the server install,
which declares them in the ``genserve.commands`` entry-point group.

The protocol of that group: each entry point names a function
``register(subparsers: Subparsers) -> None``. It adds its subcommand with
``subparsers.add_parser(name, help=...)`` and sets ``func`` as a default: a
``Callable[[argparse.Namespace], int]`` returning the exit status. It imports
nothing heavy itself (the handler does), so ``genserve --help`` stays quick.
A subcommand that also sets ``pass_through=True`` is handed every argument
after its name untouched, as ``args.rest``, without parsing them.
Handlers refuse with ``fail(message)``: one line on standard error, status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from genserve._internal.cmdline import Parser, fail

if TYPE_CHECKING:
    from genserve._internal.cmdline import Subparsers

ENTRY_POINT_GROUP = "genserve.commands"
OPERATOR_COMMANDS = ("up", "inference", "bridge", "accounts", "keys")
DEFAULT_BASE_URL = "http://127.0.0.1:8000"

Handler = Callable[[argparse.Namespace], int]
__all__ = ["ENTRY_POINT_GROUP", "OPERATOR_COMMANDS", "Handler", "fail", "main"]


def _register_client_commands(sub: Subparsers) -> None:
    """image, video, 3d, projects, models, account, login and logout (genserve.client_cli)."""
    from genserve.client_cli import register

    register(sub)


def _register_operator_commands(sub: Subparsers) -> None:
    """The server install's subcommands; one that fails to load is reported, not fatal."""
    seen: set[str] = set()
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        if point.name in seen:  # the same distribution found twice on the path
            continue
        seen.add(point.name)
        try:
            register: Callable[[Subparsers], None] = point.load()
            register(sub)
        except Exception as exc:
            print(
                f"genserve: the operator command {point.name!r} ({point.value}) "
                f"did not load: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )


def _build() -> tuple[argparse.ArgumentParser, Subparsers]:
    parser: argparse.ArgumentParser = Parser(
        prog="genserve",
        description="The client subcommands; a server install adds the operator ones.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _register_client_commands(sub)
    _register_operator_commands(sub)
    return parser, sub


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, sub = _build()
    name = argv[0] if argv else ""
    chosen = sub.choices.get(name)
    if chosen is None and name in OPERATOR_COMMANDS:
        print(
            f"genserve: {name!r} is an operator command, and operator commands come with "
            "the server install (the genserve package: `make install` in a checkout); "
            "this environment has only genserve-client",
            file=sys.stderr,
        )
        return 2
    if chosen is not None and chosen.get_default("pass_through"):
        handler: Handler = chosen.get_default("func")
        return handler(argparse.Namespace(command=name, rest=argv[1:]))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
