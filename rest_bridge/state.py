"""The bridge's long-lived objects, created in the lifespan and kept on ``app.state``."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from rest_bridge.callers.limits import RateLimits
from rest_bridge.link.channels import InferenceClient
from rest_bridge.settings import BridgeSettings
from storage.blobs import BlobStore

T = TypeVar("T")


@dataclass
class BridgeState:
    settings: BridgeSettings
    engine: Engine
    blobs: BlobStore
    client: InferenceClient
    secret: bytes
    ratelimits: RateLimits = field(default_factory=RateLimits.in_process)
    # This process among the bridges sharing the database: the owner of the generations
    # it runs (their leases; see rest_bridge/maintenance.py).
    instance_id: str = field(default_factory=lambda: new_instance_id())

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Runs ``fn(session, ...)`` on a worker thread with a fresh session."""

        def call() -> T:
            with Session(self.engine, expire_on_commit=False) as session:
                return fn(session, *args, **kwargs)

        return await run_in_threadpool(call)

    def file_url(self, token: str, file_name: str) -> str:
        return f"{self.settings.base_url}/files/{token}/{file_name}"


def new_instance_id() -> str:
    """Host, process and a random part: unique among bridges, readable in the database."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


async def get_state(request: Request) -> BridgeState:
    """The bridge's state, as a dependency; ``async`` so that FastAPI calls it on the event
    loop, not in a worker thread (see ``edge.access_log.note_route``)."""
    state: BridgeState = request.app.state.bridge
    return state
