"""``genserve.webhooks.verify`` on hostile input: it answers False, it never raises."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genserve.webhooks import sign, verify

SECRET = "whsec-test"
BODY = b'{"generation_id": "abc"}'
NOW = int(time.time())
GOOD = sign(SECRET, BODY, NOW)
MAC = GOOD.split("v1=", 1)[1]


def test_a_good_signature_verifies() -> None:
    now = int(time.time())  # signed now: the module's NOW may be minutes old in a long run
    good = sign(SECRET, BODY, now)
    assert verify(SECRET, good, BODY)
    assert verify(SECRET.encode(), good.encode(), BODY)  # bytes where str is usual
    assert not verify(SECRET, good, BODY + b" ")
    assert not verify("other", good, BODY)
    assert not verify(SECRET, sign(SECRET, BODY, now - 3600), BODY)


HOSTILE_HEADERS: list[Any] = [
    f"t={NOW},v1={'é' * 64}",  # non-ASCII: compare_digest raised TypeError
    f"t={NOW},v1=\udcff",
    f"t={NOW},v1={MAC[:-1]}\u0661",
    f"t=\u0661\u0662,v1={MAC}",  # Arabic-Indic digits int() would take
    f"t={'9' * 5000},v1={MAC}",  # past int()'s digit limit
    f"t={10**30},v1={MAC}",
    f"t=-{NOW},v1={MAC}",
    f"t=nan,v1={MAC}",
    f"t=,v1={MAC}",
    f"t={NOW},v1={MAC},t=1",
    "t=" + "1," * 100_000,
    "x" * 10_000_000,
    "",
    ",,,",
    "=",
    f"t={NOW}",
    f"v1={MAC}",
    None,
    123,
    1.5,
    [GOOD],
    {"t": NOW, "v1": MAC},
    b"\xff\xfe" + GOOD.encode(),
    bytearray(GOOD.encode()) + b"\x80",
    object(),
]


@pytest.mark.parametrize("header", HOSTILE_HEADERS, ids=range(len(HOSTILE_HEADERS)))
def test_hostile_headers_are_false(header: Any) -> None:
    assert verify(SECRET, header, BODY) is False


@pytest.mark.parametrize(
    ("secret", "body", "tolerance"),
    [
        (None, BODY, 300),
        ("", BODY, 300),
        (123, BODY, 300),
        (SECRET, None, 300),
        (SECRET, 42, 300),
        (SECRET, BODY, None),
        (SECRET, BODY, "300"),
        (SECRET, BODY, float("nan")),
        ("\udcff", BODY, 300),
        (SECRET, "é\udcff", 300),
    ],
)
def test_hostile_secrets_bodies_and_tolerances_are_false(
    secret: Any, body: Any, tolerance: Any
) -> None:
    assert verify(secret, GOOD, body, tolerance) is False


_ANY = st.one_of(
    st.none(),
    st.text(),
    st.binary(),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.text(), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(secret=_ANY, header=_ANY, body=_ANY, tolerance=_ANY)
def test_verify_never_raises(secret: Any, header: Any, body: Any, tolerance: Any) -> None:
    assert verify(secret, header, body, tolerance) in (True, False)


@settings(max_examples=300, deadline=None)
@given(t=st.text(), mac=st.text())
def test_header_shaped_garbage_is_false(t: str, mac: str) -> None:
    assert verify(SECRET, f"t={t},v1={mac}", BODY) is False
