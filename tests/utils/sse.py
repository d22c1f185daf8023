"""A small Server-Sent Events reader for tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class SseEvent:
    id: str | None
    name: str
    data: dict[str, Any]


def read_events(response: httpx.Response) -> Iterator[SseEvent]:
    ident: str | None = None
    name = "message"
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield SseEvent(ident, name, json.loads("\n".join(data)))
            ident, name, data = None, "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                ident = value
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)
