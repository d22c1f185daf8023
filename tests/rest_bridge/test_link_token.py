"""The bridge's channels carry the service token to gRPC's own health ``Watch``.

A real grpc.aio server with the inference server's token check and a health service;
the bridge's :class:`InferenceClient` on a plaintext loopback target. Its channels ask
gRPC core to health-check each address by ``Watch``: a call no interceptor sees, so
only call credentials can carry the token there. Without them the address never
becomes ready and even the open ``Check`` fails.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from inference_server.credentials import TokenInterceptor
from rest_bridge.link.channels import SERVICE, InferenceClient
from rest_bridge.link.credentials import LinkSecurity

TOKEN = "svc-token-for-the-watch"


class _Seen(grpc.aio.ServerInterceptor):
    """Records each method called and whether it carried the right token."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []
        self._token = TokenInterceptor(TOKEN)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        metadata: Any = details.invocation_metadata  # type: ignore[attr-defined]
        self.calls.append((details.method, self._token.allowed(metadata)))  # type: ignore[attr-defined]
        return await continuation(details)


async def _serving(host: str, token: str | None) -> tuple[bool, list[tuple[str, bool]]]:
    seen = _Seen()
    server = grpc.aio.server(interceptors=[seen, TokenInterceptor(TOKEN)])
    servicer = health.aio.HealthServicer()
    await servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    client = InferenceClient(f"{host}:{port}", LinkSecurity(token=token))
    try:
        return await client.serving(deadline_s=5), seen.calls
    finally:
        await client.close()
        await server.stop(None)


pytestmark = pytest.mark.server  # an in-process gRPC server


def test_a_plaintext_loopback_link_sends_the_token_to_the_health_watch() -> None:
    serving, calls = asyncio.run(_serving("127.0.0.1", TOKEN))
    assert serving
    assert ("/grpc.health.v1.Health/Watch", True) in calls


def test_a_wrong_token_leaves_the_link_unready() -> None:
    serving, calls = asyncio.run(_serving("127.0.0.1", "not-the-token"))
    assert not serving
    assert ("/grpc.health.v1.Health/Watch", False) in calls


def _off_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent
            address: str = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_a_plaintext_link_off_this_machine_works_without_the_health_watch() -> None:
    """gRPC sends call credentials on no plaintext channel but a local one: off this
    machine the token goes by interceptors and gRPC is not asked to watch health."""
    host = _off_loopback_address()
    if host is None:
        pytest.skip("this machine has no address but loopback")
    serving, calls = asyncio.run(_serving(host, TOKEN))
    assert serving
    assert not any(method.endswith("/Watch") for method, _ in calls)
