"""The deployment files match the code: the model file loads, every setting named exists.

Docker cannot pull images here, so the compose file is checked, not run.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from inference_server.model_config import load_model_table
from tests.utils.procs import ROOT
from tools.settings_doc import setting_variables

DEPLOY = ROOT / "deploy"


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
    known = setting_variables()
    for name, service in services.items():
        env = service.get("environment") or {}
        for variable in env:
            if variable.startswith("GENSERVE_"):
                assert variable in known, f"{name}: {variable} is not a setting"
