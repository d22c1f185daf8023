"""schemathesis over every operation of ``/openapi.json``, on SQLite and on PostgreSQL.

The equivalent of ``schemathesis run --checks all`` (every phase: the documented
examples, coverage, fuzzing and stateful links), through its Python API, against
real bridges with a valid key. Generations really run, on a model file of small
models (a 64x64 image model, a one-step 360p video model of at most 2 s) so the
run stays bounded; a request the models refuse is a documented 422.

Two checks are switched off where they cannot pass, each for a reason the schema
cannot change:

- ``positive_data_acceptance`` on the generation routes: whether a schema-valid body
  is accepted depends on what the inference servers listed (model names, their
  sizes and durations, learnt at run time with ``ListModels``), on the network
  (``image_url`` and ``webhook_url`` must resolve to a public address and serve an
  image), on the bytes of an uploaded file being a picture (OpenAI's edits and
  variations) and on the account (points, the ``Idempotency-Key``'s earlier body). Those
  are 402/409/422 answers the schema lists, not bugs.
- ``unsupported_method`` under ``/v1/``: the OpenAI-compatible routes answer a
  method they do not serve with 404 ``Invalid URL``, as OpenAI's API does, so
  that its clients see what they expect.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.engine import events, from_schema

from tests.conftest import Bridge, bridge_env, fresh_pg_database
from tests.utils.procs import Proc, start_bridge, start_inference

pytestmark = pytest.mark.server  # starts real servers (not in make test-fast)

MODELS = """
[models.nano-banana]
kind = "image"
source = "builtin:tiny-sdxl"
default = true
steps = 2
width = 64
height = 64
size_factor = 8

[models.vidu-q2]
kind = "video"
source = "builtin:tiny-ltx-video"
pipeline = "LTXPipeline"
default = true
steps = 1
guidance = 3.0
size_factor = 32
frame_rate = 8.0
temporal_factor = 8
min_duration = 1
max_duration = 2
default_duration = 1
resolutions = ["360p"]

[models.relief]
kind = "3d"
source = "builtin:relief"
default = true
steps = 3
"""

MAX_EXAMPLES = 15  # with the coverage and stateful phases: under a key's 1,000 requests an hour
GENERATION_ROUTES = r"^/(api/v1/(images|videos|3d)|v1/images/(generations|edits|variations))$"
BUDGET_S = 120


@pytest.fixture(scope="module")
def fuzz_target(
    model_cache: Path, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    models = tmp_path_factory.mktemp("fuzz-models") / "models.toml"
    models.write_text(MODELS)
    proc, port, _metrics = start_inference(model_cache, logs, models_file=models)
    yield f"127.0.0.1:{port}"
    proc.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_bridge(
    request: pytest.FixtureRequest,
    fuzz_target: str,
    logs: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Bridge]:
    from storage.db import make_engine, migrate

    data_dir = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    databases = None
    if request.param == "sqlite":
        db_url = f"sqlite:///{data_dir / 'genserve.db'}"
    else:
        databases = fresh_pg_database()
        db_url = next(databases)
    proc: Proc
    proc, base = start_bridge(bridge_env(data_dir, db_url, fuzz_target), logs)
    engine = make_engine(db_url)
    migrate(engine)
    yield Bridge(base=base, engine=engine, data_dir=data_dir, proc=proc)
    proc.stop()
    engine.dispose()
    if databases is not None:
        next(databases, None)


def run_schemathesis(base: str, key: str) -> tuple[list[str], int, float]:
    """Failures (one line each), operations tested, and seconds taken."""
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {key}"},
            "workers": 1,
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "cache": {"enabled": False},
            "checks": {"enabled": True},  # --checks all
            "operations": [
                {
                    "include-path-regex": GENERATION_ROUTES,
                    "checks": {"positive_data_acceptance": {"enabled": False}},
                },
                {
                    "include-path-regex": "^/v1/",
                    "checks": {"unsupported_method": {"enabled": False}},
                },
            ],
        }
    )
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", config=config)
    failures: list[str] = []
    tested: set[str] = set()
    cases = 0
    started = time.monotonic()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            if event.label:
                tested.add(event.label)
            cases += len(event.recorder.cases)
            for case_id, checks in event.recorder.checks.items():
                case = event.recorder.cases[case_id].value
                for check in checks:
                    if check.failure_info is not None:
                        failures.append(
                            f"{case.method} {case.path}: {check.name}: "
                            + str(check.failure_info.failure).replace("\n", " ")[:400]
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"error: {getattr(event, 'info', event)}"[:600])
        elif isinstance(event, events.EngineFinished):
            stop: Any = getattr(event, "stop_reason", None)
            if stop is not None and str(stop) not in ("completed", "StopReason.COMPLETED"):
                failures.append(f"stopped early: {stop}")
    print(f"schemathesis: {cases} requests over {len(tested)} operations")
    return sorted(set(failures)), len(tested), time.monotonic() - started


def test_every_operation_passes_every_check(fuzz_bridge: Bridge) -> None:
    key = fuzz_bridge.new_key(points=1_000_000, plan="enterprise")
    operations = len(
        [
            (path, method)
            for path, ops in schemathesis.openapi.from_url(f"{fuzz_bridge.base}/openapi.json")
            .raw_schema["paths"]
            .items()
            for method in ops
        ]
    )
    failures, tested, took = run_schemathesis(fuzz_bridge.base, key)
    print(f"schemathesis: {tested} operations of {operations}, {took:.0f} s")
    assert not failures, "\n".join(failures)
    assert tested >= operations, f"{tested} of {operations} operations tested"
    assert took < BUDGET_S
