"""Webhook signatures: how genserve signs a delivery and how a receiver checks it.

Header ``X-Genserve-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
HMAC-SHA256 over ``f"{t}.".encode() + body`` with the account's webhook secret
(shown on the settings page). Receivers should also refuse old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Genserve-Signature"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and is recent enough."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)
