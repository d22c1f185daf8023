"""What every plan shares: the protocol, seeds, prompt and step checks.

A plan is made from a request and is the one place the inference server checks it,
against the model's entry, before queueing; what runs after (geometry, pipelines,
encoders) trusts it. Its ``work`` runs on the device thread, its ``encode`` on the
encode pool.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from PIL import Image

from genserve.vocabulary import MAX_INPUT_PIXELS, MAX_SEED, clean_prompt
from inference_server.artifacts import Artifact
from inference_server.errors import InvalidArgument
from inference_server.model_config import ModelSpec
from inference_server.pipelines.step_cache import StepCache
from inference_server.progress import StepCallback
from inference_server.registry import ModelRegistry

if TYPE_CHECKING:
    from inference_server.scheduler import Batching


class Plan(Protocol):
    seed: int

    def work(self, registry: ModelRegistry) -> Any: ...

    def encode(self, raw: Any, on_step: StepCallback) -> list[Artifact]: ...


@runtime_checkable
class Batchable(Protocol):
    """A plan whose work can share a device call with others like it (images)."""

    def batching(self, registry: ModelRegistry) -> Batching: ...


def random_seed(has_seed: bool, seed: int) -> int:
    if has_seed and not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(f"seed must be between 0 and {MAX_SEED}")
    return seed if has_seed else random.randrange(MAX_SEED + 1)


def prompt_text(prompt: str) -> str:
    try:
        return clean_prompt(prompt)
    except ValueError as exc:
        raise InvalidArgument(f"prompt {exc}") from exc


def accepted(field: str, value: str, choices: Sequence[str], spec: ModelSpec) -> str:
    """``value`` when this model accepts it (its file may narrow the vocabulary)."""
    if value not in choices:
        raise InvalidArgument(f"{spec.name} accepts {field} {', '.join(choices)}; got {value!r}")
    return value


def steps_for(requested: int, spec: ModelSpec) -> int:
    if requested < 0 or requested > spec.max_steps:
        raise InvalidArgument(
            f"steps must be between 1 and {spec.name}'s max_steps {spec.max_steps}"
        )
    return requested or spec.steps


def guidance_for(has_guidance: bool, requested: float, spec: ModelSpec) -> float:
    if not has_guidance:
        return spec.guidance
    if not spec.min_guidance <= requested <= spec.max_guidance:
        raise InvalidArgument(
            f"guidance_scale must be between {spec.name}'s min_guidance {spec.min_guidance:g} "
            f"and max_guidance {spec.max_guidance:g}"
        )
    return requested


def negative_text(negative: str, spec: ModelSpec) -> str:
    """The request's negative prompt (the prompt's rules), or the model's own."""
    if not negative:
        return spec.negative_prompt
    try:
        return clean_prompt(negative)
    except ValueError as exc:
        raise InvalidArgument(f"negative_prompt {exc}") from exc


def step_cache_for(fast: bool, spec: ModelSpec) -> StepCache | None:
    """The model's step cache for a request that asked for ``fast``; refused where it has none."""
    if not fast:
        return None
    if spec.step_cache is None:
        raise InvalidArgument(f"fast is not available for {spec.name}: it has no step cache")
    return spec.step_cache


def preview_every(requested: int) -> int:
    """Steps between live previews; 0 sends none."""
    if requested < 0 or requested > 200:
        raise InvalidArgument("preview_every must be between 0 and 200")
    return requested


def decode_input_image(data: bytes) -> Image.Image:
    """The request's image, fully decoded and in RGBA; refuses what is not a picture."""
    if not data:
        raise InvalidArgument("image is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ("PNG", "JPEG", "WEBP"):
                raise InvalidArgument("image must be PNG, JPEG or WebP")
            if img.width * img.height > MAX_INPUT_PIXELS:
                raise InvalidArgument(f"image is over {MAX_INPUT_PIXELS / 1e6:g} megapixels")
            img.load()
            return img.convert("RGBA")
    except (OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise InvalidArgument("image cannot be decoded") from exc
