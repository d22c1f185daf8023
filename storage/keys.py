"""API keys: ``gsk_`` + 32 random base62 characters + a 6-character checksum.

The checksum lets a malformed or mistyped key be refused without a database
look-up; only an HMAC-SHA256 of the key under a server secret is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib

ALPHABET = string.digits + string.ascii_letters  # base62
PREFIX = "gsk_"
BODY_LEN = 32
CHECK_LEN = 6
KEY_LEN = len(PREFIX) + BODY_LEN + CHECK_LEN


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECK_LEN)


def generate_key() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LEN))
    return PREFIX + body + _checksum(body)


def is_well_formed(key: str) -> bool:
    """Shape and checksum only; says nothing about whether the key exists."""
    if len(key) != KEY_LEN or not key.startswith(PREFIX):
        return False
    body, check = key[len(PREFIX) : -CHECK_LEN], key[-CHECK_LEN:]
    if any(c not in ALPHABET for c in body):
        return False
    return hmac.compare_digest(check, _checksum(body))


def hash_key(key: str, secret: bytes) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(PREFIX) + 4]


def last_four(key: str) -> str:
    return key[-4:]
