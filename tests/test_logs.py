"""``genserve._internal.logs``: one JSON object per line, request ids, redaction, a text format."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from genserve._internal import logs
from rest_bridge.callers.keys import KeyRedactor, redact


@pytest.fixture()
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_a_json_line_has_the_fields_and_the_request_id(restore_logging: None) -> None:
    out = io.StringIO()
    logs.configure("bridge", fmt="json", level="INFO", stream=out)
    token = logs.request_id_var.set("req_abc")
    try:
        logging.getLogger("rest_bridge.access").info(
            "GET %s 200", "/x", extra={"route": "/x", "status": 200, "duration_ms": 1.5}
        )
    finally:
        logs.request_id_var.reset(token)
    logging.getLogger("other").debug("below the level")
    (line,) = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "GET /x 200" and entry["request_id"] == "req_abc"
    assert (entry["level"], entry["logger"], entry["service"]) == (
        "INFO",
        "rest_bridge.access",
        "bridge",
    )
    assert (entry["route"], entry["status"], entry["duration_ms"]) == ("/x", 200, 1.5)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_lines_stay_lines_and_keys_are_redacted(restore_logging: None) -> None:
    out = io.StringIO()
    logs.configure(
        "bridge", fmt="json", level="INFO", redact=redact, stream=out, filters=[KeyRedactor()]
    )
    key = "gsk_" + "A1b2" * 10
    try:
        raise ValueError(f"bad key {key}")
    except ValueError:
        logging.getLogger("x").exception("refused %s\u2028next", key, extra={"client": "\ud800\n"})
    text = out.getvalue()
    assert text.count("\n") == 1 and text.isascii()  # one line, whatever the values held
    entry = json.loads(text)
    assert key not in text and "gsk_[redacted]" in entry["message"]
    assert "gsk_[redacted]" in entry["exception"] and "Traceback" in entry["exception"]


def test_warnings_become_log_lines(restore_logging: None) -> None:
    out = io.StringIO()
    logs.configure("inference", fmt="json", level="INFO", stream=out)
    import warnings

    warnings.warn("something to act on", UserWarning, stacklevel=1)
    entry = json.loads(out.getvalue())
    assert entry["logger"] == "py.warnings" and entry["level"] == "WARNING"


def test_the_text_format_is_for_a_terminal(restore_logging: None) -> None:
    out = io.StringIO()
    logs.configure("bridge", fmt="text", level="debug", stream=out)
    logging.getLogger("rest_bridge").debug("hello %s", "there")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} DEBUG rest_bridge \[-\] hello there\n",
        out.getvalue(),
    )


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"GENSERVE_LOG_FORMAT": "xml"}, "GENSERVE_LOG_FORMAT must be one of json, text"),
        ({"GENSERVE_LOG_LEVEL": "loud"}, "GENSERVE_LOG_LEVEL must be one of DEBUG"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        logs.settings_from_env(env)
    assert logs.settings_from_env(
        {"GENSERVE_LOG_FORMAT": "TEXT", "GENSERVE_LOG_LEVEL": "warning"}
    ) == (
        "text",
        "WARNING",
    )
