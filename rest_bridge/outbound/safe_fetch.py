"""Fetching a client-supplied URL without becoming a proxy into our own network.

Every hop (the first request and each redirect) is parsed here, its host
resolved and checked by :mod:`rest_bridge.outbound.address_policy`, and the TCP
connection is opened to one of the checked addresses and nowhere else: the
network backend handed to httpcore refuses any other origin and never resolves
a name itself. TLS still verifies the certificate against the URL's host name,
because only the socket is pinned, not the URL.

httpcore is used directly rather than httpx because it has no environment
proxies, cookies, netrc or automatic redirects to switch off, and because it
accepts a network backend, which is where the pinning has to live. No
``Accept-Encoding`` other than identity is sent, so a compressed body cannot
expand past the byte limit after it was counted.

Errors are 422s (413 for size) whose messages never contain anything the
remote server sent.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import httpcore

from genserve.vocabulary import MAX_INPUT_BYTES
from rest_bridge.edge.errors import ApiError, validation_error
from rest_bridge.outbound.address_policy import (
    AddressPolicy,
    IPAddress,
    Resolver,
    resolve_and_check,
)

DEFAULT_MAX_BYTES = MAX_INPUT_BYTES
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_REDIRECTS = 3

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHARACTERS_KEPT_IN_PATH = "/%:@!$&'()*+,;=-._~"
_CHARACTERS_KEPT_IN_QUERY = _CHARACTERS_KEPT_IN_PATH + "?"
_FETCH_FAILED = "the image could not be fetched from that URL"
_NETWORK_ERRORS = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.TimeoutException,
    httpcore.UnsupportedProtocol,
    OSError,
)


def payload_too_large(field: str, max_bytes: int) -> ApiError:
    """The 413 every size refusal uses, naming the limit rather than the size seen."""
    if max_bytes % (1024 * 1024) == 0:
        limit = f"{max_bytes // (1024 * 1024)} MB"
    else:
        limit = f"{max_bytes} bytes"
    message = f"the image is larger than {limit}"
    return ApiError(
        status=413,
        code="payload_too_large",
        message=f"{field}: {message}",
        details=[{"field": field, "message": message}],
    )


@dataclass(frozen=True)
class _Target:
    """One request's origin and path, parsed once so checking and connecting agree."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"


def _parse_target(url: str, field: str) -> _Target:
    """Split ``url`` into what we will check and connect to, refusing anything unusual."""
    if any(character <= " " or character == "\x7f" for character in url):
        raise validation_error(field, "the URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise validation_error(field, "is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise validation_error(field, "must be an http or https URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise validation_error(field, "must not contain a user name or password")
    if not parts.hostname:
        raise validation_error(field, "is not a valid URL")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise validation_error(field, "the URL's host is not a valid host name") from None
    path = quote(parts.path or "/", safe=_CHARACTERS_KEPT_IN_PATH)
    if parts.query:
        path = f"{path}?{quote(parts.query, safe=_CHARACTERS_KEPT_IN_QUERY)}"
    return _Target(
        scheme=scheme,
        host=host.lower(),
        port=_DEFAULT_PORTS[scheme] if port is None else port,
        path=path,
    )


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections for one checked origin, only to its checked addresses."""

    def __init__(self, host: str, port: int, addresses: Sequence[IPAddress]) -> None:
        self._host = host
        self._port = port
        self._addresses = tuple(addresses)
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if host != self._host or port != self._port:
            raise httpcore.ConnectError("connection to an origin that was not checked")
        failure: Exception = httpcore.ConnectError("no address to connect to")
        for address in self._addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _pinned(target: _Target, addresses: Sequence[IPAddress]) -> tuple[_PinnedBackend, httpcore.URL]:
    """The backend that may only reach ``addresses``, and the URL to ask it for."""
    url = httpcore.URL(
        scheme=target.scheme.encode("ascii"),
        host=target.host.encode("ascii"),
        port=target.port,
        target=target.path.encode("ascii"),
    )
    return _PinnedBackend(target.host, target.port, addresses), url


@dataclass(frozen=True)
class _Redirect:
    location: str


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


async def _get_once(
    target: _Target,
    addresses: Sequence[IPAddress],
    *,
    max_bytes: int,
    field: str,
    ssl_context: ssl.SSLContext | None,
) -> bytes | _Redirect:
    """One GET on a pinned connection: the body, or where a redirect points."""
    backend, url = _pinned(target, addresses)
    headers = [
        (b"Host", target.host_header.encode("ascii")),
        (b"User-Agent", b"genserve-image-fetch"),
        (b"Accept", b"image/png, image/jpeg, image/webp"),
        (b"Accept-Encoding", b"identity"),
        (b"Connection", b"close"),
    ]
    try:
        async with (
            httpcore.AsyncConnectionPool(
                ssl_context=ssl_context,
                network_backend=backend,
                max_connections=1,
                max_keepalive_connections=0,
                http1=True,
                http2=False,
                retries=0,
            ) as pool,
            pool.stream("GET", url, headers=headers) as response,
        ):
            if response.status in _REDIRECT_STATUSES:
                location = _header(response.headers, b"location")
                if location is not None:
                    try:
                        return _Redirect(location.decode("ascii"))
                    except UnicodeDecodeError:
                        raise validation_error(
                            field, "the URL redirected to an invalid URL"
                        ) from None
            if not 200 <= response.status < 300:
                raise validation_error(
                    field, f"the image URL answered with HTTP status {response.status}"
                )
            declared = _header(response.headers, b"content-length")
            if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
                raise payload_too_large(field, max_bytes)
            body = bytearray()
            async for chunk in response.aiter_stream():
                body += chunk
                if len(body) > max_bytes:
                    raise payload_too_large(field, max_bytes)
            return bytes(body)
    except _NETWORK_ERRORS:
        raise validation_error(field, _FETCH_FAILED) from None


async def _follow(
    url: str,
    *,
    policy: AddressPolicy,
    max_bytes: int,
    max_redirects: int,
    resolver: Resolver | None,
    field: str,
    ssl_context: ssl.SSLContext | None,
) -> bytes:
    current = url
    for _ in range(max_redirects + 1):
        target = _parse_target(current, field)
        addresses = await resolve_and_check(target.host, target.port, policy, resolver, field=field)
        outcome = await _get_once(
            target, addresses, max_bytes=max_bytes, field=field, ssl_context=ssl_context
        )
        if not isinstance(outcome, _Redirect):
            return outcome
        current = urljoin(current, outcome.location)
    raise validation_error(field, f"the URL redirected more than {max_redirects} times")


async def fetch_url(
    url: str,
    *,
    policy: AddressPolicy,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    resolver: Resolver | None = None,
    field: str = "image_url",
    ssl_context: ssl.SSLContext | None = None,
) -> bytes:
    """The body at ``url``, fetched under ``policy``, or an :class:`ApiError` for ``field``.

    ``timeout_s`` bounds everything, resolution and redirects included, so a
    slow or trickling server costs at most that long. ``ssl_context`` defaults
    to httpcore's certifi-backed verifying context; tests pass one trusting a
    local certificate authority.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await _follow(
                url,
                policy=policy,
                max_bytes=max_bytes,
                max_redirects=max_redirects,
                resolver=resolver,
                field=field,
                ssl_context=ssl_context,
            )
    except TimeoutError:
        raise validation_error(
            field, f"the image could not be fetched within {timeout_s:g} seconds"
        ) from None


async def check_url(
    url: str, *, policy: AddressPolicy, field: str, resolver: Resolver | None = None
) -> None:
    """Refuses a URL that ``fetch_url`` or ``post_json`` would refuse, without connecting."""
    target = _parse_target(url, field)
    await resolve_and_check(target.host, target.port, policy, resolver, field=field)


async def post_json(
    url: str,
    body: bytes,
    headers: Sequence[tuple[str, str]],
    *,
    policy: AddressPolicy,
    timeout_s: float = 10.0,
    field: str = "webhook_url",
    resolver: Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """One POST on a connection pinned to the checked address; redirects are not followed.

    Returns the status code; raises ``ApiError`` when the address is refused or
    the connection fails.
    """
    target = _parse_target(url, field)
    try:
        # The look-up is inside the timeout: a name server that never answers is one more
        # way for an endpoint to hang.
        async with asyncio.timeout(timeout_s):
            addresses = await resolve_and_check(
                target.host, target.port, policy, resolver, field=field
            )
            backend, core_url = _pinned(target, addresses)
            all_headers = [
                (b"Host", target.host_header.encode("ascii")),
                (b"User-Agent", b"genserve-webhook"),
                (b"Content-Type", b"application/json"),
                (b"Content-Length", str(len(body)).encode("ascii")),
                (b"Connection", b"close"),
                *((k.encode("ascii"), v.encode("ascii")) for k, v in headers),
            ]
            async with httpcore.AsyncConnectionPool(
                ssl_context=ssl_context,
                network_backend=backend,
                max_connections=1,
                max_keepalive_connections=0,
                retries=0,
            ) as pool:
                response = await pool.request("POST", core_url, headers=all_headers, content=body)
                return int(response.status)
    except (TimeoutError, *_NETWORK_ERRORS):
        raise validation_error(field, "the URL could not be reached") from None
