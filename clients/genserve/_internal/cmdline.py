"""What every genserve command shares: one-line refusals, port arguments, listen checks.

Standard library only (the client distribution carries it; the servers' commands
use it too). ``Parser`` refuses a bad argument in one line; ``one_line`` turns a
settings error into one line; ``listen_problem`` says before a server starts why
it could not listen, so a taken port is one line, not a traceback.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from typing import TypeAlias

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    """What a ``register`` function of the ``genserve.commands`` group is handed."""


class Parser(argparse.ArgumentParser):
    """Refuses a bad or missing argument in one line on standard error, status 2.

    Subparsers are of the same class (argparse's default), so every subcommand
    refuses the same way; the usage is one ``--help`` away.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def fail(message: str) -> int:
    """Says why on standard error, without a traceback; the exit status to return."""
    print(f"genserve: {message}", file=sys.stderr)
    return 1


def print_json(value: object, *, line: bool = False) -> None:
    """A command's ``--json`` answer on standard output: one indented JSON document, or
    (``line``) one compact line, an item of a JSON-lines stream. Errors are not printed
    here: they stay the usual one line on standard error (``fail``)."""
    import json

    text = json.dumps(value, indent=None if line else 2, ensure_ascii=False, default=str)
    print(text, flush=True)


def one_line(exc: Exception) -> str:
    """An error as one line; a pydantic ``ValidationError`` as ``field: problem; ...``."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for error in errors():
            where = ".".join(str(part) for part in error.get("loc", ()))
            message = str(error.get("msg", "")).removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
        return "; ".join(parts)
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def listen_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on ``host:port`` (unknown host, port taken), or None."""
    if port == 0:
        return None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def port_number(text: str, allow_zero: bool = True) -> int:
    """A TCP port for an argument: 1 to 65535 (0, any free port, where allowed)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not (0 if allow_zero else 1) <= port <= 65535:
        lowest = 0 if allow_zero else 1
        raise argparse.ArgumentTypeError(f"{port} is not a port ({lowest} to 65535)")
    return port
