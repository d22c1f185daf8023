"""The fast lane: tests that need no server, no browser and no database server.

``make test-fast`` runs ``pytest -m fast_lane`` style selection (``not server and not
browser and not database``) with ``GENSERVE_TEST_LANE=fast``. The markers are set in
``tests/conftest.py`` from what a test uses (its fixtures, its folder) and, for a test
that starts a server itself, by a ``pytestmark`` in its module. So that a missing
marker cannot hide, whatever starts a server process or opens a database server in the
fast lane fails the test, naming the marker it needs.
"""

from __future__ import annotations

import os

import pytest

FAST_LANE_ENV = "GENSERVE_TEST_LANE"
SLOW_MARKERS = ("server", "browser", "database")
"""What the fast lane leaves out; ``pyproject.toml`` declares each."""


def in_fast_lane() -> bool:
    return os.environ.get(FAST_LANE_ENV) == "fast"


def needs(marker: str, what: str) -> None:
    """Fails the running test in the fast lane: it uses ``what``, so it must be marked."""
    if in_fast_lane():
        pytest.fail(
            f"{what} in the fast lane: mark this test (or its module) @pytest.mark.{marker}",
            pytrace=False,
        )
