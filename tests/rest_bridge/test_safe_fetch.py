"""URL fetching and the address policy, proven against servers on loopback only.

Every test runs under a tripwire on ``socket.connect`` and ``socket.getaddrinfo``:
a connection to anything but loopback, or a DNS lookup of a name, fails and is
recorded. A refused URL is therefore shown to have opened no connection at all
(the tripwire saw nothing and the local server counted no connection), and a
mistake in the code under test cannot send traffic off this machine.
"""

from __future__ import annotations

import errno
import io
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from rest_bridge.edge.errors import ApiError
from rest_bridge.outbound.address_policy import (
    REFUSED_MESSAGE,
    AddressPolicy,
    IPAddress,
    Resolver,
    effective_addresses,
    parse_host_literal,
    refusal_reason,
    resolve_and_check,
    system_resolver,
)
from rest_bridge.outbound.safe_fetch import fetch_url, post_json

DEFAULT = AddressPolicy()
LOOPBACK_ALLOWED = AddressPolicy(allow_loopback=True)
ALL_RELAXED = AddressPolicy(allow_loopback=True, allow_private=True)
SECRET = b"SECRET-BODY-7f3a9c"

Route = Callable[["Handler"], None]


# --- loopback servers ------------------------------------------------------------


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP(S) server on 127.0.0.1 that counts connections and records requests."""

    daemon_threads = True

    def __init__(self, routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes = routes
        self.connections = 0
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str = "/img.png", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.requests]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections += 1
        super().process_request(request, client_address)


class Handler(BaseHTTPRequestHandler):
    """Dispatches GETs to the server's routes by path."""

    server: LoopbackServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append((self.path, self.headers.get("Host")))
        route = self.server.routes.get(self.path.partition("?")[0])
        if route is None:
            respond(self, 404, b"no such route")
        else:
            route(self)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


def respond(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str = "image/png",
    headers: Sequence[tuple[str, str]] = (),
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers:
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def body_route(body: bytes, status: int = 200, content_type: str = "image/png") -> Route:
    return lambda handler: respond(handler, status, body, content_type)


def redirect_route(location: str, status: int = 302) -> Route:
    return lambda handler: respond(handler, status, b"", "text/plain", [("Location", location)])


@dataclass
class StreamRecord:
    """What a streaming route managed to send before the client went away."""

    sent: int = 0
    completed: bool = False
    done: threading.Event = field(default_factory=threading.Event)


def stream_route(record: StreamRecord, total: int, *, declare_length: bool) -> Route:
    """Sends ``total`` zero bytes in 64 KiB writes, stopping when the client hangs up."""

    def route(handler: Handler) -> None:
        handler.close_connection = True
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "image/png")
            if declare_length:
                handler.send_header("Content-Length", str(total))
            handler.send_header("Connection", "close")
            handler.end_headers()
            if declare_length:
                # Say how much is coming, then send nothing: only the header can be judged.
                handler.server.stopping.wait(5)
                return
            chunk = bytes(64 * 1024)
            while record.sent < total:
                handler.wfile.write(chunk)
                record.sent += len(chunk)
            record.completed = True
        except OSError:
            pass
        finally:
            record.done.set()

    return route


def trickle_route(handler: Handler) -> None:
    """Promises 1000 bytes and sends one every 50 ms: alive, but never done in time."""
    handler.close_connection = True
    try:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(1000):
            if handler.server.stopping.wait(0.05):
                return
            handler.wfile.write(b"\0")
    except OSError:
        pass


def silent_route(handler: Handler) -> None:
    """Accepts the request and never answers."""
    handler.close_connection = True
    handler.server.stopping.wait(10)


def png_bytes(size: tuple[int, int] = (4, 3)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def table_resolver(table: dict[str, list[str]], calls: list[str] | None = None) -> Resolver:
    """A resolver over a fixed table, so no test depends on or reaches real DNS."""

    async def resolve(host: str) -> list[IPAddress]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "not in the test table")
        return [ipaddress.ip_address(address) for address in table[host]]

    return resolve


async def refusal(awaitable: Awaitable[object]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await awaitable
    return caught.value


def assert_never_echoes(error: ApiError, secret: bytes = SECRET) -> None:
    text = secret.decode()
    assert text not in error.message
    assert text not in str(error)
    assert all(text not in item["message"] for item in error.details or [])


# --- fixtures ----------------------------------------------------------------------


def _is_loopback(address: object) -> bool:
    if not isinstance(address, tuple):
        return False
    try:
        return ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def tripwire(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every address a socket tried to connect to; only loopback ones get through."""
    attempts: list[object] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        if not _is_loopback(address):
            raise OSError(errno.ENETUNREACH, "tripwire: only loopback connections in tests")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        attempts.append(address)
        if not _is_loopback(address):
            return errno.ENETUNREACH
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None:
            name = host.decode() if isinstance(host, bytes) else str(host)
            try:
                ipaddress.ip_address(name.split("%")[0])
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, "tripwire: no DNS in tests") from None
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


@pytest.fixture
def serve() -> Iterator[Callable[..., LoopbackServer]]:
    """Starts loopback servers for one test and stops them after it."""
    started: list[LoopbackServer] = []

    def start(routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> LoopbackServer:
        server = LoopbackServer(routes, tls)
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stopping.set()
        server.shutdown()
        server.server_close()


# --- address policy ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.000.000.001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
        ("0", "0.0.0.0"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("example.com", None),
        ("1.2.3.4.5", None),
        ("08.0.0.1", None),
        ("256.0.0.1", None),
        ("1.2.65536", None),
        ("0x100000000", None),
        ("[not-an-address]", None),
    ],
)
def test_parse_host_literal_reads_every_inet_aton_spelling(host: str, expected: str | None) -> None:
    parsed = parse_host_literal(host)
    assert parsed == (None if expected is None else ipaddress.ip_address(expected))


@pytest.mark.parametrize(
    ("address", "embedded"),
    [
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2002:7f00:1::", "127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("64:ff9b:1::a00:1", "10.0.0.1"),
        ("::7f00:1", "127.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.45"),
    ],
)
def test_effective_addresses_unwrap_embedded_ipv4(address: str, embedded: str) -> None:
    ip = ipaddress.ip_address(address)
    found = effective_addresses(ip)
    assert found[0] == ip
    assert ipaddress.ip_address(embedded) in found


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_global_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address), DEFAULT) is None


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "fc00::1",
        "fd12:3456::1",
        "::ffff:10.0.0.1",
        "2002:c0a8:101::",
        "64:ff9b::a00:1",
        "64:ff9b:1::a00:1",
    ],
)
def test_private_addresses_need_the_private_relaxation(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal_reason(ip, DEFAULT) is not None
    assert refusal_reason(ip, LOOPBACK_ALLOWED) is not None
    assert refusal_reason(ip, AddressPolicy(allow_private=True)) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local or cloud metadata"),
        ("::ffff:169.254.169.254", "link-local or cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.100.100.200", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.1", "documentation"),
        ("203.0.113.1", "documentation"),
        ("2001:db8::1", "documentation"),
        ("192.0.0.192", "IETF protocol assignments"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("100::1", "discard-only"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("5f00::1", "not global unicast"),
        ("::7f00:1", "reserved (IPv4-compatible or translated)"),
    ],
)
def test_never_allowed_addresses_stay_refused_under_every_relaxation(
    address: str, reason: str
) -> None:
    assert refusal_reason(ipaddress.ip_address(address), ALL_RELAXED) == reason


async def test_resolve_and_check_returns_every_checked_address_once() -> None:
    resolver = table_resolver({"cdn.example": ["8.8.8.8", "2606:4700::1", "8.8.8.8"]})
    found = await resolve_and_check("CDN.example", 443, DEFAULT, resolver)
    assert found == [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("2606:4700::1")]


@pytest.mark.parametrize(
    "answer", [["8.8.8.8", "10.0.0.1"], ["::1", "2606:4700::1"], ["169.254.169.254"], []]
)
async def test_resolve_and_check_refuses_unless_every_address_passes(answer: list[str]) -> None:
    resolver = table_resolver({"mixed.example": answer})
    error = await refusal(resolve_and_check("mixed.example", 80, DEFAULT, resolver, field="f"))
    assert error.status == 422
    assert error.details == [{"field": "f", "message": error.message.removeprefix("f: ")}]


async def test_resolve_and_check_refuses_unresolvable_names() -> None:
    error = await refusal(resolve_and_check("nowhere.example", 80, DEFAULT, table_resolver({})))
    assert error.message == "url: the host could not be resolved"


@pytest.mark.parametrize(
    "host", ["1.2.3.4.5", "08.0.0.1", "host.0x1", "bad_host!", "-", "a..b", "exa%6dple.com"]
)
async def test_malformed_hosts_are_refused_without_resolving(host: str) -> None:
    calls: list[str] = []
    resolver = table_resolver({host: ["8.8.8.8"]}, calls)
    error = await refusal(resolve_and_check(host, 80, DEFAULT, resolver))
    assert error.status == 422
    assert calls == []


@pytest.mark.parametrize("port", [0, 65536])
async def test_resolve_and_check_refuses_impossible_ports(port: int) -> None:
    await refusal(resolve_and_check("8.8.8.8", port, DEFAULT))


async def test_system_resolver_parses_getaddrinfo_answers() -> None:
    assert await system_resolver("127.0.0.1") == [ipaddress.ip_address("127.0.0.1")]


# --- fetching ----------------------------------------------------------------------


async def test_fetches_from_loopback_when_the_policy_allows_it(
    serve: Callable[..., LoopbackServer], tripwire: list[object]
) -> None:
    body = png_bytes()
    server = serve({"/img.png": body_route(body)})
    assert await fetch_url(server.url("/img.png?v=1"), policy=LOOPBACK_ALLOWED) == body
    assert server.requests == [("/img.png?v=1", f"127.0.0.1:{server.port}")]
    assert [address[0] for address in tripwire] == ["127.0.0.1"]  # type: ignore[index]


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.0.0.2",
    "2130706433",
    "0177.0.0.1",
    "0x7f.1",
    "127.1",
    "0x7f000001",
    "017700000001",
    "127.0.0.1.",
    "localhost",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[2002:7f00:1::]",
    "[64:ff9b::127.0.0.1]",
    "[::127.0.0.1]",
    "１２７.０.０.１",
    "127。0。0。1",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
async def test_default_policy_refuses_loopback_in_any_spelling_without_connecting(
    host: str, serve: Callable[..., LoopbackServer], tripwire: list[object]
) -> None:
    server = serve({"/img.png": body_route(png_bytes())})
    resolver = table_resolver({"localhost": ["127.0.0.1", "::1"]})
    error = await refusal(fetch_url(server.url(host=host), policy=DEFAULT, resolver=resolver))
    assert (error.status, error.code) == (422, "validation_error")
    assert error.details == [{"field": "image_url", "message": REFUSED_MESSAGE}]
    assert tripwire == []
    assert server.connections == 0


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1"])
async def test_numeric_spellings_mean_what_the_socket_layer_connects_to(
    host: str, serve: Callable[..., LoopbackServer], tripwire: list[object]
) -> None:
    body = png_bytes()
    server = serve({"/img.png": body_route(body)})
    assert await fetch_url(server.url(host=host), policy=LOOPBACK_ALLOWED) == body
    assert [address[0] for address in tripwire] == ["127.0.0.1"]  # type: ignore[index]


@pytest.mark.parametrize("host", ["0.0.0.0", "0", "[::]", "[::ffff:0.0.0.0]"])
async def test_unspecified_address_is_refused_even_with_loopback_allowed(
    host: str, serve: Callable[..., LoopbackServer], tripwire: list[object]
) -> None:
    server = serve({"/img.png": body_route(png_bytes())})
    await refusal(fetch_url(server.url(host=host), policy=ALL_RELAXED))
    assert tripwire == []
    assert server.connections == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[2002:a9fe:a9fe::]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://2852039166/",
        "http://0251.0376.0251.0376/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://100.64.0.1/",
        "http://100.100.100.200/latest/meta-data/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",
        "http://198.18.0.1/",
        "http://192.0.2.1/",
        "http://[fe80::1]/",
        "http://[fe80::1%25eth0]/",
        "http://[2001:db8::1]/",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    ],
)
async def test_metadata_cgnat_and_other_special_addresses_are_always_refused(
    url: str, tripwire: list[object]
) -> None:
    resolver = table_resolver({"metadata.google.internal": ["169.254.169.254"]})
    error = await refusal(fetch_url(url, policy=ALL_RELAXED, resolver=resolver))
    assert error.details == [{"field": "image_url", "message": REFUSED_MESSAGE}]
    assert tripwire == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://0xa.1/",
        "http://172.16.0.1/",
        "http://3232235777/",
        "http://[fd12:3456::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[2002:c0a8:101::]/",
        "http://[64:ff9b::a00:1]/",
        "http://intranet.example/",
    ],
)
async def test_private_addresses_are_refused_by_default(url: str, tripwire: list[object]) -> None:
    resolver = table_resolver({"intranet.example": ["192.168.10.10"]})
    error = await refusal(fetch_url(url, policy=LOOPBACK_ALLOWED, resolver=resolver))
    assert error.details == [{"field": "image_url", "message": REFUSED_MESSAGE}]
    assert tripwire == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1:{port}/img.png",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{port}/",
        "javascript:alert(1)",
        "http://user:secret@127.0.0.1:{port}/img.png",
        "http://@127.0.0.1:{port}/img.png",
        "http://127.0.0.1:{port}\\@example.com/img.png",
        "http:///img.png",
        "http://127.0.0.1:{port} /img.png",
        "http://127.0.0.1:{port}/img\r\nX-Injected: 1",
        "http://127.0.0.1:99999/img.png",
        "http://127.0.0.1:0/img.png",
        "http://[::1/img.png",
        "http://127.0.0.%31:{port}/img.png",
        "/img.png",
        "",
    ],
)
async def test_urls_outside_plain_http_and_https_are_refused(
    url: str, serve: Callable[..., LoopbackServer], tripwire: list[object]
) -> None:
    server = serve({"/img.png": body_route(png_bytes())})
    error = await refusal(fetch_url(url.format(port=server.port), policy=LOOPBACK_ALLOWED))
    assert error.status == 422
    assert tripwire == []
    assert server.connections == 0


# --- redirects ---------------------------------------------------------------------


async def test_up_to_three_redirects_are_followed(serve: Callable[..., LoopbackServer]) -> None:
    body = png_bytes()
    server = serve(
        {
            "/r1": redirect_route("/r2", 301),
            "/r2": redirect_route("r3", 307),
            "/r3": redirect_route("/img.png", 308),
            "/img.png": body_route(body),
        }
    )
    assert await fetch_url(server.url("/r1"), policy=LOOPBACK_ALLOWED) == body
    assert server.paths() == ["/r1", "/r2", "/r3", "/img.png"]


async def test_a_fourth_redirect_is_refused(serve: Callable[..., LoopbackServer]) -> None:
    server = serve(
        {
            "/r1": redirect_route("/r2"),
            "/r2": redirect_route("/r3"),
            "/r3": redirect_route("/r4"),
            "/r4": redirect_route("/img.png"),
            "/img.png": body_route(png_bytes()),
        }
    )
    error = await refusal(fetch_url(server.url("/r1"), policy=LOOPBACK_ALLOWED))
    assert error.message == "image_url: the URL redirected more than 3 times"
    assert server.paths() == ["/r1", "/r2", "/r3", "/r4"]


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.1/img.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://0xa9fea9fe/",
        "http://0.0.0.0:{port}/img.png",
        "http://metadata.internal/",
    ],
)
async def test_each_redirect_is_checked_before_connecting(
    location: str, serve: Callable[..., LoopbackServer], tripwire: list[object]
) -> None:
    server = serve({"/start": redirect_route("")})
    server.routes["/start"] = redirect_route(location.format(port=server.port))
    resolver = table_resolver({"metadata.internal": ["127.0.0.1", "169.254.169.254"]})
    error = await refusal(
        fetch_url(server.url("/start"), policy=LOOPBACK_ALLOWED, resolver=resolver)
    )
    assert error.details == [{"field": "image_url", "message": REFUSED_MESSAGE}]
    assert server.paths() == ["/start"]
    assert [address[0] for address in tripwire] == ["127.0.0.1"]  # type: ignore[index]


async def test_redirect_to_a_name_with_one_bad_address_reaches_no_address_of_it(
    serve: Callable[..., LoopbackServer],
) -> None:
    target = serve({"/img.png": body_route(png_bytes())})
    start = serve({"/start": redirect_route(target.url(host="images.example"))})
    resolver = table_resolver({"images.example": ["127.0.0.1", "10.0.0.5"]})
    await refusal(fetch_url(start.url("/start"), policy=LOOPBACK_ALLOWED, resolver=resolver))
    assert target.connections == 0


async def test_redirect_to_another_host_connects_to_its_checked_address(
    serve: Callable[..., LoopbackServer], tripwire: list[object]
) -> None:
    body = png_bytes()
    target = serve({"/img.png": body_route(body)})
    start = serve({"/start": redirect_route(target.url(host="images.example"))})
    resolver = table_resolver({"images.example": ["127.0.0.1"]})
    got = await fetch_url(start.url("/start"), policy=LOOPBACK_ALLOWED, resolver=resolver)
    assert got == body
    assert target.requests == [("/img.png", f"images.example:{target.port}")]
    assert len(tripwire) == 2


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/img.png",
        "http://user:pw@127.0.0.1:{port}/img.png",
        "gopher://127.0.0.1:{port}/",
    ],
)
async def test_redirects_to_other_schemes_or_credentials_are_refused(
    location: str, serve: Callable[..., LoopbackServer]
) -> None:
    server = serve({"/img.png": body_route(png_bytes())})
    server.routes["/start"] = redirect_route(location.format(port=server.port))
    error = await refusal(fetch_url(server.url("/start"), policy=LOOPBACK_ALLOWED))
    assert error.status == 422
    assert server.paths() == ["/start"]


# --- size, time and status ---------------------------------------------------------


async def test_an_oversized_body_is_refused_and_the_download_stops_early(
    serve: Callable[..., LoopbackServer],
) -> None:
    record = StreamRecord()
    total = 256 * 1024 * 1024
    server = serve({"/img.png": stream_route(record, total, declare_length=False)})
    error = await refusal(fetch_url(server.url(), policy=LOOPBACK_ALLOWED, max_bytes=100_000))
    assert (error.status, error.code) == (413, "payload_too_large")
    assert error.details == [
        {"field": "image_url", "message": "the image is larger than 100000 bytes"}
    ]
    assert record.done.wait(5)
    assert not record.completed
    assert record.sent < total // 4


async def test_a_declared_oversized_body_is_refused_before_reading_it(
    serve: Callable[..., LoopbackServer],
) -> None:
    record = StreamRecord()
    server = serve({"/img.png": stream_route(record, 50 * 1024 * 1024, declare_length=True)})
    started = time.monotonic()
    error = await refusal(fetch_url(server.url(), policy=LOOPBACK_ALLOWED, max_bytes=100_000))
    assert error.status == 413
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(("size", "accepted"), [(1000, True), (1001, False)])
async def test_the_byte_limit_is_inclusive(
    size: int, accepted: bool, serve: Callable[..., LoopbackServer]
) -> None:
    server = serve({"/img.png": body_route(bytes(size))})
    fetch = fetch_url(server.url(), policy=LOOPBACK_ALLOWED, max_bytes=1000)
    if accepted:
        assert len(await fetch) == size
    else:
        assert (await refusal(fetch)).status == 413


@pytest.mark.parametrize("route", [trickle_route, silent_route])
async def test_a_slow_server_is_cut_off_at_the_deadline(
    route: Route, serve: Callable[..., LoopbackServer]
) -> None:
    server = serve({"/img.png": route})
    started = time.monotonic()
    error = await refusal(fetch_url(server.url(), policy=LOOPBACK_ALLOWED, timeout_s=0.5))
    elapsed = time.monotonic() - started
    assert error.message == "image_url: the image could not be fetched within 0.5 seconds"
    assert 0.4 < elapsed < 1.5


async def test_a_slow_redirect_chain_shares_one_deadline(
    serve: Callable[..., LoopbackServer],
) -> None:
    def slow_redirect(to: str) -> Route:
        def route(handler: Handler) -> None:
            handler.server.stopping.wait(0.2)
            redirect_route(to)(handler)

        return route

    server = serve(
        {
            "/r1": slow_redirect("/r2"),
            "/r2": slow_redirect("/r3"),
            "/r3": slow_redirect("/img.png"),
            "/img.png": body_route(png_bytes()),
        }
    )
    error = await refusal(fetch_url(server.url("/r1"), policy=LOOPBACK_ALLOWED, timeout_s=0.5))
    assert "within 0.5 seconds" in error.message


@pytest.mark.parametrize("status", [404, 500, 302])
async def test_error_statuses_are_refused_without_echoing_the_body(
    status: int, serve: Callable[..., LoopbackServer]
) -> None:
    server = serve({"/img.png": body_route(SECRET, status, "text/html")})
    error = await refusal(fetch_url(server.url(), policy=LOOPBACK_ALLOWED))
    assert error.message == f"image_url: the image URL answered with HTTP status {status}"
    assert_never_echoes(error)


async def test_a_closed_port_is_a_generic_refusal(serve: Callable[..., LoopbackServer]) -> None:
    server = serve({})
    port = server.port
    server.shutdown()
    server.server_close()
    error = await refusal(fetch_url(f"http://127.0.0.1:{port}/", policy=LOOPBACK_ALLOWED))
    assert error.message == "image_url: the image could not be fetched from that URL"


# --- HTTPS: the socket is pinned, the certificate is still checked against the name ----


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and a leaf for images.example.test, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make test certificates")
    folder = tmp_path_factory.mktemp("tls")
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (folder / "leaf.ext").write_text(
        "subjectAltName=DNS:images.example.test\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    commands = [
        [
            *(openssl, "req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem"),
            *("-days", "1", "-subj", "/CN=genserve test CA"),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        ],
        [
            *(openssl, "req", *curve, "-keyout", "leaf.key", "-out", "leaf.csr"),
            *("-subj", "/CN=images.example.test"),
        ],
        [
            *(openssl, "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
            *("-CAcreateserial", "-out", "leaf.pem", "-days", "1", "-extfile", "leaf.ext"),
        ],
    ]
    for command in commands:
        subprocess.run(command, cwd=folder, check=True, capture_output=True)
    return Certificates(ca=folder / "ca.pem", cert=folder / "leaf.pem", key=folder / "leaf.key")


@dataclass
class TlsServer:
    server: LoopbackServer
    client_context: ssl.SSLContext
    server_names: list[str | None]


@pytest.fixture
def tls_server(certificates: Certificates, serve: Callable[..., LoopbackServer]) -> TlsServer:
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.cert, certificates.key)
    context.sni_callback = lambda _socket, name, _context: names.append(name)
    server = serve({"/img.png": body_route(png_bytes())}, tls=context)
    client = ssl.create_default_context(cafile=str(certificates.ca))
    return TlsServer(server=server, client_context=client, server_names=names)


async def test_https_connects_to_the_checked_address_and_verifies_the_name(
    tls_server: TlsServer, tripwire: list[object]
) -> None:
    server = tls_server.server
    got = await fetch_url(
        server.url(host="images.example.test", scheme="https"),
        policy=LOOPBACK_ALLOWED,
        resolver=table_resolver({"images.example.test": ["127.0.0.1"]}),
        ssl_context=tls_server.client_context,
    )
    assert got == png_bytes()
    assert tls_server.server_names == ["images.example.test"]
    assert server.requests == [("/img.png", f"images.example.test:{server.port}")]
    assert [address[0] for address in tripwire] == ["127.0.0.1"]  # type: ignore[index]


@pytest.mark.parametrize("host", ["other.example.test", "127.0.0.1"])
async def test_https_refuses_a_certificate_for_another_name(
    host: str, tls_server: TlsServer
) -> None:
    error = await refusal(
        fetch_url(
            tls_server.server.url(host=host, scheme="https"),
            policy=LOOPBACK_ALLOWED,
            resolver=table_resolver({"other.example.test": ["127.0.0.1"]}),
            ssl_context=tls_server.client_context,
        )
    )
    assert error.message == "image_url: the image could not be fetched from that URL"
    assert tls_server.server.requests == []


async def test_https_default_trust_refuses_an_unknown_authority(tls_server: TlsServer) -> None:
    await refusal(
        fetch_url(
            tls_server.server.url(host="images.example.test", scheme="https"),
            policy=LOOPBACK_ALLOWED,
            resolver=table_resolver({"images.example.test": ["127.0.0.1"]}),
        )
    )
    assert tls_server.server.requests == []


async def test_a_name_that_never_resolves_is_inside_the_post_timeout() -> None:
    """A webhook host whose look-up hangs ends at the timeout, like a silent endpoint."""
    import asyncio

    async def never(host: str) -> Sequence[IPAddress]:
        await asyncio.Event().wait()
        return []

    error = await refusal(
        post_json(
            "http://hangs.example/hook", b"{}", [], policy=DEFAULT, timeout_s=0.2, resolver=never
        )
    )
    assert error.message == "webhook_url: the URL could not be reached"
