"""The committed stubs are what the proto generates, and they import against the pinned runtime."""

from __future__ import annotations

import importlib
from pathlib import Path

from genserve import codegen


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    generated = codegen.generate(tmp_path)
    assert generated
    for path in generated:
        rel = path.relative_to(tmp_path)
        committed = codegen.OUT_ROOT / rel
        assert committed.exists(), f"{rel} is missing: run python -m genserve.codegen"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{rel} is stale: run python -m genserve.codegen"
        )


def test_every_stub_imports() -> None:
    for name in ("inference_pb2", "inference_pb2_grpc"):
        module = importlib.import_module(f"genserve.inference.v1.{name}")
        assert module is not None
    from genserve.inference.v1 import inference_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["InferenceService"]
    assert {m.name for m in service.methods} >= {"GenerateImage", "ListModels"}
