"""Which network addresses the server may open a connection to on a client's behalf.

A client-supplied URL (an ``image_url`` now, a webhook later) makes the server a
proxy into whatever network it sits in. This module is the one place that
decides whether an address is fair game: only globally routable unicast
addresses are, with two relaxations (loopback, private ranges) that exist for
tests and development networks and are switched on by configuration only.

Callers must connect to the addresses returned by :func:`resolve_and_check`
and to nothing else; checking a name and then letting a client library resolve
it again would reopen the door to DNS rebinding.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from rest_bridge.edge.errors import validation_error

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver: TypeAlias = Callable[[str], Awaitable[Sequence[IPAddress]]]
"""Maps a host name to its addresses; injectable so tests never touch real DNS."""

REFUSED_MESSAGE = "the host is not a public internet address"


@dataclass(frozen=True)
class AddressPolicy:
    """Relaxations of the public-only rule; both stay off outside tests and dev networks."""

    allow_loopback: bool = False
    allow_private: bool = False


class _Kind(Enum):
    """How a range may be relaxed: loopback and private ranges can be, nothing else can."""

    LOOPBACK = "loopback"
    PRIVATE = "private"
    NEVER = "never"


_Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def _table(rows: Sequence[tuple[str, _Kind, str]]) -> tuple[tuple[_Network, _Kind, str], ...]:
    return tuple((ipaddress.ip_network(cidr), kind, reason) for cidr, kind, reason in rows)


# First match wins, so narrow entries (metadata) precede the ranges that contain them.
_IPV4_RANGES = _table(
    [
        ("0.0.0.0/8", _Kind.NEVER, "unspecified"),
        ("127.0.0.0/8", _Kind.LOOPBACK, "loopback"),
        ("10.0.0.0/8", _Kind.PRIVATE, "private"),
        ("172.16.0.0/12", _Kind.PRIVATE, "private"),
        ("192.168.0.0/16", _Kind.PRIVATE, "private"),
        ("100.64.0.0/10", _Kind.NEVER, "carrier-grade NAT"),
        ("169.254.0.0/16", _Kind.NEVER, "link-local or cloud metadata"),
        ("192.0.0.0/24", _Kind.NEVER, "IETF protocol assignments"),
        ("192.0.2.0/24", _Kind.NEVER, "documentation"),
        ("198.51.100.0/24", _Kind.NEVER, "documentation"),
        ("203.0.113.0/24", _Kind.NEVER, "documentation"),
        ("192.88.99.0/24", _Kind.NEVER, "6to4 relay anycast"),
        ("198.18.0.0/15", _Kind.NEVER, "benchmarking"),
        ("224.0.0.0/4", _Kind.NEVER, "multicast"),
        ("255.255.255.255/32", _Kind.NEVER, "broadcast"),
        ("240.0.0.0/4", _Kind.NEVER, "reserved"),
    ]
)

_IPV6_RANGES = _table(
    [
        ("::/128", _Kind.NEVER, "unspecified"),
        ("::1/128", _Kind.LOOPBACK, "loopback"),
        ("64:ff9b:1::/48", _Kind.PRIVATE, "local-use NAT64"),
        ("::/8", _Kind.NEVER, "reserved (IPv4-compatible or translated)"),
        ("100::/64", _Kind.NEVER, "discard-only"),
        ("fd00:ec2::/32", _Kind.NEVER, "cloud metadata"),
        ("fc00::/7", _Kind.PRIVATE, "unique local"),
        ("fe80::/10", _Kind.NEVER, "link-local"),
        ("fec0::/10", _Kind.NEVER, "site-local"),
        ("ff00::/8", _Kind.NEVER, "multicast"),
        ("2001::/32", _Kind.NEVER, "Teredo"),
        ("2001:db8::/32", _Kind.NEVER, "documentation"),
        ("3fff::/20", _Kind.NEVER, "documentation"),
        ("2001::/23", _Kind.NEVER, "IETF protocol assignments"),
    ]
)

# Prefixes that only carry an IPv4 destination: they are judged by what they embed.
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_CARRIERS = (_IPV4_MAPPED, _SIX_TO_FOUR, _NAT64_WELL_KNOWN)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")

_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
_NUMERIC_LABEL = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


def _parse_ipv4_part(part: str) -> int | None:
    """One dotted part as inet_aton reads it: 0x.. is hex, a leading 0 is octal."""
    if not _IPV4_PART.fullmatch(part):
        return None
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8)
    return int(part)


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address the C library would connect to for ``host``, if it is numeric.

    ``inet_aton`` accepts one to four parts in decimal, octal or hex, the last part
    filling the remaining bytes, so ``2130706433``, ``0177.0.0.1``, ``0x7f.1`` and
    ``127.1`` all mean 127.0.0.1. Reading them the same way is what stops them
    slipping past a check that only knows the dotted-quad spelling.
    """
    text = host[:-1] if host.endswith(".") else host
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _parse_ipv4_part(part)
        if number is None:
            return None
        numbers.append(number)
    *leading, last = numbers
    if any(number > 0xFF for number in leading) or last >= 1 << (8 * (5 - len(numbers))):
        return None
    value = last
    for index, number in enumerate(leading):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_host_literal(host: str) -> IPAddress | None:
    """The address a URL host spells numerically, or None when it is a name to resolve.

    Accepts bracketed or bare IPv6 and every IPv4 spelling ``inet_aton`` accepts.
    """
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return _parse_ipv4(text)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        server, client = address.teredo
        return [server, client]
    if address in _NAT64_WELL_KNOWN or address in _NAT64_LOCAL_USE:
        # The local-use block is read as a /96 translator prefix, its usual deployment.
        return [low32]
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return [low32]
    return []


def effective_addresses(ip: IPAddress) -> list[IPAddress]:
    """The address itself followed by every IPv4 address it carries.

    IPv4-mapped, 6to4, NAT64, Teredo and IPv4-compatible forms all deliver
    packets to an IPv4 host; a check that looked only at the IPv6 spelling
    would let ``::ffff:127.0.0.1`` through.
    """
    result: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        result.extend(_embedded_ipv4(ip))
    return result


def _own_refusal(address: IPAddress, policy: AddressPolicy) -> str | None:
    """Why this one address (not what it embeds) is refused, or None."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "zone-scoped"
        if any(address in carrier for carrier in _CARRIERS):
            return None
        table = _IPV6_RANGES
    else:
        table = _IPV4_RANGES
    for network, kind, reason in table:
        if address in network:
            if kind is _Kind.LOOPBACK and policy.allow_loopback:
                return None
            if kind is _Kind.PRIVATE and policy.allow_private:
                return None
            return reason
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST_V6:
        return "not global unicast"
    # The standard library's registry is a second opinion for anything the tables miss.
    if not address.is_global:
        return "not globally reachable"
    return None


def refusal_reason(ip: IPAddress, policy: AddressPolicy) -> str | None:
    """Why ``ip`` may not be connected to under ``policy``, or None when it may.

    The reason is for logs and tests; clients get :data:`REFUSED_MESSAGE`, since
    naming the range would tell them what an internal host name resolves to.
    """
    for address in effective_addresses(ip):
        reason = _own_refusal(address, policy)
        if reason is not None:
            return reason
    return None


def check_address(ip: IPAddress, policy: AddressPolicy, *, field: str = "url") -> None:
    """Raise a 422 for ``field`` unless ``ip`` and everything it embeds may be reached."""
    if refusal_reason(ip, policy) is not None:
        raise validation_error(field, REFUSED_MESSAGE)


def _is_host_name(host: str) -> bool:
    """A DNS name in the letters, digits, hyphens and underscores resolvers accept."""
    text = host[:-1] if host.endswith(".") else host
    if not text or len(text) > 253:
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in text.split("."))


def _ends_in_number(host: str) -> bool:
    """True for names the URL standard treats as IPv4, such as ``1.2.3.4.5`` or ``a.0x1``.

    Such a host that did not parse as IPv4 is malformed; handing it to the C
    resolver would let its own, looser number parsing decide where we connect.
    """
    text = host[:-1] if host.endswith(".") else host
    return bool(_NUMERIC_LABEL.fullmatch(text.rsplit(".", 1)[-1]))


async def system_resolver(host: str) -> list[IPAddress]:
    """Resolve with the operating system's resolver, in its worker thread, never on the loop."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


async def resolve_and_check(
    host: str,
    port: int,
    policy: AddressPolicy,
    resolver: Resolver | None = None,
    *,
    field: str = "url",
) -> list[IPAddress]:
    """Every address ``host`` stands for, each one allowed by ``policy``; else a 422.

    All addresses must pass, not just one: a name answering with a public and a
    private address could otherwise be steered to the private one at connect
    time. ``host`` must already be ASCII (IDNA-encoded).
    """
    if not 0 < port < 1 << 16:
        raise validation_error(field, "the port must be between 1 and 65535")
    name = host.strip().lower()
    literal = parse_host_literal(name)
    if literal is not None:
        check_address(literal, policy, field=field)
        return [literal]
    if not name.isascii() or not _is_host_name(name) or _ends_in_number(name):
        raise validation_error(field, "the URL's host is not a valid host name or address")
    lookup = resolver if resolver is not None else system_resolver
    try:
        found = list(await lookup(name))
    except (OSError, ValueError, UnicodeError):
        raise validation_error(field, "the host could not be resolved") from None
    if not found:
        raise validation_error(field, "the host could not be resolved")
    addresses: list[IPAddress] = []
    for address in found:
        check_address(address, policy, field=field)
        if address not in addresses:
            addresses.append(address)
    return addresses


def is_loopback(host: str) -> bool:
    """Whether an address (or ``localhost``) stays on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
