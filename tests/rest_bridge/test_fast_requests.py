"""``"fast": true`` through REST: a model with a step cache runs it at the same price; a model
without one refuses it before any work; ``GET /api/v1/models`` names each model's cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, select

from storage.db import make_engine
from storage.models import Generation
from tests.conftest import Bridge, bridge_env
from tests.utils.procs import start_bridge, start_inference

MODELS = """
[models.nano-banana]
kind = "image"
source = "builtin:tiny-sdxl"
width = 64
height = 64
steps = 4
default = true

[models.flux-fast]
kind = "image"
source = "builtin:tiny-flux"
pipeline = "FluxPipeline"
width = 64
height = 64
size_factor = 16
steps = 8
guidance = 0.0
cache = "magcache"
cache_threshold = 0.1
"""


@pytest.fixture(scope="module")
def fast_bridge(
    model_cache: Path, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bridge]:
    folder = tmp_path_factory.mktemp("fast")
    models = folder / "models.toml"
    models.write_text(MODELS)
    inference, port, _ = start_inference(model_cache, logs, models_file=models)
    db_url = f"sqlite:///{folder / 'genserve.db'}"
    proc, base = start_bridge(bridge_env(folder, db_url, f"127.0.0.1:{port}"), logs)
    engine = make_engine(db_url)
    try:
        yield Bridge(base=base, engine=engine, data_dir=folder, proc=proc)
    finally:
        proc.stop()
        inference.stop()
        engine.dispose()


@pytest.mark.server
def test_fast_runs_with_the_models_cache_at_the_same_price(fast_bridge: Bridge) -> None:
    key = fast_bridge.new_key(points=100)
    with fast_bridge.client(key) as c:
        listed = {m["name"]: m for m in c.get("/api/v1/models").json()["data"]["models"]}
        assert listed["flux-fast"]["step_cache"] == "magcache"
        assert listed["nano-banana"]["step_cache"] is None
        plain = c.post("/api/v1/images", json={"prompt": "a boat", "model": "flux-fast"})
        fast = c.post(
            "/api/v1/images", json={"prompt": "a boat", "model": "flux-fast", "fast": True}
        )
        refused = c.post("/api/v1/images", json={"prompt": "a boat", "fast": True})
    assert plain.status_code == 200, plain.text
    assert fast.status_code == 200, fast.text
    spent = plain.json()["data"]["remaining_points"] - fast.json()["data"]["remaining_points"]
    assert spent == 100 - plain.json()["data"]["remaining_points"]  # priced the same
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert "fast" in str(error) and "nano-banana" in str(error)
    with Session(fast_bridge.engine) as session:
        rows = session.exec(select(Generation).order_by(Generation.created_at)).all()
    assert len(rows) == 2  # the refusal wrote nothing
    assert rows[-1].params.get("fast") is True and "fast" not in rows[0].params
