"""The deployment files match the code: the model file loads, every setting named exists.

Docker cannot pull images here, so the compose file is checked, not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from inference_server.model_config import load_model_table
from inference_server.settings import ServerSettings
from rest_bridge.settings import BridgeSettings
from tests.utils.procs import ROOT

DEPLOY = ROOT / "deploy"
PASSED_THROUGH = {"DATABASE_URL", "REDIS_URL"}


def _setting_names() -> set[str]:
    names = set(PASSED_THROUGH)
    for cls, prefix in ((BridgeSettings, "GENSERVE_"), (ServerSettings, "GENSERVE_INFERENCE_")):
        for name, field in cls.model_fields.items():
            names.add(prefix + name.upper())
            alias: Any = field.validation_alias
            if isinstance(alias, str):
                names.add(alias)
            elif alias is not None:
                names.update(str(choice) for choice in alias.choices)
    return names


def test_the_deploy_model_file_loads() -> None:
    table = load_model_table(DEPLOY / "models.toml")
    assert {m.name for m in table.models} >= {"nano-banana", "vidu-q2", "ltx-2"}
    assert {m.kind for m in table.models} == {"image", "video", "3d"}


def test_the_compose_file_names_only_real_settings() -> None:
    compose = yaml.safe_load(Path(DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"inference-0", "inference-1", "bridge-a", "bridge-b", "postgres", "redis"} <= set(
        services
    )
    known = _setting_names()
    for name, service in services.items():
        env = service.get("environment") or {}
        for variable in env:
            if variable.startswith("GENSERVE_"):
                assert variable in known, f"{name}: {variable} is not a setting"
