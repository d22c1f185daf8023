"""Runs a text-to-image diffusers pipeline with progress and cancellation, one request or a batch.

A batch is one pipeline call for several requests of the same size, steps and
guidance: the prompts (and negative prompts) become lists, one row per image,
and each image draws its noise from its own generator, seeded ``seed + i`` for
a request's ``i``-th image, so an image is the same whether its request ran
alone or with others (up to the float rounding of a larger matrix product).

A member that is cancelled leaves at the next step: where the pipeline hands
every per-row tensor to the step callback (``SHRINKING``), its rows are cut out
and the others go on with a smaller batch; elsewhere its rows ride along to the
end, unseen. Either way its caller is answered at that step.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from PIL import Image

from inference_server.errors import GenerationCancelled, InvalidArgument
from inference_server.pipelines.step_cache import StepCache, cached_steps
from inference_server.previews import PreviewSink, due, family_of, image_preview
from inference_server.progress import StepCallback

SHRINKING: dict[str, tuple[str, ...]] = {
    # Every tensor with a row per image (or two, with classifier-free guidance) that
    # the denoising loop reads again after the step callback.
    "StableDiffusionXLPipeline": ("latents", "prompt_embeds", "add_text_embeds", "add_time_ids"),
    "StableDiffusion3Pipeline": ("latents", "prompt_embeds", "pooled_prompt_embeds"),
}


@dataclass
class ImageRun:
    """One request's call of the pipeline, every default resolved: ``num_images`` of one prompt."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_images: int
    steps: int
    guidance: float
    seed: int
    max_sequence_length: int | None = None
    """The long text encoder's tokens, where the pipeline takes it (FLUX.1-schnell: 256)."""
    init_image: Image.Image | None = None
    """Image to image (or inpainting, with ``mask_image``): the input, at the output size."""
    mask_image: Image.Image | None = None
    """Inpainting: white is repainted; at the output size."""
    strength: float = 0.75
    loras: tuple[tuple[str, float], ...] = ()
    """Adapters (LoRA) switched on for the call, by name, with their scales."""
    edit: bool = False
    """An instruction edit: ``init_image`` and the prompt through the loaded edit pipeline
    (FLUX.1 Kontext), no strength."""

    @property
    def mode(self) -> str:
        if self.init_image is None:
            return "text_to_image"
        if self.mask_image is not None:
            return "inpaint"
        return "edit" if self.edit else "image_to_image"

    cache: StepCache | None = None
    """The model's step cache, for a request that asked for fast; None runs every step in full."""


@dataclass
class ImageRequest:
    """One member of a call: its run, and where its previews go."""

    run: ImageRun
    preview_every: int = 0
    on_preview: PreviewSink | None = None


class Member(Protocol):
    """A request's controls inside a shared call (``scheduler.Seat``)."""

    def left(self) -> bool: ...

    def step(self, step: int, total: int, stage: str) -> None: ...

    def leave(self, step: int) -> None: ...


class _Alone:
    """A single caller's step callback as a member: a cancellation raises out of the call."""

    def __init__(self, on_step: StepCallback) -> None:
        self.on_step = on_step

    def left(self) -> bool:
        return False

    def step(self, step: int, total: int, stage: str) -> None:
        self.on_step(step, total, stage)

    def leave(self, step: int) -> None:  # never asked: it never leaves
        raise GenerationCancelled(f"cancelled at denoising step {step}")


def batch_key(model: str, run: ImageRun) -> tuple[object, ...]:
    """What requests must share to run in one call.

    Whether there is a negative prompt is part of it: for SDXL an empty one is
    zeros, a given one is encoded, and one call cannot mix the two.
    """
    return (
        model,
        run.width,
        run.height,
        run.steps,
        run.guidance,
        bool(run.negative_prompt),
        run.max_sequence_length,
        run.loras,  # one call applies one set of adapters at one set of scales
        # A request with an input image runs alone: its own key.
        id(run) if run.init_image is not None else None,
        run.cache,
    )


def use_loras(pipe: Any, loras: tuple[tuple[str, float], ...]) -> None:
    """Switches the loaded adapters for one call: those named, at their scales, or none.

    The adapters were loaded once with the model (``loader.load_loras``); this sets which
    apply, so the pipelines made with ``from_pipe`` (sharing the denoiser) follow too.
    """
    if not hasattr(pipe, "set_adapters") or not getattr(pipe, "get_list_adapters", None):
        return
    if not pipe.get_list_adapters():
        return
    if not loras:
        pipe.disable_lora()
        return
    pipe.enable_lora()
    pipe.set_adapters([name for name, _ in loras], adapter_weights=[s for _, s in loras])


def pipeline_for(pipe: Any, mode: str) -> Any:
    """The pipeline of a mode, sharing the loaded text-to-image weights (``from_pipe``).

    Made once per loaded pipeline and kept on it, so it goes wherever the pipeline goes
    (moved, unloaded) and never holds a second copy of the weights.
    """
    if mode in ("text_to_image", "edit"):  # an edit model is loaded as its edit pipeline
        return pipe
    variants: dict[str, Any] = pipe.__dict__.setdefault("_genserve_variants", {})
    if mode not in variants:
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

        auto = AutoPipelineForInpainting if mode == "inpaint" else AutoPipelineForImage2Image
        variant = auto.from_pipe(pipe)
        variant.set_progress_bar_config(disable=True)  # the logs are JSON lines: no bars
        for name in ("genserve_preview_decoder",):
            if hasattr(pipe, name):
                setattr(variant, name, getattr(pipe, name))
        variants[mode] = variant
    return variants[mode]


def run_image(
    pipe: Any,
    run: ImageRun,
    on_step: StepCallback,
    preview_every: int = 0,
    on_preview: PreviewSink | None = None,
) -> list[Image.Image]:
    """One request alone; ``on_step`` raising (a cancellation) leaves the pipeline at that step."""
    (images,) = run_images(pipe, [ImageRequest(run, preview_every, on_preview)], [_Alone(on_step)])
    assert images is not None
    return images


def run_images(
    pipe: Any, requests: Sequence[ImageRequest], members: Sequence[Member]
) -> list[list[Image.Image] | None]:
    """One pipeline call for every request; each one's images, None for those that left.

    After every denoising step each member still in hears it; decoding (the VAE,
    inside the call) is reported as ``(0, 1)`` when it starts and ``(1, 1)`` when
    done. Every ``preview_every`` steps a member's first image goes to its sink.
    """
    first = requests[0].run
    use_loras(pipe, first.loras)
    pipe = pipeline_for(pipe, first.mode)
    owner: list[int] = []  # the request of each row
    prompts: list[str] = []
    negatives: list[str] = []
    generators: list[torch.Generator] = []
    for index, request in enumerate(requests):
        for i in range(request.run.num_images):
            owner.append(index)
            prompts.append(request.run.prompt)
            negatives.append(request.run.negative_prompt)
            generators.append(
                torch.Generator(device="cpu").manual_seed((request.run.seed + i) % 2**64)
            )
    family = family_of(pipe)
    shrinkable = SHRINKING.get(type(pipe).__name__, ())
    gone: set[int] = set()

    def step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        done = step + 1
        total = first.steps
        if first.init_image is not None:  # strength leaves fewer steps
            total = getattr(_pipe, "num_timesteps", None) or first.steps
        leaving = {i for i, m in enumerate(members) if i not in gone and m.left()}
        if leaving:
            gone.update(leaving)
            if len(gone) == len(members):
                raise GenerationCancelled(f"cancelled at denoising step {done}")
            if shrinkable:
                _drop_rows(kwargs, owner, generators, leaving)
            for i in leaving:
                members[i].leave(done)
        for index, member in enumerate(members):
            if index in gone:
                continue
            member.step(done, total, "denoising")
            request = requests[index]
            if request.on_preview is not None and due(done, request.preview_every, total):
                row = owner.index(index)
                preview = image_preview(
                    kwargs["latents"][row : row + 1],
                    family,
                    (first.width, first.height),
                    getattr(pipe, "genserve_preview_decoder", None),
                )
                request.on_preview(done, total, preview)
            if done == total:
                member.step(0, 1, "decoding")
        return kwargs

    arguments: dict[str, Any] = {
        "prompt": prompts,
        "negative_prompt": negatives if first.negative_prompt else None,
        "width": first.width,
        "height": first.height,
        "num_images_per_prompt": 1,
        "num_inference_steps": first.steps,
        "guidance_scale": first.guidance,
        "generator": generators,
        "callback_on_step_end": step_end,
        "output_type": "pil",
    }
    if first.max_sequence_length is not None:
        arguments["max_sequence_length"] = first.max_sequence_length
    # FLUX.1 Kontext scales width and height to max_area (1024x1024 by default): the asked
    # size is the area (other pipelines take no max_area; it is dropped for them).
    arguments["max_area"] = first.width * first.height
    if first.init_image is not None:
        arguments["image"] = [first.init_image] * len(prompts)
        if first.edit:  # already at the output size: no resizing to the pipeline's sizes
            arguments["_auto_resize"] = False
        else:
            arguments["strength"] = first.strength
        if first.mask_image is not None:
            arguments["mask_image"] = [first.mask_image] * len(prompts)
    if shrinkable:
        arguments["callback_on_step_end_tensor_inputs"] = list(shrinkable)
    with torch.inference_mode(), cached_steps(pipe, first.cache, first.steps):
        out = pipe(**accepted_arguments(pipe, arguments))
    results: list[list[Image.Image] | None] = [
        None if i in gone else [] for i in range(len(members))
    ]
    for index, image in zip(owner, out.images, strict=True):  # rows cut out are gone from both
        bucket = results[index]
        if bucket is not None:
            bucket.append(image)
    for index, member in enumerate(members):
        if index not in gone:
            member.step(1, 1, "decoding")
    return results


def accepted_arguments(pipe: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments this pipeline's ``__call__`` takes (FLUX.1-schnell has no negative prompt).

    A value left out must be a default: a negative prompt given to a pipeline
    without one is refused rather than silently dropped.
    """
    parameters = _call_parameters(pipe.__class__)
    if parameters is None:
        return arguments
    dropped = {k: v for k, v in arguments.items() if k not in parameters}
    if dropped.get("negative_prompt"):
        raise InvalidArgument(f"{type(pipe).__name__} takes no negative prompt")
    return {k: v for k, v in arguments.items() if k in parameters}


@functools.cache
def _call_parameters(cls: Any) -> frozenset[str] | None:
    """The names a pipeline class's ``__call__`` takes (None: any), read once per class."""
    parameters = inspect.signature(cls.__call__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return frozenset(parameters)


def _drop_rows(
    tensors: dict[str, Any], owner: list[int], generators: list[torch.Generator], leaving: set[int]
) -> None:
    """Cuts the rows of the ``leaving`` requests out of the loop's tensors, in place.

    A tensor has a row per image, or two with classifier-free guidance (the
    unconditional half first). The generators' list is the one the scheduler's
    step reads, so it shrinks in place too (ancestral samplers draw noise per row).
    """
    count = len(owner)
    keep = [row for row, index in enumerate(owner) if index not in leaving]
    for name, value in list(tensors.items()):
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            continue
        if value.shape[0] == count:
            tensors[name] = value[keep]
        elif value.shape[0] == 2 * count:
            tensors[name] = value[keep + [count + row for row in keep]]
    owner[:] = [owner[row] for row in keep]
    generators[:] = [generators[row] for row in keep]
