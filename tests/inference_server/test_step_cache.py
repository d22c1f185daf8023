"""Step caches: diffusers' hooks on a diffusion transformer, per request, batching kept.

On the small FLUX build (a real ``FluxPipeline`` over a ``FluxTransformer2DModel``)
at 28 steps, the steps whose last transformer block really runs are counted by
a forward hook on a layer inside it: every step without the cache, fewer with
each cache. On a UNet (SDXL) the cache is refused with a warning naming the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from genserve.inference.v1 import inference_pb2 as pb
from inference_server.errors import InvalidArgument
from inference_server.loader import load_pipeline
from inference_server.model_config import ModelSpec, ModelTable
from inference_server.pipelines.image import ImageRequest, run_images
from inference_server.pipelines.step_cache import StepCache
from inference_server.plans.image import plan_image
from inference_server.registry import ModelRegistry

STEPS = 28
FLUX = ModelSpec(
    name="tiny-flux",
    kind="image",
    source="builtin:tiny-flux",
    pipeline="FluxPipeline",
    width=64,
    height=64,
    size_factor=16,
    steps=STEPS,
    guidance=0.0,
)
# The thresholds suit random weights, whose blocks change more from step to step.
CACHES = {
    "first_block": {"cache": "first_block", "cache_threshold": 0.3},
    "taylorseer": {"cache": "taylorseer", "cache_interval": 4},
    "magcache": {"cache": "magcache", "cache_threshold": 0.1},
}


@pytest.fixture(scope="module")
def flux(model_cache: Path) -> Any:
    return load_pipeline(FLUX, model_cache)


@pytest.fixture()
def counted(flux: Any) -> Iterator[list[int]]:
    """How many times the last transformer block's attention really ran."""
    calls = [0]
    layer = flux.transformer.single_transformer_blocks[-1].attn.to_q
    handle = layer.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    yield calls
    handle.remove()


class _Member:
    def left(self) -> bool:
        return False

    def step(self, step: int, total: int, stage: str) -> None:
        pass

    def leave(self, step: int) -> None:
        raise AssertionError("never leaves")


def _run(pipe: Any, spec: ModelSpec, fast: bool, prompts: int = 1) -> list[np.ndarray]:
    plans = [
        plan_image(
            spec,
            pb.GenerateImageRequest(
                prompt=f"a lighthouse {i}", seed=7 + i, num_images=1, fast=fast
            ),
        )
        for i in range(prompts)
    ]
    requests = [ImageRequest(plan.run) for plan in plans]
    out = run_images(pipe, requests, [_Member() for _ in plans])
    return [np.asarray(images[0], dtype=np.float32) for images in out if images is not None]


@pytest.mark.parametrize("kind", sorted(CACHES))
def test_each_step_cache_runs_fewer_steps_and_only_when_asked(
    flux: Any, counted: list[int], kind: str
) -> None:
    spec = FLUX.model_copy(update={"name": f"flux-{kind}", **CACHES[kind]})
    spec = ModelSpec.model_validate(spec.model_dump())
    (full,) = _run(flux, spec, fast=False)
    assert counted[0] == STEPS
    counted[0] = 0
    (fast,) = _run(flux, spec, fast=True)
    ran = counted[0]
    assert 0 < ran < STEPS, (kind, ran)
    difference = float(np.abs(full - fast).mean())
    assert 0 < difference < 64, difference  # a nearby picture, not the same one, not noise
    assert flux.transformer._cache_config is None  # the hooks came off after the call
    counted[0] = 0
    _run(flux, spec, fast=False)
    assert counted[0] == STEPS  # a plain request after a fast one runs every step


def test_a_batch_of_fast_requests_shares_one_cached_call(flux: Any, counted: list[int]) -> None:
    spec = ModelSpec.model_validate({**FLUX.model_dump(), **CACHES["magcache"]})
    images = _run(flux, spec, fast=True, prompts=3)
    assert len(images) == 3
    assert 0 < counted[0] < STEPS  # one call for the three: its steps counted once
    a, b = (
        plan_image(spec, pb.GenerateImageRequest(prompt="p", num_images=1, fast=f))
        for f in (True, False)
    )
    assert a.batching(None).key != b.batching(None).key  # type: ignore[arg-type]


def test_fast_is_refused_for_a_model_without_a_cache() -> None:
    with pytest.raises(InvalidArgument, match="tiny-flux"):
        plan_image(FLUX, pb.GenerateImageRequest(prompt="p", num_images=1, fast=True))


def test_cache_options_must_fit_the_cache() -> None:
    with pytest.raises(ValidationError, match="cache_interval"):
        ModelSpec.model_validate({**FLUX.model_dump(), "cache": "first_block", "cache_interval": 3})
    spec = ModelSpec.model_validate({**FLUX.model_dump(), "cache": "taylorseer"})
    assert spec.step_cache == StepCache("taylorseer")


def test_a_unet_refuses_its_cache_with_a_warning_naming_the_model(
    model_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sdxl = ModelSpec(
        name="unet-banana",
        kind="image",
        source="builtin:tiny-sdxl",
        width=64,
        height=64,
        cache="first_block",
        warmup=False,
    )
    registry = ModelRegistry(ModelTable(models=[sdxl]), model_cache, queue_size=4)
    assert registry.step_cache(sdxl) == "first_block"  # as the entry says, until it loads
    with caplog.at_level(logging.WARNING):
        pipe = registry.pipeline(sdxl)
    assert any(
        "unet-banana" in r.getMessage() and "refused" in r.getMessage() for r in caplog.records
    )
    assert registry.step_cache(sdxl) == ""
    (image,) = _run(pipe, sdxl, fast=True)  # still answered, every step in full
    assert image.shape == (64, 64, 3)
