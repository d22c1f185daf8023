"""The README's error table, generated from ``rest_bridge.edge.errors.ERROR_CODES``.

``python -m tools.error_table`` prints it (paste it between the README's
``error-codes`` markers); ``tests/rest_bridge/test_error_codes.py`` checks they agree.
"""

from __future__ import annotations

from rest_bridge.edge.errors import ERROR_CODES


def error_table() -> str:
    rows = ["| status | code | meaning |", "| --- | --- | --- |"]
    rows += [f"| {e.status} | `{e.code}` | {e.meaning} |" for e in ERROR_CODES]
    return "\n".join(rows)


if __name__ == "__main__":
    print(error_table())
