"""Transport security and the service token on the inference server's gRPC port.

With ``GENSERVE_GRPC_TLS_CERT`` and ``GENSERVE_GRPC_TLS_KEY`` the port serves TLS;
with ``GENSERVE_GRPC_TLS_CA`` as well, every client must show a certificate signed
by that CA (mutual TLS). With ``GENSERVE_INFERENCE_TOKEN``, every call must carry
``authorization: Bearer <token>`` except the health ``Check``, which stays open so load
balancers and orchestrators can probe the server without a secret; the health ``Watch``
stream wants the token like the rest (the bridge's channels send it there too).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from genserve._internal.pem import read_pem

if TYPE_CHECKING:
    from inference_server.settings import ServerSettings

OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check"})
"""Methods served without a token."""


def server_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS credentials for the port (mutual when a CA is set); None serves plaintext."""
    if settings.grpc_tls_cert is None or settings.grpc_tls_key is None:
        return None
    pair = (
        read_pem(settings.grpc_tls_key, "GENSERVE_GRPC_TLS_KEY", "private key"),
        read_pem(settings.grpc_tls_cert, "GENSERVE_GRPC_TLS_CERT", "certificate"),
    )
    ca = (
        read_pem(settings.grpc_tls_ca, "GENSERVE_GRPC_TLS_CA", "certificate")
        if settings.grpc_tls_ca is not None
        else None
    )
    return grpc.ssl_server_credentials(
        [pair], root_certificates=ca, require_client_auth=ca is not None
    )


def link_mode(settings: ServerSettings) -> str:
    """How the port is secured, in words for the start-up log."""
    if settings.grpc_tls_cert is None:
        return "plaintext"
    return "mutual TLS" if settings.grpc_tls_ca is not None else "TLS"


async def _refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong service token")


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Every call but the health ``Check`` must carry ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def allowed(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(given, self._expected)
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        handler = await continuation(handler_call_details)
        if handler is None or method in OPEN_METHODS:
            return handler
        if self.allowed(handler_call_details.invocation_metadata):  # type: ignore[attr-defined]
            return handler
        return _refusal(handler)


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED."""
    shape = (handler.request_streaming, handler.response_streaming)
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[shape]
    # No deserializer: a request without the token is never parsed.
    return make(_refuse)  # type: ignore[arg-type]
