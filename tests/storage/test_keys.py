"""Key format: prefix, 32 base62 characters, checksum; HMAC storage."""

from __future__ import annotations

import re

from storage.keys import generate_key, hash_key, is_well_formed


def test_format_and_checksum() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"gsk_[0-9A-Za-z]{38}", key)
        assert is_well_formed(key)
    key = next(iter(keys))
    for i in range(4, len(key)):
        swapped = key[:i] + ("0" if key[i] != "0" else "1") + key[i + 1 :]
        assert not is_well_formed(swapped)
    assert not is_well_formed(key + "x")
    assert not is_well_formed("sk_" + key[3:])


def test_hash_is_keyed() -> None:
    key = generate_key()
    assert hash_key(key, b"a" * 32) != hash_key(key, b"b" * 32)
    assert len(hash_key(key, b"a" * 32)) == 64
    assert key not in hash_key(key, b"a" * 32)
