"""docs/settings.md is generated from the settings classes; it must not go stale."""

from __future__ import annotations

from inference_server.settings import ServerSettings
from rest_bridge.settings import BridgeSettings
from tools import settings_doc


def test_every_setting_has_a_description() -> None:
    for cls in (BridgeSettings, ServerSettings):
        missing = [name for name, f in cls.model_fields.items() if not f.description]
        assert missing == [], f"{cls.__name__}: add a description to {missing}"


def test_the_committed_reference_is_current() -> None:
    expected = settings_doc.render()
    committed = settings_doc.OUTPUT.read_text() if settings_doc.OUTPUT.exists() else ""
    assert committed == expected, "docs/settings.md is stale: run python -m tools.settings_doc"


def test_variables_and_defaults_come_from_the_fields() -> None:
    text = settings_doc.render()
    assert "| `DATABASE_URL`, `GENSERVE_DATABASE_URL` | `unset` |" in text
    assert "| `GENSERVE_PRICE_IMAGE` | `4` |" in text
    assert "| `GENSERVE_MODELS_FILE`, `GENSERVE_INFERENCE_MODELS_FILE` | `unset` |" in text
    assert "| `GENSERVE_INFERENCE_PORT` | `50051` |" in text
