"""A loopback webhook receiver for tests: records every POST, answers the statuses it is given."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    statuses: list[int]
    hits: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0
    hold: threading.Event | None = None
    """When set to an event, every answer waits for it: an endpoint that hangs."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def payloads_for(self, generation_id: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        found = []
        for headers, raw in list(self.hits):
            payload = json.loads(raw)
            if payload.get("generation_id") == generation_id:
                found.append((headers, payload))
        return found

    def wait_for(
        self, generation_id: str, timeout: float = 30.0
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """The first delivery for ``generation_id``, waited for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.payloads_for(generation_id)
            if found:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError(f"no webhook for {generation_id} within {timeout}s")


@contextmanager
def receiving(statuses: list[int] | None = None, hang: bool = False) -> Iterator[Receiver]:
    rec = Receiver(statuses=list(statuses or []), hold=threading.Event() if hang else None)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            rec.hits.append(({k: v for k, v in self.headers.items()}, self.rfile.read(length)))
            if rec.hold is not None:
                rec.hold.wait()
            status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        if rec.hold is not None:
            rec.hold.set()
        server.shutdown()
        server.server_close()
