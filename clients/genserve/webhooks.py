"""Webhook signatures: how genserve signs a delivery and how a receiver checks it.

Header ``X-Genserve-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
HMAC-SHA256 over ``f"{t}.".encode() + body`` with the account's webhook secret
(shown on the settings page). Receivers should also refuse old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

HEADER = "X-Genserve-Signature"

_MAX_HEADER = 4096
"""A real header is under 100 characters; anything much longer is not one of ours."""
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_MAC = re.compile(r"[0-9a-f]{64}")


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and is recent enough.

    Never raises: a header, body or secret of the wrong type or shape (``None``,
    non-ASCII, huge, ``bytes`` where ``str`` belongs) is simply not a valid signature.
    """
    try:
        return _verify(secret, header, body, tolerance_s)
    except Exception:  # hostile input of a shape not foreseen is still just "no"
        return False


def _verify(secret: object, header: object, body: object, tolerance_s: object) -> bool:
    if isinstance(header, (bytes, bytearray)):
        try:
            header = bytes(header).decode("ascii")
        except UnicodeDecodeError:
            return False
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if isinstance(secret, (bytes, bytearray)):
        secret = bytes(secret).decode("utf-8", "surrogatepass")
    if (
        not isinstance(header, str)
        or not isinstance(body, (bytes, bytearray, memoryview))
        or not isinstance(secret, str)
        or not secret
        or isinstance(tolerance_s, bool)
        or not isinstance(tolerance_s, (int, float))
        or len(header) > _MAX_HEADER
    ):
        return False
    parts: dict[str, str] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or name in parts:
            return False
        parts[name] = value.strip()
    t_text, given = parts.get("t", ""), parts.get("v1", "")
    if not _TIMESTAMP.fullmatch(t_text) or not _MAC.fullmatch(given):
        return False
    t = int(t_text)
    if not abs(time.time() - t) <= tolerance_s:  # NaN tolerance is no tolerance
        return False
    key = secret.encode("utf-8", "surrogatepass")
    expected = hmac.new(key, f"{t}.".encode() + bytes(body), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
