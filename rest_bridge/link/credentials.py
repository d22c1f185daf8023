"""The bridge's side of the gRPC link's security: TLS credentials and the service token.

``GENSERVE_GRPC_TLS_CA`` makes every channel to the inference servers TLS, verified
against that CA; ``GENSERVE_GRPC_TLS_CERT`` and ``GENSERVE_GRPC_TLS_KEY`` add a client
certificate (mutual TLS). ``GENSERVE_INFERENCE_TOKEN`` is sent as
``authorization: Bearer <token>`` on every call, so no call site has to remember it:
as call credentials composed into the channel's credentials wherever gRPC allows them
(TLS, and plaintext to a loopback target, as "local" credentials), because only those
reach the health ``Watch`` that gRPC core itself calls for client-side health checking;
interceptors do not. gRPC sends call credentials on no other plaintext channel, so a
plaintext link off this machine (warned about at start-up) carries the token by
interceptors and goes without client-side health checking (see :meth:`health_watch`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from genserve._internal.pem import read_pem
from rest_bridge.outbound.address_policy import is_loopback

if TYPE_CHECKING:
    from rest_bridge.settings import BridgeSettings


def target_host(target: str) -> str:
    """The host of a gRPC target: ``host:port``, ``[v6]:port``, ``dns:///name:port``..."""
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
            break
    if target.startswith("["):
        return target[1 : target.find("]")]
    return target.rsplit(":", 1)[0] if target.count(":") == 1 else target


def _optional(path: Path | None, variable: str, kind: str) -> bytes | None:
    return read_pem(path, variable, kind) if path is not None else None


@dataclass(frozen=True, repr=False)
class LinkSecurity:
    """How the bridge's channels are secured: plaintext and no token unless configured."""

    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    token: str | None = None

    @classmethod
    def from_settings(cls, settings: BridgeSettings) -> LinkSecurity:
        if settings.grpc_tls_ca is None:
            return cls(token=settings.inference_token_value)
        cert, key = settings.grpc_tls_cert, settings.grpc_tls_key
        return cls(
            root_certificates=read_pem(settings.grpc_tls_ca, "GENSERVE_GRPC_TLS_CA", "certificate"),
            private_key=_optional(key, "GENSERVE_GRPC_TLS_KEY", "private key"),
            certificate_chain=_optional(cert, "GENSERVE_GRPC_TLS_CERT", "certificate"),
            token=settings.inference_token_value,
        )

    @property
    def tls(self) -> bool:
        return self.root_certificates is not None

    def __repr__(self) -> str:  # never the key or the token
        mode = ("mutual TLS" if self.private_key else "TLS") if self.tls else "plaintext"
        return f"LinkSecurity({mode}, token={'set' if self.token else 'unset'})"

    def exposed_targets(self, targets: Sequence[str]) -> list[str]:
        """Targets off this machine that the link would reach in plaintext."""
        return [] if self.tls else [t for t in targets if not is_loopback(target_host(t))]

    def _token_by_credentials(self, target: str) -> bool:
        return bool(self.token) and (self.tls or is_loopback(target_host(target)))

    def health_watch(self, target: str) -> bool:
        """Whether gRPC's own health ``Watch`` on a channel to ``target`` carries the token
        (or needs none): without it the channel is not told to health-check."""
        return not self.token or self._token_by_credentials(target)

    def interceptors(self) -> list[Any]:  # grpc-stubs leave ClientInterceptor untyped
        """One per call shape: grpc.aio files an interceptor under its first base class only."""
        if not self.token:
            return []
        metadata = (("authorization", f"Bearer {self.token}"),)
        return [_UnaryUnaryToken(metadata), _UnaryStreamToken(metadata)]

    def channel(self, target: str, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
        """A channel to ``target``: TLS when a CA is set, the token on every call when set."""
        if self.tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self.root_certificates,
                private_key=self.private_key,
                certificate_chain=self.certificate_chain,
            )
        elif self._token_by_credentials(target):
            credentials = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        else:
            interceptors = self.interceptors() or None
            return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
        if self.token:
            token = grpc.metadata_call_credentials(_TokenPlugin(self.token), name="service-token")
            credentials = grpc.composite_channel_credentials(credentials, token)
        return grpc.aio.secure_channel(target, credentials, options=options)


class _TokenPlugin(grpc.AuthMetadataPlugin):
    """``authorization: Bearer <token>`` on every call of the channel, gRPC's own included."""

    def __init__(self, token: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),)

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        callback(self._metadata, None)


def _with_metadata(
    details: grpc.aio.ClientCallDetails, extra: tuple[tuple[str, str], ...]
) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in extra:
        metadata[key] = value
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryUnaryToken(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    async def intercept_unary_unary(
        self,
        continuation: Callable[..., Any],  # awaitable in grpc.aio; grpc-stubs say otherwise
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        return await continuation(_with_metadata(client_call_details, self._metadata), request)


class _UnaryStreamToken(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    async def intercept_unary_stream(
        self,
        continuation: Callable[..., Any],  # awaitable in grpc.aio; grpc-stubs say otherwise
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        return await continuation(_with_metadata(client_call_details, self._metadata), request)
