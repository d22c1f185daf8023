"""Server-Sent Events, line by line: the part of the stream format genserve sends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class RawEvent:
    id: str | None
    name: str
    data: dict[str, Any]


class SseDecoder:
    """Feed it the stream's lines (without their ends); it returns each complete event.

    Comments (``: keep-alive``) return nothing; ``id`` is kept across events as the
    stream's last event id, which resumes it (``Last-Event-ID``).
    """

    def __init__(self) -> None:
        self.last_id: str | None = None
        self._id: str | None = None
        self._name = ""
        self._data: list[str] = []

    def feed(self, line: str) -> RawEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "event":
            self._name = value
        elif name == "data":
            self._data.append(value)
        return None

    def _dispatch(self) -> RawEvent | None:
        ident, name, lines = self._id, self._name or "message", self._data
        self._id, self._name, self._data = None, "", []
        if ident is not None:
            self.last_id = ident
        if not lines:
            return None
        text = "\n".join(lines)
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = {"raw": text}
        data = parsed if isinstance(parsed, dict) else {"value": parsed}
        return RawEvent(ident if ident is not None else self.last_id, name, data)
