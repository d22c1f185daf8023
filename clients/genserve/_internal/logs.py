"""One log format for every genserve process: a JSON object per line, or text for a terminal.

Both servers call ``configure`` once at start-up. ``GENSERVE_LOG_FORMAT`` is ``json``
(the default) or ``text``; ``GENSERVE_LOG_LEVEL`` is a level name (``INFO`` by default).
Every line carries ``time``, ``level``, ``logger``, ``message`` and ``request_id``
(the request being served, from ``request_id_var``; null outside a request), plus
whatever a call passes in ``extra=`` (an access line's ``method``, ``route``,
``status`` and ``duration_ms``). Python warnings are logged too, as ``py.warnings``.

Standard library only: the client distribution carries this module for both servers.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, Literal, TextIO

LogFormat = Literal["json", "text"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
FORMATS: tuple[LogFormat, ...] = ("json", "text")
LEVELS: tuple[LogLevel, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

request_id_var: ContextVar[str | None] = ContextVar("genserve_request_id", default=None)
"""The id of the request being served; copied into tasks and threads started for it."""

# Attributes every LogRecord has; anything else on a record came from ``extra=``
# (uvicorn's ``color_message`` is its message again, with terminal colours).
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "taskName", "rid", "color_message"}
)

Redact = Callable[[str], str]


def _unchanged(text: str) -> str:
    return text


class _RequestId(logging.Filter):
    """Puts the current request id on every record (a record's own ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; ``redact`` is applied to the text fields."""

    def __init__(self, service: str, redact: Redact | None = None) -> None:
        super().__init__()
        self.service = service
        self.redact = redact or _unchanged

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, tz=timezone.utc)
        entry: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None),
            "service": self.service,
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self.redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.redact(self.formatStack(record.stack_info))
        # ASCII only: a client-supplied value (an X-Forwarded-For, a header) can never carry
        # a character some reader takes for the end of a line.
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message``, for a person at a terminal."""

    def __init__(self, redact: Redact | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(rid)s] %(message)s")
        self.redact = redact or _unchanged

    def format(self, record: logging.LogRecord) -> str:
        record.rid = getattr(record, "request_id", None) or "-"
        return self.redact(super().format(record))


def format_named(value: object) -> str:
    """``GENSERVE_LOG_FORMAT``'s value, any case; a ``ValueError`` that names the variable."""
    fmt = str(value).strip().lower()
    if fmt not in FORMATS:
        raise ValueError(f"GENSERVE_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt


def level_named(value: object) -> str:
    """``GENSERVE_LOG_LEVEL``'s value, any case; a ``ValueError`` that names the variable."""
    level = str(value).strip().upper()
    if level not in LEVELS:
        raise ValueError(f"GENSERVE_LOG_LEVEL must be one of {', '.join(LEVELS)}, not {level!r}")
    return level


def settings_from_env(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """``GENSERVE_LOG_FORMAT`` and ``GENSERVE_LOG_LEVEL`` (for a process without settings)."""
    env = os.environ if environ is None else environ
    return (
        format_named(env.get("GENSERVE_LOG_FORMAT") or "json"),
        level_named(env.get("GENSERVE_LOG_LEVEL") or "INFO"),
    )


def configure(
    service: str,
    *,
    fmt: str | None = None,
    level: str | None = None,
    redact: Redact | None = None,
    filters: Iterable[logging.Filter] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Sends every logger's records to one handler on standard error, in the chosen format.

    ``fmt`` and ``level`` are the process's settings; either left out is read from
    the environment (``settings_from_env``; ``ValueError`` for a bad value).
    Replaces any handler already on the root logger, so calling it twice is
    harmless. Returns the handler.
    """
    if fmt is None or level is None:
        env_fmt, env_level = settings_from_env()
        fmt, level = fmt or env_fmt, level or env_level
    fmt, level = format_named(fmt), level_named(level)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service, redact) if fmt == "json" else TextFormatter(redact))
    handler.addFilter(_RequestId())
    for extra_filter in filters:
        handler.addFilter(extra_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return handler
